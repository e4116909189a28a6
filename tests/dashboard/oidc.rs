//! OpenID Connect login, against a fake issuer, for allowed e-mails only.

use crate::harness::*;
use crate::support::Daemon;

/// A fake OpenID Connect issuer on loopback (plain HTTP: the crate accepts
/// an `http://` issuer, and TLS is not what this test is about). It signs
/// ID tokens with an Ed25519 key made by rcgen, for the e-mail the test
/// chooses, with the nonce of the last `/authorize`.
mod fake_issuer {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Form, Query, State};
    use axum::response::{IntoResponse, Redirect, Response};
    use axum::routing::{get, post};
    use openidconnect::core::{
        CoreEdDsaPrivateSigningKey, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    };
    use openidconnect::{
        Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, JsonWebKeyId, Nonce,
        PrivateSigningKey, StandardClaims, SubjectIdentifier,
    };

    pub struct Issuer {
        pub url: String,
        state: Arc<Mutex<Shared>>,
        _runtime: tokio::runtime::Runtime,
    }

    struct Shared {
        url: String,
        key: CoreEdDsaPrivateSigningKey,
        nonce: Option<String>,
        email: String,
        tamper: bool,
    }

    impl Issuer {
        pub fn start() -> Issuer {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind the issuer");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .expect("Ed25519 key")
                .serialize_pem();
            let key = CoreEdDsaPrivateSigningKey::from_ed25519_pem(
                &pem,
                Some(JsonWebKeyId::new("k1".into())),
            )
            .expect("key");
            let state = Arc::new(Mutex::new(Shared {
                url: url.clone(),
                key,
                nonce: None,
                email: String::new(),
                tamper: false,
            }));
            let app = Router::new()
                .route("/.well-known/openid-configuration", get(discovery))
                .route("/jwks", get(jwks))
                .route("/authorize", get(authorize))
                .route("/token", post(token))
                .with_state(state.clone());
            runtime.spawn(async move { axum::serve(listener, app).await });
            Issuer {
                url,
                state,
                _runtime: runtime,
            }
        }

        /// The next ID token is for `email`, its signature broken if `tamper`.
        pub fn next_login(&self, email: &str, tamper: bool) {
            let mut s = self.state.lock().expect("lock");
            s.email = email.to_owned();
            s.tamper = tamper;
        }
    }

    type St = State<Arc<Mutex<Shared>>>;

    async fn discovery(State(s): St) -> Response {
        let url = s.lock().expect("lock").url.clone();
        axum::Json(serde_json::json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        }))
        .into_response()
    }

    async fn jwks(State(s): St) -> Response {
        let key = s.lock().expect("lock").key.as_verification_key();
        axum::Json(serde_json::json!({ "keys": [key] })).into_response()
    }

    /// Logs the user in at once and sends the browser back.
    async fn authorize(State(s): St, Query(q): Query<HashMap<String, String>>) -> Response {
        assert_eq!(
            q.get("code_challenge_method").map(String::as_str),
            Some("S256")
        );
        s.lock().expect("lock").nonce = q.get("nonce").cloned();
        let back = format!(
            "{}?code=the-code&state={}",
            q["redirect_uri"],
            q.get("state").map(String::as_str).unwrap_or_default()
        );
        Redirect::to(&back).into_response()
    }

    async fn token(State(s): St, Form(f): Form<HashMap<String, String>>) -> Response {
        assert_eq!(f.get("code").map(String::as_str), Some("the-code"));
        assert!(f.contains_key("code_verifier"), "PKCE: {f:?}");
        let s = s.lock().expect("lock");
        let now = chrono::Utc::now();
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(s.url.clone()).expect("issuer"),
            vec![Audience::new("airlock".into())],
            now + chrono::Duration::minutes(5),
            now,
            StandardClaims::new(SubjectIdentifier::new("user-1".into()))
                .set_email(Some(EndUserEmail::new(s.email.clone())))
                .set_email_verified(Some(true)),
            EmptyAdditionalClaims {},
        )
        .set_nonce(s.nonce.clone().map(Nonce::new));
        let token = CoreIdToken::new(claims, &s.key, CoreJwsSigningAlgorithm::EdDsa, None, None)
            .expect("sign");
        let mut jwt = serde_json::to_value(&token)
            .expect("jwt")
            .as_str()
            .expect("compact JWT")
            .to_owned();
        if s.tamper {
            // Flip the signature's first character: still base64url, no
            // longer the signature.
            let at = jwt.rfind('.').expect("three parts") + 1;
            let c = if jwt[at..].starts_with('A') { "B" } else { "A" };
            jwt.replace_range(at..at + 1, c);
        }
        axum::Json(serde_json::json!({
            "access_token": "at",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": jwt,
        }))
        .into_response()
    }
}

