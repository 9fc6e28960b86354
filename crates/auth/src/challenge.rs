//! The [`AuthError`] every authenticator answers with. The `WWW-Authenticate` challenge it
//! carries is [`berth_oci::token::Challenge`], re-exported here.
//!
//! This crate decides *whether* a request may go on and why not ([`Denial`]); the server picks
//! the HTTP status that answers each reason.

use berth_oci::{ErrorBody, ErrorCode, ErrorInfo};

pub use berth_oci::token::{BearerError, Challenge};

use crate::scope::Scope;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Denial {
    /// The caller must (re)authenticate: credentials are absent, malformed or wrong, or (for
    /// tokens, as Distribution does by default) a valid token lacks the scope and the client
    /// may fetch a new one for the scope the challenge names. Spec code `UNAUTHORIZED`.
    Unauthenticated,
    /// The caller is known and may not do this. Spec code `DENIED`.
    Denied,
    /// Credentials could not be checked now: too many password checks are waiting. The caller
    /// should retry shortly (the server answers 429 with `Retry-After`). Spec code
    /// `TOOMANYREQUESTS`.
    Busy,
}

impl Denial {
    /// The spec error code of this reason.
    pub fn code(self) -> ErrorCode {
        match self {
            Denial::Unauthenticated => ErrorCode::Unauthorized,
            Denial::Denied => ErrorCode::Denied,
            Denial::Busy => ErrorCode::TooManyRequests,
        }
    }
}

/// Why a request was refused: the reason, a message, the challenge to send and the scopes that
/// were needed.
///
/// A server answers with a status for [`AuthError::reason`], the JSON of [`AuthError::body`],
/// and, when [`AuthError::www_authenticate`] is `Some`, a `WWW-Authenticate` header with
/// exactly that value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct AuthError {
    /// Why.
    pub reason: Denial,
    /// A sentence for the client (never contains a password or token).
    pub message: String,
    /// The `WWW-Authenticate` header value to send, if any.
    pub www_authenticate: Option<String>,
    /// The scopes that were needed (reported in the body's `detail`, as Distribution does).
    pub needed: Vec<Scope>,
}

impl AuthError {
    /// A [`Denial::Unauthenticated`] refusal carrying `challenge`.
    pub fn unauthorized(
        message: impl Into<String>,
        challenge: &Challenge,
        needed: &[Scope],
    ) -> Self {
        AuthError {
            reason: Denial::Unauthenticated,
            message: message.into(),
            www_authenticate: Some(challenge.to_string()),
            needed: needed.to_vec(),
        }
    }

    /// A [`Denial::Busy`] refusal: the password could not be checked now.
    pub fn busy(needed: &[Scope]) -> Self {
        AuthError {
            reason: Denial::Busy,
            message: "too many sign-ins are being checked at once: retry in a few seconds".into(),
            www_authenticate: None,
            needed: needed.to_vec(),
        }
    }

    /// A [`Denial::Denied`] refusal, optionally with a challenge.
    pub fn denied(
        message: impl Into<String>,
        challenge: Option<&Challenge>,
        needed: &[Scope],
    ) -> Self {
        AuthError {
            reason: Denial::Denied,
            message: message.into(),
            www_authenticate: challenge.map(ToString::to_string),
            needed: needed.to_vec(),
        }
    }

    /// The spec error code: `UNAUTHORIZED` or `DENIED`.
    pub fn code(&self) -> ErrorCode {
        self.reason.code()
    }

    /// The needed access as `[{"Type","Name","Action"}, ...]`, one entry per action (`None`
    /// when nothing was needed).
    pub fn detail(&self) -> Option<serde_json::Value> {
        let detail: Vec<serde_json::Value> = self
            .needed
            .iter()
            .flat_map(|s| {
                s.actions.iter().map(move |a| {
                    serde_json::json!({"Type": s.resource_type, "Name": s.name, "Action": a.as_str()})
                })
            })
            .collect();
        (!detail.is_empty()).then_some(serde_json::Value::Array(detail))
    }

    /// The registry error body: `{"errors":[{"code":"UNAUTHORIZED","message":...,"detail":[...]}]}`
    /// where `detail` is [`AuthError::detail`].
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            errors: vec![ErrorInfo {
                code: self.code().as_str().to_owned(),
                message: self.message.clone(),
                detail: self.detail(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Action;

    #[test]
    fn error_body_has_detail() {
        let needed = [Scope::repository("a", &[Action::Pull, Action::Push])];
        let e = AuthError::unauthorized(
            "authentication required",
            &Challenge::Basic { realm: "x".into() },
            &needed,
        );
        assert_eq!(e.reason, Denial::Unauthenticated);
        assert_eq!(e.www_authenticate.as_deref(), Some(r#"Basic realm="x""#));
        let j = serde_json::to_value(e.body()).unwrap();
        assert_eq!(j["errors"][0]["code"], "UNAUTHORIZED");
        assert_eq!(j["errors"][0]["detail"][1]["Action"], "push");
        let d = AuthError::denied("no", None, &[]);
        assert_eq!(d.reason, Denial::Denied);
        assert_eq!(d.code().as_str(), "DENIED");
        assert!(
            serde_json::to_value(d.body()).unwrap()["errors"][0]
                .get("detail")
                .is_none()
        );
    }
}
