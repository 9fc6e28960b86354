//! The image builder's subcommands: `push-layer`, `append` and `mutate` (what they do is in
//! [`crate::commands::build`]).

use std::path::PathBuf;

use berth_builder::image::ImageFormat;
use clap::{Args, Subcommand, ValueEnum};

use crate::args::Common;

/// Layer compression choices.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    /// gzip (every client reads it); parallel blocks across cores.
    Gzip,
    /// zstd (faster and smaller; needs containerd 1.5+, Docker 23+, podman 3+).
    Zstd,
    /// No compression (the blob is the tar).
    None,
}

/// Manifest format choices.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// OCI image manifest and index.
    Oci,
    /// Docker schema 2 manifest and manifest list.
    Docker,
}

impl From<FormatArg> for ImageFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Oci => ImageFormat::Oci,
            FormatArg::Docker => ImageFormat::Docker,
        }
    }
}

/// How the new layer is written.
#[derive(Args, Clone, Debug)]
pub struct LayerArgs {
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[arg(long, allow_negative_numbers = true)]
    pub level: Option<i32>,
    /// Compression threads (0: all cores). Pin it when digests must match across machines
    /// with different core counts (gzip only).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Record this owner for every entry instead of the owner on disk.
    #[arg(long, value_name = "UID:GID")]
    pub owner: Option<String>,
    /// Copy the owner's permission bits to the group (for images run under an arbitrary uid in group 0).
    #[arg(long)]
    pub u2g: bool,
    /// Delete this path of the lower layers (a whiteout); `/dir/*` hides everything lower layers had in /dir. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub remove: Vec<String>,
    /// Upload attempts; each retry streams the layer again from its source (never from a temporary file).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub attempts: u32,
}

/// Edits of the image config.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigEditArgs {
    /// YAML or JSON file merged into the image config (`null` deletes a key; `_*: null` first
    /// clears a list or map; `$VAR` expands inside double quotes). Repeatable, applied in order.
    #[arg(long = "config", value_name = "FILE")]
    pub config_files: Vec<PathBuf>,
    /// Label KEY=VALUE. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Environment variable KEY=VALUE (replaces one of the same name). Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Entrypoint: a JSON list (`["/app","--flag"]`) or words split on spaces; "" clears it.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Cmd: a JSON list or words split on spaces; "" clears it.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// Working directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name, uid or uid:gid).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Exposed port, PORT[/tcp|udp|sctp]. Repeatable.
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Do not add the standard org.opencontainers.image.* labels (created, revision, source,
    /// version, base.name, base.digest) taken from GitLab CI, GitHub Actions or git.
    #[arg(long)]
    pub no_labels: bool,
}

/// Image builder subcommands.
#[derive(Subcommand)]
pub enum BuildCommand {
    /// Push a folder (or an existing archive) as a new single-layer image.
    ///
    /// berth push-layer ROOTFS REF [PATH...]  |  berth push-layer --archive FILE REF
    ///
    /// PATH filters select what goes in (globs relative to the rootfs: `usr/bin/*`, `etc/**/*.conf`).
    /// The tar is hashed, compressed, hashed again and uploaded in chunks in one streaming pass.
    #[command(after_help = crate::exit::help())]
    PushLayer {
        /// ROOTFS REF [PATH...], or only REF with --archive.
        #[arg(required = true, value_name = "ROOTFS REF [PATH...]")]
        args: Vec<String>,
        /// Upload this tar, tar.gz or tar.zst as it is (validated, diff_id computed on the way).
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// Platform of the image.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// Manifest format.
        #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
        format: FormatArg,
        #[command(flatten)]
        layer: LayerArgs,
        #[command(flatten)]
        config: ConfigEditArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Append a layer to a remote image and push the result, without downloading the base's layers.
    ///
    /// The layer comes from --rootfs DIR, --archive FILE, or a tar on standard input. A multi-arch
    /// base gets the layer on every platform (or the --platform ones) and a new index.
    #[command(after_help = crate::exit::help())]
    Append {
        /// The base image.
        base: String,
        /// Where to push the result.
        new: String,
        /// PATH filters inside --rootfs.
        paths: Vec<String>,
        /// Folder to add as the new layer.
        #[arg(long, value_name = "DIR", conflicts_with = "archive")]
        rootfs: Option<PathBuf>,
        /// Tar, tar.gz or tar.zst to add as it is.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// Only append to these platforms of a multi-arch base (the others are kept unchanged). Repeatable.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Vec<String>,
        /// Manifest format of the result (default: the base's).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        layer: LayerArgs,
        #[command(flatten)]
        config: ConfigEditArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Edit a remote image's config (env, entrypoint, labels, a merge file…) and push it under a
    /// new reference; layers are mounted, never downloaded.
    #[command(after_help = crate::exit::help())]
    Mutate {
        /// The image to edit.
        base: String,
        /// Where to push the result (may be the same tag).
        new: String,
        /// Only edit these platforms of a multi-arch image. Repeatable.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Vec<String>,
        /// Manifest format of the result (default: the base's).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        config: ConfigEditArgs,
        #[command(flatten)]
        common: Common,
    },
}
