//! Media types of manifests, configs and layers, OCI and Docker.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI empty descriptor media type (artifacts with no config).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest (read only).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 signed manifest (read only).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Every manifest media type a registry serves, in the order Berth prefers them, for `Accept`.
pub const ALL_MANIFESTS: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA1,
];

/// Whether a layer media type marks a foreign (non-distributable) layer, whose blob may live elsewhere.
pub fn is_foreign_layer(media_type: &str) -> bool {
    media_type == DOCKER_FOREIGN_LAYER || media_type.contains(".nondistributable.")
}

/// Whether the media type is a Docker schema 1 manifest.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}
