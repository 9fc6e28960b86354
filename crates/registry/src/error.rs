//! Registry errors, each tied to the spec's error code.

use berth_oci::{Digest, ErrorCode};
use berth_storage::StorageError;

/// What a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Invalid repository name.
    #[error(transparent)]
    NameInvalid(berth_oci::NameError),
    /// Invalid tag.
    #[error("{0}")]
    TagInvalid(String),
    /// The repository does not exist.
    #[error("repository {0} is not known to this registry")]
    NameUnknown(String),
    /// The blob is not in the repository.
    #[error("blob {0} is not known to this repository")]
    BlobUnknown(Digest),
    /// The manifest is not in the repository.
    #[error("manifest {0} is not known to this repository")]
    ManifestUnknown(String),
    /// The upload id is unknown (or finished, or cancelled).
    #[error("upload {0} is not known: start a new upload with POST")]
    UploadUnknown(String),
    /// A digest was malformed or did not match the content.
    #[error("{0}")]
    DigestInvalid(String),
    /// The upload is not in a state that allows the request.
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk did not start where the upload ends.
    #[error(
        "chunk starts at byte {given} but the upload has {expected} bytes: resume from {expected}"
    )]
    RangeInvalid {
        /// Where the chunk claimed to start.
        given: u64,
        /// Bytes received so far.
        expected: u64,
    },
    /// A requested byte range lies outside the blob.
    #[error("range not satisfiable for a blob of {size} bytes")]
    BlobRangeInvalid {
        /// The blob's size.
        size: u64,
    },
    /// The manifest is malformed.
    #[error("{0}")]
    ManifestInvalid(String),
    /// The manifest references something the repository lacks.
    #[error("manifest references {0}, which is not in this repository: push it first")]
    ManifestBlobUnknown(Digest),
    /// A length disagreed with the content.
    #[error("{0}")]
    SizeInvalid(String),
    /// A body exceeded the configured limit.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A policy refuses the request (an immutable tag, a quota).
    #[error("{0}")]
    Denied(String),
    /// Deletion is disabled or the operation is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The request body broke off.
    #[error("reading the request body failed: {0}")]
    Body(#[source] std::io::Error),
    /// The metadata index cannot be reached: nothing was changed (or storage was written and
    /// the index will catch up); the client should retry.
    #[error("the registry's index database is unavailable: retry in a moment")]
    IndexUnavailable(#[source] berth_index::IndexError),
    /// The metadata index refused or failed a query.
    #[error("the registry's index failed")]
    Index(#[source] berth_index::IndexError),
    /// The storage backend failed.
    #[error("storage failed")]
    Storage(#[source] StorageError),
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        RegistryError::Storage(e)
    }
}

impl From<berth_index::IndexError> for RegistryError {
    fn from(e: berth_index::IndexError) -> Self {
        if e.is_unavailable() {
            RegistryError::IndexUnavailable(e)
        } else {
            RegistryError::Index(e)
        }
    }
}

impl RegistryError {
    /// Whether the storage backend ran out of space (the server answers 507).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, RegistryError::Storage(e) if e.is_full())
    }

    /// The spec error code for this error.
    pub fn code(&self) -> ErrorCode {
        use RegistryError::*;
        match self {
            NameInvalid(_) => ErrorCode::NameInvalid,
            TagInvalid(_) => ErrorCode::TagInvalid,
            NameUnknown(_) => ErrorCode::NameUnknown,
            BlobUnknown(_) => ErrorCode::BlobUnknown,
            ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            DigestInvalid(_) => ErrorCode::DigestInvalid,
            UploadInvalid(_) | Body(_) => ErrorCode::BlobUploadInvalid,
            RangeInvalid { .. } | BlobRangeInvalid { .. } => ErrorCode::RangeInvalid,
            ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            SizeInvalid(_) => ErrorCode::SizeInvalid,
            TooLarge { .. } => ErrorCode::SizeTooLarge,
            Unsupported(_) => ErrorCode::Unsupported,
            Denied(_) => ErrorCode::Denied,
            IndexUnavailable(_) => ErrorCode::Unavailable,
            Storage(_) | Index(_) => ErrorCode::Unknown,
        }
    }
}

/// Result type of registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
