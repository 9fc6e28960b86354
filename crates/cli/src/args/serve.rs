//! Arguments of `berth serve`.

use std::path::PathBuf;

/// Arguments of `berth serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000; config http.addr; env REGISTRY_HTTP_ADDR].
    #[arg(long)]
    pub addr: Option<String>,
    /// Storage folder, in CNCF Distribution's layout [default: ./berth-data; config
    /// storage.filesystem.rootdirectory]. For S3-compatible object storage, use a config file
    /// with a storage.s3 section (or REGISTRY_STORAGE_S3_* variables).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// A CNCF Distribution config.yml (the common subset); REGISTRY_* variables override it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// TLS certificate (PEM) [config http.tls.certificate; env REGISTRY_HTTP_TLS_CERTIFICATE].
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) [config http.tls.key; env REGISTRY_HTTP_TLS_KEY].
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Run the built-in token issuer with this access list (YAML: users from an htpasswd file,
    /// groups, and which user or group may pull, push or delete which repositories).
    #[arg(long)]
    pub auth_config: Option<PathBuf>,
    /// Allow DELETE of manifests, tags and blobs (off by default; config storage.delete.enabled).
    #[arg(long)]
    pub delete_enabled: bool,
}

/// Arguments of `berth index`.
#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// What to do with the index.
    #[command(subcommand)]
    pub command: IndexCommand,
}

/// `berth index` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum IndexCommand {
    /// Bring the metadata index level with storage: index what storage holds and the index
    /// lacks (a tree CNCF Distribution filled, writes a crash left out), forget what storage
    /// no longer holds. A damaged embedded file is set aside and built again. Safe while
    /// `berth serve` runs on the same storage and index.
    Rebuild(IndexRebuildArgs),
}

/// Arguments of `berth index rebuild`.
#[derive(clap::Args, Debug)]
pub struct IndexRebuildArgs {
    /// The server's config.yml (storage and database sections; REGISTRY_* variables apply).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Storage folder, as for `berth serve --root`.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Only report how index and storage differ; change nothing (exit code 1 if they do).
    #[arg(long)]
    pub check: bool,
}

/// Arguments of `berth gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// The server's config.yml (storage, database and gc sections; REGISTRY_* variables apply).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Storage folder, as for `berth serve --root` (a folder CNCF Distribution wrote works too).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Print what would be deleted and how many bytes it holds; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep whatever was written or touched this recently (default: gc.grace, else 1h).
    /// `0s` only when nothing is pushing.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace: Option<std::time::Duration>,
    /// Also delete manifests that no tag reaches (through indexes, and referrers through
    /// their subjects), as Distribution's `--delete-untagged` does but keeping the
    /// signatures and SBOMs of what stays.
    #[arg(long)]
    pub delete_untagged: bool,
    /// Apply the retention rules of the policy file first (config.yml's `policies`, or
    /// --policy-file): delete the tags they judge and the images those leave untagged.
    #[arg(long)]
    pub policies: bool,
    /// The policy file (immutable tags, quotas, retention), instead of config.yml's.
    #[arg(long, value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
}
