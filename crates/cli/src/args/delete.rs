//! Arguments of the commands that delete: rm, rm-repo.

use clap::Args;

use super::Common;

/// Arguments of `berth rm`.
#[derive(Args)]
pub struct RmArgs {
    /// REPO:TAG or REPO@DIGEST.
    pub reference: String,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth rm-repo`.
#[derive(Args)]
pub struct RmRepoArgs {
    /// Repository.
    pub repo: String,
    /// Really delete.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub common: Common,
}
