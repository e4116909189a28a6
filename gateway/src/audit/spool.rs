//! The audit spool: where request records wait, on disk, while the
//! database cannot take them.
//!
//! One append-only file, `<data dir>/audit-spool/records.log`, of frames
//! `[length u32 LE][CRC-32 u32 LE][JSON record]`. Each append writes whole
//! frames and `fdatasync`s before it returns, so a record the writer counts
//! as spooled survives a crash. An append that fails (disk full, the size
//! bound) is cut back to the previous end, so the file never holds half a
//! frame of ours; a torn last frame from a crash mid-write fails its length
//! or checksum and is cut off when the spool is opened. The file is bounded
//! (`[audit] spool_max_mb`): past it, appends fail like a full disk.
//!
//! Replay reads frames from an offset, the writer inserts them (skipping
//! records already in the database by their record id) and, once it has
//! reached the end, empties the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::AuditRecord;

/// The spool's directory under the data directory (a mount point of its
/// own is fine: the daemon only creates it when missing).
pub const DIR: &str = "audit-spool";
const FILE: &str = "records.log";
const HEADER: usize = 8;
/// A record is a few hundred bytes; a length past this is corruption.
const MAX_FRAME: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("audit spool {}: {what}: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("audit spool {} is full ({max} bytes, `[audit] spool_max_mb`)", .path.display())]
    Full { path: PathBuf, max: u64 },
    #[error("audit spool {}: a record cannot be encoded: {source}", .path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The open spool file.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    /// Bytes of whole frames in the file: where the next append goes.
    len: u64,
    max_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `data_dir`, cutting off a torn last
    /// frame. A frame that fails its checksum before the end is kept aside
    /// in `records.log.corrupt` for an operator, and the spool continues
    /// from the good frames before it.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let dir = data_dir.join(DIR);
        let path = dir.join(FILE);
        let io_err = |what| {
            let path = path.clone();
            move |source| SpoolError::Io { path, what, source }
        };
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(io_err("creating its directory"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening"))?;
        let size = file.metadata().map_err(io_err("reading its size"))?.len();
        let good = valid_prefix(&mut file).map_err(io_err("reading"))?;
        if good < size {
            tracing::error!(
                spool = %path.display(),
                kept = good,
                cut = size - good,
                "the audit spool ends in a damaged record (a crash mid-write?): keeping the \
                 records before it, moving the rest to records.log.corrupt"
            );
            keep_aside(&mut file, good, &path.with_extension("log.corrupt"))
                .map_err(io_err("setting the damaged end aside"))?;
            file.set_len(good)
                .map_err(io_err("cutting the damaged end"))?;
            file.sync_all().map_err(io_err("syncing"))?;
        }
        Ok(Spool {
            path,
            file,
            len: good,
            max_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of records waiting.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `records` as whole frames and syncs them to disk; on any
    /// failure the file is as it was.
    pub fn append(&mut self, records: &[AuditRecord]) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity(records.len() * 320);
        for r in records {
            encode_frame(r, &mut buf).map_err(|source| SpoolError::Encode {
                path: self.path.clone(),
                source,
            })?;
        }
        let new_len = self.len + buf.len() as u64;
        if new_len > self.max_bytes {
            return Err(SpoolError::Full {
                path: self.path.clone(),
                max: self.max_bytes,
            });
        }
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&buf))
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Cutting back frees what was written, even on a full disk.
            let _ = self.file.set_len(self.len);
            return Err(SpoolError::Io {
                path: self.path.clone(),
                what: "writing",
                source,
            });
        }
        self.len = new_len;
        Ok(())
    }

    /// Up to `max` records from byte `offset`, and the offset after them.
    pub fn read_from(
        &mut self,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<AuditRecord>, u64), SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: self.path.clone(),
            what: "reading",
            source,
        };
        self.file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        let mut reader = io::BufReader::new((&self.file).take(self.len - offset.min(self.len)));
        let mut out = Vec::new();
        let mut at = offset;
        while out.len() < max && at < self.len {
            match read_frame(&mut reader).map_err(io_err)? {
                Frame::Record(r, size) => {
                    out.push(*r);
                    at += size;
                }
                // Checked whole at open and written whole since: only a
                // change behind our back gets here.
                Frame::End | Frame::Damaged => break,
            }
        }
        Ok((out, at))
    }

    /// Empties the spool once everything in it is in the database.
    pub fn clear(&mut self) -> Result<(), SpoolError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(|source| SpoolError::Io {
                path: self.path.clone(),
                what: "emptying",
                source,
            })?;
        self.len = 0;
        Ok(())
    }
}

