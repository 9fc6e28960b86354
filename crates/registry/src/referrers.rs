//! The referrers index: for each subject, one descriptor file per manifest that names it.
//!
//! It lives under `_berth/` in the repository folder, which Distribution ignores (it skips every
//! `_`-prefixed folder it does not know), so a shared tree stays valid for both.

use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::{Registry, RegistryError, Result, check_name, paths};

/// Largest referrers entry (a descriptor with the manifest's annotations) accepted at push.
/// Signatures and attestations carry a few hundred bytes; the bound keeps every page of the
/// referrers answer small whatever clients push.
pub const MAX_REFERRER_ENTRY: usize = 64 * 1024;

/// Entries in one page of a referrers answer; more are linked with `Link: rel="next"`.
pub const REFERRERS_PAGE: usize = 256;
/// Bytes of entries in one page, at most (a page also ends here, before [`REFERRERS_PAGE`]).
const REFERRERS_PAGE_BYTES: usize = 1 << 20;

/// Stored entries larger than this are skipped when read (written before the push-time bound).
const MAX_STORED_ENTRY: u64 = 1 << 20;

/// One page of a subject's referrers.
#[derive(Debug, Clone, Default)]
pub struct ReferrersPage {
    /// Descriptors, ordered by digest.
    pub descriptors: Vec<Value>,
    /// When more follow: the digest to pass as `after` for the next page.
    pub next: Option<Digest>,
}

/// The referrers entry of `referrer` (a manifest of `size` bytes): its descriptor with the
/// manifest's artifact type and annotations, refused when larger than [`MAX_REFERRER_ENTRY`].
pub(crate) fn referrer_entry(m: &ParsedManifest, referrer: &Digest, size: u64) -> Result<Bytes> {
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
    if body.len() > MAX_REFERRER_ENTRY {
        return Err(RegistryError::ManifestInvalid(format!(
            "the manifest has a subject, and its annotations and artifact type take {} bytes, more than the {} KiB a referrers entry may hold: move large data into a layer",
            body.len(),
            MAX_REFERRER_ENTRY / 1024
        )));
    }
    Ok(Bytes::from(body))
}

impl Registry {
    pub(crate) async fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        referrer: &Digest,
        entry: Bytes,
    ) -> Result<()> {
        self.storage
            .put(&paths::referrer(name, subject, referrer), entry)
            .await?;
        Ok(())
    }

    /// A page of the descriptors of the manifests that name `subject`, optionally only those of
    /// one artifact type, ordered by digest, starting after the referrer `after`. An unknown
    /// subject has no referrers (not an error, per the spec).
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
    ) -> Result<ReferrersPage> {
        check_name(name)?;
        if let Some((entries, more)) = self
            .indexed_referrers(name, subject, artifact_type, after, REFERRERS_PAGE)
            .await
        {
            let mut page = ReferrersPage::default();
            let mut bytes_in_page = 0;
            let mut last = None;
            for (d, entry) in entries {
                if bytes_in_page >= REFERRERS_PAGE_BYTES {
                    page.next = last;
                    return Ok(page);
                }
                if let Ok(v) = serde_json::from_str::<Value>(&entry) {
                    bytes_in_page += entry.len();
                    page.descriptors.push(v);
                }
                last = Some(d);
            }
            if more {
                page.next = last;
            }
            return Ok(page);
        }
        let dir = paths::referrers_dir(name, subject);
        let mut names = match self.storage.list(&dir).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(ReferrersPage::default()),
            Err(e) => return Err(e.into()),
        };
        names.sort();
        let start = after.map(|a| format!("{}-{}.json", a.algorithm(), a.hex()));
        let mut page = ReferrersPage::default();
        let mut last: Option<Digest> = None;
        let mut bytes_in_page = 0;
        for n in names {
            if start.as_ref().is_some_and(|s| n.as_str() <= s.as_str()) {
                continue;
            }
            if page.descriptors.len() == REFERRERS_PAGE || bytes_in_page >= REFERRERS_PAGE_BYTES {
                page.next = last;
                break;
            }
            let bytes = match self
                .storage
                .read(&format!("{dir}/{n}"), MAX_STORED_ENTRY)
                .await
            {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(berth_storage::StorageError::TooLarge { path, .. }) => {
                    tracing::warn!(entry = path, "skipped an oversized referrers entry");
                    continue;
                }
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
            last = Some(d);
            bytes_in_page += bytes.len();
            page.descriptors.push(v);
        }
        Ok(page)
    }
}
