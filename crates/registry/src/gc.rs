//! Garbage collection on Distribution's layout, safe beside live pushes on any replica.
//!
//! A run marks every manifest it keeps and every blob those reference, then sweeps the blobs
//! (and, with `delete_untagged`, the manifests) nothing reaches. Nothing a run needs to stay safe
//! lives in one process's memory; it lives in storage as modification times:
//! - a push refreshes ("touches") the repository link of every blob and child manifest it
//!   references (a blob `HEAD` does too, an upload or mount writes a fresh link), and a run keeps
//!   whatever a link newer than the grace window names;
//! - a blob is not deleted outright: it is moved aside to a quarantine, every repository's links
//!   are looked at again, and only then is it deleted, or put back when a push reached it
//!   meanwhile. A push that checked the blob before the move touched its link before the
//!   move, so the second look sees it; a push that checks after the move finds no blob and
//!   asks its client to upload it again (the spec's `BLOB_UNKNOWN`), which loses nothing;
//! - a killed run leaves blobs in the quarantine; the next run (and every start of
//!   `berth serve`) puts them back first, and decides about them afresh.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use berth_index::ManifestEdges;
use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;
use futures::StreamExt;

use crate::retention::RepoPlan;
use crate::{Registry, RegistryError, Result, paths};

/// Where a run moves blobs before it deletes them (outside Distribution's tree, which never
/// looks here).
pub const QUARANTINE: &str = "berth/gc-quarantine";

/// Storage requests a run keeps in flight at once.
const PARALLEL: usize = 16;

/// How a garbage collection runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Whatever was written or touched this recently is kept even when nothing reaches it:
    /// a push may be about to reference it. `0s` only when nothing is pushing.
    pub grace: Duration,
    /// Also delete manifests no tag reaches (through indexes and, for referrers, through
    /// their subjects), when older than the grace window. Off: every manifest is kept.
    pub delete_untagged: bool,
    /// Report what would go, change nothing.
    pub dry_run: bool,
    /// At most this many deletes per second (`None`: as fast as storage answers).
    pub rate: Option<u32>,
    /// Apply the registry's retention rules first ([`crate::policy`]): delete the tags they
    /// judge, then the manifests those leave unreached and untagged ones past their age.
    pub policies: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GRACE,
            delete_untagged: false,
            dry_run: false,
            rate: None,
            policies: false,
        }
    }
}

/// The grace window when none is configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What a run found and did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Repositories walked.
    pub repositories: usize,
    /// Tags retention deleted, with the reason.
    pub tags_deleted: Vec<crate::retention::TagDeleted>,
    /// Manifests kept.
    pub manifests_kept: usize,
    /// Manifests deleted (repository, digest).
    pub manifests_deleted: Vec<(String, Digest)>,
    /// Blobs in storage when the run began.
    pub blobs_seen: usize,
    /// Blobs deleted, with their sizes.
    pub blobs_deleted: Vec<(Digest, u64)>,
    /// Unreached blobs kept because something wrote or touched them inside the grace window.
    pub kept_in_grace: usize,
    /// The bytes those hold: what a later run frees unless a push uses them.
    pub kept_in_grace_bytes: u64,
    /// Blobs moved aside and put back because a push reached them during the run.
    pub restored: usize,
    /// Repository links to deleted blobs removed.
    pub links_deleted: usize,
    /// Blobs a killed earlier run had left in the quarantine, put back at the start.
    pub recovered: usize,
    /// How long the run took.
    pub elapsed: Duration,
}

impl GcReport {
    /// Bytes the deleted blobs held.
    pub fn bytes_freed(&self) -> u64 {
        self.blobs_deleted.iter().map(|(_, s)| s).sum()
    }
}

/// What each manifest of a repository points at, as a run found it.
type ManifestsRead = HashMap<Digest, ManifestEdges>;

/// What became of a blob moved aside.
enum Settled {
    /// A push reached it: back in place.
    PutBack,
    /// Deleted, with this many dangling links.
    Deleted { links: usize },
}

/// Spaces deletes to a rate.
struct Pace {
    every: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(rate: Option<u32>) -> Self {
        Pace {
            every: rate.filter(|r| *r > 0).map(|r| Duration::from_secs(1) / r),
            next: Instant::now(),
        }
    }

