//! Request handlers. Each one turns a request into registry calls and the spec's response.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, ErrorCode, media_type};
use berth_registry::{ByteStream, RegistryError};
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;

use crate::AppState;
use crate::auth::MountAuthorization;
use crate::error::ApiError;
use crate::headers;
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

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not supported on this endpoint"),
    )
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(TryStreamExt::map_err(
        body.into_data_stream(),
        std::io::Error::other,
    ))
}

fn set(res: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response {
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
            put_manifest(&st, &name, &reference, &headers, body).await
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

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>()
        .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

fn page_params(
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

fn link_next(path: &str, n: Option<usize>, last: Option<&String>) -> Option<String> {
    let last = last?;
    let mut q = format!("last={last}");
    if let Some(n) = n {
        q = format!("n={n}&{q}");
    }
    Some(format!("<{path}?{q}>; rel=\"next\""))
}

fn json_response(value: &serde_json::Value, content_type: &'static str) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// Catalog pages hold at most this many names when the client does not ask for fewer
/// (Distribution's `catalog.maxentries` default).
const CATALOG_MAX: usize = 1000;

async fn catalog(st: &AppState, params: &HashMap<String, String>) -> ApiResult {
    let (n, last) = page_params(params, Some(CATALOG_MAX))?;
    let n = n.map(|n| n.min(CATALOG_MAX));
    let (repos, more) = st.registry.catalog(n, last.as_deref()).await?;
    let mut res = json_response(
        &serde_json::json!({ "repositories": repos }),
        "application/json",
    );
    if more && let Some(l) = link_next("/v2/_catalog", n, repos.last()) {
        set(&mut res, "link", &l);
    }
    Ok(res)
}

async fn tags(st: &AppState, name: &str, params: &HashMap<String, String>) -> ApiResult {
    let (n, last) = page_params(params, None)?;
    let (tags, more) = st.registry.list_tags(name, n, last.as_deref()).await?;
    let mut res = json_response(
        &serde_json::json!({ "name": name, "tags": tags }),
        "application/json",
    );
    if more && let Some(l) = link_next(&format!("/v2/{name}/tags/list"), n, tags.last()) {
        set(&mut res, "link", &l);
    }
    Ok(res)
}

async fn get_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
    h: &HeaderMap,
    head: bool,
) -> ApiResult {
    let m = st.registry.get_manifest(name, reference).await?;
    if !headers::accepts(h, &m.media_type) {
        return Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!(
                "the manifest is a {} but the request's Accept header does not allow it",
                m.media_type
            ),
        ));
    }
    let len = m.bytes.len();
    let mut res = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(m.bytes))
    };
    set(&mut res, "content-type", &m.media_type);
    set(&mut res, "content-length", &len.to_string());
    set(&mut res, "docker-content-digest", &m.digest.to_string());
    set(&mut res, "etag", &format!("\"{}\"", m.digest));
    Ok(res)
}

async fn put_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
    let limit = st.registry.config().max_manifest_bytes as usize;
    let too_large = || {
        ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("manifest is larger than the limit of {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if headers::content_length(h).is_some_and(|l| l > limit as u64) {
        return Err(too_large());
    }
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("reading the manifest failed: {e}"),
            )
            .with_status(StatusCode::BAD_REQUEST));
        }
    };
    let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let out = st.registry.put_manifest(name, reference, ct, bytes).await?;
    let mut res = empty(StatusCode::CREATED);
    let loc = headers::location(
        h,
        st.options.trust_forwarded_headers,
        &format!("/v2/{name}/manifests/{}", out.digest),
    );
    set(&mut res, "location", &loc);
    set(&mut res, "docker-content-digest", &out.digest.to_string());
    if let Some(s) = out.subject {
        set(&mut res, "oci-subject", &s.to_string());
    }
    Ok(res)
}

async fn get_blob(st: &AppState, name: &str, digest: &str, h: &HeaderMap, head: bool) -> ApiResult {
    let d = parse_digest(digest)?;
    if head {
        let info = st.registry.stat_blob(name, &d).await?;
        let mut res = Response::new(Body::empty());
        set(&mut res, "content-length", &info.size.to_string());
        set(&mut res, "content-type", "application/octet-stream");
        set(&mut res, "docker-content-digest", &d.to_string());
        set(&mut res, "accept-ranges", "bytes");
        set(&mut res, "etag", &format!("\"{d}\""));
        return Ok(res);
    }
    let range = headers::blob_range(h).map_err(|_| {
        ApiError::new(
            ErrorCode::RangeInvalid,
            "malformed Range header: use bytes=<first>-<last>",
        )
    })?;
    if let Some(url) = st.registry.blob_redirect(name, &d).await? {
        // As Distribution does on object storage: the client fetches the bytes (and any
        // range of them) from the store itself.
        let mut res = empty(StatusCode::TEMPORARY_REDIRECT);
        set(&mut res, "location", &url);
        set(&mut res, "docker-content-digest", &d.to_string());
        return Ok(res);
    }
    let blob = st.registry.get_blob(name, &d, range).await?;
    let (status, len) = match blob.range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, e - s + 1),
        None => (StatusCode::OK, blob.size),
    };
    let mut res = Response::new(Body::from_stream(blob.stream));
    *res.status_mut() = status;
    set(&mut res, "content-length", &len.to_string());
    set(&mut res, "content-type", "application/octet-stream");
    set(&mut res, "docker-content-digest", &d.to_string());
    set(&mut res, "accept-ranges", "bytes");
    set(&mut res, "etag", &format!("\"{d}\""));
    if let Some((s, e)) = blob.range {
        set(
            &mut res,
            "content-range",
            &format!("bytes {s}-{e}/{}", blob.size),
        );
    }
    Ok(res)
}

