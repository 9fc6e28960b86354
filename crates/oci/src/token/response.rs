//! The token endpoint's answer (Docker token authentication specification).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The lifetime a token has when the endpoint does not say (the specification's default).
pub const DEFAULT_EXPIRES_IN: u64 = 60;

/// The token endpoint's answer. A registry's issuer fills `token` and `access_token` with the
/// same JWT (Docker's and OAuth2's names); a client accepts either.
///
/// Reading is lenient, as clients must be: fields a token service leaves out (or sends as
/// `null`) read as empty, and `expires_in` as [`DEFAULT_EXPIRES_IN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    #[serde(default, deserialize_with = "null_as_default")]
    pub token: String,
    /// The same JWT (OAuth2 name).
    #[serde(default, deserialize_with = "null_as_default")]
    pub access_token: String,
    /// Lifetime in seconds.
    #[serde(
        default = "default_expires_in",
        deserialize_with = "null_as_default_expires_in"
    )]
    pub expires_in: u64,
    /// RFC 3339 issue time.
    #[serde(default, deserialize_with = "null_as_default")]
    pub issued_at: String,
}

fn default_expires_in() -> u64 {
    DEFAULT_EXPIRES_IN
}

fn null_as_default<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn null_as_default_expires_in<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(DEFAULT_EXPIRES_IN))
}

impl TokenResponse {
    /// An issuer's answer: `token` under both names.
    pub fn new(token: String, expires_in: u64, issued_at: String) -> Self {
        TokenResponse {
            access_token: token.clone(),
            token,
            expires_in,
            issued_at,
        }
    }

    /// The token to send as `Bearer`: `token`, else `access_token`; `None` when both are empty.
    pub fn bearer(&self) -> Option<&str> {
        [&self.token, &self.access_token]
            .into_iter()
            .find(|t| !t.is_empty())
            .map(String::as_str)
    }

    /// How long the token is valid (at least one second).
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.expires_in.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_answer_round_trips() {
        let t = TokenResponse::new("jwt".into(), 120, "2024-01-01T00:00:00Z".into());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"token":"jwt","access_token":"jwt","expires_in":120,"issued_at":"2024-01-01T00:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<TokenResponse>(&json).unwrap(), t);
    }

    #[test]
    fn client_reading_is_lenient() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","expires_in":300}"#).unwrap();
        assert_eq!(t.bearer(), Some("x"));
        assert_eq!(t.lifetime(), Duration::from_secs(300));
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"","access_token":"y","expires_in":null}"#).unwrap();
        assert_eq!(t.bearer(), Some("y"));
        assert_eq!(t.lifetime(), Duration::from_secs(60));
        let none: TokenResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(none.bearer(), None);
        assert_eq!(none.lifetime(), Duration::from_secs(60));
        let zero: TokenResponse = serde_json::from_str(r#"{"token":"z","expires_in":0}"#).unwrap();
        assert_eq!(zero.lifetime(), Duration::from_secs(1));
        assert!(serde_json::from_str::<TokenResponse>(r#"{"token":5}"#).is_err());
    }
}
