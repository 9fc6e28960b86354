//! Bringing the index level with storage: the registry walks storage into a
//! [`RepositorySnapshot`] per repository, the index compares and (unless only checking) applies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use sqlx::Row as _;

use crate::records::millis;
use crate::writes::{upsert_manifest, upsert_tag};
use crate::{Index, ManifestRecord, Result, TagRecord};

/// Rows that live requests touched this long before a reconcile began are left as they are:
/// storage was written (or is being deleted) by a request the walk may not have seen.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(60);

/// What storage holds of one repository.
#[derive(Debug, Clone, Default)]
pub struct RepositorySnapshot {
    /// The repository.
    pub repository: String,
    /// Its manifest revisions.
    pub manifests: Vec<ManifestRecord>,
    /// Its tags.
    pub tags: Vec<TagRecord>,
}

/// How the index differs from storage for one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryDiff {
    /// The repository.
    pub repository: String,
    /// The repository is in storage but not in the index.
    pub repository_missing: bool,
    /// Manifests storage holds that the index lacks.
    pub manifests_missing: Vec<String>,
    /// Manifests the index lists that storage no longer holds.
    pub manifests_extra: Vec<String>,
    /// Tags storage holds that the index lacks or points elsewhere.
    pub tags_missing: Vec<String>,
    /// Tags the index lists that storage no longer holds.
    pub tags_extra: Vec<String>,
}

impl RepositoryDiff {
    /// Whether index and storage agree.
    pub fn is_empty(&self) -> bool {
        !self.repository_missing
            && self.manifests_missing.is_empty()
            && self.manifests_extra.is_empty()
            && self.tags_missing.is_empty()
            && self.tags_extra.is_empty()
    }
}

impl std::fmt::Display for RepositoryDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.repository_missing {
            parts.push("repository not indexed".to_owned());
        }
        let mut list = |what: &str, v: &[String]| {
            if !v.is_empty() {
                let shown: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
                let more = if v.len() > 5 {
                    format!(" and {} more", v.len() - 5)
                } else {
                    String::new()
                };
                parts.push(format!("{} {what}: {}{more}", v.len(), shown.join(", ")));
            }
        };
        list("manifests not indexed", &self.manifests_missing);
        list("manifests indexed but not stored", &self.manifests_extra);
        list("tags not indexed or indexed elsewhere", &self.tags_missing);
        list("tags indexed but not stored", &self.tags_extra);
        write!(f, "{}: {}", self.repository, parts.join("; "))
    }
}

impl Index {
    /// Compares the index with `snapshot` (what storage held when read, at or after `started`)
    /// and, unless `check_only`, makes the index agree, leaving alone the rows live requests
    /// touched since `started - RECONCILE_GRACE`. Returns the differences found.
    pub async fn reconcile_repository(
        &self,
        snapshot: &RepositorySnapshot,
        started: SystemTime,
        check_only: bool,
    ) -> Result<RepositoryDiff> {
        let repo = snapshot.repository.as_str();
        let mut diff = RepositoryDiff {
            repository: repo.to_owned(),
            repository_missing: !self.has_repository(repo).await?,
            ..Default::default()
        };
        let indexed_manifests: BTreeSet<String> = sqlx::query(
            "SELECT digest FROM manifests WHERE repository = $1 AND deleted_at IS NULL",
        )
        .bind(repo)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        let indexed_tags: BTreeMap<String, String> = sqlx::query(
            "SELECT tag, digest FROM tags WHERE repository = $1 AND deleted_at IS NULL",
        )
        .bind(repo)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;

        let stored_manifests: BTreeMap<String, &ManifestRecord> = snapshot
            .manifests
            .iter()
            .map(|m| (m.digest.to_string(), m))
            .collect();
        let stored_tags: BTreeMap<&str, &TagRecord> =
            snapshot.tags.iter().map(|t| (t.tag.as_str(), t)).collect();
        diff.manifests_missing = stored_manifests
            .keys()
            .filter(|d| !indexed_manifests.contains(*d))
            .cloned()
            .collect();
        diff.manifests_extra = indexed_manifests
            .iter()
            .filter(|d| !stored_manifests.contains_key(*d))
            .cloned()
            .collect();
        diff.tags_missing = stored_tags
            .iter()
            .filter(|(t, r)| indexed_tags.get(**t) != Some(&r.digest.to_string()))
            .map(|(t, _)| (*t).to_owned())
            .collect();
        diff.tags_extra = indexed_tags
            .keys()
            .filter(|t| !stored_tags.contains_key(t.as_str()))
            .cloned()
            .collect();
        if check_only || diff.is_empty() {
            return Ok(diff);
        }

        let guard = millis(started.checked_sub(RECONCILE_GRACE).unwrap_or(started));
        let now = millis(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        if diff.repository_missing {
            sqlx::query(
                "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(repo)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for d in &diff.manifests_missing {
            let m = stored_manifests[d];
            // The row's own time is the stored one's: a reconcile writes history, not news.
            upsert_manifest(
                &mut tx,
                repo,
                m,
                millis(m.created_at).min(guard - 1),
                Some(guard),
            )
            .await?;
        }
        for d in &diff.manifests_extra {
            sqlx::query(
                "UPDATE manifests SET deleted_at = $3 WHERE repository = $1 AND digest = $2 \
                 AND deleted_at IS NULL AND updated_at < $4",
            )
            .bind(repo)
            .bind(d)
            .bind(now)
            .bind(guard)
            .execute(&mut *tx)
            .await?;
        }
        for t in &diff.tags_missing {
            let r = stored_tags[t.as_str()];
            upsert_tag(
                &mut tx,
                repo,
                t,
                &r.digest,
                millis(r.pushed_at).min(guard - 1),
                Some(guard),
            )
            .await?;
        }
        for t in &diff.tags_extra {
            sqlx::query(
                "UPDATE tags SET deleted_at = $3 WHERE repository = $1 AND tag = $2 \
                 AND deleted_at IS NULL AND pushed_at < $4",
            )
            .bind(repo)
            .bind(t)
            .bind(now)
            .bind(guard)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(diff)
    }

    /// Repositories the index lists that are not in `stored` (what a full walk of storage
    /// found); unless `check_only`, they are forgotten (with their tags and manifests), but
    /// not those created since `started - RECONCILE_GRACE`. Also drops soft-deleted rows older
    /// than that.
    pub async fn reconcile_repositories(
        &self,
        stored: &BTreeSet<String>,
        started: SystemTime,
        check_only: bool,
    ) -> Result<Vec<String>> {
        let guard = millis(started.checked_sub(RECONCILE_GRACE).unwrap_or(started));
        let rows = sqlx::query("SELECT name, created_at FROM repositories ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut extra = Vec::new();
        for r in &rows {
            let name: String = r.try_get(0)?;
            let created: i64 = r.try_get(1)?;
            if !stored.contains(&name) && (check_only || created < guard) {
                extra.push(name);
            }
        }
        if check_only {
            return Ok(extra);
        }
        let mut tx = self.pool.begin().await?;
        for name in &extra {
            for table in ["tags", "manifest_references", "manifests"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE repository = $1"))
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM repositories WHERE name = $1 AND created_at < $2")
                .bind(name)
                .bind(guard)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM tags WHERE deleted_at < $1")
            .bind(guard)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM manifest_references WHERE EXISTS (SELECT 1 FROM manifests m WHERE \
             m.repository = manifest_references.repository AND m.digest = manifest_references.manifest \
             AND m.deleted_at < $1)",
        )
        .bind(guard)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM manifests WHERE deleted_at < $1")
            .bind(guard)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(extra)
    }
}
