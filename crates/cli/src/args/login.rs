//! Arguments of the credential commands: login, logout.

use clap::Args;

use super::Common;

/// Arguments of `berth login`.
#[derive(Args)]
pub struct LoginArgs {
    /// Registry host.
    pub host: String,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `berth logout`.
#[derive(Args)]
pub struct LogoutArgs {
    /// Registry host.
    pub host: String,
    #[command(flatten)]
    pub common: Common,
}
