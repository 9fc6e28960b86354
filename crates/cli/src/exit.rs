//! Exit codes, and which failure gets which code and hint: the one table scripts and `--help`
//! rely on. Every command (client, build, serve) fails with a [`Failure`]; `main` prints it and
//! exits with its code.

use std::fmt::Display;
use std::process::ExitCode;

use berth_client::Error as ClientError;

/// What kind of failure ended a command; each kind has one documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Anything else: corrupt content, a registry error, an unreadable rootfs or archive.
    Other,
    /// Bad arguments, reference or config file.
    Usage,
    /// The repository, tag, manifest, blob or base image does not exist.
    NotFound,
    /// Credentials refused or missing, or not allowed.
    Auth,
    /// The registry could not be reached, or TLS failed.
    Network,
}

/// Each kind's exit code and what it means in `--help`. The codes are documented in README.md
/// and asserted by the end-to-end tests: change neither lightly.
const TABLE: [(ExitKind, u8, &str); 5] = [
    (
        ExitKind::Other,
        1,
        "other failure (corrupt content or archive, unreadable rootfs, registry error)",
    ),
    (
        ExitKind::Usage,
        2,
        "usage (bad arguments, reference or config file)",
    ),
    (
        ExitKind::NotFound,
        3,
        "not found (repository, tag, manifest, blob or base image)",
    ),
    (ExitKind::Auth, 4, "authentication or authorization"),
    (ExitKind::Network, 5, "registry unreachable or TLS failure"),
];

impl ExitKind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        TABLE
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .map_or(1, |(_, code, _)| *code)
    }
}

/// The exit codes, shown after every registry and build command's help.
pub fn help() -> String {
    let mut s = String::from("Exit codes: 0 ok");
    for (_, code, meaning) in TABLE {
        s.push_str(&format!(", {code} {meaning}"));
    }
    s.push('.');
    s
}

/// The kind and the hint for an error of the registry client. The hints name `berth` flags
/// and commands, so they live here rather than in the library.
fn classify(e: &ClientError) -> (ExitKind, Option<&'static str>) {
    match e {
        ClientError::NotFound { .. } => (
            ExitKind::NotFound,
            Some("check the repository name, tag or digest (berth tags REPO lists tags)"),
        ),
        ClientError::Authentication { .. } => (
            ExitKind::Auth,
            Some(
                "check the credentials (berth login HOST, --creds user:pass, or Docker's config.json)",
            ),
        ),
        ClientError::Authorization { .. } => (
            ExitKind::Auth,
            Some("the account lacks rights for this repository; ask the registry's admin"),
        ),
        ClientError::Tls { .. } => (
            ExitKind::Network,
            Some("pass --ca-file with the registry's CA, or --insecure if you trust the network"),
        ),
        ClientError::Unreachable { .. } => (
            ExitKind::Network,
            Some(
                "check the host and port, the network, and whether the registry uses HTTP (--plain-http)",
            ),
        ),
        ClientError::Reference(_) | ClientError::Invalid(_) => (ExitKind::Usage, None),
        ClientError::Protocol { .. } => (
            ExitKind::Other,
            Some("the server does not behave like an OCI registry; check the host and port"),
        ),
        ClientError::DigestMismatch { .. } => (
            ExitKind::Other,
            Some("the content is corrupt in transit or at the source; nothing was tagged"),
        ),
        ClientError::TagDeleteUnsupported { .. } => (
            ExitKind::Other,
            Some(
                "delete by digest (berth rm REPO@DIGEST) if removing every tag of that manifest is intended",
            ),
        ),
        _ => (ExitKind::Other, None),
    }
}

/// Why a command failed: the exit kind, the error with its causes, and what to do about it.
#[derive(Debug)]
pub struct Failure {
    kind: ExitKind,
    error: anyhow::Error,
    hint: Option<String>,
}

impl Failure {
    /// A failure of the given kind.
    pub fn new(kind: ExitKind, error: impl Into<anyhow::Error>) -> Self {
        Self {
            kind,
            error: error.into(),
            hint: None,
        }
    }

    /// Bad arguments: exit code 2.
    pub fn usage(msg: impl Display) -> Self {
        Self::new(ExitKind::Usage, anyhow::Error::msg(msg.to_string()))
    }

    /// The same failure with a hint for the user.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Any other failure: exit code 1.
    pub fn other(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ExitKind::Other, error)
    }

    /// A registry client error, with its kind and hint from the table; `context` (may be
    /// empty) says what was being done.
    pub fn client(context: &str, e: ClientError) -> Self {
        let (kind, hint) = classify(&e);
        let error = anyhow::Error::new(e);
        let error = if context.is_empty() {
            error
        } else {
            error.context(context.to_owned())
        };
        Self {
            kind,
            error,
            hint: hint.map(str::to_owned),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.code())
    }

    /// What is printed on standard error: `error: ` with the cause chain on one line, then
    /// `hint: ` on a line of its own.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}", self.error);
        let mut last = self.error.to_string();
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            // Many messages already quote their source (`{context}: {source}`); saying it
            // twice would only add noise.
            if !last.contains(&cause) {
                out.push_str(": ");
                out.push_str(&cause);
            }
            last = cause;
        }
        if let Some(hint) = &self.hint {
            out.push_str("\nhint: ");
            out.push_str(hint);
        }
        out
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self::client("", e)
    }
}

/// An error and its causes joined by `: `, for log lines.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            ExitKind::Other,
            ExitKind::Usage,
            ExitKind::NotFound,
            ExitKind::Auth,
            ExitKind::Network,
        ]
        .into_iter()
        .map(ExitKind::code)
        .collect();
        assert_eq!(codes, [1, 2, 3, 4, 5]);
        assert!(help().starts_with("Exit codes: 0 ok, 1 other failure"));
    }

    #[test]
    fn client_errors_map_to_a_code_and_a_hint() {
        let f = Failure::client(
            "pull x",
            ClientError::NotFound {
                what: "manifest x:nope".into(),
            },
        );
        assert_eq!(f.kind.code(), 3);
        let text = f.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "error: pull x: not found: manifest x:nope");
        assert!(
            lines[1].starts_with("hint: check the repository name"),
            "{text}"
        );
    }

    #[test]
    fn causes_follow_on_the_error_line_once() {
        let io = std::io::Error::other("disk full");
        let f = Failure::client(
            "",
            ClientError::Io {
                context: "writing x".into(),
                source: io,
            },
        );
        assert_eq!(f.render(), "error: I/O error: writing x: disk full");
        let chained = Failure::other(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(chained.render(), "error: outer: inner");
        assert_eq!(Failure::usage("bad").kind.code(), 2);
    }
}
