//! The config edits of a build, applied in one order: automatic labels, merge files, then the
//! flag-style edits (so an explicit edit always wins).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::error::BuildError;
use crate::config_merge::merge_document;
use crate::image::{self, ConfigEdits};
use crate::labels::{self, BaseImage};

/// How the new image's config is edited.
#[derive(Debug, Clone, Default)]
pub struct ConfigPlan {
    /// The variables the build may read: CI variables for the standard labels,
    /// `SOURCE_DATE_EPOCH` for reproducible times, `$VAR` values in merge files. The caller
    /// chooses them (the binary passes its environment); this crate reads no environment.
    pub vars: BTreeMap<String, String>,
    /// Add the `org.opencontainers.image.*` labels (created, revision, source, version, base).
    pub standard_labels: bool,
    /// Where to look for a git checkout when no CI variables name the revision.
    pub git_dir: Option<PathBuf>,
    /// YAML or JSON merge patches, applied in order.
    pub merge_files: Vec<PathBuf>,
    /// Explicit edits, applied last.
    pub edits: ConfigEdits,
}

impl ConfigPlan {
    /// `created` for the config and history: `SOURCE_DATE_EPOCH` when set, so that the same
    /// input gives the same digests, else now.
    pub(crate) fn created(&self) -> Result<String, BuildError> {
        let secs = match labels::source_date_epoch(&self.vars)? {
            Some(s) => s,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        Ok(labels::rfc3339(secs))
    }

    /// Applies the edits to `config`.
    pub(crate) fn apply(
        &self,
        config: &mut Value,
        base: Option<&BaseImage>,
    ) -> Result<(), BuildError> {
        if self.standard_labels {
            let l = labels::standard_labels(&self.vars, self.git_dir.as_deref(), base)?;
            labels::apply_labels(config, &l).map_err(BuildError::Labels)?;
        }
        for path in &self.merge_files {
            let text = std::fs::read_to_string(path).map_err(|source| BuildError::ConfigFile {
                path: path.clone(),
                source,
            })?;
            merge_document(config, &text, &self.vars).map_err(|source| BuildError::Merge {
                path: path.clone(),
                source,
            })?;
        }
        image::apply_edits(config, &self.edits).map_err(BuildError::Edit)
    }
}
