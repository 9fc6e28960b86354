//! The streaming layer pipeline: tar → diff_id → compressor → blob digest → chunks.
//!
//! See the [crate docs](crate) for the thread layout. Entry points:
//! - [`layer_from_dir`]: a deterministic tar of a folder ([`crate::layer::write_tar`]);
//! - [`layer_from_tar_reader`]: any uncompressed tar stream, compressed on the way;
//! - [`crate::archive`] for existing (possibly compressed) archives streamed as they are.
//!
//! All of them return a [`LayerStream`]: chunks of the blob to upload, then the
//! [`LayerInfo`] (or the error) once the last chunk is out.

mod encode;
pub(crate) mod stages;

use std::future::Future;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc::sync_channel;
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};

use berth_oci::{Descriptor, Digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::compression::{Compression, CompressionKind, MediaTypeFlavor, layer_media_type};
use crate::layer::{TarError, TarOptions, write_tar};

use self::encode::Encoder;
use self::stages::{BlobSink, HashingStageWriter, SinkFlags};

/// Default size of the chunks handed to the consumer: 4 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Default number of finished chunks that may wait for the consumer.
pub const DEFAULT_CHUNKS_IN_FLIGHT: usize = 2;
/// Size of the buffers passed from the tar stage to the compression stage.
pub(crate) const STAGE_BUFFER: usize = 1024 * 1024;
/// Number of those buffers that may be queued between the two stages.
pub(crate) const STAGE_QUEUE: usize = 4;

/// What the registry and the image config need to know about a finished layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// SHA-256 of the uncompressed tar (goes in the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The blob as uploaded: its SHA-256, size and layer media type (the manifest's layer
    /// descriptor).
    pub descriptor: Descriptor,
}

/// Options for the compressing pipeline ([`layer_from_dir`], [`layer_from_tar_reader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Blob compression (default: gzip level 6 on all cores).
    pub compression: Compression,
    /// Media type family of the layer descriptor in [`LayerInfo::descriptor`] (default: OCI).
    pub flavor: MediaTypeFlavor,
    /// Size of every delivered chunk except the last (default 4 MiB, must be > 0).
    pub chunk_size: usize,
    /// Finished chunks that may wait for the consumer before the pipeline pauses
    /// (default 2, must be > 0).
    pub chunks_in_flight: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            compression: Compression::default(),
            flavor: MediaTypeFlavor::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunks_in_flight: DEFAULT_CHUNKS_IN_FLIGHT,
        }
    }
}

pub(crate) fn validate_chunking(chunk_size: usize, chunks_in_flight: usize) -> Result<(), String> {
    if chunk_size == 0 {
        return Err("chunk_size must be at least 1 byte".into());
    }
    if chunks_in_flight == 0 {
        return Err("chunks_in_flight must be at least 1".into());
    }
    Ok(())
}

