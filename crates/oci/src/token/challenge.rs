//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3, Docker's token
//! authentication): rendered by a registry, parsed by a client.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::scope::{Scope, join_scopes, merge_scopes};

/// The `error` parameter of a Bearer challenge (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// The token is malformed, expired, for another service, or signed by an unknown key.
    InvalidToken,
    /// The token is valid but does not grant the needed scope.
    InsufficientScope,
}

impl BearerError {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        match s {
            "invalid_token" => Some(BearerError::InvalidToken),
            "insufficient_scope" => Some(BearerError::InsufficientScope),
            _ => None,
        }
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// `Basic realm="..."`.
    Basic {
        /// The realm shown to users (empty when a parsed challenge named none).
        realm: String,
    },
    /// `Bearer realm="...",service="...",scope="..."[,error="..."]`.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The service name tokens must be issued for (left out of the token request when the
        /// registry names none).
        service: Option<String>,
        /// The scopes needed (rendered merged per resource and joined by spaces, as
        /// Distribution does).
        scopes: Vec<Scope>,
        /// Why an offered token was refused, if one was offered.
        error: Option<BearerError>,
    },
}

/// Why a `WWW-Authenticate` value is not a challenge a client can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No auth scheme, or not a token of letters, digits and `-`.
    #[error("malformed WWW-Authenticate challenge")]
    Malformed,
    /// A Bearer challenge without the `realm` that says where to get tokens.
    #[error("bearer challenge without a realm")]
    NoRealm,
    /// A scheme other than Basic and Bearer (lowercased).
    #[error("unsupported authentication scheme {0:?}")]
    UnsupportedScheme(String),
}

/// Quotes a challenge parameter value (RFC 9110 quoted-string: `\` and `"` are escaped; control
/// characters are dropped so that a configured value can never split the header).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Challenge::Basic { realm } => write!(f, "Basic realm={}", quote(realm)),
            Challenge::Bearer {
                realm,
                service,
                scopes,
                error,
            } => {
                write!(f, "Bearer realm={}", quote(realm))?;
                if let Some(service) = service {
                    write!(f, ",service={}", quote(service))?;
                }
                let merged = merge_scopes(scopes);
                if !merged.is_empty() {
                    write!(f, ",scope={}", quote(&join_scopes(&merged)))?;
                }
                if let Some(e) = error {
                    write!(f, ",error={}", quote(e.as_str()))?;
                }
                Ok(())
            }
        }
    }
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value. Only the first challenge is read, which is
    /// what registries send. Parsing is lenient where a client can still proceed: unknown
    /// parameters, scopes that do not parse and unknown `error` values are ignored.
    pub fn parse(header: &str) -> Result<Self, ChallengeError> {
        let (scheme, params) = parse_params(header).ok_or(ChallengeError::Malformed)?;
        let mut params = params;
        match scheme.as_str() {
            "basic" => Ok(Challenge::Basic {
                realm: params.remove("realm").unwrap_or_default(),
            }),
            "bearer" => Ok(Challenge::Bearer {
                realm: params.remove("realm").ok_or(ChallengeError::NoRealm)?,
                service: params.remove("service"),
                scopes: params
                    .get("scope")
                    .map(|s| {
                        s.split_ascii_whitespace()
                            .filter_map(|s| Scope::parse(s).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                error: params.get("error").and_then(|e| BearerError::from_wire(e)),
            }),
            _ => Err(ChallengeError::UnsupportedScheme(scheme)),
        }
    }
}

impl FromStr for Challenge {
    type Err = ChallengeError;
    fn from_str(s: &str) -> Result<Self, ChallengeError> {
        Challenge::parse(s)
    }
}

/// Splits a challenge into its lowercased scheme and its parameters (keys lowercased, quoted
/// values unescaped); `None` when there is no valid scheme.
fn parse_params(header: &str) -> Option<(String, HashMap<String, String>)> {
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
    Some((scheme.to_ascii_lowercase(), params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Action;

    #[test]
    fn basic_challenge() {
        let c = Challenge::Basic {
            realm: "Berth \"registry\"".into(),
        };
        assert_eq!(c.to_string(), r#"Basic realm="Berth \"registry\"""#);
    }

    #[test]
    fn bearer_challenge_names_scopes() {
        let c = Challenge::Bearer {
            realm: "https://r.example/token".into(),
            service: Some("berth".into()),
            scopes: vec![
                Scope::repository("a", &[Action::Pull]),
                Scope::repository("b", &[Action::Pull]),
                Scope::repository("a", &[Action::Push]),
            ],
            error: None,
        };
        assert_eq!(
            c.to_string(),
            r#"Bearer realm="https://r.example/token",service="berth",scope="repository:a:pull,push repository:b:pull""#
        );
        let c = Challenge::Bearer {
            realm: "r\n".into(),
            service: Some("s".into()),
            scopes: vec![],
            error: Some(BearerError::InsufficientScope),
        };
        assert_eq!(
            c.to_string(),
            r#"Bearer realm="r",service="s",error="insufficient_scope""#
        );
    }

    #[test]
    fn parses_bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scopes: vec![Scope::push("a/b")],
                error: None,
            }
        );
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            b,
            Challenge::Basic {
                realm: "Registry Realm".into()
            }
        );
        assert_eq!(Challenge::parse(""), Err(ChallengeError::Malformed));
        let escaped: Challenge = r#"Bearer realm="a\"b", service=x"#.parse().unwrap();
        assert!(matches!(
            escaped,
            Challenge::Bearer { ref realm, ref service, .. }
                if realm == "a\"b" && service.as_deref() == Some("x")
        ));
    }

    #[test]
    fn parse_is_lenient_where_a_client_can_proceed() {
        let c = Challenge::parse(
            r#"BEARER Realm="r",scope="repository:a:pull nonsense",error="insufficient_scope",x=y"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "r".into(),
                service: None,
                scopes: vec![Scope::pull("a")],
                error: Some(BearerError::InsufficientScope),
            }
        );
        assert_eq!(c.to_string().parse::<Challenge>().unwrap(), c);
        assert_eq!(
            Challenge::parse("Basic"),
            Ok(Challenge::Basic {
                realm: String::new()
            })
        );
        assert_eq!(
            Challenge::parse(r#"Bearer service="s""#),
            Err(ChallengeError::NoRealm)
        );
        assert_eq!(
            Challenge::parse(r#"Negotiate abc"#),
            Err(ChallengeError::UnsupportedScheme("negotiate".into()))
        );
        assert_eq!(
            Challenge::parse("B@d realm=x"),
            Err(ChallengeError::Malformed)
        );
    }
}
