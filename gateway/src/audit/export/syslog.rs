//! syslog over the local socket (`/dev/log`): one datagram per line, in
//! the BSD format that glibc's `syslog(3)` writes (`<PRI>Mmm dd hh:mm:ss
//! airlock[PID]: MESSAGE`), because every local receiver parses it:
//! rsyslog, syslog-ng, and journald's own `/dev/log`. RFC 5424 would be
//! richer, but journald's syslog socket does not read it. The facility
//! is `daemon`; the severity follows the decision (see
//! [`super::priority`]).

use std::io;
use std::io::Write;
use std::path::PathBuf;

use super::datagram::Datagram;
use crate::audit::Decision;

pub const SOCKET: &str = "/dev/log";

const FACILITY_DAEMON: u8 = 3;

#[derive(Debug)]
pub struct Syslog {
    socket: Datagram,
    pid: u32,
    message: Vec<u8>,
}

impl Syslog {
    pub fn new(path: PathBuf) -> Self {
        Syslog {
            socket: Datagram::new(path),
            pid: std::process::id(),
            message: Vec::with_capacity(4096),
        }
    }

    /// Sends one JSON line (without its newline).
    pub fn send(&mut self, line: &[u8], decision: Decision) -> io::Result<()> {
        let m = &mut self.message;
        m.clear();
        let pri = FACILITY_DAEMON * 8 + super::priority(decision);
        // Local time, as syslog(3) does: the format has no zone.
        let now = chrono::Local::now().format("%b %e %H:%M:%S");
        write!(m, "<{pri}>{now} airlock[{}]: ", self.pid)?;
        m.extend_from_slice(line);
        self.socket.send(m)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn bsd_format_with_daemon_facility() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(path);
        s.send(br#"{"a":1}"#, Decision::Allowed).unwrap();
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<30>"), "{text}");
        assert!(
            text.ends_with(&format!(" airlock[{}]: {{\"a\":1}}", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn no_listener_is_an_error_and_a_later_one_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut s = Syslog::new(path.clone());
        assert!(s.send(b"{}", Decision::Allowed).is_err());
        let server = UnixDatagram::bind(&path).unwrap();
        s.send(b"{}", Decision::Blocked).unwrap();
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<29>"));
    }
}
