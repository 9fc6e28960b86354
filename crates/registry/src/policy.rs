//! Lifecycle policies per repository glob: immutable tags, quotas and retention rules, as an
//! operator writes them (the binary reads the file; this crate takes the typed result).
//!
//! ```yaml
//! immutable:
//!   - repositories: "prod/**"          # a tag that exists cannot be moved or deleted
//!     tags: ["v*"]                      # (all tags when left out)
//! quotas:
//!   - repositories: "team-a/*"          # each repository matching, on its own
//!     bytes: 10GiB                      # unique blobs and manifests counted once
//! retention:
//!   - repositories: "ci/**"             # the first rule that matches a repository applies
//!     keep:                             # a tag is kept when any of these holds
//!       recent: 10                      # among the 10 most recently pushed
//!       pulledwithin: 30d               # its manifest pulled in the last 30 days
//!       tags: ["release-*", "latest"]
//!       semver: ">=1.0.0"
//!     untagged: 7d                      # untagged manifests older than 7 days go
//!     expiry: true                      # honour `quay.expires-after` (the default)
//! ```
//!
//! Globs: `*` and `?` stay within one path component, `**` crosses them, `{a,b}` and `[ab]`
//! as usual.

use std::fmt;
use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The annotation (on a manifest or index) or config label (on an image) that says how long
/// after its push a tag expires, as Quay reads it: `30d`, `2w`, `12h`; `never` for no expiry.
/// CI builds set it with `--expires-after`.
pub const EXPIRES_AFTER: &str = "quay.expires-after";

/// Every lifecycle rule of a registry. Empty by default: tags are mutable, nothing is
/// limited, nothing is deleted by policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policies {
    /// Repositories (and tags) whose tags cannot be moved or deleted once they exist.
    pub immutable: Vec<ImmutableRule>,
    /// Size limits per repository.
    pub quotas: Vec<QuotaRule>,
    /// Which tags and untagged manifests a policy run deletes.
    pub retention: Vec<RetentionRule>,
}

/// Tags that cannot be moved or deleted once they exist.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repositories it covers.
    pub repositories: Globs,
    /// The tags it covers in them; every tag when empty.
    #[serde(default)]
    pub tags: Globs,
}

/// A size limit for each repository matching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRule {
    /// Repositories it covers (each on its own).
    pub repositories: Globs,
    /// The limit: manifests and the distinct blobs they reference, each counted once.
    pub bytes: ByteSize,
}

/// What a policy run keeps and deletes in the repositories matching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repositories it covers.
    pub repositories: Globs,
    /// Tags kept; with no criterion every tag is kept (but for expired ones).
    #[serde(default)]
    pub keep: Keep,
    /// Untagged manifests older than this are deleted (none when unset).
    #[serde(default)]
    pub untagged: Option<Age>,
    /// Delete tags whose manifest says it expired ([`EXPIRES_AFTER`]); on by default.
    #[serde(default = "yes")]
    pub expiry: bool,
}

fn yes() -> bool {
    true
}

/// The criteria that keep a tag; a tag meeting any of them is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keep {
    /// The most recently pushed tags, this many.
    pub recent: Option<usize>,
    /// Tags whose manifest was pulled this recently.
    #[serde(rename = "pulledwithin")]
    pub pulled_within: Option<Age>,
    /// Tags matching any of these globs.
    pub tags: Globs,
    /// Tags that are semantic versions (a leading `v` allowed) inside this range.
    pub semver: Option<VersionRange>,
}

impl Keep {
    fn is_empty(&self) -> bool {
        self.recent.is_none()
            && self.pulled_within.is_none()
            && self.tags.is_empty()
            && self.semver.is_none()
    }
}

/// A glob over repository names or tags.
#[derive(Clone)]
pub struct Glob {
    text: String,
    matcher: globset::GlobMatcher,
}

