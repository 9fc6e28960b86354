//! `berth serve`: the registry server on a local folder or on S3-compatible object storage.

use std::sync::Arc;

use anyhow::Context;
use berth_registry::{Registry, RegistryConfig};
use berth_server::{AccessControl, ServerOptions};
use berth_storage::{FolderStorage, Storage};

use crate::args::ServeArgs;
use crate::config::{self, AuthSettings, Overrides};

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Overrides {
        addr: args.addr,
        root: args.root,
        delete_enabled: args.delete_enabled.then_some(true),
        tls: args.tls_cert.zip(args.tls_key),
        auth_config: args.auth_config,
    };
    let settings = config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    crate::logging::init(&settings.log_level, settings.log_json);

    let (storage, redirect): (Arc<dyn Storage>, bool) = match &settings.s3 {
        Some(cfg) => {
            let cfg = config::with_aws_environment(cfg.clone(), std::env::vars());
            let s = berth_s3::S3Storage::connect(cfg)
                .await
                .context("cannot use S3 storage (storage.s3)")?;
            (Arc::new(s), settings.redirect)
        }
        None => {
            let s = FolderStorage::new(&settings.root).with_context(|| {
                format!("cannot use storage folder {}", settings.root.display())
            })?;
            (Arc::new(s), false)
        }
    };
    let storage_name = storage.describe();
    let registry = Registry::new(
        storage,
        RegistryConfig {
            delete_enabled: settings.delete_enabled,
            max_manifest_bytes: settings.max_manifest_bytes,
            redirect_blobs: redirect,
        },
    );
    if let Some(p) = settings.upload_purging {
        spawn_upload_purger(registry.clone(), p);
    }
    let access = access_control(&settings)?;
    let app = berth_server::router(
        registry,
        ServerOptions {
            trust_forwarded_headers: settings.trust_forwarded,
            access,
        },
    );
    let delete_enabled = settings.delete_enabled;
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    berth_server::serve(
        settings.addr,
        app,
        settings.tls.clone(),
        shutdown_signal(),
        move |addr| {
            tracing::info!(%addr, scheme, storage = storage_name, delete_enabled, redirect, "berth registry listening");
        },
    )
    .await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Builds the authenticator (and token issuer) the settings ask for. Every mistake in the
/// files is reported here, at start, rather than on the first request.
fn access_control(settings: &config::Settings) -> anyhow::Result<AccessControl> {
    let mut ac = AccessControl::default();
    match &settings.auth {
        AuthSettings::None => {
            if !settings.addr.ip().is_loopback() {
                tracing::warn!(
                    "no authentication configured: anyone who reaches this port can push and delete"
                );
            }
        }
        AuthSettings::Htpasswd { realm, path } => {
            let a = berth_auth::HtpasswdAuthenticator::load(realm, path)
                .with_context(|| format!("cannot use htpasswd file {}", path.display()))?;
            ac.authenticator = Some(Arc::new(a));
        }
        AuthSettings::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
            jwks,
        } => {
            let cfg = berth_auth::TokenConfig {
                realm: realm.clone(),
                service: service.clone(),
                issuer: issuer.clone(),
                rootcertbundle: rootcertbundle.clone(),
                jwks: jwks.clone(),
                leeway_secs: 60,
                insufficient_scope: Default::default(),
            };
            let a = berth_auth::TokenAuthenticator::from_config(&cfg)
                .context("cannot set up token authentication")?;
            ac.authenticator = Some(Arc::new(a));
        }
        AuthSettings::Builtin { config } => {
            let cfg = berth_auth::IssuerConfig::load(config)
                .with_context(|| format!("cannot use access list {}", config.display()))?;
            let scheme = if settings.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let host = if settings.addr.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], settings.addr.port()))
            } else {
                settings.addr
            };
            let realm = format!("{scheme}://{host}/token");
            let key = settings.root.join("berth").join("token-signing-key.pem");
            let issuer = berth_auth::Issuer::new(&cfg, &realm, &key)
                .context("cannot start the token issuer")?;
            tracing::info!(
                realm = issuer.realm(),
                service = issuer.service(),
                "built-in token issuer enabled"
            );
            ac.authenticator = Some(Arc::new(issuer.authenticator()));
            ac.issuer = Some(Arc::new(issuer));
        }
    }
    Ok(ac)
}

/// Purges abandoned uploads at start and then every `interval`, in the background. With
/// object storage every replica may run this; removing an upload twice is harmless.
fn spawn_upload_purger(registry: Registry, p: config::UploadPurging) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(p.interval);
        loop {
            tick.tick().await;
            match registry.purge_uploads(p.age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "purged abandoned uploads"),
                Err(e) => tracing::warn!(error = %e, "purging abandoned uploads failed"),
            }
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}
