//! Existing layer archives (`.tar`, `.tar.gz`, `.tar.zst`) streamed as they are.
//!
//! The blob is the input, byte for byte: its digest is computed over the original bytes
//! while they are chunked to the consumer. In parallel, a second thread decompresses a
//! copy (shared buffers, no copy of the data) to compute the diff_id and to check that
//! the tar is complete: every header checksum, every entry's data, and an end-of-archive
//! marker. A truncated or corrupt archive makes the [`LayerStream`] end with
//! [`PipelineError::InvalidArchive`] instead of a [`crate::pipeline::LayerInfo`], and its
//! last partial chunk is withheld, so an uploader that only commits the blob and writes
//! the manifest after a successful [`LayerStream::finish`] never publishes it.
//!
//! The compression is detected from the magic bytes: gzip `1f 8b`, zstd `28 b5 2f fd`,
//! anything else is read as a plain tar (xz and bzip2 are recognised and refused).
//!
//! Unlike folders, an input stream cannot be replayed: to retry an upload, open the
//! archive again and call [`layer_from_archive`] again.

use std::io::{self, Read};
use std::sync::mpsc::sync_channel;
use std::thread;

use berth_oci::{Descriptor, Digest};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::compression::{CompressionKind, MediaTypeFlavor, layer_media_type};
use crate::pipeline::stages::{BlobSink, ChannelReader, HashingReader, SinkFlags};
use crate::pipeline::{
    DEFAULT_CHUNK_SIZE, DEFAULT_CHUNKS_IN_FLIGHT, LayerInfo, LayerStream, PipelineError,
    PipelineOptions, STAGE_BUFFER, StreamEnds, join, layer_from_tar_reader, validate_chunking,
};

/// Buffers queued between the reading thread and the validating thread.
const VALIDATE_QUEUE: usize = 4;

/// Options for [`layer_from_archive`] and [`layer_from_async_archive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Media type family of the layer descriptor in [`LayerInfo::descriptor`] (default: OCI).
    pub flavor: MediaTypeFlavor,
    /// Size of every delivered chunk except the last (default 4 MiB).
    pub chunk_size: usize,
    /// Finished chunks that may wait for the consumer (default 2).
    pub chunks_in_flight: usize,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            flavor: MediaTypeFlavor::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunks_in_flight: DEFAULT_CHUNKS_IN_FLIGHT,
        }
    }
}

impl From<&PipelineOptions> for ArchiveOptions {
    /// The archive side of a pipeline's options: the same flavor and chunking.
    fn from(p: &PipelineOptions) -> Self {
        ArchiveOptions {
            flavor: p.flavor,
            chunk_size: p.chunk_size,
            chunks_in_flight: p.chunks_in_flight,
        }
    }
}

/// A layer from a tar of unknown compression read once (standard input, a pipe): its first
/// bytes tell which. A gzip or zstd tar is streamed as it is ([`layer_from_archive`]); a plain
/// tar is compressed on the way, like a folder ([`layer_from_tar_reader`]).
///
/// # Errors
///
/// [`PipelineError::EmptyInput`] when the reader gives no byte at all,
/// [`PipelineError::UnsupportedArchive`] for xz and bzip2, [`PipelineError::Input`] when the
/// first bytes cannot be read.
pub fn layer_from_sniffed_reader<R: Read + Send + 'static>(
    mut reader: R,
    pipeline: PipelineOptions,
) -> Result<LayerStream, PipelineError> {
    let mut magic = Vec::with_capacity(6);
    Read::by_ref(&mut reader)
        .take(6)
        .read_to_end(&mut magic)
        .map_err(|source| PipelineError::Input { source })?;
    if magic.is_empty() {
        return Err(PipelineError::EmptyInput);
    }
    let kind = detect_compression(&magic)?;
    let reader = Read::chain(io::Cursor::new(magic), reader);
    Ok(if kind == CompressionKind::None {
        layer_from_tar_reader(reader, pipeline)
    } else {
        layer_from_archive(reader, ArchiveOptions::from(&pipeline))
    })
}

