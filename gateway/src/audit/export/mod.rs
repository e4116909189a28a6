//! The audit trail where logs go: besides the database, each request's
//! record as one JSON line (OCSF field names, see [`ocsf`]) to a rotated
//! file, to journald, or to syslog, for the SIEM or log shipper a site
//! already runs.
//!
//! The database stays the trail of record (the hash chain, `airlock audit
//! verify`); the lines are a copy for other eyes, and so they are
//! best-effort by design: a sink that fails (disk full, journald gone)
//! never holds up the gateway or the database writer. The writer formats
//! each batch it takes from the queue into one buffer and hands it to the
//! exporter's own thread over a bounded channel without waiting; if the
//! thread is that far behind, the batch is dropped and counted. Failures
//! and drops are counted per sink in `/metrics`
//! (`airlock_audit_export_*`) and logged at most once a minute.
//!
//! A line is written when the writer takes its record, before the
//! database commits it: a line may exist for a record the database got
//! only from the spool later, never the other way round.

mod datagram;
mod file;
mod journald;
pub mod ocsf;
mod syslog;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use file::{DEFAULT_KEEP, DEFAULT_MAX_MB, JsonlSettings};

use super::{AuditRecord, Decision};
use file::JsonlFile;
use journald::Journald;
use syslog::Syslog;

/// Which sinks are on (`[audit]` settings, `airlock serve --audit-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSettings {
    pub jsonl: Option<JsonlSettings>,
    /// journald's native socket.
    pub journald: Option<PathBuf>,
    /// The local syslog socket.
    pub syslog: Option<PathBuf>,
}

impl ExportSettings {
    pub fn is_empty(&self) -> bool {
        self.jsonl.is_none() && self.journald.is_none() && self.syslog.is_none()
    }

    /// journald at its usual socket.
    pub fn journald_default() -> PathBuf {
        PathBuf::from(journald::SOCKET)
    }

    /// syslog at its usual socket.
    pub fn syslog_default() -> PathBuf {
        PathBuf::from(syslog::SOCKET)
    }
}

/// A sink, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    File,
    Journald,
    Syslog,
}

impl SinkKind {
    pub const ALL: [SinkKind; 3] = [SinkKind::File, SinkKind::Journald, SinkKind::Syslog];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Journald => "journald",
            SinkKind::Syslog => "syslog",
        }
    }
}

/// What the sinks did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Which sinks are configured (only those are reported).
    enabled: [AtomicU64; 3],
    lines: [AtomicU64; 3],
    failed: [AtomicU64; 3],
    /// Lines dropped before any sink saw them: the exporter was behind.
    dropped: AtomicU64,
}

/// One sink's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkFigures {
    pub sink: SinkKind,
    pub lines: u64,
    pub failed: u64,
}

impl ExportCounters {
    /// The configured sinks' figures.
    pub fn sinks(&self) -> Vec<SinkFigures> {
        SinkKind::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.enabled[*i].load(Ordering::Relaxed) != 0)
            .map(|(i, &sink)| SinkFigures {
                sink,
                lines: self.lines[i].load(Ordering::Relaxed),
                failed: self.failed[i].load(Ordering::Relaxed),
            })
            .collect()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Why a sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "cannot open the audit JSON-lines file {path}: {source}; create its directory \
         or choose another path (--audit-jsonl)"
    )]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot reach {what} at {path}: {source}; is it running here? Without it, \
         drop {flag} (--audit-jsonl writes a file instead)"
    )]
    Socket {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the audit export thread: {0}")]
    Thread(std::io::Error),
}

/// Batches formatted ahead of a slow sink before new ones are dropped:
/// with the writer's batches of up to 500, tens of thousands of lines.
const QUEUE_BATCHES: usize = 64;

/// A formatted batch: the lines, and where each ends with its decision
/// (the datagram sinks send one line at a time, tagged with it).
struct Batch {
    text: Vec<u8>,
    lines: Vec<(usize, Decision)>,
}

/// The writer's handle on the export thread.
#[derive(Debug)]
pub struct Exporter {
    tx: Option<SyncSender<Batch>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<ExportCounters>,
    drop_log: Throttle,
}

