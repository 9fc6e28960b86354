//! `berth serve` configuration: CNCF Distribution's `config.yml` (the common subset), its
//! `REGISTRY_*` environment overrides, and command-line flags, in rising precedence.
//!
//! The file is read into a generic tree first so that an environment variable such as
//! `REGISTRY_STORAGE_DELETE_ENABLED=true` can set `storage.delete.enabled` exactly as
//! Distribution does, then the tree is turned into typed settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
/// The default storage folder.
pub const DEFAULT_ROOT: &str = "berth-data";

/// Typed server settings after every source has been applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Storage folder (the data with folder storage; local state such as the built-in
    /// issuer's key in every case).
    pub root: PathBuf,
    /// Object storage, when `storage.s3` is configured; `None` for the folder.
    pub s3: Option<berth_s3::S3Config>,
    /// Redirect blob GETs to presigned URLs (`storage.redirect.disable` turns it off; only
    /// object storage can).
    pub redirect: bool,
    /// Abandoned uploads are removed after `age`, checked every `interval`
    /// (`storage.maintenance.uploadpurging`); `None` when disabled.
    pub upload_purging: Option<UploadPurging>,
    /// Whether deletes are allowed.
    pub delete_enabled: bool,
    /// Largest manifest accepted.
    pub max_manifest_bytes: u64,
    /// Log level filter.
    pub log_level: String,
    /// Log as JSON lines.
    pub log_json: bool,
    /// Trust X-Forwarded-* headers.
    pub trust_forwarded: bool,
    /// How long a client may leave a connection, request body or response without progress
    /// (`berth.idletimeout`).
    pub idle_timeout: std::time::Duration,
    /// TLS certificate and key, when serving HTTPS.
    pub tls: Option<berth_server::TlsFiles>,
    /// Access control.
    pub auth: AuthSettings,
    /// The metadata index (`database`).
    pub database: DatabaseSettings,
    /// Garbage collection (`gc`).
    pub gc: GcSettings,
    /// Lifecycle policies (immutable tags, quotas, retention) read from the file that
    /// `policies` names; empty when none is configured.
    pub policies: std::sync::Arc<berth_registry::Policies>,
    /// That file.
    pub policies_file: Option<PathBuf>,
    /// Keys accepted without effect, one sentence each (logged at start).
    pub config_warnings: Vec<String>,
    /// Refuse pushes and deletes (`storage.maintenance.readonly.enabled`).
    pub read_only: bool,
    /// Headers added to every response (`http.headers`).
    pub headers: Vec<(String, String)>,
    /// The debug listener serving Prometheus metrics (`http.debug.addr` with
    /// `http.debug.prometheus.enabled`): its address and the metrics path.
    pub metrics: Option<(SocketAddr, String)>,
}

/// Garbage collection (`gc` in config.yml).
#[derive(Debug, Clone, PartialEq)]
pub struct GcSettings {
    /// Whether `berth serve` collects on a schedule (`gc.enabled`, on by default).
    pub enabled: bool,
    /// How often (`gc.interval`, 24h by default); the first run is one interval after start.
    pub interval: std::time::Duration,
    /// What was written or touched this recently is kept (`gc.grace`, 1h by default).
    pub grace: std::time::Duration,
    /// Delete manifests no tag reaches (`gc.deleteuntagged`, off by default).
    pub delete_untagged: bool,
    /// Deletes per second at most (`gc.rate`; 0, the default, for no limit).
    pub rate: Option<u32>,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            enabled: true,
            interval: std::time::Duration::from_secs(24 * 3600),
            grace: berth_registry::DEFAULT_GRACE,
            delete_untagged: false,
            rate: None,
        }
    }
}

/// Where the metadata index lives (`database` in config.yml).
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseSettings {
    /// No index: listings walk storage (`database.enabled: false`, or S3 without a DSN).
    Off {
        /// Whether the user asked for it (else it is S3's default, which is warned about).
        asked: bool,
    },
    /// An embedded SQLite file (`database.path`; by default `<root>/berth/index.db` on a folder).
    Embedded(PathBuf),
    /// PostgreSQL (`database.dsn`, `REGISTRY_DATABASE_DSN`).
    Postgres(String),
}

/// Where the embedded index goes on folder storage when `database.path` is not set.
pub fn default_index_path(root: &Path) -> PathBuf {
    root.join("berth").join("index.db")
}

/// When abandoned uploads are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPurging {
    /// Uploads started longer ago than this are removed (Distribution's default: 168h).
    pub age: std::time::Duration,
    /// How often to look (Distribution's default: 24h).
    pub interval: std::time::Duration,
}

