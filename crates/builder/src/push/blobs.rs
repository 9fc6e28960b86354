//! A base image's blobs made present in the destination repository without downloading them
//! when the registry can mount them, and the small documents (config, manifests) a build
//! writes.

use berth_client::{Client, Manifest, RegistryBlob, ResendPolicy, lives_elsewhere};
use berth_oci::{Descriptor, Digest};
use serde_json::Value;

use super::error::BuildError;
use crate::image::{self, ImageFormat};

/// What happened to the base image's blobs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlobCounts {
    /// Already in the destination repository.
    pub present: usize,
    /// Mounted from the base repository (no data moved).
    pub mounted: usize,
    /// Streamed from the base registry (another registry, or a mount refused).
    pub copied: usize,
    /// Foreign layers, which stay where their URLs point.
    pub foreign: usize,
}

/// The two ends of a rebuild: where the base is read and where the new image goes.
pub(crate) struct Ends<'a> {
    pub(crate) src: &'a Client,
    pub(crate) src_repo: &'a str,
    pub(crate) dst: &'a Client,
    pub(crate) dst_repo: &'a str,
    pub(crate) same_registry: bool,
}

impl Ends<'_> {
    /// Makes `blobs` present in the destination repository: nothing to do in the same
    /// repository; a `HEAD`, then a cross-repository mount on the same registry; a streamed
    /// copy (verified against the digest) only when the base is on another registry or the
    /// registry declines the mount.
    pub(crate) async fn ensure_blobs(
        &self,
        blobs: &[Descriptor],
        counts: &mut BlobCounts,
    ) -> berth_client::Result<()> {
        for d in blobs {
            if lives_elsewhere(d) {
                counts.foreign += 1;
                continue;
            }
            if self.same_registry && self.src_repo == self.dst_repo {
                counts.present += 1;
                continue;
            }
            if self
                .dst
                .head_blob(self.dst_repo, &d.digest)
                .await?
                .is_some()
            {
                counts.present += 1;
                continue;
            }
            let blob = RegistryBlob::new(self.src.clone(), self.src_repo, d.digest.clone(), d.size);
            let mount_from = self.same_registry.then_some(self.src_repo);
            let pushed = self
                .dst
                .push_blob(
                    self.dst_repo,
                    &blob,
                    mount_from,
                    ResendPolicy::default(),
                    &|_, _| {},
                )
                .await?;
            if pushed.mounted {
                counts.mounted += 1;
            } else {
                counts.copied += 1;
            }
        }
        Ok(())
    }
}

/// Writes a manifest or index document under `reference`.
pub(crate) async fn put_json(
    c: &Client,
    repo: &str,
    reference: &str,
    doc: &Value,
    media_type: &str,
) -> Result<Manifest, BuildError> {
    let m = Manifest::from_bytes(image::to_bytes(doc), Some(media_type))
        .map_err(BuildError::registry(""))?;
    c.put_manifest(repo, reference, &m)
        .await
        .map_err(BuildError::registry(""))?;
    Ok(m)
}

/// Uploads an image config.
pub(crate) async fn push_config(
    c: &Client,
    repo: &str,
    config: &Value,
    format: ImageFormat,
) -> Result<Descriptor, BuildError> {
    let bytes = image::to_bytes(config);
    let size = bytes.len() as u64;
    let digest = c
        .push_blob_bytes(repo, bytes.into())
        .await
        .map_err(BuildError::registry("config upload"))?;
    Ok(Descriptor::new(format.config_media_type(), digest, size))
}

/// The digest of a document as [`image::to_bytes`] writes it.
pub(crate) fn digest_of(doc: &Value) -> String {
    Digest::sha256_of(&image::to_bytes(doc)).to_string()
}
