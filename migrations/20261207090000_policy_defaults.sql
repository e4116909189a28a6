-- Allow rules and a default (issue #21, item 1). A rule may now allow; the
-- default says what happens to a request no allow rule covers, globally
-- (one row here) and per agent (agents.default_action, NULL: follow the
-- global one). A fresh or upgraded database allows by default, as before.
ALTER TABLE rules DROP CONSTRAINT rules_action_check;
ALTER TABLE rules ADD CONSTRAINT rules_action_check
    CHECK (action IN ('block', 'approve', 'rate', 'allow'));

CREATE TABLE policy_defaults (
    -- Exactly one row: the global settings.
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    action       text NOT NULL CHECK (action IN ('allow', 'deny')),
    -- Under deny, a granted secret that would be injected also allows.
    grants_allow boolean NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO policy_defaults (action, grants_allow) VALUES ('allow', true);

ALTER TABLE agents ADD COLUMN default_action text
    CHECK (default_action IN ('allow', 'deny'));
