//! The `/v2/` route grammar of the Distribution API, parsed in one place.
//!
//! Both the server (which serves a route) and the authorization rules (which decide who may use
//! it) read a request path through [`Route::parse`]. Were there two parsers, a path one of them
//! read differently from the other could be served without being checked; with one, the route
//! that is authorized is by construction the route that is served.
//!
//! Repository names contain `/`, so a path is read from its end: `<name>/tags/list`,
//! `<name>/manifests/<reference>`, `<name>/blobs/<digest>`, `<name>/blobs/uploads/` (with or
//! without the trailing slash), `<name>/blobs/uploads/<id>`, `<name>/referrers/<digest>`, plus
//! `_catalog` and the base `/v2/`. A repository may itself have a component called `blobs` or
//! `manifests` (`x/blobs/blobs/<digest>` is a blob of `x/blobs`).
//!
//! The path is split at its literal slashes *before* anything is decoded. The endpoint words and
//! the repository name are taken as they are; only the last segment (reference, digest or upload
//! id) is percent-decoded, so an encoded `%2F` stays inside it. Were the words decoded too,
//! `manifest%73` could be served as `manifests` by one reader and not by another. Nothing is
//! validated here: a name with `%` or `..` is handed on as it is, and the caller's validation
//! (`validate_repository`, digest and tag parsing) refuses it.

use std::fmt;

