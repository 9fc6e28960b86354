//! Listings answered from the index, in the spec's order (bytewise) with `n` and `last`.

use berth_oci::Digest;
use sqlx::Row as _;

use crate::records::from_millis;
use crate::{Index, IndexError, ManifestEdges, ManifestInfo, Result, TagRecord};

/// `LIMIT` for a page of `n` (one more, to tell whether more follow); no `n`, no limit.
fn limit(n: Option<usize>) -> i64 {
    n.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX - 1) + 1)
}

/// Cuts a page fetched with [`limit`]; the bool says whether more follow.
fn cut(mut rows: Vec<String>, n: Option<usize>) -> (Vec<String>, bool) {
    match n {
        Some(n) if rows.len() > n => {
            rows.truncate(n);
            (rows, true)
        }
        _ => (rows, false),
    }
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| IndexError::Config(format!("the index holds an invalid digest {s:?}: {e}")))
}

impl Index {
    /// The edges of every manifest of a repository the index has a row for (deleted ones
    /// too), by digest: what garbage collection marks without reading manifests from storage.
    pub async fn manifest_edges(
        &self,
        repository: &str,
    ) -> Result<std::collections::HashMap<Digest, ManifestEdges>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.subject, r.target, r.kind FROM manifests m \
             LEFT JOIN manifest_references r ON r.repository = m.repository AND r.manifest = m.digest \
             WHERE m.repository = $1",
        )
        .bind(repository)
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::HashMap<Digest, ManifestEdges> = Default::default();
        for row in rows {
            let d = parse_digest(&row.try_get::<String, _>(0)?)?;
            let e = out.entry(d).or_default();
            if let Some(s) = row.try_get::<Option<String>, _>(1)? {
                e.subject = Some(parse_digest(&s)?);
            }
            if let Some(t) = row.try_get::<Option<String>, _>(2)? {
                let t = parse_digest(&t)?;
                match row.try_get::<Option<String>, _>(3)?.as_deref() {
                    Some("manifest") => e.children.push(t),
                    _ => e.blobs.push(t),
                }
            }
        }
        Ok(out)
    }

    /// Repository names after `last`, at most `n`; the bool says whether more follow.
    pub async fn catalog(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        let rows =
            sqlx::query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(last.unwrap_or(""))
                .bind(limit(n))
                .fetch_all(&self.pool)
                .await?;
        let names = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(cut(names, n))
    }

    /// Whether the index knows the repository.
    pub async fn has_repository(&self, repository: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM repositories WHERE name = $1")
            .bind(repository)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Tags of a repository after `last`, at most `n`; `None` when the repository is unknown.
    pub async fn tags(
        &self,
        repository: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Option<(Vec<String>, bool)>> {
        if !self.has_repository(repository).await? {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT tag FROM tags WHERE repository = $1 AND deleted_at IS NULL AND tag > $2 \
             ORDER BY tag LIMIT $3",
        )
        .bind(repository)
        .bind(last.unwrap_or(""))
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        let tags = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(cut(tags, n)))
    }

    /// Every live tag of a repository with its manifest and push time, by tag.
    pub async fn tag_records(&self, repository: &str) -> Result<Vec<TagRecord>> {
        let rows = sqlx::query(
            "SELECT tag, digest, pushed_at FROM tags WHERE repository = $1 AND deleted_at IS NULL ORDER BY tag",
        )
        .bind(repository)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TagRecord {
                    tag: r.try_get(0)?,
                    digest: parse_digest(&r.try_get::<String, _>(1)?)?,
                    pushed_at: from_millis(r.try_get(2)?),
                })
            })
            .collect()
    }

    /// What the index knows of one manifest.
    pub async fn manifest_info(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestInfo>> {
        let row = sqlx::query(
            "SELECT media_type, size, artifact_type, subject, created_at, last_pulled_at FROM manifests \
             WHERE repository = $1 AND digest = $2 AND deleted_at IS NULL",
        )
        .bind(repository)
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(ManifestInfo {
            media_type: r.try_get(0)?,
            size: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            artifact_type: r.try_get(2)?,
            subject: r
                .try_get::<Option<String>, _>(3)?
                .map(|s| parse_digest(&s))
                .transpose()?,
            created_at: from_millis(r.try_get(4)?),
            last_pulled_at: r.try_get::<Option<i64>, _>(5)?.map(from_millis),
        }))
    }

    /// The referrers entries (descriptor JSON) of `subject`, ordered by digest, after the
    /// referrer `after`, at most `n`, optionally of one artifact type; the bool says whether
    /// more follow.
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<(Vec<(Digest, String)>, bool)> {
        let rows = sqlx::query(
            "SELECT digest, referrer_entry FROM manifests WHERE repository = $1 AND subject = $2 \
             AND deleted_at IS NULL AND referrer_entry IS NOT NULL AND digest > $3 \
             AND ($4 = '' OR artifact_type = $4) ORDER BY digest LIMIT $5",
        )
        .bind(repository)
        .bind(subject.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(artifact_type.unwrap_or(""))
        .bind(limit(Some(n)))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((
                parse_digest(&r.try_get::<String, _>(0)?)?,
                r.try_get::<String, _>(1)?,
            ));
        }
        let more = out.len() > n;
        out.truncate(n);
        Ok((out, more))
    }

    /// Whether a live manifest of the repository references the blob (what a quota check
    /// asks: such a blob adds nothing to the repository's size).
    pub async fn references_blob(&self, repository: &str, blob: &Digest) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM manifest_references r JOIN manifests m \
             ON m.repository = r.repository AND m.digest = r.manifest \
             WHERE r.repository = $1 AND r.target = $2 AND r.kind = 'blob' AND m.deleted_at IS NULL LIMIT 1",
        )
        .bind(repository)
        .bind(blob.to_string())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Whether the repository holds the manifest (a live row).
    pub async fn has_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM manifests WHERE repository = $1 AND digest = $2 AND deleted_at IS NULL",
        )
        .bind(repository)
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Bytes a repository holds: each of its manifests and each distinct blob they reference,
    /// counted once; `None` when the repository is unknown.
    pub async fn repository_size(&self, repository: &str) -> Result<Option<u64>> {
        if !self.has_repository(repository).await? {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT CAST(COALESCE((SELECT SUM(size) FROM manifests WHERE repository = $1 AND deleted_at IS NULL), 0) AS BIGINT), \
             CAST(COALESCE((SELECT SUM(b.size) FROM blobs b WHERE b.digest IN ( \
                SELECT r.target FROM manifest_references r JOIN manifests m \
                ON m.repository = r.repository AND m.digest = r.manifest \
                WHERE r.repository = $1 AND r.kind = 'blob' AND m.deleted_at IS NULL)), 0) AS BIGINT)",
        )
        .bind(repository)
        .fetch_one(&self.pool)
        .await?;
        let m: i64 = row.try_get(0)?;
        let b: i64 = row.try_get(1)?;
        Ok(Some(u64::try_from(m.saturating_add(b)).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_are_cut_one_past() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            super::cut(v(&["a", "b", "c"]), Some(2)),
            (v(&["a", "b"]), true)
        );
        assert_eq!(super::cut(v(&["a", "b"]), Some(2)), (v(&["a", "b"]), false));
        assert_eq!(super::cut(v(&["a"]), None), (v(&["a"]), false));
        assert_eq!(super::limit(Some(2)), 3);
    }
}