#[test]
fn openid_connect_login_for_allowed_emails_only() {
    let issuer = fake_issuer::Issuer::start();
    let daemon = Daemon::builder()
        .env("AIRLOCK_OIDC_ISSUER", issuer.url.clone())
        .env("AIRLOCK_OIDC_CLIENT_ID", "airlock")
        .env("AIRLOCK_OIDC_CLIENT_SECRET", "client-secret-value")
        .env("AIRLOCK_OIDC_ALLOWED_EMAILS", "alice@example.com")
        .env("AIRLOCK_OIDC_ALLOWED_DOMAIN", "corp.example")
        .start();
    let host = issuer.url.trim_start_matches("http://").to_owned();
    let login_via_issuer = |email: &str, tamper: bool| {
        issuer.next_login(email, tamper);
        let web = Web::of(&daemon);
        let form = web.get("/login");
        assert!(
            form.body.contains(&format!("Sign in with {host}")),
            "{form:?}"
        );
        // Dashboard -> issuer -> callback, cookies kept across the hops.
        let url = format!("{}/login/oidc", web.base);
        let end = web.curl(&["-L", &url]);
        (web, end)
    };

    // An allowed address (listed) and one of the allowed domain get in.
    for email in ["alice@example.com", "bob@corp.example"] {
        let (web, end) = login_via_issuer(email, false);
        assert_eq!(end.code, 200, "{email}: {end:?}");
        let home = web.get("/");
        assert_eq!(home.code, 200, "{email} is logged in: {home:?}");
    }

    // Anyone else is refused, with a clear page and no session.
    let (web, end) = login_via_issuer("eve@example.org", false);
    assert_eq!(end.code, 403, "{end:?}");
    assert!(
        end.body.contains("eve@example.org is not allowed"),
        "{end:?}"
    );
    assert_eq!(web.get("/").code, 303, "no session for eve");

    // A token whose signature does not verify is refused.
    let (web, end) = login_via_issuer("alice@example.com", true);
    assert_eq!(end.code, 403, "{end:?}");
    assert!(end.body.contains("ID token is invalid"), "{end:?}");
    assert_eq!(web.get("/").code, 303, "no session for a forged token");

    // A callback with a state this browser did not start is refused.
    let stray = Web::of(&daemon).get("/login/oidc/callback?code=the-code&state=forged");
    assert_eq!(stray.code, 403, "{stray:?}");

    // Every attempt is in the audit trail; the secret is never logged.
    let audit = daemon.db().psql(
        "SELECT decision || ' ' || coalesce(detail, '') FROM audit_events \
         WHERE kind = 'admin' AND decision LIKE 'dashboard.login%' ORDER BY id",
    );
    assert_eq!(audit.matches("dashboard.login_oidc").count(), 2, "{audit}");
    assert!(
        audit.contains("dashboard.login_refused eve@example.org is not allowed"),
        "{audit}"
    );
    assert!(audit.contains("dashboard.login_failed"), "{audit}");
    assert!(!daemon.log().contains("client-secret-value"));
}
