//! Moving blobs for the build commands: a new layer streamed from the `berth-build` pipeline
//! into a chunked upload (re-streamed on a retryable failure, never spooled), and a base
//! image's blobs made present in the destination repository without downloading them when
//! the registry can mount them.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_build::archive::{ArchiveOptions, layer_from_archive};
use berth_build::layer::TarOptions;
use berth_build::pipeline::{
    LayerInfo, LayerStream, PipelineError, PipelineOptions, layer_from_dir, layer_from_tar_reader,
};
use berth_client::{Client, Digest, Error};
use berth_oci::manifest::Descriptor;
use berth_oci::media_type as mt;
use bytes::Bytes;
use futures::Stream;

/// Where a new layer's bytes come from.
pub enum LayerSource {
    /// A folder, archived deterministically (so it can be streamed again on retry).
    Dir {
        /// The rootfs.
        root: PathBuf,
        /// Tar options (filters, owner, whiteouts…).
        tar: TarOptions,
    },
    /// An existing tar, tar.gz or tar.zst file, uploaded as it is.
    Archive(PathBuf),
    /// A tar (plain, gzip or zstd) on standard input: streamed once, no retry possible.
    Stdin,
}

impl LayerSource {
    fn can_retry(&self) -> bool {
        !matches!(self, LayerSource::Stdin)
    }

    /// Starts the pipeline for one attempt.
    fn start(&self, pipeline: PipelineOptions) -> Result<LayerStream, String> {
        let archive = ArchiveOptions {
            flavor: pipeline.flavor,
            chunk_size: pipeline.chunk_size,
            chunks_in_flight: pipeline.chunks_in_flight,
        };
        match self {
            LayerSource::Dir { root, tar } => Ok(layer_from_dir(root, tar.clone(), pipeline)),
            LayerSource::Archive(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| format!("cannot open the archive {}: {e}", path.display()))?;
                Ok(layer_from_archive(file, archive))
            }
            LayerSource::Stdin => {
                // A compressed tar is uploaded as it is; a plain tar is compressed on the
                // way, like a folder. The first bytes tell which.
                let mut stdin = std::io::stdin();
                let mut magic = Vec::with_capacity(6);
                std::io::Read::by_ref(&mut stdin)
                    .take(6)
                    .read_to_end(&mut magic)
                    .map_err(|e| format!("cannot read the tar on standard input: {e}"))?;
                if magic.is_empty() {
                    return Err("standard input is empty: pipe a tar into it, or give --rootfs DIR or --archive FILE".into());
                }
                let kind =
                    berth_build::archive::detect_compression(&magic).map_err(|e| e.to_string())?;
                let reader = std::io::Cursor::new(magic).chain(stdin);
                if kind == berth_build::compression::CompressionKind::None {
                    Ok(layer_from_tar_reader(reader, pipeline))
                } else {
                    Ok(layer_from_archive(reader, archive))
                }
            }
        }
    }
}

/// Why pushing a layer failed.
pub enum LayerPushError {
    /// The layer could not be built (unreadable folder, corrupt archive…): not retried.
    Build(String),
    /// The registry refused or the connection failed.
    Registry(Error),
}

/// Pushes a new layer to `repo`, in chunks of the client's chunk size. A transient registry
/// failure restarts the pipeline from the source (at most `attempts` times): the layer is
/// deterministic, so the second stream is byte-for-byte the first.
pub async fn push_layer(
    client: &Client,
    repo: &str,
    source: &LayerSource,
    pipeline: PipelineOptions,
    attempts: u32,
) -> Result<LayerInfo, LayerPushError> {
    let attempts = if source.can_retry() {
        attempts.max(1)
    } else {
        1
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stream = source.start(pipeline).map_err(LayerPushError::Build)?;
        let slot = Arc::new(Mutex::new(None));
        let body = chunks_then_outcome(stream, slot.clone());
        let pushed = client.push_blob_stream(repo, body, None, None).await;
        let outcome = slot.lock().expect("layer outcome lock").take();
        if let Some(Err(e)) = outcome {
            return Err(LayerPushError::Build(e.to_string()));
        }
        match pushed {
            Ok((digest, size)) => {
                let Some(Ok(info)) = outcome else {
                    return Err(LayerPushError::Build(
                        "the layer pipeline ended without a result".into(),
                    ));
                };
                if info.descriptor.digest != digest || info.descriptor.size != size {
                    return Err(LayerPushError::Build(format!(
                        "the uploaded blob ({digest}, {size} bytes) differs from the layer built ({}, {} bytes)",
                        info.descriptor.digest, info.descriptor.size
                    )));
                }
                return Ok(info);
            }
            Err(e) if attempt < attempts && session_lost(&e) => {
                tracing::warn!(attempt, error = %e, "layer upload failed; streaming the layer again");
                eprintln!(
                    "layer upload failed ({e}); streaming the layer again (attempt {})",
                    attempt + 1
                );
            }
            Err(e) => return Err(LayerPushError::Registry(e)),
        }
    }
}