/// Detects the compression of an archive from its first bytes (6 are enough).
///
/// # Errors
///
/// [`PipelineError::UnsupportedArchive`] for xz and bzip2.
pub fn detect_compression(magic: &[u8]) -> Result<CompressionKind, PipelineError> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(CompressionKind::Gzip)
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(CompressionKind::Zstd)
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Err(PipelineError::UnsupportedArchive { format: "xz" })
    } else if magic.starts_with(b"BZh") {
        Err(PipelineError::UnsupportedArchive { format: "bzip2" })
    } else {
        Ok(CompressionKind::None)
    }
}

/// Streams an existing archive as the layer blob, validating it on the way.
///
/// Starts two threads and returns at once; no async runtime is needed.
pub fn layer_from_archive<R: Read + Send + 'static>(
    reader: R,
    options: ArchiveOptions,
) -> LayerStream {
    if let Err(msg) = validate_chunking(options.chunk_size, options.chunks_in_flight) {
        return LayerStream::failed(PipelineError::InvalidOptions(msg));
    }
    let (stream, ends) = LayerStream::channel(options.chunks_in_flight);
    let StreamEnds { chunks, result } = ends;
    let spawned = thread::Builder::new()
        .name("berth-archive-read".into())
        .spawn(move || {
            let outcome = read_stage(reader, options, chunks);
            if let Err(e) = &outcome {
                tracing::debug!(error = %e, "archive layer failed");
            }
            let _ = result.send(outcome);
        });
    if let Err(source) = spawned {
        return LayerStream::failed(PipelineError::ThreadSpawn { source });
    }
    stream
}

/// [`layer_from_archive`] for an async reader (a file opened with Tokio, an HTTP body…).
///
/// Must be called from within a Tokio runtime: a task reads the input and hands it to
/// the pipeline threads through a small bounded channel.
pub fn layer_from_async_archive<R>(reader: R, options: ArchiveOptions) -> LayerStream
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return LayerStream::failed(PipelineError::NoRuntime);
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    runtime.spawn(async move {
        let mut reader = reader;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let message = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                break;
            }
        }
    });
    layer_from_archive(
        AsyncBridge {
            rx,
            current: Bytes::new(),
        },
        options,
    )
}