async fn delete_blob(st: &AppState, name: &str, digest: &str) -> ApiResult {
    let d = parse_digest(digest)?;
    st.registry.delete_blob(name, &d).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

fn upload_response(
    st: &AppState,
    h: &HeaderMap,
    name: &str,
    id: &str,
    offset: u64,
    status: StatusCode,
) -> Response {
    let mut res = empty(status);
    let loc = headers::location(
        h,
        st.options.trust_forwarded_headers,
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set(&mut res, "location", &loc);
    set(
        &mut res,
        "range",
        &format!("0-{}", offset.saturating_sub(1)),
    );
    set(&mut res, "docker-upload-uuid", id);
    res
}

fn blob_created(st: &AppState, h: &HeaderMap, name: &str, d: &Digest) -> Response {
    let mut res = empty(StatusCode::CREATED);
    let loc = headers::location(
        h,
        st.options.trust_forwarded_headers,
        &format!("/v2/{name}/blobs/{d}"),
    );
    set(&mut res, "location", &loc);
    set(&mut res, "docker-content-digest", &d.to_string());
    res
}

/// Where `POST /v2/<name>/blobs/uploads/?mount=<digest>` may mount from.
enum MountFrom {
    /// The caller may push here but not pull the source: `mount` is ignored.
    NotAllowed,
    /// This repository, if any (with access control on, the one the guard authorized).
    Source(Option<String>),
}

async fn start_upload(
    st: &AppState,
    name: &str,
    params: &HashMap<String, String>,
    h: &HeaderMap,
    mount_from: MountFrom,
    body: Body,
) -> ApiResult {
    if let (Some(mount), MountFrom::Source(from)) = (params.get("mount"), mount_from) {
        let d = parse_digest(mount)?;
        if let Some(from) = from
            && let Some(info) = st.registry.mount_blob(name, &from, &d).await?
        {
            tracing::info!(repository = name, from = from.as_str(), digest = %d, "blob mounted");
            return Ok(blob_created(st, h, name, &info.digest));
        }
        // Not mountable: fall back to a normal upload session, as the spec says.
    } else if let Some(digest) = params.get("digest") {
        let info = st
            .registry
            .put_blob(name, digest, body_stream(body), headers::content_length(h))
            .await?;
        return Ok(blob_created(st, h, name, &info.digest));
    }
    let up = st.registry.start_upload(name).await?;
    Ok(upload_response(
        st,
        h,
        name,
        &up.id,
        up.offset,
        StatusCode::ACCEPTED,
    ))
}

async fn upload_status(st: &AppState, name: &str, id: &str, h: &HeaderMap) -> ApiResult {
    let up = st.registry.upload_status(name, id).await?;
    Ok(upload_response(
        st,
        h,
        name,
        &up.id,
        up.offset,
        StatusCode::NO_CONTENT,
    ))
}

fn chunk_bounds(h: &HeaderMap) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let range = headers::upload_range(h).map_err(|_| {
        ApiError::new(
            ErrorCode::RangeInvalid,
            "malformed Content-Range: use <first>-<last> byte offsets",
        )
    })?;
    let cl = headers::content_length(h);
    match range {
        Some((a, b)) => {
            let len = b - a + 1;
            if cl.is_some_and(|c| c != len) {
                return Err(ApiError::new(
                    ErrorCode::SizeInvalid,
                    format!(
                        "Content-Length {} does not match Content-Range {a}-{b}",
                        cl.unwrap_or_default()
                    ),
                ));
            }
            Ok((Some(a), Some(len)))
        }
        None => Ok((None, cl)),
    }
}

async fn patch_upload(st: &AppState, name: &str, id: &str, h: &HeaderMap, body: Body) -> ApiResult {
    let (start, len) = chunk_bounds(h)?;
    match st
        .registry
        .write_upload(name, id, start, len, body_stream(body))
        .await
    {
        Ok(up) => Ok(upload_response(
            st,
            h,
            name,
            &up.id,
            up.offset,
            StatusCode::ACCEPTED,
        )),
        Err(e @ RegistryError::RangeInvalid { .. }) => {
            let mut err = ApiError::from(e);
            let loc = headers::location(
                h,
                st.options.trust_forwarded_headers,
                &format!("/v2/{name}/blobs/uploads/{id}"),
            );
            err = err.with_header(header::LOCATION, &loc);
            Err(err)
        }
        Err(e) => Err(e.into()),
    }
}

async fn finish_upload(
    st: &AppState,
    name: &str,
    id: &str,
    params: &HashMap<String, String>,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
    let digest = params.get("digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required to finish an upload",
        )
    })?;
    let (start, len) = chunk_bounds(h)?;
    let chunk = if len == Some(0) {
        None
    } else {
        Some((body_stream(body), len))
    };
    let info = st
        .registry
        .finish_upload_at(name, id, digest, start, chunk)
        .await?;
    Ok(blob_created(st, h, name, &info.digest))
}

async fn referrers(
    st: &AppState,
    name: &str,
    digest: &str,
    params: &HashMap<String, String>,
) -> ApiResult {
    let d = parse_digest(digest)?;
    let filter = params.get("artifactType").filter(|s| !s.is_empty());
    let list = st
        .registry
        .referrers(name, &d, filter.map(String::as_str))
        .await?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": list,
    });
    let mut res = json_response(&index, media_type::OCI_INDEX);
    if filter.is_some() {
        set(&mut res, "oci-filters-applied", "artifactType");
    }
    Ok(res)
}