    async fn wait(&mut self) {
        if let Some(every) = self.every {
            let now = Instant::now();
            if self.next > now {
                tokio::time::sleep(self.next - now).await;
            }
            self.next = self.next.max(now) + every;
        }
    }
}

fn digest_of(alg: &str, hex: &str) -> Option<Digest> {
    format!("{alg}:{hex}").parse().ok()
}

/// The folder holding a key.
fn parent(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(p, _)| p)
}

fn quarantined(d: &Digest) -> String {
    format!("{QUARANTINE}/{}/{}", d.algorithm(), d.hex())
}

impl Registry {
    async fn list_quiet(&self, dir: &str) -> Result<Vec<String>> {
        match self.storage.list(dir).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// `<alg>/<hex>` folders under `dir` (revisions, layer links) as digests.
    async fn digests_under(&self, dir: &str) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in self.list_quiet(dir).await? {
            for hex in self.list_quiet(&format!("{dir}/{alg}")).await? {
                if let Some(d) = digest_of(&alg, &hex) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// When a key was last written, `None` when it is not there.
    pub(crate) async fn modified(&self, key: &str) -> Result<Option<SystemTime>> {
        match self.storage.stat(key).await {
            Ok(m) => Ok(Some(m.modified.unwrap_or(SystemTime::UNIX_EPOCH))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Refreshes a link a push or a blob `HEAD` relies on, when it is older than half the
    /// grace window, so that a collection running now keeps what it names.
    pub(crate) async fn touch_link(&self, key: &str, d: &Digest) -> Result<()> {
        let half = self.config.gc_grace / 2;
        match self.modified(key).await? {
            Some(at) if at.elapsed().map_or(true, |age| age < half) => Ok(()),
            Some(_) => self.write_link(key, d).await,
            None => Ok(()),
        }
    }

    /// Puts back the blobs a killed run left in the quarantine (a blob already back in place
    /// wins; the moved-aside copy is dropped). Returns how many were put back.
    pub async fn gc_recover(&self) -> Result<usize> {
        let mut n = 0;
        for alg in self.list_quiet(QUARANTINE).await? {
            for hex in self.list_quiet(&format!("{QUARANTINE}/{alg}")).await? {
                let Some(d) = digest_of(&alg, &hex) else {
                    continue;
                };
                let data = paths::blob_data(&d);
                if self.exists(&data).await? {
                    self.delete_quiet(&quarantined(&d)).await?;
                } else {
                    self.storage.rename(&quarantined(&d), &data).await?;
                    n += 1;
                }
            }
        }
        if n > 0 {
            tracing::info!(
                blobs = n,
                "put back blobs an interrupted garbage collection had moved aside"
            );
        }
        Ok(n)
    }

    /// Runs one garbage collection. Safe while this and other replicas serve pushes (see the
    /// module's notes); with `dry_run` nothing changes and the report says what would go.
    pub async fn collect_garbage(&self, opts: &GcOptions) -> Result<GcReport> {
        let clock = Instant::now();
        let mut report = GcReport::default();
        if !opts.dry_run {
            report.recovered = self.gc_recover().await?;
        }
        let started = SystemTime::now();
        let cutoff = started
            .checked_sub(opts.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut pace = Pace::new(opts.rate);

        // Mark: per repository, the manifests kept and every blob they reference.
        let mut names = self
            .repo_dirs(|c| c == "_manifests" || c == "_layers")
            .await?;
        names.sort();
        report.repositories = names.len();
        let mut marked: BTreeSet<Digest> = BTreeSet::new();
        // Which repositories link each blob: what a sweep may have to unlink.
        let mut linked: HashMap<Digest, Vec<String>> = HashMap::new();
        for name in &names {
            let plan = match self.config.policies.retention(name) {
                Some(rule) if opts.policies => {
                    self.apply_retention(
                        name,
                        rule,
                        opts.dry_run,
                        cutoff,
                        started,
                        &mut report.tags_deleted,
                    )
                    .await?
                }
                _ => RepoPlan::default(),
            };
            let kept = self
                .mark_repository(name, opts, cutoff, &plan, &mut pace, &mut report)
                .await?;
            report.manifests_kept += kept.len();
            for (d, refs) in kept {
                marked.insert(d);
                marked.extend(refs);
            }
            let links = self
                .digests_under(&format!("{}/_layers", paths::repo(name)))
                .await?;
            for d in links {
                linked.entry(d).or_default().push(name.clone());
            }
        }

        // Candidates: blobs in storage that nothing marked, older than the window, with no
        // link newer than it.
        let blobs_root = format!("{}/blobs", paths::ROOT);
        let mut stored = Vec::new();
        for alg in self.list_quiet(&blobs_root).await? {
            for prefix in self.list_quiet(&format!("{blobs_root}/{alg}")).await? {
                for hex in self
                    .list_quiet(&format!("{blobs_root}/{alg}/{prefix}"))
                    .await?
                {
                    if let Some(d) = digest_of(&alg, &hex) {
                        stored.push(d);
                    }
                }
            }
        }
        report.blobs_seen = stored.len();
        tracing::debug!(
            phase = "mark and list",
            seconds = clock.elapsed().as_secs_f64()
        );
        let unmarked: Vec<Digest> = stored.into_iter().filter(|d| !marked.contains(d)).collect();
        let linked_by = |d: &Digest| -> Vec<String> { linked.get(d).cloned().unwrap_or_default() };
        // (digest, size, kept because fresh)
        let checked: Vec<Result<Option<(Digest, u64, bool)>>> = futures::stream::iter(unmarked)
            .map(|d| {
                let holders = linked_by(&d);
                async move {
                    let meta = match self.storage.stat(&paths::blob_data(&d)).await {
                        Ok(m) => m,
                        Err(e) if e.is_not_found() => return Ok(None),
                        Err(e) => return Err(e.into()),
                    };
                    if meta.modified.is_none_or(|m| m >= cutoff) {
                        return Ok(Some((d, meta.size, true)));
                    }
                    for repo in holders {
                        if self
                            .modified(&paths::layer_link(&repo, &d))
                            .await?
                            .is_some_and(|m| m >= cutoff)
                        {
                            return Ok(Some((d, meta.size, true)));
                        }
                    }
                    Ok(Some((d, meta.size, false)))
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut candidates = Vec::new();
        for c in checked {
            match c? {
                Some((_, size, true)) => {
                    report.kept_in_grace += 1;
                    report.kept_in_grace_bytes += size;
                }
                Some((d, size, false)) => candidates.push((d, size)),
                None => {}
            }
        }
        candidates.sort();
        tracing::debug!(
            phase = "candidates",
            seconds = clock.elapsed().as_secs_f64()
        );
        if opts.dry_run {
            report.blobs_deleted = candidates;
            report.elapsed = clock.elapsed();
            return Ok(report);
        }

        // Sweep: move aside, look at every repository's links again, then delete or put back.
        let pace = tokio::sync::Mutex::new(pace);
        let pace = &pace;
        let moved: Vec<Result<Option<(Digest, u64)>>> = futures::stream::iter(candidates)
            .map(|(d, size)| async move {
                // With a rate, the lock is held through the wait: starts are spaced.
                pace.lock().await.wait().await;
                match self
                    .storage
                    .rename_undurable(&paths::blob_data(&d), &quarantined(&d))
                    .await
                {
                    Ok(()) => Ok(Some((d, size))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut aside = Vec::new();
        for m in moved {
            if let Some(x) = m? {
                aside.push(x);
            }
        }
        let reached = self.fresh_links(&aside, cutoff).await?;
        tracing::debug!(
            phase = "moved aside and looked again",
            seconds = clock.elapsed().as_secs_f64()
        );
        let reached = &reached;
        let settled: Vec<Result<(Digest, u64, Settled)>> = futures::stream::iter(aside)
            .map(|(d, size)| {
                let holders = linked_by(&d);
                async move {
                    let how = self.settle_aside(&d, holders, reached.contains(&d)).await?;
                    Ok((d, size, how))
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for r in settled {
            match r? {
                (d, _, Settled::PutBack) => {
                    report.restored += 1;
                    tracing::info!(digest = %d, "a push reached a blob during garbage collection: kept");
                }
                (d, size, Settled::Deleted { links }) => {
                    report.links_deleted += links;
                    report.blobs_deleted.push((d, size));
                }
            }
        }
        report.blobs_deleted.sort();
        report.elapsed = clock.elapsed();
        tracing::info!(
            repositories = report.repositories,
            manifests_deleted = report.manifests_deleted.len(),
            blobs_deleted = report.blobs_deleted.len(),
            bytes_freed = report.bytes_freed(),
            kept_in_grace = report.kept_in_grace,
            restored = report.restored,
            seconds = report.elapsed.as_secs_f64(),
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Deletes a blob moved aside, with its now dangling links, or puts it back when `reached`.
    async fn settle_aside(
        &self,
        d: &Digest,
        holders: Vec<String>,
        reached: bool,
    ) -> Result<Settled> {
        let data = paths::blob_data(d);
        if reached {
            if self.exists(&data).await? {
                self.delete_quiet(&quarantined(d)).await?;
            } else {
                self.storage.rename(&quarantined(d), &data).await?;
            }
            return Ok(Settled::PutBack);
        }
        self.delete_quiet(&quarantined(d)).await?;
        // The blob's own folder; the two-hex-digit one above it stays, as in Distribution
        // (it is shared, and trying it is a system call per blob).
        let folder = data.trim_end_matches("/data");
        self.storage
            .prune_empty_folders(folder, parent(folder))
            .await?;
        // Its links dangle now. None is fresh (the second look said so), and one refreshed
        // since names a blob that is gone, which no push accepts; but an upload of the same
        // content may have put the data back meanwhile, so then the links are written again.
        for repo in &holders {
            let link = paths::layer_link(repo, d);
            self.delete_quiet(&link).await?;
            let folder = parent(&link);
            self.storage
                .prune_empty_folders(folder, parent(folder))
                .await?;
        }
        let mut links = holders.len();
        if !holders.is_empty() && self.exists(&data).await? {
            for repo in &holders {
                self.write_link(&paths::layer_link(repo, d), d).await?;
            }
            links = 0;
        }
        Ok(Settled::Deleted { links })
    }

    /// The blobs of `aside` that some repository (walked afresh, so one created during the
    /// run counts) links with a link written or touched since `cutoff`.
    async fn fresh_links(
        &self,
        aside: &[(Digest, u64)],
        cutoff: SystemTime,
    ) -> Result<BTreeSet<Digest>> {
        let mut reached = BTreeSet::new();
        if aside.is_empty() {
            return Ok(reached);
        }
        let wanted: BTreeSet<&Digest> = aside.iter().map(|(d, _)| d).collect();
        let names = self
            .repo_dirs(|c| c == "_manifests" || c == "_layers")
            .await?;
        for name in names {
            for d in self
                .digests_under(&format!("{}/_layers", paths::repo(&name)))
                .await?
            {
                if wanted.contains(&d)
                    && !reached.contains(&d)
                    && self
                        .modified(&paths::layer_link(&name, &d))
                        .await?
                        .is_some_and(|m| m >= cutoff)
                {
                    reached.insert(d);
                }
            }
        }
        Ok(reached)
    }

    /// Marks one repository: returns each kept manifest with the blobs it references (its
    /// own bytes are a blob too). With `delete_untagged`, deletes the manifests no tag
    /// reaches that are older than the window, then marks again from the tags as they are
    /// now and puts back any a concurrent push reached meanwhile.
    async fn mark_repository(
        &self,
        name: &str,
        opts: &GcOptions,
        cutoff: SystemTime,
        plan: &RepoPlan,
        pace: &mut Pace,
        report: &mut GcReport,
    ) -> Result<Vec<(Digest, Vec<Digest>)>> {
        let revisions = self
            .digests_under(&format!("{}/_manifests/revisions", paths::repo(name)))
            .await?;
        let mut read = self.manifest_edges(name, &revisions).await?;
        if !opts.delete_untagged && !plan.prunes() {
            return Ok(read
                .iter()
                .map(|(d, e)| (d.clone(), references(d, e)))
                .collect());
        }
        // A dry run deletes no tag: it marks as if the tags retention judged were gone. A
        // real run has deleted them, and one pushed again since counts.
        let none = BTreeSet::new();
        let removed = if opts.dry_run {
            &plan.removed_tags
        } else {
            &none
        };
        let reached = self.reach_from_tags(name, &mut read, removed).await?;
        let mut written: HashMap<Digest, Option<SystemTime>> = HashMap::new();
        for d in &revisions {
            if !reached.contains(d) && read.contains_key(d) {
                written.insert(
                    d.clone(),
                    self.modified(&paths::revision_link(name, d)).await?,
                );
            }
        }
        // What goes: every unreached manifest with `delete_untagged`; else those the
        // retention plan names (the manifests of deleted tags, untagged ones past the rule's
        // age), with their unreached children and referrers. Never one written inside the
        // grace window (recently pushed or re-pushed: maybe about to be tagged).
        let mut todo: Vec<Digest> = written
            .iter()
            .filter(|(d, at)| {
                opts.delete_untagged
                    || plan.orphans.contains(*d)
                    || plan
                        .untagged_before
                        .is_some_and(|before| at.is_some_and(|m| m < before))
            })
            .map(|(d, _)| d.clone())
            .collect();
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (d, e) in read.iter() {
            if let Some(s) = &e.subject {
                referrers.entry(s).or_default().push(d);
            }
        }
        let mut going = BTreeSet::new();
        while let Some(d) = todo.pop() {
            if !written.contains_key(&d) || !going.insert(d.clone()) {
                continue;
            }
            if let Some(e) = read.get(&d) {
                todo.extend(e.children.iter().cloned());
            }
            if let Some(rs) = referrers.get(&d) {
                todo.extend(rs.iter().map(|r| (*r).clone()));
            }
        }
        let mut doomed: Vec<Digest> = going
            .into_iter()
            .filter(|d| {
                written
                    .get(d)
                    .is_some_and(|at| at.is_some_and(|m| m < cutoff))
            })
            .collect();
        if !opts.dry_run && !doomed.is_empty() {
            // The bytes, to put a manifest back should a push reach it meanwhile.
            let mut kept_bytes = HashMap::new();
            for d in &doomed {
                if let Ok(m) = self.get_manifest_unrecorded(name, &d.to_string()).await {
                    kept_bytes.insert(d.clone(), (m.bytes, m.media_type));
                }
            }
            for d in &doomed {
                pace.wait().await;
                let subject = read.get(d).and_then(|e| e.subject.clone());
                self.gc_delete_manifest(name, d, subject.as_ref()).await?;
            }
            // A push during the deletes may have tagged, or referenced from an index or as a
            // subject, one of them: mark again from the tags as they are now.
            let again = self.reach_from_tags(name, &mut read, removed).await?;
            for d in doomed.iter().filter(|d| again.contains(*d)) {
                if let Some((bytes, media_type)) = kept_bytes.get(d) {
                    self.put_manifest(name, &d.to_string(), Some(media_type), bytes.clone())
                        .await?;
                    tracing::info!(repository = name, digest = %d, "a push reached a manifest during garbage collection: kept");
                }
            }
            doomed.retain(|d| !again.contains(d));
        }
        for d in &doomed {
            report.manifests_deleted.push((name.to_owned(), d.clone()));
        }
        let doomed: BTreeSet<&Digest> = doomed.iter().collect();
        Ok(read
            .iter()
            .filter(|(d, _)| !doomed.contains(d))
            .map(|(d, e)| (d.clone(), references(d, e)))
            .collect())
    }

    /// What each of `digests` (manifests of one repository) points at: from the index where
    /// it has the manifest (a manifest's content never changes), else read and parsed from
    /// storage. One that is gone is left out; one whose bytes are missing or do not parse
    /// points at nothing (it is kept, referencing only itself).
    async fn manifest_edges(&self, name: &str, digests: &[Digest]) -> Result<ManifestsRead> {
        let mut known = match self.index() {
            Some(ix) => match ix.manifest_edges(name).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(repository = name, error = %e, "the index cannot say what manifests reference: reading them from storage");
                    HashMap::new()
                }
            },
            None => HashMap::new(),
        };
        let mut out = ManifestsRead::new();
        let mut unknown = Vec::new();
        for d in digests {
            match known.remove(d) {
                Some(e) => {
                    out.insert(d.clone(), e);
                }
                None => unknown.push(d.clone()),
            }
        }
        let read: Vec<Result<Option<(Digest, ManifestEdges)>>> = futures::stream::iter(unknown)
            .map(|d| async move {
                match self.get_manifest_unrecorded(name, &d.to_string()).await {
                    Ok(m) => {
                        let edges = ParsedManifest::parse(&m.bytes, Some(&m.media_type))
                            .map(|p| edges_of(&p))
                            .unwrap_or_default();
                        Ok(Some((d, edges)))
                    }
                    // A revision folder without its link (Distribution's DELETE leaves one)
                    // holds no manifest.
                    Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => {
                        Ok(None)
                    }
                    Err(RegistryError::BlobUnknown(_)) => Ok(Some((d, ManifestEdges::default()))),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for r in read {
            if let Some((d, e)) = r? {
                out.insert(d, e);
            }
        }
        Ok(out)
    }

    /// Manifests reached from the repository's tags (read now): through index children, and
    /// referrers whose subject is reached. A manifest reached that `read` lacks (pushed
    /// after the listing) is read and added, so that the children of an index pushed during
    /// the run count.
    async fn reach_from_tags(
        &self,
        name: &str,
        read: &mut ManifestsRead,
        removed: &BTreeSet<String>,
    ) -> Result<BTreeSet<Digest>> {
        let mut reached = BTreeSet::new();
        let mut todo = Vec::new();
        for tag in self.all_tags(name).await? {
            if removed.contains(&tag) {
                continue;
            }
            if let Some(d) = self.read_link(&paths::tag_current(name, &tag)).await? {
                todo.push(d);
            }
        }
        let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for (d, e) in read.iter() {
            if let Some(s) = &e.subject {
                referrers.entry(s.clone()).or_default().push(d.clone());
            }
        }
        while let Some(d) = todo.pop() {
            if !reached.insert(d.clone()) {
                continue;
            }
            if !read.contains_key(&d) {
                let found = self.manifest_edges(name, std::slice::from_ref(&d)).await?;
                read.extend(found);
            }
            if let Some(e) = read.get(&d) {
                todo.extend(e.children.iter().cloned());
            }
            if let Some(rs) = referrers.get(&d) {
                todo.extend(rs.iter().cloned());
            }
        }
        Ok(reached)
    }

    /// Deletes one unreached manifest: the index first, then the revision, its entries in tag
    /// histories and its referrers entry.
    async fn gc_delete_manifest(
        &self,
        name: &str,
        d: &Digest,
        subject: Option<&Digest>,
    ) -> Result<()> {
        self.index_delete_manifest(name, d).await?;
        self.delete_quiet(&paths::revision_dir(name, d)).await?;
        for tag in self.all_tags(name).await? {
            let entry = paths::tag_index(name, &tag, d);
            self.delete_quiet(entry.trim_end_matches("/link")).await?;
        }
        if let Some(s) = subject {
            self.delete_quiet(&paths::referrer(name, s, d)).await?;
        }
        tracing::info!(repository = name, digest = %d, "garbage collection deleted an untagged manifest");
        Ok(())
    }
}

fn edges_of(p: &ParsedManifest) -> ManifestEdges {
    ManifestEdges {
        subject: p.subject.as_ref().map(|s| s.digest.clone()),
        blobs: p
            .config
            .iter()
            .chain(p.layers.iter())
            .map(|d| d.digest.clone())
            .collect(),
        children: p.manifests.iter().map(|c| c.digest.clone()).collect(),
    }
}

/// What a kept manifest keeps: its own bytes, its config and layers, its child manifests.
fn references(d: &Digest, e: &ManifestEdges) -> Vec<Digest> {
    let mut out = vec![d.clone()];
    out.extend(e.blobs.iter().cloned());
    out.extend(e.children.iter().cloned());
    out
}
