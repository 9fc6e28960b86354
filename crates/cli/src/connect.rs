//! A registry client from the flags every command shares: timeouts, TLS, upload mode and
//! credentials (`--creds`, or `--username` with the password on standard input).

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::sync::OnceLock;
use std::time::Duration;

use berth_client::{Client, ClientOptions, Credentials, UploadMode};

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

/// A client for `registry` configured by the common flags.
pub fn client(
    registry: &str,
    common: &Common,
    override_creds: Option<&str>,
) -> Result<Client, Failure> {
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(common.connect_timeout.max(1)),
        read_timeout: Duration::from_secs(common.read_timeout.max(1)),
        insecure_registries: if common.insecure {
            vec![registry.to_owned()]
        } else {
            vec![]
        },
        skip_tls_verify: common.insecure,
        plain_http: common.plain_http,
        ca_files: common.ca_files.clone(),
        credentials: credentials(common, override_creds)?,
        upload_mode: if common.chunked {
            UploadMode::Chunked
        } else {
            UploadMode::Streaming
        },
        chunk_size: parse_size(&common.chunk_size)?,
        max_concurrent_transfers: common.max_transfers.max(1),
        ..ClientOptions::default()
    };
    Ok(Client::new(registry, opts)?)
}
