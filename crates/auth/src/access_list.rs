//! The built-in issuer's access rules: who may do what to which repositories.
//!
//! A rule is `{ who, repos, actions }` (plus `catalog: true` to allow `registry:catalog:*`).
//! `who` is one of:
//! * `user:NAME` — that authenticated user;
//! * `group:NAME` — any authenticated member of a group defined under `groups`;
//! * `authenticated` — any user who logged in;
//! * `anonymous` — everybody, logged in or not (a logged-in user may always do at least what an
//!   anonymous client may, so public repositories stay pullable with stored credentials).
//!
//! `repos` is a glob over repository names: `*` matches within one path segment (never `/`),
//! `**` across segments, `?` one character, `[a-z]` a class (implemented with `globset` with
//! `literal_separator`). `team/*` matches `team/app` but not `team/a/b`; `public/**` matches
//! `public/a` and `public/a/b`; `**` matches every repository.
//!
//! Rules are additive: the actions allowed on a repository are the union over every matching
//! rule. There are no deny rules.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use crate::scope::{Access, Action, CATALOG, REGISTRY, Scope};

/// One access rule as written in the YAML configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// `user:NAME`, `group:NAME`, `authenticated` or `anonymous`.
    pub who: String,
    /// A glob over repository names.
    #[serde(default)]
    pub repos: Option<String>,
    /// Actions granted on matching repositories (`pull`, `push`, `delete`, or `*` for all).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Whether the rule also grants `registry:catalog:*` (listing repositories).
    #[serde(default)]
    pub catalog: bool,
}

/// Why the access rules are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessListError {
    /// A `who` that is none of the accepted forms.
    #[error(
        "access rule #{index}: who {who:?} is not user:NAME, group:NAME, authenticated or anonymous"
    )]
    Who {
        /// 1-based rule number.
        index: usize,
        /// The value.
        who: String,
    },
    /// A group that is not defined.
    #[error("access rule #{index}: group {group:?} is not defined under groups")]
    UnknownGroup {
        /// 1-based rule number.
        index: usize,
        /// The group.
        group: String,
    },
    /// A bad glob.
    #[error("access rule #{index}: repos pattern {pattern:?} is not a valid glob: {detail}")]
    Glob {
        /// 1-based rule number.
        index: usize,
        /// The pattern.
        pattern: String,
        /// The parser's message.
        detail: String,
    },
    /// A rule that grants nothing.
    #[error("access rule #{index}: give repos with actions, and/or catalog: true")]
    Empty {
        /// 1-based rule number.
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    User(String),
    Group(String),
    Authenticated,
    Anonymous,
}

#[derive(Debug, Clone)]
struct Compiled {
    who: Who,
    repos: Option<GlobMatcher>,
    actions: BTreeSet<Action>,
    catalog: bool,
}

/// Compiled access rules and groups.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    rules: Vec<Compiled>,
    groups: HashMap<String, HashSet<String>>,
}

