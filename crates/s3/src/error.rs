//! Errors of setting up the S3 backend.

/// Why the S3 backend could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// A setting is missing or wrong.
    #[error("S3 storage is misconfigured: {0}")]
    Config(String),
    /// The bucket does not exist.
    #[error(
        "bucket {bucket:?} does not exist at {endpoint}: create it, or fix storage.s3.bucket and storage.s3.regionendpoint"
    )]
    NoBucket {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
    },
    /// The store refused the credentials or their permissions.
    #[error(
        "{endpoint} refused access to bucket {bucket:?}: check storage.s3.accesskey and secretkey (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the key's permissions on the bucket"
    )]
    AccessDenied {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The store could not be reached or answered with an error.
    #[error(
        "cannot list bucket {bucket:?} at {endpoint}: is the store running and storage.s3.regionendpoint right?"
    )]
    Unreachable {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
}

impl S3Error {
    pub(crate) fn from_probe(bucket: &str, endpoint: &str, e: object_store::Error) -> Self {
        let (bucket, endpoint) = (bucket.to_owned(), endpoint.to_owned());
        let text = format!("{e:?}");
        match e {
            object_store::Error::NotFound { .. } => S3Error::NoBucket { bucket, endpoint },
            _ if text.contains("NoSuchBucket") => S3Error::NoBucket { bucket, endpoint },
            e @ (object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }) => S3Error::AccessDenied {
                bucket,
                endpoint,
                source: e,
            },
            e if text.contains("403")
                || text.contains("AccessDenied")
                || text.contains("InvalidAccessKeyId")
                || text.contains("SignatureDoesNotMatch") =>
            {
                S3Error::AccessDenied {
                    bucket,
                    endpoint,
                    source: e,
                }
            }
            source => S3Error::Unreachable {
                bucket,
                endpoint,
                source,
            },
        }
    }
}
