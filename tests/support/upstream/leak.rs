//! `/leak?how=...`: an upstream that hands the request's key back, the
//! ways careless APIs do. The key is `X-Api-Key`'s value, or else the
//! `Authorization` header's after `Bearer `; each `how` puts it somewhere:
//!
//! * `plain`: a text body (with `Content-Length`) and an `X-Echo` header.
//! * `json`: a JSON body with the key raw, with `/` as `\/`, and with
//!   every byte as `\u00XX`.
//! * `split`: a body quoting the key raw, percent-encoded and JSON-escaped,
//!   sent one byte per frame with `delay_ms` (default 2) between frames.
//! * `sse`: `n` server-sent events `interval_ms` apart, each quoting it.
//! * `big`: `mib` MiB of the key followed by `.`, over and over, in 1 MiB
//!   frames (so keys straddle frames).
//! * `gzip`: a gzip body quoting it, always, or with `if_asked=1` only when
//!   the request's `Accept-Encoding` names gzip (else plain).
//! * `redirect`: a 302 whose `Location` and body carry it in the query.
//! * `trailers`: a body, then trailers quoting it.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Frame;

use super::body::{RespBody, channel_body, full, pause};
use super::endpoints::{Query, bad_request};

const MAX_MIB: u64 = 4096;
const MAX_N: u64 = 1000;
const MAX_MS: u64 = 10_000;

pub(super) fn leak(parts: &http::request::Parts, q: &Query) -> Response<RespBody> {
    let key = key_of(&parts.headers);
    let made = match q.get("how").unwrap_or("plain") {
        "plain" => Ok(plain(&key)),
        "json" => Ok(json(&key)),
        "split" => split(&key, q),
        "sse" => sse(&key, q),
        "big" => big(&key, q),
        "gzip" => Ok(gzip(&key, q, &parts.headers)),
        "redirect" => Ok(redirect(&key)),
        "trailers" => Ok(trailers(&key)),
        other => Err(format!("unknown how={other}")),
    };
    made.unwrap_or_else(bad_request)
}

fn key_of(headers: &HeaderMap) -> String {
    let raw = headers
        .get("x-api-key")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    raw.strip_prefix("Bearer ").unwrap_or(&raw).to_owned()
}

fn percent(key: &str) -> String {
    key.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    })
}

fn plain(key: &str) -> Response<RespBody> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header("x-echo", key)
        .body(full(format!("your key is {key}\n")))
        .expect("response")
}

fn json(key: &str) -> Response<RespBody> {
    let slashed = serde_json::Value::String(key.to_owned())
        .to_string()
        .replace('/', "\\/");
    let every: String = key.bytes().map(|b| format!("\\u{b:04x}")).collect();
    let body = format!(
        "{{\"error\":\"bad key\",\"raw\":{},\"slashed\":{slashed},\"escaped\":\"{every}\"}}",
        serde_json::Value::String(key.to_owned())
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("response")
}

fn split(key: &str, q: &Query) -> Result<Response<RespBody>, String> {
    let delay = Duration::from_millis(q.num("delay_ms", 2, MAX_MS)?);
    let body = format!(
        "raw {key} pct {} json {}\n",
        percent(key),
        key.replace('/', "\\/")
    );
    let (tx, resp_body) = channel_body(None);
    tokio::spawn(async move {
        for b in body.into_bytes() {
            if tx.send(Bytes::from(vec![b])).await.is_err() || !pause(&tx, delay).await {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(resp_body)
        .expect("response"))
}

fn sse(key: &str, q: &Query) -> Result<Response<RespBody>, String> {
    let n = q.num("n", 5, MAX_N)?;
    let interval = Duration::from_millis(q.num("interval_ms", 100, MAX_MS)?);
    let key = key.to_owned();
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        for i in 0..n {
            if i > 0 && !pause(&tx, interval).await {
                return;
            }
            let event = format!("data: {{\"i\":{i},\"key\":\"{key}\"}}\n\n");
            if tx.send(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("response"))
}

fn big(key: &str, q: &Query) -> Result<Response<RespBody>, String> {
    const FRAME: usize = 1 << 20;
    let mib = q.num("mib", 1, MAX_MIB)?;
    let unit = format!("{key}.").into_bytes();
    // One frame's worth from any offset into the repetition.
    let base = Bytes::from(
        unit.iter()
            .copied()
            .cycle()
            .take(FRAME + unit.len())
            .collect::<Vec<u8>>(),
    );
    let (tx, body) = channel_body(None);
    tokio::spawn(async move {
        for i in 0..mib as usize {
            let start = (i * FRAME) % unit.len();
            if tx.send(base.slice(start..start + FRAME)).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .expect("response"))
}

fn gzip(key: &str, q: &Query, headers: &HeaderMap) -> Response<RespBody> {
    let asked = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let text = format!("compressed echo of {key}\n");
    if q.get("if_asked") == Some("1") && !asked {
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(full(text))
            .expect("response");
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(full(gzip_stored(text.as_bytes())))
        .expect("response")
}

/// A valid gzip member holding `data` in one stored (uncompressed)
/// deflate block: real gzip for any client, with no compressor needed.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("a short body");
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.push(1); // final block, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn redirect(key: &str) -> Response<RespBody> {
    let to = format!("/echo/landed?key={}", percent(key));
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, &to)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(full(format!("moved to {to}\n")))
        .expect("response")
}

fn trailers(key: &str) -> Response<RespBody> {
    let mut trailers = HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("key {key} refused")) {
        trailers.insert("grpc-message", v);
    }
    trailers.insert("grpc-status", http::HeaderValue::from_static("16"));
    let frames = vec![
        Ok::<_, io::Error>(Frame::data(Bytes::from_static(b"\x00\x00\x00\x00\x00"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(body)
        .expect("response")
}
