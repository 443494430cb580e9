//! What the `discuss` tests share: a temporary SQLite file, a real
//! PostgreSQL server and a real redis-server, each on this machine only and
//! removed when dropped.

#![allow(dead_code)]

// The runtime's own test helpers, shared: its log capture (`Logs`) and
// its redis-server.
#[path = "../../channels-runtime/tests/support/abuse_helpers.rs"]
pub mod abuse_helpers;
pub mod postgres;
#[path = "../../channels-runtime/tests/support/redis_server.rs"]
pub mod redis_server;

use tempfile::TempDir;

/// A SQLite database in a fresh temporary directory (its `-wal` and `-shm`
/// files beside it), removed when dropped.
pub struct TempSqlite {
    dir: TempDir,
}

impl TempSqlite {
    pub fn new() -> Self {
        TempSqlite { dir: tempfile::tempdir().expect("a temporary directory for SQLite") }
    }

    /// The `DATABASE_URL` of its file.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("discuss.db").display())
    }
}
