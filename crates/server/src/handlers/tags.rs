//! `GET /v2/<name>/tags/list`: a repository's tags, a page at a time.

use std::collections::HashMap;

use super::{ApiResult, json_response, link_next, page_params, set};
use crate::AppState;

pub(super) async fn tags(st: &AppState, name: &str, params: &HashMap<String, String>) -> ApiResult {
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
