//! The referrers index: for each subject, one descriptor file per manifest that names it.
//!
//! It lives under `_berth/` in the repository folder, which Distribution ignores (it skips every
//! `_`-prefixed folder it does not know), so a shared tree stays valid for both.

use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::{Registry, Result, check_name, paths};

impl Registry {
    pub(crate) async fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        referrer: &Digest,
        m: &ParsedManifest,
        size: u64,
    ) -> Result<()> {
        let mut desc = Map::new();
        desc.insert("mediaType".into(), json!(m.media_type));
        desc.insert("digest".into(), json!(referrer.to_string()));
        desc.insert("size".into(), json!(size));
        if let Some(at) = m.effective_artifact_type() {
            desc.insert("artifactType".into(), json!(at));
        }
        if let Some(a) = &m.annotations {
            desc.insert("annotations".into(), Value::Object(a.clone()));
        }
        let body = serde_json::to_vec(&Value::Object(desc)).expect("a JSON map serializes");
        self.storage
            .put(&paths::referrer(name, subject, referrer), Bytes::from(body))
            .await?;
        Ok(())
    }

    /// Descriptors of the manifests that name `subject`, optionally only those of one artifact
    /// type, ordered by digest. An unknown subject has no referrers (not an error, per the spec).
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>> {
        check_name(name)?;
        let dir = paths::referrers_dir(name, subject);
        let mut names = match self.storage.list(&dir).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        names.sort();
        let mut out = Vec::new();
        for n in names {
            let bytes = match self.storage.read(&format!("{dir}/{n}"), 1 << 20).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            // Skip entries whose manifest was deleted without the index being updated.
            let Some(d) = v
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Digest>().ok())
            else {
                continue;
            };
            if self
                .read_link(&paths::revision_link(name, &d))
                .await?
                .is_none()
            {
                continue;
            }
            if let Some(want) = artifact_type
                && v.get("artifactType").and_then(Value::as_str) != Some(want)
            {
                continue;
            }
            out.push(v);
        }
        Ok(out)
    }
}
