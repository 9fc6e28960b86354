//! Arguments of the commands that copy images: tag, cp, pull, push.

use std::path::PathBuf;

use clap::Args;

use super::{Common, PlatformArgs};

/// Arguments of `berth tag`.
#[derive(Args)]
pub struct TagArgs {
    /// Source image reference.
    pub src: String,
    /// A new tag in the same repository, or a full destination reference.
    pub dest: String,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth cp`.
#[derive(Args)]
pub struct CpArgs {
    /// Source image reference.
    pub src: String,
    /// Destination image reference (without a tag, the source's tag is used).
    pub dest: String,
    #[command(flatten)]
    pub platforms: PlatformArgs,
    /// Credentials (USER:PASS) for the source registry only.
    #[arg(long, value_name = "USER:PASS")]
    pub src_creds: Option<String>,
    /// Credentials (USER:PASS) for the destination registry only.
    #[arg(long, value_name = "USER:PASS")]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth pull`.
#[derive(Args)]
pub struct PullArgs {
    /// Image reference.
    pub reference: String,
    /// Layout directory (created if needed).
    pub dir: PathBuf,
    /// Name in the layout's index.json (default: the tag, or "latest").
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub platforms: PlatformArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth push`.
#[derive(Args)]
pub struct PushArgs {
    /// Layout directory.
    pub dir: PathBuf,
    /// Destination image reference.
    pub reference: String,
    /// Which image of the layout (its org.opencontainers.image.ref.name); default: the
    /// reference's tag if the layout has it, else the layout's only image.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub common: Common,
}
