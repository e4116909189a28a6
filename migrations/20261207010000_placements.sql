-- Where the key goes (issue #18, item 4): a path template (`/bot{value}/**`,
-- kept in injection_target), HTTP Basic (`USER:{value}`, in
-- injection_target), and placeholders in request bodies and WebSocket text
-- messages (no target: the agent places the placeholder). None has a header
-- template or an OAuth2 grant, so the other checks hold as they are.
ALTER TABLE secrets DROP CONSTRAINT secrets_injection_kind_check;
ALTER TABLE secrets ADD CONSTRAINT secrets_injection_kind_check
    CHECK (injection_kind IN ('header', 'query', 'aws_sigv4', 'oauth2', 'path', 'basic', 'body'));
