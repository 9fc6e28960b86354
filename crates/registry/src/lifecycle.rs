//! The policies' checks on the write paths: immutable tags and quotas. (Retention runs with
//! garbage collection, in `retention.rs`.)

use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;

use crate::{Registry, RegistryError, Result, paths};

impl Registry {
    /// Refuses pointing `tag` at `to` (or, with `None`, deleting it) when a policy makes the
    /// tag immutable and it exists, pointing elsewhere. Re-pushing the same manifest is fine.
    pub(crate) async fn check_tag_mutable(
        &self,
        name: &str,
        tag: &str,
        to: Option<&Digest>,
    ) -> Result<()> {
        let Some((i, rule)) = self.config.policies.immutable_rule(name, tag) else {
            return Ok(());
        };
        match self.read_link(&paths::tag_current(name, tag)).await? {
            None => Ok(()),
            Some(d) if Some(&d) == to => Ok(()),
            Some(d) => Err(RegistryError::Denied(format!(
                "tag {tag} of {name} is immutable (policy immutable[{i}]: {}) and points at {d}: \
                 {} under a new tag",
                rule.repositories.describe(),
                if to.is_some() {
                    "push"
                } else {
                    "it cannot be deleted; push"
                }
            ))),
        }
    }

    /// Refuses deleting the manifest `d` while an immutable tag points at it.
    pub(crate) async fn check_manifest_deletable(&self, name: &str, d: &Digest) -> Result<()> {
        if self.config.policies.immutable.is_empty() {
            return Ok(());
        }
        for tag in self.all_tags(name).await? {
            if self.config.policies.immutable_rule(name, &tag).is_some()
                && self
                    .read_link(&paths::tag_current(name, &tag))
                    .await?
                    .as_ref()
                    == Some(d)
            {
                return self.check_tag_mutable(name, &tag, None).await;
            }
        }
        Ok(())
    }

    /// Refuses a write that would take the repository past its quota: `adding` bytes on top of
    /// what its manifests hold now (`what` names the write in the message).
    pub(crate) async fn check_quota(&self, name: &str, adding: u64, what: &str) -> Result<()> {
        let Some((i, rule)) = self.config.policies.quota(name) else {
            return Ok(());
        };
        let limit = rule.bytes.0;
        let used = self.quota_usage(name).await?;
        if used.saturating_add(adding) <= limit {
            return Ok(());
        }
        Err(RegistryError::Denied(format!(
            "{what} would bring repository {name} to {} bytes, past its quota of {limit} bytes \
             (policy quotas[{i}]: {}); it holds {used} bytes now: delete images from it or raise the quota",
            used.saturating_add(adding),
            rule.repositories.describe()
        )))
    }

    /// Whether the repository's quota is reached (a new upload would be refused at once).
    pub(crate) async fn check_quota_room(&self, name: &str) -> Result<()> {
        let Some((i, rule)) = self.config.policies.quota(name) else {
            return Ok(());
        };
        let used = self.quota_usage(name).await?;
        if used < rule.bytes.0 {
            return Ok(());
        }
        Err(RegistryError::Denied(format!(
            "repository {name} holds {used} bytes, its quota of {} bytes (policy quotas[{i}]: {}): \
             delete images from it or raise the quota",
            rule.bytes.0,
            rule.repositories.describe()
        )))
    }

    /// A blob of `size` bytes about to be stored in (or mounted into) the repository: refused
    /// when it would take the repository past its quota, unless a manifest there already
    /// references it (then it adds nothing).
    pub(crate) async fn check_quota_blob(
        &self,
        name: &str,
        d: Option<&Digest>,
        size: u64,
    ) -> Result<()> {
        if self.config.policies.quota(name).is_none() {
            return Ok(());
        }
        if let (Some(d), Some(ix)) = (d, self.index())
            && ix.references_blob(name, d).await?
        {
            return Ok(());
        }
        self.check_quota(name, size, &format!("a blob of {size} bytes"))
            .await
    }

    /// A manifest about to be pushed: its own bytes (unless already there) and every blob it
    /// references that no manifest of the repository references yet.
    pub(crate) async fn check_quota_manifest(
        &self,
        name: &str,
        d: &Digest,
        size: u64,
        m: &ParsedManifest,
    ) -> Result<()> {
        if self.config.policies.quota(name).is_none() {
            return Ok(());
        }
        let ix = self.quota_index()?;
        let mut adding = if ix.has_manifest(name, d).await? {
            0
        } else {
            size
        };
        let mut seen = std::collections::HashSet::new();
        for b in m.config.iter().chain(m.layers.iter()) {
            if seen.insert(&b.digest) && !ix.references_blob(name, &b.digest).await? {
                adding = adding.saturating_add(b.size);
            }
        }
        if adding == 0 {
            return Ok(());
        }
        self.check_quota(
            name,
            adding,
            &format!("manifest {d} with its new blobs ({adding} bytes)"),
        )
        .await
    }

    fn quota_index(&self) -> Result<&berth_index::Index> {
        self.index().ok_or_else(|| {
            RegistryError::Unsupported("quotas need the metadata index (database)".into())
        })
    }

    /// What counts against a quota: the repository's manifests and the distinct blobs they
    /// reference (from the index, also while its first build runs: it records every push).
    async fn quota_usage(&self, name: &str) -> Result<u64> {
        Ok(self
            .quota_index()?
            .repository_size(name)
            .await?
            .unwrap_or(0))
    }
}
