//! Registry authentication: `WWW-Authenticate` challenges, token scopes, and the per-scope token
//! cache of the bearer-token flow (Docker's token authentication specification).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What an operation needs access to, in the token service's scope grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// No particular resource (the `/v2/` ping and login).
    None,
    /// `repository:<name>:<actions>`.
    Repository {
        /// The repository name.
        name: String,
        /// Whether pushing (and deleting) is needed, besides pulling.
        push: bool,
    },
    /// `registry:catalog:*`.
    Catalog,
    /// Several scopes in one token (a cross-repository mount needs pull on the source and push on
    /// the destination).
    Multi(Vec<Scope>),
}

impl Scope {
    /// Pull access to `name`.
    pub fn pull(name: &str) -> Self {
        Scope::Repository {
            name: name.to_owned(),
            push: false,
        }
    }

    /// Pull and push access to `name`.
    pub fn push(name: &str) -> Self {
        Scope::Repository {
            name: name.to_owned(),
            push: true,
        }
    }

    /// The `scope` query values for the token request (one per resource).
    pub fn to_query_values(&self, delete: bool) -> Vec<String> {
        match self {
            Scope::None => vec![],
            Scope::Repository { name, push } => {
                let actions = match (push, delete) {
                    (_, true) => "pull,push,delete",
                    (true, false) => "pull,push",
                    (false, false) => "pull",
                };
                vec![format!("repository:{name}:{actions}")]
            }
            Scope::Catalog => vec!["registry:catalog:*".to_owned()],
            Scope::Multi(v) => v.iter().flat_map(|s| s.to_query_values(delete)).collect(),
        }
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic` or `bearer`).
    pub scheme: String,
    /// Its parameters (keys lowercased).
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// The token endpoint of a bearer challenge.
    pub fn realm(&self) -> Option<&str> {
        self.params.get("realm").map(String::as_str)
    }

    /// The `service` parameter of a bearer challenge.
    pub fn service(&self) -> Option<&str> {
        self.params.get("service").map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value. Only the first challenge is kept, which is what
/// registries send; unparseable headers give `None`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim()),
        None => (header, ""),
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let mut params = HashMap::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        let key = rest[key_start..i].trim().to_ascii_lowercase();
        if i >= bytes.len() || bytes[i] != b'=' {
            // A token68 or a bare word: skip it.
            continue;
        }
        i += 1;
        let value = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                // Quoted strings are ASCII in practice; push whole characters to stay UTF-8 safe.
                let ch = rest[i..].chars().next().unwrap_or('\u{fffd}');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
            v
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            rest[start..i].trim().to_owned()
        };
        if !key.is_empty() {
            params.insert(key, value);
        }
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A bearer token and when it stops being usable.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub expires: Instant,
}

/// The token response body of the token service (either field name is allowed).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and its lifetime (the spec's default of 60 s when not given), minus a margin so
    /// a token is renewed before the registry starts refusing it.
    pub fn into_token(self) -> Option<Token> {
        let value = self.token.filter(|t| !t.is_empty()).or(self.access_token)?;
        let life = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        let margin = (life / 10).min(Duration::from_secs(10));
        Some(Token {
            value,
            expires: Instant::now() + life - margin,
        })
    }
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
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.realm(), Some("https://auth.example/token"));
        assert_eq!(c.service(), Some("registry.example"));
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (b.scheme.as_str(), b.params["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        assert!(parse_challenge("").is_none());
        let escaped = parse_challenge(r#"Bearer realm="a\"b", service=x"#).unwrap();
        assert_eq!(escaped.params["realm"], "a\"b");
        assert_eq!(escaped.params["service"], "x");
    }

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::pull("a").to_query_values(false),
            ["repository:a:pull"]
        );
        assert_eq!(
            Scope::push("a").to_query_values(false),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            Scope::push("a").to_query_values(true),
            ["repository:a:pull,push,delete"]
        );
        let m = Scope::Multi(vec![Scope::pull("src"), Scope::push("dst")]);
        assert_eq!(
            m.to_query_values(false),
            ["repository:src:pull", "repository:dst:pull,push"]
        );
        assert!(Scope::None.to_query_values(false).is_empty());
    }

    #[test]
    fn token_response() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","expires_in":300}"#).unwrap();
        let tok = t.into_token().unwrap();
        assert_eq!(tok.value, "x");
        assert!(tok.expires > Instant::now() + Duration::from_secs(280));
        let none: TokenResponse = serde_json::from_str("{}").unwrap();
        assert!(none.into_token().is_none());
    }
}