impl Glob {
    /// Compiles a glob.
    pub fn new(text: &str) -> Result<Glob, String> {
        let matcher = globset::GlobBuilder::new(text)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{text:?} is not a valid glob: {}", e.kind()))?
            .compile_matcher();
        Ok(Glob {
            text: text.to_owned(),
            matcher,
        })
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// One glob or a list of them (`repositories: "a/*"` or `repositories: ["a/*", "b"]`).
#[derive(Debug, Clone, Default)]
pub struct Globs(pub Vec<Glob>);

impl Globs {
    /// Whether any glob matches `s`.
    pub fn matches(&self, s: &str) -> bool {
        self.0.iter().any(|g| g.matches(s))
    }

    /// Whether there is no glob.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The globs as written, joined with commas.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(Glob::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Globs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a glob or a list of globs")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Globs, E> {
                Ok(Globs(vec![Glob::new(s).map_err(E::custom)?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Globs, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(Glob::new(&s).map_err(de::Error::custom)?);
                }
                Ok(Globs(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written as `7d`, `12h`, `2w`, `90m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Age).map_err(|_| {
            de::Error::custom(format!(
                "expected a duration such as 7d or 12h, found {s:?}"
            ))
        })
    }
}

/// A size in bytes, written as a number or with a unit (`500MB`, `10GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `123`, `500MB`, `10 GiB` (decimal `kB MB GB TB`, binary `KiB MiB GiB TiB`).
    // Written here: it is a dozen lines, and none of the size crates is worth a dependency
    // for one config field.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("expected a size such as 500MB or 10GiB, found {s:?}"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "mb" | "m" => 1_000_000,
            "gb" | "g" => 1_000_000_000,
            "tb" | "t" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {:?} (use kB, MB, GB, TB, KiB, MiB, GiB or TiB)",
                    unit.trim()
                ));
            }
        };
        Ok(ByteSize((n * scale as f64).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 500MB or 10GiB")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A semantic version range (`>=1.2, <2`, `^1.4`, `~2.1`).
#[derive(Debug, Clone)]
pub struct VersionRange(pub semver::VersionReq);

impl VersionRange {
    /// Whether a tag (`1.2.3` or `v1.2.3`) is a version inside the range.
    pub fn matches_tag(&self, tag: &str) -> bool {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        semver::Version::parse(t).is_ok_and(|v| self.0.matches(&v))
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        semver::VersionReq::parse(&s)
            .map(VersionRange)
            .map_err(|e| de::Error::custom(format!("{s:?} is not a semver range: {e}")))
    }
}

/// What a retention decision needs to know of one tag.
#[derive(Debug, Clone)]
pub struct TagFacts {
    /// The tag.
    pub tag: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// When it was last pushed (pointed at that manifest).
    pub pushed_at: SystemTime,
    /// When its manifest was last pulled, when known.
    pub last_pulled: Option<SystemTime>,
    /// The manifest's [`EXPIRES_AFTER`], when it has one.
    pub expires_after: Option<Duration>,
}

impl Policies {
    /// Whether the policies hold no rule.
    pub fn is_empty(&self) -> bool {
        self.immutable.is_empty() && self.quotas.is_empty() && self.retention.is_empty()
    }

    /// The rule that makes `repository:tag` immutable, if one does.
    pub fn immutable_rule(&self, repository: &str, tag: &str) -> Option<(usize, &ImmutableRule)> {
        self.immutable.iter().enumerate().find(|(_, r)| {
            r.repositories.matches(repository) && (r.tags.is_empty() || r.tags.matches(tag))
        })
    }

    /// The quota of a repository (the first rule matching), with the rule's index.
    pub fn quota(&self, repository: &str) -> Option<(usize, &QuotaRule)> {
        self.quotas
            .iter()
            .enumerate()
            .find(|(_, r)| r.repositories.matches(repository))
    }

    /// The retention rule of a repository (the first matching), with its index.
    pub fn retention(&self, repository: &str) -> Option<(usize, &RetentionRule)> {
        self.retention
            .iter()
            .enumerate()
            .find(|(_, r)| r.repositories.matches(repository))
    }
}

impl RetentionRule {
    /// The tags of one repository this rule deletes, each with the reason. Immutable tags
    /// are never among them. `pulls_known` says whether pull times are recorded (without
    /// the metadata index they are not, and then `pulledwithin` keeps every tag).
    pub fn judge(
        &self,
        tags: &[TagFacts],
        now: SystemTime,
        immutable: impl Fn(&str) -> bool,
        pulls_known: bool,
    ) -> Vec<(TagFacts, String)> {
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        let mut by_recency: Vec<&TagFacts> = tags.iter().collect();
        by_recency.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.tag.cmp(&b.tag)));
        let recent: std::collections::HashSet<&str> = by_recency
            .iter()
            .take(self.keep.recent.unwrap_or(0))
            .map(|t| t.tag.as_str())
            .collect();
        let mut out = Vec::new();
        for t in tags {
            if immutable(&t.tag) {
                continue;
            }
            if self.expiry
                && let Some(after) = t.expires_after
                && age(t.pushed_at) >= after
            {
                out.push((
                    t.clone(),
                    format!(
                        "expired: {EXPIRES_AFTER}={} since its push",
                        humantime::format_duration(after)
                    ),
                ));
                continue;
            }
            if self.keep.is_empty() {
                continue;
            }
            let kept = recent.contains(t.tag.as_str())
                || self.keep.tags.matches(&t.tag)
                || self
                    .keep
                    .semver
                    .as_ref()
                    .is_some_and(|r| r.matches_tag(&t.tag))
                || self
                    .keep
                    .pulled_within
                    .is_some_and(|w| !pulls_known || t.last_pulled.is_some_and(|p| age(p) <= w.0));
            if !kept {
                let mut why = Vec::new();
                if let Some(n) = self.keep.recent {
                    why.push(format!("not among the {n} most recently pushed"));
                }
                if let Some(w) = self.keep.pulled_within {
                    why.push(format!("not pulled in {}", humantime::format_duration(w.0)));
                }
                if !self.keep.tags.is_empty() || self.keep.semver.is_some() {
                    why.push("matches no kept pattern".to_owned());
                }
                out.push((t.clone(), why.join(", ")));
            }
        }
        out
    }
}

/// Reads [`EXPIRES_AFTER`] from annotations or labels: `None` when absent, `never` or
/// unreadable (an unreadable value is logged, never a reason to delete).
pub fn expires_after(
    values: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Option<Duration> {
    let v = values?.get(EXPIRES_AFTER)?.as_str()?.trim();
    if v.eq_ignore_ascii_case("never") || v.is_empty() {
        return None;
    }
    match humantime::parse_duration(v) {
        Ok(d) => Some(d),
        Err(_) => {
            tracing::warn!(
                value = v,
                "an {EXPIRES_AFTER} value is not a duration such as 30d: the tag does not expire"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(tag: &str, pushed_days_ago: u64, pulled_days_ago: Option<u64>) -> TagFacts {
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        TagFacts {
            tag: tag.to_owned(),
            digest: Digest::sha256_of(tag.as_bytes()),
            pushed_at: now - day * pushed_days_ago as u32,
            last_pulled: pulled_days_ago.map(|d| now - day * d as u32),
            expires_after: None,
        }
    }

    fn rule(yaml: &str) -> RetentionRule {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn globs_stay_in_one_component_unless_doubled() {
        let g = Glob::new("team/*").unwrap();
        assert!(g.matches("team/app"));
        assert!(!g.matches("team/a/b"));
        assert!(Glob::new("team/**").unwrap().matches("team/a/b"));
        assert!(Glob::new("[").is_err());
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(ByteSize::parse("10GiB").unwrap().0, 10 << 30);
        assert_eq!(ByteSize::parse("500 MB").unwrap().0, 500_000_000);
        assert_eq!(ByteSize::parse("1.5kB").unwrap().0, 1500);
        assert_eq!(ByteSize::parse("42").unwrap().0, 42);
        assert!(ByteSize::parse("ten").is_err());
        assert!(ByteSize::parse("5 parsecs").is_err());
    }

    #[test]
    fn retention_keeps_what_any_criterion_keeps() {
        let r = rule(
            "repositories: ci/**\nkeep:\n  recent: 2\n  pulledwithin: 7d\n  tags: [release-*]\n  semver: '>=1.0.0'\n",
        );
        let tags = vec![
            facts("new", 0, None),
            facts("newer-ish", 1, None),
            facts("old-pulled", 30, Some(2)),
            facts("old", 30, Some(20)),
            facts("release-1", 90, None),
            facts("v1.2.0", 90, None),
            facts("v0.9.0", 90, None),
            facts("frozen", 90, None),
        ];
        let gone: Vec<String> = r
            .judge(&tags, SystemTime::now(), |t| t == "frozen", true)
            .into_iter()
            .map(|(t, _)| t.tag)
            .collect();
        assert_eq!(gone, vec!["old", "v0.9.0"]);
        // Without pull records, `pulledwithin` keeps everything it might cover.
        let none = r.judge(&tags, SystemTime::now(), |_| false, false);
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn expired_tags_go_even_without_keep_criteria() {
        let r = rule("repositories: '**'\n");
        let mut t = facts("pr-1", 3, None);
        t.expires_after = Some(Duration::from_secs(86400));
        let fresh = TagFacts {
            expires_after: Some(Duration::from_secs(7 * 86400)),
            ..facts("pr-2", 3, None)
        };
        let gone = r.judge(
            &[t, fresh, facts("main", 100, None)],
            SystemTime::now(),
            |_| false,
            true,
        );
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0.tag, "pr-1");
        assert!(gone[0].1.contains("expired"), "{}", gone[0].1);
        let off = rule("repositories: '**'\nexpiry: false\n");
        let mut t = facts("pr-1", 3, None);
        t.expires_after = Some(Duration::from_secs(60));
        assert!(
            off.judge(&[t], SystemTime::now(), |_| false, true)
                .is_empty()
        );
    }

    #[test]
    fn a_policy_file_with_an_error_names_its_line() {
        let e = serde_saphyr::from_str::<Policies>(
            "retention:\n  - repositories: ci/**\n    keep:\n      recnet: 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("recnet") && e.contains('4'), "{e}");
        let e = serde_saphyr::from_str::<Policies>(
            "quotas:\n  - repositories: a\n    bytes: 3 parsecs\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("parsecs") && e.contains('3'), "{e}");
        let p: Policies = serde_saphyr::from_str(
            "immutable:\n  - repositories: [prod/*, 'stable/**']\n    tags: 'v*'\nquotas:\n  - repositories: team/*\n    bytes: 1GiB\n",
        )
        .unwrap();
        assert!(p.immutable_rule("prod/app", "v1").is_some());
        assert!(p.immutable_rule("prod/app", "latest").is_none());
        assert!(p.immutable_rule("stable/x/y", "v2").is_some());
        assert_eq!(p.quota("team/a").unwrap().1.bytes.0, 1 << 30);
        assert!(p.quota("other").is_none());
    }

    #[test]
    fn the_expiry_value() {
        let m = |v: &str| {
            let mut m = serde_json::Map::new();
            m.insert(EXPIRES_AFTER.into(), serde_json::Value::String(v.into()));
            m
        };
        assert_eq!(
            expires_after(Some(&m("2w"))),
            Some(Duration::from_secs(14 * 86400))
        );
        assert_eq!(expires_after(Some(&m("never"))), None);
        assert_eq!(expires_after(Some(&m("soon"))), None);
        assert_eq!(expires_after(None), None);
    }
}