impl Exporter {
    /// Opens every configured sink (so a wrong path fails `airlock serve`
    /// at once, with its reason) and starts the thread; `None` when no
    /// sink is configured.
    pub fn start(
        settings: &ExportSettings,
        counters: Arc<ExportCounters>,
    ) -> Result<Option<Exporter>, ExportError> {
        if settings.is_empty() {
            return Ok(None);
        }
        let mut sinks = Sinks::default();
        if let Some(s) = &settings.jsonl {
            let mut f = JsonlFile::new(s.clone());
            f.open_now().map_err(|source| ExportError::File {
                path: s.path.clone(),
                source,
            })?;
            sinks.file = Some(f);
        }
        if let Some(path) = &settings.journald {
            probe_socket(path, "journald", "--audit-journald")?;
            sinks.journald = Some(Journald::new(path.clone()));
        }
        if let Some(path) = &settings.syslog {
            probe_socket(path, "syslog", "--audit-syslog")?;
            sinks.syslog = Some(Syslog::new(path.clone()));
        }
        for (i, on) in sinks.enabled().into_iter().enumerate() {
            counters.enabled[i].store(u64::from(on), Ordering::Relaxed);
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_BATCHES);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("audit-export".into())
            .spawn(move || sinks.run(rx, &c))
            .map_err(ExportError::Thread)?;
        Ok(Some(Exporter {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            drop_log: Throttle::default(),
        }))
    }

    /// Formats `records` and hands them to the thread; never waits.
    pub fn emit(&mut self, records: &[AuditRecord]) {
        let Some(tx) = &self.tx else { return };
        if records.is_empty() {
            return;
        }
        let mut batch = Batch {
            text: Vec::with_capacity(records.len() * 768),
            lines: Vec::with_capacity(records.len()),
        };
        for r in records {
            ocsf::write_line(r, &mut batch.text);
            batch.lines.push((batch.text.len(), r.decision));
        }
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                let n = b.lines.len() as u64;
                let total = self.counters.dropped.fetch_add(n, Ordering::Relaxed) + n;
                if self.drop_log.ready() {
                    tracing::warn!(
                        dropped_total = total,
                        "audit export is behind its sinks: lines are being dropped \
                         (the database trail is unaffected)"
                    );
                }
            }
        }
    }

    /// Lets the thread write what it holds, then waits for it: at
    /// shutdown, so the last lines are not lost. Blocking; call it off
    /// the async runtime.
    pub fn close(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens, without keeping, a connection to a datagram sink's socket.
fn probe_socket(
    path: &std::path::Path,
    what: &'static str,
    flag: &'static str,
) -> Result<(), ExportError> {
    let s = std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.connect(path).map(|()| s));
    s.map(drop).map_err(|source| ExportError::Socket {
        what,
        flag,
        path: path.to_owned(),
        source,
    })
}

/// The syslog severity of a decision: exfiltration attempts stand out,
/// refusals are notices, the rest informational.
fn priority(d: Decision) -> u8 {
    match d {
        Decision::Exfiltration => 4,
        d if d.is_refusal() => 5,
        _ => 6,
    }
}

/// The sinks, owned by the export thread.
#[derive(Default)]
struct Sinks {
    file: Option<JsonlFile>,
    journald: Option<Journald>,
    syslog: Option<Syslog>,
    logs: [Throttle; 3],
}

impl Sinks {
    fn enabled(&self) -> [bool; 3] {
        [
            self.file.is_some(),
            self.journald.is_some(),
            self.syslog.is_some(),
        ]
    }

    fn run(mut self, rx: Receiver<Batch>, counters: &ExportCounters) {
        while let Ok(batch) = rx.recv() {
            self.write(&batch, counters);
        }
    }

    fn write(&mut self, batch: &Batch, counters: &ExportCounters) {
        let n = batch.lines.len() as u64;
        if let Some(f) = &mut self.file {
            let r = f.write(&batch.text);
            account(SinkKind::File, r.map(|()| n), n, counters, &mut self.logs);
        }
        if let Some(j) = &mut self.journald {
            let r = each_line(batch, |line, d| j.send(line, d));
            account(SinkKind::Journald, r, n, counters, &mut self.logs);
        }
        if let Some(s) = &mut self.syslog {
            let r = each_line(batch, |line, d| s.send(line, d));
            account(SinkKind::Syslog, r, n, counters, &mut self.logs);
        }
    }
}

