//! A registry client from the flags every command shares: timeouts, TLS, upload mode and
//! credentials (`--creds`, or `--username` with the password on standard input).
//!
//! The cli, not the client library, reads the environment: it builds the client's
//! [`Keychain`] from the flags, `BERTH_USERNAME`/`BERTH_PASSWORD` and Docker's config
//! directory (`DOCKER_CONFIG`, else `$HOME/.docker`).

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use berth_client::{Client, ClientOptions, Credentials, Keychain, Registries, UploadMode};

use crate::args::Common;
use crate::exit::Failure;
use crate::parse::parse_size;

/// The password read from stdin for `--username`, read once per process.
fn stdin_password() -> Result<String, Failure> {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    if let Some(p) = PASSWORD.get() {
        return Ok(p.clone());
    }
    if std::io::stdin().is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Failure::usage(format!("cannot read the password from stdin: {e}")))?;
    let p = s.lines().next().unwrap_or("").to_owned();
    if p.is_empty() {
        return Err(Failure::usage(
            "--username needs the password on standard input",
        ));
    }
    Ok(PASSWORD.get_or_init(|| p).clone())
}

/// The credentials the flags give, if any: `override_creds` (such as `--src-creds`) first,
/// then `--creds`, then `--username`.
pub fn credentials(
    common: &Common,
    override_creds: Option<&str>,
) -> Result<Option<Credentials>, Failure> {
    if let Some(c) = override_creds.or(common.creds.as_deref()) {
        return Credentials::parse_user_pass(c)
            .map(Some)
            .map_err(|e| Failure::usage(e.to_string()));
    }
    if let Some(u) = &common.username {
        return Ok(Some(Credentials::basic(u.clone(), stdin_password()?)));
    }
    Ok(None)
}

/// Environment variable holding a username for every registry (used with [`ENV_PASSWORD`]).
const ENV_USERNAME: &str = "BERTH_USERNAME";
/// Environment variable holding the password for [`ENV_USERNAME`].
const ENV_PASSWORD: &str = "BERTH_PASSWORD";

/// Credentials from [`ENV_USERNAME`]/[`ENV_PASSWORD`], if both are set.
fn env_credentials() -> Option<Credentials> {
    let u = std::env::var(ENV_USERNAME).ok().filter(|u| !u.is_empty())?;
    let p = std::env::var(ENV_PASSWORD).ok()?;
    Some(Credentials::basic(u, p))
}

/// Docker's configuration directory: `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// The keychain of a command: the flags' credentials, then the environment's, then Docker's
/// `config.json`.
pub fn keychain(common: &Common, override_creds: Option<&str>) -> Result<Keychain, Failure> {
    let mut chain = Keychain::anonymous();
    if let Some(c) = credentials(common, override_creds)? {
        chain = chain.with_static(c);
    }
    if let Some(c) = env_credentials() {
        chain = chain.with_static(c);
    }
    if let Some(dir) = docker_config_dir() {
        chain = chain.with_docker_config(dir);
    }
    Ok(chain)
}

/// Client options from the common flags; `--insecure` applies to `hosts` (the registries the
/// command names).
fn options(
    hosts: &[&str],
    common: &Common,
    override_creds: Option<&str>,
) -> Result<ClientOptions, Failure> {
    Ok(ClientOptions {
        connect_timeout: Duration::from_secs(common.connect_timeout.max(1)),
        read_timeout: Duration::from_secs(common.read_timeout.max(1)),
        insecure_registries: if common.insecure {
            hosts.iter().map(|h| (*h).to_owned()).collect()
        } else {
            vec![]
        },
        skip_tls_verify: common.insecure,
        plain_http: common.plain_http,
        ca_files: common.ca_files.clone(),
        keychain: keychain(common, override_creds)?,
        upload_mode: if common.chunked {
            UploadMode::Chunked
        } else {
            UploadMode::Streaming
        },
        chunk_size: parse_size(&common.chunk_size)?,
        max_concurrent_transfers: common.max_transfers.max(1),
        ..ClientOptions::default()
    })
}

/// A client for `registry` configured by the common flags.
pub fn client(
    registry: &str,
    common: &Common,
    override_creds: Option<&str>,
) -> Result<Client, Failure> {
    Ok(Client::new(
        registry,
        options(&[registry], common, override_creds)?,
    )?)
}

/// A pool of clients for the registries `hosts`, configured by the common flags.
pub fn registries(
    hosts: &[&str],
    common: &Common,
    override_creds: Option<&str>,
) -> Result<Registries, Failure> {
    Ok(Registries::new(options(hosts, common, override_creds)?))
}
