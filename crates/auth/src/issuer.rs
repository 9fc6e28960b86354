//! The built-in token issuer (`berth serve --auth-config access.yml`): authenticates users
//! against an htpasswd file, grants the intersection of the requested scopes and the access
//! rules, and signs Docker registry tokens (ES256 with P-256, or EdDSA with Ed25519) with its
//! own key. The registry verifies them with [`Issuer::authenticator`], the same
//! [`TokenAuthenticator`] used for external token servers.
//!
//! Request helpers cover both ways clients ask for tokens:
//! * `GET /token?service=..&scope=..&scope=..&account=..` with `Authorization: Basic` or none
//!   (anonymous) — [`parse_get_request`];
//! * the OAuth2 form `POST /token` with `grant_type=password&username&password&service&scope&
//!   client_id` — [`parse_post_request`]; `grant_type=refresh_token` is answered
//!   `unsupported_grant_type` because this issuer hands out no refresh tokens.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::access_list::{AccessList, AccessListError, AccessRule};
use crate::audit;
use crate::challenge::{AuthError, Challenge};
use crate::credentials::{Presented, Secret, parse_authorization};
use crate::htpasswd::{Htpasswd, HtpasswdError, PasswordCheck, PasswordChecker};
use crate::jwt::TokenAuthenticator;
use crate::keys::{TrustedKey, TrustedKeys};
use crate::scope::{Access, Scope};

pub use berth_oci::token::TokenResponse;

/// Default token lifetime, seconds.
pub const DEFAULT_TOKEN_TTL: u64 = 300;
/// Longest token lifetime accepted in the configuration (one day).
pub const MAX_TOKEN_TTL: u64 = 86_400;
/// Largest POST form body accepted.
pub const MAX_FORM_LEN: usize = 64 * 1024;

fn default_ttl() -> u64 {
    DEFAULT_TOKEN_TTL
}

/// The issuer's YAML configuration (`--auth-config access.yml`).
///
/// ```yaml
/// realm: https://registry.example.com/token   # optional
/// service: berth
/// issuer: berth
/// htpasswd: /etc/berth/htpasswd               # optional: without it only anonymous rules apply
/// token_ttl: 300
/// signing_key: /path/key.pem                  # optional
/// groups: { admins: [alice], devs: [bob, carol] }
/// access:
///   - { who: "group:admins", repos: "**", actions: [pull, push, delete], catalog: true }
///   - { who: "anonymous", repos: "public/**", actions: [pull] }
/// ```
/// Unknown keys are errors (typos must not silently weaken access control).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The token endpoint URL for challenges; the server fills its own when absent.
    #[serde(default)]
    pub realm: Option<String>,
    /// The service name (`aud` of tokens, `service` of challenges).
    pub service: String,
    /// The issuer name (`iss` of tokens).
    pub issuer: String,
    /// The htpasswd file of users (bcrypt entries only).
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    /// Token lifetime in seconds (1 to 86400; default 300).
    #[serde(default = "default_ttl")]
    pub token_ttl: u64,
    /// A PEM private key (P-256 or Ed25519, PKCS#8 or SEC1); when absent a P-256 key is
    /// generated at first start at the path the caller gives.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Groups: name → user names.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Access rules (see [`crate::access_list`]).
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

/// Why the issuer could not start or a token could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerConfigError {
    /// The config file could not be read.
    #[error("cannot read auth config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// YAML that does not parse or has unknown keys.
    #[error("auth config {origin} is invalid: {detail}")]
    Yaml {
        /// The file.
        origin: String,
        /// The parser's message.
        detail: String,
    },
    /// A bad value.
    #[error("auth config: {0}")]
    Invalid(String),
    /// The htpasswd file was refused.
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
    /// The access rules were refused.
    #[error("auth config: {0}")]
    Access(#[from] AccessListError),
    /// The signing key could not be read, parsed or created.
    #[error("signing key {path}: {detail}")]
    SigningKey {
        /// The key file.
        path: PathBuf,
        /// What failed and what to do.
        detail: String,
    },
}

