//! Copying images between registries and OCI image layouts.
//!
//! One engine serves `cp` (registry to registry), `pull` (registry to layout) and `push` (layout
//! to registry): a [`Source`] hands out manifests and blob streams, a [`Destination`] says what
//! it already has and takes blobs and manifests. Blobs stream from source to destination without
//! touching disk and are never recompressed, so every digest is kept; blobs the destination has
//! are skipped (checked with parallel `HEAD`s), blobs on the same registry are mounted, and the
//! rest move concurrently under a per-host cap. Manifests are written only after everything they
//! reference, so a failed copy never leaves a tag pointing at missing or corrupt content.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::{Descriptor, Digest};
use futures::future::BoxFuture;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::blob::BlobStream;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Platform};
use crate::progress::{BlobOutcome, NoProgress, Reporter};
use crate::transfer::{BlobSource, PushedBlob, ResendPolicy, lives_elsewhere, resend};

/// Where a copy reads from.
#[async_trait]
pub trait Source: Send + Sync {
    /// A name for messages.
    fn describe(&self) -> String;
    /// A manifest by tag (or layout name) or digest, verified.
    async fn manifest(&self, reference: &str) -> Result<Manifest>;
    /// Opens a blob's bytes, verified against `digest` and `size` while streaming. The future
    /// owns what it needs, so it can be started later (lazily) by the destination.
    fn blob(&self, digest: &Digest, size: u64) -> BoxFuture<'static, Result<BlobStream>>;
    /// The registry and repository, when this is a registry (enables mounts).
    fn location(&self) -> Option<(String, String)> {
        None
    }
    /// The per-host transfer cap, when this is a registry.
    fn permits(&self) -> Option<Arc<Semaphore>> {
        None
    }
}

/// Where a copy writes to.
#[async_trait]
pub trait Destination: Send + Sync {
    /// A name for messages.
    fn describe(&self) -> String;
    /// Whether the blob is already there.
    async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool>;
    /// Whether the manifest is already there (by digest).
    async fn has_manifest(&self, digest: &Digest) -> Result<bool>;
    /// Stores a blob, with one send (the caller resends on failure). [`BlobSource::open`] is
    /// lazy, so a successful mount costs no download. `mount_from` is a repository of the
    /// same registry.
    async fn push_blob(
        &self,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<PushedBlob>;
    /// Stores a manifest under a tag (or layout name) or its digest string.
    async fn put_manifest(&self, reference: &str, manifest: &Manifest) -> Result<()>;
    /// The registry and repository, when this is a registry.
    fn location(&self) -> Option<(String, String)> {
        None
    }
    /// The per-host transfer cap, when this is a registry.
    fn permits(&self) -> Option<Arc<Semaphore>> {
        None
    }
}

/// A repository of a registry, as a copy source or destination.
#[derive(Clone)]
pub struct RegistryRepo {
    /// The client of the registry.
    pub client: Client,
    /// The repository.
    pub repo: String,
}

impl RegistryRepo {
    /// `repo` on the registry of `client`.
    pub fn new(client: Client, repo: impl Into<String>) -> Self {
        RegistryRepo {
            client,
            repo: repo.into(),
        }
    }
}

#[async_trait]
impl Source for RegistryRepo {
    fn describe(&self) -> String {
        format!("{}/{}", self.client.registry(), self.repo)
    }
    async fn manifest(&self, reference: &str) -> Result<Manifest> {
        self.client.get_manifest(&self.repo, reference).await
    }
    fn blob(&self, digest: &Digest, size: u64) -> BoxFuture<'static, Result<BlobStream>> {
        let (client, repo, digest) = (self.client.clone(), self.repo.clone(), digest.clone());
        Box::pin(async move { client.blob_stream(&repo, &digest, Some(size)).await })
    }
    fn location(&self) -> Option<(String, String)> {
        Some((self.client.registry().to_owned(), self.repo.clone()))
    }
    fn permits(&self) -> Option<Arc<Semaphore>> {
        Some(self.client.inner.transfers.clone())
    }
}