/// Why a layer blob could not be produced. When a [`LayerStream`] ends with an error,
/// chunks already delivered belong to an incomplete or invalid blob: do not commit the
/// upload and do not reference it from a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The options are unusable.
    #[error("invalid layer pipeline options: {0}")]
    InvalidOptions(String),
    /// Building the tar of the folder failed.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// Reading the caller's input stream failed.
    #[error(
        "reading the input stream failed: {source}; the layer is incomplete, fix the input and run the pipeline again"
    )]
    Input {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The compressor failed.
    #[error("{kind} compression of the layer failed: {source}")]
    Compress {
        /// Which compressor.
        kind: CompressionKind,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The consumer dropped the [`LayerStream`] (or its chunk receiver) before the end.
    #[error(
        "the layer chunk receiver was dropped before the blob was complete; run the pipeline again to retry the upload"
    )]
    ConsumerGone,
    /// A pipeline thread could not be started.
    #[error(
        "could not start a layer pipeline thread: {source}; the system is out of threads or memory"
    )]
    ThreadSpawn {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A pipeline thread panicked (a bug in berth-builder).
    #[error(
        "the {stage} thread of the layer pipeline panicked; this is a bug in berth-builder, please report it"
    )]
    Panicked {
        /// Which thread.
        stage: &'static str,
    },
    /// An existing archive uses a compression this crate cannot read.
    #[error(
        "the archive is compressed with {format}, which is not supported; recompress it with gzip or zstd, or pass the plain tar"
    )]
    UnsupportedArchive {
        /// The detected format.
        format: &'static str,
    },
    /// An existing archive is truncated or corrupt.
    #[error(
        "the {kind} archive is not a complete, valid tar: {reason}; its chunks may already have been sent, but the blob must not be committed or referenced from a manifest"
    )]
    InvalidArchive {
        /// Compression detected from the magic bytes.
        kind: CompressionKind,
        /// What is wrong.
        reason: String,
    },
    /// The input stream given to [`crate::archive::layer_from_sniffed_reader`] is empty.
    #[error("the input stream is empty; a tar (plain, gzip or zstd) was expected")]
    EmptyInput,
    /// [`crate::archive::layer_from_async_archive`] was called outside a Tokio runtime.
    #[error("layer_from_async_archive must be called from within a Tokio runtime")]
    NoRuntime,
}

/// The blob of one layer, arriving in chunks, followed by its [`LayerInfo`].
///
/// Chunks have exactly the configured chunk size except the last one. The producing
/// threads pause when the consumer falls behind, so memory stays bounded. Dropping the
/// stream stops the pipeline.
///
/// The [`LayerInfo`] (or error) is only available after the last chunk was taken:
/// call [`LayerStream::finish`] after [`LayerStream::next_chunk`] returned `None`.
#[derive(Debug)]
pub struct LayerStream {
    chunks: mpsc::Receiver<Bytes>,
    result: LayerResult,
}

/// The final outcome of a [`LayerStream`], as a future (see [`LayerStream::into_parts`]).
#[derive(Debug)]
pub struct LayerResult {
    rx: oneshot::Receiver<Result<LayerInfo, PipelineError>>,
}

impl Future for LayerResult {
    type Output = Result<LayerInfo, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(PipelineError::Panicked { stage: "pipeline" })))
    }
}

impl LayerResult {
    /// Blocking wait, for synchronous callers (panics inside an async context).
    pub fn blocking_wait(self) -> Result<LayerInfo, PipelineError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(PipelineError::Panicked { stage: "pipeline" }))
    }
}

/// Senders kept by the pipeline threads.
pub(crate) struct StreamEnds {
    pub chunks: mpsc::Sender<Bytes>,
    pub result: oneshot::Sender<Result<LayerInfo, PipelineError>>,
}

impl LayerStream {
    pub(crate) fn channel(chunks_in_flight: usize) -> (LayerStream, StreamEnds) {
        let (chunk_tx, chunk_rx) = mpsc::channel(chunks_in_flight.max(1));
        let (result_tx, result_rx) = oneshot::channel();
        (
            LayerStream {
                chunks: chunk_rx,
                result: LayerResult { rx: result_rx },
            },
            StreamEnds {
                chunks: chunk_tx,
                result: result_tx,
            },
        )
    }

    /// A stream that delivers no chunk and ends with `error`.
    pub(crate) fn failed(error: PipelineError) -> LayerStream {
        let (stream, ends) = LayerStream::channel(1);
        let _ = ends.result.send(Err(error));
        stream
    }

