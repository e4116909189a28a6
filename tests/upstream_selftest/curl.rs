//! System curl against an upstream, its answer collected.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::upstream::Upstream;

pub(crate) struct Curl {
    pub(crate) exit: i32,
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: Vec<u8>,
    pub(crate) stderr: String,
}

impl Curl {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?}\nstderr: {}",
                String::from_utf8_lossy(&self.body),
                self.stderr
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().rev().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs curl against `up` (trusting its CA, resolving its host name to
/// 127.0.0.1), with `stdin` piped in if given.
pub(crate) fn curl_with(up: &Upstream, args: &[&str], stdin: Option<(u64, u8)>) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("headers");
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "15", "--cacert"])
        .arg(up.ca_pem_path())
        .arg("--resolve")
        .arg(up.curl_resolve())
        .arg("-D")
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn curl");
    let writer = stdin.map(|(len, byte)| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![byte; 1 << 20];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if pipe.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
        })
    });
    let out = child.wait_with_output().expect("curl output");
    if let Some(w) = writer {
        w.join().unwrap();
    }
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn curl(up: &Upstream, args: &[&str]) -> Curl {
    curl_with(up, args, None)
}

pub(crate) fn ok(c: &Curl) {
    assert_eq!(c.exit, 0, "curl failed: {}", c.stderr);
}
