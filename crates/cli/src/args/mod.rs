//! The command line's grammar, clap types only: what each subcommand accepts and its help.
//! What a subcommand does is in [`crate::commands`] (registry client and builder) and
//! [`crate::serve`].

mod build;
mod client;
mod copy;
mod delete;
mod inspect;
mod login;
mod serve;

use clap::{Parser, Subcommand};

pub use build::{BuildCommand, CompressionArg, ConfigEditArgs, LayerArgs};
pub use client::{ClientCommand, Common, PlatformArgs};
pub use copy::{CpArgs, PullArgs, PushArgs, TagArgs};
pub use delete::{RmArgs, RmRepoArgs};
pub use inspect::{
    BlobArgs, CatalogArgs, ConfigArgs, DigestArgs, ManifestArgs, PingArgs, ReferrersArgs,
    SearchArgs, SizeArgs, TagsArgs,
};
pub use login::{LoginArgs, LogoutArgs};
pub use serve::{GcArgs, IndexArgs, IndexCommand, IndexRebuildArgs, ServeArgs};

/// Berth: an OCI registry server, registry client and image builder in one binary.
#[derive(Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand, by group.
#[derive(Subcommand)]
pub enum Command {
    /// Run the registry server (OCI Distribution Spec v1.1, Docker Registry HTTP API V2).
    Serve(ServeArgs),
    /// Check or rebuild the server's metadata index from storage.
    Index(IndexArgs),
    /// Delete the blobs and (with --delete-untagged) manifests that nothing references, on
    /// the server's storage; safe while `berth serve` runs on it.
    Gc(GcArgs),
    /// Registry client commands.
    #[command(flatten)]
    Client(ClientCommand),
    /// Image builder commands.
    #[command(flatten)]
    Build(Box<BuildCommand>),
}
