-- The dashboard lists a day's exfiltration attempts by agent and host
-- (gateway/src/service/traffic.rs). They are rare, so a partial index makes
-- that lookup cost the attempts rather than a scan of the day. Decision
-- words never change once released (gateway/src/audit/decision.rs).
CREATE INDEX audit_events_exfiltration_at ON audit_events (at) WHERE decision = 'exfiltration';
