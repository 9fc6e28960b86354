//! `GET /v2/_catalog`: the repositories, a page at a time.

use std::collections::HashMap;

use super::{ApiResult, json_response, link_next, page_params, set};
use crate::AppState;

/// Catalog pages hold at most this many names when the client does not ask for fewer
/// (Distribution's `catalog.maxentries` default).
const CATALOG_MAX: usize = 1000;

pub(super) async fn catalog(st: &AppState, params: &HashMap<String, String>) -> ApiResult {
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
