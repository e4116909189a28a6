-- Body conditions on rules (issue #21, items 2 and 4): a rule may match
-- MCP (JSON-RPC) messages in the request body. The condition is the JSON
-- of its written form (policy::mcp::BodySpec), re-validated when read, so
-- a row the gateway cannot read fails the policy closed like any other.
-- NULL: the rule looks at the request head only, as before.
ALTER TABLE rules ADD COLUMN body_condition text;

-- What a held request carries that its method, host and path do not say:
-- for an MCP call, the tools and their arguments (secrets redacted), so
-- the person approving sees what will run.
ALTER TABLE approvals ADD COLUMN detail text;
