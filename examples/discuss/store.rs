//! Where `discuss` keeps its comments: the `comments` table, in SQLite (a
//! file, by default) or PostgreSQL (`DATABASE_URL=postgres://..`), through
//! `sqlx` (the seed's `Discuss.Repo`). The migrations under
//! `examples/discuss/migrations/` (one set per backend) run at start.
//!
//! Every call is bounded in time ([`TIMEOUT`]): a database that is down,
//! full or stuck makes it fail with [`Unavailable`], logged here with its
//! source chain, never a client left waiting.

use std::collections::HashMap;
use std::error::Error as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::Comment;

/// How long one call may take, waiting for a connection included, before
/// it fails with [`Unavailable`]. phoenix.js gives up on a push after 10 s,
/// and a channel answers its pushes one after the other: two pushes queued
/// behind each other on a database that is down are both answered in time.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// How long a call waits for a connection: for one of the pool's to be
/// free, or for a new one (the pool retries a refused connection until
/// then, so this is how soon a database that is down is noticed).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many comments are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Per topic: a new comment past it deletes that topic's oldest.
    pub per_topic: u32,
    /// In all: a new comment past it deletes the oldest of any topic.
    pub total: u32,
}

impl Default for Limits {
    /// 1 000 per topic, 100 000 in all: with a comment's content at most
    /// 10 000 characters (40 000 bytes), at most 4 GB of content, and
    /// typically a few MB.
    fn default() -> Self {
        Limits { per_topic: 1_000, total: 100_000 }
    }
}

/// The comments table, in one database or the other.
pub struct Store {
    pool: Pool,
    limits: Limits,
    /// In-process, SQLite's writes take turns here rather than in SQLite's
    /// busy handler (which sleeps up to 100 ms between tries).
    write: tokio::sync::Mutex<()>,
    /// The reads of a topic's latest comments in flight: a join that comes
    /// while one runs shares its answer instead of queueing a query of its
    /// own. A node's clients rejoining elsewhere all at once (a reconnect
    /// storm) are thousands of joins over a few topics: each in a query of
    /// its own, they waited past the pool's deadline and were refused.
    reading: Mutex<HashMap<(String, u32), Arc<Reading>>>,
    /// Reads of the latest comments that went to the database.
    latest_reads: std::sync::atomic::AtomicU64,
    log: LogThrottle,
}

/// One read of a topic's latest comments, shared by the joins that wait for it.
type Reading = tokio::sync::OnceCell<Result<Vec<Comment>, Unavailable>>;

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has: the
/// queries are written once, in SQL both backends read (`$1` parameters).
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// The storage failed (down, full, too slow): what a client is told is
/// only this; the cause is in the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("storage unavailable")
    }
}

impl std::error::Error for Unavailable {}

const LATEST: &str = "SELECT * FROM comments WHERE topic_id = $1 ORDER BY id DESC LIMIT $2";
const BEFORE: &str = "SELECT * FROM comments WHERE topic_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
const INSERT: &str = "INSERT INTO comments (content, user_id, topic_id, inserted_at, updated_at) \
                      VALUES ($1, $2, $3, $4, $5) RETURNING id";
const DELETE: &str = "DELETE FROM comments WHERE id = $1";
/// A topic's comments past the newest `$2` (the subquery finds the newest
/// of those; none when the topic has fewer).
const PRUNE_TOPIC: &str = "DELETE FROM comments WHERE topic_id = $1 AND id <= \
                           (SELECT id FROM comments WHERE topic_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";
/// Every comment older than the newest `total` ids: at most `total` rows
/// remain (fewer when ids have gaps), found on the primary key.
const PRUNE_TOTAL: &str = "DELETE FROM comments WHERE id <= $1";

