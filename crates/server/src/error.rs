//! The one mapping from errors to HTTP responses: registry errors, authorization refusals and
//! token endpoint refusals all become an [`ApiError`], and only here are their HTTP statuses
//! chosen and their bodies written.

use axum::response::{IntoResponse, Response};
use berth_auth::{AuthError, Denial, IssueError};
use berth_oci::{ErrorBody, ErrorCode, ErrorInfo};
use berth_registry::RegistryError;
use http::{HeaderValue, StatusCode, header};

/// An error answer: status, spec code, message, and extra headers.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Spec error code.
    pub code: ErrorCode,
    /// Sentence for the client.
    pub message: String,
    /// Extra headers (`Range` on 416, `WWW-Authenticate` on 401).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// The shape of the JSON body.
    body: BodyShape,
}

/// How an error's JSON body is written.
#[derive(Debug)]
enum BodyShape {
    /// The Distribution spec's `{"errors":[{code, message, detail?}]}`, as
    /// `application/json; charset=utf-8`.
    Registry {
        /// The entry's `detail` (the access an authorization refusal needed).
        detail: Option<serde_json::Value>,
    },
    /// The token endpoint's body (OAuth2's `error`/`error_description` beside the registry's
    /// `errors`), as `application/json`.
    Token(serde_json::Value),
}

/// The status that answers an authorization refusal.
fn denial_status(reason: Denial) -> StatusCode {
    match reason {
        Denial::Unauthenticated => StatusCode::UNAUTHORIZED,
        Denial::Busy => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::FORBIDDEN,
    }
}

/// Seconds a client is asked to wait when password checks are saturated.
const BUSY_RETRY_AFTER: &str = "2";

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let mut err =
            ApiError::new(e.code(), e.message.clone()).with_status(denial_status(e.reason));
        err.body = BodyShape::Registry { detail: e.detail() };
        if let Some(c) = &e.www_authenticate {
            err = err.with_header(header::WWW_AUTHENTICATE, c);
        }
        if e.reason == Denial::Busy {
            err = err.with_header(header::RETRY_AFTER, BUSY_RETRY_AFTER);
        }
        err
    }
}

/// An error and its causes, joined by `: `, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    chain
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        let (status, code) = match &e {
            IssueError::Unauthorized(a) => (denial_status(a.reason), a.code()),
            IssueError::InvalidRequest(_) | IssueError::UnsupportedGrantType(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::Unsupported)
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown),
        };
        let mut err = ApiError::new(code, e.to_string()).with_status(status);
        err.body = BodyShape::Token(e.body());
        if let Some(c) = e.www_authenticate() {
            err = err.with_header(header::WWW_AUTHENTICATE, c);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            err = err.with_header(header::RETRY_AFTER, BUSY_RETRY_AFTER);
        }
        err
    }
}

impl ApiError {
    /// An error with the code's usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: vec![],
            body: BodyShape::Registry { detail: None },
        }
    }

    /// Overrides the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: http::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let code = e.code();
        if e.is_storage_full() {
            // No spec code says "full"; 507 says it to any HTTP client, the sentence to people.
            return ApiError::new(
                code,
                "the registry's storage is full: nothing was stored; push again once space is freed",
            )
            .with_status(StatusCode::INSUFFICIENT_STORAGE);
        }
        if code == ErrorCode::Unavailable {
            tracing::warn!(error = %error_chain(&e), "request refused: the index is unavailable");
            return ApiError::new(code, e.to_string()).with_header(header::RETRY_AFTER, "2");
        }
        if code == ErrorCode::Unknown {
            // Log the real cause; answer a short message without internal paths.
            tracing::error!(error = error_chain(&e), "internal error");
            return ApiError::new(code, "internal storage error; see the registry's log");
        }
        let mut err = ApiError::new(code, e.to_string());
        match &e {
            RegistryError::RangeInvalid { expected, .. } => {
                let end = expected.saturating_sub(1);
                err = err.with_header(header::RANGE, &format!("0-{end}"));
            }
            RegistryError::BlobRangeInvalid { size } => {
                err = err.with_header(header::CONTENT_RANGE, &format!("bytes */{size}"));
            }
            RegistryError::TooLarge { .. } => {
                err = ApiError::new(ErrorCode::ManifestInvalid, e.to_string())
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE);
            }
            RegistryError::Body(_) => err = err.with_status(StatusCode::BAD_REQUEST),
            _ => {}
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (body, content_type) = match self.body {
            BodyShape::Registry { detail } => {
                let body = ErrorBody {
                    errors: vec![ErrorInfo {
                        code: self.code.as_str().to_owned(),
                        message: self.message,
                        detail,
                    }],
                };
                (
                    serde_json::to_vec(&body).unwrap_or_default(),
                    "application/json; charset=utf-8",
                )
            }
            BodyShape::Token(v) => (
                serde_json::to_vec(&v).unwrap_or_default(),
                "application/json",
            ),
        };
        let mut res = (self.status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_auth::{Challenge, Scope};

    #[test]
    fn auth_refusals_get_their_status_here() {
        let challenge = Challenge::Basic { realm: "r".into() };
        let needed = [Scope::catalog()];
        let e = ApiError::from(AuthError::unauthorized("who?", &challenge, &needed));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
        );
        assert_eq!(e.headers[0].0, header::WWW_AUTHENTICATE);
        let e = ApiError::from(AuthError::denied("no", None, &needed));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, ErrorCode::Denied)
        );
        assert!(e.headers.is_empty());
    }

    #[test]
    fn token_refusals_get_their_status_here() {
        let challenge = Challenge::Basic { realm: "r".into() };
        let status = |e: IssueError| ApiError::from(e).status;
        assert_eq!(
            status(IssueError::Unauthorized(AuthError::unauthorized(
                "bad password",
                &challenge,
                &[]
            ))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(IssueError::InvalidRequest("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(IssueError::UnsupportedGrantType("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(IssueError::Signing("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
