//! What can go wrong while building and pushing an image, as types a caller can match: the
//! binary maps each variant to its exit code and hint; an embedder can retry, report or
//! ignore by kind.

use std::io;
use std::path::PathBuf;

use berth_oci::{Digest, Reference};

use crate::config_merge::MergeError;
use crate::image::ImageError;
use crate::labels::LabelError;
use crate::pipeline::PipelineError;

/// Why [`push_new_image`](super::push_new_image) or [`rebuild`](super::rebuild) failed. Nothing
/// is tagged on failure: blobs may have been uploaded, but no manifest names them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The rootfs to archive is not a folder.
    #[error(
        "the rootfs {} is not a folder (or does not exist); give the folder to archive",
        path.display()
    )]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// A config merge file could not be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A config merge file is not a valid patch (syntax, rules, variables).
    #[error("{}: {source}", path.display())]
    Merge {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line and column.
        #[source]
        source: MergeError,
    },
    /// The variables given (`SOURCE_DATE_EPOCH`) are unusable.
    #[error(transparent)]
    Variables(#[from] LabelError),
    /// The standard labels could not be added (the config is not a JSON object).
    #[error(transparent)]
    Labels(MergeError),
    /// A config edit (`--env`, `--entrypoint`, `--expose`…) is malformed or cannot apply.
    #[error(transparent)]
    Edit(ImageError),
    /// The new config, manifest or index could not be written around the base's.
    #[error(transparent)]
    Image(ImageError),
    /// The base is neither a Docker schema 2 nor an OCI image or index.
    #[error(
        "the base {base} is a {media_type} manifest; append and mutate take Docker schema 2 or OCI images and indexes"
    )]
    UnsupportedBase {
        /// The base reference.
        base: Box<Reference>,
        /// Its media type.
        media_type: String,
    },
    /// No image of the base index matches the platforms asked for.
    #[error("no platform of {base} matches --platform; see `berth manifest {base}`")]
    NoMatchingPlatform {
        /// The base reference.
        base: Box<Reference>,
    },
    /// Platforms were asked for, but the base is a single image.
    #[error("{base} is a single-platform image; --platform applies to multi-arch bases only")]
    NotMultiPlatform {
        /// The base reference.
        base: Box<Reference>,
    },
    /// A manifest of the base is not an image manifest.
    #[error("{digest} is not an image manifest (no config)")]
    NotAnImage {
        /// The manifest's digest.
        digest: Digest,
    },
    /// A document of the base is not JSON.
    #[error("{what} is not JSON: {source}")]
    NotJson {
        /// Which document.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The new layer could not be built (unreadable folder, corrupt archive…); not retried.
    #[error("the layer was not pushed: {0}")]
    Layer(#[source] LayerError),
    /// The registry refused, or could not be reached, while doing `during`.
    #[error("{}", registry_message(during, source))]
    Registry {
        /// What was being done ("base image", "layer upload"…; empty for manifest writes).
        during: &'static str,
        /// The client's error.
        #[source]
        source: berth_client::Error,
    },
}

fn registry_message(during: &str, source: &berth_client::Error) -> String {
    if during.is_empty() {
        source.to_string()
    } else {
        during.to_owned()
    }
}

impl BuildError {
    pub(crate) fn registry(during: &'static str) -> impl FnOnce(berth_client::Error) -> Self {
        move |source| BuildError::Registry { during, source }
    }
}

/// Why the bytes of a new layer could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The archive file could not be opened.
    #[error("cannot open the archive {}: {source}", path.display())]
    Open {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pipeline failed (folder, archive, compressor, input stream).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A one-shot input stream was asked for a second time.
    #[error("the input stream was already read; a layer from a stream cannot be sent twice")]
    Consumed,
    /// The pipeline ended without saying how.
    #[error("the layer pipeline ended without a result")]
    NoOutcome,
    /// The registry stored other bytes than the pipeline built.
    #[error(
        "the uploaded blob ({pushed}, {pushed_size} bytes) differs from the layer built ({built}, {built_size} bytes)"
    )]
    Mismatch {
        /// What the upload reported.
        pushed: Digest,
        /// Its size.
        pushed_size: u64,
        /// What the pipeline computed.
        built: Digest,
        /// Its size.
        built_size: u64,
    },
}
