//! The index's errors.

use std::path::PathBuf;

/// What failed in the index. Every variant says which setting or file is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The database could not be reached or opened.
    #[error("cannot connect to the index database {target}")]
    Unreachable {
        /// The database, with any password masked.
        target: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The embedded file is not an SQLite database, or is damaged.
    #[error("the index file {path} is damaged or is no SQLite database ({reason})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The database holds tables that are not Berth's.
    #[error("the index database {target} holds tables of another program ({tables})")]
    Foreign {
        /// The database, with any password masked.
        target: String,
        /// Some of the tables found.
        tables: String,
    },
    /// The schema could not be brought to this version.
    #[error("cannot migrate the index database {target} to this version of Berth")]
    Migrate {
        /// The database, with any password masked.
        target: String,
        /// Why (such as a migration from a newer Berth).
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A configuration the index cannot use.
    #[error("{0}")]
    Config(String),
    /// A query failed (the database went away, a constraint, ...).
    #[error("index query failed")]
    Query(#[from] sqlx::Error),
}

impl IndexError {
    /// Whether the database could not be reached (the server answers a retryable 503 then),
    /// rather than refusing what was asked.
    pub fn is_unavailable(&self) -> bool {
        match self {
            IndexError::Unreachable { .. } => true,
            IndexError::Query(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                ) || matches!(e, sqlx::Error::Database(d) if d.message().contains("database is locked"))
            }
            _ => false,
        }
    }
}

/// Result type of index operations.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
