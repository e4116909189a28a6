//! The suite-wide leak scan that ends `cargo xtask test`.
//!
//! The test harness (`tests/support/evidence.rs`) records every secret
//! value the tests gave a daemon and keeps every daemon's data directory:
//! daemon and PostgreSQL logs, the database's files (heap, WAL: the audit
//! rows and everything else PostgreSQL wrote), the audit spool and the CLI
//! transcript. Here each of those files is searched for every value, in one
//! pass per file. A hit names the file and the value's first characters;
//! the evidence is removed afterwards unless `AIRLOCK_TEST_KEEP_DATA` is set.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};

/// Where the harness keeps evidence, and the variable that tells it.
pub const ENV: &str = "AIRLOCK_TEST_EVIDENCE";
/// Shorter values could match by chance; test secrets are much longer.
const MIN_LEN: usize = 12;

/// What the scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub values: usize,
    pub files: u64,
    pub bytes: u64,
    /// `(file, the value's first characters)`.
    pub hits: Vec<(PathBuf, String)>,
}

/// A fresh evidence directory for this run.
pub fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Searches every file under `dir` (but the list of values itself).
pub fn scan(dir: &Path) -> Result<Scan> {
    let listed = fs::read_to_string(dir.join("secrets")).unwrap_or_default();
    let mut values: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|v| v.len() >= MIN_LEN)
        .collect();
    values.sort_unstable();
    values.dedup();
    let mut result = Scan {
        values: values.len(),
        ..Scan::default()
    };
    if values.is_empty() {
        return Ok(result);
    }
    let matcher = AhoCorasick::new(&values).context("building the leak matcher")?;
    let mut stack = vec![dir.join("data")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                scan_file(&matcher, &values, &path, &mut result)?;
            }
        }
    }
    Ok(result)
}

fn scan_file(matcher: &AhoCorasick, values: &[&str], path: &Path, into: &mut Scan) -> Result<()> {
    // A file that vanished or cannot be opened (a socket) holds nothing.
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    into.files += 1;
    into.bytes += file.metadata().map_or(0, |m| m.len());
    for m in matcher.stream_find_iter(BufReader::with_capacity(1 << 20, file)) {
        let m = m.with_context(|| format!("reading {}", path.display()))?;
        let value = values[m.pattern().as_usize()];
        let shown: String = value.chars().take(10).collect();
        into.hits.push((path.to_owned(), format!("{shown}…")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_anywhere_but_in_their_own_list() {
        let dir = std::env::temp_dir().join(format!("xtask-leaks-{}", std::process::id()));
        prepare(&dir).unwrap();
        fs::write(dir.join("secrets"), "sk-test-0123456789abcdef\nshort\n").unwrap();
        let data = dir.join("data").join("d1").join("postgres");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("clean"), "nothing here, not even short").unwrap();
        let mut big = vec![b'x'; (1 << 20) - 5];
        big.extend_from_slice(b"sk-test-0123456789abcdef");
        fs::write(data.join("heap"), big).unwrap();
        let s = scan(&dir).unwrap();
        assert_eq!(
            s.values, 1,
            "values shorter than {MIN_LEN} are not searched"
        );
        assert_eq!(s.files, 2);
        assert_eq!(s.hits.len(), 1, "{:?}", s.hits);
        assert!(s.hits[0].0.ends_with("heap"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
