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
    /// Wraps an I/O error, turning `NotFound` into [`StorageError::NotFound`].
    pub fn io(path: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound(path.to_owned())
        } else {
            StorageError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    /// Whether this is [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}
