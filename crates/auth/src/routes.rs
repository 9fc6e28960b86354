//! The scopes each `/v2/` route needs, as Distribution defines them. The server may use
//! [`required_access`] directly or mirror its table in its own router:
//!
//! | route | needs |
//! | --- | --- |
//! | `GET /v2/` | valid credentials only (no scope) |
//! | `GET /v2/_catalog` | `registry:catalog:*` |
//! | `GET`/`HEAD` `/v2/N/manifests/R`, `/v2/N/blobs/D`, `/v2/N/tags/list`, `/v2/N/referrers/D` | `repository:N:pull` |
//! | `PUT /v2/N/manifests/R` | `repository:N:pull,push` |
//! | `POST /v2/N/blobs/uploads/` | `repository:N:pull,push` |
//! | `POST /v2/N/blobs/uploads/?mount=D&from=S` | [`RouteAccess::Mount`]: use [`crate::Authenticator::authorize_mount`] |
//! | `GET`/`PATCH`/`PUT`/`DELETE` `/v2/N/blobs/uploads/U` | `repository:N:pull,push` |
//! | `DELETE /v2/N/manifests/R`, `DELETE /v2/N/blobs/D` | `repository:N:delete` |

use http::Method;

use crate::scope::{Action, Scope, ScopeError};

/// What a route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteAccess {
    /// Authorize with [`crate::Authenticator::authorize`] and these scopes (empty for `/v2/`).
    Scopes(Vec<Scope>),
    /// A cross-repository mount: authorize with [`crate::Authenticator::authorize_mount`].
    Mount {
        /// The repository uploaded to.
        target: String,
        /// The repository named by `from`.
        source: String,
    },
    /// Not a registry API route (the server decides, e.g. `/token` or health checks).
    NotRegistry,
}

/// The scopes of a mount: `(repository:target:pull,push, repository:source:pull)`.
pub fn mount_scopes(target: &str, source: &str) -> (Scope, Scope) {
    (
        Scope::repository(target, &[Action::Pull, Action::Push]),
        Scope::repository(source, &[Action::Pull]),
    )
}

fn repo(name: &str, actions: &[Action]) -> Result<RouteAccess, ScopeError> {
    berth_oci::validate_repository(name)?;
    Ok(RouteAccess::Scopes(vec![Scope::repository(name, actions)]))
}

