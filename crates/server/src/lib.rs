//! The Berth registry's HTTP layer: an axum router for the OCI Distribution Spec v1.1 and the
//! Docker Registry HTTP API V2 over a [`berth_registry::Registry`].
//!
//! Repository names contain `/`, so every `/v2/...` request goes through one catch-all route.
//! The path is parsed once, by [`berth_oci::Route::parse`] in a middleware (the private `route` module), into the
//! repository name and the endpoint; authorization, the handler and the audit line read that
//! same [`Route`]. Every response
//! carries `Docker-Distribution-API-Version: registry/2.0`; every error is the spec's JSON body,
//! produced in one place ([`error::ApiError`]).
#![warn(missing_docs)]

mod auth;
mod conn;
mod error;
mod handlers;
pub mod headers;
mod health;
mod listen;
mod metrics;
mod route;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use berth_registry::Registry;

pub use auth::AccessControl;
pub use berth_oci::Route;
pub use error::ApiError;
pub use listen::{DEFAULT_IDLE_TIMEOUT, ListenError, ListenOptions, TlsFiles, serve};
pub use metrics::Metrics;

/// Options of the HTTP layer.
#[derive(Clone, Default, Debug)]
pub struct ServerOptions {
    /// Honour `X-Forwarded-Proto` and `X-Forwarded-Host` when building `Location` headers.
    pub trust_forwarded_headers: bool,
    /// Authentication and authorization.
    pub access: AccessControl,
    /// Headers added to every response (Distribution's `http.headers`), as configured.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Set once the process is shutting down: `/readyz` answers 503 from then on, so that a
    /// load balancer stops sending new requests while those in flight finish.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Where requests are counted and timed, when metrics are on.
    pub metrics: Option<Arc<Metrics>>,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub(crate) registry: Registry,
    pub(crate) options: Arc<ServerOptions>,
    pub(crate) access: AccessControl,
}

/// Builds the router.
pub fn router(registry: Registry, options: ServerOptions) -> Router {
    let access = options.access.clone();
    let state = AppState {
        registry,
        options: Arc::new(options),
        access,
    };
    let metrics = state.options.metrics.clone();
    let router = Router::new()
        .route("/v2", axum::routing::any(handlers::base))
        .route("/v2/", axum::routing::any(handlers::base))
        .route("/v2/{*rest}", axum::routing::any(handlers::dispatch))
        .route("/healthz", axum::routing::get(health::alive))
        .route("/readyz", axum::routing::get(health::ready))
        .route(
            "/token",
            axum::routing::get(auth::token_get).post(auth::token_post),
        )
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard));
    let router = match metrics {
        Some(m) => router.layer(middleware::from_fn_with_state(m, metrics::record)),
        None => router,
    };
    router
        .layer(middleware::from_fn(route::parse_route))
        .layer(middleware::from_fn(access_log_and_version))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            configured_headers,
        ))
        .with_state(state)
}

/// The debug listener's router: `GET <path>` answers the OpenMetrics text of `metrics`.
pub fn metrics_router(metrics: Arc<Metrics>, path: &str) -> Router {
    Router::new()
        .route(path, axum::routing::get(metrics::scrape))
        .with_state(metrics)
}

/// Adds the configured headers to every response (one that a handler set stays).
async fn configured_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let mut res = next.run(req).await;
    let headers = &state.options.headers;
    if headers.is_empty() {
        return res;
    }
    let set_by_handler: Vec<bool> = headers
        .iter()
        .map(|(k, _)| res.headers().contains_key(k))
        .collect();
    for ((k, v), set) in headers.iter().zip(set_by_handler) {
        if !set {
            res.headers_mut().append(k.clone(), v.clone());
        }
    }
    res
}

/// Adds the API version header to every response and logs one line per request.
async fn access_log_and_version(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = logged_target(req.uri());
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    res.headers_mut().insert(
        "docker-distribution-api-version",
        http::HeaderValue::from_static("registry/2.0"),
    );
    tracing::info!(
        target: "berth::access",
        %method,
        path,
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    res
}

/// Longest request target written to the access log; the rest is cut (paths can be 64 KB).
const MAX_LOGGED_TARGET: usize = 1024;

/// Query parameters whose values are secrets, masked in the access log.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "token",
    "access_token",
    "refresh_token",
    "client_secret",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
];

/// The path and query string as the access log shows them: secret values masked, cut to
/// [`MAX_LOGGED_TARGET`] bytes.
fn logged_target(uri: &http::Uri) -> String {
    let mut out = uri.path().to_owned();
    if let Some(q) = uri.query() {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    if out.len() > MAX_LOGGED_TARGET {
        let mut cut = MAX_LOGGED_TARGET;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = out.len();
        out.truncate(cut);
        out.push_str(&format!("...({total} bytes)"));
    }
    out
}

#[cfg(test)]
mod logged_target_tests {
    use super::logged_target;

    #[test]
    fn the_query_is_logged_with_secrets_masked() {
        let uri: http::Uri = "/v2/a/blobs/uploads/?mount=sha256:ab&from=b&password=hunter2&Token=t"
            .parse()
            .unwrap();
        assert_eq!(
            logged_target(&uri),
            "/v2/a/blobs/uploads/?mount=sha256:ab&from=b&password=***&Token=***"
        );
    }

    #[test]
    fn long_targets_are_cut() {
        let uri: http::Uri = format!("/v2/{}/tags/list", "a".repeat(60_000))
            .parse()
            .unwrap();
        let logged = logged_target(&uri);
        assert!(logged.len() < 1100, "{}", logged.len());
        assert!(logged.ends_with("...(60014 bytes)"), "{logged}");
    }
}