#[async_trait]
impl Destination for RegistryRepo {
    fn describe(&self) -> String {
        format!("{}/{}", self.client.registry(), self.repo)
    }
    async fn has_blob(&self, digest: &Digest, _size: u64) -> Result<bool> {
        Ok(self.client.head_blob(&self.repo, digest).await?.is_some())
    }
    async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        Ok(self
            .client
            .manifest_exists(&self.repo, &digest.to_string())
            .await?
            .is_some())
    }
    async fn push_blob(
        &self,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<PushedBlob> {
        self.client
            .push_blob_once(&self.repo, source, mount_from)
            .await
    }
    async fn put_manifest(&self, reference: &str, manifest: &Manifest) -> Result<()> {
        self.client
            .put_manifest(&self.repo, reference, manifest)
            .await
            .map(|_| ())
    }
    fn location(&self) -> Option<(String, String)> {
        Some((self.client.registry().to_owned(), self.repo.clone()))
    }
    fn permits(&self) -> Option<Arc<Semaphore>> {
        Some(self.client.inner.transfers.clone())
    }
}

/// Which platforms of an index to copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Platforms {
    /// The whole index, byte for byte (the digest is kept).
    #[default]
    All,
    /// One platform: its image manifest is copied and tagged on its own.
    One(Platform),
    /// Several platforms: a new index with only their entries (a new digest) is written.
    Some(Vec<Platform>),
}

/// How to copy.
#[derive(Clone)]
pub struct CopyOptions {
    /// Which platforms of an index to copy.
    pub platforms: Platforms,
    /// Blobs in flight at once (further capped by each registry's
    /// [`crate::ClientOptions::max_concurrent_transfers`]).
    pub concurrency: usize,
    /// Attempts per blob for transient failures (dropped connections, expired tokens).
    pub blob_attempts: u32,
    /// Progress events.
    pub reporter: Arc<dyn Reporter>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Platforms::All,
            concurrency: 4,
            blob_attempts: 3,
            reporter: Arc::new(NoProgress),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Digest of the manifest or index written under the destination reference.
    pub digest: Option<Digest>,
    /// Its media type.
    pub media_type: String,
    /// Manifests written (children and top level).
    pub manifests: usize,
    /// Blobs whose bytes were transferred.
    pub blobs_copied: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
}

struct Ctx<'a> {
    src: &'a dyn Source,
    dst: &'a dyn Destination,
    opts: &'a CopyOptions,
    mount_from: Option<String>,
    done: Mutex<HashSet<Digest>>,
    copied: AtomicUsize,
    skipped: AtomicUsize,
    mounted: AtomicUsize,
    manifests: AtomicUsize,
    bytes: AtomicU64,
    local: Arc<Semaphore>,
}

