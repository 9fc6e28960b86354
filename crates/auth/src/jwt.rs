//! Docker token (JWT) verification, as Distribution's `token` auth does it.
//!
//! JWTs are verified with the `jsonwebtoken` crate using its pure-Rust `rust_crypto` backend:
//! it is widely used and maintained, checks `exp`/`nbf`/`iss`/`aud` itself, and supports every
//! algorithm Docker token servers use (RS*, PS*, ES256, EdDSA) without a C toolchain. Before it
//! runs, this module reads the JOSE header itself so that `alg: none`, HMAC algorithms and
//! unknown critical extensions are refused with a clear reason, and so that the signing key is
//! picked by `x5c` chain or `kid` (or, with neither, by trying each trusted key).

use std::net::IpAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine as _;
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::audit;
use crate::challenge::{AuthError, BearerError, Challenge};
use crate::credentials::{Presented, parse_authorization};
use crate::keys::{KeyError, TrustedKey, TrustedKeys};
use crate::scope::{Access, Scope};
use crate::{Authenticator, Grant, GrantedAccess, Principal};

/// Default clock skew allowed on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// What status a valid token that lacks the needed scope gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InsufficientScope {
    /// 401 `UNAUTHORIZED` with `error="insufficient_scope"` in the Bearer challenge. This is
    /// Distribution's behaviour and the default: the client may fetch a new token for the
    /// scope the challenge names (e.g. after `docker login`).
    #[default]
    Unauthorized,
    /// 403 `DENIED` (with the same challenge), for deployments that prefer the client to stop
    /// rather than retry.
    Forbidden,
}

/// Token verification settings (Distribution's `auth.token` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token endpoint URL sent in challenges.
    pub realm: String,
    /// The service name: tokens must carry it in `aud`.
    pub service: String,
    /// The token issuer: tokens must carry it in `iss`.
    pub issuer: String,
    /// PEM bundle of X.509 certificates whose keys may sign tokens (and which anchor `x5c`).
    #[serde(default)]
    pub rootcertbundle: Option<PathBuf>,
    /// A JWKS file of keys that may sign tokens.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Clock skew allowed, in seconds (default 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Status for a valid token lacking the needed scope (default 401, as Distribution).
    #[serde(default)]
    pub insufficient_scope: InsufficientScope,
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts with a JSON header.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// `alg: none`.
    #[error("unsigned tokens (alg none) are refused")]
    AlgNone,
    /// HS256/HS384/HS512.
    #[error("symmetric (HMAC) tokens are refused; sign with RS256, ES256 or EdDSA")]
    Symmetric,
    /// Another algorithm.
    #[error("token algorithm {0:?} is not supported; sign with RS256, ES256 or EdDSA")]
    UnsupportedAlgorithm(String),
    /// The header lists critical extensions.
    #[error("token header has critical extensions (crit) that are not understood")]
    Critical,
    /// `kid` names no trusted key.
    #[error("token key id is not a trusted key")]
    UnknownKey,
    /// `x5c` chain refused.
    #[error("{0}")]
    Chain(String),
    /// No trusted key verifies the signature.
    #[error("token signature does not verify with any trusted key")]
    BadSignature,
    /// `exp` passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `aud` is not this service.
    #[error("token was issued for another service")]
    WrongAudience,
    /// `iss` is not the configured issuer.
    #[error("token was issued by an untrusted issuer")]
    WrongIssuer,
    /// A required claim is missing or malformed.
    #[error("token lacks a valid {0} claim")]
    Claim(String),
}

