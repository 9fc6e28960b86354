//! The referrers API (`/v2/<name>/referrers/<digest>`), with the tag schema fallback
//! (`<alg>-<hex>` index tags) for registries without it.

use berth_oci::{Descriptor, Digest, ParsedManifest, media_type as mt};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::Scope;
use crate::client::{Client, Req};
use crate::error::Result;
use crate::manifest::Manifest;

/// Most pages of a referrers answer followed (a registry that links pages without end stops
/// here).
const MAX_REFERRER_PAGES: usize = 1000;

/// The tag the fallback index of `subject`'s referrers lives under.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

impl Client {
    /// Manifests that refer to `subject`, optionally only those of `artifact_type`.
    /// Uses the referrers API, or the tag schema when the registry does not have it.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let what = format!("referrers of {}/{repo}@{subject}", self.registry());
        let mut path = format!("/v2/{repo}/referrers/{subject}");
        if let Some(t) = artifact_type {
            path.push_str(&format!("?artifactType={}", crate::client::urlencode(t)));
        }
        let mut url = self.url(&path).await?;
        let mut list = Vec::new();
        // A registry may split a long list into pages linked with `Link: rel="next"`.
        for _page in 0..MAX_REFERRER_PAGES {
            let resp = self
                .send(Req::new(Method::GET, url.clone(), Scope::pull(repo), &what))
                .await?;
            let status = resp.status().as_u16();
            let is_index = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with(mt::OCI_INDEX));
            if status == 200 && is_index {
                let next = crate::listing::next_link(&resp);
                let base = resp.url().clone();
                let body = self
                    .read_capped(resp, crate::client::MAX_LISTING_BODY, &what)
                    .await?;
                let parsed = ParsedManifest::parse(&body, Some(mt::OCI_INDEX))
                    .map_err(|e| self.protocol(format!("{what}: bad referrers index: {e}")))?;
                list.extend(parsed.manifests);
                match next.and_then(|n| base.join(&n).ok()) {
                    Some(n) => url = n.to_string(),
                    None => break,
                }
            } else if list.is_empty() && (status == 404 || status == 400 || status == 405) {
                list = match self.get_manifest(repo, &fallback_tag(subject)).await {
                    Ok(m) => m.parse()?.manifests,
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(e) => return Err(e),
                };
                break;
            } else {
                return Err(self.error_from(resp, &what).await);
            }
        }
        Ok(match artifact_type {
            Some(t) => list
                .into_iter()
                .filter(|d| d.artifact_type.as_deref() == Some(t))
                .collect(),
            None => list,
        })
    }

    /// Adds `manifest` to the fallback index of `subject` (tag schema), creating it if needed.
    pub(crate) async fn add_referrer_fallback(
        &self,
        repo: &str,
        subject: &Digest,
        manifest: &Manifest,
        parsed: &ParsedManifest,
    ) -> Result<()> {
        let tag = fallback_tag(subject);
        let mut index: Value = match self.get_manifest(repo, &tag).await {
            Ok(m) => serde_json::from_slice(&m.bytes).unwrap_or_else(|_| json!({})),
            Err(e) if e.is_not_found() => json!({}),
            Err(e) => return Err(e),
        };
        if !index.is_object() {
            index = json!({});
        }
        index["schemaVersion"] = json!(2);
        index["mediaType"] = json!(mt::OCI_INDEX);
        let entries = index.get_mut("manifests").and_then(Value::as_array_mut);
        let digest = manifest.digest.to_string();
        let mut list = entries.map(std::mem::take).unwrap_or_default();
        if list
            .iter()
            .any(|d| d.get("digest").and_then(Value::as_str) == Some(&digest))
        {
            return Ok(());
        }
        let mut desc =
            json!({"mediaType": manifest.media_type, "digest": digest, "size": manifest.size()});
        if let Some(t) = parsed.effective_artifact_type() {
            desc["artifactType"] = json!(t);
        }
        if let Some(a) = &parsed.annotations {
            desc["annotations"] = Value::Object(a.clone());
        }
        list.push(desc);
        index["manifests"] = Value::Array(list);
        let bytes = serde_json::to_vec(&index).expect("JSON serializes");
        let fallback = Manifest::from_bytes(bytes, Some(mt::OCI_INDEX))?;
        Box::pin(self.put_manifest(repo, &tag, &fallback)).await?;
        Ok(())
    }
}
