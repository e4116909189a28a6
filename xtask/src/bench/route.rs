//! How a client reaches the upstream: the benchmark's one scenario
//! abstraction. Every measurement (oha's runs, the Python helpers for idle
//! connections and server-sent events) takes a [`Route`], so a new peer is
//! one module that starts its process and returns a route.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use super::upstream;

/// What the client dials.
#[derive(Clone)]
pub enum Reach {
    /// 127.0.0.1 itself, sending the key itself (the baseline).
    Direct { authorization: String },
    /// An explicit proxy, with `CONNECT host:port`; the proxy adds the key.
    Proxy {
        addr: String,
        proxy_authorization: Option<String>,
    },
    /// 127.0.0.1, from inside an agent's cgroup, so the kernel redirects the
    /// connection to the gateway; `wrapper` is the command that runs a
    /// client there (`airlock run --agent NAME --`).
    Agent { wrapper: Vec<OsString> },
    /// A reverse proxy in place of the upstream (nginx doing the same
    /// work): the URL names the upstream, the connection goes to `port`,
    /// and the proxy adds the key.
    Reverse { port: u16 },
}

/// A process whose CPU time and memory count as the proxy's.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    pub pid: u32,
    /// Count its direct children too (squid's helpers).
    pub tree: bool,
}

#[derive(Clone)]
pub struct Route {
    /// The scenario's name in the results: `direct`, `airlock-explicit`, ...
    pub name: &'static str,
    pub reach: Reach,
    /// The CA the client trusts: the upstream's, or the proxy's own.
    pub cacert: PathBuf,
    /// The name in the URL and the TLS SNI. Peers that cannot be told how to
    /// resolve [`upstream::HOST`] get `127.0.0.1` (in the certificate too).
    pub host: &'static str,
    /// The proxy's process (none for direct).
    pub proxy: Option<Watched>,
    /// The gateway's PostgreSQL, whose CPU per request is reported apart.
    pub store_pid: Option<u32>,
}

impl Route {
    pub fn direct(cacert: PathBuf) -> Route {
        Route {
            name: "direct",
            reach: Reach::Direct {
                authorization: upstream::EXPECTED_AUTH.to_owned(),
            },
            cacert,
            host: upstream::HOST,
            proxy: None,
            store_pid: None,
        }
    }

    /// The same route to another of the upstream's names (the
    /// certificate covers `*.bench.local`).
    pub fn with_host(&self, host: &'static str) -> Route {
        Route {
            host,
            ..self.clone()
        }
    }

    pub fn is_direct(&self) -> bool {
        matches!(self.reach, Reach::Direct { .. })
    }

    /// mitmproxy or squid: measured for comparison, allowed to fall over.
    pub fn is_peer(&self) -> bool {
        !self.is_direct() && !self.name.starts_with("airlock")
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        format!("https://{}:{port}{path}", self.host)
    }

    /// `program` run the way this route's clients run: inside the agent's
    /// cgroup for [`Reach::Agent`], as it is otherwise.
    pub fn command(&self, program: impl Into<OsString>) -> Command {
        match &self.reach {
            Reach::Agent { wrapper } if !wrapper.is_empty() => {
                let mut c = Command::new(&wrapper[0]);
                c.args(&wrapper[1..]).arg(program.into());
                c
            }
            _ => Command::new(program.into()),
        }
    }

