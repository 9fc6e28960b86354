//! An S3-compatible object storage backend for Berth's [`berth_storage::Storage`] trait.
//!
//! Keys follow CNCF Distribution's S3 driver (`<rootdirectory>/docker/registry/v2/...`), so a
//! bucket that `registry:2` filled is served as it is, and the other way round. Blob uploads
//! stream into S3 multipart uploads whose state lives in the bucket (see the `writer` module), so any
//! number of replicas can share one bucket and an upload begun on one continues on another.
//!
//! Built on `object_store` (Apache Arrow) rather than the AWS SDK: it speaks S3 with SigV4,
//! retries, multipart uploads and presigned URLs on the reqwest/rustls/ring stack the rest of
//! Berth already uses, with a fraction of the SDK's dependencies and build time.
#![warn(missing_docs)]

mod config;
mod error;
mod store;
mod writer;

pub use config::{
    DEFAULT_CHUNK_SIZE, FileCredentials, MIN_CHUNK_SIZE, S3Config, credentials_from_aws_file,
    parse_credentials,
};
pub use error::S3Error;
pub use store::S3Storage;
