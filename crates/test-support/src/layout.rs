//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`) written and read by hand.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::data::sha256_hex;
use crate::image::Blob;

/// Writes an OCI image layout: `oci-layout`, every blob, and an `index.json` naming each
/// `(tag, media type, manifest)`.
pub fn write_layout(dir: &Path, blobs: &[&Blob], refs: &[(&str, &str, &Blob)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in blobs.iter().copied().chain(refs.iter().map(|r| r.2)) {
        std::fs::write(dir.join("blobs/sha256").join(b.hex()), &b.bytes).unwrap();
    }
    let manifests: Vec<Value> = refs
        .iter()
        .map(|(tag, mt, b)| {
            let mut d = b.descriptor(mt);
            d["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
            d
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
}

/// The blobs of a layout: file name (hex) to content digest, checking that each file's content
/// matches its name.
pub fn layout_blobs(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256_hex(&data),
            name,
            "layout blob {} does not match its name",
            e.path().display()
        );
        out.insert(name, data.len());
    }
    out
}

/// The `(digest, mediaType)` index.json names for `tag`.
pub fn layout_ref(dir: &Path, tag: &str) -> (String, String) {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("index.json has no {tag}: {v}"));
    (
        m["digest"].as_str().unwrap().to_owned(),
        m["mediaType"].as_str().unwrap().to_owned(),
    )
}
