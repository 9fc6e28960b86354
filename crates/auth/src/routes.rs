//! The scopes each `/v2/` route needs, as Distribution defines them. The route itself is parsed
//! once, by [`berth_oci::Route::parse`], and the server serves exactly the route it authorized;
//! this module only maps a parsed route and a method to what the caller must be granted:
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

use berth_oci::Route;
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
    /// Nothing the registry serves with this method (the server answers it, e.g. with 405).
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

/// The `mount` and `from` of an upload's raw `query`, when both are there and `from` is a valid
/// repository name.
fn mount_source(query: Option<&str>) -> Option<String> {
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
    get("mount")?;
    get("from").filter(|from| berth_oci::validate_repository(from).is_ok())
}

/// The access `method` on `route` (with the request's raw `query`, if any) needs. An invalid
/// repository name is an error: nothing is granted on it.
pub fn required_access(
    method: &Method,
    route: &Route,
    query: Option<&str>,
) -> Result<RouteAccess, ScopeError> {
    use Action::*;
    let read = *method == Method::GET || *method == Method::HEAD;
    match route {
        Route::Base => Ok(RouteAccess::Scopes(vec![])),
        Route::Catalog => Ok(RouteAccess::Scopes(vec![Scope::catalog()])),
        Route::UploadStart { name } => {
            if *method == Method::POST
                && let Some(source) = mount_source(query)
            {
                berth_oci::validate_repository(name)?;
                return Ok(RouteAccess::Mount {
                    target: name.clone(),
                    source,
                });
            }
            repo(name, &[Pull, Push])
        }
        Route::UploadSession { name, .. } => repo(name, &[Pull, Push]),
        Route::TagsList { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::Referrers { name, .. }
            if read =>
        {
            repo(name, &[Pull])
        }
        Route::Manifest { name, .. } if *method == Method::PUT => repo(name, &[Pull, Push]),
        Route::Manifest { name, .. } | Route::Blob { name, .. } if *method == Method::DELETE => {
            repo(name, &[Delete])
        }
        _ => Ok(RouteAccess::NotRegistry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(m: &Method, p: &str, q: Option<&str>) -> Result<RouteAccess, ScopeError> {
        required_access(m, &Route::parse(p).expect("a route"), q)
    }

    fn scopes(m: Method, p: &str, q: Option<&str>) -> String {
        match access(&m, p, q).unwrap() {
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
        assert_eq!(Route::parse("/token"), None);
        assert_eq!(
            access(&Method::POST, "/v2/a/manifests/x", None).unwrap(),
            RouteAccess::NotRegistry
        );
        assert!(access(&Method::GET, "/v2/A/manifests/x", None).is_err());
    }

    #[test]
    fn mount_route() {
        assert_eq!(
            access(
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