/// Whether a failed upload is worth starting over: the connection dropped or the registry
/// failed (5xx, 429), the session vanished (404: restarted or expired), or the registry and
/// the client no longer agree on the offset (416, after a chunk broke off midway).
fn session_lost(e: &Error) -> bool {
    e.is_transient() || e.is_not_found() || matches!(e, Error::Registry { status: 416, .. })
}

/// The layer's chunks as an upload body. After the last chunk the pipeline's outcome is
/// awaited: an error becomes a stream error, so the uploader never commits a blob whose
/// build failed (a truncated archive, a file that vanished).
fn chunks_then_outcome(
    stream: LayerStream,
    slot: Arc<Mutex<Option<Result<LayerInfo, PipelineError>>>>,
) -> impl Stream<Item = berth_client::Result<Bytes>> + Send + 'static {
    let (rx, result) = stream.into_parts();
    futures::stream::unfold(
        (rx, Some(result), slot),
        |(mut rx, result, slot)| async move {
            if let Some(chunk) = rx.recv().await {
                return Some((Ok(chunk), (rx, result, slot)));
            }
            let result = result?;
            let outcome = result.await;
            let failed = outcome.is_err();
            *slot.lock().expect("layer outcome lock") = Some(outcome);
            if failed {
                Some((
                    Err(Error::Invalid("the layer could not be built".into())),
                    (rx, None, slot),
                ))
            } else {
                None
            }
        },
    )
}

/// What [`ensure_blobs`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct BlobCounts {
    /// Already in the destination repository.
    pub present: usize,
    /// Mounted from the base repository (no data moved).
    pub mounted: usize,
    /// Streamed from the base registry (another registry, or a mount refused).
    pub copied: usize,
    /// Foreign layers, which stay where their URLs point.
    pub foreign: usize,
}

/// Makes the blobs of a base image present in the destination repository: nothing to do in
/// the same repository; a `HEAD`, then a cross-repository mount on the same registry; a
/// streamed copy (verified against the digest) only when the base is on another registry or
/// the registry declines the mount.
#[allow(clippy::too_many_arguments)]
pub async fn ensure_blobs(
    src: &Client,
    src_repo: &str,
    dst: &Client,
    dst_repo: &str,
    same_registry: bool,
    blobs: &[Descriptor],
    counts: &mut BlobCounts,
) -> berth_client::Result<()> {
    for d in blobs {
        if !d.urls.is_empty() || mt::is_foreign_layer(&d.media_type) {
            counts.foreign += 1;
            continue;
        }
        if same_registry && src_repo == dst_repo {
            counts.present += 1;
            continue;
        }
        if dst.head_blob(dst_repo, &d.digest).await?.is_some() {
            counts.present += 1;
            continue;
        }
        if same_registry && dst.mount_blob(dst_repo, &d.digest, src_repo).await? {
            counts.mounted += 1;
            continue;
        }
        copy_blob(src, src_repo, dst, dst_repo, &d.digest, d.size).await?;
        counts.copied += 1;
    }
    Ok(())
}

async fn copy_blob(
    src: &Client,
    src_repo: &str,
    dst: &Client,
    dst_repo: &str,
    digest: &Digest,
    size: u64,
) -> berth_client::Result<()> {
    let stream = src.blob_stream(src_repo, digest, Some(size)).await?;
    dst.push_blob_stream(dst_repo, stream, Some((digest.clone(), size)), None)
        .await?;
    Ok(())
}
