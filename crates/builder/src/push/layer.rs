//! A new layer streamed from the pipeline into a chunked upload: re-streamed from its source
//! on a failure worth it (never spooled), and checked against what the registry stored.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_client::{BlobSource, BlobStream, Client, Digest, Error, ResendPolicy};
use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;

use super::Observer;
use super::error::{BuildError, LayerError};
use crate::archive::{ArchiveOptions, layer_from_archive, layer_from_sniffed_reader};
use crate::layer::TarOptions;
use crate::pipeline::{LayerInfo, LayerStream, PipelineOptions, layer_from_dir};

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
    /// A tar (plain, gzip or zstd) read once from a stream such as standard input; a
    /// compressed one is uploaded as it is, a plain one compressed on the way. It cannot be
    /// read again, so a failed upload is not retried.
    Stream(Mutex<Option<Box<dyn Read + Send>>>),
}

impl LayerSource {
    /// A layer read once from `reader` (see [`LayerSource::Stream`]).
    pub fn stream(reader: impl Read + Send + 'static) -> Self {
        LayerSource::Stream(Mutex::new(Some(Box::new(reader))))
    }

    fn can_retry(&self) -> bool {
        !matches!(self, LayerSource::Stream(_))
    }

    /// Fails when a folder source is not a folder (checked before anything is uploaded).
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        match self {
            LayerSource::Dir { root, .. } if !root.is_dir() => {
                Err(BuildError::NotAFolder { path: root.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Starts the pipeline for one attempt.
    fn start(&self, pipeline: PipelineOptions) -> Result<LayerStream, LayerError> {
        match self {
            LayerSource::Dir { root, tar } => Ok(layer_from_dir(root, tar.clone(), pipeline)),
            LayerSource::Archive(path) => {
                let file = std::fs::File::open(path).map_err(|source| LayerError::Open {
                    path: path.clone(),
                    source,
                })?;
                Ok(layer_from_archive(file, ArchiveOptions::from(&pipeline)))
            }
            LayerSource::Stream(reader) => {
                let reader = reader
                    .lock()
                    .expect("layer stream lock")
                    .take()
                    .ok_or(LayerError::Consumed)?;
                Ok(layer_from_sniffed_reader(reader, pipeline)?)
            }
        }
    }

    /// The config history's `created_by` for a layer from this source.
    pub(crate) fn created_by(&self, verb: &str) -> String {
        match self {
            LayerSource::Dir { root, tar } => {
                let mut s = format!("berth {verb} {}", root.display());
                for p in &tar.include {
                    s.push(' ');
                    s.push_str(p);
                }
                for p in &tar.remove {
                    s.push_str(" --remove ");
                    s.push_str(p);
                }
                s
            }
            LayerSource::Archive(p) => format!("berth {verb} --archive {}", p.display()),
            LayerSource::Stream(_) => format!("berth {verb} (tar from standard input)"),
        }
    }
}

impl std::fmt::Debug for LayerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSource::Dir { root, tar } => f
                .debug_struct("Dir")
                .field("root", root)
                .field("tar", tar)
                .finish(),
            LayerSource::Archive(p) => f.debug_tuple("Archive").field(p).finish(),
            LayerSource::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A new layer: where its bytes come from, how they are compressed and chunked, and how
/// many times its upload may be sent.
#[derive(Debug)]
pub struct LayerPlan {
    /// The bytes.
    pub source: LayerSource,
    /// Compression and chunking. The media type flavor is set from the image's format.
    pub pipeline: PipelineOptions,
    /// Sends in all, the first included (a stream source is sent once).
    pub attempts: u32,
}

/// The outcome of one attempt's pipeline, or why it could not start.
type Slot = Arc<Mutex<Option<Result<LayerInfo, LayerError>>>>;

/// A layer being built, as a [`BlobSource`]: each open starts the pipeline again (the layer
/// is deterministic, so every stream is byte-for-byte the first) and keeps its outcome.
struct LayerBlob<'a> {
    source: &'a LayerSource,
    pipeline: PipelineOptions,
    slot: Slot,
}

impl BlobSource for LayerBlob<'_> {
    fn known(&self) -> Option<(Digest, u64)> {
        None
    }
    fn reopenable(&self) -> bool {
        self.source.can_retry()
    }
    fn computed(&self) -> Option<(Digest, u64)> {
        match &*self.slot.lock().expect("layer outcome lock") {
            Some(Ok(info)) => Some((info.descriptor.digest.clone(), info.descriptor.size)),
            _ => None,
        }
    }
    fn computes(&self) -> bool {
        true
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

/// Pushes a new layer to `repo` through the transfer engine
/// ([`berth_client::Client::push_blob`]): a failure worth it restarts the pipeline from the
/// source, at most `plan.attempts` sends, telling `observer` before each new one.
pub(crate) async fn push_layer(
    client: &Client,
    repo: &str,
    plan: &LayerPlan,
    pipeline: PipelineOptions,
    observer: &dyn Observer,
) -> Result<LayerInfo, BuildError> {
    let blob = LayerBlob {
        source: &plan.source,
        pipeline,
        slot: Arc::new(Mutex::new(None)),
    };
    let policy = ResendPolicy {
        attempts: plan.attempts,
        ..ResendPolicy::default()
    };
    let restarted = |e: &Error, attempt: u32| {
        tracing::warn!(attempt, error = %e, "layer upload failed; streaming the layer again");
        observer.layer_resent(e, attempt);
    };
    let pushed = client
        .push_blob(repo, &blob, None, policy, &restarted)
        .await;
    let outcome = blob.slot.lock().expect("layer outcome lock").take();
    if let Some(Err(e)) = outcome {
        return Err(BuildError::Layer(e));
    }
    let pushed = pushed.map_err(BuildError::registry("layer upload"))?;
    let Some(Ok(info)) = outcome else {
        return Err(BuildError::Layer(LayerError::NoOutcome));
    };
    if info.descriptor.digest != pushed.digest || info.descriptor.size != pushed.size {
        return Err(BuildError::Layer(LayerError::Mismatch {
            pushed: pushed.digest,
            pushed_size: pushed.size,
            built: info.descriptor.digest,
            built_size: info.descriptor.size,
        }));
    }
    Ok(info)
}

/// The layer's chunks as an upload body. After the last chunk the pipeline's outcome is
/// awaited: an error becomes a stream error, so the uploader never commits a blob whose
/// build failed (a truncated archive, a file that vanished).
fn chunks_then_outcome(
    stream: LayerStream,
    slot: Slot,
) -> impl Stream<Item = berth_client::Result<Bytes>> + Send + 'static {
    let (rx, result) = stream.into_parts();
    futures::stream::unfold(
        (rx, Some(result), slot),
        |(mut rx, result, slot)| async move {
            if let Some(chunk) = rx.recv().await {
                return Some((Ok(chunk), (rx, result, slot)));
            }
            let result = result?;
            let outcome = result.await.map_err(LayerError::Pipeline);
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