fn encode_frame(r: &AuditRecord, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    serde_json::to_writer(&mut *buf, r)?;
    let payload = &buf[start + HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

enum Frame {
    /// A record and the frame's size in bytes.
    Record(Box<AuditRecord>, u64),
    /// Nothing more: a clean end.
    End,
    /// A short, oversized or mis-summed frame.
    Damaged,
}

fn read_frame(r: &mut impl Read) -> io::Result<Frame> {
    let mut header = [0; HEADER];
    match read_full(r, &mut header)? {
        0 => return Ok(Frame::End),
        HEADER => {}
        _ => return Ok(Frame::Damaged),
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME {
        return Ok(Frame::Damaged);
    }
    let mut payload = vec![0; len as usize];
    if read_full(r, &mut payload)? != payload.len() || crc32fast::hash(&payload) != crc {
        return Ok(Frame::Damaged);
    }
    Ok(match serde_json::from_slice(&payload) {
        Ok(record) => Frame::Record(Box::new(record), HEADER as u64 + u64::from(len)),
        Err(_) => Frame::Damaged,
    })
}

/// Like `read_exact`, but says how much it got before the end.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The length of the run of whole, checksummed frames from the start.
fn valid_prefix(file: &mut File) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::new(&*file);
    let mut good = 0;
    while let Frame::Record(_, size) = read_frame(&mut reader)? {
        good += size;
    }
    Ok(good)
}

fn keep_aside(file: &mut File, from: u64, to: &Path) -> io::Result<()> {
    file.seek(SeekFrom::Start(from))?;
    let mut aside = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(to)?;
    io::copy(file, &mut aside)?;
    aside.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            agent: Some(format!("agent-{n}")),
            decision: Decision::Allowed,
            status: Some(200),
            ..AuditRecord::begin()
        }
    }

    fn all(spool: &mut Spool) -> Vec<AuditRecord> {
        spool.read_from(0, usize::MAX).unwrap().0
    }

    #[test]
    fn records_survive_a_reopen_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let batch: Vec<_> = (0..10).map(record).collect();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&batch[..4]).unwrap();
        spool.append(&batch[4..]).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all(&mut spool), batch);
        // Paged reads meet where the last one ended.
        let (first, next) = spool.read_from(0, 3).unwrap();
        let (rest, end) = spool.read_from(next, 100).unwrap();
        assert_eq!([first, rest].concat(), batch);
        assert_eq!(end, spool.len_bytes());
        spool.clear().unwrap();
        assert!(spool.is_empty());
        assert!(all(&mut Spool::open(dir.path(), 1 << 20).unwrap()).is_empty());
    }

    #[test]
    fn a_torn_last_frame_is_cut_off_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[record(1), record(2)]).unwrap();
        let good = spool.len_bytes();
        let path = spool.path().to_owned();
        drop(spool);
        // A crash in the middle of the next frame.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len_bytes(), good);
        assert_eq!(all(&mut spool).len(), 2);
        assert_eq!(
            fs::read(path.with_extension("log.corrupt")).unwrap().len(),
            9
        );
        // And appends continue after the good frames.
        spool.append(&[record(3)]).unwrap();
        assert_eq!(all(&mut spool).len(), 3);
    }

    #[test]
    fn a_flipped_byte_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[record(1)]).unwrap();
        let first = spool.len_bytes();
        spool.append(&[record(2)]).unwrap();
        let path = spool.path().to_owned();
        drop(spool);
        let mut bytes = fs::read(&path).unwrap();
        let i = usize::try_from(first).unwrap() + HEADER + 3;
        bytes[i] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all(&mut spool).len(), 1);
        assert_eq!(spool.len_bytes(), first);
    }

    #[test]
    fn the_bound_refuses_and_leaves_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1_000).unwrap();
        spool.append(&[record(1)]).unwrap();
        let before = spool.len_bytes();
        let many: Vec<_> = (0..20).map(record).collect();
        assert!(matches!(spool.append(&many), Err(SpoolError::Full { .. })));
        assert_eq!(spool.len_bytes(), before);
        assert_eq!(all(&mut spool).len(), 1);
    }
}
