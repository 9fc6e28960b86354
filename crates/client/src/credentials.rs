//! [`Credentials`] and Docker's `config.json` (`auths`, `credHelpers`, `credsStore`) in a
//! directory the caller names (the library never looks up `DOCKER_CONFIG` or `HOME` itself;
//! see [`Keychain`](crate::Keychain)).
//!
//! Reading uses the [`docker_credential`] crate, which implements Docker's lookup order and the
//! credential-helper protocol. That crate cannot write, so [`store_docker_login`] and
//! [`remove_docker_login`] are hand-written here: they edit `auths` in place (keeping every other
//! key of the file) or, when a `credsStore`/`credHelpers` entry applies, call the helper's `store`
//! and `erase` verbs.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Credentials for one registry. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A username and password (or a personal access token used as a password).
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken(String),
}

impl Credentials {
    /// Username and password credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses `user:pass` (the password may contain colons).
    pub fn parse_user_pass(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials::basic(u, p)),
            _ => Err(Error::Invalid(
                "credentials must be given as user:password".into(),
            )),
        }
    }

    /// The value of a `Basic` authorization header, if these are basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credentials::IdentityToken(_) => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}:***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

/// The key Docker uses for a registry in `config.json`.
fn config_key(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// Looks `registry` up in `config.json` in `dir`. `Ok(None)` when the file or an entry for the
/// registry does not exist.
///
/// This may run a credential helper program, so call it from a blocking context
/// (the client does so through `spawn_blocking`).
pub fn from_docker_config(dir: &Path, registry: &str) -> Result<Option<Credentials>> {
    let file = dir.join("config.json");
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
    };
    use docker_credential::{CredentialRetrievalError as E, DockerCredential as D};
    match docker_credential::get_credential_from_reader(bytes.as_slice(), &config_key(registry)) {
        Ok(D::UsernamePassword(u, p)) => Ok(Some(Credentials::basic(u, p))),
        Ok(D::IdentityToken(t)) => Ok(Some(Credentials::IdentityToken(t))),
        Err(E::NoCredentialConfigured | E::ConfigNotFound) => Ok(None),
        // The crate's HelperFailure carries the helper's stdout, which could hold a secret:
        // report only which kind of failure happened.
        Err(E::HelperFailure { helper, .. }) => Err(Error::Credentials(format!(
            "credential helper {helper} failed for {registry}"
        ))),
        Err(e) => Err(Error::Credentials(format!("{}: {e}", file.display()))),
    }
}

fn read_config(dir: &Path) -> Result<Map<String, Value>> {
    let file = dir.join("config.json");
    match std::fs::read(&file) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(Error::Credentials(format!(
                "{} is not a JSON object",
                file.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(Error::io(format!("reading {}", file.display()), e)),
    }
}

fn write_config(dir: &Path, config: &Map<String, Value>) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let file = dir.join("config.json");
    let tmp = dir.join(".config.json.berth-tmp");
    let mut body = serde_json::to_vec_pretty(config).expect("a JSON map serializes");
    body.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    };
    write().map_err(|e| Error::io(format!("writing {}", file.display()), e))
}

/// The helper that applies to `registry`: `credHelpers[key]`, else `credsStore`.
fn helper_for(config: &Map<String, Value>, key: &str) -> Option<String> {
    config
        .get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(Value::as_str)
        .or_else(|| config.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<()> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Credentials(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| Error::Credentials(format!("{program} {verb}: {e}")))?;
    }
    let status = child
        .wait()
        .map_err(|e| Error::Credentials(format!("{program} {verb}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Credentials(format!(
            "{program} {verb} failed ({status})"
        )))
    }
}

/// Saves credentials for `registry` the way `docker login` does: through the credential helper
/// configured for it, else base64 in `auths` of `config.json` (created with mode 0600).
/// Returns the path of the file written or the helper used.
pub fn store_docker_login(dir: &Path, registry: &str, creds: &Credentials) -> Result<String> {
    let mut config = read_config(dir)?;
    let key = config_key(registry);
    if let Some(helper) = helper_for(&config, &key) {
        let (user, secret) = match creds {
            Credentials::Basic { username, password } => (username.as_str(), password.as_str()),
            Credentials::IdentityToken(t) => ("<token>", t.as_str()),
        };
        let input = serde_json::json!({"ServerURL": key, "Username": user, "Secret": secret});
        run_helper(&helper, "store", input.to_string().as_bytes())?;
        // Docker records an empty entry so that `auths` lists the registry.
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(a) = auths {
            a.insert(key, Value::Object(Map::new()));
        }
        write_config(dir, &config)?;
        return Ok(format!("docker-credential-{helper}"));
    }
    let entry = match creds {
        Credentials::Basic { username, password } => serde_json::json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        }),
        Credentials::IdentityToken(t) => serde_json::json!({ "identitytoken": t }),
    };
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    match auths {
        Value::Object(a) => {
            a.insert(key, entry);
        }
        other => *other = serde_json::json!({ key: entry }),
    }
    write_config(dir, &config)?;
    Ok(dir.join("config.json").display().to_string())
}

/// Removes the stored credentials of `registry` (helper `erase` and the `auths` entry).
/// Returns whether anything was removed.
pub fn remove_docker_login(dir: &Path, registry: &str) -> Result<bool> {
    let mut config = read_config(dir)?;
    let key = config_key(registry);
    let mut removed = false;
    if let Some(helper) = helper_for(&config, &key) {
        removed = run_helper(&helper, "erase", key.as_bytes()).is_ok();
    }
    if let Some(Value::Object(a)) = config.get_mut("auths") {
        removed |= a.remove(&key).is_some();
    }
    if removed {
        write_config(dir, &config)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_roundtrip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"psFormat":"x","auths":{"other:1":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        let creds = Credentials::basic("alice", "s:ecret");
        store_docker_login(dir.path(), "127.0.0.1:5000", &creds).unwrap();
        assert_eq!(
            from_docker_config(dir.path(), "127.0.0.1:5000").unwrap(),
            Some(creds)
        );
        assert_eq!(
            from_docker_config(dir.path(), "other:1").unwrap(),
            Some(Credentials::basic("x", "y"))
        );
        assert!(remove_docker_login(dir.path(), "127.0.0.1:5000").unwrap());
        assert_eq!(
            from_docker_config(dir.path(), "127.0.0.1:5000").unwrap(),
            None
        );
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains("psFormat"), "{text}");
        assert!(!remove_docker_login(dir.path(), "127.0.0.1:5000").unwrap());
    }

    #[test]
    fn debug_hides_secrets() {
        let s = format!("{:?}", Credentials::basic("bob", "hunter2"));
        assert!(!s.contains("hunter2"));
        assert!(!format!("{:?}", Credentials::IdentityToken("tok".into())).contains("tok)"));
    }

    #[test]
    fn parse_user_pass() {
        assert_eq!(
            Credentials::parse_user_pass("a:b:c").unwrap(),
            Credentials::basic("a", "b:c")
        );
        assert!(Credentials::parse_user_pass("nocolon").is_err());
        assert!(Credentials::parse_user_pass(":x").is_err());
    }
}
