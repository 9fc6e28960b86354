//! The writers that connect the pipeline's threads.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use berth_oci::{Algorithm, Digest, Hasher};
use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

/// First stage output: hashes everything written (the diff_id) and hands it to the next
/// stage in buffers of `capacity` bytes through a bounded channel.
pub(crate) struct HashingStageWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    capacity: usize,
    hasher: Hasher,
    total: u64,
}

impl HashingStageWriter {
    pub(crate) fn new(tx: SyncSender<Vec<u8>>, capacity: usize) -> Self {
        HashingStageWriter {
            tx,
            buf: Vec::with_capacity(capacity),
            capacity,
            hasher: Hasher::new(Algorithm::Sha256),
            total: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.capacity));
        self.tx.send(full).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the compression stage stopped early",
            )
        })
    }

    /// Sends what is left and returns `(sha256 digest, byte count)`.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok((self.hasher.finish(), self.total))
    }
}

impl Write for HashingStageWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = (self.capacity - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() == self.capacity {
                self.send()?;
            }
        }
        self.hasher.update(data);
        self.total += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Flags shared between a [`BlobSink`] and the thread that owns the pipeline.
#[derive(Debug, Default, Clone)]
pub(crate) struct SinkFlags {
    /// Set by the owner when the blob is known to be bad: further writes are discarded
    /// and the last partial chunk is never delivered.
    pub abort: Arc<AtomicBool>,
    /// Set by the sink when the consumer dropped its receiver.
    pub consumer_gone: Arc<AtomicBool>,
}

impl SinkFlags {
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    pub(crate) fn consumer_gone(&self) -> bool {
        self.consumer_gone.load(Ordering::SeqCst)
    }
}

/// Last stage: hashes the blob bytes (the blob digest), counts them and delivers them to
/// the consumer in chunks of exactly `chunk_size` bytes (the last one may be shorter).
pub(crate) struct BlobSink {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    chunk_size: usize,
    hasher: Hasher,
    size: u64,
    flags: SinkFlags,
}

impl BlobSink {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>, chunk_size: usize, flags: SinkFlags) -> Self {
        BlobSink {
            tx,
            buf: BytesMut::with_capacity(chunk_size),
            chunk_size,
            hasher: Hasher::new(Algorithm::Sha256),
            size: 0,
            flags,
        }
    }

    fn aborted(&self) -> bool {
        self.flags.abort.load(Ordering::SeqCst)
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk =
            std::mem::replace(&mut self.buf, BytesMut::with_capacity(self.chunk_size)).freeze();
        // We run on a plain OS thread (never inside the Tokio runtime), so blocking is fine.
        self.tx.blocking_send(chunk).map_err(|_| {
            self.flags.consumer_gone.store(true, Ordering::SeqCst);
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the layer chunk receiver was dropped",
            )
        })
    }

    /// Delivers the last chunk and returns `(blob digest, blob size)`.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        if self.aborted() {
            return Err(io::Error::other("the blob was aborted"));
        }
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok((self.hasher.finish(), self.size))
    }
}

impl Write for BlobSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.aborted() {
            return Ok(data.len());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let n = (self.chunk_size - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() == self.chunk_size {
                self.send()?;
            }
        }
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over buffers arriving on a bounded channel; end of input when the sender
/// is dropped.
pub(crate) struct ChannelReader {
    rx: Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(next) => self.current = next,
                Err(_) => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A `Read` that hashes and counts what passes through and remembers whether the
/// underlying reader reached its end.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    total: u64,
    eof: bool,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
            total: 0,
            eof: false,
        }
    }

    /// Whether a read returned end of input.
    pub(crate) fn hit_eof(&self) -> bool {
        self.eof
    }

    /// `(sha256 digest, byte count)`.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.total)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.hasher.update(&buf[..n]);
        self.total += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_format() {
        let mut empty = HashingReader::new(io::empty());
        assert_eq!(empty.read(&mut [0u8; 8]).unwrap(), 0);
        assert_eq!(
            empty.finish().0.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn stage_writer_sends_full_buffers_and_hashes_everything() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let mut w = HashingStageWriter::new(tx, 4);
        w.write_all(b"abcdefghij").unwrap();
        let (digest, total) = w.finish().unwrap();
        let got: Vec<Vec<u8>> = rx.iter().collect();
        assert_eq!(got, [b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]);
        assert_eq!(total, 10);
        assert_eq!(digest, Digest::sha256_of(b"abcdefghij"));
    }

    #[test]
    fn blob_sink_chunks_exactly() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut sink = BlobSink::new(tx, 3, SinkFlags::default());
        sink.write_all(b"12345").unwrap();
        sink.write_all(b"6789").unwrap();
        let (_, size) = sink.finish().unwrap();
        assert_eq!(size, 9);
        let mut chunks = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            chunks.push(c);
        }
        assert_eq!(chunks, [&b"123"[..], b"456", b"789"]);
    }

    #[test]
    fn blob_sink_reports_a_dropped_receiver() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let flags = SinkFlags::default();
        let mut sink = BlobSink::new(tx, 2, flags.clone());
        assert!(sink.write_all(b"abc").is_err());
        assert!(flags.consumer_gone());
    }

    #[test]
    fn aborted_sink_discards_and_fails_finish() {
        let (tx, mut rx) = mpsc::channel(4);
        let flags = SinkFlags::default();
        let mut sink = BlobSink::new(tx, 100, flags.clone());
        sink.write_all(b"abc").unwrap();
        flags.abort();
        sink.write_all(b"def").unwrap();
        assert!(sink.finish().is_err());
        assert!(rx.blocking_recv().is_none());
    }

    #[test]
    fn channel_reader_reads_across_buffers() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        tx.send(Bytes::from_static(b"ab")).unwrap();
        tx.send(Bytes::new()).unwrap();
        tx.send(Bytes::from_static(b"cde")).unwrap();
        drop(tx);
        let mut out = String::new();
        ChannelReader::new(rx).read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcde");
    }
}