/// One `/v2/` route, with the parts its path names.
///
/// `name` is the repository name exactly as the path spells it (not decoded, not validated);
/// `reference`, `digest` and `id` are the percent-decoded last segment (not validated either).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `/v2/` (or `/v2`): the API version check.
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    TagsList {
        /// The repository.
        name: String,
    },
    /// `/v2/<name>/manifests/<reference>` (a tag or a digest)
    Manifest {
        /// The repository.
        name: String,
        /// The tag or digest.
        reference: String,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// The repository.
        name: String,
        /// The blob's digest, as written.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/` (with or without the trailing slash)
    UploadStart {
        /// The repository.
        name: String,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    UploadSession {
        /// The repository.
        name: String,
        /// The upload session id.
        id: String,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// The repository.
        name: String,
        /// The subject's digest, as written.
        digest: String,
    },
}

impl Route {
    /// Parses a whole request path (still percent-encoded, without the query). `None` when
    /// the path is not a `/v2/` route (`/token`, `/v2/a/unknown/x`, `/v2/a/manifests/`).
    pub fn parse(path: &str) -> Option<Route> {
        if path == "/v2" || path == "/v2/" {
            return Some(Route::Base);
        }
        Route::parse_v2(path.strip_prefix("/v2/")?)
    }

    /// Parses the part of a request path after `/v2/` (still percent-encoded).
    pub fn parse_v2(rest: &str) -> Option<Route> {
        if rest.is_empty() {
            return Some(Route::Base);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        if segs == ["_catalog"] {
            return Some(Route::Catalog);
        }
        let n = segs.len();
        // The repository is everything before the last `k` segments, and never empty.
        let name = |k: usize| -> Option<String> {
            (n > k)
                .then(|| segs[..n - k].join("/"))
                .filter(|name| !name.is_empty())
        };
        let last = || percent_decode(segs[n - 1]);
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Some(Route::TagsList { name: name(2)? });
        }
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let name = name(3)?;
            return Some(if segs[n - 1].is_empty() {
                Route::UploadStart { name }
            } else {
                Route::UploadSession { name, id: last() }
            });
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Some(Route::UploadStart { name: name(2)? });
        }
        if n >= 3 && !segs[n - 1].is_empty() {
            let name = name(2)?;
            match segs[n - 2] {
                "manifests" => {
                    return Some(Route::Manifest {
                        name,
                        reference: last(),
                    });
                }
                "blobs" => {
                    return Some(Route::Blob {
                        name,
                        digest: last(),
                    });
                }
                "referrers" => {
                    return Some(Route::Referrers {
                        name,
                        digest: last(),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// The repository the route names (`None` for [`Route::Base`] and [`Route::Catalog`]).
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::TagsList { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::UploadSession { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// The endpoint without the repository, e.g. `Manifest("v1")`, `Upload("<id>")`, `Uploads`
/// (the form the server's audit line has always used).
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Base => f.write_str("Base"),
            Route::Catalog => f.write_str("Catalog"),
            Route::TagsList { .. } => f.write_str("Tags"),
            Route::Manifest { reference, .. } => write!(f, "Manifest({reference:?})"),
            Route::Blob { digest, .. } => write!(f, "Blob({digest:?})"),
            Route::UploadStart { .. } => f.write_str("Uploads"),
            Route::UploadSession { id, .. } => write!(f, "Upload({id:?})"),
            Route::Referrers { digest, .. } => write!(f, "Referrers({digest:?})"),
        }
    }
}

/// Encodes every byte but the unreserved ones (`A-Z a-z 0-9 - _ . ~`) as `%XX`, for a query
/// value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are, invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |x: u8| (x as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(rest: &str) -> Option<Route> {
        Route::parse_v2(rest)
    }
    fn manifest(name: &str, reference: &str) -> Option<Route> {
        Some(Route::Manifest {
            name: name.into(),
            reference: reference.into(),
        })
    }

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/v2"), Some(Route::Base));
        assert_eq!(Route::parse("/v2/"), Some(Route::Base));
        assert_eq!(Route::parse("/token"), None);
        assert_eq!(Route::parse("/v20/a/tags/list"), None);
        assert_eq!(
            p("a/b/tags/list"),
            Some(Route::TagsList { name: "a/b".into() })
        );
        assert_eq!(p("a/manifests/latest"), manifest("a", "latest"));
        let start = Some(Route::UploadStart { name: "x".into() });
        assert_eq!(p("x/blobs/uploads/"), start);
        assert_eq!(p("x/blobs/uploads"), start);
        assert_eq!(
            p("x/y/blobs/uploads/abc"),
            Some(Route::UploadSession {
                name: "x/y".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            p("r/referrers/sha256:1"),
            Some(Route::Referrers {
                name: "r".into(),
                digest: "sha256:1".into()
            })
        );
        assert_eq!(p("_catalog"), Some(Route::Catalog));
        assert_eq!(p("a/unknown/x"), None);
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            p("blobs/blobs/sha256:1"),
            Some(Route::Blob {
                name: "blobs".into(),
                digest: "sha256:1".into()
            })
        );
        assert_eq!(
            p("x/blobs/blobs/sha256:1"),
            Some(Route::Blob {
                name: "x/blobs".into(),
                digest: "sha256:1".into()
            })
        );
        assert_eq!(p("manifests/manifests/v1"), manifest("manifests", "v1"));
        assert_eq!(
            p("a/manifests/b/manifests/v1"),
            manifest("a/manifests/b", "v1")
        );
        assert_eq!(
            p("blobs/uploads/blobs/uploads/"),
            Some(Route::UploadStart {
                name: "blobs/uploads".into()
            })
        );
        assert_eq!(
            p("tags/list/tags/list"),
            Some(Route::TagsList {
                name: "tags/list".into()
            })
        );
        assert_eq!(
            p("a/blobs/uploads/manifests/v1"),
            manifest("a/blobs/uploads", "v1")
        );
    }

    #[test]
    fn the_name_is_never_empty() {
        assert_eq!(p("manifests/latest"), None);
        assert_eq!(p("blobs/sha256:1"), None);
        assert_eq!(p("tags/list"), None);
        assert_eq!(p("blobs/uploads"), None);
        assert_eq!(p("blobs/uploads/"), None);
        assert_eq!(p("blobs/uploads/x"), None);
        assert_eq!(p("referrers/sha256:1"), None);
        // An empty first segment (found by the `route` fuzz target).
        assert_eq!(p("/blobs/uploadsx"), None);
        assert_eq!(p("/manifests/v1"), None);
    }

    #[test]
    fn trailing_slashes() {
        assert_eq!(p("a/manifests/"), None);
        assert_eq!(p("a/blobs/"), None);
        assert_eq!(p("a/referrers/"), None);
        assert_eq!(p("a/tags/list/"), None);
        assert_eq!(p("_catalog/"), None);
        assert_eq!(p("a/manifests/v1/"), None);
        // `<name>/blobs/uploads/` is the one route with a trailing slash.
        assert_eq!(
            p("a/blobs/uploads/"),
            Some(Route::UploadStart { name: "a".into() })
        );
        assert_eq!(p("a/blobs/uploads/x/"), None);
        // An empty component stays in the name, for validation to refuse.
        assert_eq!(p("a//manifests/v1"), manifest("a/", "v1"));
    }

    #[test]
    fn dot_dot_is_handed_on_for_validation() {
        assert_eq!(p("../manifests/v1"), manifest("..", "v1"));
        assert_eq!(p("a/../b/manifests/v1"), manifest("a/../b", "v1"));
        assert_eq!(p("a/manifests/.."), manifest("a", ".."));
        assert_eq!(
            p("a/blobs/uploads/.."),
            Some(Route::UploadSession {
                name: "a".into(),
                id: "..".into()
            })
        );
    }

    #[test]
    fn raw_paths_are_split_before_decoding() {
        assert_eq!(
            p("a%2Fb/tags/list"),
            Some(Route::TagsList {
                name: "a%2Fb".into()
            }),
            "names are never decoded"
        );
        assert_eq!(p("%2e%2e/manifests/v1"), manifest("%2e%2e", "v1"));
        assert_eq!(p("a/manifest%73/v1"), None, "words are not decoded");
        assert_eq!(p("a/blob%73/uploads/"), None);
        assert_eq!(p("a/blobs/upload%73/"), None);
        assert_eq!(p("a/tags/lis%74"), None);
        assert_eq!(p("%5Fcatalog"), None);
        assert_eq!(
            p("x/blobs/uploads/..%2F..%2Fy"),
            Some(Route::UploadSession {
                name: "x".into(),
                id: "../../y".into()
            })
        );
        assert_eq!(p("x/manifests/sha256%3Aab"), manifest("x", "sha256:ab"));
        assert_eq!(p("x/manifests/a%2Fb"), manifest("x", "a/b"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn display_names_the_endpoint() {
        assert_eq!(
            p("a/manifests/v1").unwrap().to_string(),
            r#"Manifest("v1")"#
        );
        assert_eq!(p("a/blobs/uploads/").unwrap().to_string(), "Uploads");
        assert_eq!(p("a/tags/list").unwrap().name(), Some("a"));
        assert_eq!(Route::Catalog.name(), None);
    }
}
