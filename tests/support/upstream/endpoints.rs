//! The request handler: logs the request, then routes it to its
//! endpoint. The plain ones are here; streaming ones in `streaming`,
//! upgrades in `upgrade`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::STALL_CAP;
use super::body::{RespBody, drain, empty, full};
use super::conn::ConnInfo;
use super::log::{State, version_str};
use super::streaming::{bytes_endpoint, chunked, grpc, sse, stall};
use super::upgrade::{switch, websocket};

pub(super) fn text(status: StatusCode, msg: impl Into<String>) -> Response<RespBody> {
    let mut msg = msg.into();
    msg.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(msg))
        .expect("response")
}

pub(super) fn bad_request(msg: String) -> Response<RespBody> {
    text(StatusCode::BAD_REQUEST, msg)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("response")
}

pub(super) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(serde_urlencoded::from_str(q.unwrap_or("")).unwrap_or_default())
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric parameter in `0..=max`, `default` when absent; the error
    /// is the 400 message.
    pub(super) fn num(&self, name: &str, default: u64, max: u64) -> Result<u64, String> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(v) if v <= max => Ok(v),
            _ => Err(format!("bad {name}={raw} (0..={max})")),
        }
    }
}

pub(super) async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    conn: Arc<ConnInfo>,
) -> Result<Response<RespBody>, Infallible> {
    let id = state.record(&req, &conn);
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query());

    // Endpoints that never read the request body.
    match path.as_str() {
        "/stall" => return Ok(stall()),
        "/stall-headers" => {
            tokio::time::sleep(STALL_CAP).await;
            return Ok(text(StatusCode::GATEWAY_TIMEOUT, "stall cap reached"));
        }
        "/reset" => {
            conn.reset.store(true, Ordering::Relaxed);
            conn.kill.notify_one();
            return Ok(std::future::pending::<Response<RespBody>>().await);
        }
        "/ws" => return Ok(websocket(req, id, state)),
        "/switch" => return Ok(switch(req)),
        _ => {}
    }

    let (parts, body) = req.into_parts();
    let drained = drain(body).await;
    let (body_len, complete) = (drained.len, drained.complete);
    state.body_read(id, drained);
    if !complete {
        return Ok(text(StatusCode::BAD_REQUEST, "request body aborted"));
    }

    let resp = match path.as_str() {
        p if p == "/echo" || p.starts_with("/echo/") => echo(&parts, &conn, id, body_len),
        "/sse" => sse(&query).unwrap_or_else(bad_request),
        "/chunked" => chunked(&query).unwrap_or_else(bad_request),
        "/bytes" => bytes_endpoint(&query).unwrap_or_else(bad_request),
        "/redirect" => redirect(&query),
        "/reflect" => reflect(&parts),
        "/grpc" => grpc(),
        "/leak" => super::leak::leak(&parts, &query),
        p if p.starts_with("/status/") => status(&p["/status/".len()..], &parts.method),
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    };
    Ok(resp)
}

fn echo(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    id: u64,
    body_len: u64,
) -> Response<RespBody> {
    let headers = joined_headers(&parts.headers);
    let value = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": body_len,
        "version": version_str(parts.version),
        "authority": parts.uri.authority().map(|a| a.as_str()),
        "tls": conn.tls,
        "alpn": conn.alpn,
        "sni": conn.sni,
        "conn_id": conn.conn_id,
        "request_id": id,
    });
    json(StatusCode::OK, &value)
}

fn joined_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

fn status(code: &str, method: &Method) -> Response<RespBody> {
    let Some(code) = code
        .parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return text(StatusCode::BAD_REQUEST, format!("bad status code: {code}"));
    };
    let builder = Response::builder().status(code);
    if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED || method == Method::HEAD
    {
        return builder.body(empty()).expect("response");
    }
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(format!("{{\"status\":{}}}\n", code.as_u16())))
        .expect("response")
}

fn redirect(q: &Query) -> Response<RespBody> {
    let Some(to) = q.get("to") else {
        return text(StatusCode::BAD_REQUEST, "missing to=");
    };
    let code = match q.get("code").unwrap_or("302") {
        "301" => StatusCode::MOVED_PERMANENTLY,
        "302" => StatusCode::FOUND,
        "303" => StatusCode::SEE_OTHER,
        "307" => StatusCode::TEMPORARY_REDIRECT,
        "308" => StatusCode::PERMANENT_REDIRECT,
        other => return text(StatusCode::BAD_REQUEST, format!("bad code={other}")),
    };
    match Response::builder()
        .status(code)
        .header(header::LOCATION, to)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(format!("redirecting to {to}\n")))
    {
        Ok(r) => r,
        Err(_) => text(StatusCode::BAD_REQUEST, "bad to="),
    }
}

/// The request handed back in the response head, as careless APIs do: a
/// 302 whose `Location` keeps the query (`/echo/landed?QUERY`), each
/// request header as `x-reflect-NAME`, and each query value decoded and
/// re-encoded the ways servers do (`x-query-decoded`, `x-query-lower` with
/// lower-case hex, `x-query-form` with `+` for space). The body says
/// nothing.
fn reflect(parts: &http::request::Parts) -> Response<RespBody> {
    let query = parts.uri.query().unwrap_or("");
    let mut head = HeaderMap::new();
    let mut add = |name: String, value: &[u8]| {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            head.append(n, v);
        }
    };
    add(
        "location".into(),
        format!("/echo/landed?{query}").as_bytes(),
    );
    for (name, value) in &parts.headers {
        add(format!("x-reflect-{name}"), value.as_bytes());
    }
    for pair in query.split('&') {
        let value = pair.split_once('=').map_or("", |(_, v)| v);
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
        let encoded = |space: &str| {
            decoded.iter().fold(String::new(), |mut out, &b| {
                match b {
                    b' ' => out.push_str(space),
                    b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
                    b => out.push_str(&format!("%{b:02x}")),
                }
                out
            })
        };
        add("x-query-decoded".into(), &decoded);
        add("x-query-lower".into(), encoded("%20").as_bytes());
        add("x-query-form".into(), encoded("+").as_bytes());
    }
    let mut resp = Response::builder()
        .status(StatusCode::FOUND)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full("reflected\n"))
        .expect("response");
    resp.headers_mut().extend(head);
    resp
}
