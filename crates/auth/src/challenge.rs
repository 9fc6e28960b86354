//! The [`AuthError`] every authenticator answers with. The `WWW-Authenticate` challenge it
//! carries is [`berth_oci::token::Challenge`], re-exported here.

use berth_oci::{ErrorBody, ErrorCode, ErrorInfo};
use http::StatusCode;

pub use berth_oci::token::{BearerError, Challenge};

use crate::scope::Scope;

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
