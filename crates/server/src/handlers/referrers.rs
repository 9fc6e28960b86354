//! `GET /v2/<name>/referrers/<digest>`: the OCI index of a subject's referrers.

use std::collections::HashMap;

use berth_oci::media_type;

use super::{ApiResult, json_response, parse_digest, set};
use crate::AppState;

pub(super) async fn referrers(
    st: &AppState,
    name: &str,
    digest: &str,
    params: &HashMap<String, String>,
) -> ApiResult {
    let d = parse_digest(digest)?;
    let filter = params.get("artifactType").filter(|s| !s.is_empty());
    let after = params
        .get("last")
        .filter(|s| !s.is_empty())
        .map(|s| parse_digest(s))
        .transpose()?;
    let page = st
        .registry
        .referrers(name, &d, filter.map(String::as_str), after.as_ref())
        .await?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": page.descriptors,
    });
    let mut res = json_response(&index, media_type::OCI_INDEX);
    if filter.is_some() {
        set(&mut res, "oci-filters-applied", "artifactType");
    }
    if let Some(next) = page.next {
        // The spec lets a registry split a long list; the next page starts after `last`.
        let mut url = format!("/v2/{name}/referrers/{d}?last={next}");
        if let Some(t) = filter {
            url.push_str(&format!(
                "&artifactType={}",
                berth_oci::route::percent_encode(t)
            ));
        }
        set(&mut res, "link", &format!("<{url}>; rel=\"next\""));
    }
    Ok(res)
}
