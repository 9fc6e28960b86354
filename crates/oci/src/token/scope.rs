//! Docker token scopes (`repository:NAME:pull,push`, `registry:catalog:*`) and their actions.

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
    Name(#[from] crate::NameError),
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

    /// `repository:NAME:pull`: what reading a repository needs.
    pub fn pull(name: impl Into<String>) -> Self {
        Scope::repository(name, &[Action::Pull])
    }

    /// `repository:NAME:pull,push`: what pushing needs (Docker clients ask for pull with push, so
    /// that one token serves the existence checks of a push too).
    pub fn push(name: impl Into<String>) -> Self {
        Scope::repository(name, &[Action::Pull, Action::Push])
    }

    /// `repository:NAME:pull,push,delete`: what a client asks for before deleting.
    pub fn delete(name: impl Into<String>) -> Self {
        Scope::repository(name, &[Action::Pull, Action::Push, Action::Delete])
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
    /// [`crate::validate_repository`].
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
            crate::validate_repository(name)?;
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
    fn client_constructors() {
        assert_eq!(Scope::pull("a/b").to_string(), "repository:a/b:pull");
        assert_eq!(Scope::push("a/b").to_string(), "repository:a/b:pull,push");
        assert_eq!(
            Scope::delete("a/b").to_string(),
            "repository:a/b:pull,push,delete"
        );
    }
}
