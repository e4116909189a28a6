//! One audit record as one line of JSON with the field names of OCSF 1.3.0
//! (the Open Cybersecurity Schema Framework), so a SIEM that reads OCSF
//! (Security Lake, Splunk's add-on, Sentinel, Tenzir, OpenSearch) takes
//! Airlock's trail without a custom parser.
//!
//! A request becomes an **HTTP Activity** (class 4002): its method is the
//! activity, `http_request.url` says where it went (the path without its
//! query values, exactly as the database keeps it), `actor.user.name` is
//! the agent, `action`/`disposition` say whether it was let through, and
//! Airlock's own words (the decision, the rule, the secrets' names) sit in
//! `unmapped.airlock`, where OCSF puts what it has no field for. A
//! connection refused before any HTTP request (a kernel refusal, a TLS
//! failure; its method is `CONNECT` or `UDP`, or none) becomes a **Network
//! Activity** (class 4001) of kind Refuse or Fail instead: there was no
//! HTTP exchange to describe.
//!
//! Nothing here can carry a secret's value: the record holds none (see
//! [`crate::store::audit`]), only names.

use serde::Serialize;

use crate::audit::{AuditRecord, Decision};

/// The schema version the lines follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";

const NETWORK_ACTIVITY: u32 = 4001;
const HTTP_ACTIVITY: u32 = 4002;

/// Appends `record` to `out` as one JSON object and a newline.
pub fn write_line(record: &AuditRecord, out: &mut Vec<u8>) {
    let line = Line::of(record);
    // Serializing plain structs of strings and numbers into a Vec cannot
    // fail; were it to, the line is left out rather than torn.
    let start = out.len();
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    } else {
        out.truncate(start);
    }
}

#[derive(Serialize)]
struct Line<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'a str,
    type_uid: u32,
    /// Milliseconds since the epoch, as OCSF's `timestamp_t`.
    time: i64,
    time_dt: String,
    /// Milliseconds from arrival to the last byte back.
    duration: i64,
    severity_id: u8,
    severity: &'static str,
    action_id: u8,
    action: &'static str,
    disposition_id: u8,
    disposition: &'static str,
    status_id: u8,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_endpoint: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_response: Option<HttpResponse>,
    traffic: Traffic,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Metadata {
    version: &'static str,
    /// The record's id: the same as the database row's `record_id`, so a
    /// line can be matched to its place in the hash chain.
    uid: String,
    log_name: &'static str,
    product: Product,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Actor<'a> {
    user: User<'a>,
}

#[derive(Serialize)]
struct User<'a> {
    name: &'a str,
    /// OCSF's user type "Other": an agent is neither a person nor an admin.
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    hostname: &'a str,
    port: u16,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    http_method: &'a str,
    url: Url<'a>,
}

#[derive(Serialize)]
struct Url<'a> {
    scheme: &'static str,
    hostname: &'a str,
    port: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query_string: &'a str,
    url_string: String,
}

#[derive(Serialize)]
struct HttpResponse {
    code: i32,
}

#[derive(Serialize)]
struct Traffic {
    /// To the upstream: the request body.
    bytes_out: i64,
    /// Back to the agent: the response body.
    bytes_in: i64,
    bytes: i64,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    airlock: Airlock<'a>,
}

#[derive(Serialize)]
struct Airlock<'a> {
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_id: Option<i64>,
    /// Names, never values.
    secrets: &'a [String],
}

