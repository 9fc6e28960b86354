//! The registry's side of the metadata index: what each write records, listings answered from
//! the index once it is complete, and the reconcile that walks storage into it.
//!
//! Order of writes: storage first, then the index (pushes); the index first, then storage
//! (deletes). The index may therefore lag storage (a crash between the two, a database that
//! went away) but never lists what storage does not hold. A write whose index step fails
//! answers `UNAVAILABLE` (503) and queues its repository for repair, which a background task
//! retries; every start reconciles all of storage.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use berth_index::{
    Index, ManifestRecord, ManifestReference, PullRecorder, ReferenceKind, RepositoryDiff,
    RepositorySnapshot, TagRecord,
};
use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;
use futures::StreamExt as _;

use crate::{Registry, RegistryError, Result, paths};

/// How often pull records are written.
const PULL_FLUSH: Duration = Duration::from_secs(5);
/// How often repositories whose index write failed are retried.
const REPAIR_EVERY: Duration = Duration::from_secs(5);

/// The index and what the registry keeps beside it.
#[derive(Clone)]
pub(crate) struct Indexed {
    pub(crate) index: Index,
    pulls: PullRecorder,
    /// Whether a reconcile has once walked all of storage (listings come from the index then).
    ready: Arc<AtomicBool>,
    /// Repositories whose index write failed after storage was written.
    repairs: Arc<Mutex<BTreeSet<String>>>,
    /// Repositories this process has recorded (so that a blob push records its repository
    /// once, not once per blob). Only an optimisation: the row, once written, stays.
    known: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// Most repository names remembered in [`Indexed::known`] before it starts over.
const MAX_KNOWN: usize = 100_000;

/// What a reconcile found and did.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// Repositories walked.
    pub repositories: usize,
    /// Manifests found in storage.
    pub manifests: usize,
    /// Tags found in storage.
    pub tags: usize,
    /// The repositories where index and storage differed, and how.
    pub differences: Vec<RepositoryDiff>,
    /// Repositories the index listed that storage does not hold.
    pub extra_repositories: Vec<String>,
}

impl ReconcileReport {
    /// Whether index and storage agreed everywhere.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.extra_repositories.is_empty()
    }
}

/// The index record of a manifest about to be stored or found in storage.
fn manifest_record(
    parsed: &ParsedManifest,
    digest: &Digest,
    size: u64,
    referrer_entry: Option<String>,
    created_at: SystemTime,
) -> ManifestRecord {
    let mut references: Vec<ManifestReference> = Vec::new();
    for d in parsed.config.iter().chain(parsed.layers.iter()) {
        references.push(ManifestReference {
            digest: d.digest.clone(),
            kind: ReferenceKind::Blob,
            size: d.size,
        });
    }
    for d in &parsed.manifests {
        references.push(ManifestReference {
            digest: d.digest.clone(),
            kind: ReferenceKind::Manifest,
            size: d.size,
        });
    }
    ManifestRecord {
        digest: digest.clone(),
        media_type: parsed.media_type.clone(),
        size,
        artifact_type: parsed.effective_artifact_type(),
        subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
        referrer_entry,
        references,
        created_at,
    }
}