impl Store {
    /// Connects to `url` (`sqlite:..` or `postgres://..`) and runs the
    /// migrations that have not run yet.
    pub async fn connect(url: &str, limits: Limits) -> anyhow::Result<Self> {
        anyhow::ensure!(
            limits.per_topic > 0 && limits.total > 0,
            "the comments' limits must be at least 1: {limits:?}"
        );
        let pool = if url.starts_with("sqlite:") {
            // WAL: readers do not wait for the writer; NORMAL: a commit is
            // not synced to disk until the next checkpoint (an OS crash
            // can lose the last commits, never corrupt the file).
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(TIMEOUT);
            // Reads run side by side; writes take turns (`Store::write`).
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            sqlx::migrate!("examples/discuss/migrations/sqlite").run(&pool).await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(10).acquire_timeout(ACQUIRE_TIMEOUT).connect(url).await?;
            // Several nodes starting at once: the migrator holds an
            // advisory lock, so one of them migrates.
            sqlx::migrate!("examples/discuss/migrations/postgres").run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite: or postgres://");
        };
        Ok(Store {
            pool,
            limits,
            write: tokio::sync::Mutex::new(()),
            reading: Mutex::default(),
            latest_reads: Default::default(),
            log: LogThrottle::default(),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// The newest `n` comments of a topic, oldest first. Calls for the same
    /// topic and `n` while a read of them runs get that read's answer.
    pub async fn latest(&self, topic_id: &str, n: u32) -> Result<Vec<Comment>, Unavailable> {
        let key = (topic_id.to_owned(), n);
        let reading = Arc::clone(self.readings().entry(key.clone()).or_default());
        // Whoever runs the query; should it be dropped (its join gone), a
        // waiting call runs it instead.
        let answer = reading.get_or_init(|| self.read_latest(topic_id, n)).await.clone();
        // Answered: later calls read again (a comment stored since would
        // be missing from this answer).
        let mut readings = self.readings();
        if readings.get(&key).is_some_and(|r| Arc::ptr_eq(r, &reading)) {
            readings.remove(&key);
        }
        answer
    }

    /// How many reads of the latest comments went to the database (calls
    /// that shared one count once).
    #[allow(dead_code)] // tests/discuss_db.rs reads it
    pub fn latest_reads(&self) -> u64 {
        self.latest_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn readings(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<Reading>>> {
        // Nothing panics while holding it; a poisoned map is still a map.
        self.reading.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn read_latest(&self, topic_id: &str, n: u32) -> Result<Vec<Comment>, Unavailable> {
        self.latest_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let newest_first = self
            .run("reading comments", Access::Read, async {
                with_pool!(self, |pool| sqlx::query_as(LATEST).bind(topic_id).bind(i64::from(n)).fetch_all(pool).await)
            })
            .await?;
        Ok(oldest_first(newest_first))
    }

    /// Up to `n` comments of a topic older than comment `before`, oldest
    /// first.
    pub async fn before(&self, topic_id: &str, before: i64, n: u32) -> Result<Vec<Comment>, Unavailable> {
        let newest_first = self
            .run("reading comments", Access::Read, async {
                with_pool!(self, |pool| sqlx::query_as(BEFORE)
                    .bind(topic_id)
                    .bind(before)
                    .bind(i64::from(n))
                    .fetch_all(pool)
                    .await)
            })
            .await?;
        Ok(oldest_first(newest_first))
    }

    /// Inserts `comment` (its `id` is the database's to give) and, in the
    /// same transaction (one commit, one sync to disk), deletes what the
    /// limits no longer keep; returns the comment with its id.
    pub async fn insert(&self, mut comment: Comment) -> Result<Comment, Unavailable> {
        let c = &comment;
        let per_topic = i64::from(self.limits.per_topic);
        let total = i64::from(self.limits.total);
        comment.id = self
            .run("storing a comment", Access::Write, async {
                with_pool!(self, |pool| {
                    let mut tx = pool.begin().await?;
                    let id: i64 = sqlx::query_scalar(INSERT)
                        .bind(&c.content)
                        .bind(&c.user_id)
                        .bind(&c.topic_id)
                        .bind(c.inserted_at)
                        .bind(c.updated_at)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(PRUNE_TOPIC).bind(&c.topic_id).bind(per_topic).execute(&mut *tx).await?;
                    // Ids start at 1: none is that old before `total` were written.
                    if id > total {
                        sqlx::query(PRUNE_TOTAL).bind(id - total).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(id)
                })
            })
            .await?;
        // Joins from now on read it: none may share a read that began before.
        self.readings().retain(|(topic, _), _| *topic != comment.topic_id);
        Ok(comment)
    }

    /// Deletes a comment: one that was stored but whose broadcast failed.
    pub async fn delete(&self, id: i64) -> Result<(), Unavailable> {
        self.run("deleting a comment", Access::Write, async {
            with_pool!(self, |pool| sqlx::query(DELETE).bind(id).execute(pool).await.map(drop))
        })
        .await
    }

    /// Closes every connection; every call after this fails with
    /// [`Unavailable`].
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await);
    }

    /// Runs a query within [`TIMEOUT`] (a SQLite write's wait for its turn
    /// included); a failure is logged (with its source chain) and becomes
    /// [`Unavailable`].
    async fn run<T>(
        &self,
        doing: &'static str,
        access: Access,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Unavailable> {
        let in_turn = async {
            let _turn = match (&self.pool, access) {
                (Pool::Sqlite(_), Access::Write) => Some(self.write.lock().await),
                _ => None,
            };
            query.await
        };
        let failure = match tokio::time::timeout(TIMEOUT, in_turn).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => Some(error),
            Err(_) => None,
        };
        if self.log.allow() {
            let mut error = match &failure {
                Some(error) => chain(error),
                None => format!("no answer within {TIMEOUT:?}"),
            };
            // The pool retries a refused connection until its deadline and
            // then says only that it timed out: one more try says why.
            if matches!(failure, Some(sqlx::Error::PoolTimedOut)) {
                error.push_str("; connecting: ");
                error.push_str(&self.try_to_connect().await);
            }
            self.log.error(doing, self.backend(), &error);
        }
        Err(Unavailable)
    }

    /// Why a new connection fails, if it does.
    async fn try_to_connect(&self) -> String {
        use sqlx::{ConnectOptions, Connection};
        let attempt = with_pool!(self, |pool| {
            let options = pool.connect_options();
            match tokio::time::timeout(Duration::from_secs(1), options.connect()).await {
                Ok(Ok(connection)) => Ok(connection.close().await),
                Ok(Err(error)) => Err(Some(error)),
                Err(_) => Err(None),
            }
        });
        match attempt {
            Ok(_) => "it works now".to_owned(),
            Err(Some(error)) => chain(&error),
            Err(None) => "no answer within 1s".to_owned(),
        }
    }
}

/// Whether a query writes (SQLite's writes take turns).
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

fn oldest_first(mut comments: Vec<Comment>) -> Vec<Comment> {
    comments.reverse();
    comments
}

/// An error and its sources, outermost first, joined by `": "`.
fn chain(error: &sqlx::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // sqlx's messages often end with their source's already.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How much of an error chain a log line keeps.
const CLIP_BYTES: usize = 1_000;

/// Storage errors come in bursts (every join and comment fails while the
/// database is down): one line a second, with the count of those held back.
#[derive(Default)]
struct LogThrottle {
    state: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// Whether a line may be logged now (then [`LogThrottle::error`] logs
    /// it); if not, it counts one more held back.
    fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held_back) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            *held_back += 1;
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn error(&self, doing: &str, backend: &str, error: &str) {
        let held_back = std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).1);
        let mut end = error.len().min(CLIP_BYTES);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        let error = &error[..end];
        tracing::error!(backend, error, held_back, "{doing} failed: storage unavailable");
    }
}
