-- The dashboard's credentials. Sessions live in the daemon's memory (a
-- restart logs the operator out), so only what must survive one is here.

-- The single administrator's password: an argon2id PHC string, never the
-- password. One row at most.
CREATE TABLE admin_password (
    id            smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens for scripts calling /api/v1 over TCP. Only the SHA-256 of
-- the token is kept (it is 256 random bits, so a fast hash is enough); the
-- token is shown once when created.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

-- The audit page filters by host and decision over a time range.
CREATE INDEX audit_events_host_at ON audit_events (host, at);