    /// The next chunk of the blob, or `None` when there are no more (then call
    /// [`LayerStream::finish`] to learn whether the blob is complete and valid).
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        self.chunks.recv().await
    }

    /// Blocking [`LayerStream::next_chunk`], for synchronous callers (panics inside an
    /// async context).
    pub fn blocking_next_chunk(&mut self) -> Option<Bytes> {
        self.chunks.blocking_recv()
    }

    /// Waits for the outcome. Chunks not taken yet are received and discarded (this is
    /// how to compute the digests without uploading, e.g. to check whether the registry
    /// already has the blob, then run the deterministic pipeline again to upload it).
    pub async fn finish(mut self) -> Result<LayerInfo, PipelineError> {
        while self.chunks.recv().await.is_some() {}
        self.result.await
    }

    /// Blocking [`LayerStream::finish`] (panics inside an async context).
    pub fn blocking_finish(mut self) -> Result<LayerInfo, PipelineError> {
        while self.chunks.blocking_recv().is_some() {}
        self.result.blocking_wait()
    }

    /// Collects the whole blob in memory (for tests and small layers).
    pub async fn collect(mut self) -> Result<(Vec<u8>, LayerInfo), PipelineError> {
        let mut blob = Vec::new();
        while let Some(chunk) = self.chunks.recv().await {
            blob.extend_from_slice(&chunk);
        }
        Ok((blob, self.result.await?))
    }

    /// Blocking [`LayerStream::collect`] (panics inside an async context).
    pub fn blocking_collect(mut self) -> Result<(Vec<u8>, LayerInfo), PipelineError> {
        let mut blob = Vec::new();
        while let Some(chunk) = self.chunks.blocking_recv() {
            blob.extend_from_slice(&chunk);
        }
        Ok((blob, self.result.blocking_wait()?))
    }

    /// Splits into the raw chunk receiver and the outcome future. Await the outcome
    /// only while (or after) draining the receiver: the pipeline waits for the
    /// consumer, so awaiting the outcome first never completes.
    pub fn into_parts(self) -> (mpsc::Receiver<Bytes>, LayerResult) {
        (self.chunks, self.result)
    }
}

/// Streams a deterministic tar of the folder `root` through the pipeline.
///
/// Starts two threads at once and returns; no async runtime is needed to start it. The
/// same folder and options always give the same bytes, so a failed upload is retried by
/// calling this again.
pub fn layer_from_dir(
    root: impl Into<PathBuf>,
    tar: TarOptions,
    options: PipelineOptions,
) -> LayerStream {
    let root = root.into();
    spawn_compressing(options, move |out| {
        write_tar(&root, &tar, out)?;
        Ok(())
    })
}

/// Compresses an uncompressed tar stream read from `reader` (not validated: it is the
/// caller's tar). Useful for tars produced by other tools.
pub fn layer_from_tar_reader<R: Read + Send + 'static>(
    mut reader: R,
    options: PipelineOptions,
) -> LayerStream {
    spawn_compressing(options, move |out| {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(PipelineError::Input { source }),
            };
            out.write_all(&buf[..n])
                .map_err(|source| PipelineError::Compress {
                    kind: options.compression.kind(),
                    source,
                })?;
        }
    })
}

/// Joins a pipeline thread, turning a panic into [`PipelineError::Panicked`].
pub(crate) fn join<T>(
    handle: JoinHandle<Result<T, PipelineError>>,
    stage: &'static str,
) -> Result<T, PipelineError> {
    handle
        .join()
        .unwrap_or(Err(PipelineError::Panicked { stage }))
}

