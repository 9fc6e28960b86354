//! Building images into a registry: the orchestration behind `berth push-layer`, `append` and
//! `mutate`, as a library. A typed plan goes in ([`NewImage`], [`Rebuild`]), a [`Report`]
//! comes out, and every failure is a [`BuildError`] the caller can match. This module prints
//! nothing, reads no environment variable and picks no exit code: the caller passes the
//! variables it wants honoured ([`ConfigPlan::vars`]), clients with their keychains, and an
//! [`Observer`] to hear about retries.
//!
//! ```text
//!  LayerPlan ──► pipeline (layer_from_dir / archive / sniffed stream) ──► Client::push_blob
//!                 diff_id + blob digest while streaming                    chunked, resent from the
//!                                                                          source on failure
//!  base manifest ──► selected images ──► blobs HEAD / mount / copy ──► config edited ──► config blob
//!                                                                                    ──► manifest(s), index
//! ```
//!
//! Nothing is tagged until every blob the new manifests name is in the destination: a failed
//! build leaves at most unreferenced blobs behind, never a tag pointing at missing content.

mod blobs;
mod config;
mod error;
mod layer;
mod new_image;
mod rebuild;

use berth_client::Error;
use berth_oci::{Digest, Platform, Reference};

use crate::image::ImageFormat;
use crate::pipeline::LayerInfo;

pub use blobs::BlobCounts;
pub use config::ConfigPlan;
pub use error::{BuildError, LayerError};
pub use layer::{LayerPlan, LayerSource};
pub use new_image::push_new_image;
pub use rebuild::rebuild;

/// A new single-layer image (`berth push-layer`): a config made from scratch for `platform`,
/// one layer, pushed as `destination`.
#[derive(Debug)]
pub struct NewImage {
    /// Where the image goes (registry, repository, tag or digest).
    pub destination: Reference,
    /// The platform the config names.
    pub platform: Platform,
    /// Docker schema 2 or OCI media types.
    pub format: ImageFormat,
    /// The layer.
    pub layer: LayerPlan,
    /// The config edits.
    pub config: ConfigPlan,
}

/// A new image from a remote base without pulling the base's layers: `append` when
/// [`Rebuild::layer`] is set (a layer on top of each selected image), `mutate` otherwise
/// (config edits only). A multi-platform base gives a new index in which the selected images
/// are replaced and the others kept.
#[derive(Debug)]
pub struct Rebuild {
    /// The base image or index.
    pub base: Reference,
    /// Where the new image goes.
    pub destination: Reference,
    /// The layer to add (`append`), or none (`mutate`).
    pub layer: Option<LayerPlan>,
    /// The config edits, applied to each selected image.
    pub config: ConfigPlan,
    /// The images of a multi-platform base to rebuild (empty: every one but attestations).
    pub platforms: Vec<Platform>,
    /// The format of what is written (`None`: the base's).
    pub format: Option<ImageFormat>,
}

/// What a build pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The reference written.
    pub reference: Reference,
    /// The digest of the manifest (or index) it now points to.
    pub digest: Digest,
    /// The new layer, if one was built.
    pub layer: Option<LayerInfo>,
    /// What happened to the base's blobs (rebuilds only).
    pub base_blobs: Option<BlobCounts>,
}

/// Hears about what a build does while it runs. Every method has a default that does nothing.
pub trait Observer: Send + Sync {
    /// The layer's upload failed with `error` and the layer is being streamed again from its
    /// source, for send number `attempt`.
    fn layer_resent(&self, error: &Error, attempt: u32) {
        let _ = (error, attempt);
    }
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}
