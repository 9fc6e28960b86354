//! Request handlers, one module per resource as in Distribution. Each one turns a request into
//! registry calls and the spec's response; [`dispatch`] picks the handler of a [`Route`] and
//! method.

mod blobs;
mod catalog;
mod manifests;
mod referrers;
mod tags;
mod uploads;

use blobs::{delete_blob, get_blob};
use catalog::catalog;
use manifests::{get_manifest, put_manifest};
use referrers::referrers;
use tags::tags;
use uploads::{MountFrom, finish_upload, patch_upload, start_upload, upload_status};

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, ErrorCode};
use berth_registry::ByteStream;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::AppState;
use crate::auth::MountAuthorization;
use crate::error::ApiError;
use crate::route::Route;

type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

/// `GET /v2/`: the API version check.
pub async fn base() -> Response {
    let mut res = (StatusCode::OK, "{}").into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Anything outside `/v2/`.
pub(crate) async fn not_found() -> Response {
    ApiError::new(
        ErrorCode::Unsupported,
        "unknown path: the registry API lives under /v2/",
    )
    .with_status(StatusCode::NOT_FOUND)
    .into_response()
}

pub(super) fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not supported on this endpoint"),
    )
}

pub(super) fn body_stream(body: Body) -> ByteStream {
    Box::pin(TryStreamExt::map_err(
        body.into_data_stream(),
        std::io::Error::other,
    ))
}

pub(super) fn set(res: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, v);
    }
}

pub(super) fn empty(status: StatusCode) -> Response {
    let mut res = status.into_response();
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

/// The catch-all `/v2/...` route: serves the [`Route`] that [`crate::route::parse_route`] parsed
/// (the one the guard authorized).
#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    State(st): State<AppState>,
    method: Method,
    uri: http::Uri,
    Query(params): Params,
    headers: HeaderMap,
    route: Option<axum::Extension<Route>>,
    mount_auth: Option<axum::Extension<MountAuthorization>>,
    body: Body,
) -> Response {
    // Refusals made before a handler reads the body discard it first (see `discard_body`).
    let Some(axum::Extension(route)) = route.filter(|r| r.0 != Route::Base) else {
        crate::auth::discard_body(body).await;
        let rest = uri.path().strip_prefix("/v2/").unwrap_or_default();
        return ApiError::new(
            ErrorCode::Unsupported,
            format!("unknown API path /v2/{rest}"),
        )
        .with_status(StatusCode::NOT_FOUND)
        .into_response();
    };
    if let Some(name) = route.name()
        && let Err(e) = berth_registry::check_name(name)
    {
        crate::auth::discard_body(body).await;
        return ApiError::from(e).into_response();
    }
    if !crate::route::serves(&route, &method) {
        crate::auth::discard_body(body).await;
        return method_not_allowed(&method).into_response();
    }
    let res = match (route, &method) {
        (Route::Catalog, &Method::GET) => catalog(&st, &params).await,
        (Route::TagsList { name }, &Method::GET) => tags(&st, &name, &params).await,
        (Route::Manifest { name, reference }, m) if m == Method::GET || m == Method::HEAD => {
            get_manifest(&st, &name, &reference, &headers, m == Method::HEAD).await
        }
        (Route::Manifest { name, reference }, &Method::PUT) => {
            let tags = manifests::tag_params(&uri);
            put_manifest(&st, &name, &reference, &tags, &headers, body).await
        }
        (Route::Manifest { name, reference }, &Method::DELETE) => st
            .registry
            .delete_manifest(&name, &reference)
            .await
            .map(|_| empty(StatusCode::ACCEPTED))
            .map_err(Into::into),
        (Route::Blob { name, digest }, m) if m == Method::GET || m == Method::HEAD => {
            get_blob(&st, &name, &digest, &headers, m == Method::HEAD).await
        }
        (Route::Blob { name, digest }, &Method::DELETE) => delete_blob(&st, &name, &digest).await,
        (Route::UploadStart { name }, &Method::POST) => {
            // With access control on, mount only from the source the guard authorized.
            let mount = match mount_auth.map(|axum::Extension(m)| m) {
                Some(MountAuthorization::NotAllowed) => MountFrom::NotAllowed,
                Some(MountAuthorization::From(source)) => MountFrom::Source(Some(source)),
                None if st.access.authenticator.is_some() => MountFrom::Source(None),
                None => MountFrom::Source(params.get("from").cloned()),
            };
            start_upload(&st, &name, &params, &headers, mount, body).await
        }
        (Route::UploadSession { name, id }, &Method::GET) => {
            upload_status(&st, &name, &id, &headers).await
        }
        (Route::UploadSession { name, id }, &Method::PATCH) => {
            patch_upload(&st, &name, &id, &headers, body).await
        }
        (Route::UploadSession { name, id }, &Method::PUT) => {
            finish_upload(&st, &name, &id, &params, &headers, body).await
        }
        (Route::UploadSession { name, id }, &Method::DELETE) => st
            .registry
            .cancel_upload(&name, &id)
            .await
            .map(|_| empty(StatusCode::NO_CONTENT))
            .map_err(Into::into),
        (Route::Referrers { name, digest }, &Method::GET) => {
            referrers(&st, &name, &digest, &params).await
        }
        // Not reached: `serves` refused the method above.
        (_, m) => Err(method_not_allowed(m)),
    };
    res.unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

pub(super) fn page_params(
    params: &HashMap<String, String>,
    default_n: Option<usize>,
) -> Result<(Option<usize>, Option<String>), ApiError> {
    let n = match params.get("n") {
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::Unsupported,
                format!("invalid n={s}: expected a whole number"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => default_n,
    };
    Ok((n, params.get("last").cloned()))
}

pub(super) fn link_next(path: &str, n: Option<usize>, last: Option<&String>) -> Option<String> {
    let last = last?;
    let mut q = format!("last={last}");
    if let Some(n) = n {
        q = format!("n={n}&{q}");
    }
    Some(format!("<{path}?{q}>; rel=\"next\""))
}

pub(super) fn json_response(value: &serde_json::Value, content_type: &'static str) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
