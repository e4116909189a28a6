-- Airlock's schema. This directory is its only source: the daemon applies
-- pending migrations on start and refuses a database with a newer schema.

-- One row per master key that has sealed data in this database: a known
-- value sealed under the key, so a wrong key is caught at start.
CREATE TABLE vault_keys (
    key_id           text PRIMARY KEY,
    check_nonce      bytea NOT NULL CHECK (length(check_nonce) = 12),
    check_ciphertext bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    -- SHA-256 of the proxy token; the token itself is shown once and never stored.
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- The agent's cgroup, relative to the agents' parent cgroup
    -- (e.g. airlock.slice/agent-NAME) or absolute under the cgroup2 mount.
    cgroup      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE secrets (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    host_pattern     text NOT NULL,
    path_glob        text NOT NULL,
    injection_kind   text NOT NULL CHECK (injection_kind IN ('header', 'query', 'aws_sigv4')),
    -- header name, query parameter, or REGION/SERVICE
    injection_target text NOT NULL,
    -- header value template with {value}; only for headers
    header_template  text,
    -- AES-256-GCM over the value, with the row's id as associated data.
    ciphertext       bytea NOT NULL,
    nonce            bytea NOT NULL CHECK (length(nonce) = 12),
    key_id           text NOT NULL REFERENCES vault_keys (key_id),
    version          integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((injection_kind = 'header') = (header_template IS NOT NULL))
);

CREATE TABLE grants (
    agent_id   uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    secret_id  uuid NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, secret_id)
);
CREATE INDEX grants_secret_id ON grants (secret_id);

CREATE TABLE rules (
    id               bigserial PRIMARY KEY,
    -- Display and evaluation order within one action; lower first.
    position         integer NOT NULL,
    host_pattern     text NOT NULL,
    path_glob        text NOT NULL,
    method           text,
    -- NULL: every agent. A rule for one agent goes with it.
    agent_id         uuid REFERENCES agents (id) ON DELETE CASCADE,
    action           text NOT NULL CHECK (action IN ('block', 'approve', 'rate')),
    rate_count       integer CHECK (rate_count > 0),
    rate_period_secs integer CHECK (rate_period_secs > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((action = 'rate') = (rate_count IS NOT NULL AND rate_period_secs IS NOT NULL))
);

CREATE TABLE approvals (
    id           bigserial PRIMARY KEY,
    agent        text NOT NULL,
    method       text NOT NULL,
    host         text NOT NULL,
    path         text NOT NULL,
    rule_id      bigint,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz
);
CREATE INDEX approvals_pending ON approvals (requested_at) WHERE status = 'pending';

-- One row per request through the gateway and per configuration change.
-- Never a body, a secret value or a query value.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('request', 'admin')),
    agent       text,
    method      text,
    host        text,
    path        text,
    decision    text NOT NULL,
    rule_id     bigint,
    secrets     text[] NOT NULL DEFAULT '{}',
    status      integer,
    bytes_up    bigint,
    bytes_down  bigint,
    duration_us bigint,
    detail      text
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_agent_at ON audit_events (agent, at);
