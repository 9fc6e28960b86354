//! Structured audit events for authentication, emitted through `tracing` with target
//! [`AUDIT_TARGET`]. Events carry the user name when known, a short reason and the remote
//! address; never a password or a token.
//!
//! A request that simply carries no credentials is the normal first step of the Docker auth
//! flow (the client learns the challenge from the 401), so it is not a failure and emits no
//! event.

use std::net::IpAddr;

/// The `tracing` target of every audit event, for filtering (`RUST_LOG=berth_auth::audit=info`).
pub const AUDIT_TARGET: &str = "berth_auth::audit";

/// Emits one `WARN` event for a failed authentication or authorization.
///
/// `scheme` is `basic`, `bearer` or `token_endpoint`; `reason` a short snake_case word such as
/// `wrong_password`, `unknown_user`, `token_expired`, `insufficient_scope`.
pub fn auth_failure(scheme: &str, user: Option<&str>, reason: &str, remote: Option<IpAddr>) {
    tracing::warn!(
        target: AUDIT_TARGET,
        event = "auth_failure",
        scheme,
        user = user.unwrap_or("-"),
        reason,
        remote = %remote.map(|r| r.to_string()).unwrap_or_else(|| "-".to_owned()),
        "authentication failed"
    );
}

/// Emits one `INFO` event when the built-in issuer hands out a token.
pub fn token_issued(user: Option<&str>, granted: &str, remote: Option<IpAddr>) {
    tracing::info!(
        target: AUDIT_TARGET,
        event = "token_issued",
        user = user.unwrap_or("-"),
        granted,
        remote = %remote.map(|r| r.to_string()).unwrap_or_else(|| "-".to_owned()),
        "token issued"
    );
}
