//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`): read and write,
//! usable as a copy [`Source`] (push) and [`Destination`] (pull). Tags are the
//! `org.opencontainers.image.ref.name` annotations of `index.json` entries, as skopeo and
//! containerd use them.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_oci::{Digest, media_type as mt};
use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::blob::{BlobStream, partial_path, verify_stream};
use crate::copy::{Destination, Source};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::transfer::{BlobSource, PushedBlob};

/// The annotation that names an `index.json` entry.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let ctx = ctx.into();
    move |e| Error::io(ctx, e)
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(io(format!("writing {}", tmp.display())))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(io(format!("renaming to {}", path.display())))
}

impl OciLayout {
    /// Opens `dir` as a layout, creating it (and its `oci-layout` and `index.json`) if needed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), berth_client::Error> {
    /// let dir = std::env::temp_dir().join(format!("berth-doc-layout-{}", std::process::id()));
    /// let layout = berth_client::OciLayout::create(&dir).await?;
    /// let digest = layout.write_blob_bytes(b"hello").await?;
    /// assert!(layout.blob_path(&digest).exists());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn create(dir: &Path) -> Result<Self> {
        tokio::fs::create_dir_all(dir.join("blobs"))
            .await
            .map_err(io(format!("creating {}", dir.display())))?;
        let marker = dir.join("oci-layout");
        if !tokio::fs::try_exists(&marker).await.unwrap_or(false) {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
        }
        let index = dir.join("index.json");
        if !tokio::fs::try_exists(&index).await.unwrap_or(false) {
            let empty = json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": []});
            write_atomic(&index, empty.to_string().as_bytes()).await?;
        }
        Ok(OciLayout {
            root: dir.to_owned(),
        })
    }

    /// Opens an existing layout, checking its `oci-layout` marker.
    pub async fn open(dir: &Path) -> Result<Self> {
        let marker = dir.join("oci-layout");
        let text = tokio::fs::read(&marker).await.map_err(|e| {
            Error::Invalid(format!(
                "{} is not an OCI image layout (no oci-layout file: {e})",
                dir.display()
            ))
        })?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|_| Error::Invalid(format!("{} is not JSON", marker.display())))?;
        if v.get("imageLayoutVersion")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(Error::Invalid(format!(
                "{} has no imageLayoutVersion",
                marker.display()
            )));
        }
        Ok(OciLayout {
            root: dir.to_owned(),
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The parsed `index.json`.
    pub async fn index(&self) -> Result<Value> {
        let path = self.root.join("index.json");
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(io(format!("reading {}", path.display())))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        if !v.get("manifests").is_some_and(Value::is_array) {
            return Err(Error::Invalid(format!(
                "{} has no manifests list",
                path.display()
            )));
        }
        Ok(v)
    }

    /// The names (`org.opencontainers.image.ref.name`) in `index.json`.
    pub async fn names(&self) -> Result<Vec<String>> {
        let index = self.index().await?;
        Ok(entries(&index)
            .iter()
            .filter_map(|e| ref_name(e).map(str::to_owned))
            .collect())
    }

    /// Stores a small blob from memory; returns its digest.
    pub async fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        let path = self.blob_path(&digest);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        write_atomic(&path, bytes).await?;
        Ok(digest)
    }

    /// Stores a blob from a (verifying) stream: written beside its final name, renamed when the
    /// stream ended without error.
    pub async fn write_blob_stream(&self, digest: &Digest, mut stream: BlobStream) -> Result<u64> {
        let path = self.blob_path(digest);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        let tmp = partial_path(&path);
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(io(format!("creating {}", tmp.display())))?;
        let mut n = 0u64;
        let res: Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                f.write_all(&chunk)
                    .await
                    .map_err(io(format!("writing {}", tmp.display())))?;
                n += chunk.len() as u64;
            }
            f.flush()
                .await
                .map_err(io(format!("writing {}", tmp.display())))
        }
        .await;
        drop(f);
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io(format!("renaming to {}", path.display())))?;
        Ok(n)
    }

    /// A blob as a verifying stream.
    pub async fn blob_stream(&self, digest: &Digest, size: Option<u64>) -> Result<BlobStream> {
        let path = self.blob_path(digest);
        let f = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    what: format!("blob {digest} in {}", self.root.display()),
                }
            } else {
                Error::io(format!("opening {}", path.display()), e)
            }
        })?;
        let what = format!("blob {digest} in {}", self.root.display());
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
            .map(move |r| r.map_err(|e| Error::io("reading layout blob", e)));
        Ok(verify_stream(stream, digest.clone(), size, what))
    }

    /// Reads a manifest blob (at most 4 MiB), verified.
    async fn read_manifest_blob(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<Manifest> {
        let path = self.blob_path(digest);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|_| Error::NotFound {
                what: format!("manifest {digest} in {}", self.root.display()),
            })?;
        if meta.len() > berth_oci::manifest::DEFAULT_MAX_MANIFEST_BYTES as u64 {
            return Err(Error::Invalid(format!(
                "manifest {digest} is larger than 4 MiB"
            )));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(io(format!("reading {}", path.display())))?;
        let m = Manifest::from_bytes(Bytes::from(bytes), media_type)?;
        if m.digest != *digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest in {}", self.root.display()),
                expected: digest.clone(),
                actual: m.digest,
            });
        }
        Ok(m)
    }

    /// A manifest by name (`org.opencontainers.image.ref.name`) or digest. An empty name picks
    /// the only entry of `index.json`.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest> {
        let index = self.index().await?;
        let list = entries(&index);
        if let Ok(d) = reference.parse::<Digest>() {
            let mt = list
                .iter()
                .find(|e| e.get("digest").and_then(Value::as_str) == Some(reference))
                .and_then(media_type);
            return self.read_manifest_blob(&d, mt).await;
        }
        let entry = if reference.is_empty() {
            match list.as_slice() {
                [one] => one,
                [] => {
                    return Err(Error::NotFound {
                        what: format!("any image in {}", self.root.display()),
                    });
                }
                _ => {
                    let names: Vec<&str> = list.iter().filter_map(ref_name).collect();
                    return Err(Error::Invalid(format!(
                        "{} holds several images ({}); name one",
                        self.root.display(),
                        names.join(", ")
                    )));
                }
            }
        } else {
            list.iter()
                .find(|e| ref_name(e) == Some(reference))
                .ok_or_else(|| Error::NotFound {
                    what: format!("image {reference:?} in {}", self.root.display()),
                })?
        };
        let digest: Digest = entry
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| {
                Error::Invalid(format!("bad digest in {}/index.json", self.root.display()))
            })?;
        self.read_manifest_blob(&digest, media_type(entry)).await
    }

    /// Stores a manifest; with a name (not a digest), also lists it in `index.json` under that
    /// name, replacing any entry of the same name.
    pub async fn put_manifest(&self, reference: &str, manifest: &Manifest) -> Result<()> {
        self.write_blob_bytes(&manifest.bytes).await?;
        if reference.parse::<Digest>().is_ok() {
            return Ok(());
        }
        let mut index = self.index().await?;
        let list = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .expect("checked by index()");
        list.retain(|e| ref_name(e) != Some(reference));
        list.push(json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest.to_string(),
            "size": manifest.size(),
            "annotations": { REF_NAME: reference },
        }));
        let bytes = serde_json::to_vec(&index).expect("JSON serializes");
        write_atomic(&self.root.join("index.json"), &bytes).await
    }
}

