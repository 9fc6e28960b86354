//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (start, monolithic push or mount) and
//! `GET`/`PATCH`/`PUT` `/v2/<name>/blobs/uploads/<id>` (status, chunk, finish).

use std::collections::HashMap;

use axum::body::Body;
use axum::response::Response;
use berth_oci::ErrorCode;
use berth_registry::RegistryError;
use http::{HeaderMap, StatusCode, header};

use super::blobs::blob_created;
use super::{ApiResult, body_stream, empty, parse_digest, set};
use crate::AppState;
use crate::error::ApiError;
use crate::headers;

pub(super) fn upload_response(
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

/// Where `POST /v2/<name>/blobs/uploads/?mount=<digest>` may mount from.
pub(super) enum MountFrom {
    /// The caller may push here but not pull the source: `mount` is ignored.
    NotAllowed,
    /// This repository, if any (with access control on, the one the guard authorized).
    Source(Option<String>),
}

pub(super) async fn start_upload(
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

pub(super) async fn upload_status(st: &AppState, name: &str, id: &str, h: &HeaderMap) -> ApiResult {
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

pub(super) fn chunk_bounds(h: &HeaderMap) -> Result<(Option<u64>, Option<u64>), ApiError> {
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

pub(super) async fn patch_upload(
    st: &AppState,
    name: &str,
    id: &str,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
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

pub(super) async fn finish_upload(
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
