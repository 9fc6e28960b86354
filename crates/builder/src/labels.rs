//! Standard OCI annotations/labels (`org.opencontainers.image.*`) from the build context.
//!
//! The environment is a parameter (the CLI passes the process environment; tests pass a
//! map), so nothing here reads or changes the process environment. Sources, first match
//! wins:
//!
//! | | revision | source | version |
//! |---|---|---|---|
//! | GitHub Actions (`GITHUB_ACTIONS=true` or `GITHUB_SHA`) | `GITHUB_SHA` | `GITHUB_SERVER_URL/GITHUB_REPOSITORY` | `GITHUB_REF_NAME` (tag or branch) |
//! | GitLab CI (`GITLAB_CI` or `CI_COMMIT_SHA`) | `CI_COMMIT_SHA` | `CI_PROJECT_URL` | `CI_COMMIT_TAG`, else `CI_COMMIT_REF_NAME` |
//! | a git checkout (`.git` in the given folder or above) | `git rev-parse HEAD` | `remote.origin.url` (credentials removed, only `scheme://` URLs) | exact tag on `HEAD`, else the branch |
//!
//! `created` is `SOURCE_DATE_EPOCH` when set (reproducible builds), else the current
//! time, in RFC 3339 UTC. `base.name` / `base.digest` come from the caller.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_oci::Digest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `org.opencontainers.image.created`
pub const CREATED: &str = "org.opencontainers.image.created";
/// `org.opencontainers.image.revision`
pub const REVISION: &str = "org.opencontainers.image.revision";
/// `org.opencontainers.image.source`
pub const SOURCE: &str = "org.opencontainers.image.source";
/// `org.opencontainers.image.version`
pub const VERSION: &str = "org.opencontainers.image.version";
/// `org.opencontainers.image.base.name`
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// `org.opencontainers.image.base.digest`
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The image this one is built on, for the `base.*` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// Full reference, e.g. `docker.io/library/alpine:3.20`.
    pub name: String,
    /// Manifest digest.
    pub digest: Digest,
}

/// Why the labels could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// `SOURCE_DATE_EPOCH` is set but is not a number of seconds.
    #[error(
        "SOURCE_DATE_EPOCH={value:?} is not a non-negative whole number of seconds since 1970-01-01; fix or unset it (e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct))"
    )]
    InvalidSourceDateEpoch {
        /// The value found.
        value: String,
    },
}

