//! Path filters: literal rootfs-relative paths or globs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use super::TarError;

enum Matcher {
    /// `.`, `/` or an empty string: the whole rootfs.
    Everything,
    /// A path without glob metacharacters.
    Literal(Vec<u8>),
    Glob(GlobMatcher),
}

struct Pattern {
    original: String,
    matcher: Matcher,
    matched: bool,
}

/// A set of path filters (see [`super::TarOptions::include`]).
pub(crate) struct PathFilter {
    patterns: Vec<Pattern>,
}

impl PathFilter {
    /// Compiles the filters; `None` when there are none (everything is included).
    pub(crate) fn new(filters: &[String]) -> Result<Option<Self>, TarError> {
        if filters.is_empty() {
            return Ok(None);
        }
        let patterns = filters
            .iter()
            .map(|original| {
                Ok(Pattern {
                    original: original.clone(),
                    matcher: compile(original)?,
                    matched: false,
                })
            })
            .collect::<Result<_, TarError>>()?;
        Ok(Some(PathFilter { patterns }))
    }

    /// Whether `rel` (rootfs-relative, no trailing slash) is matched by any filter.
    /// Every filter that matches is remembered, for [`PathFilter::first_unmatched`].
    pub(crate) fn matches(&mut self, rel: &[u8]) -> bool {
        let path = Path::new(OsStr::from_bytes(rel));
        let mut any = false;
        for pattern in &mut self.patterns {
            let hit = match &pattern.matcher {
                Matcher::Everything => true,
                Matcher::Literal(lit) => lit == rel,
                Matcher::Glob(glob) => glob.is_match(path),
            };
            if hit {
                pattern.matched = true;
                any = true;
            }
        }
        any
    }

    /// The first filter that matched nothing, if any.
    pub(crate) fn first_unmatched(&self) -> Option<&str> {
        self.patterns
            .iter()
            .find(|p| !p.matched)
            .map(|p| p.original.as_str())
    }
}

fn compile(original: &str) -> Result<Matcher, TarError> {
    let invalid = |reason: &str| TarError::InvalidFilter {
        pattern: original.to_string(),
        reason: reason.to_string(),
    };
    let mut parts = Vec::new();
    for part in original.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(invalid(
                    "`..` is not allowed; filters select paths inside the rootfs",
                ));
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Ok(Matcher::Everything);
    }
    let normalized = parts.join("/");
    if !normalized.contains(['*', '?', '[', '{', '\\']) {
        return Ok(Matcher::Literal(normalized.into_bytes()));
    }
    let glob = GlobBuilder::new(&normalized)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| invalid(&e.kind().to_string()))?;
    Ok(Matcher::Glob(glob.compile_matcher()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> PathFilter {
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        PathFilter::new(&patterns).unwrap().unwrap()
    }

    #[test]
    fn empty_list_is_no_filter() {
        assert!(PathFilter::new(&[]).unwrap().is_none());
    }

    #[test]
    fn literal_paths_are_normalized() {
        let mut f = filter(&["/usr/bin/app", "./etc//hosts/"]);
        assert!(f.matches(b"usr/bin/app"));
        assert!(f.matches(b"etc/hosts"));
        assert!(!f.matches(b"usr/bin"));
        assert!(f.first_unmatched().is_none());
    }

    #[test]
    fn star_does_not_cross_slash_but_double_star_does() {
        let mut f = filter(&["usr/lib/*.so"]);
        assert!(f.matches(b"usr/lib/libc.so"));
        assert!(!f.matches(b"usr/lib/x/libd.so"));
        let mut f = filter(&["etc/**/*.conf"]);
        assert!(f.matches(b"etc/a/b/c.conf"));
        assert!(f.matches(b"etc/c.conf"));
    }

    #[test]
    fn dot_means_everything() {
        let mut f = filter(&["."]);
        assert!(f.matches(b"anything/at/all"));
    }

    #[test]
    fn unmatched_filter_is_reported() {
        let mut f = filter(&["bin/*", "typo"]);
        assert!(f.matches(b"bin/sh"));
        assert_eq!(f.first_unmatched(), Some("typo"));
    }

    #[test]
    fn dotdot_and_bad_globs_are_rejected() {
        let err = PathFilter::new(&["../etc".to_string()]).err().unwrap();
        assert!(err.to_string().contains("`..`"), "{err}");
        let err = PathFilter::new(&["a/[b".to_string()]).err().unwrap();
        assert!(matches!(err, TarError::InvalidFilter { .. }), "{err}");
    }
}
