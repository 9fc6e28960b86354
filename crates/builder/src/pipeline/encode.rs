//! The compressors behind [`Compression`], all writing into the same sink type.

use std::io::{self, Write};

use gzp::ZWriter;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};

use crate::compression::{Compression, resolve_threads};

/// Input block size of the parallel gzip compressor. Fixed, because it shapes the
/// output bytes: changing it changes every gzip digest produced with threads > 1.
pub(crate) const PAR_GZIP_BLOCK: usize = 256 * 1024;

/// Job size of multi-threaded zstd. zstd's default (4 × the window, 8 MiB at level 3)
/// costs about 40 MiB with two workers, and 4 MiB jobs still cost about 45 MiB of peak RSS
/// over gzip for a whole `berth push-layer` (measured on 2 cores, 1 GiB corpus); 1 MiB jobs
/// bring that down to a few MiB for about 1% of ratio. Fixed, because it shapes the output
/// bytes (zstd's output depends on the job size, not on the number of workers).
pub(crate) const ZSTD_JOB_SIZE: u32 = 1024 * 1024;

/// A compressor writing into `W`.
pub(crate) enum Encoder<W: Write + Send + 'static> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    ParGzip(Box<ParCompress<'static, Gzip, W>>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write + Send + 'static> Encoder<W> {
    pub(crate) fn new(compression: Compression, sink: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain(sink),
            Compression::Gzip { level, threads } => {
                let threads = resolve_threads(threads);
                let level = flate2::Compression::new(level);
                if threads <= 1 {
                    // mtime 0 and OS "unknown" (255): nothing host- or time-dependent.
                    Encoder::Gzip(
                        flate2::GzBuilder::new()
                            .operating_system(255)
                            .write(sink, level),
                    )
                } else {
                    let builder = ParCompressBuilder::<Gzip>::new()
                        .num_threads(threads)
                        .and_then(|b| b.buffer_size(PAR_GZIP_BLOCK))
                        .map_err(io::Error::other)?
                        .compression_level(level);
                    Encoder::ParGzip(Box::new(builder.from_writer(sink)))
                }
            }
            Compression::Zstd { level, threads } => {
                let threads = u32::try_from(resolve_threads(threads)).unwrap_or(u32::MAX);
                let mut encoder = zstd::stream::write::Encoder::new(sink, level)?;
                encoder.include_checksum(true)?;
                // Always at least one worker: zstd's output is then identical for any
                // worker count (it differs only from the single-threaded mode).
                encoder.multithread(threads.max(1))?;
                encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                Encoder::Zstd(encoder)
            }
        })
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(data),
            Encoder::Gzip(w) => w.write_all(data),
            Encoder::ParGzip(w) => w.write_all(data),
            Encoder::Zstd(w) => w.write_all(data),
        }
    }

    /// Ends the compressed stream and returns the sink.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::ParGzip(mut w) => w.finish().map_err(gzp_to_io),
            Encoder::Zstd(w) => w.finish(),
        }
    }

    /// Drops the compressor after a failure. The sink must already be aborted (it then
    /// swallows whatever the compressor flushes on drop).
    pub(crate) fn abandon(self) {
        // gzp's Drop finishes the stream and unwraps the result; never let that take the
        // pipeline thread down.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(self)));
    }
}

fn gzp_to_io(e: gzp::GzpError) -> io::Error {
    match e {
        gzp::GzpError::Io(e) => e,
        other => io::Error::other(other),
    }
}