impl Registry {
    /// Keeps the metadata index `index` beside storage from now on: writes are recorded in it,
    /// and listings are answered from it once a reconcile ([`Registry::reconcile_index`]) has
    /// walked all of storage into it (at once, if an earlier one did). Starts the pull-record
    /// and repair tasks, so it needs a Tokio runtime.
    pub async fn with_index(mut self, index: Index) -> Result<Registry> {
        let ready = index.is_complete().await?;
        let indexed = Indexed {
            pulls: PullRecorder::spawn(index.clone(), PULL_FLUSH),
            index,
            ready: Arc::new(AtomicBool::new(ready)),
            repairs: Arc::default(),
            known: Arc::default(),
        };
        self.index = Some(indexed);
        let repairer = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REPAIR_EVERY);
            loop {
                tick.tick().await;
                repairer.repair_pending().await;
            }
        });
        Ok(self)
    }

    /// Writes the pull records not yet written (at shutdown; they are otherwise written every
    /// few seconds).
    pub async fn flush_index(&self) {
        if let Some(i) = &self.index {
            i.pulls.flush(&i.index).await;
        }
    }

    /// The index, if the registry keeps one.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_ref().map(|i| &i.index)
    }

    /// Whether listings are answered from the index.
    pub fn index_ready(&self) -> bool {
        self.index
            .as_ref()
            .is_some_and(|i| i.ready.load(Ordering::SeqCst))
    }

    /// The index when listings may be answered from it.
    fn listing_index(&self) -> Option<&Index> {
        self.index
            .as_ref()
            .filter(|i| i.ready.load(Ordering::SeqCst))
            .map(|i| &i.index)
    }

    /// Before a push writes storage: fails with `UNAVAILABLE` when the index cannot be
    /// reached, so that nothing is stored that the index could not record.
    pub(crate) async fn index_check(&self) -> Result<()> {
        if let Some(i) = &self.index {
            i.index.ping().await?;
        }
        Ok(())
    }

    /// After storage was written: runs the index write; on failure the repository is queued
    /// for repair and the error returned.
    async fn index_after<F, Fut>(&self, name: &str, write: F) -> Result<()>
    where
        F: FnOnce(Index) -> Fut,
        Fut: std::future::Future<Output = berth_index::Result<()>>,
    {
        let Some(i) = &self.index else { return Ok(()) };
        if let Err(e) = write(i.index.clone()).await {
            tracing::warn!(repository = name, error = %e, "storage was written but the index was not: queued for repair");
            i.repairs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned());
            return Err(e.into());
        }
        Ok(())
    }

    /// Records a blob linked into `name` (the repository exists from then on).
    pub(crate) async fn index_blob_linked(&self, name: &str) -> Result<()> {
        let Some(i) = &self.index else { return Ok(()) };
        if i.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
        {
            return Ok(());
        }
        self.index_after(name, |ix| async move { ix.add_repository(name).await })
            .await?;
        let mut known = i.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert(name.to_owned());
        Ok(())
    }

    /// Records a stored manifest and its tags, then settles the tags a concurrent writer may
    /// have moved: `since` is when this push began writing storage.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn index_manifest(
        &self,
        name: &str,
        parsed: &ParsedManifest,
        digest: &Digest,
        size: u64,
        referrer_entry: Option<&[u8]>,
        tags: &[String],
        since: SystemTime,
    ) -> Result<()> {
        if self.index.is_none() {
            return Ok(());
        }
        let record = manifest_record(
            parsed,
            digest,
            size,
            referrer_entry.map(|b| String::from_utf8_lossy(b).into_owned()),
            SystemTime::now(),
        );
        let mut contended = Vec::new();
        self.index_after(name, |ix| {
            let contended = &mut contended;
            async move {
                *contended = ix.put_manifest(name, &record, tags, since).await?;
                Ok(())
            }
        })
        .await?;
        self.index_settle_tags(name, &contended, digest).await
    }

    /// After the index recorded `tags` → `written`: when a concurrent push or delete (on any
    /// replica) changed a tag in storage between this push's storage and index writes, the
    /// index is set to what storage holds, until the two agree; so both end with the same
    /// winner. The index names the tags that may be so (see `Index::put_manifest`), so an
    /// uncontended push reads nothing back from storage.
    async fn index_settle_tags(&self, name: &str, tags: &[String], written: &Digest) -> Result<()> {
        for tag in tags {
            let mut indexed = written.clone();
            // Each round follows one more concurrent writer; a handful is plenty, and the
            // start-up reconcile settles anything left.
            for _ in 0..8 {
                match self.read_link(&paths::tag_current(name, tag)).await? {
                    Some(stored) if stored != indexed => {
                        self.index_after(name, |ix| {
                            let stored = stored.clone();
                            async move { ix.set_tag(name, tag, &stored).await }
                        })
                        .await?;
                        indexed = stored;
                    }
                    Some(_) => break,
                    // Deleted meanwhile (the delete went to the index first): forget it again.
                    None => {
                        self.index_after(name, |ix| async move { ix.delete_tag(name, tag).await })
                            .await?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Before storage deletes a tag.
    pub(crate) async fn index_delete_tag(&self, name: &str, tag: &str) -> Result<()> {
        if let Some(i) = &self.index {
            i.index.delete_tag(name, tag).await?;
        }
        Ok(())
    }

    /// Before storage deletes a manifest.
    pub(crate) async fn index_delete_manifest(&self, name: &str, d: &Digest) -> Result<()> {
        if let Some(i) = &self.index {
            i.index.delete_manifest(name, d).await?;
        }
        Ok(())
    }

    /// Notes a pull of a manifest (written in the next batch; never waits).
    pub(crate) fn index_pull(&self, name: &str, d: &Digest) {
        if let Some(i) = &self.index {
            i.pulls.record(name, d);
        }
    }

    /// Tags from the index: `Some` when it answered (`None` inside when the repository is
    /// unknown to it), `None` when the caller must walk storage.
    pub(crate) async fn indexed_tags(
        &self,
        name: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Option<Option<(Vec<String>, bool)>> {
        let ix = self.listing_index()?;
        match ix.tags(name, n, last).await {
            Ok(r) => Some(r),
            Err(e) => {
                degraded("tags list", &e);
                None
            }
        }
    }

    /// The catalog from the index, or `None` when the caller must walk storage.
    pub(crate) async fn indexed_catalog(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Option<(Vec<String>, bool)> {
        let ix = self.listing_index()?;
        match ix.catalog(n, last).await {
            Ok(r) => Some(r),
            Err(e) => {
                degraded("catalog", &e);
                None
            }
        }
    }

    /// Referrers entries from the index, or `None` when the caller must read storage.
    pub(crate) async fn indexed_referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        n: usize,
    ) -> Option<(Vec<(Digest, String)>, bool)> {
        let ix = self.listing_index()?;
        match ix.referrers(name, subject, artifact_type, after, n).await {
            Ok(r) => Some(r),
            Err(e) => {
                degraded("referrers", &e);
                None
            }
        }
    }

    /// Bytes a repository holds (each manifest and each distinct blob it references), from
    /// the index; `Ok(None)` when the repository is unknown.
    pub async fn repository_size(&self, name: &str) -> Result<Option<u64>> {
        crate::check_name(name)?;
        match self.listing_index() {
            Some(ix) => Ok(ix.repository_size(name).await?),
            None => Err(RegistryError::Unsupported(
                "repository sizes need the metadata index (database), which is off or still being built".into(),
            )),
        }
    }

    /// What storage holds of one repository, read for a reconcile.
    pub async fn snapshot_repository(&self, name: &str) -> Result<RepositorySnapshot> {
        let mut snap = RepositorySnapshot {
            repository: name.to_owned(),
            ..Default::default()
        };
        let revisions = format!("{}/_manifests/revisions", paths::repo(name));
        let mut digests = Vec::new();
        for alg in list_or_empty(self, &revisions).await? {
            for hex in list_or_empty(self, &format!("{revisions}/{alg}")).await? {
                if let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() {
                    digests.push(d);
                }
            }
        }
        let read: Vec<Result<Option<ManifestRecord>>> = futures::stream::iter(digests)
            .map(|d| async move { self.stored_manifest_record(name, &d).await })
            .buffer_unordered(16)
            .collect()
            .await;
        for r in read {
            if let Some(m) = r? {
                snap.manifests.push(m);
            }
        }
        let tag_names = self.all_tags(name).await?;
        let read: Vec<Result<Option<TagRecord>>> = futures::stream::iter(tag_names)
            .map(|t| async move {
                let key = paths::tag_current(name, &t);
                let Some(d) = self.read_link(&key).await? else {
                    return Ok(None);
                };
                let pushed_at = self
                    .storage
                    .stat(&key)
                    .await
                    .ok()
                    .and_then(|m| m.modified)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some(TagRecord {
                    tag: t,
                    digest: d,
                    pushed_at,
                }))
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let known: BTreeSet<String> = snap
            .manifests
            .iter()
            .map(|m| m.digest.to_string())
            .collect();
        for r in read {
            // A tag pointing at no stored revision resolves to nothing; it is not listed.
            if let Some(t) = r?
                && known.contains(&t.digest.to_string())
            {
                snap.tags.push(t);
            }
        }
        Ok(snap)
    }

    async fn stored_manifest_record(
        &self,
        name: &str,
        d: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let link = paths::revision_link(name, d);
        let Ok(meta) = self.storage.stat(&link).await else {
            return Ok(None);
        };
        let m = match self.get_manifest_unrecorded(name, &d.to_string()).await {
            Ok(m) => m,
            Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let created = meta.modified.unwrap_or(SystemTime::UNIX_EPOCH);
        let parsed = match ParsedManifest::parse(&m.bytes, Some(&m.media_type)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(repository = name, digest = %d, error = %e, "a stored manifest does not parse: indexed without references");
                return Ok(Some(ManifestRecord {
                    digest: d.clone(),
                    media_type: m.media_type,
                    size: m.bytes.len() as u64,
                    artifact_type: None,
                    subject: None,
                    referrer_entry: None,
                    references: vec![],
                    created_at: created,
                }));
            }
        };
        let entry = match &parsed.subject {
            Some(_) => crate::referrers::referrer_entry(&parsed, d, m.bytes.len() as u64)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            None => None,
        };
        Ok(Some(manifest_record(
            &parsed,
            d,
            m.bytes.len() as u64,
            entry,
            created,
        )))
    }

    /// Walks all of storage and compares it with the index; unless `check_only`, makes the
    /// index agree and marks it complete (listings come from it from then on). Progress is
    /// logged every 10 seconds. Live requests may run meanwhile.
    pub async fn reconcile_index(&self, check_only: bool) -> Result<ReconcileReport> {
        let Some(i) = &self.index else {
            return Err(RegistryError::Unsupported(
                "this registry keeps no index".into(),
            ));
        };
        let started = SystemTime::now();
        let clock = Instant::now();
        let mut last_log = Instant::now();
        let mut names = self
            .repo_dirs(|c| c == "_manifests" || c == "_layers")
            .await?;
        names.sort();
        let total = names.len();
        let mut report = ReconcileReport::default();
        for name in &names {
            let snap = self.snapshot_repository(name).await?;
            report.manifests += snap.manifests.len();
            report.tags += snap.tags.len();
            let diff = i
                .index
                .reconcile_repository(&snap, started, check_only)
                .await?;
            if !diff.is_empty() {
                report.differences.push(diff);
            }
            report.repositories += 1;
            if last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                tracing::info!(done = report.repositories, total, elapsed = ?clock.elapsed(), "indexing storage");
            }
        }
        let stored: BTreeSet<String> = names.into_iter().collect();
        report.extra_repositories = i
            .index
            .reconcile_repositories(&stored, started, check_only)
            .await?;
        if !check_only {
            i.index.mark_complete().await?;
            i.ready.store(true, Ordering::SeqCst);
        }
        tracing::info!(
            repositories = report.repositories,
            manifests = report.manifests,
            tags = report.tags,
            differences = report.differences.len() + report.extra_repositories.len(),
            elapsed = ?clock.elapsed(),
            check_only,
            "index reconciled with storage"
        );
        Ok(report)
    }

    /// Retries the repositories whose index write failed.
    async fn repair_pending(&self) {
        let Some(i) = &self.index else { return };
        let pending: Vec<String> = {
            let r = i.repairs.lock().unwrap_or_else(|e| e.into_inner());
            r.iter().cloned().collect()
        };
        for name in pending {
            // Only this process's failed write is repaired: rows written since this moment
            // stay (the guard is the moment itself, not a grace period before it).
            let started = SystemTime::now() + berth_index::RECONCILE_GRACE;
            let result = match self.snapshot_repository(&name).await {
                Ok(snap) => i
                    .index
                    .reconcile_repository(&snap, started, false)
                    .await
                    .map_err(RegistryError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => {
                    i.repairs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&name);
                    tracing::info!(repository = name, "index caught up with storage");
                }
                Err(e) => {
                    tracing::debug!(repository = name, error = %e, "index repair failed; retrying");
                    return;
                }
            }
        }
    }
}

async fn list_or_empty(r: &Registry, dir: &str) -> Result<Vec<String>> {
    match r.storage.list(dir).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_found() => Ok(vec![]),
        Err(e) => Err(e.into()),
    }
}

fn degraded(what: &str, e: &berth_index::IndexError) {
    tracing::warn!(error = %e, "the index cannot answer the {what}: walking storage instead");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_index::IndexConfig;
    use bytes::Bytes;

    use crate::{ByteStream, FolderStorage, Registry, RegistryConfig};

    fn body(b: &[u8]) -> ByteStream {
        Box::pin(futures::stream::iter([Ok(Bytes::copy_from_slice(b))]))
    }

    async fn push_blob(r: &Registry, repo: &str, b: &[u8]) -> String {
        let d = berth_oci::Digest::sha256_of(b).to_string();
        r.put_blob(repo, &d, body(b), Some(b.len() as u64))
            .await
            .unwrap();
        d
    }

    /// A manifest of one config and one layer, optionally with a subject and artifact type.
    async fn manifest(r: &Registry, repo: &str, seed: &str, subject: Option<&str>) -> Bytes {
        let config = push_blob(r, repo, format!("config {seed}").as_bytes()).await;
        let layer = push_blob(r, repo, format!("layer {seed}").as_bytes()).await;
        let subject = subject
            .map(|s| format!(r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{s}","size":1}},"artifactType":"application/x-sig""#))
            .unwrap_or_default();
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{}}}]{subject}}}"#,
            format!("config {seed}").len(),
            format!("layer {seed}").len(),
        ))
    }

    #[tokio::test]
    async fn listings_from_the_index_match_the_storage_walk() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FolderStorage::new(dir.path().join("data")).unwrap());
        let config = RegistryConfig {
            delete_enabled: true,
            ..Default::default()
        };
        let walk = Registry::new(storage.clone(), config.clone());
        let index = berth_index::Index::open(&IndexConfig::Embedded {
            path: dir.path().join("index.db"),
        })
        .await
        .unwrap();
        let r = Registry::new(storage, config)
            .with_index(index.clone())
            .await
            .unwrap();
        assert!(!r.index_ready());
        r.reconcile_index(false).await.unwrap();
        assert!(r.index_ready());

        let m = manifest(&r, "a/b", "1", None).await;
        let pushed = r
            .put_manifest_tagged("a/b", "v1", None, m, &["latest".into(), "V0".into()])
            .await
            .unwrap();
        let base = pushed.digest.to_string();
        for n in 0..3 {
            let sig = manifest(&r, "a/b", &format!("sig{n}"), Some(&base)).await;
            r.put_manifest(
                "a/b",
                &berth_oci::Digest::sha256_of(&sig).to_string(),
                None,
                sig,
            )
            .await
            .unwrap();
        }
        push_blob(&r, "blobs/only", b"x").await;

        for (n, last) in [(None, None), (Some(1), None), (Some(2), Some("V0"))] {
            assert_eq!(
                r.list_tags("a/b", n, last).await.unwrap(),
                walk.list_tags("a/b", n, last).await.unwrap()
            );
        }
        assert_eq!(
            r.catalog(None, None).await.unwrap(),
            (vec!["a/b".to_owned(), "blobs/only".to_owned()], false)
        );
        assert_eq!(
            r.catalog(None, None).await.unwrap(),
            walk.catalog(None, None).await.unwrap()
        );
        let from_index = r
            .referrers("a/b", &pushed.digest, None, None)
            .await
            .unwrap();
        let from_storage = walk
            .referrers("a/b", &pushed.digest, None, None)
            .await
            .unwrap();
        assert_eq!(from_index.descriptors.len(), 3);
        assert_eq!(from_index.descriptors, from_storage.descriptors);
        let typed = r
            .referrers("a/b", &pushed.digest, Some("application/x-sig"), None)
            .await
            .unwrap();
        assert_eq!(typed.descriptors.len(), 3);
        assert!(r.repository_size("a/b").await.unwrap().unwrap() > 0);

        // Deletes go to the index too; afterwards a check finds nothing to fix.
        r.delete_manifest("a/b", "latest").await.unwrap();
        assert_eq!(
            r.list_tags("a/b", None, None).await.unwrap(),
            (vec!["V0".to_owned(), "v1".to_owned()], false)
        );
        r.delete_manifest("a/b", &base).await.unwrap();
        assert_eq!(
            r.list_tags("a/b", None, None).await.unwrap(),
            (vec![], false)
        );
        assert_eq!(
            r.list_tags("a/b", None, None).await.unwrap(),
            walk.list_tags("a/b", None, None).await.unwrap()
        );
        let report = r.reconcile_index(true).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.differences);
        assert_eq!(report.repositories, 2);
        assert_eq!(report.manifests, 3, "the three signatures remain");
    }
}
