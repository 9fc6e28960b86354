//! Authentication and authorization for the Berth registry.
//!
//! # Design
//!
//! The server asks one question per request: *may the client behind these headers do these
//! [`Scope`]s?* It computes the scopes from the route (see [`routes`]) and calls
//! [`Authenticator::authorize`] on an `Arc<dyn Authenticator>`; the answer is a [`Principal`] or
//! an [`AuthError`] that carries everything the response needs: the reason ([`Denial`]: the
//! caller must authenticate, or is denied), the spec error code (`UNAUTHORIZED`/`DENIED`), a
//! message, the JSON body and the exact `WWW-Authenticate` value. The server picks the HTTP
//! status of each reason. The crate knows nothing of axum; it reads an `http::HeaderMap` and
//! nothing else, and it does not parse paths: the server hands it a parsed
//! [`berth_oci::Route`] ([`routes`]).
//!
//! Authorization is split in two steps so that partial grants can be inspected:
//! [`Authenticator::authenticate`] establishes *who* (and, for tokens, what the token grants),
//! and the provided methods compare the resulting [`Grant`] with what is needed.
//! [`Authenticator::authorize_mount`] uses this for cross-repository blob mounts, which need
//! pull on the source and push on the target and fall back to a plain upload when the source
//! is not pullable.
//!
//! Implementations:
//! * [`NoAuth`] — everything allowed, anonymous.
//! * [`HtpasswdAuthenticator`] — HTTP Basic against a bcrypt-only htpasswd file ([`htpasswd`]);
//!   bcrypt runs on the blocking pool, successes are cached for 60 s, unknown users cost a dummy
//!   bcrypt verify. Authenticated users have all access, as in Distribution.
//! * [`TokenAuthenticator`] — Docker registry tokens (JWT), as Distribution's `token` auth:
//!   keys from a certificate bundle and/or JWKS ([`keys`]), `kid`/`x5c` key selection,
//!   `iss`/`aud`/`exp`/`nbf` checks, the `access` claim deciding per repository ([`jwt`]).
//! * [`Issuer`] — the built-in token endpoint, configured from YAML, with access rules
//!   ([`access_list`]); it signs with its own P-256/Ed25519 key and its
//!   [`Issuer::authenticator`] verifies what it issued.
//!
//! Every authentication failure emits one structured `tracing` event ([`audit`]); passwords and
//! tokens never appear in events, errors or `Debug` output.
#![warn(missing_docs)]

pub mod access_list;
pub mod audit;
pub mod basic;
pub mod challenge;
pub mod credentials;
pub mod htpasswd;
pub mod issuer;
pub mod jwt;
pub mod keys;
pub mod routes;
pub mod scope;

use std::net::IpAddr;

use async_trait::async_trait;
use http::HeaderMap;

pub use access_list::{AccessList, AccessRule};
pub use basic::{HtpasswdAuthenticator, HtpasswdConfig, NoAuth};
pub use challenge::{AuthError, BearerError, Challenge, Denial};
pub use credentials::{CredentialError, MAX_AUTHORIZATION_LEN, Presented, Secret};
pub use htpasswd::{Htpasswd, HtpasswdError, PasswordCheck, PasswordChecker};
pub use issuer::{
    IssueError, Issuer, IssuerConfig, IssuerConfigError, TokenRequest, TokenResponse,
    generate_signing_key_pem,
};
pub use jwt::{
    InsufficientScope, TokenAuthenticator, TokenConfig, TokenConfigError, TokenError, VerifiedToken,
};
pub use keys::{KeyError, KeyKind, TrustedKey, TrustedKeys, libtrust_key_id};
pub use scope::{Access, Action, Scope, ScopeError};

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Principal {
    /// No identity (no auth configured, or an anonymous token).
    Anonymous,
    /// An authenticated user.
    User(String),
}

impl Principal {
    /// The user name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User(u) => Some(u),
        }
    }
}

/// What an authenticated request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantedAccess {
    /// Everything (no auth, or htpasswd users).
    Everything,
    /// Exactly these entries (a token's `access` claim).
    Only(Vec<Access>),
}

/// The outcome of authentication: who, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The caller.
    pub principal: Principal,
    /// Their access.
    pub access: GrantedAccess,
}

impl Grant {
    /// True when every action of `scope` is granted.
    pub fn allows(&self, scope: &Scope) -> bool {
        match &self.access {
            GrantedAccess::Everything => true,
            GrantedAccess::Only(a) => scope::access_allows(a, scope),
        }
    }

    /// True when every scope is granted.
    pub fn allows_all(&self, scopes: &[Scope]) -> bool {
        scopes.iter().all(|s| self.allows(s))
    }
}

/// What to do with `POST /v2/<target>/blobs/uploads/?mount=<digest>&from=<source>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountDecision {
    /// The caller may pull the source: mount the blob (201 if it exists there).
    Mount,
    /// The caller may push the target but not pull the source: ignore `mount`/`from` and start
    /// a plain upload (202), as the spec allows.
    Upload,
}

/// Decides requests. Object-safe: hold it as `Arc<dyn Authenticator>`.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Establishes who the caller is and what they may do. Fails ([`Denial::Unauthenticated`]) when credentials are
    /// absent but required, or invalid; the challenge names `needed`. Does not check `needed`.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        needed: &[Scope],
        remote: Option<IpAddr>,
    ) -> Result<Grant, AuthError>;

    /// The error for an authenticated `grant` that lacks some of `needed` (emits an audit event).
    fn deny(&self, grant: &Grant, needed: &[Scope], remote: Option<IpAddr>) -> AuthError;

    /// Authenticates and checks that every scope of `needed` is granted. An empty `needed`
    /// (e.g. `GET /v2/`) only requires valid credentials where auth is on.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        needed: &[Scope],
        remote: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let grant = self.authenticate(headers, needed, remote).await?;
        if grant.allows_all(needed) {
            Ok(grant.principal)
        } else {
            Err(self.deny(&grant, needed, remote))
        }
    }

    /// Authorizes a cross-repository mount: push and pull on `target` are required; pull on
    /// `source` decides between [`MountDecision::Mount`] and [`MountDecision::Upload`]. The
    /// challenge (when one is sent) names both scopes so that token clients ask for both.
    async fn authorize_mount(
        &self,
        headers: &HeaderMap,
        target: &str,
        source: &str,
        remote: Option<IpAddr>,
    ) -> Result<(Principal, MountDecision), AuthError> {
        let (t, s) = routes::mount_scopes(target, source);
        let needed = [t.clone(), s.clone()];
        let grant = self.authenticate(headers, &needed, remote).await?;
        if !grant.allows(&t) {
            return Err(self.deny(&grant, &needed, remote));
        }
        let decision = if grant.allows(&s) {
            MountDecision::Mount
        } else {
            MountDecision::Upload
        };
        Ok((grant.principal, decision))
    }
}
