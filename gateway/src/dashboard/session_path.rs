//! The session's path key in the address: `/s/KEY/agents` is the page
//! `/agents` of the session whose path key is `KEY` (see
//! [`super::session`] for why a session lives in its address).
//!
//! [`strip`] runs before routing: it takes `/s/KEY` off the path and hands
//! the key on as a [`PathKey`] extension, so the routes and handlers see
//! the same paths as always. Only [`super::guard`] reads the key, when it
//! looks the session up.

use axum::extract::Request;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
use axum::middleware::Next;
use axum::response::Response;

use super::session::PATH_PREFIX;

/// The path key a request's address carried.
#[derive(Debug, Clone)]
pub struct PathKey(pub String);

/// `/s/KEY/rest?q` → (`KEY`, `/rest?q`); `None` for any other path or for
/// `/s/KEY` with no slash after it.
fn split(path_and_query: &str) -> Option<(&str, String)> {
    let rest = path_and_query.strip_prefix(PATH_PREFIX)?;
    let slash = rest.find('/')?;
    let (key, inner) = rest.split_at(slash);
    // The key ends at the first `/`; a `?` before it means there was none.
    if key.is_empty() || key.contains('?') {
        return None;
    }
    Some((key, inner.to_owned()))
}

/// Takes the session's path key off the address before routing.
pub async fn strip(mut req: Request, next: Next) -> Response {
    let parts = req
        .uri()
        .path_and_query()
        .and_then(|pq| split(pq.as_str()))
        .and_then(|(key, inner)| Some((key.to_owned(), inner.parse::<PathAndQuery>().ok()?)));
    if let Some((key, inner)) = parts {
        let mut uri = req.uri().clone().into_parts();
        uri.path_and_query = Some(inner);
        if let Ok(uri) = Uri::from_parts(uri) {
            *req.uri_mut() = uri;
            req.extensions_mut().insert(PathKey(key));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_first_segment_after_s() {
        assert_eq!(split("/s/abc/agents"), Some(("abc", "/agents".into())));
        assert_eq!(split("/s/abc/"), Some(("abc", "/".into())));
        assert_eq!(
            split("/s/abc/audit?page=2"),
            Some(("abc", "/audit?page=2".into()))
        );
        assert_eq!(split("/s/abc"), None);
        assert_eq!(split("/s//agents"), None);
        assert_eq!(split("/s/a?x=/b"), None);
        assert_eq!(split("/agents"), None);
        assert_eq!(split("/static/app.css"), None);
    }
}