/// Copies `src_reference` from `src` to `dst_reference` (a tag, a layout name or a digest string)
/// of `dst`.
///
/// ```no_run
/// # async fn demo() -> Result<(), berth_client::Error> {
/// use berth_client::{Client, CopyOptions, RegistryRepo, copy};
/// let a = Client::new("127.0.0.1:5000", Default::default())?;
/// let b = Client::new("127.0.0.1:5001", Default::default())?;
/// let report = copy(&RegistryRepo::new(a, "app"), "v1", &RegistryRepo::new(b, "app"), "v1", &CopyOptions::default()).await?;
/// println!("{:?} copied {} blobs", report.digest, report.blobs_copied);
/// # Ok(()) }
/// ```
pub async fn copy(
    src: &dyn Source,
    src_reference: &str,
    dst: &dyn Destination,
    dst_reference: &str,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let mount_from = match (src.location(), dst.location()) {
        (Some((sr, srepo)), Some((dr, drepo))) if sr == dr && srepo != drepo => Some(srepo),
        _ => None,
    };
    let mut cap = opts.concurrency.max(1);
    for p in [src.permits(), dst.permits()].into_iter().flatten() {
        cap = cap.min(p.available_permits().max(1));
    }
    let ctx = Ctx {
        src,
        dst,
        opts,
        mount_from,
        done: Mutex::new(HashSet::new()),
        copied: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        mounted: AtomicUsize::new(0),
        manifests: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
        local: Arc::new(Semaphore::new(cap)),
    };
    let top = src.manifest(src_reference).await?;
    let top = if top.is_index() {
        match &opts.platforms {
            Platforms::All => top,
            Platforms::One(p) => {
                let parsed = top.parse()?;
                let entry = parsed
                    .manifests
                    .iter()
                    .find(|d| p.matches(d.platform.as_ref()))
                    .ok_or_else(|| Error::NotFound {
                        what: format!("platform {p} in {}@{}", src.describe(), top.digest),
                    })?;
                src.manifest(&entry.digest.to_string()).await?
            }
            Platforms::Some(list) => filter_index(&top, list)?,
        }
    } else {
        top
    };
    copy_tree(&ctx, &top, 0).await?;
    dst.put_manifest(dst_reference, &top).await?;
    opts.reporter.manifest_written(dst_reference, &top.digest);
    ctx.manifests.fetch_add(1, Ordering::Relaxed);
    Ok(CopyReport {
        digest: Some(top.digest.clone()),
        media_type: top.media_type.clone(),
        manifests: ctx.manifests.load(Ordering::Relaxed),
        blobs_copied: ctx.copied.load(Ordering::Relaxed),
        blobs_skipped: ctx.skipped.load(Ordering::Relaxed),
        blobs_mounted: ctx.mounted.load(Ordering::Relaxed),
        bytes_copied: ctx.bytes.load(Ordering::Relaxed),
    })
}

/// A new index holding only the entries of `platforms` (other fields kept).
fn filter_index(index: &Manifest, platforms: &[Platform]) -> Result<Manifest> {
    let mut v: Value =
        serde_json::from_slice(&index.bytes).map_err(|e| Error::Invalid(e.to_string()))?;
    let entries = v
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::Invalid("index without manifests".into()))?;
    entries.retain(|e| platforms.iter().any(|p| p.matches(e.get("platform"))));
    if entries.is_empty() {
        let want: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        return Err(Error::NotFound {
            what: format!("platforms {} in {}", want.join(", "), index.digest),
        });
    }
    let bytes = serde_json::to_vec(&v).expect("JSON serializes");
    Manifest::from_bytes(bytes, Some(&index.media_type))
}

/// Deepest chain of indexes within indexes a copy follows. Images use one level (an index of
/// image manifests), rarely two; a registry serving a chain thousands deep would otherwise run
/// the copy out of stack.
pub const MAX_INDEX_DEPTH: usize = 16;

