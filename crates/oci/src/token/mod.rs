//! The vocabulary of Docker token authentication, shared by the registry's authenticators and
//! issuer and by the client: [`Scope`]s and their [`Action`]s, the `WWW-Authenticate`
//! [`Challenge`] (rendered and parsed), and the token endpoint's [`TokenResponse`].
//!
//! Plain data only: which status code answers a refusal, and how tokens are signed and
//! checked, belong to the crates that speak HTTP and hold keys.

mod challenge;
mod response;
mod scope;

pub use challenge::{BearerError, Challenge, ChallengeError};
pub use response::{DEFAULT_EXPIRES_IN, TokenResponse};
pub use scope::{
    Action, CATALOG, REGISTRY, REPOSITORY, Scope, ScopeError, join_scopes, merge_scopes,
};