/// The access `method` on `path` (with the raw `query`, if any) needs.
pub fn required_access(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<RouteAccess, ScopeError> {
    use Action::*;
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Ok(if path == "/v2" {
            RouteAccess::Scopes(vec![])
        } else {
            RouteAccess::NotRegistry
        });
    };
    if rest.is_empty() {
        return Ok(RouteAccess::Scopes(vec![]));
    }
    if rest == "_catalog" {
        return Ok(RouteAccess::Scopes(vec![Scope::catalog()]));
    }
    let read = *method == Method::GET || *method == Method::HEAD;
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name_upto = |k: usize| segs[..n - k].join("/");
    // Uploads: N/blobs/uploads/ (trailing slash gives an empty last segment) or N/blobs/uploads/U.
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let name = name_upto(3);
        if segs[n - 1].is_empty() && *method == Method::POST {
            let pairs: Vec<(String, String)> = query
                .unwrap_or("")
                .split('&')
                .filter_map(|p| p.split_once('='))
                .filter_map(|(k, v)| {
                    Some((
                        crate::issuer::form_decode(k)?,
                        crate::issuer::form_decode(v)?,
                    ))
                })
                .collect();
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let (Some(_), Some(from)) = (get("mount"), get("from")) {
                berth_oci::validate_repository(&name)?;
                if berth_oci::validate_repository(&from).is_ok() {
                    return Ok(RouteAccess::Mount {
                        target: name,
                        source: from,
                    });
                }
            }
        }
        return repo(&name, &[Pull, Push]);
    }
    if n >= 2 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return repo(&name_upto(2), &[Pull, Push]);
    }
    if n >= 2 {
        let name = name_upto(2);
        match (segs[n - 2], segs[n - 1]) {
            ("tags", "list") if read => return repo(&name, &[Pull]),
            ("manifests", _) | ("blobs", _) | ("referrers", _) if read => {
                return repo(&name, &[Pull]);
            }
            ("manifests", _) if *method == Method::PUT => return repo(&name, &[Pull, Push]),
            ("manifests", _) | ("blobs", _) if *method == Method::DELETE => {
                return repo(&name, &[Delete]);
            }
            _ => {}
        }
    }
    Ok(RouteAccess::NotRegistry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(m: Method, p: &str, q: Option<&str>) -> String {
        match required_access(&m, p, q).unwrap() {
            RouteAccess::Scopes(s) => crate::scope::join_scopes(&s),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn table() {
        assert_eq!(scopes(Method::GET, "/v2/", None), "");
        assert_eq!(
            scopes(Method::GET, "/v2/_catalog", None),
            "registry:catalog:*"
        );
        assert_eq!(
            scopes(Method::GET, "/v2/a/b/manifests/latest", None),
            "repository:a/b:pull"
        );
        assert_eq!(
            scopes(Method::HEAD, "/v2/a/blobs/sha256:00", None),
            "repository:a:pull"
        );
        assert_eq!(
            scopes(Method::GET, "/v2/a/tags/list", None),
            "repository:a:pull"
        );
        assert_eq!(
            scopes(Method::GET, "/v2/a/referrers/sha256:00", None),
            "repository:a:pull"
        );
        assert_eq!(
            scopes(Method::PUT, "/v2/a/manifests/v1", None),
            "repository:a:pull,push"
        );
        assert_eq!(
            scopes(Method::POST, "/v2/a/blobs/uploads/", None),
            "repository:a:pull,push"
        );
        assert_eq!(
            scopes(Method::PATCH, "/v2/a/blobs/uploads/1234", None),
            "repository:a:pull,push"
        );
        assert_eq!(
            scopes(Method::DELETE, "/v2/a/blobs/uploads/1234", None),
            "repository:a:pull,push"
        );
        assert_eq!(
            scopes(Method::DELETE, "/v2/a/manifests/sha256:00", None),
            "repository:a:delete"
        );
        assert_eq!(
            scopes(Method::DELETE, "/v2/a/blobs/sha256:00", None),
            "repository:a:delete"
        );
        // A repository may itself be called "blobs".
        assert_eq!(
            scopes(Method::GET, "/v2/x/blobs/blobs/sha256:00", None),
            "repository:x/blobs:pull"
        );
        assert_eq!(
            required_access(&Method::GET, "/token", None).unwrap(),
            RouteAccess::NotRegistry
        );
        assert_eq!(
            required_access(&Method::POST, "/v2/a/manifests/x", None).unwrap(),
            RouteAccess::NotRegistry
        );
        assert!(required_access(&Method::GET, "/v2/A/manifests/x", None).is_err());
    }

    #[test]
    fn mount_route() {
        assert_eq!(
            required_access(
                &Method::POST,
                "/v2/t/blobs/uploads/",
                Some("mount=sha256%3A00&from=lib%2Fsrc")
            )
            .unwrap(),
            RouteAccess::Mount {
                target: "t".into(),
                source: "lib/src".into()
            }
        );
        // A bad `from` is a plain upload.
        assert_eq!(
            scopes(
                Method::POST,
                "/v2/t/blobs/uploads/",
                Some("mount=sha256:00&from=BAD")
            ),
            "repository:t:pull,push"
        );
        assert_eq!(
            scopes(
                Method::POST,
                "/v2/t/blobs/uploads/",
                Some("digest=sha256:00")
            ),
            "repository:t:pull,push"
        );
        let (t, s) = mount_scopes("t", "s");
        assert_eq!(
            (t.to_string(), s.to_string()),
            ("repository:t:pull,push".into(), "repository:s:pull".into())
        );
    }
}
