//! The errors every client operation returns, in classes callers can match on.

use berth_oci::{Digest, ErrorBody, ErrorCode, ReferenceError};

/// Shorthand for results of client operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a registry.
///
/// The variants are classes a caller (or a script through the CLI's exit code) can act on:
/// fix the credentials, ask for rights, check the name, fix the TLS setup, check the network,
/// or report a broken registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry refused the credentials (or demanded some and none were configured).
    #[error("authentication failed for {registry}: {message}")]
    Authentication {
        /// The registry host.
        registry: String,
        /// What the registry or the token service said.
        message: String,
    },
    /// The credentials are valid but do not grant the operation.
    #[error("access denied by {registry}: {message}")]
    Authorization {
        /// The registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// The repository, tag, manifest or blob does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The TLS handshake or certificate verification failed.
    #[error("TLS error talking to {registry}: {message}")]
    Tls {
        /// The registry host.
        registry: String,
        /// The underlying error, as text.
        message: String,
    },
    /// The registry could not be reached (DNS, refused connection, timeout, dropped connection).
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The underlying error, as text.
        message: String,
    },
    /// The registry answered something the distribution spec does not allow.
    #[error("protocol error from {registry}: {message}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// What was wrong.
        message: String,
    },
    /// Content did not hash to the digest it was fetched or pushed by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being transferred.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The registry can only delete manifests by digest, not a single tag.
    #[error(
        "{registry} cannot delete the tag {tag} alone: it only deletes manifests by digest, and deleting {digest} would remove every tag pointing to it{others}"
    )]
    TagDeleteUnsupported {
        /// The registry host.
        registry: String,
        /// The tag asked to delete.
        tag: String,
        /// The manifest the tag points to.
        digest: Digest,
        /// Other tags known to point to the same digest, pre-formatted (may be empty).
        others: String,
    },
    /// The registry answered an error that fits no other class.
    #[error("registry {registry} answered {status}{}", fmt_body(.code, .message))]
    Registry {
        /// The registry host.
        registry: String,
        /// The HTTP status.
        status: u16,
        /// The first error code of the body, if any.
        code: Option<ErrorCode>,
        /// The message of the body (or a snippet of a non-JSON body).
        message: String,
    },
    /// A reference string could not be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Input given to the library is invalid (bad layout, bad manifest, bad option).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Reading or writing local files failed.
    #[error("I/O error: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Looking up credentials failed (unreadable config file, failing helper).
    #[error("credentials: {0}")]
    Credentials(String),
}

fn fmt_body(code: &Option<ErrorCode>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(" {}: {message}", c.as_str()),
        (Some(c), true) => format!(" {}", c.as_str()),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is an authentication or authorization failure.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::Authentication { .. } | Error::Authorization { .. }
        )
    }

    /// Whether retrying the same operation may succeed (network trouble, server overload).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Registry { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A one-line hint for a human about what to do next.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Error::Authentication { .. } => {
                "check the credentials (berth login HOST, --creds user:pass, or Docker's config.json)"
            }
            Error::Authorization { .. } => {
                "the account lacks rights for this repository; ask the registry's admin"
            }
            Error::NotFound { .. } => {
                "check the repository name, tag or digest (berth tags REPO lists tags)"
            }
            Error::Tls { .. } => {
                "pass --ca-file with the registry's CA, or --insecure if you trust the network"
            }
            Error::Unreachable { .. } => {
                "check the host and port, the network, and whether the registry uses HTTP (--plain-http)"
            }
            Error::Protocol { .. } => {
                "the server does not behave like an OCI registry; check the host and port"
            }
            Error::DigestMismatch { .. } => {
                "the content is corrupt in transit or at the source; nothing was tagged"
            }
            Error::TagDeleteUnsupported { .. } => {
                "delete by digest (berth rm REPO@DIGEST) if removing every tag of that manifest is intended"
            }
            _ => return None,
        })
    }

    /// Builds an error from a registry's error response.
    pub(crate) fn from_response(registry: &str, status: u16, body: &[u8], what: &str) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, message) = match parsed.as_ref().and_then(|b| b.errors.first()) {
            Some(e) => (Some(ErrorCode::parse(&e.code)), e.message.clone()),
            None => (None, snippet(body)),
        };
        match status {
            401 => Error::Authentication {
                registry: registry.to_owned(),
                message: or(message, "unauthorized"),
            },
            403 => Error::Authorization {
                registry: registry.to_owned(),
                message: or(message, "denied"),
            },
            404 => Error::NotFound {
                what: what.to_owned(),
            },
            _ => Error::Registry {
                registry: registry.to_owned(),
                status,
                code,
                message,
            },
        }
    }
}

fn or(s: String, default: &str) -> String {
    if s.is_empty() { default.to_owned() } else { s }
}

/// The first printable part of a body, for error messages (never more than 200 characters).
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}
