//! Registry rules over a [`Storage`]: blobs, upload sessions, manifests, tags, the catalog and
//! referrers, kept in CNCF Distribution's storage layout (see [`paths`]).
//!
//! Architecture invariants:
//! - No HTTP types: the server crate translates requests into these calls and
//!   [`RegistryError::code`] back into the spec's error codes.
//! - Nothing becomes visible before it is complete and verified: blob data is hashed while it
//!   streams in and moved into `blobs/` only when its digest matches; links are written after the
//!   content they point at; every small write is atomic.
//! - Blob bytes are never held in memory whole: uploads stream through an append writer, reads
//!   stream from storage.
//! - With a metadata index ([`Registry::with_index`]), storage stays the source of truth: pushes
//!   write storage first and the index second, deletes the index first, so the index never lists
//!   what storage does not hold.
#![warn(missing_docs)]

mod blobs;
mod error;
mod gc;
mod indexing;
mod lifecycle;
mod links;
mod manifests;
pub mod paths;
pub mod policy;
mod referrers;
mod retention;
mod tags;
mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use berth_index::{Index, IndexConfig, IndexError};
/// The storage types a user of the registry needs (the server depends on this crate only).
pub use berth_storage::{ByteStream, FolderStorage, Storage};
pub use blobs::{BlobInfo, BlobRead};
pub use error::{RegistryError, Result};
pub use gc::{DEFAULT_GRACE, GcOptions, GcReport, QUARANTINE};
pub use indexing::ReconcileReport;
pub use manifests::{MAX_TAGS_PER_PUSH, PutManifest, StoredManifest};
pub use policy::Policies;
pub use referrers::{MAX_REFERRER_ENTRY, REFERRERS_PAGE, ReferrersPage};
pub use uploads::UploadStatus;

/// Behaviour switches of a registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Whether DELETE of manifests, tags and blobs is allowed (off by default, as in Distribution).
    pub delete_enabled: bool,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Answer blob GETs with a redirect to a presigned URL of the storage backend, when it can
    /// make one (`storage.redirect`; S3 can, the folder backend cannot).
    pub redirect_blobs: bool,
    /// The garbage collector's grace window: a push refreshes the links it relies on when
    /// they are older than half of it, so that a collection keeps what they name.
    pub gc_grace: std::time::Duration,
    /// Immutable tags, quotas and retention rules (none by default).
    pub policies: Arc<Policies>,
    /// Refuse every push and delete; pulls go on (Distribution's
    /// `storage.maintenance.readonly`).
    pub read_only: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            delete_enabled: false,
            max_manifest_bytes: berth_oci::manifest::DEFAULT_MAX_MANIFEST_BYTES as u64,
            redirect_blobs: false,
            gc_grace: gc::DEFAULT_GRACE,
            policies: Arc::default(),
            read_only: false,
        }
    }
}

/// A registry over one storage backend. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Registry {
    storage: Arc<dyn Storage>,
    config: RegistryConfig,
    /// Serializes requests on the same upload inside this process, so that two PATCHes to one
    /// upload cannot interleave their bytes.
    upload_locks: UploadLocks,
    /// Whether the last write found the storage full (so that it is logged once per episode).
    full: Arc<std::sync::atomic::AtomicBool>,
    /// The metadata index, when the registry keeps one.
    index: Option<indexing::Indexed>,
}

/// Per-upload locks of this process, by upload id; an entry lives only while a request holds or
/// waits for it.
type UploadLocks = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

impl Registry {
    /// A registry over `storage`.
    pub fn new(storage: Arc<dyn Storage>, config: RegistryConfig) -> Self {
        Registry {
            storage,
            config,
            upload_locks: Arc::default(),
            full: Arc::default(),
            index: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Notes what a write found: the first failure for lack of space after a success is logged
    /// (not every request of a full disk), and so is the first success after it.
    fn observe_space<T>(&self, r: Result<T>) -> Result<T> {
        use std::sync::atomic::Ordering;
        match &r {
            Err(e) if e.is_storage_full() && !self.full.swap(true, Ordering::SeqCst) => {
                tracing::error!(
                    storage = self.storage.describe(),
                    "the storage is full: pushes fail with 507 until space is freed"
                );
            }
            Ok(_)
                if self.full.load(Ordering::SeqCst) && self.full.swap(false, Ordering::SeqCst) =>
            {
                tracing::info!("the storage has room again: pushes succeed");
            }
            _ => {}
        }
        r
    }

    /// Whether the registry can serve: storage answers (a listing of the registry's root; an
    /// empty store is fine) and so does the index database, when there is one.
    pub async fn check_ready(&self) -> Result<()> {
        match self.storage.list(paths::ROOT).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(ix) = self.index() {
            ix.ping().await?;
        }
        Ok(())
    }

    /// Refuses a write while the registry is read-only.
    fn check_writable(&self) -> Result<()> {
        if self.config.read_only {
            Err(RegistryError::Unsupported(
                "this registry is read-only for maintenance (storage.maintenance.readonly): pulls work, pushes and deletes are refused until it is switched off".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn check_delete(&self) -> Result<()> {
        self.check_writable()?;
        if self.config.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::Unsupported(
                "deletion is disabled on this registry: enable storage.delete.enabled".into(),
            ))
        }
    }
}

/// Validates a repository name, mapping the error.
pub fn check_name(name: &str) -> Result<()> {
    berth_oci::validate_repository(name).map_err(RegistryError::NameInvalid)
}
