-- OAuth2 secrets (issue #18, item 1). The secret's row keeps what is
-- configured: the token URL in injection_target, the client id, scopes and
-- grant type as JSON in oauth2_grant, and the client secret sealed in
-- ciphertext as any value is. What the provider hands out (the refresh
-- token, rotated; the current access token) changes without a
-- configuration change, so it lives in its own row, sealed, and a refresh
-- never reloads every daemon's snapshot (gateway/src/store/oauth2.rs).
ALTER TABLE secrets DROP CONSTRAINT secrets_injection_kind_check;
ALTER TABLE secrets ADD CONSTRAINT secrets_injection_kind_check
    CHECK (injection_kind IN ('header', 'query', 'aws_sigv4', 'oauth2'));
ALTER TABLE secrets ADD COLUMN oauth2_grant text;
ALTER TABLE secrets ADD CONSTRAINT secrets_oauth2_grant_check
    CHECK ((injection_kind = 'oauth2') = (oauth2_grant IS NOT NULL));

CREATE TABLE oauth2_tokens (
    secret_id         uuid PRIMARY KEY REFERENCES secrets (id) ON DELETE CASCADE,
    -- AES-256-GCM over {"refresh_token", "access_token"} (JSON), bound to
    -- the secret's own associated data under another label.
    ciphertext        bytea NOT NULL,
    nonce             bytea NOT NULL CHECK (length(nonce) = 12),
    key_id            text NOT NULL REFERENCES vault_keys (key_id),
    -- When the sealed access token expires; NULL: none held.
    access_expires_at timestamptz,
    -- 'ok', or 'needs_reconnection' once the provider refused the grant
    -- (invalid_grant): no token request is made until it is replaced.
    status            text NOT NULL DEFAULT 'ok'
                      CHECK (status IN ('ok', 'needs_reconnection')),
    -- Why, in words from the provider's error code (never a token).
    status_detail     text,
    -- Each successful token request bumps it.
    refreshes         bigint NOT NULL DEFAULT 0,
    refreshed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