/// Which access control the server runs.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthSettings {
    /// Everyone may do everything.
    None,
    /// HTTP Basic against a bcrypt htpasswd file (`auth.htpasswd`).
    Htpasswd {
        /// Realm shown to clients.
        realm: String,
        /// The htpasswd file.
        path: PathBuf,
    },
    /// Tokens from an external issuer (`auth.token`).
    Token {
        /// Token endpoint URL for challenges.
        realm: String,
        /// Service name (`aud`).
        service: String,
        /// Issuer name (`iss`).
        issuer: String,
        /// PEM certificates whose keys sign tokens.
        rootcertbundle: Option<PathBuf>,
        /// A JWKS file of signing keys.
        jwks: Option<PathBuf>,
    },
    /// Berth's built-in token issuer with an access list (`--auth-config`, `auth.builtin.config`).
    Builtin {
        /// The access.yml file.
        config: PathBuf,
    },
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FileConfig {
    auth: AuthSection,
    log: LogSection,
    storage: StorageSection,
    http: HttpSection,
    berth: BerthSection,
    database: DatabaseSection,
    gc: GcSection,
    policies: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GcSection {
    enabled: Option<Flexible>,
    interval: Option<String>,
    grace: Option<String>,
    deleteuntagged: Option<Flexible>,
    rate: Option<Flexible>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DatabaseSection {
    enabled: Option<Flexible>,
    dsn: Option<String>,
    path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthSection {
    htpasswd: Option<HtpasswdSection>,
    token: Option<TokenSection>,
    builtin: Option<BuiltinSection>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HtpasswdSection {
    realm: Option<String>,
    path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenSection {
    realm: Option<String>,
    service: Option<String>,
    issuer: Option<String>,
    rootcertbundle: Option<PathBuf>,
    jwks: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BuiltinSection {
    config: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogSection {
    level: Option<String>,
    formatter: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StorageSection {
    filesystem: Option<FilesystemSection>,
    s3: Option<S3Section>,
    delete: Option<Enabled>,
    redirect: Option<RedirectSection>,
    maintenance: Option<MaintenanceSection>,
}

/// Distribution's `storage.s3` keys (the ones that mean something to an S3 client).
#[derive(Deserialize, Default)]
#[serde(default)]
struct S3Section {
    bucket: Option<String>,
    region: Option<String>,
    regionendpoint: Option<String>,
    forcepathstyle: Option<Flexible>,
    secure: Option<Flexible>,
    skipverify: Option<Flexible>,
    v4auth: Option<Flexible>,
    rootdirectory: Option<String>,
    accesskey: Option<String>,
    secretkey: Option<String>,
    sessiontoken: Option<String>,
    chunksize: Option<Flexible>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RedirectSection {
    disable: Option<Flexible>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MaintenanceSection {
    uploadpurging: Option<UploadPurgingSection>,
    readonly: Option<Enabled>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UploadPurgingSection {
    enabled: Option<Flexible>,
    age: Option<String>,
    interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FilesystemSection {
    rootdirectory: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Enabled {
    enabled: Option<Flexible>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HttpSection {
    addr: Option<String>,
    tls: Option<TlsSection>,
    headers: Option<Map<String, Value>>,
    debug: Option<DebugSection>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DebugSection {
    addr: Option<String>,
    prometheus: Option<PrometheusSection>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PrometheusSection {
    enabled: Option<Flexible>,
    path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TlsSection {
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BerthSection {
    maxmanifestbytes: Option<Flexible>,
    trustforwardedheaders: Option<Flexible>,
    idletimeout: Option<String>,
}

/// A scalar that may come as a YAML bool/number or as an environment string.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum Flexible {
    Bool(bool),
    Num(u64),
    Str(String),
}

impl Flexible {
    fn as_bool(&self, what: &str) -> anyhow::Result<bool> {
        match self {
            Flexible::Bool(b) => Ok(*b),
            Flexible::Num(n) => Ok(*n != 0),
            Flexible::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => bail!("{what}: expected true or false, found {s:?}"),
            },
        }
    }

    fn as_u64(&self, what: &str) -> anyhow::Result<u64> {
        match self {
            Flexible::Num(n) => Ok(*n),
            Flexible::Str(s) => s
                .trim()
                .parse()
                .with_context(|| format!("{what}: expected a number, found {s:?}")),
            Flexible::Bool(_) => bail!("{what}: expected a number"),
        }
    }
}

/// Flag values that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--addr`
    pub addr: Option<String>,
    /// `--root`
    pub root: Option<PathBuf>,
    /// `--delete-enabled`
    pub delete_enabled: Option<bool>,
    /// `--tls-cert` and `--tls-key`
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--auth-config`
    pub auth_config: Option<PathBuf>,
}

/// Parses a listen address; Distribution's `:5000` means every interface.
pub fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse().with_context(|| {
        format!("invalid listen address {s:?}: use host:port, such as 127.0.0.1:5000")
    })
}

/// Sections that Distribution also accepts as a bare name: `REGISTRY_AUTH=htpasswd` is
/// `auth: {htpasswd: {}}`, `REGISTRY_STORAGE=s3` is `storage: {s3: {}}`.
const NAMED_SECTIONS: &[&str] = &["auth", "storage"];

/// Applies `REGISTRY_A_B_C=value` as `a.b.c = value`, creating maps as needed.
///
/// As in Distribution, the variables are applied sorted by name, whatever their order in the
/// environment, so that a whole section (`REGISTRY_AUTH`) is set before the keys inside it
/// (`REGISTRY_AUTH_HTPASSWD_PATH`) and never replaces them.
fn apply_env(tree: &mut Value, vars: impl Iterator<Item = (String, String)>) {
    let mut vars: Vec<(String, String)> =
        vars.filter(|(k, _)| k.starts_with("REGISTRY_")).collect();
    vars.sort();
    for (k, v) in vars {
        let Some(path) = k.strip_prefix("REGISTRY_") else {
            continue;
        };
        let keys: Vec<String> = path.split('_').map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            continue;
        }
        if let [section] = &keys[..]
            && NAMED_SECTIONS.contains(&section.as_str())
        {
            let name = v.trim().to_ascii_lowercase();
            let mut m = Map::new();
            if !name.is_empty() {
                m.insert(name, Value::Object(Map::new()));
            }
            // A file whose top level is no map is reported by the typed parse after this.
            if let Some(top) = tree.as_object_mut() {
                top.insert(section.clone(), Value::Object(m));
            }
            continue;
        }
        let mut node = &mut *tree;
        for key in &keys[..keys.len() - 1] {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            node = node
                .as_object_mut()
                .expect("just made an object")
                .entry(key.clone())
                .or_insert(Value::Null);
        }
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node.as_object_mut()
            .expect("object")
            .insert(keys[keys.len() - 1].clone(), Value::String(v));
    }
}

/// Lower-cases every map key so that `rootDirectory` and `rootdirectory` both work.
fn lowercase_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), lowercase_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(lowercase_keys).collect()),
        other => other,
    }
}

/// Reads and merges every source.
pub fn load(
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
    flags: &Overrides,
) -> anyhow::Result<Settings> {
    let mut tree = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            let v: Value = serde_saphyr::from_str(&text)
                .with_context(|| format!("config file {} is not valid YAML", p.display()))?;
            lowercase_keys(if v.is_null() {
                Value::Object(Map::new())
            } else {
                v
            })
        }
        None => Value::Object(Map::new()),
    };
    let env: Vec<(String, String)> = env.collect();
    let mut keys = crate::config_keys::KeyReport::default();
    crate::config_keys::check(&tree, true, &mut keys).with_context(|| match file {
        Some(p) => format!("config file {}", p.display()),
        None => "configuration".to_owned(),
    })?;
    let mut from_env = Value::Object(Map::new());
    apply_env(&mut from_env, env.iter().cloned());
    crate::config_keys::check(&from_env, false, &mut keys)
        .context("a REGISTRY_* environment variable")?;
    apply_env(&mut tree, env.into_iter());
    let cfg: FileConfig =
        serde_json::from_value(tree).context("config has a value of the wrong type")?;

    let addr = match (&flags.addr, &cfg.http.addr) {
        (Some(a), _) | (None, Some(a)) => parse_addr(a)?,
        (None, None) => parse_addr(DEFAULT_ADDR)?,
    };
    let s3 = match cfg.storage.s3 {
        Some(s) => {
            if flags.root.is_some() || cfg.storage.filesystem.is_some() {
                bail!(
                    "configure one storage: storage.s3 or a folder (storage.filesystem, --root), not both"
                );
            }
            Some(s3_settings(s)?)
        }
        None => None,
    };
    let root = flags
        .root
        .clone()
        .or(cfg.storage.filesystem.and_then(|f| f.rootdirectory))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let redirect = match cfg.storage.redirect.and_then(|r| r.disable) {
        Some(f) => !f.as_bool("storage.redirect.disable")?,
        None => true,
    };
    let (purging, readonly) = match cfg.storage.maintenance {
        Some(m) => (m.uploadpurging, m.readonly),
        None => (None, None),
    };
    let upload_purging = upload_purging(purging)?;
    let read_only = match readonly.and_then(|r| r.enabled) {
        Some(f) => f.as_bool("storage.maintenance.readonly.enabled")?,
        None => false,
    };
    let metrics = match cfg.http.debug {
        None => None,
        Some(d) => {
            let prom = d.prometheus.unwrap_or_default();
            let enabled = match prom.enabled {
                Some(f) => f.as_bool("http.debug.prometheus.enabled")?,
                None => false,
            };
            match (d.addr, enabled) {
                (Some(a), true) => {
                    let path = prom.path.unwrap_or_else(|| "/metrics".to_owned());
                    if !path.starts_with('/') {
                        bail!(
                            "http.debug.prometheus.path: expected a path such as /metrics, found {path:?}"
                        );
                    }
                    Some((parse_addr(&a)?, path))
                }
                (None, true) => bail!(
                    "http.debug.prometheus.enabled needs http.debug.addr, the listener to serve metrics on"
                ),
                (Some(_), false) => bail!(
                    "http.debug.addr: Berth's debug listener serves only Prometheus metrics: set http.debug.prometheus.enabled: true, or remove http.debug"
                ),
                (None, false) => None,
            }
        }
    };
    let mut headers = Vec::new();
    for (name, values) in cfg.http.headers.unwrap_or_default() {
        let values = match values {
            Value::Array(a) => a,
            other => vec![other],
        };
        for v in values {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            headers.push((name.clone(), v));
        }
    }
    let delete_enabled = match flags.delete_enabled {
        Some(b) => b,
        None => match cfg.storage.delete.and_then(|d| d.enabled) {
            Some(f) => f.as_bool("storage.delete.enabled")?,
            None => false,
        },
    };
    let max_manifest_bytes = match cfg.berth.maxmanifestbytes {
        Some(f) => f.as_u64("berth.maxmanifestbytes")?,
        None => berth_oci::manifest::DEFAULT_MAX_MANIFEST_BYTES as u64,
    };
    let trust_forwarded = match cfg.berth.trustforwardedheaders {
        Some(f) => f.as_bool("berth.trustforwardedheaders")?,
        None => true,
    };
    let idle_timeout = match cfg.berth.idletimeout {
        Some(t) => match humantime::parse_duration(t.trim()) {
            Ok(d) if !d.is_zero() => d,
            _ => bail!("berth.idletimeout: expected a duration such as 60s or 2m, found {t:?}"),
        },
        None => berth_server::DEFAULT_IDLE_TIMEOUT,
    };
    let tls = match (flags.tls.clone(), cfg.http.tls) {
        (Some((certificate, key)), _) => Some(berth_server::TlsFiles { certificate, key }),
        (
            None,
            Some(TlsSection {
                certificate: Some(certificate),
                key: Some(key),
            }),
        ) => Some(berth_server::TlsFiles { certificate, key }),
        (
            None,
            Some(
                TlsSection {
                    certificate: Some(_),
                    key: None,
                }
                | TlsSection {
                    certificate: None,
                    key: Some(_),
                },
            ),
        ) => {
            bail!("http.tls needs both certificate and key")
        }
        _ => None,
    };
    let database = database_settings(cfg.database, s3.is_some(), &root)?;
    let gc = gc_settings(cfg.gc)?;
    let policies = match &cfg.policies {
        Some(p) => load_policies(p)?,
        None => berth_registry::Policies::default(),
    };
    if !policies.quotas.is_empty() && matches!(database, DatabaseSettings::Off { .. }) {
        bail!(
            "the policies in {} set quotas, which count sizes in the metadata index: enable database (with S3, database.dsn for PostgreSQL)",
            cfg.policies.as_deref().unwrap_or(Path::new("?")).display()
        );
    }
    Ok(Settings {
        policies: std::sync::Arc::new(policies),
        policies_file: cfg.policies,
        config_warnings: keys.warnings,
        metrics,
        read_only,
        headers,
        database,
        gc,
        addr,
        root,
        s3,
        redirect,
        upload_purging,
        delete_enabled,
        max_manifest_bytes,
        log_level: cfg.log.level.unwrap_or_else(|| "info".into()),
        log_json: cfg.log.formatter.as_deref() == Some("json"),
        trust_forwarded,
        idle_timeout,
        tls,
        auth: auth_settings(cfg.auth, flags.auth_config.clone())?,
    })
}

fn s3_settings(s: S3Section) -> anyhow::Result<berth_s3::S3Config> {
    let flag = |f: Option<Flexible>, what: &str, default: bool| match f {
        Some(f) => f.as_bool(what),
        None => Ok(default),
    };
    if !flag(s.v4auth, "storage.s3.v4auth", true)? {
        bail!("storage.s3.v4auth: false is not supported: S3 signature version 2 is obsolete");
    }
    let chunk_size = match s.chunksize {
        Some(f) => usize::try_from(f.as_u64("storage.s3.chunksize")?)
            .context("storage.s3.chunksize is too large")?,
        None => berth_s3::DEFAULT_CHUNK_SIZE,
    };
    let secure = flag(s.secure, "storage.s3.secure", true)?;
    let endpoint = s.regionendpoint.filter(|e| !e.is_empty()).map(|e| {
        // Distribution accepts an endpoint without a scheme and picks one from `secure`.
        if e.contains("://") {
            e
        } else if secure {
            format!("https://{e}")
        } else {
            format!("http://{e}")
        }
    });
    Ok(berth_s3::S3Config {
        bucket: s
            .bucket
            .filter(|b| !b.is_empty())
            .context("storage.s3.bucket is required")?,
        region: s.region.filter(|r| !r.is_empty()),
        allow_http: !secure
            || endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        endpoint,
        force_path_style: flag(s.forcepathstyle, "storage.s3.forcepathstyle", false)?,
        skip_verify: flag(s.skipverify, "storage.s3.skipverify", false)?,
        root_directory: s.rootdirectory.unwrap_or_default(),
        access_key: s.accesskey.filter(|k| !k.is_empty()),
        secret_key: s.secretkey.filter(|k| !k.is_empty()),
        session_token: s.sessiontoken.filter(|k| !k.is_empty()),
        chunk_size,
        aws_settings: Vec::new(),
    })
}

/// Adds what the AWS environment says to `storage.s3`, as the AWS tools read it: every `AWS_*`
/// variable goes to `object_store` (the file's keys still win), and when neither the file nor
/// the environment names an access key, the profile `AWS_PROFILE` (or `default`) of
/// `AWS_SHARED_CREDENTIALS_FILE` (or `~/.aws/credentials`). The S3 library reads no environment
/// itself, so this is the one place that does.
pub fn with_aws_environment(
    mut cfg: berth_s3::S3Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> berth_s3::S3Config {
    cfg.aws_settings = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    let setting = |name: &str| {
        cfg.aws_settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if cfg.access_key.is_none()
        && cfg.secret_key.is_none()
        && setting("AWS_ACCESS_KEY_ID").is_none()
    {
        let file = setting("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials"))
            });
        let profile = setting("AWS_PROFILE").unwrap_or_else(|| "default".into());
        if let Some(c) = file.and_then(|f| berth_s3::credentials_from_aws_file(&f, &profile)) {
            cfg.access_key = Some(c.access_key);
            cfg.secret_key = Some(c.secret_key);
            cfg.session_token = c.session_token;
        }
    }
    cfg
}

fn database_settings(
    d: DatabaseSection,
    on_s3: bool,
    root: &Path,
) -> anyhow::Result<DatabaseSettings> {
    let enabled = match &d.enabled {
        Some(f) => f.as_bool("database.enabled")?,
        None => true,
    };
    let dsn = d.dsn.filter(|s| !s.trim().is_empty());
    let path = d.path.filter(|p| !p.as_os_str().is_empty());
    if !enabled {
        if dsn.is_some() || path.is_some() {
            bail!("database.enabled is false but database.dsn or database.path is set: remove one");
        }
        return Ok(DatabaseSettings::Off { asked: true });
    }
    match (dsn, path) {
        (Some(_), Some(_)) => {
            bail!(
                "configure one index: database.dsn (PostgreSQL) or database.path (embedded file), not both"
            )
        }
        (Some(dsn), None) => Ok(DatabaseSettings::Postgres(dsn)),
        (None, Some(p)) => Ok(DatabaseSettings::Embedded(p)),
        (None, None) if on_s3 => Ok(DatabaseSettings::Off { asked: false }),
        (None, None) => Ok(DatabaseSettings::Embedded(default_index_path(root))),
    }
}

/// Reads a policy file (see [`berth_registry::policy`]); an error names the file and the
/// line, and a key Berth does not know is an error, never ignored.
pub fn load_policies(path: &Path) -> anyhow::Result<berth_registry::Policies> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(berth_registry::Policies::default());
    }
    serde_saphyr::from_str(&text)
        .map_err(|e| {
            let e = e.to_string();
            anyhow::anyhow!("{}", e.strip_prefix("error: ").unwrap_or(&e).to_owned())
        })
        .with_context(|| format!("the policy file {} has an error", path.display()))
}

fn gc_settings(g: GcSection) -> anyhow::Result<GcSettings> {
    let d = GcSettings::default();
    let dur = |v: Option<String>, what: &str, default, zero_ok: bool| match v {
        None => Ok(default),
        Some(t) => match humantime::parse_duration(t.trim()) {
            Ok(x) if zero_ok || !x.is_zero() => Ok(x),
            _ => Err(anyhow::anyhow!(
                "gc.{what}: expected a duration such as 24h or 30m, found {t:?}"
            )),
        },
    };
    let rate = match g.rate {
        None => None,
        Some(f) => match f.as_u64("gc.rate")? {
            0 => None,
            n => Some(u32::try_from(n).context("gc.rate: at most 4294967295 deletes per second")?),
        },
    };
    Ok(GcSettings {
        enabled: match g.enabled {
            Some(f) => f.as_bool("gc.enabled")?,
            None => d.enabled,
        },
        interval: dur(g.interval, "interval", d.interval, false)?,
        grace: dur(g.grace, "grace", d.grace, true)?,
        delete_untagged: match g.deleteuntagged {
            Some(f) => f.as_bool("gc.deleteuntagged")?,
            None => d.delete_untagged,
        },
        rate,
    })
}

fn upload_purging(p: Option<UploadPurgingSection>) -> anyhow::Result<Option<UploadPurging>> {
    let p = p.unwrap_or_default();
    if let Some(e) = p.enabled
        && !e.as_bool("storage.maintenance.uploadpurging.enabled")?
    {
        return Ok(None);
    }
    let dur = |v: Option<String>,
               what: &str,
               default: u64|
     -> anyhow::Result<std::time::Duration> {
        match v {
            Some(t) => humantime::parse_duration(t.trim()).with_context(|| {
                format!("storage.maintenance.uploadpurging.{what}: expected a duration such as 168h or 30m, found {t:?}")
            }),
            None => Ok(std::time::Duration::from_secs(default)),
        }
    };
    Ok(Some(UploadPurging {
        age: dur(p.age, "age", 168 * 3600)?,
        interval: dur(p.interval, "interval", 24 * 3600)?,
    }))
}

fn auth_settings(a: AuthSection, flag: Option<PathBuf>) -> anyhow::Result<AuthSettings> {
    let builtin = flag.or(a.builtin.and_then(|b| b.config));
    let modes = [a.htpasswd.is_some(), a.token.is_some(), builtin.is_some()];
    if modes.iter().filter(|m| **m).count() > 1 {
        bail!("configure one of auth.htpasswd, auth.token and --auth-config, not several");
    }
    if let Some(config) = builtin {
        return Ok(AuthSettings::Builtin { config });
    }
    if let Some(h) = a.htpasswd {
        let path = h
            .path
            .context("auth.htpasswd.path is required: the htpasswd file (htpasswd -B)")?;
        return Ok(AuthSettings::Htpasswd {
            realm: h.realm.unwrap_or_else(|| "berth".into()),
            path,
        });
    }
    if let Some(t) = a.token {
        let need =
            |v: Option<String>, k: &str| v.with_context(|| format!("auth.token.{k} is required"));
        if t.rootcertbundle.is_none() && t.jwks.is_none() {
            bail!("auth.token needs rootcertbundle or jwks: the keys that sign tokens");
        }
        return Ok(AuthSettings::Token {
            realm: need(t.realm, "realm")?,
            service: need(t.service, "service")?,
            issuer: need(t.issuer, "issuer")?,
            rootcertbundle: t.rootcertbundle,
            jwks: t.jwks,
        });
    }
    Ok(AuthSettings::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_s3_section_and_its_environment_variables() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(
            &p,
            "version: 0.1\nstorage:\n  s3:\n    bucket: reg\n    region: garage\n    regionendpoint: 127.0.0.1:3900\n    forcepathstyle: true\n    secure: false\n    v4auth: true\n    accesskey: AK\n    secretkey: SK\n    rootdirectory: /registry\n    chunksize: 6291456\n  redirect:\n    disable: true\n  maintenance:\n    uploadpurging:\n      age: 2h\n      interval: 10m\n",
        )
        .unwrap();
        let s = load(Some(&p), std::iter::empty(), &Overrides::default()).unwrap();
        let c = s.s3.expect("s3 settings");
        assert_eq!(c.bucket, "reg");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert!(c.force_path_style && c.allow_http);
        assert_eq!(c.root_directory, "/registry");
        assert_eq!(c.chunk_size, 6 << 20);
        assert_eq!(
            (c.access_key.as_deref(), c.secret_key.as_deref()),
            (Some("AK"), Some("SK"))
        );
        assert!(!s.redirect);
        assert_eq!(
            s.upload_purging,
            Some(UploadPurging {
                age: std::time::Duration::from_secs(7200),
                interval: std::time::Duration::from_secs(600)
            })
        );

        // The environment sets or overrides any key, as with Distribution.
        let env = [
            ("REGISTRY_STORAGE_S3_BUCKET", "other"),
            ("REGISTRY_STORAGE_S3_SECRETKEY", "FROMENV"),
            ("REGISTRY_STORAGE_REDIRECT_DISABLE", "false"),
            (
                "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED",
                "false",
            ),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let s = load(Some(&p), env.into_iter(), &Overrides::default()).unwrap();
        let c = s.s3.unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.secret_key.as_deref()),
            ("other", Some("FROMENV"))
        );
        assert!(s.redirect);
        assert_eq!(s.upload_purging, None);

        // Mistakes are reported with the key to fix.
        let bad = |env: &[(&str, &str)], flags: &Overrides| {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            format!("{:#}", load(Some(&p), env.into_iter(), flags).unwrap_err())
        };
        let root = Overrides {
            root: Some("/x".into()),
            ..Overrides::default()
        };
        assert!(bad(&[], &root).contains("configure one storage"));
        let e = bad(
            &[("REGISTRY_STORAGE_S3_CHUNKSIZE", "lots")],
            &Overrides::default(),
        );
        assert!(e.contains("storage.s3.chunksize"), "{e}");
        let e = bad(
            &[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "soon")],
            &Overrides::default(),
        );
        assert!(e.contains("uploadpurging.age"), "{e}");
        let e = bad(
            &[("REGISTRY_STORAGE_S3_V4AUTH", "false")],
            &Overrides::default(),
        );
        assert!(e.contains("v4auth"), "{e}");
    }

    #[test]
    fn the_aws_environment_and_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[ci]\naws_access_key_id = C\naws_secret_access_key = CS\naws_session_token = T\n",
        )
        .unwrap();
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([(
                    "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                    file.display().to_string(),
                )])
                .chain([("PATH".to_string(), "/bin".to_string())])
                .collect::<Vec<_>>()
        };
        // No key anywhere: the named profile of the credentials file.
        let c = with_aws_environment(
            berth_s3::S3Config::default(),
            env(&[("AWS_PROFILE", "ci"), ("AWS_REGION", "eu-1")]),
        );
        assert_eq!(
            (c.access_key.as_deref(), c.secret_key.as_deref()),
            (Some("C"), Some("CS"))
        );
        assert_eq!(c.session_token.as_deref(), Some("T"));
        assert!(
            c.aws_settings
                .iter()
                .any(|(k, v)| k == "AWS_REGION" && v == "eu-1")
        );
        assert!(!c.aws_settings.iter().any(|(k, _)| k == "PATH"));
        // A key in the environment: the file is not read; object_store takes the variables.
        let c = with_aws_environment(
            berth_s3::S3Config::default(),
            env(&[("AWS_ACCESS_KEY_ID", "E"), ("AWS_SECRET_ACCESS_KEY", "ES")]),
        );
        assert_eq!(c.access_key, None);
        // Keys in the configuration file win over both.
        let c = with_aws_environment(
            berth_s3::S3Config {
                access_key: Some("K".into()),
                secret_key: Some("KS".into()),
                ..Default::default()
            },
            env(&[]),
        );
        assert_eq!(c.access_key.as_deref(), Some("K"));
        assert!(!format!("{c:?}").contains("KS"));
    }

    #[test]
    fn distribution_config_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(
            &p,
            "version: 0.1\nlog:\n  level: debug\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5001\n",
        )
        .unwrap();
        let s = load(Some(&p), std::iter::empty(), &Overrides::default()).unwrap();
        assert_eq!(s.addr.to_string(), "0.0.0.0:5001");
        assert_eq!(s.root, PathBuf::from("/var/lib/registry"));
        assert!(s.delete_enabled);
        assert_eq!(s.log_level, "debug");

        let env = vec![
            (
                "REGISTRY_HTTP_ADDR".to_string(),
                "127.0.0.1:6000".to_string(),
            ),
            (
                "REGISTRY_STORAGE_DELETE_ENABLED".to_string(),
                "false".to_string(),
            ),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_string(),
                "/data".to_string(),
            ),
        ];
        let s = load(Some(&p), env.clone().into_iter(), &Overrides::default()).unwrap();
        assert_eq!(s.addr.to_string(), "127.0.0.1:6000");
        assert!(!s.delete_enabled);
        assert_eq!(s.root, PathBuf::from("/data"));

        let flags = Overrides {
            addr: Some("127.0.0.1:7000".into()),
            root: Some("/x".into()),
            delete_enabled: Some(true),
            tls: None,
            auth_config: None,
        };
        let s = load(Some(&p), env.into_iter(), &flags).unwrap();
        assert_eq!(
            (
                s.addr.to_string().as_str(),
                s.root.to_str(),
                s.delete_enabled
            ),
            ("127.0.0.1:7000", Some("/x"), true)
        );
    }

    #[test]
    fn auth_sections() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(
            &p,
            "auth:\n  htpasswd:\n    realm: r\n    path: /etc/htpasswd\n",
        )
        .unwrap();
        let s = load(Some(&p), std::iter::empty(), &Overrides::default()).unwrap();
        assert_eq!(
            s.auth,
            AuthSettings::Htpasswd {
                realm: "r".into(),
                path: "/etc/htpasswd".into()
            }
        );
        std::fs::write(&p, "auth:\n  token:\n    realm: https://a/token\n    service: s\n    issuer: i\n    rootcertbundle: /b.pem\n").unwrap();
        let s = load(Some(&p), std::iter::empty(), &Overrides::default()).unwrap();
        assert!(matches!(s.auth, AuthSettings::Token { ref service, .. } if service == "s"));
        let flags = Overrides {
            auth_config: Some("/a.yml".into()),
            ..Default::default()
        };
        assert!(
            load(Some(&p), std::iter::empty(), &flags).is_err(),
            "two modes at once"
        );
        std::fs::write(
            &p,
            "auth:\n  token:\n    realm: x\n    service: s\n    issuer: i\n",
        )
        .unwrap();
        assert!(
            load(Some(&p), std::iter::empty(), &Overrides::default()).is_err(),
            "no keys"
        );
    }

    /// The environment of Distribution's deploy guide, in every order.
    #[test]
    fn auth_and_storage_named_by_a_bare_variable_in_any_order() {
        let vars = [
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
            ("REGISTRY_STORAGE", "filesystem"),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                "/var/lib/registry",
            ),
        ];
        let orders: Vec<Vec<usize>> = permutations(vars.len());
        assert_eq!(orders.len(), 120);
        for order in orders {
            let env = order
                .iter()
                .map(|&i| (vars[i].0.to_string(), vars[i].1.to_string()));
            let s = load(None, env, &Overrides::default())
                .unwrap_or_else(|e| panic!("order {order:?}: {e:#}"));
            assert_eq!(
                s.auth,
                AuthSettings::Htpasswd {
                    realm: "Registry Realm".into(),
                    path: "/auth/htpasswd".into()
                },
                "order {order:?}"
            );
            assert_eq!(s.root, std::path::PathBuf::from("/var/lib/registry"));
        }
        // A bare name replaces the file's section, as in Distribution.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(&p, "auth:\n  token:\n    realm: x\n").unwrap();
        let env = [
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/h"),
            ("REGISTRY_AUTH", "htpasswd"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let s = load(Some(&p), env.into_iter(), &Overrides::default()).unwrap();
        assert!(
            matches!(s.auth, AuthSettings::Htpasswd { ref path, .. } if path.as_os_str() == "/h")
        );
    }

    #[test]
    fn a_bare_section_over_a_file_that_is_no_map_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(&p, "- just\n- a list\n").unwrap();
        let env = [("REGISTRY_AUTH".to_string(), "htpasswd".to_string())];
        let e = load(Some(&p), env.into_iter(), &Overrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("wrong type"), "{e:#}");
    }

    /// Every order of `0..n`.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn defaults_and_errors() {
        let s = load(None, std::iter::empty(), &Overrides::default()).unwrap();
        assert_eq!(s.addr.to_string(), DEFAULT_ADDR);
        assert!(!s.delete_enabled);
        let env = vec![(
            "REGISTRY_STORAGE_DELETE_ENABLED".to_string(),
            "maybe".to_string(),
        )];
        assert!(load(None, env.into_iter(), &Overrides::default()).is_err());
        assert!(parse_addr("nonsense").is_err());
    }

    fn load_yaml(yaml: &str, env: Vec<(&str, &str)>) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.yml");
        std::fs::write(&f, yaml).unwrap();
        load(
            Some(&f),
            env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())),
            &Overrides::default(),
        )
    }

    #[test]
    fn the_gc_section() {
        let s = load_yaml("", vec![]).unwrap();
        assert_eq!(s.gc, GcSettings::default());
        let s = load_yaml(
            "gc:\n  interval: 6h\n  grace: 0s\n  deleteuntagged: true\n  rate: 50\n",
            vec![("REGISTRY_GC_ENABLED", "false")],
        )
        .unwrap();
        assert_eq!(
            s.gc,
            GcSettings {
                enabled: false,
                interval: std::time::Duration::from_secs(6 * 3600),
                grace: std::time::Duration::ZERO,
                delete_untagged: true,
                rate: Some(50),
            }
        );
        for (bad, key) in [
            ("gc:\n  interval: 0s\n", "gc.interval"),
            ("gc:\n  grace: soon\n", "gc.grace"),
            ("gc:\n  deleteuntagged: maybe\n", "gc.deleteuntagged"),
        ] {
            let e = format!("{:#}", load_yaml(bad, vec![]).unwrap_err());
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn the_database_section_and_its_variable() {
        // A folder keeps an embedded index under its root by default.
        let s = load_yaml(
            "storage:\n  filesystem:\n    rootdirectory: /data\n",
            vec![],
        )
        .unwrap();
        assert_eq!(
            s.database,
            DatabaseSettings::Embedded(PathBuf::from("/data/berth/index.db"))
        );
        let s = load_yaml("database:\n  path: /var/lib/berth/index.db\n", vec![]).unwrap();
        assert_eq!(
            s.database,
            DatabaseSettings::Embedded(PathBuf::from("/var/lib/berth/index.db"))
        );
        let s = load_yaml(
            "database:\n  path: /x.db\n",
            vec![("REGISTRY_DATABASE_ENABLED", "false")],
        );
        assert!(s.is_err(), "enabled: false with a path is refused");
        let s = load_yaml(
            "",
            vec![("REGISTRY_DATABASE_DSN", "postgres://u:p@db/berth")],
        )
        .unwrap();
        assert_eq!(
            s.database,
            DatabaseSettings::Postgres("postgres://u:p@db/berth".into())
        );
        let s = load_yaml("database:\n  enabled: false\n", vec![]).unwrap();
        assert_eq!(s.database, DatabaseSettings::Off { asked: true });
        let e =
            load_yaml("database:\n  dsn: postgres://db/x\n  path: /x.db\n", vec![]).unwrap_err();
        assert!(format!("{e:#}").contains("not both"), "{e:#}");
        // S3 without a DSN walks the bucket (and the server warns).
        let s3 =
            "storage:\n  s3:\n    bucket: b\n    region: r\n    accesskey: a\n    secretkey: s\n";
        let s = load_yaml(s3, vec![]).unwrap();
        assert_eq!(s.database, DatabaseSettings::Off { asked: false });
    }
}
