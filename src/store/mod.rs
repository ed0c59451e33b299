//! The one place that speaks SQL. [`Store`] runs the same queries on SQLite (the embedded default) and
//! PostgreSQL (production) through sqlx's `Any` driver; the two migration folders keep one schema.
//!
//! Queries use `$N` placeholders, which both SQLite and PostgreSQL understand, and plain types (TEXT,
//! BIGINT, BLOB/BYTEA) so that every statement means the same on both backends.

mod blocks;
mod calls;
mod contacts;
mod messages;
mod otp;
mod related;
mod sessions;
mod users;
mod writer;

pub use calls::CallRecord;
pub use contacts::Contact;
pub use messages::{ConversationSummary, Message, Sent};
pub use otp::OtpRecord;
pub use sessions::{RefreshOutcome, SessionRow};
pub use users::{Avatar, User};

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded file database.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to someone else, which callers must not reveal).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken (same phone twice in one contact book, ...).
    #[error("conflict")]
    Conflict,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored ciphertext could not be opened or a value could not be sealed.
    #[error("crypto: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique-constraint violation to [`StoreError::Conflict`], anything else to [`StoreError::Db`].
pub(crate) fn conflict_or_db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The data store: a connection pool and the backend it talks to.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Batches message inserts and receipts into shared transactions.
    writer: writer::Writer,
    /// Conversation ids by ordered user pair; conversations are never deleted, so entries never go stale.
    conversations: std::sync::Arc<dashmap::DashMap<(String, String), String>>,
}

impl Store {
    /// Connects to `url` (`sqlite://path` creates the file; `postgres://...`), without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(&url)?;
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            // SQLite has one writer at a time; more connections only add lock waits. Readers still
            // run concurrently with the writer thanks to WAL.
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
                        // commit across a process crash (kill -9); only an OS crash can lose the newest.
                        // mmap and a larger page cache keep hot pages out of read() syscalls.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 10000; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16384;",
                        )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Store {
            writer: writer::Writer::spawn(pool.clone()),
            pool,
            backend,
            conversations: Default::default(),
        })
    }

    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for modules of this crate that add their own queries.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Answers whether the database takes queries (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn ensure_sqlite_dir(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
    }
    Ok(())
}

/// A new time-ordered id (UUIDv7) as the API's opaque string.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
