//! The JSON-lines file: appended, rotated by size, and reopened when
//! something else moved it.
//!
//! Rotation is built in (`PATH` → `PATH.1` → … → `PATH.KEEP`, the oldest
//! deleted) so the file is bounded without a logrotate set-up; a logrotate
//! that renames the file instead (its default, `create`) works too, since
//! the path is checked before each batch and reopened when it no longer
//! names the open file. A batch is written with one `write` and, should it
//! fail part-way (the disk full), cut back to where it started, so a reader
//! never sees a torn line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The sink's settings: `[audit] jsonl`, `jsonl_max_mb`, `jsonl_keep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlSettings {
    pub path: PathBuf,
    /// Past this size the file is rotated (before the batch that would
    /// cross it).
    pub max_bytes: u64,
    /// Rotated files kept beside the live one.
    pub keep: u32,
}

pub const DEFAULT_MAX_MB: u64 = 100;
pub const DEFAULT_KEEP: u32 = 5;

#[derive(Debug)]
pub struct JsonlFile {
    settings: JsonlSettings,
    open: Option<Open>,
    /// The rotated file's metadata, for the file that replaces it.
    inherit: Option<fs::Metadata>,
}

#[derive(Debug)]
struct Open {
    file: File,
    len: u64,
    /// Device and inode, to notice the path moving to another file.
    id: (u64, u64),
}

impl JsonlFile {
    pub fn new(settings: JsonlSettings) -> Self {
        JsonlFile {
            settings,
            open: None,
            inherit: None,
        }
    }

    /// Opens (creating) the file now: at start, so a path that cannot be
    /// written is refused before the gateway serves.
    pub fn open_now(&mut self) -> io::Result<()> {
        if self.open.is_none() {
            self.open = Some(open(&self.settings.path, self.inherit.take())?);
        }
        Ok(())
    }

    /// Appends `lines` (whole lines, each ending in `\n`).
    pub fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.check_path();
        self.open_now()?;
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.len > 0 && o.len + lines.len() as u64 > self.settings.max_bytes)
        {
            self.rotate()?;
            self.open_now()?;
        }
        let Some(o) = &mut self.open else {
            return Err(io::Error::other("the audit JSON-lines file is not open"));
        };
        if let Err(e) = o.file.write_all(lines) {
            // Keep the file whole: cut off what part of the batch went in.
            // Should even that fail, reopen next time and trust the length.
            if o.file.set_len(o.len).is_err() {
                self.open = None;
            }
            return Err(e);
        }
        o.len += lines.len() as u64;
        Ok(())
    }

    /// Drops the open file when the path no longer names it (moved or
    /// deleted by logrotate or a person), so the next write creates it anew.
    fn check_path(&mut self) {
        if let Some(o) = &self.open {
            let same = fs::metadata(&self.settings.path)
                .map(|m| (m.dev(), m.ino()) == o.id)
                .unwrap_or(false);
            if !same {
                self.open = None;
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The new file gets the old one's mode and group, so a shipper
        // given access once (`chgrp adm`, `chmod 0640`) keeps it.
        self.inherit = self.open.take().and_then(|o| o.file.metadata().ok());
        let path = &self.settings.path;
        if self.settings.keep == 0 {
            return fs::remove_file(path).or_else(not_found_is_fine);
        }
        fs::remove_file(numbered(path, self.settings.keep)).or_else(not_found_is_fine)?;
        for n in (1..self.settings.keep).rev() {
            fs::rename(numbered(path, n), numbered(path, n + 1)).or_else(not_found_is_fine)?;
        }
        fs::rename(path, numbered(path, 1)).or_else(not_found_is_fine)
    }
}

fn not_found_is_fine(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Opens for appending. A file it creates is `0640` (whatever the
/// daemon's umask: readable by a log shipper in its group, by no one
/// else; the trail names agents, hosts and paths), or, replacing a rotated
/// one, that one's mode and group.
fn open(path: &Path, inherit: Option<fs::Metadata>) -> io::Result<Open> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    if !existed {
        let (mode, gid) = match &inherit {
            Some(m) => (m.mode() & 0o7777, Some(m.gid())),
            None => (0o640, None),
        };
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(gid) = gid {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
        }
    }
    let m = file.metadata()?;
    Ok(Open {
        len: m.len(),
        id: (m.dev(), m.ino()),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path, max_bytes: u64, keep: u32) -> JsonlFile {
        JsonlFile::new(JsonlSettings {
            path: dir.join("audit.jsonl"),
            max_bytes,
            keep,
        })
    }

    fn read(p: PathBuf) -> String {
        fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn appends_and_rotates_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), 10, 2);
        for line in ["a1234567\n", "b1234567\n", "c1234567\n", "d1234567\n"] {
            s.write(line.as_bytes()).unwrap();
        }
        let p = dir.path().join("audit.jsonl");
        assert_eq!(read(p.clone()), "d1234567\n");
        assert_eq!(read(numbered(&p, 1)), "c1234567\n");
        assert_eq!(read(numbered(&p, 2)), "b1234567\n");
        assert!(!numbered(&p, 3).exists());
    }

    #[test]
    fn new_files_are_0640_and_rotation_keeps_the_operators_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), 4, 1);
        let p = dir.path().join("audit.jsonl");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        s.write(b"one\n").unwrap();
        assert_eq!(mode(&p), 0o640);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
        s.write(b"two\n").unwrap();
        assert_eq!(read(numbered(&p, 1)), "one\n");
        assert_eq!(mode(&p), 0o604);
    }

    #[test]
    fn a_moved_file_is_followed_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), 1 << 20, 1);
        let p = dir.path().join("audit.jsonl");
        s.write(b"one\n").unwrap();
        fs::rename(&p, dir.path().join("moved")).unwrap();
        s.write(b"two\n").unwrap();
        assert_eq!(read(p), "two\n");
        assert_eq!(read(dir.path().join("moved")), "one\n");
    }

    #[test]
    fn an_existing_file_is_appended_to_with_its_length_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        fs::write(&p, "old-line\n").unwrap();
        let mut s = sink(dir.path(), 12, 1);
        s.write(b"new-line\n").unwrap();
        assert_eq!(read(p.clone()), "new-line\n");
        assert_eq!(read(numbered(&p, 1)), "old-line\n");
    }

    #[test]
    fn an_unwritable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JsonlFile::new(JsonlSettings {
            path: dir.path().join("missing-dir").join("audit.jsonl"),
            max_bytes: 100,
            keep: 1,
        });
        assert!(s.write(b"x\n").is_err());
    }
}