impl AccessList {
    /// Compiles rules; every referenced group must be defined.
    pub fn new(
        rules: &[AccessRule],
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, AccessListError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let index = i + 1;
            let who = match r.who.trim() {
                "authenticated" => Who::Authenticated,
                "anonymous" => Who::Anonymous,
                w => match w.split_once(':') {
                    Some(("user", n)) if !n.is_empty() => Who::User(n.to_owned()),
                    Some(("group", g)) if !g.is_empty() => {
                        if !groups.contains_key(g) {
                            return Err(AccessListError::UnknownGroup {
                                index,
                                group: g.to_owned(),
                            });
                        }
                        Who::Group(g.to_owned())
                    }
                    _ => {
                        return Err(AccessListError::Who {
                            index,
                            who: r.who.clone(),
                        });
                    }
                },
            };
            let repos = match &r.repos {
                Some(p) => Some(
                    GlobBuilder::new(p)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| AccessListError::Glob {
                            index,
                            pattern: p.clone(),
                            detail: e.to_string(),
                        })?
                        .compile_matcher(),
                ),
                None => None,
            };
            let mut actions: BTreeSet<Action> = r.actions.iter().copied().collect();
            if actions.contains(&Action::All) {
                actions.extend([Action::Pull, Action::Push, Action::Delete]);
            }
            if !r.catalog && (repos.is_none() || actions.is_empty()) {
                return Err(AccessListError::Empty { index });
            }
            compiled.push(Compiled {
                who,
                repos,
                actions,
                catalog: r.catalog,
            });
        }
        let groups = groups
            .iter()
            .map(|(g, m)| (g.clone(), m.iter().cloned().collect()))
            .collect();
        Ok(AccessList {
            rules: compiled,
            groups,
        })
    }

    fn applies(&self, who: &Who, user: Option<&str>) -> bool {
        match (who, user) {
            (Who::Anonymous, _) => true,
            (Who::Authenticated, Some(_)) => true,
            (Who::User(n), Some(u)) => n == u,
            (Who::Group(g), Some(u)) => self.groups.get(g).is_some_and(|m| m.contains(u)),
            _ => false,
        }
    }

    /// The actions `user` (`None` = anonymous) may take on `scope`'s resource.
    pub fn allowed(&self, user: Option<&str>, scope: &Scope) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        for r in self.rules.iter().filter(|r| self.applies(&r.who, user)) {
            if scope.is_repository() {
                if r.repos.as_ref().is_some_and(|g| g.is_match(&scope.name)) {
                    out.extend(r.actions.iter().copied());
                }
            } else if scope.resource_type == REGISTRY && scope.name == CATALOG && r.catalog {
                out.insert(Action::All);
            }
        }
        out
    }

    /// The access to put in a token for `requested`: per scope, the intersection of requested
    /// and allowed actions; scopes with nothing granted are left out (Docker semantics: not an
    /// error). Scopes on the same resource are merged.
    pub fn grant(&self, user: Option<&str>, requested: &[Scope]) -> Vec<Access> {
        let mut out: Vec<Access> = Vec::new();
        for s in crate::scope::merge_scopes(requested) {
            let allowed = self.allowed(user, &s);
            let granted: BTreeSet<Action> = s.actions.intersection(&allowed).copied().collect();
            if !granted.is_empty() {
                out.push(Access::from(&s.with_actions(granted)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn rule(who: &str, repos: &str, actions: &[Action]) -> AccessRule {
        AccessRule {
            who: who.into(),
            repos: Some(repos.into()),
            actions: actions.to_vec(),
            catalog: false,
        }
    }

    fn list() -> AccessList {
        let groups = BTreeMap::from([
            ("admins".to_owned(), vec!["alice".to_owned()]),
            (
                "devs".to_owned(),
                vec!["bob".to_owned(), "carol".to_owned()],
            ),
        ]);
        let mut rules = vec![
            rule("group:admins", "**", &[Pull, Push, Delete]),
            rule("user:bob", "team/*", &[Pull, Push]),
            rule("anonymous", "public/**", &[Pull]),
            rule("authenticated", "**", &[Pull]),
            rule("group:devs", "dev-[0-9]", &[All]),
        ];
        rules.push(AccessRule {
            who: "group:admins".into(),
            repos: None,
            actions: vec![],
            catalog: true,
        });
        AccessList::new(&rules, &groups).unwrap()
    }

    fn allowed(l: &AccessList, who: Option<&str>, repo: &str) -> Vec<Action> {
        l.allowed(who, &Scope::repository(repo, &[Pull]))
            .into_iter()
            .collect()
    }

    #[test]
    fn rules_apply_by_who_and_glob() {
        let l = list();
        assert_eq!(
            allowed(&l, Some("alice"), "any/deep/repo"),
            [Pull, Push, Delete]
        );
        assert_eq!(allowed(&l, Some("bob"), "team/app"), [Pull, Push]);
        assert_eq!(
            allowed(&l, Some("bob"), "team/app/sub"),
            [Pull],
            "* stays within one segment"
        );
        assert_eq!(allowed(&l, Some("bob"), "team"), [Pull]);
        assert_eq!(
            allowed(&l, Some("carol"), "team/app"),
            [Pull],
            "user rule is bob's only"
        );
        assert_eq!(allowed(&l, None, "public/x"), [Pull]);
        assert_eq!(
            allowed(&l, None, "public/x/y"),
            [Pull],
            "** crosses segments"
        );
        assert!(allowed(&l, None, "public").is_empty());
        assert!(allowed(&l, None, "private/x").is_empty());
        assert_eq!(
            allowed(&l, Some("dave"), "public/x"),
            [Pull],
            "anonymous rules cover users too"
        );
        assert_eq!(
            allowed(&l, Some("carol"), "dev-1"),
            [Pull, Push, Delete, All],
            "* expands"
        );
        assert_eq!(allowed(&l, Some("carol"), "dev-x"), [Pull]);
        assert_eq!(
            l.allowed(Some("alice"), &Scope::catalog()),
            BTreeSet::from([All])
        );
        assert!(l.allowed(Some("bob"), &Scope::catalog()).is_empty());
        assert!(l.allowed(None, &Scope::catalog()).is_empty());
        let other = Scope {
            resource_type: "repository(plugin)".into(),
            name: "public/x".into(),
            actions: [Pull].into(),
        };
        assert!(l.allowed(None, &other).is_empty());
    }

    #[test]
    fn grant_is_the_intersection() {
        let l = list();
        let req = vec![
            Scope::repository("team/app", &[Pull, Push, Delete]),
            Scope::repository("secret", &[Push]),
            Scope::catalog(),
        ];
        let g = l.grant(Some("bob"), &req);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name, "team/app");
        assert_eq!(g[0].actions, ["pull", "push"]);
        assert!(l.grant(None, &req).is_empty());
        let g = l.grant(Some("alice"), &req);
        assert_eq!(g.len(), 3);
        assert_eq!(g[2].actions, ["*"]);
    }

    #[test]
    fn bad_rules() {
        let none = BTreeMap::new();
        let e = AccessList::new(&[rule("group:ghosts", "**", &[Pull])], &none).unwrap_err();
        assert!(e.to_string().contains("ghosts"), "{e}");
        assert!(matches!(
            AccessList::new(&[rule("someone", "**", &[Pull])], &none),
            Err(AccessListError::Who { .. })
        ));
        assert!(matches!(
            AccessList::new(&[rule("user:", "**", &[Pull])], &none),
            Err(AccessListError::Who { .. })
        ));
        assert!(matches!(
            AccessList::new(&[rule("anonymous", "a/[", &[Pull])], &none),
            Err(AccessListError::Glob { .. })
        ));
        assert!(matches!(
            AccessList::new(&[rule("anonymous", "a", &[])], &none),
            Err(AccessListError::Empty { index: 1 })
        ));
    }
}
