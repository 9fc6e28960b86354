//! Compression settings and layer media types.

use std::fmt;
use std::num::NonZeroUsize;

/// Default gzip level (the same default as Go's `compress/gzip`, used by Docker and BuildKit).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Default zstd level (zstd's own default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How the layer blob is compressed by [`crate::pipeline`].
///
/// `threads: 0` means "as many as [`std::thread::available_parallelism`] reports".
///
/// # Determinism
///
/// For a given input the output bytes depend only on the variant, the level and:
/// - gzip: whether the thread count resolves to 1 (one deflate stream from `flate2`) or
///   to more than 1 (pigz-style: `gzp` compresses 256 KiB blocks in parallel and joins
///   them into one valid gzip member). Any count above 1 gives the same bytes. Pin
///   `threads` to a fixed value (e.g. 2) if digests must match across machines with
///   different core counts. The parallel blocks are compressed independently (no
///   dictionary carried over: gzp only supports that with the C zlib, and this crate
///   uses `flate2` on zlib-rs), which costs about 1% of ratio.
/// - zstd: nothing else. We always run zstd's multi-threaded mode (at least one worker)
///   with a fixed 4 MiB job size, whose output is the same for any number of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No compression: the blob is the tar itself (digest == diff_id).
    None,
    /// gzip (RFC 1952), level 0-9.
    Gzip {
        /// Compression level, 0 (store) to 9 (best).
        level: u32,
        /// Compression threads, 0 = all available cores.
        threads: usize,
    },
    /// zstd (RFC 8878), level as accepted by libzstd (1-22, or negative "fast" levels).
    Zstd {
        /// Compression level.
        level: i32,
        /// zstd worker threads, 0 = all available cores.
        threads: usize,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
            threads: 0,
        }
    }
}

impl Compression {
    /// gzip at the default level on all cores.
    pub fn gzip() -> Self {
        Self::default()
    }

    /// zstd at the default level on all cores.
    pub fn zstd() -> Self {
        Compression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
            threads: 0,
        }
    }

    /// The kind of compression, without its parameters.
    pub fn kind(&self) -> CompressionKind {
        match self {
            Compression::None => CompressionKind::None,
            Compression::Gzip { .. } => CompressionKind::Gzip,
            Compression::Zstd { .. } => CompressionKind::Zstd,
        }
    }

    /// Checks the level, returning a message naming the accepted range if it is out of range.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match *self {
            Compression::None => Ok(()),
            Compression::Gzip { level, .. } if level > 9 => Err(format!(
                "gzip level {level} is out of range; use 0 (store) to 9 (best)"
            )),
            Compression::Gzip { .. } => Ok(()),
            Compression::Zstd { level, .. } => {
                let range = zstd::compression_level_range();
                if range.contains(&level) {
                    Ok(())
                } else {
                    Err(format!(
                        "zstd level {level} is out of range; use {} to {}",
                        range.start(),
                        range.end()
                    ))
                }
            }
        }
    }
}

/// Resolves a thread count where 0 means "all available cores".
pub(crate) fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
    }
}

/// A compression format without parameters: what a blob is compressed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompressionKind {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl fmt::Display for CompressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompressionKind::None => "uncompressed",
            CompressionKind::Gzip => "gzip",
            CompressionKind::Zstd => "zstd",
        })
    }
}

/// Which family of media types to label layers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum MediaTypeFlavor {
    /// `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]` (OCI image spec).
    #[default]
    Oci,
    /// `application/vnd.docker.image.rootfs.diff.tar[.gzip|.zstd]` (Docker schema 2).
    ///
    /// Docker's spec only defines `.tar.gzip`; the `.tar` and `.tar.zstd` forms are the
    /// names containerd and BuildKit use.
    Docker,
}

/// OCI media type of an uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI media type of a gzip layer.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of a zstd layer.
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker media type of an uncompressed layer (containerd convention).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker media type of a gzip layer.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker media type of a zstd layer (containerd convention).
pub const DOCKER_LAYER_TAR_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// The layer media type for a compression kind in the given flavor.
pub fn layer_media_type(kind: CompressionKind, flavor: MediaTypeFlavor) -> &'static str {
    match (flavor, kind) {
        (MediaTypeFlavor::Oci, CompressionKind::None) => OCI_LAYER_TAR,
        (MediaTypeFlavor::Oci, CompressionKind::Gzip) => OCI_LAYER_TAR_GZIP,
        (MediaTypeFlavor::Oci, CompressionKind::Zstd) => OCI_LAYER_TAR_ZSTD,
        (MediaTypeFlavor::Docker, CompressionKind::None) => DOCKER_LAYER_TAR,
        (MediaTypeFlavor::Docker, CompressionKind::Gzip) => DOCKER_LAYER_TAR_GZIP,
        (MediaTypeFlavor::Docker, CompressionKind::Zstd) => DOCKER_LAYER_TAR_ZSTD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_per_flavor() {
        assert_eq!(
            layer_media_type(CompressionKind::Gzip, MediaTypeFlavor::Oci),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            layer_media_type(CompressionKind::Zstd, MediaTypeFlavor::Oci),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(
            layer_media_type(CompressionKind::None, MediaTypeFlavor::Oci),
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert_eq!(
            layer_media_type(CompressionKind::Gzip, MediaTypeFlavor::Docker),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(
            layer_media_type(CompressionKind::None, MediaTypeFlavor::Docker),
            "application/vnd.docker.image.rootfs.diff.tar"
        );
    }

    #[test]
    fn level_validation() {
        assert!(Compression::gzip().validate().is_ok());
        assert!(Compression::zstd().validate().is_ok());
        let err = Compression::Gzip {
            level: 10,
            threads: 1,
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("0 (store) to 9"), "{err}");
        assert!(
            Compression::Zstd {
                level: 23,
                threads: 1
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn zero_threads_means_all_cores() {
        assert!(resolve_threads(0) >= 1);
        assert_eq!(resolve_threads(3), 3);
    }
}