/// Copies everything `manifest` references (not the manifest itself); `depth` is how many
/// indexes lead to it.
async fn copy_tree(ctx: &Ctx<'_>, manifest: &Manifest, depth: usize) -> Result<()> {
    let parsed = manifest.parse()?;
    if manifest.is_index() {
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::Invalid(format!(
                "index {} is nested more than {MAX_INDEX_DEPTH} indexes deep; no image needs that, so the copy stopped",
                manifest.digest
            )));
        }
        for child in &parsed.manifests {
            if ctx.dst.has_manifest(&child.digest).await? {
                continue;
            }
            let m = ctx.src.manifest(&child.digest.to_string()).await?;
            if m.digest != child.digest {
                return Err(Error::DigestMismatch {
                    what: "child manifest".into(),
                    expected: child.digest.clone(),
                    actual: m.digest,
                });
            }
            Box::pin(copy_tree(ctx, &m, depth + 1)).await?;
            ctx.dst.put_manifest(&child.digest.to_string(), &m).await?;
            ctx.opts
                .reporter
                .manifest_written(&child.digest.to_string(), &child.digest);
            ctx.manifests.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(());
    }
    let blobs: Vec<Descriptor> = parsed
        .config
        .into_iter()
        .chain(parsed.layers)
        // Foreign layers live elsewhere by design; registries do not hold them.
        .filter(|d| !lives_elsewhere(d))
        .filter(|d| ctx.done.lock().expect("done lock").insert(d.digest.clone()))
        .collect();
    // Which blobs the destination already has: HEADs in parallel.
    let checks: Vec<Result<(Descriptor, bool)>> = futures::stream::iter(blobs)
        .map(|d| async move {
            let has = ctx.dst.has_blob(&d.digest, d.size).await?;
            Ok((d, has))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut missing = Vec::new();
    for c in checks {
        let (d, has) = c?;
        if has {
            ctx.skipped.fetch_add(1, Ordering::Relaxed);
            ctx.opts
                .reporter
                .blob_finished(&d.digest, BlobOutcome::Skipped);
        } else {
            missing.push(d);
        }
    }
    let results: Vec<Result<()>> = futures::stream::iter(missing)
        .map(|d| copy_blob(ctx, d))
        .buffer_unordered(ctx.local.available_permits().max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

async fn acquire(s: Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match s {
        Some(s) => s.acquire_owned().await.ok(),
        None => None,
    }
}

async fn copy_blob(ctx: &Ctx<'_>, d: Descriptor) -> Result<()> {
    let size = d.size;
    // Per-host caps, always taken source first, then destination, and only once when both
    // sides share one client, so that concurrent copies cannot deadlock.
    let sp = ctx.src.permits();
    let dp = ctx
        .dst
        .permits()
        .filter(|dp| sp.as_ref().is_none_or(|sp| !Arc::ptr_eq(sp, dp)));
    let _local = ctx.local.clone().acquire_owned().await.ok();
    let _s = acquire(sp).await;
    let _d = acquire(dp).await;
    ctx.opts.reporter.blob_started(&d.digest, size);
    let source = CopySource {
        open: Box::new(|| ctx.src.blob(&d.digest, d.size)),
        digest: d.digest.clone(),
        size,
        reporter: ctx.opts.reporter.clone(),
        counted: Arc::new(AtomicU64::new(0)),
    };
    let policy = ResendPolicy {
        attempts: ctx.opts.blob_attempts,
        ..ResendPolicy::default()
    };
    let restarted = |_: &Error, _: u32| ctx.opts.reporter.blob_restarted(&d.digest);
    let pushed = resend(true, policy, &restarted, || {
        ctx.dst.push_blob(&source, ctx.mount_from.as_deref())
    })
    .await?;
    let outcome = if pushed.mounted {
        ctx.mounted.fetch_add(1, Ordering::Relaxed);
        BlobOutcome::Mounted
    } else {
        ctx.copied.fetch_add(1, Ordering::Relaxed);
        BlobOutcome::Copied
    };
    ctx.bytes
        .fetch_add(source.counted.load(Ordering::Relaxed), Ordering::Relaxed);
    ctx.opts.reporter.blob_finished(&d.digest, outcome);
    Ok(())
}

/// A blob of a copy's source, as a [`BlobSource`]: opened lazily, counted and reported.
struct CopySource<'a> {
    open: Box<dyn Fn() -> BoxFuture<'static, Result<BlobStream>> + Send + Sync + 'a>,
    digest: Digest,
    size: u64,
    reporter: Arc<dyn Reporter>,
    /// Bytes read by the latest attempt.
    counted: Arc<AtomicU64>,
}

impl BlobSource for CopySource<'_> {
    fn known(&self) -> Option<(Digest, u64)> {
        Some((self.digest.clone(), self.size))
    }
    /// [`Source::blob`] verifies what it streams.
    fn verifies(&self) -> bool {
        true
    }
    fn open(&self) -> BoxFuture<'static, Result<BlobStream>> {
        self.counted.store(0, Ordering::Relaxed);
        let (counted, reporter, digest) = (
            self.counted.clone(),
            self.reporter.clone(),
            self.digest.clone(),
        );
        let opening = (self.open)();
        Box::pin(async move {
            let stream = opening.await?.inspect_ok(move |chunk| {
                counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                reporter.blob_progress(&digest, chunk.len() as u64);
            });
            Ok(Box::pin(stream) as BlobStream)
        })
    }
}
