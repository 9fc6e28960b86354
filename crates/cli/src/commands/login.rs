//! `berth login` and `berth logout`: credentials in Docker's config.json.

use berth_client::{Client, ClientOptions, Keychain};
use serde_json::json;

use crate::args::{LoginArgs, LogoutArgs};
use crate::connect::{credentials, docker_config_dir};
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_host;

/// Checks the credentials the flags give against the registry, then saves them.
pub async fn login(a: LoginArgs) -> Result<(), Failure> {
    let (host, common) = (parse_host(&a.host)?, &a.common);
    let creds = credentials(common, None)?.ok_or_else(|| {
        Failure::usage(
            "berth login needs --creds USER:PASS or --username USER with the password on stdin",
        )
    })?;
    // Only the credentials being checked: none saved earlier or set in the environment.
    let opts = ClientOptions {
        keychain: Keychain::from(creds.clone()),
        insecure_registries: if common.insecure {
            vec![host.clone()]
        } else {
            vec![]
        },
        skip_tls_verify: common.insecure,
        plain_http: common.plain_http,
        ca_files: common.ca_files.clone(),
        ..ClientOptions::default()
    };
    let c = Client::new(&host, opts)?;
    c.check_login()
        .await
        .map_err(|e| Failure::client(&format!("login to {host}"), e))?;
    let dir = docker_config_dir().ok_or_else(|| {
        berth_client::Error::Credentials(
            "no Docker config directory: set DOCKER_CONFIG or HOME".into(),
        )
    })?;
    let saved = berth_client::credentials::store_docker_login(&dir, &host, &creds)?;
    if common.json {
        print_json(&json!({"registry": host, "savedTo": saved}));
    } else {
        println!("Login succeeded; credentials saved to {saved}");
    }
    Ok(())
}

/// Removes the saved credentials for a registry.
pub async fn logout(a: LogoutArgs) -> Result<(), Failure> {
    let host = parse_host(&a.host)?;
    let removed = match docker_config_dir() {
        Some(dir) => berth_client::credentials::remove_docker_login(&dir, &host)?,
        None => false,
    };
    if a.common.json {
        print_json(&json!({"registry": host, "removed": removed}));
    } else if removed {
        println!("Removed credentials for {host}");
    } else {
        println!("No credentials were saved for {host}");
    }
    Ok(())
}
