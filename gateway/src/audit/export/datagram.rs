//! A Unix datagram socket that connects on first use and again after a
//! failure, for the journald and syslog sinks: their daemon may start
//! after Airlock, or restart under it, and neither must stop the gateway.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

#[derive(Debug)]
pub struct Datagram {
    path: PathBuf,
    socket: Option<UnixDatagram>,
}

impl Datagram {
    pub fn new(path: PathBuf) -> Self {
        Datagram { path, socket: None }
    }

    /// Sends one message; on an error the socket is dropped, so the next
    /// message connects again (to a restarted daemon's new socket).
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let socket = match &self.socket {
            Some(s) => s,
            None => {
                let s = UnixDatagram::unbound()?;
                s.connect(&self.path)?;
                self.socket.insert(s)
            }
        };
        match socket.send(message) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.socket = None;
                Err(e)
            }
        }
    }
}
