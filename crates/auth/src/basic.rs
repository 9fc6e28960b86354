//! The two simple authenticators: [`NoAuth`] (everything allowed) and
//! [`HtpasswdAuthenticator`] (HTTP Basic against a bcrypt htpasswd file).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use http::HeaderMap;
use serde::Deserialize;

use crate::audit;
use crate::challenge::{AuthError, Challenge};
use crate::credentials::{Presented, parse_authorization};
use crate::htpasswd::{Htpasswd, HtpasswdError, PasswordCheck, PasswordChecker};
use crate::scope::Scope;
use crate::{Authenticator, Grant, GrantedAccess, Principal};

/// No authentication: every request is anonymous and allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

#[async_trait]
impl Authenticator for NoAuth {
    async fn authenticate(
        &self,
        _: &HeaderMap,
        _: &[Scope],
        _: Option<IpAddr>,
    ) -> Result<Grant, AuthError> {
        Ok(Grant {
            principal: Principal::Anonymous,
            access: GrantedAccess::Everything,
        })
    }

    fn deny(&self, _: &Grant, needed: &[Scope], _: Option<IpAddr>) -> AuthError {
        // Unreachable in practice: NoAuth grants everything.
        AuthError::denied("access denied", None, needed)
    }
}

/// Configuration of htpasswd (Basic) authentication, as in Distribution's `auth.htpasswd`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdConfig {
    /// The realm shown by clients.
    pub realm: String,
    /// The htpasswd file (bcrypt entries only).
    pub path: PathBuf,
}

/// HTTP Basic authentication against an htpasswd file. Every authenticated user has all access
/// (as in Distribution); anonymous requests get a 401 `Basic` challenge.
#[derive(Debug)]
pub struct HtpasswdAuthenticator {
    realm: String,
    checker: PasswordChecker,
}

impl HtpasswdAuthenticator {
    /// Loads the file named by `config` (refusing any non-bcrypt entry).
    pub fn from_config(config: &HtpasswdConfig) -> Result<Self, HtpasswdError> {
        Self::load(&config.realm, &config.path)
    }

    /// Loads `path`.
    pub fn load(realm: &str, path: &Path) -> Result<Self, HtpasswdError> {
        Ok(Self::new(
            realm,
            PasswordChecker::new(Htpasswd::load(path)?),
        ))
    }

    /// From an already built checker.
    pub fn new(realm: &str, checker: PasswordChecker) -> Self {
        HtpasswdAuthenticator {
            realm: realm.to_owned(),
            checker,
        }
    }

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(&self) -> Challenge {
        Challenge::Basic {
            realm: self.realm.clone(),
        }
    }

    fn unauthorized(&self, message: &str, needed: &[Scope]) -> AuthError {
        AuthError::unauthorized(message, &self.challenge(), needed)
    }
}

#[async_trait]
impl Authenticator for HtpasswdAuthenticator {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        needed: &[Scope],
        remote: Option<IpAddr>,
    ) -> Result<Grant, AuthError> {
        match parse_authorization(headers) {
            Ok(None) => Err(self.unauthorized("authentication required", needed)),
            Ok(Some(Presented::Basic { user, password })) => {
                let result = self.checker.check(&user, password.expose()).await;
                if result == PasswordCheck::Busy {
                    return Err(AuthError::busy(needed));
                }
                if result == PasswordCheck::Ok {
                    Ok(Grant {
                        principal: Principal::User(user),
                        access: GrantedAccess::Everything,
                    })
                } else {
                    audit::auth_failure("basic", Some(&user), result.reason(), remote);
                    Err(self.unauthorized("invalid username or password", needed))
                }
            }
            Ok(Some(Presented::Bearer(_))) => {
                audit::auth_failure("bearer", None, "bearer_sent_to_basic_auth", remote);
                Err(self.unauthorized("this registry accepts Basic credentials only", needed))
            }
            Err(e) => {
                audit::auth_failure("basic", None, e.reason(), remote);
                Err(self.unauthorized(&format!("malformed Authorization header: {e}"), needed))
            }
        }
    }

    fn deny(&self, grant: &Grant, needed: &[Scope], remote: Option<IpAddr>) -> AuthError {
        audit::auth_failure("basic", grant.principal.name(), "denied", remote);
        AuthError::denied("access denied", None, needed)
    }
}