impl IssuerConfig {
    /// Parses YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, IssuerConfigError> {
        let cfg: IssuerConfig =
            serde_saphyr::from_str(text).map_err(|e| IssuerConfigError::Yaml {
                origin: origin.to_owned(),
                detail: e.to_string(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a YAML file; relative `htpasswd` and `signing_key` paths are taken relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, IssuerConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| IssuerConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::from_yaml(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.htpasswd, &mut cfg.signing_key]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), IssuerConfigError> {
        if self.service.trim().is_empty() || self.issuer.trim().is_empty() {
            return Err(IssuerConfigError::Invalid(
                "service and issuer must not be empty".into(),
            ));
        }
        if self.token_ttl == 0 || self.token_ttl > MAX_TOKEN_TTL {
            return Err(IssuerConfigError::Invalid(format!(
                "token_ttl {} is out of range: give 1 to {MAX_TOKEN_TTL} seconds",
                self.token_ttl
            )));
        }
        Ok(())
    }
}

/// The issuer's signing key.
struct SigningKey {
    alg: Algorithm,
    encoding: EncodingKey,
    public: TrustedKey,
}

fn key_err(path: &Path, detail: impl Into<String>) -> IssuerConfigError {
    IssuerConfigError::SigningKey {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

fn signing_key_from_pem(pem_text: &[u8], path: &Path) -> Result<SigningKey, IssuerConfigError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| key_err(path, format!("not PEM: {e}")))?;
    let unsupported = "not a P-256 or Ed25519 private key; create one with `openssl genpkey -algorithm ed25519` or `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`";
    for b in &blocks {
        let der = b.contents();
        let (alg, pkcs8, spki) = match b.tag() {
            "PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
                    let spki = k
                        .public_key()
                        .to_public_key_der()
                        .map_err(|e| key_err(path, e.to_string()))?;
                    (Algorithm::ES256, der.to_vec(), spki.into_vec())
                } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
                    let spki = k
                        .verifying_key()
                        .to_public_key_der()
                        .map_err(|e| key_err(path, e.to_string()))?;
                    (Algorithm::EdDSA, der.to_vec(), spki.into_vec())
                } else {
                    return Err(key_err(path, unsupported));
                }
            }
            "EC PRIVATE KEY" => {
                let k =
                    p256::SecretKey::from_sec1_der(der).map_err(|_| key_err(path, unsupported))?;
                let pkcs8 = k.to_pkcs8_der().map_err(|e| key_err(path, e.to_string()))?;
                let spki = k
                    .public_key()
                    .to_public_key_der()
                    .map_err(|e| key_err(path, e.to_string()))?;
                (Algorithm::ES256, pkcs8.as_bytes().to_vec(), spki.into_vec())
            }
            "EC PARAMETERS" => continue,
            _ => return Err(key_err(path, unsupported)),
        };
        let public = TrustedKey::from_spki_der(&spki).map_err(|e| key_err(path, e.to_string()))?;
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&pkcs8),
            _ => EncodingKey::from_ed_der(&pkcs8),
        };
        return Ok(SigningKey {
            alg,
            encoding,
            public,
        });
    }
    Err(key_err(path, "no private key block found"))
}

/// A new P-256 signing key as PKCS#8 PEM, for a caller that stores it itself (in shared
/// storage, say) and hands it to [`Issuer::with_generated_key`].
pub fn generate_signing_key_pem() -> String {
    let key = loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
    };
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("a P-256 key encodes as PKCS#8")
        .to_string()
}

/// Generates a P-256 key and writes it as PKCS#8 PEM with mode 0600 (never overwriting).
fn generate_signing_key(path: &Path) -> Result<(), IssuerConfigError> {
    let pem = generate_signing_key_pem();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| key_err(path, format!("cannot create its directory: {e}")))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| key_err(path, format!("cannot create: {e}")))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_err(path, format!("cannot write: {e}")))?;
    tracing::info!(path = %path.display(), "generated a new P-256 token signing key");
    Ok(())
}

