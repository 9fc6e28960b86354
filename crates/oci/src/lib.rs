//! The data model shared by every Berth crate: digests and hashing, repository names, tags and
//! image references, media types, descriptors and manifests (OCI and Docker), platforms, the
//! vocabulary of token authentication, and the OCI Distribution Spec's error codes.
//!
//! Architecture invariant: this crate does no I/O and has no async code. It parses, validates and
//! hashes bytes handed to it; callers own the network and the disk. Each concept here has one
//! type in the workspace; other crates use it rather than a copy of their own.
//!
//! The typed OCI structures come from the [`oci_spec`] crate (re-exported); the registry-side
//! manifest inspection in [`manifest`] is deliberately lenient about fields it does not need, so that
//! manifests of any artifact type can be stored byte for byte.
#![warn(missing_docs)]

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod platform;
pub mod reference;
pub mod route;
pub mod token;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{ErrorBody, ErrorCode, ErrorInfo};
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest};
pub use name::{NameError, validate_repository, validate_tag};
pub use oci_spec;
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError};
pub use route::Route;
