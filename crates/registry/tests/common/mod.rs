//! Helpers shared by the registry's integration tests: a registry on a real folder, and
//! pushes of blobs, images and tags through its API.
#![allow(dead_code)]

pub use std::path::Path;
pub use std::sync::Arc;
pub use std::time::{Duration, SystemTime};

pub use berth_oci::Digest;
pub use berth_registry::{GcOptions, Registry, RegistryConfig, RegistryError};
pub use berth_storage::FolderStorage;
pub use bytes::Bytes;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const HOUR: Duration = Duration::from_secs(3600);

pub fn registry(root: &Path) -> Registry {
    Registry::new(
        Arc::new(FolderStorage::new(root).unwrap()),
        RegistryConfig {
            delete_enabled: true,
            ..Default::default()
        },
    )
}

pub fn opts(grace: Duration) -> GcOptions {
    GcOptions {
        grace,
        ..Default::default()
    }
}

pub async fn blob(r: &Registry, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let bytes = Bytes::copy_from_slice(data);
    r.put_blob(
        repo,
        &d.to_string(),
        Box::pin(futures::stream::iter([Ok(bytes)])),
        Some(data.len() as u64),
    )
    .await
    .unwrap();
    d
}

/// An image of a config and the given layers; with a subject it is a referrer (a signature).
pub async fn image(
    r: &Registry,
    repo: &str,
    config: &str,
    layers: &[&str],
    subject: Option<&Digest>,
) -> (Digest, Vec<Digest>) {
    let mut blobs = vec![blob(r, repo, config.as_bytes()).await];
    let mut descs = Vec::new();
    for l in layers {
        let d = blob(r, repo, l.as_bytes()).await;
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#,
            l.len()
        ));
        blobs.push(d);
    }
    let subject = subject
        .map(|s| format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{s}","size":1}},"artifactType":"application/x-sig""#))
        .unwrap_or_default();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]{subject}}}"#,
        blobs[0],
        config.len(),
        descs.join(",")
    );
    let d = Digest::sha256_of(m.as_bytes());
    r.put_manifest(repo, &d.to_string(), Some(OCI_MANIFEST), Bytes::from(m))
        .await
        .unwrap();
    (d, blobs)
}

pub async fn tag(r: &Registry, repo: &str, tag: &str, d: &Digest) {
    let m = r.get_manifest(repo, &d.to_string()).await.unwrap();
    r.put_manifest(repo, tag, Some(&m.media_type), m.bytes)
        .await
        .unwrap();
}

/// Makes everything stored look written `age` ago.
pub fn age_all(root: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                std::fs::File::options()
                    .write(true)
                    .open(e.path())
                    .unwrap()
                    .set_modified(when)
                    .unwrap();
            }
        }
    }
}

pub async fn pulls(r: &Registry, repo: &str, reference: &str, blobs: &[Digest]) -> bool {
    if r.get_manifest(repo, reference).await.is_err() {
        return false;
    }
    for b in blobs {
        if r.get_blob(repo, b, None).await.is_err() {
            return false;
        }
    }
    true
}

pub fn stored(root: &Path, d: &Digest) -> bool {
    root.join(berth_registry::paths::blob_data(d)).exists()
}
