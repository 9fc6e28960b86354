//! Registry authentication: the scopes a request asks tokens for, and the per-scope token cache
//! of the bearer-token flow (Docker's token authentication specification). Challenges, scopes
//! and token responses are [`berth_oci::token`]'s types.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_oci::token::TokenResponse;

pub(crate) use berth_oci::token::Scope;

/// The `scope` values of a token request, one per resource. `delete` widens every repository
/// scope to pull, push and delete (what deleting asks for, as Docker clients do).
pub(crate) fn query_values(scopes: &[Scope], delete: bool) -> Vec<String> {
    scopes
        .iter()
        .map(|s| {
            if delete && s.is_repository() {
                Scope::delete(s.name.clone()).to_string()
            } else {
                s.to_string()
            }
        })
        .collect()
}

/// A bearer token and when it stops being usable.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub expires: Instant,
}

/// The token and its lifetime (the spec's default of 60 s when not given), minus a margin so a
/// token is renewed before the registry starts refusing it.
pub(crate) fn token_from(response: &TokenResponse) -> Option<Token> {
    let value = response.bearer()?.to_owned();
    let life = response.lifetime();
    let margin = (life / 10).min(Duration::from_secs(10));
    Some(Token {
        value,
        expires: Instant::now() + life - margin,
    })
}

/// How a registry wants to be authenticated, learnt from its challenges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthMode {
    /// Not known yet, or none needed.
    Unknown,
    /// Send basic credentials on every request.
    Basic,
    /// Fetch bearer tokens from the challenge's realm.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Cached tokens by scope.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: HashMap<String, Token>,
}

impl TokenCache {
    pub fn get(&self, key: &str) -> Option<String> {
        self.tokens
            .get(key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.value.clone())
    }

    pub fn put(&mut self, key: String, token: Token) {
        self.tokens.retain(|_, t| t.expires > Instant::now());
        self.tokens.insert(key, token);
    }

    pub fn invalidate(&mut self, key: &str) {
        self.tokens.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            query_values(&[Scope::pull("a")], false),
            ["repository:a:pull"]
        );
        assert_eq!(
            query_values(&[Scope::push("a")], false),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            query_values(&[Scope::push("a")], true),
            ["repository:a:pull,push,delete"]
        );
        let m = [Scope::pull("src"), Scope::push("dst")];
        assert_eq!(
            query_values(&m, false),
            ["repository:src:pull", "repository:dst:pull,push"]
        );
        assert_eq!(
            query_values(&[Scope::catalog()], true),
            ["registry:catalog:*"]
        );
        assert!(query_values(&[], false).is_empty());
    }

    #[test]
    fn token_response() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","expires_in":300}"#).unwrap();
        let tok = token_from(&t).unwrap();
        assert_eq!(tok.value, "x");
        assert!(tok.expires > Instant::now() + Duration::from_secs(280));
        let none: TokenResponse = serde_json::from_str("{}").unwrap();
        assert!(token_from(&none).is_none());
    }
}
