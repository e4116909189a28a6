//! The OpenAPI document describes every route.

use crate::harness::*;
use crate::support::Daemon;

#[test]
fn openapi_document_describes_every_route() {
    let daemon = Daemon::start();
    let web = Web::of(&daemon);
    let token = api_token(&daemon, "docs");
    // Behind the same authentication as the rest of /api/v1.
    assert_eq!(
        web.api("GET", airlock::admin::OPENAPI_PATH, None, None)
            .code,
        401
    );
    let doc = web.api("GET", airlock::admin::OPENAPI_PATH, None, Some(&token));
    assert_eq!(doc.code, 200, "{doc:?}");
    let doc = doc.json();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3: {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    // The routes come from the router's own declaration, so a route added
    // there without a #[utoipa::path] fails here.
    let mut expected: Vec<(String, String)> = airlock::admin::API_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.push(("get".into(), airlock::admin::OPENAPI_PATH.into()));
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if let Some(op) = item.get(method) {
                assert!(
                    op["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                documented.push((method.to_owned(), path.clone()));
            }
        }
    }
    expected.sort();
    documented.sort();
    assert_eq!(
        documented, expected,
        "documented operations differ from the routes"
    );
    // Every schema a body refers to is defined.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "undefined schema {name}");
    }
    // A secret value is write-only in the document too.
    assert_eq!(
        doc["components"]["schemas"]["AddSecret"]["properties"]["value"]["writeOnly"],
        true
    );
}
