//! A daemonless registry client: inspect, pull, push, copy, tag and delete images in any registry
//! that speaks the OCI Distribution Spec or Docker's Registry HTTP API V2.
//!
//! - [`Client`] talks to one registry: TLS (rustls, system roots plus extra CA files), plain HTTP
//!   for loopback and insecure registries, timeouts, proxy from the environment, authentication
//!   (anonymous, basic, bearer tokens cached per scope), retries with backoff.
//! - Credentials come from the [`Keychain`] in [`ClientOptions::keychain`]: static
//!   credentials and Docker `config.json` files the caller names ([`credentials`]). The library
//!   reads no environment variable and no home directory.
//! - [`copy()`] moves images between registries and [`OciLayout`]s, keeping digests;
//!   [`Registries`] keeps one client per host, so a copy is one call with two references.
//! - Every failure is an [`Error`] whose variant says what to do about it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_client::Error> {
//! use berth_client::{Client, ClientOptions, Credentials, Keychain};
//! use berth_oci::Reference;
//!
//! let r: Reference = "127.0.0.1:5000/team/app:v1".parse()?;
//! let opts = ClientOptions {
//!     keychain: Keychain::from(Credentials::basic("user", "pass")),
//!     ..Default::default()
//! };
//! let client = Client::new(&r.registry, opts)?;
//! let manifest = client.get_manifest(&r.repository, &r.reference_str()).await?;
//! println!("{} is {}", r, manifest.digest);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod auth;
mod blob;
mod client;
mod copy;
pub mod credentials;
mod error;
mod keychain;
mod layout;
mod listing;
mod manifest;
mod progress;
mod referrers;
mod registries;
mod retry;
mod tls;
mod transfer;
mod upload;

pub use berth_oci::{Digest, Reference};
pub use blob::BlobStream;
pub use client::{Client, ClientOptions, DEFAULT_CHUNK_SIZE, UploadMode, is_loopback};
pub use copy::{
    CopyOptions, CopyReport, Destination, MAX_INDEX_DEPTH, Platforms, RegistryRepo, Source, copy,
};
pub use credentials::Credentials;
pub use error::{Error, Result};
pub use keychain::{KeySource, Keychain};
pub use layout::OciLayout;
pub use listing::{ListOptions, pattern_matches};
pub use manifest::{Manifest, ManifestInfo, Platform};
pub use progress::{BlobOutcome, NoProgress, Reporter};
pub use referrers::fallback_tag;
pub use registries::{Registries, copy_between};
pub use retry::RetryPolicy;
pub use transfer::{BlobSource, PushedBlob, RegistryBlob, ResendPolicy, lives_elsewhere};
