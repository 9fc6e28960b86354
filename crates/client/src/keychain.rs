//! The [`Keychain`]: where a [`Client`](crate::Client) finds credentials for its registry.
//!
//! The caller builds it from what it knows (flags, values it read from its own environment,
//! the path of a Docker `config.json`); the library reads no environment variable and no home
//! directory, so an embedder decides exactly where secrets come from.

use std::path::{Path, PathBuf};

use crate::credentials::{self, Credentials};
use crate::error::Result;

/// One place credentials may come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// These credentials for every registry (flags, or values the caller took from its
    /// environment).
    Static(Credentials),
    /// Docker's `config.json` in this directory: `auths`, `credHelpers` and `credsStore`.
    DockerConfig(PathBuf),
}

/// Sources of credentials, tried in order; the first one that has credentials for the
/// registry wins. The default keychain is empty: anonymous access.
#[derive(Debug, Clone, Default)]
pub struct Keychain {
    sources: Vec<KeySource>,
}

impl Keychain {
    /// A keychain with no sources: every request is anonymous.
    pub fn anonymous() -> Self {
        Keychain::default()
    }

    /// Adds static credentials, tried after the sources added before.
    pub fn with_static(mut self, creds: Credentials) -> Self {
        self.sources.push(KeySource::Static(creds));
        self
    }

    /// Adds Docker's `config.json` in `dir`, tried after the sources added before.
    pub fn with_docker_config(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sources.push(KeySource::DockerConfig(dir.into()));
        self
    }

    /// The sources, in the order they are tried.
    pub fn sources(&self) -> &[KeySource] {
        &self.sources
    }

    /// Whether the keychain has a source that must be read from disk or a helper program
    /// (the client then resolves it on a blocking thread).
    pub(crate) fn needs_blocking(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s, KeySource::DockerConfig(_)))
    }

    /// The credentials for `registry`, if any source has them. May run a Docker credential
    /// helper, so call it from a blocking context when [`Keychain::needs_blocking`].
    pub(crate) fn resolve(&self, registry: &str) -> Result<Option<Credentials>> {
        for source in &self.sources {
            let found = match source {
                KeySource::Static(c) => Some(c.clone()),
                KeySource::DockerConfig(dir) => {
                    credentials::from_docker_config(Path::new(dir), registry)?
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

impl From<Credentials> for Keychain {
    fn from(creds: Credentials) -> Self {
        Keychain::anonymous().with_static(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_tried_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let saved = Credentials::basic("saved", "pw");
        credentials::store_docker_login(dir.path(), "reg:1", &saved).unwrap();
        let chain = Keychain::anonymous().with_docker_config(dir.path());
        assert_eq!(chain.resolve("reg:1").unwrap(), Some(saved));
        assert_eq!(chain.resolve("other:1").unwrap(), None);
        let flags = Credentials::basic("flag", "pw");
        let chain = Keychain::from(flags.clone()).with_docker_config(dir.path());
        assert_eq!(chain.resolve("reg:1").unwrap(), Some(flags));
        assert_eq!(Keychain::anonymous().resolve("reg:1").unwrap(), None);
    }
}
