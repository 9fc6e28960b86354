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