/// Runs `produce` (writing an uncompressed tar) on one thread and the compressor on
/// another; see the crate docs.
fn spawn_compressing<P>(options: PipelineOptions, produce: P) -> LayerStream
where
    P: FnOnce(&mut dyn Write) -> Result<(), PipelineError> + Send + 'static,
{
    if let Err(msg) = options
        .compression
        .validate()
        .and_then(|()| validate_chunking(options.chunk_size, options.chunks_in_flight))
    {
        return LayerStream::failed(PipelineError::InvalidOptions(msg));
    }
    let (stream, ends) = LayerStream::channel(options.chunks_in_flight);
    let (raw_tx, raw_rx) = sync_channel::<Vec<u8>>(STAGE_QUEUE);

    let producer = thread::Builder::new()
        .name("berth-layer-tar".into())
        .spawn(move || {
            let mut out = HashingStageWriter::new(raw_tx, STAGE_BUFFER);
            produce(&mut out)?;
            out.finish().map_err(|source| PipelineError::Compress {
                kind: options.compression.kind(),
                source,
            })
        });
    let producer = match producer {
        Ok(handle) => handle,
        Err(source) => return LayerStream::failed(PipelineError::ThreadSpawn { source }),
    };

    let StreamEnds {
        chunks,
        result: result_tx,
    } = ends;
    let spawned = thread::Builder::new()
        .name("berth-layer-compress".into())
        .spawn(move || {
            let result = compress_stage(options, raw_rx, producer, chunks);
            if let Err(e) = &result {
                tracing::debug!(error = %e, "layer pipeline failed");
            }
            let _ = result_tx.send(result);
        });
    if let Err(source) = spawned {
        // The closure (and with it the result sender) is gone; report through a new stream.
        return LayerStream::failed(PipelineError::ThreadSpawn { source });
    }
    stream
}

