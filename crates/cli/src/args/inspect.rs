//! Arguments of the commands that read a registry: ping, catalog, search, tags, manifest,
//! config, digest, blob, size, referrers.

use std::path::PathBuf;

use clap::Args;

use super::Common;

/// Arguments of `berth ping`.
#[derive(Args)]
pub struct PingArgs {
    /// Registry host, such as 127.0.0.1:5000.
    pub host: String,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth catalog`.
#[derive(Args)]
pub struct CatalogArgs {
    /// Registry host, such as 127.0.0.1:5000.
    pub host: String,
    /// Stop after N repositories.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Registry host.
    pub host: String,
    /// Pattern.
    pub pattern: String,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth tags`.
#[derive(Args)]
pub struct TagsArgs {
    /// Repository, such as 127.0.0.1:5000/team/app.
    pub repo: String,
    /// Also resolve each tag's digest (HEAD requests).
    #[arg(long)]
    pub digests: bool,
    /// Stop after N tags.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this tag.
    #[arg(long)]
    pub last: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth manifest`.
#[derive(Args)]
pub struct ManifestArgs {
    /// Image reference (tag or digest).
    pub reference: String,
    /// From an index, print this platform's manifest.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth config`.
#[derive(Args)]
pub struct ConfigArgs {
    /// Image reference.
    pub reference: String,
    /// Platform to pick from an index (default: linux/amd64).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth digest`.
#[derive(Args)]
pub struct DigestArgs {
    /// Image reference.
    pub reference: String,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth blob`.
#[derive(Args)]
pub struct BlobArgs {
    /// REPO@DIGEST.
    pub reference: String,
    /// Write to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth size`.
#[derive(Args)]
pub struct SizeArgs {
    /// Image reference.
    pub reference: String,
    /// Only this platform of an index.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth referrers`.
#[derive(Args)]
pub struct ReferrersArgs {
    /// Image reference.
    pub reference: String,
    /// Only this artifact type.
    #[arg(long)]
    pub artifact_type: Option<String>,
    #[command(flatten)]
    pub common: Common,
}
