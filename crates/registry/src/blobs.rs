//! Blobs as seen through a repository: a blob is readable in a repository only while the
//! repository links it.

use berth_oci::Digest;
use berth_storage::{ByteRange, ByteStream, StorageError};

use crate::{Registry, RegistryError, Result, check_name, paths};

/// Facts about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob opened for reading.
pub struct BlobRead {
    /// Total size of the blob.
    pub size: u64,
    /// The requested range, resolved (`None` for the whole blob).
    pub range: Option<(u64, u64)>,
    /// The bytes.
    pub stream: ByteStream,
}

impl Registry {
    /// Size of a blob linked in `name`.
    pub async fn stat_blob(&self, name: &str, d: &Digest) -> Result<BlobInfo> {
        check_name(name)?;
        if self.read_link(&paths::layer_link(name, d)).await?.is_none() {
            return Err(RegistryError::BlobUnknown(d.clone()));
        }
        match self.storage.stat(&paths::blob_data(d)).await {
            Ok(m) => Ok(BlobInfo {
                digest: d.clone(),
                size: m.size,
            }),
            Err(e) if e.is_not_found() => Err(RegistryError::BlobUnknown(d.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Registry::stat_blob`] for a client that asks whether the repository has a blob,
    /// most likely to reference it in a manifest next: the link is refreshed so that a
    /// garbage collection running meanwhile keeps the blob.
    pub async fn head_blob(&self, name: &str, d: &Digest) -> Result<BlobInfo> {
        let info = self.stat_blob(name, d).await?;
        self.touch_link(&paths::layer_link(name, d), d).await?;
        Ok(info)
    }

    /// How long a presigned blob URL stays valid (Distribution uses 20 minutes).
    const REDIRECT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

    /// A URL to fetch a blob linked in `name` from directly, when redirects are on and the
    /// storage can presign one; `None` means serve the bytes.
    pub async fn blob_redirect(&self, name: &str, d: &Digest) -> Result<Option<String>> {
        if !self.config.redirect_blobs {
            return Ok(None);
        }
        self.stat_blob(name, d).await?;
        Ok(self
            .storage
            .presigned_get(&paths::blob_data(d), Self::REDIRECT_EXPIRY)
            .await?)
    }

    /// Opens a blob linked in `name`, whole or an inclusive byte range `(first, last)` where
    /// `last: None` means to the end and `first: None` means a suffix of `last` bytes.
    pub async fn get_blob(
        &self,
        name: &str,
        d: &Digest,
        range: Option<(Option<u64>, Option<u64>)>,
    ) -> Result<BlobRead> {
        let info = self.stat_blob(name, d).await?;
        let size = info.size;
        let resolved = match range {
            None => None,
            Some((first, last)) => {
                let (start, end) = match (first, last) {
                    (Some(f), Some(l)) => (f, l.min(size.saturating_sub(1))),
                    (Some(f), None) => (f, size.saturating_sub(1)),
                    (None, Some(suffix)) => (size.saturating_sub(suffix), size.saturating_sub(1)),
                    (None, None) => return Err(RegistryError::BlobRangeInvalid { size }),
                };
                if size == 0 || start > end || start >= size {
                    return Err(RegistryError::BlobRangeInvalid { size });
                }
                Some((start, end))
            }
        };
        let br = resolved.map(|(s, e)| ByteRange {
            start: s,
            len: Some(e - s + 1),
        });
        let obj = self
            .storage
            .get(&paths::blob_data(d), br)
            .await
            .map_err(|e| match e {
                StorageError::NotFound(_) => RegistryError::BlobUnknown(d.clone()),
                StorageError::InvalidRange(_) => RegistryError::BlobRangeInvalid { size },
                e => e.into(),
            })?;
        Ok(BlobRead {
            size: obj.size,
            range: resolved,
            stream: obj.stream,
        })
    }

    /// Unlinks a blob from a repository (the data stays until garbage collection).
    pub async fn delete_blob(&self, name: &str, d: &Digest) -> Result<()> {
        check_name(name)?;
        self.check_delete()?;
        let link = paths::layer_link(name, d);
        if self.read_link(&link).await?.is_none() {
            return Err(RegistryError::BlobUnknown(d.clone()));
        }
        self.delete_quiet(link.trim_end_matches("/link")).await?;
        tracing::info!(repository = name, digest = %d, "blob unlinked");
        Ok(())
    }

    /// Links a blob that `from` has into `name`. Returns `false` (and changes nothing) when
    /// `from` does not have it, so the caller can fall back to a normal upload.
    pub async fn mount_blob(&self, name: &str, from: &str, d: &Digest) -> Result<Option<BlobInfo>> {
        check_name(name)?;
        self.check_writable()?;
        if check_name(from).is_err() {
            return Ok(None);
        }
        match self.stat_blob(from, d).await {
            Ok(info) => {
                self.check_quota_blob(name, Some(d), info.size).await?;
                self.write_link(&paths::layer_link(name, d), d).await?;
                self.index_blob_linked(name).await?;
                Ok(Some(info))
            }
            Err(RegistryError::BlobUnknown(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