/// Reads `SOURCE_DATE_EPOCH` from `env`: `None` when unset or empty.
///
/// # Errors
///
/// [`LabelError::InvalidSourceDateEpoch`] when it is set to something else than a
/// non-negative integer (a silently ignored typo would break reproducibility).
pub fn source_date_epoch(env: &BTreeMap<String, String>) -> Result<Option<u64>, LabelError> {
    match env.get("SOURCE_DATE_EPOCH").map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(value) => {
            value
                .parse::<u64>()
                .map(Some)
                .map_err(|_| LabelError::InvalidSourceDateEpoch {
                    value: value.to_string(),
                })
        }
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2024-01-31T12:00:00Z`).
pub fn rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_string())
}

/// Computes the standard labels (see the [module docs](self)).
///
/// `git_dir` is where to look for a git checkout when no CI variables are present
/// (usually the current directory); `None` skips git. Missing information is simply
/// left out; git failures are logged at debug level, never errors.
///
/// # Errors
///
/// An invalid `SOURCE_DATE_EPOCH`.
pub fn standard_labels(
    env: &BTreeMap<String, String>,
    git_dir: Option<&Path>,
    base: Option<&BaseImage>,
) -> Result<BTreeMap<String, String>, LabelError> {
    let mut labels = BTreeMap::new();
    let created = match source_date_epoch(env)? {
        Some(epoch) => epoch,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    labels.insert(CREATED.to_string(), rfc3339(created));

    let info = if is_github(env) {
        github(env)
    } else if is_gitlab(env) {
        gitlab(env)
    } else {
        git_dir.and_then(git).unwrap_or_default()
    };
    for (key, value) in [
        (REVISION, info.revision),
        (SOURCE, info.source),
        (VERSION, info.version),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            labels.insert(key.to_string(), value);
        }
    }

    if let Some(base) = base {
        labels.insert(BASE_NAME.to_string(), base.name.clone());
        labels.insert(BASE_DIGEST.to_string(), base.digest.to_string());
    }
    Ok(labels)
}

/// Sets `labels` in the image config's `config.Labels` (existing labels with other names
/// are kept, same names are overwritten).
///
/// # Errors
///
/// [`crate::config_merge::MergeError`] if `config` is not a JSON object.
pub fn apply_labels(
    config: &mut serde_json::Value,
    labels: &BTreeMap<String, String>,
) -> Result<(), crate::config_merge::MergeError> {
    crate::config_merge::merge_value(
        config,
        serde_json::json!({ "config": { "Labels": labels } }),
    )
}

#[derive(Debug, Default, PartialEq, Eq)]
struct SourceInfo {
    revision: Option<String>,
    source: Option<String>,
    version: Option<String>,
}

fn var(env: &BTreeMap<String, String>, name: &str) -> Option<String> {
    env.get(name).filter(|v| !v.is_empty()).cloned()
}

fn is_github(env: &BTreeMap<String, String>) -> bool {
    env.get("GITHUB_ACTIONS").is_some_and(|v| v == "true") || var(env, "GITHUB_SHA").is_some()
}

fn is_gitlab(env: &BTreeMap<String, String>) -> bool {
    var(env, "GITLAB_CI").is_some() || var(env, "CI_COMMIT_SHA").is_some()
}

fn github(env: &BTreeMap<String, String>) -> SourceInfo {
    let server = var(env, "GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    SourceInfo {
        revision: var(env, "GITHUB_SHA"),
        source: var(env, "GITHUB_REPOSITORY")
            .map(|repo| format!("{}/{repo}", server.trim_end_matches('/'))),
        version: var(env, "GITHUB_REF_NAME"),
    }
}

fn gitlab(env: &BTreeMap<String, String>) -> SourceInfo {
    SourceInfo {
        revision: var(env, "CI_COMMIT_SHA"),
        source: var(env, "CI_PROJECT_URL"),
        version: var(env, "CI_COMMIT_TAG").or_else(|| var(env, "CI_COMMIT_REF_NAME")),
    }
}

/// Reads revision, origin and tag/branch from the git checkout containing `dir`.
fn git(dir: &Path) -> Option<SourceInfo> {
    if !dir.ancestors().any(|d| d.join(".git").exists()) {
        return None;
    }
    let revision = run_git(dir, &["rev-parse", "--verify", "-q", "HEAD"])?;
    let version = run_git(dir, &["describe", "--tags", "--exact-match", "HEAD"])
        .or_else(|| run_git(dir, &["symbolic-ref", "--short", "-q", "HEAD"]));
    let source =
        run_git(dir, &["config", "--get", "remote.origin.url"]).and_then(|url| public_url(&url));
    Some(SourceInfo {
        revision: Some(revision),
        source,
        version,
    })
}

fn run_git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        // The checkout may belong to another user (CI containers); we only read from it.
        .args(["-c", "safe.directory=*", "-C"])
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (!text.is_empty()).then_some(text)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "cannot run git; no revision labels from git");
            None
        }
    }
}

/// A remote URL without credentials and `.git` suffix; `None` for scp-like or local
/// remotes, which are not browsable URLs.
fn public_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{host}/{path}")
        }
        None => rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string(),
    };
    let scheme = match scheme {
        "ssh" | "git" | "git+ssh" => "https",
        "http" | "https" => scheme,
        _ => return None,
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    Some(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn epoch_parsing() {
        assert_eq!(source_date_epoch(&env(&[])).unwrap(), None);
        assert_eq!(
            source_date_epoch(&env(&[("SOURCE_DATE_EPOCH", "")])).unwrap(),
            None
        );
        assert_eq!(
            source_date_epoch(&env(&[("SOURCE_DATE_EPOCH", "1700000000")])).unwrap(),
            Some(1_700_000_000)
        );
        let err = source_date_epoch(&env(&[("SOURCE_DATE_EPOCH", "yesterday")])).unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
        assert!(source_date_epoch(&env(&[("SOURCE_DATE_EPOCH", "-5")])).is_err());
    }

    #[test]
    fn created_honours_source_date_epoch() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let labels = standard_labels(&env(&[("SOURCE_DATE_EPOCH", "86400")]), None, None).unwrap();
        assert_eq!(labels[CREATED], "1970-01-02T00:00:00Z");
        let labels = standard_labels(&env(&[]), None, None).unwrap();
        assert!(labels[CREATED].starts_with("20"), "{}", labels[CREATED]);
    }

    #[test]
    fn github_actions() {
        let labels = standard_labels(
            &env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_SHA", SHA),
                ("GITHUB_SERVER_URL", "https://github.example.com"),
                ("GITHUB_REPOSITORY", "org/app"),
                ("GITHUB_REF_NAME", "v1.2.3"),
                ("SOURCE_DATE_EPOCH", "0"),
            ]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(labels[REVISION], SHA);
        assert_eq!(labels[SOURCE], "https://github.example.com/org/app");
        assert_eq!(labels[VERSION], "v1.2.3");
        assert_eq!(labels.len(), 4);
    }

    #[test]
    fn gitlab_ci() {
        let base = env(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_SHA", SHA),
            ("CI_PROJECT_URL", "https://gitlab.example.com/group/app"),
            ("CI_COMMIT_REF_NAME", "main"),
        ]);
        let labels = standard_labels(&base, None, None).unwrap();
        assert_eq!(labels[REVISION], SHA);
        assert_eq!(labels[SOURCE], "https://gitlab.example.com/group/app");
        assert_eq!(labels[VERSION], "main");
        let mut tagged = base.clone();
        tagged.insert("CI_COMMIT_TAG".into(), "2.0.0".into());
        assert_eq!(
            standard_labels(&tagged, None, None).unwrap()[VERSION],
            "2.0.0"
        );
    }

    #[test]
    fn base_image_labels() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let base = BaseImage {
            name: "docker.io/library/alpine:3.20".into(),
            digest: digest.parse().unwrap(),
        };
        let labels = standard_labels(&env(&[]), None, Some(&base)).unwrap();
        assert_eq!(labels[BASE_NAME], "docker.io/library/alpine:3.20");
        assert_eq!(labels[BASE_DIGEST], digest);
        // A base digest is a `Digest`, so a tag or a malformed value cannot reach the label.
        for bad in [
            "latest",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_go_into_the_config() {
        let mut config = serde_json::json!({"config": {"Labels": {"keep": "1", VERSION: "old"}}});
        let labels = BTreeMap::from([(VERSION.to_string(), "new".to_string())]);
        apply_labels(&mut config, &labels).unwrap();
        assert_eq!(
            config,
            serde_json::json!({"config": {"Labels": {"keep": "1", VERSION: "new"}}})
        );
    }

    #[test]
    fn remote_urls_lose_credentials() {
        assert_eq!(
            public_url("https://user:token@example.invalid/org/repo.git").as_deref(),
            Some("https://example.invalid/org/repo")
        );
        assert_eq!(
            public_url("ssh://git@example.invalid/org/repo.git").as_deref(),
            Some("https://example.invalid/org/repo")
        );
        assert_eq!(public_url("git@example.invalid:org/repo.git"), None);
        assert_eq!(public_url("/srv/git/repo"), None);
        assert_eq!(public_url("file:///srv/git/repo"), None);
    }

    #[test]
    fn no_git_no_ci_means_only_created() {
        let dir = tempfile::tempdir().unwrap();
        let labels = standard_labels(&env(&[]), Some(dir.path()), None).unwrap();
        assert_eq!(labels.keys().collect::<Vec<_>>(), [CREATED]);
    }

    #[test]
    fn plain_git_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@example.invalid",
                    "-c",
                    "init.defaultBranch=trunk",
                    "-C",
                ])
                .arg(dir.path())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !git(&["init", "-q"]) {
            eprintln!("git is not installed; skipping");
            return;
        }
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(git(&["add", "f"]));
        assert!(git(&["commit", "-q", "-m", "one"]));
        assert!(git(&[
            "remote",
            "add",
            "origin",
            "https://me:secret@example.invalid/org/repo.git"
        ]));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let labels = standard_labels(&env(&[]), Some(&dir.path().join("sub")), None).unwrap();
        assert_eq!(labels[REVISION].len(), 40);
        assert_eq!(labels[SOURCE], "https://example.invalid/org/repo");
        assert_eq!(labels[VERSION], "trunk");
        assert!(git(&["tag", "v9"]));
        let labels = standard_labels(&env(&[]), Some(dir.path()), None).unwrap();
        assert_eq!(labels[VERSION], "v9");
        // CI variables win over git.
        let labels = standard_labels(&env(&[("GITHUB_SHA", SHA)]), Some(dir.path()), None).unwrap();
        assert_eq!(labels[REVISION], SHA);
    }
}
