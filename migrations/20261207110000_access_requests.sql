-- Access an agent can ask for (issue #21, item 5). A refused request
-- leaves an access request, counted, for an operator to allow or dismiss:
-- - kind 'rule': refused by a default of deny; one row per (agent, method,
--   host, suggested path pattern); allowing adds that allow rule;
-- - kind 'grant': a placeholder of a secret the agent is not granted; one
--   row per (agent, secret); allowing grants it. Method, host and path
--   pattern are those of the first such refusal, for the operator to see.
-- Written by the audit writer in the transaction that appends the
-- refusals to the trail (gateway/src/store/access_requests.rs), never by
-- the request path. Removing the agent or the secret removes its requests.
CREATE TABLE access_requests (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('rule', 'grant')),
    agent_id     uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    secret_id    uuid REFERENCES secrets (id) ON DELETE CASCADE,
    method       text NOT NULL,
    -- As the trail names it (host, or host:port when not 443), and so
    -- the host pattern of the allow rule (without a port: every port).
    host         text NOT NULL,
    -- The path glob an allow rule for it would carry (docs/policy.md).
    path_pattern text NOT NULL,
    count        bigint NOT NULL CHECK (count > 0),
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'open'
                 CHECK (status IN ('open', 'allowed', 'dismissed')),
    -- The allow rule it made; kept NULL once that rule is removed.
    rule_id      bigint REFERENCES rules (id) ON DELETE SET NULL,
    decided_at   timestamptz,
    CHECK ((kind = 'grant') = (secret_id IS NOT NULL))
);
CREATE UNIQUE INDEX access_requests_rule_key
    ON access_requests (agent_id, method, host, path_pattern) WHERE kind = 'rule';
CREATE UNIQUE INDEX access_requests_grant_key
    ON access_requests (agent_id, secret_id) WHERE kind = 'grant';
CREATE INDEX access_requests_open ON access_requests (agent_id) WHERE status = 'open';
