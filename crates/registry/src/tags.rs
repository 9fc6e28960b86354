//! Tag listing and the catalog, sorted and paginated with `n` and `last`.

use crate::{Registry, RegistryError, Result, check_name, paths};

/// Applies `last` (exclusive start) and `n` (page size) to a sorted list.
fn paginate(mut all: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    all.sort();
    all.dedup();
    let start = match last {
        Some(l) => all.partition_point(|x| x.as_str() <= l),
        None => 0,
    };
    let rest = &all[start..];
    match n {
        Some(n) if n < rest.len() => (rest[..n].to_vec(), true),
        _ => (rest.to_vec(), false),
    }
}

impl Registry {
    /// Every tag of a repository, unsorted.
    pub(crate) async fn all_tags(&self, name: &str) -> Result<Vec<String>> {
        match self.storage.list(&paths::tags(name)).await {
            Ok(v) => self.live_tags(name, v).await,
            Err(e) if e.is_not_found() => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }

    /// The valid tag names of a listing whose tag resolves. A tag is written link first
    /// (`current/link`, then its index entry), so on an object store a listed tag always has
    /// its link; a local folder can hold a tag folder that a crash left without one (the
    /// folder is made before the link is renamed into it), so there each link is checked, a
    /// `stat` per tag.
    async fn live_tags(&self, name: &str, listed: Vec<String>) -> Result<Vec<String>> {
        use futures::StreamExt as _;
        let valid = listed
            .into_iter()
            .filter(|t| berth_oci::validate_tag(t).is_ok());
        if !self.storage.lists_empty_folders() {
            return Ok(valid.collect());
        }
        let checked: Vec<Result<Option<String>>> = futures::stream::iter(valid)
            .map(|t| async move {
                Ok(self
                    .exists(&paths::tag_current(name, &t))
                    .await?
                    .then_some(t))
            })
            .buffer_unordered(16)
            .collect()
            .await;
        checked.into_iter().filter_map(Result::transpose).collect()
    }

    /// Tags of a repository in lexical order; the bool says whether more follow.
    pub async fn list_tags(
        &self,
        name: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        check_name(name)?;
        if let Some(answer) = self.indexed_tags(name, n, last).await {
            return answer.ok_or_else(|| RegistryError::NameUnknown(name.to_owned()));
        }
        // A repository with no tags folder and no manifests or blobs (abandoned uploads at
        // most) is unknown, and a tag is listed when its folder holds its link; tag deletion
        // removes the whole folder, so object stores need no per-tag read (it matters for
        // repositories with thousands of tags).
        let tags = match self.storage.list(&paths::tags(name)).await {
            Ok(v) => self.live_tags(name, v).await?,
            // Object stores keep no empty folders: once its last tag (or manifest) is deleted,
            // a repository that still holds manifests or blobs lists no tags, as it does on a
            // folder, rather than becoming unknown.
            Err(e) if e.is_not_found() && self.repo_has_content(name).await? => Vec::new(),
            Err(e) if e.is_not_found() => {
                return Err(RegistryError::NameUnknown(name.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(paginate(tags, n, last))
    }

    async fn repo_has_content(&self, name: &str) -> Result<bool> {
        let repo = paths::repo(name);
        Ok(self.exists(&format!("{repo}/_manifests")).await?
            || self.exists(&format!("{repo}/_layers")).await?)
    }

    /// Repository names in lexical order; the bool says whether more follow.
    pub async fn catalog(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        if let Some(answer) = self.indexed_catalog(n, last).await {
            return Ok(answer);
        }
        let found = self
            .repo_dirs(|c| c == "_manifests" || c == "_layers")
            .await?;
        Ok(paginate(found, n, last))
    }

    /// Names of the folders under `repositories` that hold a child `marks` accepts (such as
    /// `_manifests`), unsorted.
    pub(crate) async fn repo_dirs(&self, marks: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut stack = vec![String::new()];
        let root = paths::repositories();
        while let Some(rel) = stack.pop() {
            let dir = if rel.is_empty() {
                root.clone()
            } else {
                format!("{root}/{rel}")
            };
            // One listing per folder: the marks (`_manifests`, `_layers`) and the
            // subfolders are all folders, so no child needs a stat of its own.
            let children = match self.storage.list_folders(&dir).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let mut is_repo = false;
            for c in children {
                if c.starts_with('_') {
                    is_repo |= marks(&c);
                    continue;
                }
                stack.push(if rel.is_empty() {
                    c
                } else {
                    format!("{rel}/{c}")
                });
            }
            if is_repo && check_name(&rel).is_ok() {
                found.push(rel);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::paginate;

    #[test]
    fn pages() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            paginate(v(&["b", "a", "c"]), Some(2), None),
            (v(&["a", "b"]), true)
        );
        assert_eq!(
            paginate(v(&["b", "a", "c"]), Some(2), Some("b")),
            (v(&["c"]), false)
        );
        assert_eq!(paginate(v(&["b", "a", "c"]), Some(0), None), (v(&[]), true));
        assert_eq!(paginate(v(&["a"]), None, Some("zz")), (v(&[]), false));
    }
}
