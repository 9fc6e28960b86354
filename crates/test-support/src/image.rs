//! OCI and Docker image fixtures: blobs with their digests, tar.gz layers, random images,
//! indexes and artifacts, as JSON values built by hand (not by the code under test).

use std::io::Write as _;

use berth_oci::media_type::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_EMPTY, OCI_LAYER_GZIP,
    OCI_MANIFEST,
};
use serde_json::{Value, json};

use crate::data::{digest_of, random_bytes, random_suffix};

/// Content and its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The content.
    pub bytes: Vec<u8>,
    /// Its digest, `sha256:HEX`.
    pub digest: String,
}

impl Blob {
    /// A blob of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Blob {
        let digest = digest_of(&bytes);
        Blob { bytes, digest }
    }

    /// A blob of `n` random bytes.
    pub fn random(n: usize) -> Blob {
        Blob::new(random_bytes(n))
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The hex part of its digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }

    /// An OCI descriptor of it with `media_type`.
    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.size() })
    }
}

/// A tar.gz layer holding `files` (path, content, mode); returns the layer and its diff ID.
pub fn layer(files: &[(&str, &[u8])]) -> (Blob, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).expect("tar entry");
    }
    let raw = tar.into_inner().expect("tar");
    let diff_id = digest_of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (Blob::new(gz.finish().unwrap()), diff_id)
}

/// An uncompressed tar holding `files`.
pub fn plain_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).expect("tar entry");
    }
    tar.into_inner().expect("tar")
}

/// An image: config, layers and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config blob.
    pub config: Blob,
    /// The layers (tar.gz).
    pub layers: Vec<Blob>,
    /// The manifest.
    pub manifest: Blob,
    /// The manifest's media type.
    pub media_type: &'static str,
    /// Its architecture (the OS is `linux`).
    pub arch: String,
}

impl Image {
    /// Every blob of the image, manifest included.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = vec![&self.config];
        v.extend(self.layers.iter());
        v.push(&self.manifest);
        v
    }

    /// A descriptor of the manifest with its platform, for an index.
    pub fn platform_descriptor(&self) -> Value {
        let mut d = self.manifest.descriptor(self.media_type);
        d["platform"] = json!({ "architecture": self.arch, "os": "linux" });
        d
    }
}

fn build_image(arch: &str, n_layers: usize, layer_bytes: usize, docker: bool) -> Image {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..n_layers {
        let content = random_bytes(layer_bytes);
        let (l, d) = layer(&[
            (&format!("layer{i}/data-{arch}.bin"), &content),
            (&format!("layer{i}/name"), arch.as_bytes()),
        ]);
        layers.push(l);
        diff_ids.push(d);
    }
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": { "Env": ["PATH=/usr/bin"], "Labels": { "nonce": random_suffix() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": [],
        }))
        .unwrap(),
    );
    let (mt, cmt, lmt) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": config.descriptor(cmt),
        "layers": layers.iter().map(|l| l.descriptor(lmt)).collect::<Vec<_>>(),
    });
    Image {
        config,
        layers,
        manifest: Blob::new(serde_json::to_vec_pretty(&manifest).unwrap()),
        media_type: mt,
        arch: arch.to_owned(),
    }
}

/// A random OCI image for `arch` with `n_layers` layers of about `layer_bytes` bytes each.
pub fn oci_image(arch: &str, n_layers: usize, layer_bytes: usize) -> Image {
    build_image(arch, n_layers, layer_bytes, false)
}

/// A random Docker schema 2 image.
pub fn docker_image(arch: &str, n_layers: usize, layer_bytes: usize) -> Image {
    build_image(arch, n_layers, layer_bytes, true)
}

/// An OCI image index (or Docker manifest list) of images.
pub fn index_of(images: &[&Image], media_type: &str) -> Blob {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": images.iter().map(|i| i.platform_descriptor()).collect::<Vec<_>>(),
    });
    Blob::new(serde_json::to_vec_pretty(&v).unwrap())
}

/// An OCI artifact manifest (empty config) that refers to `subject`.
pub fn artifact(
    artifact_type: &str,
    subject: &Blob,
    subject_media_type: &str,
    layer: &Blob,
) -> Blob {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": { "mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2 },
        "layers": [ layer.descriptor("application/octet-stream") ],
        "subject": subject.descriptor(subject_media_type),
        "annotations": { "org.example.note": "e2e" },
    });
    Blob::new(serde_json::to_vec(&v).unwrap())
}
