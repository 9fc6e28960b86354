//! The `access` claim entries of a token and how they grant [`Scope`]s. The scope vocabulary
//! itself ([`Scope`], [`Action`]) is [`berth_oci::token`]'s, re-exported here.

use serde::{Deserialize, Serialize};

pub use berth_oci::token::{
    Action, CATALOG, REGISTRY, REPOSITORY, Scope, ScopeError, join_scopes, merge_scopes,
};

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