/// Blocking `Read` over the chunks sent by the async reading task.
struct AsyncBridge {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for AsyncBridge {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            // Runs on a pipeline thread, never inside the runtime.
            match self.rx.blocking_recv() {
                Some(Ok(next)) => self.current = next,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Reads at least `want` bytes unless the input ends first.
fn read_at_least<R: Read>(reader: &mut R, buf: &mut [u8], want: usize) -> io::Result<usize> {
    let mut filled = 0;
    while filled < want {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The reading thread: blob digest + chunks to the consumer + a copy to the validator.
fn read_stage<R: Read + Send + 'static>(
    mut reader: R,
    options: ArchiveOptions,
    chunks: tokio::sync::mpsc::Sender<Bytes>,
) -> Result<LayerInfo, PipelineError> {
    let mut buf = vec![0u8; STAGE_BUFFER];
    let first = read_at_least(&mut reader, &mut buf, 6)
        .map_err(|source| PipelineError::Input { source })?;
    let kind = detect_compression(&buf[..first])?;

    let (copy_tx, copy_rx) = sync_channel::<Bytes>(VALIDATE_QUEUE);
    let validator = thread::Builder::new()
        .name("berth-archive-check".into())
        .spawn(move || validate(kind, ChannelReader::new(copy_rx)))
        .map_err(|source| PipelineError::ThreadSpawn { source })?;

    let flags = SinkFlags::default();
    let mut sink = BlobSink::new(chunks, options.chunk_size, flags.clone());
    let mut pending = first;
    let mut failure = None;
    loop {
        if pending > 0 {
            let data = Bytes::copy_from_slice(&buf[..pending]);
            if copy_tx.send(data.clone()).is_err() {
                // The validator stopped early; its error says why.
                break;
            }
            if let Err(source) = io::Write::write_all(&mut sink, &data) {
                failure = Some(if flags.consumer_gone() {
                    PipelineError::ConsumerGone
                } else {
                    PipelineError::Input { source }
                });
                break;
            }
        }
        pending = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(source) => {
                failure = Some(PipelineError::Input { source });
                break;
            }
        };
    }
    drop(copy_tx);
    let validated = join(validator, "archive validation");
    if let Some(error) = failure {
        flags.abort();
        return Err(error);
    }
    let diff_id = match validated {
        Ok(diff_id) => diff_id,
        Err(error) => {
            flags.abort();
            return Err(error);
        }
    };
    let (digest, size) = sink.finish().map_err(|source| {
        if flags.consumer_gone() {
            PipelineError::ConsumerGone
        } else {
            PipelineError::Input { source }
        }
    })?;
    Ok(LayerInfo {
        diff_id,
        descriptor: Descriptor::new(layer_media_type(kind, options.flavor), digest, size),
    })
}

/// The validating thread: decompress, hash (diff_id) and check the tar structure.
fn validate(kind: CompressionKind, input: ChannelReader) -> Result<Digest, PipelineError> {
    validate_archive(kind, input)
}

/// Reads an archive of compression `kind` to its end: decompresses it, checks that it is a
/// complete tar (every entry whole, an end-of-archive marker) and returns its diff_id. What
/// [`layer_from_archive`] runs on its second thread; memory stays at the decoders' buffers
/// whatever the input claims.
///
/// # Errors
///
/// [`PipelineError::InvalidArchive`] saying what is wrong where.
pub fn validate_archive(kind: CompressionKind, input: impl Read) -> Result<Digest, PipelineError> {
    let invalid = |reason: String| PipelineError::InvalidArchive { kind, reason };
    let decoded: Box<dyn Read> = match kind {
        CompressionKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        CompressionKind::Zstd => Box::new(
            zstd::stream::read::Decoder::new(input)
                .map_err(|e| invalid(format!("cannot start the zstd decoder: {e}")))?,
        ),
        _ => Box::new(input),
    };
    let mut tar = HashingReader::new(decoded);
    check_tar(&mut tar).map_err(invalid)?;
    // Whatever follows the end-of-archive marker (usually zero padding) is part of the
    // diff_id too, and reading it to the end also verifies the compressed trailer.
    io::copy(&mut tar, &mut io::sink())
        .map_err(|e| invalid(format!("after the end-of-archive marker: {e}")))?;
    Ok(tar.finish().0)
}

/// Reads every entry to its end and requires an end-of-archive marker.
fn check_tar<R: Read>(reader: &mut HashingReader<R>) -> Result<(), String> {
    let mut count = 0u64;
    {
        let mut archive = ::tar::Archive::new(&mut *reader);
        let entries = archive
            .entries()
            .map_err(|e| format!("cannot read the first header: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("header after {count} entries: {e}"))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let expected = entry.size();
            let copied = io::copy(&mut entry, &mut io::sink())
                .map_err(|e| format!("data of entry {name:?}: {e}"))?;
            if copied != expected {
                return Err(format!(
                    "entry {name:?} ends after {copied} of its {expected} bytes (truncated)"
                ));
            }
            count += 1;
        }
    }
    if reader.hit_eof() {
        return Err(format!(
            "the stream ends after {count} entries without the end-of-archive marker (truncated)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn sample_tar() -> Vec<u8> {
        let mut builder = ::tar::Builder::new(Vec::new());
        for (name, size) in [("a.txt", 10usize), ("big.bin", 300_000), ("c", 0)] {
            let mut header = ::tar::Header::new_ustar();
            header.set_size(size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
            builder
                .append_data(&mut header, name, data.as_slice())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn sha(data: &[u8]) -> Digest {
        Digest::sha256_of(data)
    }

    fn run(input: Vec<u8>) -> Result<(Vec<u8>, LayerInfo), PipelineError> {
        layer_from_archive(
            Cursor::new(input),
            ArchiveOptions {
                chunk_size: 64 * 1024,
                ..ArchiveOptions::default()
            },
        )
        .blocking_collect()
    }

    #[test]
    fn magic_detection() {
        assert_eq!(
            detect_compression(&[0x1f, 0x8b, 8, 0]).unwrap(),
            CompressionKind::Gzip
        );
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            CompressionKind::Zstd
        );
        assert_eq!(
            detect_compression(b"etc/passwd\0").unwrap(),
            CompressionKind::None
        );
        assert_eq!(detect_compression(b"").unwrap(), CompressionKind::None);
        assert!(matches!(
            detect_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Err(PipelineError::UnsupportedArchive { format: "xz" })
        ));
    }

    #[test]
    fn plain_tar_passes_through() {
        let tar = sample_tar();
        let (blob, info) = run(tar.clone()).unwrap();
        assert_eq!(blob, tar);
        assert_eq!(info.diff_id, sha(&tar));
        assert_eq!(info.descriptor.digest, info.diff_id);
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar"
        );
    }

    #[test]
    fn gzip_archive_is_streamed_as_is() {
        let tar = sample_tar();
        let gz = gzip(&tar);
        let (blob, info) = run(gz.clone()).unwrap();
        assert_eq!(blob, gz);
        assert_eq!(info.descriptor.digest, sha(&gz));
        assert_eq!(info.diff_id, sha(&tar));
        assert_eq!(info.descriptor.size, gz.len() as u64);
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }

    #[test]
    fn zstd_archive_is_streamed_as_is() {
        let tar = sample_tar();
        let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
        let (blob, info) = run(zst.clone()).unwrap();
        assert_eq!(blob, zst);
        assert_eq!(info.diff_id, sha(&tar));
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }

    #[test]
    fn truncated_inputs_fail() {
        let tar = sample_tar();
        let gz = gzip(&tar);
        let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("tar cut in entry data", tar[..1000].to_vec()),
            ("tar cut at an entry boundary", tar[..1536].to_vec()),
            ("tar without end marker", tar[..tar.len() - 1024].to_vec()),
            ("gzip cut", gz[..gz.len() / 2].to_vec()),
            ("gzip without trailer", gz[..gz.len() - 4].to_vec()),
            ("zstd cut", zst[..zst.len() - 10].to_vec()),
            ("empty input", Vec::new()),
            (
                "not a tar",
                b"hello world, this is not a tar at all".repeat(40),
            ),
        ];
        for (what, input) in cases {
            let err = run(input).expect_err(what);
            assert!(
                matches!(err, PipelineError::InvalidArchive { .. }),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn corrupt_gzip_fails() {
        let mut gz = gzip(&sample_tar());
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        assert!(run(gz).is_err());
    }

    #[test]
    fn docker_flavor() {
        let gz = gzip(&sample_tar());
        let stream = layer_from_archive(
            Cursor::new(gz),
            ArchiveOptions {
                flavor: MediaTypeFlavor::Docker,
                ..ArchiveOptions::default()
            },
        );
        let info = stream.blocking_finish().unwrap();
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }

    #[tokio::test]
    async fn async_reader() {
        let tar = sample_tar();
        let gz = gzip(&tar);
        let stream = layer_from_async_archive(Cursor::new(gz.clone()), ArchiveOptions::default());
        let (blob, info) = stream.collect().await.unwrap();
        assert_eq!(blob, gz);
        assert_eq!(info.diff_id, sha(&tar));
    }

    #[test]
    fn async_reader_needs_a_runtime() {
        let stream = layer_from_async_archive(Cursor::new(Vec::new()), ArchiveOptions::default());
        assert!(matches!(
            stream.blocking_finish(),
            Err(PipelineError::NoRuntime)
        ));
    }
}
