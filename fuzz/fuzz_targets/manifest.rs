//! Manifest parsing: any bytes, with or without a Content-Type, never panic, nest or allocate
//! without bound (libFuzzer's `-malloc_limit_mb` catches the last).
#![no_main]

use berth_oci::manifest::{MAX_JSON_DEPTH, ParsedManifest, check_json_depth};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = TYPES[pick as usize % TYPES.len()];
    if let Ok(m) = ParsedManifest::parse(body, ct) {
        // What parses is shallow enough for serde_json to read back whole.
        assert!(check_json_depth(body, MAX_JSON_DEPTH).is_ok());
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
        let _ = m.effective_artifact_type();
    }
});