fn entries(index: &Value) -> Vec<Value> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn ref_name(e: &Value) -> Option<&str> {
    e.get("annotations")?.get(REF_NAME)?.as_str()
}

fn media_type(e: &Value) -> Option<&str> {
    e.get("mediaType").and_then(Value::as_str)
}

#[async_trait]
impl Source for OciLayout {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
    async fn manifest(&self, reference: &str) -> Result<Manifest> {
        OciLayout::manifest(self, reference).await
    }
    fn blob(&self, digest: &Digest, size: u64) -> BoxFuture<'static, Result<BlobStream>> {
        let (layout, digest) = (self.clone(), digest.clone());
        Box::pin(async move { layout.blob_stream(&digest, Some(size)).await })
    }
}

#[async_trait]
impl Destination for OciLayout {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
    async fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool> {
        Ok(tokio::fs::metadata(self.blob_path(digest))
            .await
            .map(|m| m.len() == size)
            .unwrap_or(false))
    }
    async fn has_manifest(&self, digest: &Digest) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.blob_path(digest))
            .await
            .unwrap_or(false))
    }
    async fn push_blob(&self, source: &dyn BlobSource, _mount: Option<&str>) -> Result<PushedBlob> {
        let (digest, size) = source
            .known()
            .ok_or_else(|| Error::Invalid("a layout stores blobs by a known digest".into()))?;
        let mut stream = source.open().await?;
        if !source.verifies() {
            let what = format!("blob {digest} for {}", self.root.display());
            stream = verify_stream(stream, digest.clone(), Some(size), what);
        }
        self.write_blob_stream(&digest, stream).await?;
        Ok(PushedBlob {
            digest,
            size,
            mounted: false,
        })
    }
    async fn put_manifest(&self, reference: &str, manifest: &Manifest) -> Result<()> {
        OciLayout::put_manifest(self, reference, manifest).await
    }
}
