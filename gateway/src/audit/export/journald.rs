//! journald's native protocol: one datagram per line on its socket, with
//! the line as `MESSAGE` and the fields a `journalctl` filter wants
//! (`SYSLOG_IDENTIFIER=airlock`, `AIRLOCK_DECISION=exfiltration`), so
//! `journalctl -t airlock AIRLOCK_DECISION=exfiltration -o cat` prints the
//! JSON lines of exfiltration attempts.
//!
//! Each field is `NAME=value\n`; a value holding a newline would need the
//! protocol's binary form, but a line is JSON and holds none. A line is at
//! most tens of kilobytes, well under the datagram limit, so the
//! protocol's memfd path for large entries is not needed.

use std::io;
use std::path::PathBuf;

use super::datagram::Datagram;
use crate::audit::Decision;

/// Where journald listens for native messages.
pub const SOCKET: &str = "/run/systemd/journal/socket";

#[derive(Debug)]
pub struct Journald {
    socket: Datagram,
    message: Vec<u8>,
}

impl Journald {
    pub fn new(path: PathBuf) -> Self {
        Journald {
            socket: Datagram::new(path),
            message: Vec::with_capacity(4096),
        }
    }

    /// Sends one JSON line (without its newline).
    pub fn send(&mut self, line: &[u8], decision: Decision) -> io::Result<()> {
        let m = &mut self.message;
        m.clear();
        m.extend_from_slice(b"MESSAGE=");
        m.extend_from_slice(line);
        m.extend_from_slice(b"\nPRIORITY=");
        m.push(b'0' + super::priority(decision));
        m.extend_from_slice(b"\nSYSLOG_IDENTIFIER=airlock\nAIRLOCK_DECISION=");
        m.extend_from_slice(decision.as_str().as_bytes());
        m.push(b'\n');
        self.socket.send(m)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn one_datagram_of_fields_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut j = Journald::new(path);
        j.send(br#"{"a":1}"#, Decision::Exfiltration).unwrap();
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "MESSAGE={\"a\":1}\nPRIORITY=4\nSYSLOG_IDENTIFIER=airlock\n\
             AIRLOCK_DECISION=exfiltration\n"
        );
    }
}