/// Why the token endpoint refused a request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// Wrong user name or password, or malformed credentials: [`crate::Denial::Unauthenticated`]
    /// with a Basic challenge.
    #[error("{0}")]
    Unauthorized(AuthError),
    /// A malformed request (wrong service, missing parameter): `invalid_request`.
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
    /// `grant_type` other than `password`: `unsupported_grant_type`.
    #[error(
        "unsupported grant_type {0:?}: use grant_type=password (refresh tokens are not issued)"
    )]
    UnsupportedGrantType(String),
    /// Signing failed: a server error.
    #[error("cannot sign token: {0}")]
    Signing(String),
}

impl IssueError {
    /// The `WWW-Authenticate` value to send, if any.
    pub fn www_authenticate(&self) -> Option<&str> {
        match self {
            IssueError::Unauthorized(e) => e.www_authenticate.as_deref(),
            _ => None,
        }
    }

    /// The JSON body: OAuth2's `error`/`error_description` (read by OAuth2 clients such as
    /// containerd) together with the registry-style `errors` array (read by Docker).
    pub fn body(&self) -> serde_json::Value {
        let (oauth, code) = match self {
            IssueError::Unauthorized(_) => ("invalid_grant", "UNAUTHORIZED"),
            IssueError::InvalidRequest(_) => ("invalid_request", "UNSUPPORTED"),
            IssueError::UnsupportedGrantType(_) => ("unsupported_grant_type", "UNSUPPORTED"),
            IssueError::Signing(_) => ("server_error", "UNKNOWN"),
        };
        let message = self.to_string();
        serde_json::json!({
            "error": oauth,
            "error_description": message,
            "errors": [{"code": code, "message": message}],
        })
    }
}

/// A parsed token request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenRequest {
    /// The `service` parameter.
    pub service: Option<String>,
    /// The scopes that parsed (malformed ones are dropped: not granted, as Docker does).
    pub scopes: Vec<Scope>,
    /// The `account` parameter (GET).
    pub account: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// User name and password, when given.
    pub credentials: Option<(String, Secret)>,
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
pub fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn form_pairs(s: &str) -> Result<Vec<(String, String)>, IssueError> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match (form_decode(k), form_decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(IssueError::InvalidRequest(
                    "parameters are not valid percent-encoded UTF-8".into(),
                )),
            }
        })
        .collect()
}

fn parse_scopes(values: &[String]) -> Vec<Scope> {
    let mut out = Vec::new();
    for v in values {
        for s in v.split_ascii_whitespace() {
            match Scope::parse(s) {
                Ok(s) => out.push(s),
                Err(e) => tracing::debug!(scope = s, error = %e, "ignoring unparsable scope"),
            }
        }
    }
    out
}

fn credential_error(
    e: &crate::credentials::CredentialError,
    remote: Option<IpAddr>,
    realm: &str,
) -> IssueError {
    audit::auth_failure("token_endpoint", None, e.reason(), remote);
    IssueError::Unauthorized(AuthError::unauthorized(
        format!("malformed Authorization header: {e}"),
        &Challenge::Basic {
            realm: realm.to_owned(),
        },
        &[],
    ))
}

/// Parses `GET /token?...` (the raw query string, without `?`) with its headers.
/// Credentials come from `Authorization: Basic`; none means anonymous.
pub fn parse_get_request(
    query: &str,
    headers: &HeaderMap,
    remote: Option<IpAddr>,
) -> Result<TokenRequest, IssueError> {
    if query.len() > MAX_FORM_LEN {
        return Err(IssueError::InvalidRequest("query string too long".into()));
    }
    let pairs = form_pairs(query)?;
    let one = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let credentials = match parse_authorization(headers) {
        Ok(None) => None,
        Ok(Some(Presented::Basic { user, password })) => Some((user, password)),
        Ok(Some(Presented::Bearer(_))) => {
            return Err(IssueError::InvalidRequest(
                "send Basic credentials (or none) to the token endpoint".into(),
            ));
        }
        Err(e) => {
            return Err(credential_error(
                &e,
                remote,
                one("service").as_deref().unwrap_or("berth"),
            ));
        }
    };
    let account = one("account").filter(|a| !a.is_empty());
    if let (Some(a), Some((u, _))) = (&account, &credentials)
        && a != u
    {
        return Err(IssueError::InvalidRequest(
            "account does not match the user name of the credentials".into(),
        ));
    }
    Ok(TokenRequest {
        service: one("service"),
        scopes: parse_scopes(&scopes),
        account,
        client_id: one("client_id"),
        credentials,
    })
}

