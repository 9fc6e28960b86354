//! Access control in front of the API: every request is checked by the configured
//! [`Authenticator`] against the scopes its route needs, and the built-in token issuer's
//! `/token` endpoint is served here when configured.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_auth::routes::{RouteAccess, required_access};
use berth_auth::{Authenticator, Issuer, MountDecision, Principal, issuer};
use berth_oci::Route;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;

use crate::AppState;

/// Access control settings of the server.
#[derive(Clone, Default)]
pub struct AccessControl {
    /// Decides `/v2/` requests; `None` lets everything through.
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Serves `GET`/`POST /token` when set (the built-in token issuer).
    pub issuer: Option<Arc<Issuer>>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("authenticator", &self.authenticator.is_some())
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The guard's decision on a cross-repository mount (`POST .../blobs/uploads/?mount=&from=`),
/// for the upload handler. With access control on, the handler mounts only as this says, never
/// from its own reading of the query: a query may name `from` more than once (or once invalid,
/// once valid), and no blob may be mounted from a repository other than the one checked here.
#[derive(Clone, Debug)]
pub enum MountAuthorization {
    /// The caller may pull this source repository: mount from it.
    From(String),
    /// The caller may push the target but not pull the source: start a plain upload instead,
    /// so no blob leaks across repositories.
    NotAllowed,
}

fn remote(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// At most this much of a refused request's body is read and discarded.
const DISCARD_LIMIT: usize = 1024 * 1024;
/// For at most this long.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards a refused request's body (up to [`DISCARD_LIMIT`] bytes, for up to
/// [`DISCARD_TIME`]) before the refusal is sent. Without this, an HTTP/2 client still uploading
/// gets the 401 followed by a `RST_STREAM` while it is sending, and some clients (curl 7.x)
/// report a stream error instead of the 401 and its challenge. Larger bodies are cut off.
pub(crate) async fn discard_body(mut body: Body) {
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DISCARD_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// The middleware: authorizes `/v2/` requests and writes the audit line of pushes and deletes.
/// Both read the [`Route`] that [`crate::route::parse_route`] put into the extensions.
pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let remote_ip = remote(&req);
    let method = req.method().clone();
    let route = req.extensions().get::<Route>().cloned();
    let principal = match (&st.access.authenticator, &route) {
        // No access control, or not a registry route (the handler answers it).
        (None, _) | (Some(_), None) => Principal::Anonymous,
        (Some(auth), Some(route)) => {
            let access = match required_access(&method, route, req.uri().query()) {
                Ok(a) => a,
                Err(e) => {
                    return crate::ApiError::new(berth_oci::ErrorCode::NameInvalid, e.to_string())
                        .into_response();
                }
            };
            let headers = req.headers();
            let outcome = match access {
                RouteAccess::NotRegistry => Ok(Principal::Anonymous),
                RouteAccess::Scopes(scopes) => auth.authorize(headers, &scopes, remote_ip).await,
                RouteAccess::Mount { target, source } => {
                    match auth
                        .authorize_mount(headers, &target, &source, remote_ip)
                        .await
                    {
                        Ok((p, MountDecision::Mount)) => {
                            req.extensions_mut()
                                .insert(MountAuthorization::From(source));
                            Ok(p)
                        }
                        Ok((p, _)) => {
                            req.extensions_mut().insert(MountAuthorization::NotAllowed);
                            Ok(p)
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(Principal::Anonymous),
            };
            match outcome {
                Ok(p) => p,
                Err(e) => {
                    discard_body(req.into_body()).await;
                    return crate::ApiError::from(e).into_response();
                }
            }
        }
    };
    let res = next.run(req).await;
    let changes = matches!(method, Method::PUT | Method::DELETE)
        || (method == Method::POST && res.status() == StatusCode::CREATED);
    if changes
        && res.status().is_success()
        && let Some(route) = route.filter(|r| *r != Route::Base)
    {
        // DELETE answers carry no Docker-Content-Digest: take the digest from the path then.
        let digest = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| match &route {
                Route::Manifest { reference: r, .. } | Route::Blob { digest: r, .. }
                    if r.parse::<berth_oci::Digest>().is_ok() =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        tracing::info!(
            target: "berth::audit",
            user = principal.name().unwrap_or("anonymous"),
            action = if method == Method::DELETE { "delete" } else { "push" },
            repository = route.name().unwrap_or_default(),
            endpoint = route.to_string(),
            digest,
            remote = remote_ip.map(|r| r.to_string()).unwrap_or_default(),
            "registry changed"
        );
    }
    res
}

/// `GET /token`: Docker's token endpoint (Basic credentials or anonymous).
pub async fn token_get(State(st): State<AppState>, req: Request) -> Response {
    let Some(issuer_) = st.access.issuer.clone() else {
        return crate::handlers::not_found().await;
    };
    let remote_ip = remote(&req);
    let query = req.uri().query().unwrap_or("").to_owned();
    let parsed = issuer::parse_get_request(&query, req.headers(), remote_ip);
    token_answer(&issuer_, parsed, remote_ip).await
}

/// `POST /token`: the OAuth2 password-grant form used by newer clients.
pub async fn token_post(State(st): State<AppState>, req: Request) -> Response {
    let Some(issuer_) = st.access.issuer.clone() else {
        return crate::handlers::not_found().await;
    };
    let remote_ip = remote(&req);
    let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "token request body is too large or broken",
            )
                .into_response();
        }
    };
    token_answer(&issuer_, issuer::parse_post_request(&body), remote_ip).await
}

async fn token_answer(
    issuer_: &Issuer,
    parsed: Result<berth_auth::TokenRequest, berth_auth::IssueError>,
    remote_ip: Option<IpAddr>,
) -> Response {
    let result = match parsed {
        Ok(r) => issuer_.handle(&r, remote_ip).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(tok) => {
            let body = serde_json::to_vec(&tok).unwrap_or_default();
            let mut res = (StatusCode::OK, body).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => crate::ApiError::from(e).into_response(),
    }
}
