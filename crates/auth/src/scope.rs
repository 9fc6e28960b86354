//! The access model: actions, Docker token scopes (`repository:NAME:pull,push`,
//! `registry:catalog:*`) and the `access` claim entries of a token.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The resource type of repository scopes.
pub const REPOSITORY: &str = "repository";
/// The resource type of registry-wide scopes (`registry:catalog:*`).
pub const REGISTRY: &str = "registry";
/// The name of the catalog resource (`registry:catalog:*`).
pub const CATALOG: &str = "catalog";

/// Something a client may do to a resource.
///
/// Matching is literal, as in Distribution: a granted `*` ([`Action::All`]) satisfies only a
/// needed `*` (the catalog); it does not imply `pull`. The built-in issuer expands a rule's `*`
/// into every action, so its tokens carry explicit actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Read manifests, blobs, tags (`pull`).
    Pull,
    /// Upload blobs and manifests (`push`).
    Push,
    /// Delete manifests, blobs and tags (`delete`).
    Delete,
    /// The wildcard action `*` (used by `registry:catalog:*`).
    All,
}

impl Action {
    /// The action's wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::All => "*",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        match s {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            "*" => Ok(Action::All),
            other => Err(ScopeError::UnknownAction(other.to_owned())),
        }
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a scope string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not `type:name:actions`.
    #[error(
        "malformed scope {0:?}: expected TYPE:NAME:ACTIONS such as repository:library/alpine:pull"
    )]
    Malformed(String),
    /// An action other than pull, push, delete or `*`.
    #[error("unknown action {0:?} in scope: use pull, push, delete or *")]
    UnknownAction(String),
    /// A repository scope whose name breaks the repository grammar.
    #[error("invalid repository name in scope: {0}")]
    Name(#[from] berth_oci::NameError),
}

/// A Docker token scope: a resource and the actions wanted on it, printed as
/// `repository:library/alpine:pull,push` (actions in the fixed order pull, push, delete, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// `repository` or `registry` (a resource class such as `repository(plugin)` is kept as is).
    pub resource_type: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// The actions; never empty for a parsed scope.
    pub actions: BTreeSet<Action>,
}

impl Scope {
    /// A repository scope. The name is not validated here; use [`Scope::parse`] for input.
    pub fn repository(name: impl Into<String>, actions: &[Action]) -> Self {
        Scope {
            resource_type: REPOSITORY.to_owned(),
            name: name.into(),
            actions: actions.iter().copied().collect(),
        }
    }

    /// `registry:catalog:*`, needed by `GET /v2/_catalog`.
    pub fn catalog() -> Self {
        Scope {
            resource_type: REGISTRY.to_owned(),
            name: CATALOG.to_owned(),
            actions: [Action::All].into(),
        }
    }

    /// Parses `type:name:action[,action...]`. The name may itself contain `:` (Distribution
    /// splits on the first and last colon). Repository names are validated with
    /// [`berth_oci::validate_repository`].
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let malformed = || ScopeError::Malformed(s.chars().take(300).collect());
        let (resource_type, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if resource_type.is_empty() || name.is_empty() || actions.is_empty() {
            return Err(malformed());
        }
        if !resource_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"()_-.".contains(&b))
        {
            return Err(malformed());
        }
        if resource_type == REPOSITORY || resource_type.starts_with("repository(") {
            berth_oci::validate_repository(name)?;
        }
        let actions = actions
            .split(',')
            .map(str::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Scope {
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// Parses a `scope` request parameter, which may hold several scopes separated by spaces.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, ScopeError> {
        s.split_ascii_whitespace().map(Scope::parse).collect()
    }

    /// True when this is a scope on a repository.
    pub fn is_repository(&self) -> bool {
        self.resource_type == REPOSITORY
    }

    /// The same resource with `actions` instead.
    pub fn with_actions(&self, actions: impl IntoIterator<Item = Action>) -> Self {
        Scope {
            resource_type: self.resource_type.clone(),
            name: self.name.clone(),
            actions: actions.into_iter().collect(),
        }
    }

    /// True when `self` names the same resource as `other`.
    pub fn same_resource(&self, other: &Scope) -> bool {
        self.resource_type == other.resource_type && self.name == other.name
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.resource_type, self.name)?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        Scope::parse(s)
    }
}

/// Joins scopes the way challenges carry them: one space between scopes.
pub fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Merges scopes on the same resource into one scope with the union of their actions, keeping
/// first-seen order of resources. Empty-action scopes are dropped.
pub fn merge_scopes(scopes: &[Scope]) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        if s.actions.is_empty() {
            continue;
        }
        match out.iter_mut().find(|o| o.same_resource(s)) {
            Some(o) => o.actions.extend(s.actions.iter().copied()),
            None => out.push(s.clone()),
        }
    }
    out
}