impl<'a> Line<'a> {
    fn of(r: &'a AuditRecord) -> Self {
        let method = r.method.as_deref();
        let http = method.is_some_and(|m| m != "CONNECT" && m != "UDP");
        let (class_uid, class_name, activity_id, activity_name) = if http {
            let m = method.unwrap_or_default();
            let (id, name) = http_activity(m);
            (HTTP_ACTIVITY, "HTTP Activity", id, name)
        } else if r.decision.is_refusal() {
            (NETWORK_ACTIVITY, "Network Activity", 5, "Refuse")
        } else {
            (NETWORK_ACTIVITY, "Network Activity", 4, "Fail")
        };
        let (host, port) = r.host.as_deref().map(split_host).unzip();
        let dst_endpoint = host
            .zip(port)
            .map(|(hostname, port)| Endpoint { hostname, port });
        let http_request = match (http, host, port) {
            (true, Some(hostname), Some(port)) => {
                let target = r.path.as_deref().unwrap_or("");
                let (path, query_string) = target.split_once('?').unwrap_or((target, ""));
                Some(HttpRequest {
                    http_method: method.unwrap_or_default(),
                    url: Url {
                        scheme: "https",
                        hostname,
                        port,
                        path,
                        query_string,
                        url_string: url_string(hostname, port, target),
                    },
                })
            }
            _ => None,
        };
        let (action_id, action, disposition_id, disposition) = disposition(r.decision);
        let (status_id, status) = if matches!(r.decision, Decision::Allowed | Decision::Approved)
            && r.status.is_some_and(|s| s < 400)
        {
            (1, "Success")
        } else {
            (2, "Failure")
        };
        let (severity_id, severity) = severity(r.decision);
        Line {
            class_uid,
            class_name,
            category_uid: 4,
            category_name: "Network Activity",
            activity_id,
            activity_name,
            type_uid: class_uid * 100 + activity_id,
            time: r.at.timestamp_millis(),
            time_dt: r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            duration: r.duration_us / 1000,
            severity_id,
            severity,
            action_id,
            action,
            disposition_id,
            disposition,
            status_id,
            status,
            status_code: r.status.map(|s| s.to_string()),
            message: r.detail.as_deref(),
            metadata: Metadata {
                version: OCSF_VERSION,
                uid: r.record_id.to_string(),
                log_name: "airlock-audit",
                product: Product {
                    name: "Airlock",
                    vendor_name: "Airlock",
                    version: env!("CARGO_PKG_VERSION"),
                },
            },
            actor: r.agent.as_deref().map(|name| Actor {
                user: User {
                    name,
                    type_id: 99,
                    kind: "Agent",
                },
            }),
            dst_endpoint,
            http_request,
            http_response: r.status.filter(|_| http).map(|code| HttpResponse { code }),
            traffic: Traffic {
                bytes_out: r.bytes_up,
                bytes_in: r.bytes_down,
                bytes: r.bytes_up.saturating_add(r.bytes_down),
            },
            unmapped: Unmapped {
                airlock: Airlock {
                    decision: r.decision.as_str(),
                    rule_id: r.rule_id,
                    secrets: &r.secrets,
                },
            },
        }
    }
}

/// OCSF 1.3's HTTP activities; PATCH and the rest are "Other" with the
/// method as the name (1.3 has no Patch; 1.7 added it as 9).
fn http_activity(method: &str) -> (u32, &str) {
    match method {
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        other => (99, other),
    }
}

/// `action` (what the gateway did) and `disposition` (the outcome in
/// OCSF's words): let through, or stopped, and by what.
fn disposition(d: Decision) -> (u8, &'static str, u8, &'static str) {
    const ALLOWED: (u8, &str, u8, &str) = (1, "Allowed", 1, "Allowed");
    const BLOCKED: (u8, &str, u8, &str) = (2, "Denied", 2, "Blocked");
    const REJECTED: (u8, &str, u8, &str) = (2, "Denied", 7, "Rejected");
    const DROPPED: (u8, &str, u8, &str) = (2, "Denied", 8, "Dropped");
    const ERROR: (u8, &str, u8, &str) = (2, "Denied", 6, "Error");
    match d {
        Decision::Allowed | Decision::Approved => ALLOWED,
        Decision::Blocked
        | Decision::Exfiltration
        | Decision::RateLimited
        | Decision::ApprovalDenied
        | Decision::ApprovalTimeout
        | Decision::DestinationRefused
        | Decision::UnknownAgent
        | Decision::AuthRequired
        | Decision::DeniedByDefault => BLOCKED,
        Decision::UnknownConnection
        | Decision::TlsFailed
        | Decision::BadRequest
        | Decision::HeadersTooLarge => REJECTED,
        Decision::UdpRefused
        | Decision::NetnsUnreached
        | Decision::Unconfigured
        | Decision::NotRecorded => DROPPED,
        Decision::UpstreamError
        | Decision::UpstreamTimeout
        | Decision::Unavailable
        | Decision::CredentialUnavailable => ERROR,
    }
}

/// An attempt to take a key elsewhere is what an operator must see first.
fn severity(d: Decision) -> (u8, &'static str) {
    match d {
        Decision::Exfiltration => (4, "High"),
        d if d.is_refusal() => (3, "Medium"),
        Decision::Allowed | Decision::Approved => (1, "Informational"),
        _ => (2, "Low"),
    }
}

fn url_string(host: &str, port: u16, target: &str) -> String {
    let bracket = host.contains(':');
    let (open, close) = if bracket { ("[", "]") } else { ("", "") };
    if port == 443 {
        format!("https://{open}{host}{close}{target}")
    } else {
        format!("https://{open}{host}{close}:{port}{target}")
    }
}

