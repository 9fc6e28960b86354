//! Peak memory stays bounded while a 512 MiB stream goes through the pipeline.
//!
//! Alone in its own test binary, because VmHWM is per process and other tests running
//! in parallel threads would inflate it.

use std::io::{self, Read};

use berth_builder::compression::Compression;
use berth_builder::pipeline::{PipelineOptions, layer_from_tar_reader};

const TOTAL: u64 = 512 * 1024 * 1024;
const LIMIT_KIB: u64 = 64 * 1024;

/// A synthetic input: `total` bytes of pseudo-random text (compressible, not trivial),
/// produced on the fly; nothing is stored.
struct Synthetic {
    block: Vec<u8>,
    offset: usize,
    left: u64,
}

impl Synthetic {
    fn new(total: u64) -> Self {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let block = (0..1_048_573)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b"abcdefghij klmnop\n"[(state % 18) as usize]
            })
            .collect();
        Synthetic {
            block,
            offset: 0,
            left: total,
        }
    }
}

impl Read for Synthetic {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(self.block.len() - self.offset)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.offset..self.offset + n]);
        self.offset = (self.offset + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn half_a_gigabyte_with_bounded_memory() {
    let before = vm_hwm_kib();
    for compression in [Compression::gzip(), Compression::zstd()] {
        let mut stream = layer_from_tar_reader(
            Synthetic::new(TOTAL),
            PipelineOptions {
                compression,
                ..PipelineOptions::default()
            },
        );
        let mut received = 0u64;
        while let Some(chunk) = stream.blocking_next_chunk() {
            received += chunk.len() as u64;
        }
        let info = stream.blocking_finish().unwrap();
        assert_eq!(info.descriptor.size, received);
        assert!(
            received > 0 && received < TOTAL,
            "{compression:?}: {received} bytes"
        );
        let growth = vm_hwm_kib().saturating_sub(before);
        eprintln!("{compression:?}: blob {received} bytes, peak RSS growth {growth} KiB");
        assert!(
            growth < LIMIT_KIB,
            "{compression:?}: peak RSS grew by {growth} KiB (limit {LIMIT_KIB} KiB)"
        );
    }
}
