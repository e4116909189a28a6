//! Headless Chromium driven through chromedriver (WebDriver) with
//! fantoccini, for the dashboard's end-to-end tests.
//!
//! [`Browser::start`] picks a free port, starts `/usr/bin/chromedriver` on
//! it in a process group of its own, and opens a session that launches
//! `/usr/bin/chromium` headless with a fresh profile directory. Dropping
//! the guard kills that process group (chromedriver and every Chromium
//! process it started), so nothing outlives the test.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long chromedriver may take to accept connections.
const DRIVER_READY: Duration = Duration::from_secs(30);

/// Are chromium and chromedriver installed (`cargo xtask setup` does it)?
pub fn available() -> bool {
    Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists()
}

/// A free TCP port on loopback: bind port 0, read it, close.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// Like [`Browser::start`], with extra Chromium switches (e.g.
    /// `--ignore-certificate-errors`, for a page served with a certificate
    /// the browser does not trust, as an operator clicking through the
    /// warning would).
    pub async fn start_with(extra_args: &[&str]) -> Browser {
        let port = free_port();
        let profile = tempfile::Builder::new()
            .prefix("airlock-chromium-")
            .tempdir()
            .expect("creating a Chromium profile directory");
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so drop can kill Chromium with it.
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + DRIVER_READY;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within {DRIVER_READY:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        let mut args = serde_json::json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            "--hide-scrollbars",
            format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ),
        ]);
        if let Some(list) = args.as_array_mut() {
            list.extend(extra_args.iter().map(|a| serde_json::json!(a)));
        }
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "opening a Chromium session failed: {e}; chromedriver log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Signs in with `password` on the dashboard's login page, which must be
    /// the current page, and waits for the overview. Returns the address
    /// the browser landed on: the session's own (`/s/KEY/`).
    pub async fn sign_in(&self, password: &str) -> url::Url {
        let c = &self.client;
        c.find(Locator::Id("password"))
            .await
            .expect("the password field")
            .send_keys(password)
            .await
            .expect("typing the password");
        c.find(Locator::Css("button[type=submit]"))
            .await
            .expect("the sign-in button")
            .click()
            .await
            .expect("clicking sign in");
        c.wait()
            .for_element(Locator::Css("nav a.active"))
            .await
            .expect("signed in: the overview");
        c.current_url().await.expect("the overview's address")
    }

    /// Saves a PNG of the current viewport as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        std::fs::create_dir_all(dir).expect("creating the screenshot directory");
        let png = self.client.screenshot().await.expect("taking a screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