/// `api.example.com` → 443; `host:8443` and `[::1]:8443` → their port
/// (the form [`crate::proxy::record::display_host`] writes).
fn split_host(host: &str) -> (&str, u16) {
    if let Some((h, p)) = host.rsplit_once(':')
        && let Ok(port) = p.parse::<u16>()
        && (!h.contains(':') || (h.starts_with('[') && h.ends_with(']')))
    {
        return (h.trim_start_matches('[').trim_end_matches(']'), port);
    }
    (host, 443)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn line(r: &AuditRecord) -> Value {
        let mut out = Vec::new();
        write_line(r, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    fn request() -> AuditRecord {
        AuditRecord {
            agent: Some("coder".into()),
            method: Some("POST".into()),
            host: Some("api.example.com".into()),
            path: Some("/v1/items?key=&page=2".into()),
            decision: Decision::Allowed,
            secrets: vec!["openai".into()],
            status: Some(201),
            bytes_up: 10,
            bytes_down: 20,
            duration_us: 4_500,
            ..AuditRecord::default()
        }
    }

    #[test]
    fn a_forwarded_request_is_an_http_activity() {
        let r = request();
        let v = line(&r);
        assert_eq!(v["class_uid"], 4002);
        assert_eq!(v["activity_id"], 6);
        assert_eq!(v["type_uid"], 400206);
        assert_eq!(v["action"], "Allowed");
        assert_eq!(v["status_id"], 1);
        assert_eq!(v["severity_id"], 1);
        assert_eq!(v["actor"]["user"]["name"], "coder");
        assert_eq!(v["http_request"]["http_method"], "POST");
        assert_eq!(v["http_request"]["url"]["hostname"], "api.example.com");
        assert_eq!(v["http_request"]["url"]["port"], 443);
        assert_eq!(v["http_request"]["url"]["path"], "/v1/items");
        assert_eq!(v["http_request"]["url"]["query_string"], "key=&page=2");
        assert_eq!(
            v["http_request"]["url"]["url_string"],
            "https://api.example.com/v1/items?key=&page=2"
        );
        assert_eq!(v["http_response"]["code"], 201);
        assert_eq!(v["traffic"]["bytes"], 30);
        assert_eq!(v["duration"], 4);
        assert_eq!(v["metadata"]["version"], OCSF_VERSION);
        assert_eq!(v["metadata"]["uid"], r.record_id.to_string());
        assert_eq!(v["unmapped"]["airlock"]["decision"], "allowed");
        assert_eq!(v["unmapped"]["airlock"]["secrets"][0], "openai");
    }

    #[test]
    fn refusals_are_denied_and_exfiltration_is_high() {
        let r = AuditRecord {
            decision: Decision::Exfiltration,
            status: Some(403),
            ..request()
        };
        let v = line(&r);
        assert_eq!(v["action_id"], 2);
        assert_eq!(v["disposition"], "Blocked");
        assert_eq!(v["severity"], "High");
        assert_eq!(v["status"], "Failure");
    }

    #[test]
    fn a_kernel_refusal_is_a_network_refuse_without_an_http_request() {
        let r = AuditRecord {
            agent: None,
            method: Some("UDP".into()),
            host: Some("[2001:db8::1]:443".into()),
            path: None,
            decision: Decision::UdpRefused,
            status: None,
            ..request()
        };
        let v = line(&r);
        assert_eq!(v["class_uid"], 4001);
        assert_eq!(v["activity_name"], "Refuse");
        assert_eq!(v["dst_endpoint"]["hostname"], "2001:db8::1");
        assert_eq!(v["dst_endpoint"]["port"], 443);
        assert!(v.get("http_request").is_none());
        assert!(v.get("actor").is_none());
        assert_eq!(v["disposition"], "Dropped");
    }

    #[test]
    fn ports_come_off_display_hosts() {
        assert_eq!(split_host("a.example"), ("a.example", 443));
        assert_eq!(split_host("a.example:8443"), ("a.example", 8443));
        assert_eq!(split_host("[::1]:8443"), ("::1", 8443));
        assert_eq!(split_host("::1"), ("::1", 443));
        assert_eq!(url_string("::1", 443, "/a"), "https://[::1]/a");
        assert_eq!(
            url_string("a.example", 8443, "/"),
            "https://a.example:8443/"
        );
    }

    #[test]
    fn every_decision_has_an_action() {
        for &d in Decision::ALL {
            let (action_id, ..) = disposition(d);
            let allowed = matches!(d, Decision::Allowed | Decision::Approved);
            assert_eq!(action_id == 1, allowed, "{d}");
        }
    }
}
