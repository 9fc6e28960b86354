//! Storage errors.

/// What a storage operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No object or directory at the key.
    #[error("not found: {0}")]
    NotFound(String),
    /// The key would escape the root or is malformed.
    #[error("invalid storage path {0:?}")]
    InvalidPath(String),
    /// The object is larger than the caller allowed.
    #[error("object {path} is larger than {limit} bytes")]
    TooLarge {
        /// The key.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// A range starts beyond the end of the object, or a writer offset beyond its size.
    #[error("range or offset beyond the end of {0}")]
    InvalidRange(String),
    /// The backend has no space left (or the quota is used up).
    #[error("the storage is full (writing {path})")]
    Full {
        /// The key.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend failed.
    #[error("storage I/O failed on {path}")]
    Io {
        /// The key.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error, turning `NotFound` into [`StorageError::NotFound`] and a full disk
    /// or quota into [`StorageError::Full`].
    pub fn io(path: &str, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        if source.kind() == ErrorKind::NotFound {
            StorageError::NotFound(path.to_owned())
        } else if matches!(
            source.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        ) {
            StorageError::Full {
                path: path.to_owned(),
                source,
            }
        } else {
            StorageError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    /// Whether this is [`StorageError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, StorageError::Full { .. })
    }

    /// Whether this is [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}