/// The compression thread: reads the tar buffers, compresses them into the blob sink,
/// then joins the tar thread and assembles the [`LayerInfo`].
fn compress_stage(
    options: PipelineOptions,
    raw_rx: std::sync::mpsc::Receiver<Vec<u8>>,
    producer: JoinHandle<Result<(Digest, u64), PipelineError>>,
    chunks: mpsc::Sender<Bytes>,
) -> Result<LayerInfo, PipelineError> {
    let kind = options.compression.kind();
    let flags = SinkFlags::default();
    let sink = BlobSink::new(chunks, options.chunk_size, flags.clone());
    let compress_error = |source: io::Error, flags: &SinkFlags| {
        if flags.consumer_gone() {
            PipelineError::ConsumerGone
        } else {
            PipelineError::Compress { kind, source }
        }
    };

    let mut encoder = match Encoder::new(options.compression, sink) {
        Ok(encoder) => encoder,
        Err(source) => {
            drop(raw_rx);
            let _ = join(producer, "tar");
            return Err(PipelineError::Compress { kind, source });
        }
    };
    let mut write_error = None;
    while let Ok(buf) = raw_rx.recv() {
        if let Err(e) = encoder.write_all(&buf) {
            write_error = Some(e);
            break;
        }
    }
    drop(raw_rx); // unblocks the tar thread if we stopped early
    let produced = join(producer, "tar");

    if let Some(source) = write_error {
        flags.abort();
        encoder.abandon();
        return Err(compress_error(source, &flags));
    }
    let (diff_id, _tar_size) = match produced {
        Ok(done) => done,
        Err(e) => {
            flags.abort();
            encoder.abandon();
            return Err(e);
        }
    };
    let sink = encoder
        .finish()
        .map_err(|source| compress_error(source, &flags))?;
    let (digest, size) = sink
        .finish()
        .map_err(|source| compress_error(source, &flags))?;
    Ok(LayerInfo {
        diff_id,
        descriptor: Descriptor::new(layer_media_type(kind, options.flavor), digest, size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn sha(data: &[u8]) -> Digest {
        Digest::sha256_of(data)
    }

    fn options(compression: Compression, chunk_size: usize) -> PipelineOptions {
        PipelineOptions {
            compression,
            chunk_size,
            ..PipelineOptions::default()
        }
    }

    #[test]
    fn uncompressed_blob_is_the_input() {
        let input = b"not really a tar, but the pipeline does not care".repeat(100);
        let stream = layer_from_tar_reader(
            std::io::Cursor::new(input.clone()),
            options(Compression::None, 1000),
        );
        let (blob, info) = stream.blocking_collect().unwrap();
        assert_eq!(blob, input);
        assert_eq!(info.diff_id, sha(&input));
        assert_eq!(info.descriptor.digest, info.diff_id);
        assert_eq!(info.descriptor.size, input.len() as u64);
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar"
        );
    }

    #[test]
    fn chunks_have_the_configured_size() {
        let input = vec![7u8; 10_000];
        let mut stream = layer_from_tar_reader(
            std::io::Cursor::new(input),
            options(Compression::None, 3000),
        );
        let mut sizes = Vec::new();
        while let Some(chunk) = stream.blocking_next_chunk() {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, [3000, 3000, 3000, 1000]);
        stream.blocking_finish().unwrap();
    }

    fn roundtrip(compression: Compression) -> (Vec<u8>, LayerInfo) {
        let input: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        let stream = layer_from_tar_reader(
            std::io::Cursor::new(input.clone()),
            options(compression, DEFAULT_CHUNK_SIZE),
        );
        let (blob, info) = stream.blocking_collect().unwrap();
        assert_eq!(info.diff_id, sha(&input));
        assert_eq!(info.descriptor.digest, sha(&blob));
        assert_eq!(info.descriptor.size, blob.len() as u64);
        let mut decoded = Vec::new();
        match compression.kind() {
            CompressionKind::Gzip => {
                flate2::read::GzDecoder::new(blob.as_slice())
                    .read_to_end(&mut decoded)
                    .unwrap();
            }
            CompressionKind::Zstd => {
                zstd::stream::read::Decoder::new(blob.as_slice())
                    .unwrap()
                    .read_to_end(&mut decoded)
                    .unwrap();
            }
            _ => decoded = blob.clone(),
        }
        assert!(decoded == input, "decompressed blob differs from the input");
        (blob, info)
    }

    #[test]
    fn gzip_single_and_parallel_roundtrip() {
        let (_, single) = roundtrip(Compression::Gzip {
            level: 6,
            threads: 1,
        });
        let (_, two) = roundtrip(Compression::Gzip {
            level: 6,
            threads: 2,
        });
        let (_, four) = roundtrip(Compression::Gzip {
            level: 6,
            threads: 4,
        });
        assert_eq!(
            two, four,
            "parallel gzip must not depend on the thread count"
        );
        assert_eq!(single.diff_id, two.diff_id);
        assert_eq!(
            single.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }

    #[test]
    fn zstd_output_does_not_depend_on_threads() {
        let (_, one) = roundtrip(Compression::Zstd {
            level: 3,
            threads: 1,
        });
        let (_, three) = roundtrip(Compression::Zstd {
            level: 3,
            threads: 3,
        });
        assert_eq!(one, three);
        assert_eq!(
            one.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }

    #[test]
    fn invalid_options_end_the_stream_with_an_error() {
        let stream = layer_from_tar_reader(
            std::io::empty(),
            PipelineOptions {
                chunk_size: 0,
                ..PipelineOptions::default()
            },
        );
        let err = stream.blocking_finish().unwrap_err();
        assert!(matches!(err, PipelineError::InvalidOptions(_)), "{err}");
        let stream = layer_from_tar_reader(
            std::io::empty(),
            options(
                Compression::Gzip {
                    level: 12,
                    threads: 1,
                },
                10,
            ),
        );
        assert!(stream.blocking_finish().is_err());
    }

    #[test]
    fn input_errors_fail_the_layer() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let stream = layer_from_tar_reader(Failing(20), PipelineOptions::default());
        let err = stream.blocking_finish().unwrap_err();
        assert!(matches!(err, PipelineError::Input { .. }), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn dropping_the_stream_stops_the_threads() {
        // An endless input: the pipeline only ends because the consumer goes away.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        struct Endless(std::sync::mpsc::Sender<()>);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(3);
                Ok(buf.len())
            }
        }
        impl Drop for Endless {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let mut stream =
            layer_from_tar_reader(Endless(done_tx), options(Compression::gzip(), 64 * 1024));
        assert!(stream.blocking_next_chunk().is_some());
        drop(stream);
        done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the producer thread should stop after the consumer left");
    }
}
