//! `WWW-Authenticate` challenges and the [`AuthError`] every authenticator answers with.

use std::fmt;

use berth_oci::{ErrorBody, ErrorCode, ErrorInfo};
use http::StatusCode;

use crate::scope::{Scope, join_scopes, merge_scopes};

/// The `error` parameter of a Bearer challenge (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// The token is malformed, expired, for another service, or signed by an unknown key.
    InvalidToken,
    /// The token is valid but does not grant the needed scope.
    InsufficientScope,
}

impl BearerError {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// `Basic realm="..."`.
    Basic {
        /// The realm shown to users.
        realm: String,
    },
    /// `Bearer realm="...",service="...",scope="..."[,error="..."]`.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The service name tokens must be issued for.
        service: String,
        /// The scopes needed (merged per resource and joined by spaces, as Distribution does).
        scopes: Vec<Scope>,
        /// Why an offered token was refused, if one was offered.
        error: Option<BearerError>,
    },
}

/// Quotes a challenge parameter value (RFC 9110 quoted-string: `\` and `"` are escaped; control
/// characters are dropped so that a configured value can never split the header).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Challenge::Basic { realm } => write!(f, "Basic realm={}", quote(realm)),
            Challenge::Bearer {
                realm,
                service,
                scopes,
                error,
            } => {
                write!(
                    f,
                    "Bearer realm={},service={}",
                    quote(realm),
                    quote(service)
                )?;
                let merged = merge_scopes(scopes);
                if !merged.is_empty() {
                    write!(f, ",scope={}", quote(&join_scopes(&merged)))?;
                }
                if let Some(e) = error {
                    write!(f, ",error={}", quote(e.as_str()))?;
                }
                Ok(())
            }
        }
    }
}

/// Why a request was refused: everything the server needs to answer it.
///
/// Answer with [`AuthError::status`], the JSON of [`AuthError::body`] (content type
/// `application/json`), and, when [`AuthError::www_authenticate`] is `Some`, a
/// `WWW-Authenticate` header with exactly that value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct AuthError {
    /// 401 or 403.
    pub status: StatusCode,
    /// `UNAUTHORIZED` (401) or `DENIED` (403).
    pub code: ErrorCode,
    /// A sentence for the client (never contains a password or token).
    pub message: String,
    /// The `WWW-Authenticate` header value to send, if any.
    pub www_authenticate: Option<String>,
    /// The scopes that were needed (reported in the body's `detail`, as Distribution does).
    pub needed: Vec<Scope>,
}

impl AuthError {
    /// A 401 `UNAUTHORIZED` carrying `challenge`.
    pub fn unauthorized(
        message: impl Into<String>,
        challenge: &Challenge,
        needed: &[Scope],
    ) -> Self {
        AuthError {
            status: StatusCode::UNAUTHORIZED,
            code: ErrorCode::Unauthorized,
            message: message.into(),
            www_authenticate: Some(challenge.to_string()),
            needed: needed.to_vec(),
        }
    }

    /// A 403 `DENIED`, optionally with a challenge.
    pub fn denied(
        message: impl Into<String>,
        challenge: Option<&Challenge>,
        needed: &[Scope],
    ) -> Self {
        AuthError {
            status: StatusCode::FORBIDDEN,
            code: ErrorCode::Denied,
            message: message.into(),
            www_authenticate: challenge.map(ToString::to_string),
            needed: needed.to_vec(),
        }
    }

    /// The registry error body: `{"errors":[{"code":"UNAUTHORIZED","message":...,"detail":[...]}]}`
    /// where `detail` lists the needed access as `{"Type","Name","Action"}` objects.
    pub fn body(&self) -> ErrorBody {
        let detail: Vec<serde_json::Value> = self
            .needed
            .iter()
            .flat_map(|s| {
                s.actions.iter().map(move |a| {
                    serde_json::json!({"Type": s.resource_type, "Name": s.name, "Action": a.as_str()})
                })
            })
            .collect();
        ErrorBody {
            errors: vec![ErrorInfo {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
                detail: (!detail.is_empty()).then_some(serde_json::Value::Array(detail)),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Action;

    #[test]
    fn basic_challenge() {
        let c = Challenge::Basic {
            realm: "Berth \"registry\"".into(),
        };
        assert_eq!(c.to_string(), r#"Basic realm="Berth \"registry\"""#);
    }

    #[test]
    fn bearer_challenge_names_scopes() {
        let c = Challenge::Bearer {
            realm: "https://r.example/token".into(),
            service: "berth".into(),
            scopes: vec![
                Scope::repository("a", &[Action::Pull]),
                Scope::repository("b", &[Action::Pull]),
                Scope::repository("a", &[Action::Push]),
            ],
            error: None,
        };
        assert_eq!(
            c.to_string(),
            r#"Bearer realm="https://r.example/token",service="berth",scope="repository:a:pull,push repository:b:pull""#
        );
        let c = Challenge::Bearer {
            realm: "r\n".into(),
            service: "s".into(),
            scopes: vec![],
            error: Some(BearerError::InsufficientScope),
        };
        assert_eq!(
            c.to_string(),
            r#"Bearer realm="r",service="s",error="insufficient_scope""#
        );
    }

    #[test]
    fn error_body_has_detail() {
        let needed = [Scope::repository("a", &[Action::Pull, Action::Push])];
        let e = AuthError::unauthorized(
            "authentication required",
            &Challenge::Basic { realm: "x".into() },
            &needed,
        );
        assert_eq!(e.status, 401);
        assert_eq!(e.www_authenticate.as_deref(), Some(r#"Basic realm="x""#));
        let j = serde_json::to_value(e.body()).unwrap();
        assert_eq!(j["errors"][0]["code"], "UNAUTHORIZED");
        assert_eq!(j["errors"][0]["detail"][1]["Action"], "push");
        let d = AuthError::denied("no", None, &[]);
        assert_eq!(d.status, 403);
        assert_eq!(d.code.as_str(), "DENIED");
        assert!(
            serde_json::to_value(d.body()).unwrap()["errors"][0]
                .get("detail")
                .is_none()
        );
    }
}