/// Sends each line (without its newline); the count sent, or the first
/// error once the rest were tried too.
fn each_line(
    batch: &Batch,
    mut send: impl FnMut(&[u8], Decision) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut start = 0;
    let mut sent = 0;
    let mut first_error = None;
    for &(end, decision) in &batch.lines {
        let line = &batch.text[start..end];
        start = end;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        match send(line, decision) {
            Ok(()) => sent += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if sent == 0 => Err(e),
        Some(e) => Err(std::io::Error::new(
            e.kind(),
            format!("{sent} of {} lines sent: {e}", batch.lines.len()),
        )),
        None => Ok(sent),
    }
}

fn account(
    sink: SinkKind,
    result: std::io::Result<u64>,
    total: u64,
    counters: &ExportCounters,
    logs: &mut [Throttle; 3],
) {
    let i = sink as usize;
    match result {
        Ok(sent) => {
            counters.lines[i].fetch_add(sent, Ordering::Relaxed);
        }
        Err(e) => {
            // Lines that went (a partial datagram batch) are not known
            // here; count the whole batch as failed, which errs towards
            // an operator looking.
            let failed = counters.failed[i].fetch_add(total, Ordering::Relaxed) + total;
            if logs[i].ready() {
                tracing::warn!(
                    sink = sink.as_str(),
                    error = %e,
                    failed_total = failed,
                    "audit export sink failed; lines for it are being lost \
                     (the database trail is unaffected)"
                );
            }
        }
    }
}

/// At most one log line a minute for a repeating failure.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(60);

    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn record(decision: Decision) -> AuditRecord {
        AuditRecord {
            agent: Some("a".into()),
            method: Some("GET".into()),
            host: Some("h.example".into()),
            path: Some("/".into()),
            decision,
            status: Some(200),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn every_sink_gets_every_line_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let syslog_path = dir.path().join("log");
        let server = UnixDatagram::bind(&syslog_path).unwrap();
        let settings = ExportSettings {
            jsonl: Some(JsonlSettings {
                path: dir.path().join("audit.jsonl"),
                max_bytes: 1 << 20,
                keep: 1,
            }),
            journald: None,
            syslog: Some(syslog_path),
        };
        let counters = Arc::new(ExportCounters::default());
        let mut e = Exporter::start(&settings, counters.clone())
            .unwrap()
            .unwrap();
        e.emit(&[record(Decision::Allowed), record(Decision::Blocked)]);
        e.close();
        let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        let mut buf = [0u8; 4096];
        for _ in 0..2 {
            let n = server.recv(&mut buf).unwrap();
            assert!(buf[..n].ends_with(b"}"));
        }
        let figures = counters.sinks();
        assert_eq!(
            figures,
            [
                SinkFigures {
                    sink: SinkKind::File,
                    lines: 2,
                    failed: 0
                },
                SinkFigures {
                    sink: SinkKind::Syslog,
                    lines: 2,
                    failed: 0
                }
            ]
        );
    }

    #[test]
    fn a_sink_that_goes_away_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let settings = ExportSettings {
            syslog: Some(path.clone()),
            ..ExportSettings::default()
        };
        let counters = Arc::new(ExportCounters::default());
        let mut e = Exporter::start(&settings, counters.clone())
            .unwrap()
            .unwrap();
        drop(server);
        std::fs::remove_file(&path).unwrap();
        e.emit(&[record(Decision::Allowed)]);
        e.close();
        assert_eq!(counters.sinks()[0].failed, 1);
        assert_eq!(counters.sinks()[0].lines, 0);
    }

    #[test]
    fn a_missing_socket_or_directory_fails_at_start_with_the_flag_named() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(ExportCounters::default());
        let e = Exporter::start(
            &ExportSettings {
                journald: Some(dir.path().join("none")),
                ..ExportSettings::default()
            },
            counters.clone(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--audit-journald"), "{e}");
        let e = Exporter::start(
            &ExportSettings {
                jsonl: Some(JsonlSettings {
                    path: dir.path().join("no/such/dir.jsonl"),
                    max_bytes: 1,
                    keep: 1,
                }),
                ..ExportSettings::default()
            },
            counters,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--audit-jsonl"), "{e}");
    }

    #[test]
    fn nothing_configured_starts_nothing() {
        let counters = Arc::new(ExportCounters::default());
        assert!(
            Exporter::start(&ExportSettings::default(), counters)
                .unwrap()
                .is_none()
        );
    }
}
