//! Berth's metadata index: what storage holds (repositories, tags with their push times,
//! manifests with what they reference, their subjects and last pulls, blob sizes), in a
//! database, so that listings need no walk of storage.
//!
//! Two backends behind one [`Index`]: an embedded SQLite file (the default: nothing to install
//! or start) and PostgreSQL (for several replicas sharing one bucket). sqlx serves both through
//! its `Any` pool, so every query is written once, in SQL both understand; the schema is
//! versioned (`migrations/<backend>/`) and migrated when the index is opened.
//!
//! Architecture invariants:
//! - Storage is the source of truth. The registry writes storage first and the index second, and
//!   deletes from the index first and from storage second, so the index may lag storage but
//!   never holds what storage does not; [`Index::reconcile_repository`] brings it level.
//! - Tags and manifests are deleted softly (a `deleted_at` time), and a reconcile leaves alone
//!   every row a live request touched recently ([`RECONCILE_GRACE`]), so a reconcile running
//!   beside pushes and deletes never undoes them.
//! - No HTTP, no storage access: the registry hands in typed records.
#![warn(missing_docs)]

mod error;
mod open;
mod pulls;
mod reads;
mod reconcile;
mod records;
mod writes;

pub use error::{IndexError, Result};
pub use open::{IndexConfig, mask_dsn};
pub use pulls::PullRecorder;
pub use reconcile::{RECONCILE_GRACE, RepositoryDiff, RepositorySnapshot};
pub use records::{
    ManifestEdges, ManifestInfo, ManifestRecord, ManifestReference, PullRecord, ReferenceKind,
    TagRecord,
};
pub use writes::CLOCK_SKEW;

/// Which database an index lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// An open index. Cheap to clone (a connection pool).
#[derive(Clone)]
pub struct Index {
    pool: sqlx::AnyPool,
    backend: Backend,
    target: String,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("backend", &self.backend)
            .field("target", &self.target)
            .finish()
    }
}

/// The `berth_meta` key set once a reconcile has walked all of storage.
const COMPLETE_KEY: &str = "complete";

impl Index {
    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database, for messages (a DSN's password masked).
    pub fn describe(&self) -> &str {
        &self.target
    }

    /// Checks that the database answers (a push asks before writing storage, so that nothing
    /// is stored that the index cannot record).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether a reconcile has once walked all of storage into this index (until then the
    /// registry answers listings from storage).
    pub async fn is_complete(&self) -> Result<bool> {
        Ok(self.meta(COMPLETE_KEY).await?.is_some())
    }

    /// Records that a reconcile walked all of storage.
    pub async fn mark_complete(&self) -> Result<()> {
        let now = records::millis(std::time::SystemTime::now()).to_string();
        self.set_meta(COMPLETE_KEY, &now).await
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        use sqlx::Row as _;
        let row = sqlx::query("SELECT value FROM berth_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO berth_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
