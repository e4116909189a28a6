-- Access an agent can ask for (issue #21, item 5). A request refused by a
-- default of deny leaves one row per (agent, method, host, suggested path
-- pattern), counted; an operator allows it (the rule it made is rule_id)
-- or dismisses it. Written by the audit writer in the transaction that
-- appends the refusals to the trail (gateway/src/store/access_requests.rs),
-- never by the request path. Removing the agent removes its requests.
CREATE TABLE access_requests (
    id           bigserial PRIMARY KEY,
    agent_id     uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    method       text NOT NULL,
    -- As the trail names it (host, or host:port when not 443): a host
    -- pattern that matches exactly that destination.
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
    UNIQUE (agent_id, method, host, path_pattern)
);
CREATE INDEX access_requests_open ON access_requests (last_seen) WHERE status = 'open';
