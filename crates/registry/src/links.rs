//! Link files: small objects holding a digest, as Distribution writes them.

use berth_oci::Digest;
use bytes::Bytes;

use crate::{Registry, RegistryError, Result};

const LINK_LIMIT: u64 = 1024;

impl Registry {
    /// Reads a link; `Ok(None)` when it does not exist.
    pub(crate) async fn read_link(&self, key: &str) -> Result<Option<Digest>> {
        match self.storage.read(key, LINK_LIMIT).await {
            Ok(b) => {
                let s = String::from_utf8_lossy(&b);
                let d = s.trim().parse::<Digest>().map_err(|e| {
                    RegistryError::Storage(berth_storage::StorageError::Io {
                        path: key.to_owned(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    })
                })?;
                Ok(Some(d))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a link atomically.
    pub(crate) async fn write_link(&self, key: &str, d: &Digest) -> Result<()> {
        self.storage.put(key, Bytes::from(d.to_string())).await?;
        Ok(())
    }

    /// Deletes a key, treating "already gone" as success.
    pub(crate) async fn delete_quiet(&self, key: &str) -> Result<()> {
        match self.storage.delete(key).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a key exists.
    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        match self.storage.stat(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
