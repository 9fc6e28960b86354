//! The route of a request, parsed once.
//!
//! [`parse_route`] runs first, reads the raw (still percent-encoded) path with
//! [`berth_oci::Route::parse`] and puts the [`Route`] into the request's extensions. The
//! authorization guard, the handlers and the audit line all read that one value, so the route
//! that is authorized is the route that is served and the route that is logged. A request whose
//! path is no `/v2/` route carries no [`Route`].
//!
//! axum's `Path` is not used: it would decode `%2F` into a separator before the split.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
pub use berth_oci::Route;
use http::Method;

/// The middleware: parses the route and stores it in the request's extensions.
pub(crate) async fn parse_route(mut req: Request, next: Next) -> Response {
    if let Some(route) = Route::parse(req.uri().path()) {
        req.extensions_mut().insert(route);
    }
    next.run(req).await
}

/// Whether the registry serves `method` on `route` (anything else is answered 405).
pub(crate) fn serves(route: &Route, method: &Method) -> bool {
    let m = method;
    match route {
        Route::Base => true,
        Route::Catalog | Route::TagsList { .. } | Route::Referrers { .. } => *m == Method::GET,
        Route::Manifest { .. } => {
            [Method::GET, Method::HEAD, Method::PUT, Method::DELETE].contains(m)
        }
        Route::Blob { .. } => [Method::GET, Method::HEAD, Method::DELETE].contains(m),
        Route::UploadStart { .. } => *m == Method::POST,
        Route::UploadSession { .. } => {
            [Method::GET, Method::PATCH, Method::PUT, Method::DELETE].contains(m)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request the handlers serve is one the authorization layer checks, for the same
    /// repository: for each path that parses to a route, `required_access` names scopes on the
    /// route's repository (or refuses the name), never "not a registry route".
    #[test]
    fn every_served_route_is_authorized_for_the_same_repository() {
        use berth_auth::routes::{RouteAccess, required_access};
        let words = [
            "a",
            "manifests",
            "manifest%73",
            "blobs",
            "blob%73",
            "uploads",
            "upload%73",
            "tags",
            "list",
            "lis%74",
            "referrers",
            "_catalog",
            "%5Fcatalog",
            "..",
            "%2e%2e",
            "",
        ];
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ];
        // Every path of one to four of these segments.
        let mut paths: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut last = paths.clone();
        for _ in 0..3 {
            last = last
                .iter()
                .flat_map(|p| words.iter().map(move |w| format!("{p}/{w}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        paths.sort();
        paths.dedup();
        let mut checked = 0;
        for path in &paths {
            let Some(route) = Route::parse(&format!("/v2/{path}")) else {
                continue;
            };
            for m in methods.iter().filter(|m| serves(&route, m)) {
                checked += 1;
                match required_access(m, &route, None) {
                    Ok(RouteAccess::Scopes(scopes)) => match route.name() {
                        Some(name) => assert!(
                            !scopes.is_empty() && scopes.iter().all(|s| s.name == name),
                            "{m} /v2/{path}: served for {name:?}, authorized as {scopes:?}"
                        ),
                        None => assert!(
                            matches!(route, Route::Base | Route::Catalog),
                            "{m} /v2/{path}: {route:?} without a repository"
                        ),
                    },
                    Ok(RouteAccess::Mount { .. }) => unreachable!("no query"),
                    Ok(other) => panic!("{m} /v2/{path} is served as {route:?} but {other:?}"),
                    Err(_) => {} // refused: invalid name
                }
            }
        }
        assert!(
            checked > 100,
            "only {checked} served requests were generated"
        );
    }
}
