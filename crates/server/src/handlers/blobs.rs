//! `GET`/`HEAD`/`DELETE` `/v2/<name>/blobs/<digest>`, and the answer to a finished blob push.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, ErrorCode};
use http::{HeaderMap, StatusCode};

use super::{ApiResult, empty, parse_digest, set};
use crate::AppState;
use crate::error::ApiError;
use crate::headers;

pub(super) async fn get_blob(
    st: &AppState,
    name: &str,
    digest: &str,
    h: &HeaderMap,
    head: bool,
) -> ApiResult {
    let d = parse_digest(digest)?;
    if head {
        let info = st.registry.head_blob(name, &d).await?;
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

pub(super) async fn delete_blob(st: &AppState, name: &str, digest: &str) -> ApiResult {
    let d = parse_digest(digest)?;
    st.registry.delete_blob(name, &d).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(super) fn blob_created(st: &AppState, h: &HeaderMap, name: &str, d: &Digest) -> Response {
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