/// Parses the OAuth2 `POST /token` form body (`application/x-www-form-urlencoded`).
pub fn parse_post_request(body: &[u8]) -> Result<TokenRequest, IssueError> {
    if body.len() > MAX_FORM_LEN {
        return Err(IssueError::InvalidRequest("form body too large".into()));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| IssueError::InvalidRequest("form body is not UTF-8".into()))?;
    let pairs = form_pairs(text)?;
    let one = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    match one("grant_type").as_deref() {
        Some("password") => {}
        Some(other) => {
            return Err(IssueError::UnsupportedGrantType(
                other.chars().take(40).collect(),
            ));
        }
        None => return Err(IssueError::InvalidRequest("grant_type is required".into())),
    }
    let (Some(user), Some(password)) = (one("username").filter(|u| !u.is_empty()), one("password"))
    else {
        return Err(IssueError::InvalidRequest(
            "grant_type=password needs username and password".into(),
        ));
    };
    Ok(TokenRequest {
        service: one("service"),
        scopes: parse_scopes(&scopes),
        account: None,
        client_id: one("client_id"),
        credentials: Some((user, Secret::new(password))),
    })
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

/// The built-in token issuer.
pub struct Issuer {
    realm: String,
    service: String,
    issuer: String,
    ttl: u64,
    users: Option<PasswordChecker>,
    access: AccessList,
    key: SigningKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("kid", &self.key.public.kid())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Starts an issuer. `default_realm` is used when the config has no `realm` (the server's
    /// own `/token` URL); `generated_key_path` is where a signing key is created when the config
    /// names none (e.g. `<storage root>/auth/token-signing-key.pem`), or read if it exists.
    pub fn new(
        config: &IssuerConfig,
        default_realm: &str,
        generated_key_path: &Path,
    ) -> Result<Self, IssuerConfigError> {
        let generated = match &config.signing_key {
            Some(_) => None,
            None => {
                if !generated_key_path.exists() {
                    generate_signing_key(generated_key_path)?;
                }
                Some(
                    std::fs::read(generated_key_path)
                        .map_err(|e| key_err(generated_key_path, format!("cannot read: {e}")))?,
                )
            }
        };
        Self::start(
            config,
            default_realm,
            generated.as_deref(),
            generated_key_path,
        )
    }

    /// [`Issuer::new`] with the generated key given as PEM (read by the caller from where it
    /// keeps it, such as the storage every replica shares, so that all replicas sign with one
    /// key); `origin` names that place in errors. The config's `signing_key`, when set, wins.
    pub fn with_generated_key(
        config: &IssuerConfig,
        default_realm: &str,
        generated_pem: &[u8],
        origin: &str,
    ) -> Result<Self, IssuerConfigError> {
        Self::start(
            config,
            default_realm,
            Some(generated_pem),
            Path::new(origin),
        )
    }

    fn start(
        config: &IssuerConfig,
        default_realm: &str,
        generated_pem: Option<&[u8]>,
        generated_origin: &Path,
    ) -> Result<Self, IssuerConfigError> {
        config.validate()?;
        let users = match &config.htpasswd {
            Some(p) => Some(PasswordChecker::new(Htpasswd::load(p)?)),
            None => None,
        };
        if let Some(u) = &users {
            for (g, members) in &config.groups {
                for m in members.iter().filter(|m| !u.htpasswd().contains(m)) {
                    tracing::warn!(group = %g, user = %m, "group member has no htpasswd entry");
                }
            }
        }
        let access = AccessList::new(&config.access, &config.groups)?;
        let key = match (&config.signing_key, generated_pem) {
            (Some(p), _) => {
                let pem = std::fs::read(p).map_err(|e| key_err(p, format!("cannot read: {e}")))?;
                signing_key_from_pem(&pem, p)?
            }
            (None, Some(pem)) => signing_key_from_pem(pem, generated_origin)?,
            (None, None) => return Err(key_err(generated_origin, "no signing key")),
        };
        Ok(Issuer {
            realm: config
                .realm
                .clone()
                .unwrap_or_else(|| default_realm.to_owned()),
            service: config.service.clone(),
            issuer: config.issuer.clone(),
            ttl: config.token_ttl,
            users,
            access,
            key,
        })
    }

    /// The realm (token endpoint URL) for challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The signing key's public half (its `kid()` goes into every token header).
    pub fn public_key(&self) -> &TrustedKey {
        &self.key.public
    }

    /// The verifier for this issuer's tokens, to guard `/v2/`.
    pub fn authenticator(&self) -> TokenAuthenticator {
        let mut keys = TrustedKeys::new();
        keys.add_key(self.key.public.clone());
        TokenAuthenticator::new(&self.realm, &self.service, &self.issuer, keys)
    }

    fn basic_challenge(&self) -> Challenge {
        Challenge::Basic {
            realm: self.service.clone(),
        }
    }

    /// Issues a token. `credentials` of `None` is an anonymous request. Wrong or unknown
    /// credentials are a 401 error; requested scopes that are not allowed are simply left out of
    /// the token.
    pub async fn issue(
        &self,
        credentials: Option<(&str, &str)>,
        service: Option<&str>,
        scopes: &[Scope],
        remote: Option<IpAddr>,
    ) -> Result<TokenResponse, IssueError> {
        if let Some(s) = service.filter(|s| !s.is_empty())
            && s != self.service
        {
            return Err(IssueError::InvalidRequest(format!(
                "service {:?} is not served here; use service={}",
                s.chars().take(100).collect::<String>(),
                self.service
            )));
        }
        let user = match credentials {
            None => None,
            Some((user, password)) => {
                let result = match &self.users {
                    Some(checker) => checker.check(user, password).await,
                    None => PasswordCheck::UnknownUser,
                };
                if result == PasswordCheck::Busy {
                    return Err(IssueError::Unauthorized(AuthError::busy(&[])));
                }
                if result != PasswordCheck::Ok {
                    audit::auth_failure("token_endpoint", Some(user), result.reason(), remote);
                    return Err(IssueError::Unauthorized(AuthError::unauthorized(
                        "invalid username or password",
                        &self.basic_challenge(),
                        &[],
                    )));
                }
                Some(user)
            }
        };
        let access = self.access.grant(user, scopes);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let granted = access
            .iter()
            .map(|a| format!("{}:{}:{}", a.resource_type, a.name, a.actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let claims = IssuedClaims {
            iss: &self.issuer,
            sub: user.unwrap_or(""),
            aud: &self.service,
            exp: now + self.ttl,
            nbf: now,
            iat: now,
            jti: crate::htpasswd::hex_lower(&jti),
            access,
        };
        let mut header = Header::new(self.key.alg);
        header.typ = Some("JWT".into());
        header.kid = Some(self.key.public.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        let issued_at = time::OffsetDateTime::from_unix_timestamp(now as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        audit::token_issued(user, &granted, remote);
        Ok(TokenResponse::new(token, self.ttl, issued_at))
    }

    /// Issues a token for a parsed request.
    pub async fn handle(
        &self,
        request: &TokenRequest,
        remote: Option<IpAddr>,
    ) -> Result<TokenResponse, IssueError> {
        let creds = request
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.expose()));
        self.issue(creds, request.service.as_deref(), &request.scopes, remote)
            .await
    }
}