    /// oha's arguments for reaching `port` this way (before the URL).
    pub fn oha_args(&self, port: u16) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--cacert".into(), self.cacert.clone().into()];
        let connect_to = || format!("{h}:{port}:127.0.0.1:{port}", h = self.host);
        match &self.reach {
            Reach::Direct { authorization } => {
                a.push("-H".into());
                a.push(format!("Authorization: {authorization}").into());
                a.push("--connect-to".into());
                a.push(connect_to().into());
            }
            Reach::Proxy {
                addr,
                proxy_authorization,
            } => {
                // oha resolves the target's name up front unless told not
                // to; only the proxy can resolve it.
                a.push("--no-pre-lookup".into());
                a.push("-x".into());
                a.push(format!("http://{addr}").into());
                if let Some(auth) = proxy_authorization {
                    a.push("--proxy-header".into());
                    a.push(format!("Proxy-Authorization: {auth}").into());
                }
            }
            Reach::Agent { .. } => {
                a.push("--connect-to".into());
                a.push(connect_to().into());
            }
            Reach::Reverse { port: to } => {
                a.push("--connect-to".into());
                a.push(format!("{h}:{port}:127.0.0.1:{to}", h = self.host).into());
            }
        }
        a
    }

    /// curl's arguments for `path` on `port` this way.
    pub fn curl_args(&self, port: u16, path: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-sS".into(),
            "--max-time".into(),
            "20".into(),
            "--cacert".into(),
            self.cacert.clone().into(),
        ];
        // No proxy from the environment, where none is meant.
        let resolve = || -> [OsString; 4] {
            [
                "--noproxy".into(),
                "*".into(),
                "--resolve".into(),
                format!("{h}:{port}:127.0.0.1", h = self.host).into(),
            ]
        };
        match &self.reach {
            Reach::Direct { authorization } => {
                a.push("-H".into());
                a.push(format!("Authorization: {authorization}").into());
                a.extend(resolve());
            }
            Reach::Proxy {
                addr,
                proxy_authorization,
            } => {
                a.push("--proxy".into());
                a.push(format!("http://{addr}").into());
                if let Some(auth) = proxy_authorization {
                    a.push("--proxy-header".into());
                    a.push(format!("Proxy-Authorization: {auth}").into());
                }
            }
            Reach::Agent { .. } => a.extend(resolve()),
            Reach::Reverse { port: to } => {
                a.push("--noproxy".into());
                a.push("*".into());
                a.push("--connect-to".into());
                a.push(format!("{h}:{port}:127.0.0.1:{to}", h = self.host).into());
            }
        }
        a.push(self.url(port, path).into());
        a
    }

    /// The route arguments of `bench/py/common.py`.
    pub fn py_args(&self, port: u16) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--host".into(),
            self.host.into(),
            "--port".into(),
            port.to_string().into(),
            "--cacert".into(),
            self.cacert.clone().into(),
        ];
        match &self.reach {
            Reach::Direct { authorization } => {
                a.push("--auth".into());
                a.push(authorization.into());
            }
            Reach::Proxy {
                addr,
                proxy_authorization,
            } => {
                a.push("--proxy".into());
                a.push(addr.into());
                if let Some(auth) = proxy_authorization {
                    a.push("--proxy-auth".into());
                    a.push(auth.into());
                }
            }
            // The Python helpers (idle connections, SSE) dial the
            // upstream's port; the reverse peer is not measured by them.
            Reach::Agent { .. } | Reach::Reverse { .. } => {}
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn each_reach_dials_what_it_says() {
        let direct = Route::direct("/ca.pem".into());
        let a = strings(direct.oha_args(8443));
        assert!(a.contains(&"Authorization: Bearer sk-bench".to_owned()));
        assert!(a.contains(&"bench.local:8443:127.0.0.1:8443".to_owned()));
        assert!(!a.contains(&"-x".to_owned()));

        let proxied = Route {
            name: "p",
            reach: Reach::Proxy {
                addr: "127.0.0.1:3128".into(),
                proxy_authorization: None,
            },
            host: "127.0.0.1",
            ..Route::direct("/ca.pem".into())
        };
        let a = strings(proxied.oha_args(8443));
        assert!(a.contains(&"http://127.0.0.1:3128".to_owned()));
        assert!(!a.iter().any(|s| s.starts_with("Authorization")));
        assert!(!a.contains(&"--proxy-header".to_owned()));
        let c = strings(proxied.curl_args(8443, "/x"));
        // --noproxy '*' would override --proxy.
        assert!(!c.contains(&"--noproxy".to_owned()));
        assert_eq!(
            c.last().map(String::as_str),
            Some("https://127.0.0.1:8443/x")
        );

        let agent = Route {
            name: "t",
            reach: Reach::Agent {
                wrapper: vec!["airlock".into(), "run".into(), "--".into()],
            },
            ..Route::direct("/ca.pem".into())
        };
        let c = agent.command("oha");
        assert_eq!(c.get_program(), "airlock");
        assert_eq!(
            c.get_args().collect::<Vec<_>>(),
            ["run", "--", "oha"].map(std::ffi::OsStr::new)
        );
        assert!(!strings(agent.py_args(1)).contains(&"--auth".to_owned()));

        // The reverse peer: the upstream's URL, the peer's port, no key.
        let reverse = Route {
            name: "n",
            reach: Reach::Reverse { port: 9443 },
            ..Route::direct("/ca.pem".into())
        };
        let a = strings(reverse.oha_args(8443));
        assert!(a.contains(&"bench.local:8443:127.0.0.1:9443".to_owned()));
        assert!(!a.iter().any(|s| s.starts_with("Authorization")));
        let c = strings(reverse.curl_args(8443, "/x"));
        assert!(c.contains(&"bench.local:8443:127.0.0.1:9443".to_owned()));
        assert_eq!(
            c.last().map(String::as_str),
            Some("https://bench.local:8443/x")
        );
        let other = reverse.with_host(upstream::OAUTH2_HOST);
        assert_eq!(other.url(1, "/y"), "https://oauth2.bench.local:1/y");
    }
}
