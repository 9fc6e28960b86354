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