impl TokenError {
    /// The audit reason word.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "token_malformed",
            TokenError::AlgNone => "token_alg_none",
            TokenError::Symmetric => "token_alg_hmac",
            TokenError::UnsupportedAlgorithm(_) => "token_alg_unsupported",
            TokenError::Critical => "token_crit",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::Chain(_) => "token_x5c_refused",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::Claim(_) => "token_bad_claim",
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    access: Vec<Access>,
    /// Checked by `jsonwebtoken` (required); optional here so a missing `exp` is reported as
    /// such rather than as malformed JSON.
    #[serde(default)]
    exp: Option<u64>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub` (empty or absent for anonymous tokens).
    pub subject: Option<String>,
    /// The `access` claim.
    pub access: Vec<Access>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// Verifies Docker registry tokens and answers with Bearer challenges.
pub struct TokenAuthenticator {
    realm: String,
    service: String,
    issuer: String,
    leeway: u64,
    insufficient: InsufficientScope,
    keys: TrustedKeys,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthenticator")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Why a token configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenConfigError {
    /// Neither `rootcertbundle` nor `jwks` given, or they held no keys.
    #[error("token auth needs trusted keys: set rootcertbundle (PEM certificates) and/or jwks")]
    NoKeys,
    /// A key file failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn map_jwt_error(kind: &ErrorKind) -> Option<TokenError> {
    Some(match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidKeyFormat | ErrorKind::InvalidEcdsaKey => {
            return None;
        }
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => TokenError::Claim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => TokenError::Claim(c.clone()),
        _ => TokenError::Malformed,
    })
}

impl TokenAuthenticator {
    /// A verifier with the given keys.
    pub fn new(
        realm: impl Into<String>,
        service: impl Into<String>,
        issuer: impl Into<String>,
        keys: TrustedKeys,
    ) -> Self {
        TokenAuthenticator {
            realm: realm.into(),
            service: service.into(),
            issuer: issuer.into(),
            leeway: DEFAULT_LEEWAY_SECS,
            insufficient: InsufficientScope::default(),
            keys,
        }
    }

    /// Loads the key files named by `config`.
    pub fn from_config(config: &TokenConfig) -> Result<Self, TokenConfigError> {
        let keys = TrustedKeys::load(config.rootcertbundle.as_deref(), config.jwks.as_deref())?;
        if keys.keys().is_empty() {
            return Err(TokenConfigError::NoKeys);
        }
        Ok(
            Self::new(&config.realm, &config.service, &config.issuer, keys)
                .with_leeway(config.leeway_secs)
                .with_insufficient_scope(config.insufficient_scope),
        )
    }

    /// Sets the clock skew allowed on `exp`/`nbf`.
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// Sets the answer to a valid token lacking scope.
    pub fn with_insufficient_scope(mut self, s: InsufficientScope) -> Self {
        self.insufficient = s;
        self
    }

    /// The realm sent in challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The challenge for `needed`.
    pub fn challenge(&self, needed: &[Scope], error: Option<BearerError>) -> Challenge {
        Challenge::Bearer {
            realm: self.realm.clone(),
            service: Some(self.service.clone()),
            scopes: needed.to_vec(),
            error,
        }
    }

    /// Verifies a token's header, signature and claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| TokenError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        let alg = match header.alg.as_str() {
            a if a.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
            "HS256" | "HS384" | "HS512" => return Err(TokenError::Symmetric),
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                return Err(TokenError::UnsupportedAlgorithm(
                    other.chars().take(20).collect(),
                ));
            }
        };
        if header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let chain_key: TrustedKey;
        let candidates: Vec<&TrustedKey> = if let Some(x5c) = &header.x5c {
            chain_key = self
                .keys
                .key_from_x5c(x5c)
                .map_err(|e| TokenError::Chain(e.to_string()))?;
            vec![&chain_key]
        } else if let Some(kid) = &header.kid {
            let found = self.keys.by_kid(kid);
            if found.is_empty() {
                return Err(TokenError::UnknownKey);
            }
            found
        } else {
            self.keys.keys().iter().collect()
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        for key in candidates.into_iter().filter(|k| k.kind().accepts(alg)) {
            match jsonwebtoken::decode::<Claims>(token, key.decoding_key(), &validation) {
                Ok(data) => {
                    let c = data.claims;
                    return Ok(VerifiedToken {
                        subject: c.sub.filter(|s| !s.is_empty()),
                        access: c.access,
                        expires_at: c.exp.unwrap_or(0),
                    });
                }
                Err(e) => {
                    if let Some(err) = map_jwt_error(e.kind()) {
                        return Err(err);
                    }
                }
            }
        }
        Err(TokenError::BadSignature)
    }
}

#[async_trait]
impl Authenticator for TokenAuthenticator {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        needed: &[Scope],
        remote: Option<IpAddr>,
    ) -> Result<Grant, AuthError> {
        let invalid = |message: String, reason: &str, user: Option<&str>| {
            audit::auth_failure("bearer", user, reason, remote);
            AuthError::unauthorized(
                message,
                &self.challenge(needed, Some(BearerError::InvalidToken)),
                needed,
            )
        };
        match parse_authorization(headers) {
            Ok(None) => Err(AuthError::unauthorized(
                "authentication required",
                &self.challenge(needed, None),
                needed,
            )),
            Ok(Some(Presented::Basic { user, .. })) => {
                // Not a failure of the user's password (it is never checked here): the client
                // must fetch a token from the realm first. No `error` attribute, as Distribution.
                audit::auth_failure("basic", Some(&user), "basic_sent_to_token_auth", remote);
                Err(AuthError::unauthorized(
                    "this registry accepts bearer tokens: get one from the token realm",
                    &self.challenge(needed, None),
                    needed,
                ))
            }
            Ok(Some(Presented::Bearer(token))) => match self.verify(token.expose()) {
                Ok(t) => Ok(Grant {
                    principal: t.subject.map_or(Principal::Anonymous, Principal::User),
                    access: GrantedAccess::Only(t.access),
                }),
                Err(e) => Err(invalid(format!("invalid token: {e}"), e.reason(), None)),
            },
            Err(e) => Err(invalid(
                format!("malformed Authorization header: {e}"),
                e.reason(),
                None,
            )),
        }
    }

    fn deny(&self, grant: &Grant, needed: &[Scope], remote: Option<IpAddr>) -> AuthError {
        audit::auth_failure(
            "bearer",
            grant.principal.name(),
            "insufficient_scope",
            remote,
        );
        let challenge = self.challenge(needed, Some(BearerError::InsufficientScope));
        let message = "the token does not grant the requested access";
        match self.insufficient {
            InsufficientScope::Unauthorized => AuthError::unauthorized(message, &challenge, needed),
            InsufficientScope::Forbidden => AuthError::denied(message, Some(&challenge), needed),
        }
    }
}
