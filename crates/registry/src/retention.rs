//! Retention rules applied to a repository: which tags go (the rule decides, from push and
//! pull times and expiry annotations), and what the run tells the mark phase about the
//! manifests those tags leave behind.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use berth_oci::manifest::ParsedManifest;

use crate::policy::{self, RetentionRule, TagFacts};
use crate::{Registry, Result, paths};

/// Largest image config read for its labels.
const CONFIG_LIMIT: u64 = 4 << 20;

/// A tag a policy run deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDeleted {
    /// The repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The manifest it pointed at.
    pub digest: Digest,
    /// Why: the rule and what the tag failed.
    pub reason: String,
}

/// What retention decided for one repository, for its mark phase.
#[derive(Debug, Default)]
pub(crate) struct RepoPlan {
    /// Tags deleted (in a dry run: to be treated as deleted).
    pub removed_tags: BTreeSet<String>,
    /// The manifests those tags pointed at: they go when nothing else reaches them.
    pub orphans: BTreeSet<Digest>,
    /// Untagged manifests whose revision is older than this go.
    pub untagged_before: Option<SystemTime>,
}

impl RepoPlan {
    /// Whether the plan deletes anything beyond what the run's options do.
    pub fn prunes(&self) -> bool {
        !self.orphans.is_empty() || self.untagged_before.is_some()
    }
}

impl Registry {
    /// Applies a retention rule (its index in the policies, and the rule) to `name`: deletes the tags it
    /// judges (none in a dry run), and returns the plan for the mark phase.
    pub(crate) async fn apply_retention(
        &self,
        name: &str,
        (index, rule): (usize, &RetentionRule),
        dry_run: bool,
        grace_cutoff: SystemTime,
        now: SystemTime,
        deleted: &mut Vec<TagDeleted>,
    ) -> Result<RepoPlan> {
        let mut plan = RepoPlan {
            untagged_before: rule.untagged.map(|a| {
                now.checked_sub(a.0)
                    .unwrap_or(SystemTime::UNIX_EPOCH)
                    .min(grace_cutoff)
            }),
            ..RepoPlan::default()
        };
        let (facts, pulls_known) = self.tag_facts(name, rule.expiry).await?;
        if rule.keep.pulled_within.is_some() && !pulls_known {
            tracing::warn!(
                repository = name,
                "retention keeps every tag here: pull times are recorded only with the metadata index (database)"
            );
        }
        let policies = &self.config.policies;
        let verdicts = rule.judge(
            &facts,
            now,
            |t| policies.immutable_rule(name, t).is_some(),
            pulls_known,
        );
        for (t, why) in verdicts {
            if !dry_run && !self.retention_delete_tag(name, &t, grace_cutoff).await? {
                continue;
            }
            tracing::info!(repository = name, tag = t.tag, digest = %t.digest, reason = why, dry_run, "retention deleted a tag");
            plan.removed_tags.insert(t.tag.clone());
            plan.orphans.insert(t.digest.clone());
            deleted.push(TagDeleted {
                repository: name.to_owned(),
                tag: t.tag,
                digest: t.digest,
                reason: format!(
                    "retention[{index}] ({}): {why}",
                    rule.repositories.describe()
                ),
            });
        }
        Ok(plan)
    }

    /// Deletes a tag retention judged, unless it moved since (or was pushed again inside
    /// the grace window): returns whether it was deleted.
    async fn retention_delete_tag(
        &self,
        name: &str,
        t: &TagFacts,
        grace_cutoff: SystemTime,
    ) -> Result<bool> {
        let current = paths::tag_current(name, &t.tag);
        if self.read_link(&current).await?.as_ref() != Some(&t.digest)
            || self
                .modified(&current)
                .await?
                .is_none_or(|m| m >= grace_cutoff)
        {
            return Ok(false);
        }
        self.index_delete_tag(name, &t.tag).await?;
        self.delete_quiet(&paths::tag_dir(name, &t.tag)).await?;
        Ok(true)
    }

    /// Every tag of a repository as retention sees it; the bool says whether pull times are
    /// known (they are with the index).
    async fn tag_facts(&self, name: &str, with_expiry: bool) -> Result<(Vec<TagFacts>, bool)> {
        let ix = self.index();
        let records: HashMap<String, (Digest, SystemTime)> = match ix {
            Some(ix) => ix
                .tag_records(name)
                .await?
                .into_iter()
                .map(|r| (r.tag, (r.digest, r.pushed_at)))
                .collect(),
            None => HashMap::new(),
        };
        let mut expiry: HashMap<Digest, Option<Duration>> = HashMap::new();
        let mut pulled: HashMap<Digest, Option<SystemTime>> = HashMap::new();
        let mut out = Vec::new();
        for tag in self.all_tags(name).await? {
            let current = paths::tag_current(name, &tag);
            // Storage is the truth for where a tag points; the index for when it was pushed
            // there (else the link's own time).
            let Some(digest) = self.read_link(&current).await? else {
                continue;
            };
            let pushed_at = match records.get(&tag) {
                Some((d, at)) if *d == digest => *at,
                _ => match self.modified(&current).await? {
                    Some(m) => m,
                    None => continue,
                },
            };
            let last_pulled = match (ix, pulled.get(&digest)) {
                (_, Some(p)) => *p,
                (Some(ix), None) => {
                    let p = ix
                        .manifest_info(name, &digest)
                        .await?
                        .and_then(|i| i.last_pulled_at);
                    pulled.insert(digest.clone(), p);
                    p
                }
                (None, None) => None,
            };
            let expires_after = if with_expiry {
                match expiry.get(&digest) {
                    Some(e) => *e,
                    None => {
                        let e = self.expiry_of(name, &digest).await?;
                        expiry.insert(digest.clone(), e);
                        e
                    }
                }
            } else {
                None
            };
            out.push(TagFacts {
                tag,
                digest,
                pushed_at,
                last_pulled,
                expires_after,
            });
        }
        Ok((out, ix.is_some()))
    }

    /// A manifest's [`policy::EXPIRES_AFTER`]: its annotation, else (for an image) its
    /// config's label, as Docker builds set it with `--label`.
    async fn expiry_of(&self, name: &str, d: &Digest) -> Result<Option<Duration>> {
        let Ok(m) = self.get_manifest_unrecorded(name, &d.to_string()).await else {
            return Ok(None);
        };
        let Ok(p) = ParsedManifest::parse(&m.bytes, Some(&m.media_type)) else {
            return Ok(None);
        };
        if let Some(e) = policy::expires_after(p.annotations.as_ref()) {
            return Ok(Some(e));
        }
        let Some(config) = &p.config else {
            return Ok(None);
        };
        let bytes = match self
            .storage
            .read(&paths::blob_data(&config.digest), CONFIG_LIMIT)
            .await
        {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            // Too large to be a config, or unreadable: no label to honour.
            Err(_) => return Ok(None),
        };
        let labels = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("config")?.get("Labels")?.as_object().cloned());
        Ok(policy::expires_after(labels.as_ref()))
    }
}
