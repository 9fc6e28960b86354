//! The one mapping from errors to HTTP responses with the spec's JSON body.

use axum::response::{IntoResponse, Response};
use berth_oci::{ErrorBody, ErrorCode};
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
        if code == ErrorCode::Unknown {
            // Log the real cause; answer a short message without internal paths.
            let mut chain = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                src = s.source();
            }
            tracing::error!(error = chain, "internal error");
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
        let body =
            serde_json::to_vec(&ErrorBody::single(self.code, self.message)).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}
