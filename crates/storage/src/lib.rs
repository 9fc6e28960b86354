//! A byte-level storage abstraction for the registry, and its local folder backend.
//!
//! The trait is modelled on CNCF Distribution's storage driver, which has proven to fit both local
//! folders and object stores: whole-object reads with ranges, small atomic writes, an append
//! writer for uploads, listing of immediate children, recursive delete and move. Paths are
//! `/`-separated keys relative to the backend's root; they are built by the registry crate from
//! validated names only, and every backend still refuses `..` and absolute components so that no
//! key can escape the root.
//!
//! The behaviour every backend must show is one suite that each backend's tests run: the `suite`
//! module, behind the `suite` feature (for tests only, not part of the production API).
//!
//! Architecture invariant: nothing in this crate knows about registries, digests or HTTP.
#![warn(missing_docs)]

mod error;
mod folder;
#[cfg(any(test, feature = "suite"))]
pub mod suite;

use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use error::StorageError;
pub use folder::FolderStorage;

/// Result type of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A stream of object bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What `stat` knows about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification time, when the backend knows it.
    pub modified: Option<SystemTime>,
    /// Whether the key is a directory (a prefix with children) rather than an object.
    pub is_dir: bool,
}

/// An object opened for reading.
pub struct Object {
    /// Total size of the object (not of the requested range).
    pub size: u64,
    /// The requested bytes.
    pub stream: ByteStream,
}

/// A byte range `[start, start+len)`; `len: None` means to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Number of bytes, or `None` for the rest of the object.
    pub len: Option<u64>,
}

/// A writer for an object that grows by appends (blob uploads).
///
/// Data written is not guaranteed durable, nor visible under any other key, until
/// [`ObjectWriter::commit`] returns.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Bytes in the object so far, including what was there when the writer was opened.
    fn size(&self) -> u64;
    /// Makes everything written durable.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The storage backend interface.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short name for logs (`folder /var/lib/registry`, `s3 bucket`).
    fn describe(&self) -> String;

    /// Opens an object for reading, optionally a range of it.
    async fn get(&self, path: &str, range: Option<ByteRange>) -> Result<Object>;

    /// Reads a whole small object (links, manifests). Fails with [`StorageError::TooLarge`]
    /// beyond `limit` bytes so that no caller can be made to load a huge object into memory.
    async fn read(&self, path: &str, limit: u64) -> Result<Bytes>;

    /// Facts about a key.
    async fn stat(&self, path: &str) -> Result<Meta>;

    /// Writes a small object atomically: readers see the old content or the new, never a mix.
    async fn put(&self, path: &str, data: Bytes) -> Result<()>;

    /// Writes a small object only when no object is at the key: of several callers (in any
    /// process or replica) exactly one is told it created it, and all read the same object
    /// afterwards. True when this call did. (On object stores that ignore conditional writes
    /// the S3 backend settles concurrent creators by reading back.)
    /// Meant for state created once and shared, such as a generated signing key; on a local
    /// folder the file is readable by its owner only (mode 0600).
    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool>;

    /// Names (not paths) of the immediate children of a directory, unsorted.
    async fn list(&self, path: &str) -> Result<Vec<String>>;

    /// Names of the immediate children of a directory that are directories themselves,
    /// unsorted. Backends answer from one listing (an object store's common prefixes, a
    /// folder's entry types); this default stats each child.
    async fn list_folders(&self, path: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for c in self.list(path).await? {
            if self
                .stat(&format!("{path}/{c}"))
                .await
                .is_ok_and(|m| m.is_dir)
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Deletes an object or a directory tree.
    async fn delete(&self, path: &str) -> Result<()>;

    /// Moves an object to a new key atomically, replacing any object there.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// [`Storage::rename`] for a caller that tolerates a power loss undoing the move (the
    /// garbage collector's quarantine, which handles the object in either place): a folder
    /// skips the directory fsync that makes a rename durable. Object stores rename as usual.
    async fn rename_undurable(&self, from: &str, to: &str) -> Result<()> {
        self.rename(from, to).await
    }

    /// Removes the folder at `path` and then its parents up to (not including) `stop`, each
    /// only while it is empty: what deleting the last object under them leaves on a local
    /// folder. Never removes a folder that holds anything, so a concurrent write into it is
    /// safe. Object stores have no folders; this does nothing there.
    async fn prune_empty_folders(&self, path: &str, stop: &str) -> Result<()> {
        let _ = (path, stop);
        Ok(())
    }

    /// Opens an append writer that keeps the first `offset` bytes of the object at `path`
    /// (which must have at least that many) and discards anything after them. `offset` 0
    /// creates or truncates the object.
    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn ObjectWriter>>;

    /// Whether `list` can show a folder that holds no object (or only a write a crash cut
    /// short). True for local folders, where a folder exists before the object written into
    /// it; false for object stores, where a prefix exists only while a key under it does.
    /// Callers that list folders as entities (tags) check their content where this is true.
    fn lists_empty_folders(&self) -> bool {
        false
    }

    /// A URL that lets its holder GET the object directly from the backend for `expires`,
    /// when the backend can make one (object stores' presigned URLs); `None` otherwise.
    async fn presigned_get(
        &self,
        path: &str,
        expires: std::time::Duration,
    ) -> Result<Option<String>> {
        let _ = (path, expires);
        Ok(None)
    }
}

/// Refuses keys that could escape a backend's root.
pub fn check_key(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(StorageError::InvalidPath(path.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("docker/registry/v2/blobs").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "a/./b", "..", "a/", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
