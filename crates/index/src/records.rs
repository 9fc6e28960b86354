//! What the index stores, as typed records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::Digest;

/// How a manifest refers to another object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// A config or layer blob.
    Blob,
    /// A child manifest of an index.
    Manifest,
}

impl ReferenceKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReferenceKind::Blob => "blob",
            ReferenceKind::Manifest => "manifest",
        }
    }
}

/// One object a manifest references.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManifestReference {
    /// Its digest.
    pub digest: Digest,
    /// Blob or child manifest.
    pub kind: ReferenceKind,
    /// Its size, as the descriptor gives it.
    pub size: u64,
}

/// A manifest revision of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Its digest.
    pub digest: Digest,
    /// The media type it is served with.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The artifact type (the field, or the config's media type for artifacts).
    pub artifact_type: Option<String>,
    /// The manifest it refers to (`subject`).
    pub subject: Option<Digest>,
    /// The descriptor answered for it by the referrers API (when it has a subject).
    pub referrer_entry: Option<String>,
    /// The blobs and child manifests it references.
    pub references: Vec<ManifestReference>,
    /// When it was stored.
    pub created_at: SystemTime,
}

/// A tag and the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The tag.
    pub tag: String,
    /// The manifest.
    pub digest: Digest,
    /// When it was last pointed at that manifest.
    pub pushed_at: SystemTime,
}

/// What the index knows of a manifest beyond what storage holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// The media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// The artifact type.
    pub artifact_type: Option<String>,
    /// Its subject.
    pub subject: Option<Digest>,
    /// When it was stored.
    pub created_at: SystemTime,
    /// When it was last pulled (`GET` of the manifest), if ever since the index has existed.
    pub last_pulled_at: Option<SystemTime>,
}

/// A pull of a manifest, as recorded in batches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PullRecord {
    /// The repository.
    pub repository: String,
    /// The manifest pulled.
    pub digest: Digest,
}

/// Milliseconds since the epoch, the index's time unit.
pub(crate) fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A `u64` size as the database's signed 64-bit integer.
pub(crate) fn size_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What a manifest points at, as the index recorded it when the manifest was stored (a
/// manifest's content never changes, so this holds wherever its bytes are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestEdges {
    /// The manifest it refers to, when it is a referrer.
    pub subject: Option<Digest>,
    /// Its config and layers.
    pub blobs: Vec<Digest>,
    /// Its child manifests (an index's).
    pub children: Vec<Digest>,
}
