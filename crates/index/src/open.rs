//! Opening an index: the embedded file or a PostgreSQL DSN, checks, migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Executor as _;
use sqlx::Row as _;
use sqlx::any::AnyPoolOptions;

use crate::{Backend, Index, IndexError, Result};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Where the index lives.
#[derive(Clone, PartialEq, Eq)]
pub enum IndexConfig {
    /// An SQLite file, created when missing.
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// A PostgreSQL database (`postgres://user:password@host:port/db`); the database must
    /// exist, its tables are created.
    Postgres {
        /// The connection string.
        dsn: String,
    },
}

impl std::fmt::Debug for IndexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexConfig::Embedded { path } => {
                f.debug_struct("Embedded").field("path", path).finish()
            }
            IndexConfig::Postgres { dsn } => f
                .debug_struct("Postgres")
                .field("dsn", &mask_dsn(dsn))
                .finish(),
        }
    }
}

/// A DSN with its password (and any `password=` parameter) replaced by `***`, for messages
/// and logs.
pub fn mask_dsn(dsn: &str) -> String {
    let mut out = dsn.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find("password=") {
        let end = out[q..].find('&').map_or(out.len(), |i| q + i);
        out.replace_range(q + "password=".len()..end, "***");
    }
    out
}

fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

impl Index {
    /// Opens (and creates, for the embedded file) the index and migrates its schema to this
    /// version. Fails with [`IndexError::Unreachable`], [`IndexError::Corrupt`],
    /// [`IndexError::Foreign`] or [`IndexError::Migrate`], each naming the database.
    pub async fn open(config: &IndexConfig) -> Result<Index> {
        install_drivers();
        let (url, backend, target) = match config {
            IndexConfig::Embedded { path } => {
                let path = absolute(path)?;
                let s = path.to_str().ok_or_else(|| {
                    IndexError::Config(format!(
                        "the index path {} is not valid UTF-8: choose another database.path",
                        path.display()
                    ))
                })?;
                if s.contains(['?', '#', '%']) {
                    return Err(IndexError::Config(format!(
                        "the index path {s} holds ?, # or %: choose another database.path"
                    )));
                }
                check_sqlite_header(&path)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        IndexError::Config(format!(
                            "cannot create the folder {} of the index file: {e}",
                            dir.display()
                        ))
                    })?;
                }
                (
                    format!("sqlite://{s}?mode=rwc"),
                    Backend::Sqlite,
                    s.to_owned(),
                )
            }
            IndexConfig::Postgres { dsn } => {
                if !(dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")) {
                    return Err(IndexError::Config(format!(
                        "database.dsn {} is no PostgreSQL URL: write postgres://user:password@host:port/database",
                        mask_dsn(dsn)
                    )));
                }
                (dsn.clone(), Backend::Postgres, mask_dsn(dsn))
            }
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            // No ping before every query (a round trip each): a push pings once up front
            // (`Index::ping`), and a connection that fails is dropped from the pool.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never wait on the writer; NORMAL: a commit survives a
                        // killed process (not a power cut, after which a reconcile catches up).
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| match (&source, config) {
                (sqlx::Error::Database(d), IndexConfig::Embedded { path }) => IndexError::Corrupt {
                    path: path.clone(),
                    reason: d.message().to_owned(),
                },
                _ => IndexError::Unreachable {
                    target: target.clone(),
                    source,
                },
            })?;
        let index = Index {
            pool,
            backend,
            target,
        };
        if sqlite {
            index.check_tables(config).await?;
        }
        let migrator = if sqlite {
            &SQLITE_MIGRATIONS
        } else {
            &POSTGRES_MIGRATIONS
        };
        migrator
            .run(&index.pool)
            .await
            .map_err(|source| IndexError::Migrate {
                target: index.target.clone(),
                source,
            })?;
        Ok(index)
    }

    /// Refuses an embedded file that holds tables of another program or that SQLite cannot
    /// read. (A PostgreSQL database may hold other programs' tables beside Berth's; a name
    /// that collides fails the migration, with its error.)
    async fn check_tables(&self, config: &IndexConfig) -> Result<()> {
        let q = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'";
        let rows = sqlx::query(q)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| match (&e, config) {
                (sqlx::Error::Database(d), IndexConfig::Embedded { path }) => IndexError::Corrupt {
                    path: path.clone(),
                    reason: d.message().to_owned(),
                },
                _ => IndexError::Unreachable {
                    target: self.target.clone(),
                    source: e,
                },
            })?;
        let mut names = Vec::new();
        for r in rows {
            names.push(r.try_get::<String, _>(0)?);
        }
        if !names.is_empty() && !names.iter().any(|n| n == "_sqlx_migrations") {
            names.sort();
            names.truncate(5);
            return Err(IndexError::Foreign {
                target: self.target.clone(),
                tables: names.join(", "),
            });
        }
        Ok(())
    }
}

/// A file that exists and is not empty must start as every SQLite database does; anything else
/// would only show as a timeout of the pool (each connection failing its first statement).
fn check_sqlite_header(path: &Path) -> Result<()> {
    use std::io::Read as _;
    let mut head = [0u8; 16];
    let n = match std::fs::File::open(path) {
        Ok(mut f) => f.read(&mut head).map_err(|e| IndexError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(IndexError::Config(format!(
                "cannot open the index file {}: {e}",
                path.display()
            )));
        }
    };
    if n > 0 && head[..n] != b"SQLite format 3\0"[..n] {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            reason: "it does not start with the SQLite header".into(),
        });
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| {
        IndexError::Config(format!(
            "cannot resolve the index path {}: {e}",
            p.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::mask_dsn;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_dsn("postgres://berth:s3cret@db:5432/berth"),
            "postgres://berth:***@db:5432/berth"
        );
        assert_eq!(
            mask_dsn("postgres://berth@db/berth?password=s3cret&sslmode=require"),
            "postgres://berth@db/berth?password=***&sslmode=require"
        );
        assert_eq!(mask_dsn("postgres://db/berth"), "postgres://db/berth");
    }
}
