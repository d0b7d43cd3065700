//! The call journal (calls, timelines, raw events) and the CRM outbox, on SQLite or PostgreSQL.
//!
//! One code base for both backends, chosen by URL (`sqlite://...` or `postgres://...`).
//!
//! Why `sqlx::Any` rather than an enum over a `SqlitePool` and a `PgPool`: with an enum every
//! query is written (and tested) twice, or hidden behind generic bounds that sqlx makes long
//! and brittle. With `Any` each statement exists once and both backends run the very same
//! text; the only per-backend SQL is the outbox claim (`FOR UPDATE SKIP LOCKED` exists on
//! PostgreSQL only) and the migrations' DDL. The price is that `Any` carries only integers and
//! text, so timestamps are stored as microseconds since the Unix epoch and JSON as text on both
//! backends; the journal never needs the database to look inside either. Timestamps keep
//! microseconds, which is what AMI timestamps carry.
//!
//! The store never reads the clock: every call that needs "now" takes it.

mod cdr_backfill;
mod cluster;
mod codec;
mod customers;
mod events;
mod journal;
mod outbox;
mod recordings;
mod releases;
mod sql;
mod tokens;
mod users;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use cluster::{Lease, Listener, LIVE_CHANNEL};
pub use customers::{Customer, CustomerDownloads, InstallationSeen, License};
pub use events::RawEvent;
pub use journal::{CallFilter, CallPage, StoredCall};
pub use outbox::{
    Failure, NewOutboxRow, OutboxCount, OutboxFilter, OutboxRow, OutboxStatus, Outcome, Purge,
    Requeue,
};
pub use recordings::{Recording, RecordingOutcome, RecordingState};
pub use releases::{AuditEntry, NewRelease, Release, ReleaseCounts};
pub use tokens::ApiToken;
pub use users::{Session, User};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names neither SQLite nor PostgreSQL.
    #[error("unsupported database URL {0:?}: expected sqlite://... or postgres://...")]
    UnsupportedUrl(String),
    /// The database (connection, query, constraint) failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value cannot be read back (edited by hand, or written by a newer version).
    #[error("unreadable {what} in the database: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why it cannot be read.
        detail: String,
    },
    /// A value does not fit the database (a timestamp past year 294247, a count over `i64`).
    #[error("{what} out of range: {detail}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        detail: String,
    },
    /// A journal page cursor that this store did not hand out.
    #[error("invalid page cursor {0:?}")]
    BadCursor(String),
    /// A call id that exists on several PBXes was asked for without naming the PBX.
    #[error("call {id} exists on several PBXes ({}); name the PBX", pbxes.join(", "))]
    Ambiguous {
        /// The call id.
        id: String,
        /// PBXes that have a call with this id.
        pbxes: Vec<String>,
    },
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database the store talks to; only the outbox claim and the DDL differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Embedded SQLite file (the default).
    Sqlite,
    /// PostgreSQL server (for scale-out).
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }
}

// Writers of other processes (the CLI) queue on the SQLite database lock; a generous wait
// turns them into latency instead of `SQLITE_BUSY` errors. This process's own writers take
// turns before that ([`Store::write_turn`]).
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// This process's turn to write to SQLite (`None` on PostgreSQL); see [`Store::write_turn`].
pub(crate) type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// The journal and outbox over one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// For connections outside the pool (a PostgreSQL `LISTEN` holds its own).
    url: std::sync::Arc<str>,
    /// On SQLite, the turn of this process's writers ([`Store::write_turn`]).
    writers: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl Store {
    /// Connects to `url` (`sqlite://<file>?mode=rwc` or `postgres://...`) and brings the schema
    /// up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let backend = Backend::from_url(url)?;
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(&*format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets readers (journal, API) run while the tracker writes. The mode is stored
            // in the file, so setting it once here, before the pool opens more connections,
            // avoids the exclusive lock that switching modes needs under concurrent use.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            url: url.into(),
            writers: (backend == Backend::Sqlite).then(Default::default),
        })
    }

    /// On SQLite, waits for this process's turn to write; held until the write commits. One
    /// writer at a time is all SQLite allows, and queueing here is first come, first served,
    /// while SQLite's busy handler retries a locked database after sleeps that grow to 100 ms:
    /// behind the journal and the raw event log, a CRM delivery's claim or result waited up
    /// to hundreds of milliseconds (Hangup -> CRM p99 at 200 calls/s: 80-300 ms on SQLite,
    /// 11 ms on PostgreSQL). PostgreSQL locks rows, not the database: no turn to wait for.
    pub(crate) async fn write_turn(&self) -> WriteTurn {
        match &self.writers {
            Some(writers) => Some(writers.clone().lock_owned().await),
            None => None,
        }
    }

    /// A write transaction, begun in this process's turn ([`Store::write_turn`]); the turn
    /// ends when the guard is dropped, after the commit.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<(WriteTurn, sqlx::Transaction<'static, sqlx::Any>)> {
        let turn = self.write_turn().await;
        Ok((turn, self.pool.begin().await?))
    }

    /// Closes every connection (waits for queries in progress).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
