//! Parsing the `Authorization` header: `Basic` credentials and `Bearer` tokens, with every
//! malformed shape refused by a typed reason.

use std::fmt;

use base64::Engine as _;
use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Largest `Authorization` header accepted (8 KiB); longer ones are refused unparsed.
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;

/// A password or token that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What the client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Presented {
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Longer than [`MAX_AUTHORIZATION_LEN`].
    #[error("Authorization header is {0} bytes, more than the 8 KiB allowed")]
    TooLarge(usize),
    /// Sent more than once.
    #[error("more than one Authorization header: send exactly one")]
    Multiple,
    /// Not visible ASCII.
    #[error("Authorization header is not printable ASCII")]
    NotAscii,
    /// A scheme other than Basic or Bearer.
    #[error("unsupported Authorization scheme {0:?}: use Basic or Bearer")]
    UnknownScheme(String),
    /// Scheme with nothing after it.
    #[error("Authorization header has a scheme but no credentials")]
    Empty,
    /// Basic credentials that are not base64.
    #[error("Basic credentials are not valid base64")]
    BadBase64,
    /// Basic credentials without the `:` between user and password.
    #[error("Basic credentials lack the ':' between user name and password")]
    MissingColon,
    /// Basic credentials that are not UTF-8.
    #[error("Basic credentials are not UTF-8")]
    NotUtf8,
    /// A user name that is empty.
    #[error("Basic credentials have an empty user name")]
    EmptyUser,
}

impl CredentialError {
    /// A short machine-friendly reason for audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::TooLarge(_) => "authorization_header_too_large",
            CredentialError::Multiple => "multiple_authorization_headers",
            CredentialError::NotAscii => "authorization_header_not_ascii",
            CredentialError::UnknownScheme(_) => "unknown_authorization_scheme",
            CredentialError::Empty => "empty_credentials",
            CredentialError::BadBase64 => "basic_bad_base64",
            CredentialError::MissingColon => "basic_missing_colon",
            CredentialError::NotUtf8 => "basic_not_utf8",
            CredentialError::EmptyUser => "basic_empty_user",
        }
    }
}

/// Reads the `Authorization` header: `Ok(None)` when absent.
pub fn parse_authorization(headers: &HeaderMap) -> Result<Option<Presented>, CredentialError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CredentialError::Multiple);
    }
    let bytes = value.as_bytes();
    if bytes.len() > MAX_AUTHORIZATION_LEN {
        return Err(CredentialError::TooLarge(bytes.len()));
    }
    let text = value.to_str().map_err(|_| CredentialError::NotAscii)?;
    parse_authorization_value(text).map(Some)
}

/// Parses one `Authorization` value (`Basic ...` or `Bearer ...`; the scheme is case-insensitive).
pub fn parse_authorization_value(text: &str) -> Result<Presented, CredentialError> {
    if text.len() > MAX_AUTHORIZATION_LEN {
        return Err(CredentialError::TooLarge(text.len()));
    }
    let text = text.trim();
    let (scheme, rest) = match text.split_once([' ', '\t']) {
        Some((s, r)) => (s, r.trim()),
        None => (text, ""),
    };
    if scheme.eq_ignore_ascii_case("basic") {
        if rest.is_empty() {
            return Err(CredentialError::Empty);
        }
        let (user, password) = decode_basic(rest)?;
        Ok(Presented::Basic { user, password })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest.contains([' ', '\t']) {
            return Err(CredentialError::Empty);
        }
        Ok(Presented::Bearer(Secret::new(rest)))
    } else {
        Err(CredentialError::UnknownScheme(
            scheme.chars().take(32).collect(),
        ))
    }
}

/// Decodes the base64 part of Basic credentials into user and password.
pub fn decode_basic(b64: &str) -> Result<(String, Secret), CredentialError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        .map_err(|_| CredentialError::BadBase64)?;
    let text = String::from_utf8(raw).map_err(|_| CredentialError::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(CredentialError::MissingColon)?;
    if user.is_empty() {
        return Err(CredentialError::EmptyUser);
    }
    Ok((user.to_owned(), Secret::new(password)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn headers(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        h
    }

    #[test]
    fn good_headers() {
        assert_eq!(parse_authorization(&HeaderMap::new()), Ok(None));
        let h = headers(format!("Basic {}", b64(b"alice:pa:ss")).as_bytes());
        assert_eq!(
            parse_authorization(&h),
            Ok(Some(Presented::Basic {
                user: "alice".into(),
                password: Secret::new("pa:ss")
            }))
        );
        let h = headers(format!("basic   {}", b64(b"bob:")).as_bytes());
        assert!(matches!(
            parse_authorization(&h),
            Ok(Some(Presented::Basic { .. }))
        ));
        let h = headers(b"BEARER abc.def.ghi");
        assert_eq!(
            parse_authorization(&h),
            Ok(Some(Presented::Bearer(Secret::new("abc.def.ghi"))))
        );
        // No padding is tolerated.
        assert!(decode_basic(b64(b"ab:c").trim_end_matches('=')).is_ok());
    }

    #[test]
    fn bad_headers() {
        let cases: Vec<(Vec<u8>, CredentialError)> = vec![
            (b"Basic !!!notbase64".to_vec(), CredentialError::BadBase64),
            (
                format!("Basic {}", b64(b"nocolon")).into_bytes(),
                CredentialError::MissingColon,
            ),
            (
                format!("Basic {}", b64(b":pw")).into_bytes(),
                CredentialError::EmptyUser,
            ),
            (
                format!("Basic {}", b64(b"u\xff:pw")).into_bytes(),
                CredentialError::NotUtf8,
            ),
            (
                b"Digest username=x".to_vec(),
                CredentialError::UnknownScheme("Digest".into()),
            ),
            (b"Basic".to_vec(), CredentialError::Empty),
            (b"Bearer ".to_vec(), CredentialError::Empty),
            (b"Bearer a b".to_vec(), CredentialError::Empty),
            (b"Basic \xe9t\xe9".to_vec(), CredentialError::NotAscii),
        ];
        for (v, want) in cases {
            assert_eq!(
                parse_authorization(&headers(&v)),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&v)
            );
        }
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
        assert!(matches!(
            parse_authorization(&headers(huge.as_bytes())),
            Err(CredentialError::TooLarge(_))
        ));
        let mut two = headers(b"Bearer a");
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(parse_authorization(&two), Err(CredentialError::Multiple));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let p = Presented::Basic {
            user: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
