//! `GET`/`HEAD`/`PUT` `/v2/<name>/manifests/<reference>` (`DELETE` is one registry call, in
//! [`super::dispatch`]).

use axum::body::Body;
use axum::response::Response;
use berth_oci::ErrorCode;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use super::{ApiResult, empty, set};
use crate::AppState;
use crate::error::ApiError;
use crate::headers;

pub(super) async fn get_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
    h: &HeaderMap,
    head: bool,
) -> ApiResult {
    // A HEAD is no pull (clients HEAD to check for updates); a GET is recorded as one.
    let m = if head {
        st.registry.get_manifest_unrecorded(name, reference).await?
    } else {
        st.registry.get_manifest(name, reference).await?
    };
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

/// Every `tag` query parameter, in order (a map of parameters keeps only one).
pub(super) fn tag_params(uri: &http::Uri) -> Vec<String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("tag="))
        .map(berth_oci::route::percent_decode)
        .collect()
}

pub(super) async fn put_manifest(
    st: &AppState,
    name: &str,
    reference: &str,
    tags: &[String],
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
    let out = st
        .registry
        .put_manifest_tagged(name, reference, ct, bytes, tags)
        .await?;
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
    if !tags.is_empty() {
        // One `OCI-Tag` per tag the push set, so the client knows `?tag=` was honoured.
        for t in &out.tags {
            if let Ok(v) = http::HeaderValue::from_str(t) {
                res.headers_mut().append("oci-tag", v);
            }
        }
    }
    Ok(res)
}
