//! Python requests and Node's fetch through the proxy.

use std::process::Command;

use crate::support::gw::{CURL_TIMEOUT, Gw};
use crate::support::run;

#[test]
fn python_and_node_clients() {
    let gw = Gw::start();
    let py = format!(
        "import requests,sys\nr=requests.get('{}', proxies={{'https':'{}'}}, verify='{}')\nprint(r.status_code, r.json()['headers'].get('authorization',''))",
        gw.up.url("/echo/py"),
        gw.proxy_url(),
        gw.ca
    );
    let out = run(
        Command::new("python3").args(["-c", &py]),
        None,
        CURL_TIMEOUT,
    );
    // The upstream got the key; its echo of it comes back as the
    // placeholder (response scrubbing, tests/gateway/scrubbing.rs).
    assert!(out.stdout.starts_with("200 Bearer airlock:up"), "{out:#?}");
    let node_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/node");
    let js = format!(
        "const {{fetch, ProxyAgent}} = require('undici');\n\
         const fs = require('fs');\n\
         const agent = new ProxyAgent({{uri: 'http://{proxy}', token: 'Basic ' + Buffer.from('bot:{token}').toString('base64'), requestTls: {{ca: fs.readFileSync('{ca}')}}}});\n\
         fetch('{url}', {{dispatcher: agent}}).then(async r => {{ const j = await r.json(); console.log(r.status, j.headers.authorization); }}).catch(e => {{ console.error(e); process.exit(1); }});",
        proxy = gw.proxy,
        token = gw.token,
        ca = gw.ca,
        url = gw.up.url("/echo/node"),
    );
    let out = run(
        Command::new("node")
            .args(["-e", &js])
            .current_dir(&node_dir),
        None,
        CURL_TIMEOUT,
    );
    assert!(out.stdout.starts_with("200 Bearer airlock:up"), "{out:#?}");
    let seen = gw.up.requests_to("/echo/");
    assert_eq!(seen.len(), 2);
    let sent = format!("Bearer {}", gw.value);
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(sent.as_str()))
    );
}
