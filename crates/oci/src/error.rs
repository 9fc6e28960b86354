//! The error codes of the OCI Distribution Spec and the JSON body registries answer with.

use serde::{Deserialize, Serialize};

/// An error code from the OCI Distribution Spec (plus Docker's `UNAUTHORIZED`-family codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload is invalid.
    BlobUploadInvalid,
    /// Blob upload is unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Blob unknown to registry (referenced by a manifest).
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// Manifest tag did not match URI (also used for invalid tags).
    TagInvalid,
    /// Requested range not satisfiable.
    RangeInvalid,
    /// Request entity too large (Docker's extension).
    SizeTooLarge,
    /// The service is unavailable for now (Distribution's `UNAVAILABLE`, 503): retry later.
    Unavailable,
    /// Something failed inside the registry.
    Unknown,
}

impl ErrorCode {
    /// The code string used on the wire.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BlobUnknown => "BLOB_UNKNOWN",
            BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid => "DIGEST_INVALID",
            ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid => "MANIFEST_INVALID",
            ManifestUnknown => "MANIFEST_UNKNOWN",
            NameInvalid => "NAME_INVALID",
            NameUnknown => "NAME_UNKNOWN",
            SizeInvalid => "SIZE_INVALID",
            Unauthorized => "UNAUTHORIZED",
            Denied => "DENIED",
            Unsupported => "UNSUPPORTED",
            TooManyRequests => "TOOMANYREQUESTS",
            TagInvalid => "TAG_INVALID",
            RangeInvalid => "RANGE_INVALID",
            SizeTooLarge => "SIZE_INVALID",
            Unavailable => "UNAVAILABLE",
            Unknown => "UNKNOWN",
        }
    }

    /// Parses a wire code (unknown strings map to [`ErrorCode::Unknown`]).
    pub fn parse(s: &str) -> Self {
        use ErrorCode::*;
        match s {
            "BLOB_UNKNOWN" => BlobUnknown,
            "BLOB_UPLOAD_INVALID" => BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => BlobUploadUnknown,
            "DIGEST_INVALID" => DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => ManifestBlobUnknown,
            "MANIFEST_INVALID" => ManifestInvalid,
            "MANIFEST_UNKNOWN" => ManifestUnknown,
            "NAME_INVALID" => NameInvalid,
            "NAME_UNKNOWN" => NameUnknown,
            "SIZE_INVALID" => SizeInvalid,
            "UNAUTHORIZED" => Unauthorized,
            "DENIED" => Denied,
            "UNSUPPORTED" => Unsupported,
            "TOOMANYREQUESTS" => TooManyRequests,
            "TAG_INVALID" => TagInvalid,
            "RANGE_INVALID" => RangeInvalid,
            "UNAVAILABLE" => Unavailable,
            _ => Unknown,
        }
    }

    /// The HTTP status the spec pairs with this code.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BlobUnknown | BlobUploadUnknown | ManifestUnknown | NameUnknown => 404,
            BlobUploadInvalid | DigestInvalid | ManifestBlobUnknown | ManifestInvalid
            | NameInvalid | SizeInvalid | TagInvalid => 400,
            Unauthorized => 401,
            Denied => 403,
            Unsupported => 405,
            TooManyRequests => 429,
            RangeInvalid => 416,
            SizeTooLarge => 413,
            Unavailable => 503,
            Unknown => 500,
        }
    }
}

/// One entry of an error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    /// The spec's code string.
    pub code: String,
    /// A sentence for humans.
    #[serde(default)]
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The JSON body of a registry error response: `{"errors":[...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// The errors.
    pub errors: Vec<ErrorInfo>,
}

impl ErrorBody {
    /// A body with one error.
    pub fn single(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            errors: vec![ErrorInfo {
                code: code.as_str().to_owned(),
                message: message.into(),
                detail: None,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let b = ErrorBody::single(ErrorCode::BlobUnknown, "blob unknown to registry");
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(
            j,
            r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
        );
        assert_eq!(ErrorCode::parse("BLOB_UNKNOWN"), ErrorCode::BlobUnknown);
        assert_eq!(ErrorCode::RangeInvalid.http_status(), 416);
    }
}