/// One entry of a token's `access` claim: `{"type":"repository","name":"a/b","actions":["pull"]}`.
///
/// Actions are kept as strings so that a token carrying an action this crate does not know
/// still decodes; unknown actions simply grant nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The resource type (`repository`, `registry`).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The resource name.
    pub name: String,
    /// The granted actions.
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    /// True when this entry grants `action` on `scope`'s resource.
    pub fn grants(&self, scope: &Scope, action: Action) -> bool {
        self.resource_type == scope.resource_type
            && self.name == scope.name
            && self.actions.iter().any(|a| a == action.as_str())
    }
}

impl From<&Scope> for Access {
    fn from(s: &Scope) -> Self {
        Access {
            resource_type: s.resource_type.clone(),
            name: s.name.clone(),
            actions: s.actions.iter().map(|a| a.as_str().to_owned()).collect(),
        }
    }
}

/// True when every action of `needed` is granted by some entry of `granted`.
pub fn access_allows(granted: &[Access], needed: &Scope) -> bool {
    needed
        .actions
        .iter()
        .all(|&a| granted.iter().any(|g| g.grants(needed, a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            "repository:library/alpine:pull",
            "repository:a/b/c:pull,push",
            "repository:x:pull,push,delete",
            "registry:catalog:*",
            "repository(plugin):vieux/sshfs:pull",
        ] {
            let p = Scope::parse(s).unwrap();
            assert_eq!(p.to_string(), s);
            assert_eq!(s.parse::<Scope>().unwrap(), p);
        }
        // Canonical order and duplicates collapse.
        assert_eq!(
            Scope::parse("repository:a:push,pull,push")
                .unwrap()
                .to_string(),
            "repository:a:pull,push"
        );
        assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
        assert_eq!(
            Scope::repository("a/b", &[Action::Push, Action::Pull]).to_string(),
            "repository:a/b:pull,push"
        );
    }

    #[test]
    fn colon_in_name_is_kept() {
        let s = Scope::parse("registry:host:5000:*").unwrap();
        assert_eq!(s.name, "host:5000");
    }

    #[test]
    fn bad_scopes() {
        for bad in [
            "",
            "repository",
            "repository:a",
            "repository::pull",
            ":a:pull",
            "repository:a:",
            "a b:c:pull",
        ] {
            assert!(
                matches!(Scope::parse(bad), Err(ScopeError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Scope::parse("repository:a:pull,fly"),
            Err(ScopeError::UnknownAction(_))
        ));
        assert!(matches!(
            Scope::parse("repository:a:pull,"),
            Err(ScopeError::UnknownAction(_))
        ));
        assert!(matches!(
            Scope::parse("repository:../etc:pull"),
            Err(ScopeError::Name(_))
        ));
        assert!(matches!(
            Scope::parse("repository:UPPER:pull"),
            Err(ScopeError::Name(_))
        ));
    }

    #[test]
    fn list_and_merge() {
        let l =
            Scope::parse_list("repository:a:pull  repository:b:push\trepository:a:push").unwrap();
        assert_eq!(l.len(), 3);
        let m = merge_scopes(&l);
        assert_eq!(join_scopes(&m), "repository:a:pull,push repository:b:push");
        assert!(Scope::parse_list("repository:a:pull bogus").is_err());
    }

    #[test]
    fn access_matching_is_per_repository_and_literal() {
        let granted = vec![Access {
            resource_type: "repository".into(),
            name: "a".into(),
            actions: vec!["pull".into(), "weird".into()],
        }];
        assert!(access_allows(
            &granted,
            &Scope::repository("a", &[Action::Pull])
        ));
        assert!(!access_allows(
            &granted,
            &Scope::repository("a", &[Action::Pull, Action::Push])
        ));
        assert!(!access_allows(
            &granted,
            &Scope::repository("b", &[Action::Pull])
        ));
        assert!(!access_allows(&granted, &Scope::catalog()));
        let star = vec![Access {
            resource_type: "repository".into(),
            name: "a".into(),
            actions: vec!["*".into()],
        }];
        assert!(
            !access_allows(&star, &Scope::repository("a", &[Action::Pull])),
            "* is literal"
        );
        let json = serde_json::to_string(&granted[0]).unwrap();
        assert_eq!(
            json,
            r#"{"type":"repository","name":"a","actions":["pull","weird"]}"#
        );
    }
}
