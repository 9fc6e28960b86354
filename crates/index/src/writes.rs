//! Writes made by live requests, each after (pushes) or before (deletes) the storage write.

use std::time::{Duration, SystemTime};

use berth_oci::Digest;

use crate::records::{millis, size_i64};
use crate::{Backend, Index, ManifestRecord, PullRecord, Result};

/// How far apart the clocks of replicas sharing one database may be for
/// [`Index::put_manifest`] to tell a concurrent writer from an earlier one.
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// References written per statement (3 parameters each; SQLite allows 32,766 parameters).
const REFERENCE_CHUNK: usize = 500;

impl Index {
    /// Records that a repository exists (its first blob or manifest was stored).
    pub async fn add_repository(&self, repository: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(repository)
        .bind(millis(SystemTime::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a stored manifest and points `tags` at it, in one transaction. `since` is when
    /// this push began writing storage. Returns the tags whose previous entry another writer
    /// changed (moved elsewhere or deleted) at or after `since`, less [`CLOCK_SKEW`]: that
    /// writer may have changed the tag in storage after this push did, so the caller re-reads
    /// storage for those (and only those) to settle on one winner. A tag not contended so is
    /// right as written: whoever changed it earlier did so in storage earlier too.
    pub async fn put_manifest(
        &self,
        repository: &str,
        manifest: &ManifestRecord,
        tags: &[String],
        since: SystemTime,
    ) -> Result<Vec<String>> {
        let now = millis(SystemTime::now());
        let since = millis(since).saturating_sub(millis_of(CLOCK_SKEW));
        let mut tx = self.pool.begin().await?;
        upsert_manifest(&mut tx, repository, manifest, now, None).await?;
        let mut contended = Vec::new();
        for tag in tags {
            if push_tag(
                &mut tx,
                self.backend,
                repository,
                tag,
                &manifest.digest,
                now,
                since,
            )
            .await?
            {
                contended.push(tag.clone());
            }
        }
        tx.commit().await?;
        Ok(contended)
    }

    /// Points a tag at a manifest the index already holds (after a concurrent push moved it).
    pub async fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let now = millis(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        upsert_tag(&mut tx, repository, tag, digest, now, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a tag (before storage deletes it).
    pub async fn delete_tag(&self, repository: &str, tag: &str) -> Result<()> {
        sqlx::query(
            "UPDATE tags SET deleted_at = $3 WHERE repository = $1 AND tag = $2 AND deleted_at IS NULL",
        )
        .bind(repository)
        .bind(tag)
        .bind(millis(SystemTime::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a manifest and every tag pointing at it (before storage deletes them).
    pub async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<()> {
        let now = millis(SystemTime::now());
        let d = digest.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE manifests SET deleted_at = $3 WHERE repository = $1 AND digest = $2 AND deleted_at IS NULL",
        )
        .bind(repository)
        .bind(&d)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tags SET deleted_at = $3 WHERE repository = $1 AND digest = $2 AND deleted_at IS NULL",
        )
        .bind(repository)
        .bind(&d)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records pulls, in one transaction (the registry batches them: a pull never waits on
    /// this). A pull of a manifest the index does not hold is ignored.
    pub async fn record_pulls(&self, pulls: &[(PullRecord, SystemTime)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (p, at) in pulls {
            let at = millis(*at);
            sqlx::query(
                "UPDATE manifests SET last_pulled_at = $3 WHERE repository = $1 AND digest = $2 \
                 AND (last_pulled_at IS NULL OR last_pulled_at < $3)",
            )
            .bind(&p.repository)
            .bind(p.digest.to_string())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts or revives a manifest row. With `guard`, an existing row is changed only when no
/// live request touched it since `guard` (a reconcile's rule).
pub(crate) async fn upsert_manifest(
    tx: &mut Tx<'_>,
    repository: &str,
    m: &ManifestRecord,
    now: i64,
    guard: Option<i64>,
) -> Result<bool> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(repository)
    .bind(millis(m.created_at))
    .execute(&mut **tx)
    .await?;
    let d = m.digest.to_string();
    let done = sqlx::query(
        "INSERT INTO manifests (repository, digest, media_type, size, artifact_type, subject, \
         referrer_entry, created_at, updated_at, deleted_at, last_pulled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL) \
         ON CONFLICT (repository, digest) DO UPDATE SET media_type = excluded.media_type, \
         size = excluded.size, artifact_type = excluded.artifact_type, subject = excluded.subject, \
         referrer_entry = excluded.referrer_entry, updated_at = excluded.updated_at, deleted_at = NULL \
         WHERE manifests.updated_at < $10 AND (manifests.deleted_at IS NULL OR manifests.deleted_at < $10)",
    )
    .bind(repository)
    .bind(&d)
    .bind(&m.media_type)
    .bind(size_i64(m.size))
    .bind(m.artifact_type.clone())
    .bind(m.subject.as_ref().map(|s| s.to_string()))
    .bind(m.referrer_entry.clone())
    .bind(millis(m.created_at))
    .bind(now)
    .bind(guard.unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if done {
        // One statement per table for all references (a round trip each, not one per row),
        // in chunks that stay under both databases' parameter limits.
        for chunk in m.references.chunks(REFERENCE_CHUNK) {
            let mut q = String::from(
                "INSERT INTO manifest_references (repository, manifest, target, kind, size) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = 3 * i + 3;
                if i > 0 {
                    q.push(',');
                }
                q.push_str(&format!("($1, $2, ${p}, ${}, ${})", p + 1, p + 2));
            }
            q.push_str(" ON CONFLICT (repository, manifest, target) DO NOTHING");
            let mut query = sqlx::query(&q).bind(repository).bind(&d);
            for r in chunk {
                query = query
                    .bind(r.digest.to_string())
                    .bind(r.kind.as_str())
                    .bind(size_i64(r.size));
            }
            query.execute(&mut **tx).await?;
            let blobs: Vec<_> = chunk
                .iter()
                .filter(|r| r.kind == crate::ReferenceKind::Blob)
                .collect();
            if blobs.is_empty() {
                continue;
            }
            let mut q = String::from("INSERT INTO blobs (digest, size) VALUES ");
            for i in 0..blobs.len() {
                if i > 0 {
                    q.push(',');
                }
                q.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            }
            q.push_str(" ON CONFLICT (digest) DO NOTHING");
            let mut query = sqlx::query(&q);
            for r in blobs {
                query = query.bind(r.digest.to_string()).bind(size_i64(r.size));
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(done)
}

/// Inserts, moves or revives a tag. With `guard`, as in [`upsert_manifest`].
pub(crate) async fn upsert_tag(
    tx: &mut Tx<'_>,
    repository: &str,
    tag: &str,
    digest: &Digest,
    pushed_at: i64,
    guard: Option<i64>,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO tags (repository, tag, digest, pushed_at, deleted_at) VALUES ($1, $2, $3, $4, NULL) \
         ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, \
         pushed_at = excluded.pushed_at, deleted_at = NULL \
         WHERE tags.pushed_at < $5 AND (tags.deleted_at IS NULL OR tags.deleted_at < $5)",
    )
    .bind(repository)
    .bind(tag)
    .bind(digest.to_string())
    .bind(pushed_at)
    .bind(guard.unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

/// Points a pushed tag at `digest`. Returns whether the entry it replaced was changed to
/// something else at or after `since` (see [`Index::put_manifest`]).
///
/// A new tag is one statement. An existing one is read first (locked on PostgreSQL; SQLite
/// holds the whole database for a writing transaction), so that of two pushes racing on one
/// tag the later index write always sees the earlier one: `INSERT .. ON CONFLICT DO NOTHING`
/// waits for a concurrent insert of the same key to commit before it reports the conflict.
async fn push_tag(
    tx: &mut Tx<'_>,
    backend: Backend,
    repository: &str,
    tag: &str,
    digest: &Digest,
    now: i64,
    since: i64,
) -> Result<bool> {
    let d = digest.to_string();
    let inserted = sqlx::query(
        "INSERT INTO tags (repository, tag, digest, pushed_at, deleted_at) VALUES ($1, $2, $3, $4, NULL) \
         ON CONFLICT (repository, tag) DO NOTHING",
    )
    .bind(repository)
    .bind(tag)
    .bind(&d)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if inserted {
        return Ok(false);
    }
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let prev: Option<(String, i64, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT digest, pushed_at, deleted_at FROM tags WHERE repository = $1 AND tag = $2{lock}"
    ))
    .bind(repository)
    .bind(tag)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE tags SET digest = $3, pushed_at = $4, deleted_at = NULL WHERE repository = $1 AND tag = $2",
    )
    .bind(repository)
    .bind(tag)
    .bind(&d)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(match prev {
        Some((prev, pushed_at, deleted_at)) => {
            let changed_at = pushed_at.max(deleted_at.unwrap_or(i64::MIN));
            (prev != d || deleted_at.is_some()) && changed_at >= since
        }
        None => false,
    })
}
