//! psql and pg_dump against a daemon's database (the embedded server's
//! Unix socket, role and database `airlock`, trust authentication).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{COMMAND_TIMEOUT, Output, run};

const PSQL: &str = "/usr/bin/psql";
const PG_DUMP: &str = "/usr/bin/pg_dump";

/// One PostgreSQL database reachable on a Unix socket directory.
#[derive(Debug, Clone)]
pub struct Db {
    socket_dir: PathBuf,
}

impl Db {
    /// The embedded database of the daemon on `data_dir`.
    pub fn embedded(data_dir: &Path) -> Self {
        Db {
            socket_dir: data_dir.join("postgres").join("run"),
        }
    }

    /// The server listening on the socket in `socket_dir`.
    pub fn at(socket_dir: &Path) -> Self {
        Db {
            socket_dir: socket_dir.to_owned(),
        }
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A `DATABASE_URL` for this database, for a second daemon to share it.
    pub fn url(&self) -> String {
        format!(
            "postgresql://airlock@localhost/airlock?host={}",
            self.socket_dir.display()
        )
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .args(["-U", "airlock", "-d", "airlock"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// Runs `sql` (one or more statements) and returns the output: unaligned,
    /// tuples only, columns separated by `|`, rows by newlines.
    pub fn psql_output(&self, sql: &str) -> Output {
        let mut cmd = self.command(PSQL);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        run(&mut cmd, None, COMMAND_TIMEOUT)
    }

    /// Like [`Db::psql_output`], failing the test if psql fails; the result
    /// is trimmed.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        let out = self.psql_output(sql);
        assert!(out.success(), "psql failed on {sql:?}: {out:#?}");
        out.stdout.trim().to_owned()
    }

    /// Rows of `sql`, each split on `|`.
    #[track_caller]
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        self.psql(sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect()
    }

    /// A plain-SQL dump of the whole database (schema and data).
    #[track_caller]
    pub fn pg_dump(&self) -> String {
        let mut cmd = self.command(PG_DUMP);
        cmd.arg("--no-owner");
        let out = run(&mut cmd, None, COMMAND_TIMEOUT);
        assert!(out.success(), "pg_dump failed: {out:#?}");
        out.stdout
    }
}
