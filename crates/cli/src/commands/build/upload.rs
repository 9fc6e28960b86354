//! Moving blobs for the build commands: a new layer streamed from the `berth-builder` pipeline
//! into a chunked upload (re-streamed on a retryable failure, never spooled), and a base
//! image's blobs made present in the destination repository without downloading them when
//! the registry can mount them.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_builder::archive::{ArchiveOptions, layer_from_archive};
use berth_builder::layer::TarOptions;
use berth_builder::pipeline::{
    LayerInfo, LayerStream, PipelineError, PipelineOptions, layer_from_dir, layer_from_tar_reader,
};
use berth_client::{BlobSource, RegistryBlob, ResendPolicy, lives_elsewhere};
use berth_client::{BlobStream, Client, Digest, Error};
use berth_oci::manifest::Descriptor;
use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;

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
                let kind = berth_builder::archive::detect_compression(&magic)
                    .map_err(|e| e.to_string())?;
                let reader = std::io::Cursor::new(magic).chain(stdin);
                if kind == berth_builder::compression::CompressionKind::None {
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

/// A layer being built, as a [`BlobSource`]: each open starts the pipeline again (the layer
/// is deterministic, so every stream is byte-for-byte the first) and keeps its outcome.
struct LayerBlob<'a> {
    source: &'a LayerSource,
    pipeline: PipelineOptions,
    /// The outcome of the latest attempt's pipeline, or why it could not start.
    slot: Arc<Mutex<Option<Result<LayerInfo, String>>>>,
}

impl BlobSource for LayerBlob<'_> {
    fn known(&self) -> Option<(Digest, u64)> {
        None
    }
    fn reopenable(&self) -> bool {
        self.source.can_retry()
    }
    fn open(&self) -> BoxFuture<'static, berth_client::Result<BlobStream>> {
        *self.slot.lock().expect("layer outcome lock") = None;
        let started = self.source.start(self.pipeline);
        let slot = self.slot.clone();
        Box::pin(async move {
            match started {
                Ok(stream) => Ok(Box::pin(chunks_then_outcome(stream, slot)) as BlobStream),
                Err(e) => {
                    *slot.lock().expect("layer outcome lock") = Some(Err(e));
                    Err(Error::Invalid("the layer could not be built".into()))
                }
            }
        })
    }
}

/// Pushes a new layer to `repo`, in chunks of the client's chunk size. A failure worth it
/// restarts the pipeline from the source (at most `attempts` sends; see
/// the transfer engine of [`berth_client::Client::push_blob`]).
pub async fn push_layer(
    client: &Client,
    repo: &str,
    source: &LayerSource,
    pipeline: PipelineOptions,
    attempts: u32,
) -> Result<LayerInfo, LayerPushError> {
    let blob = LayerBlob {
        source,
        pipeline,
        slot: Arc::new(Mutex::new(None)),
    };
    let policy = ResendPolicy {
        attempts,
        ..ResendPolicy::default()
    };
    let restarted = |e: &Error, attempt: u32| {
        tracing::warn!(attempt, error = %e, "layer upload failed; streaming the layer again");
        eprintln!("layer upload failed ({e}); streaming the layer again (attempt {attempt})");
    };
    let pushed = client
        .push_blob(repo, &blob, None, policy, &restarted)
        .await;
    let outcome = blob.slot.lock().expect("layer outcome lock").take();
    if let Some(Err(e)) = outcome {
        return Err(LayerPushError::Build(e));
    }
    let pushed = pushed.map_err(LayerPushError::Registry)?;
    let Some(Ok(info)) = outcome else {
        return Err(LayerPushError::Build(
            "the layer pipeline ended without a result".into(),
        ));
    };
    if info.descriptor.digest != pushed.digest || info.descriptor.size != pushed.size {
        return Err(LayerPushError::Build(format!(
            "the uploaded blob ({}, {} bytes) differs from the layer built ({}, {} bytes)",
            pushed.digest, pushed.size, info.descriptor.digest, info.descriptor.size
        )));
    }
    Ok(info)
}

/// The layer's chunks as an upload body. After the last chunk the pipeline's outcome is
/// awaited: an error becomes a stream error, so the uploader never commits a blob whose
/// build failed (a truncated archive, a file that vanished).
fn chunks_then_outcome(
    stream: LayerStream,
    slot: Arc<Mutex<Option<Result<LayerInfo, String>>>>,
) -> impl Stream<Item = berth_client::Result<Bytes>> + Send + 'static {
    let (rx, result) = stream.into_parts();
    futures::stream::unfold(
        (rx, Some(result), slot),
        |(mut rx, result, slot)| async move {
            if let Some(chunk) = rx.recv().await {
                return Some((Ok(chunk), (rx, result, slot)));
            }
            let result = result?;
            let outcome = result.await.map_err(|e: PipelineError| e.to_string());
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
        if lives_elsewhere(d) {
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
        let blob = RegistryBlob::new(src.clone(), src_repo, d.digest.clone(), d.size);
        let mount_from = same_registry.then_some(src_repo);
        let pushed = dst
            .push_blob(
                dst_repo,
                &blob,
                mount_from,
                ResendPolicy::default(),
                &|_, _| {},
            )
            .await?;
        if pushed.mounted {
            counts.mounted += 1;
        } else {
            counts.copied += 1;
        }
    }
    Ok(())
}
