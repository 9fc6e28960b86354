//! The archive reader behind `push-layer` of an existing archive: any bytes, as plain, gzip
//! or zstd input, are read to their end or refused with an error; no panic, and memory stays
//! bounded whatever sizes the headers claim.
#![no_main]

use berth_builder::archive::{detect_compression, validate_archive};
use berth_builder::compression::CompressionKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kind = match detect_compression(data) {
        Ok(k) => k,
        Err(_) => return,
    };
    let _ = validate_archive(kind, data);
    // The same bytes read as a plain tar, whatever they start with.
    if kind != CompressionKind::None {
        let _ = validate_archive(CompressionKind::None, data);
    }
});
