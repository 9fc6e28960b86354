//! The registry client's subcommands, and the flags they share.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{
    BlobArgs, CatalogArgs, ConfigArgs, CpArgs, DigestArgs, LoginArgs, LogoutArgs, ManifestArgs,
    PingArgs, PullArgs, PushArgs, ReferrersArgs, RmArgs, RmRepoArgs, SearchArgs, SizeArgs, TagArgs,
    TagsArgs,
};
use crate::exit;

/// Options every client command takes (the build commands too).
#[derive(Args, Clone, Debug, Default)]
pub struct Common {
    /// Print machine-readable JSON.
    #[arg(long, global = false)]
    pub json: bool,
    /// Accept plain HTTP and unverified TLS certificates for the registries named in this command.
    #[arg(long)]
    pub insecure: bool,
    /// Always use plain HTTP.
    #[arg(long)]
    pub plain_http: bool,
    /// Credentials as USER:PASS (overrides Docker's config.json and BERTH_USERNAME/BERTH_PASSWORD).
    #[arg(long, value_name = "USER:PASS", conflicts_with = "username")]
    pub creds: Option<String>,
    /// Username; the password is read from standard input.
    #[arg(long)]
    pub username: Option<String>,
    /// Extra CA certificate file (PEM) to trust; may be repeated.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Seconds allowed to connect.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
    /// Seconds allowed between two reads.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub read_timeout: u64,
    /// Blob transfers at once per registry host.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_transfers: usize,
    /// Upload blobs in chunks (PATCH requests) instead of one streaming request.
    #[arg(long)]
    pub chunked: bool,
    /// Chunk size in bytes for --chunked (suffixes K, M accepted).
    #[arg(long, default_value = "4M", value_name = "BYTES")]
    pub chunk_size: String,
}

/// Platform choice for commands that copy.
#[derive(Args, Clone, Debug, Default)]
pub struct PlatformArgs {
    /// Copy only this platform (os/arch[/variant]); repeat for a subset (a new index is written).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Vec<String>,
    /// Copy every platform of an index, keeping its digest (the default).
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
}

/// Client subcommands: inspect, copy, delete, credentials.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Check that a registry answers the /v2/ API.
    #[command(after_help = exit::help())]
    Ping(PingArgs),
    /// List the repositories of a registry.
    #[command(after_help = exit::help())]
    Catalog(CatalogArgs),
    /// List repositories whose name matches PATTERN (a glob with * and ?, or a substring).
    #[command(after_help = exit::help())]
    Search(SearchArgs),
    /// List the tags of a repository.
    #[command(after_help = exit::help())]
    Tags(TagsArgs),
    /// Print a manifest or index, byte for byte.
    #[command(after_help = exit::help())]
    Manifest(ManifestArgs),
    /// Print an image's config blob, byte for byte.
    #[command(after_help = exit::help())]
    Config(ConfigArgs),
    /// Print the digest a reference resolves to (HEAD, no download).
    #[command(after_help = exit::help())]
    Digest(DigestArgs),
    /// Download a blob (verified) to a file or standard output.
    #[command(after_help = exit::help())]
    Blob(BlobArgs),
    /// Print an image's size: its config plus its layers (per platform for an index).
    #[command(after_help = exit::help())]
    Size(SizeArgs),
    /// Tag a remote image: `tag SRC NEWTAG` or `tag SRC DEST` (same registry; other repositories
    /// get the layers by cross-repository mount). The manifest's bytes and media type are kept.
    #[command(after_help = exit::help())]
    Tag(TagArgs),
    /// Copy an image (or whole index) between repositories or registries, keeping digests.
    #[command(after_help = exit::help())]
    Cp(CpArgs),
    /// Delete a tag (only that tag, where the registry allows it) or a manifest by digest.
    #[command(after_help = exit::help())]
    Rm(RmArgs),
    /// Delete every manifest of a repository.
    #[command(name = "rm-repo", after_help = exit::help())]
    RmRepo(RmRepoArgs),
    /// Download an image into an OCI image layout directory.
    #[command(after_help = exit::help())]
    Pull(PullArgs),
    /// Upload an image from an OCI image layout directory.
    #[command(after_help = exit::help())]
    Push(PushArgs),
    /// List the artifacts that refer to an image (referrers API, or the tag schema fallback).
    #[command(after_help = exit::help())]
    Referrers(ReferrersArgs),
    /// Check credentials for a registry and save them in Docker's config.json.
    #[command(after_help = exit::help())]
    Login(LoginArgs),
    /// Remove saved credentials for a registry from Docker's config.json.
    #[command(after_help = exit::help())]
    Logout(LogoutArgs),
}
