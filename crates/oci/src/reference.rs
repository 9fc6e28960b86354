//! Image references as Docker parses them: `[host[:port]/]path[:tag][@algorithm:hex]`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{NameError, validate_repository, validate_tag};

/// The registry a reference with no host part points at.
pub const DOCKER_HUB: &str = "docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("empty image reference: expected [host[:port]/]repository[:tag][@digest]")]
    Empty,
    /// The host part is malformed.
    #[error("invalid registry host {0:?} in image reference")]
    Host(String),
    /// The repository or tag is malformed.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The digest is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, such as `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path inside the registry, such as `library/ubuntu`.
    pub repository: String,
    /// Tag, if given. `latest` is filled in when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Digest, if given. When both are given, the digest wins for pulls.
    pub digest: Option<Digest>,
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn host_ok(host: &str) -> bool {
    // hostname or [ipv6] with optional :port; keep it simple but strict about characters.
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

impl Reference {
    /// A reference to `repository` on `registry` by tag.
    pub fn with_tag(registry: &str, repository: &str, tag: &str) -> Self {
        Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: Some(tag.to_owned()),
            digest: None,
        }
    }

    /// What to ask the registry for: the digest if present, otherwise the tag.
    pub fn reference_str(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_host(first) => {
                if !host_ok(first) {
                    return Err(ReferenceError::Host(first.to_owned()));
                }
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository)?;
        if let Some(t) = tag {
            validate_tag(t)?;
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalization() {
        assert_eq!(p("ubuntu").to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(p("user/app:1").to_string(), "docker.io/user/app:1");
        assert_eq!(
            p("index.docker.io/ubuntu").to_string(),
            "docker.io/library/ubuntu:latest"
        );
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p(&format!("127.0.0.1:5000/a/b:v1@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.reference_str(), d);
        let r = p(&format!("localhost/x@{d}"));
        assert_eq!((r.registry.as_str(), r.tag), ("localhost", None));
        assert_eq!(p("[::1]:5000/x").registry, "[::1]:5000");
        assert_eq!(p("localhost:5000/x").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "UPPER",
            "a:b:c",
            "host:99999999/x",
            "x@sha256:zz",
            "a/../b",
            "x:.bad",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
