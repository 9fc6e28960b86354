//! `berth serve`: the registry server on a local folder or on S3-compatible object storage.

use std::sync::Arc;

use anyhow::Context;
use berth_registry::{Index, IndexConfig, IndexError, Registry, RegistryConfig};
use berth_server::{AccessControl, ListenOptions, ServerOptions};
use berth_storage::{FolderStorage, Storage};

use crate::args::ServeArgs;
use crate::config::{self, AuthSettings, DatabaseSettings, Overrides};

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
    let _log = crate::logging::init_server(&settings.log_level, settings.log_json);
    raise_open_file_limit();

    let (storage, redirect) = open_storage(&settings, true).await?;
    let storage_name = storage.describe();
    let mut registry = Registry::new(
        storage,
        RegistryConfig {
            delete_enabled: settings.delete_enabled,
            max_manifest_bytes: settings.max_manifest_bytes,
            redirect_blobs: redirect,
            gc_grace: settings.gc.grace,
            policies: settings.policies.clone(),
            read_only: settings.read_only,
        },
    );
    for w in &settings.config_warnings {
        tracing::warn!("{w}");
    }
    if settings.read_only {
        tracing::warn!(
            "read-only (storage.maintenance.readonly): pushes and deletes are refused, upload purging and garbage collection do not run"
        );
    }
    if let Some(f) = &settings.policies_file {
        let p = &settings.policies;
        tracing::info!(
            file = %f.display(),
            immutable = p.immutable.len(),
            quotas = p.quotas.len(),
            retention = p.retention.len(),
            "lifecycle policies loaded"
        );
    }
    if let Some(index) = open_index(&settings).await? {
        registry = registry.with_index(index).await?;
        let r = registry.clone();
        // Every start brings the index level with storage (a crash may have left it behind,
        // another registry may have written the tree); until a first reconcile completes,
        // listings walk storage, so the registry serves correctly meanwhile.
        tokio::spawn(async move {
            if let Err(e) = r.reconcile_index(false).await {
                tracing::error!(error = %crate::exit::chain(&e), "cannot reconcile the index with storage; listings walk storage until a restart succeeds");
            }
        });
    }
    let metrics = match &settings.metrics {
        Some((addr, path)) => {
            let m = Arc::new(berth_server::Metrics::new());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http.debug.addr)"))?;
            tracing::info!(%addr, path, "metrics listening (http.debug)");
            let app = berth_server::metrics_router(m.clone(), path);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
            Some(m)
        }
        None => None,
    };
    if let Some(p) = settings.upload_purging.filter(|_| !settings.read_only) {
        spawn_upload_purger(registry.clone(), p);
    }
    if !settings.read_only {
        spawn_collector(
            registry.clone(),
            settings.gc.clone(),
            !settings.policies.retention.is_empty(),
            metrics.clone(),
        );
    }
    let access = access_control(&settings, registry.storage().as_ref()).await?;
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = berth_server::router(
        registry.clone(),
        ServerOptions {
            trust_forwarded_headers: settings.trust_forwarded,
            access,
            headers: response_headers(&settings.headers)?,
            draining: draining.clone(),
            metrics: metrics.clone(),
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
        ListenOptions {
            tls: settings.tls.clone(),
            idle_timeout: settings.idle_timeout,
        },
        shutdown_signal(draining),
        move |addr| {
            tracing::info!(%addr, scheme, storage = storage_name, delete_enabled, redirect, "berth registry listening");
        },
    )
    .await?;
    registry.flush_index().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// `http.headers` as header names and values, refused at start when one is not valid HTTP.
fn response_headers(
    headers: &[(String, String)],
) -> anyhow::Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = axum::http::HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("http.headers: {k:?} is not a header name"))?;
            let value = axum::http::HeaderValue::from_str(v)
                .with_context(|| format!("http.headers.{k}: {v:?} is not a header value"))?;
            Ok((name, value))
        })
        .collect()
}

/// What a maintenance command (`berth index`, `berth gc`) works on: the server's settings from
/// `config` (and `REGISTRY_*`), with `root` for `--root`, and its storage. Logging is set up.
pub async fn offline(
    config: Option<&std::path::Path>,
    root: Option<std::path::PathBuf>,
) -> Result<(config::Settings, Arc<dyn Storage>), crate::exit::Failure> {
    let flags = config::Overrides {
        root,
        ..Default::default()
    };
    let settings =
        config::load(config, std::env::vars(), &flags).map_err(crate::exit::Failure::other)?;
    crate::logging::init(&settings.log_level, settings.log_json);
    let (storage, _) = open_storage(&settings, false).await.map_err(failure)?;
    Ok((settings, storage))
}

/// Opens the configured storage; `sweep` starts the removal of a killed process's
/// temporaries on a folder. Returns whether blob GETs may redirect.
pub async fn open_storage(
    settings: &config::Settings,
    sweep: bool,
) -> anyhow::Result<(Arc<dyn Storage>, bool)> {
    Ok(match &settings.s3 {
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
            if sweep {
                spawn_temporary_sweep(s.clone());
            }
            (Arc::new(s), false)
        }
    })
}

/// Opens the metadata index the settings name (`None` when there is none).
pub async fn open_index(settings: &config::Settings) -> anyhow::Result<Option<Index>> {
    let cfg = match &settings.database {
        DatabaseSettings::Off { asked } => {
            if !asked {
                tracing::warn!(
                    "no metadata index: on S3 every catalog and tags list walks the bucket; set database.dsn (PostgreSQL, shared by replicas) or database.path (one replica)"
                );
            }
            return Ok(None);
        }
        DatabaseSettings::Embedded(path) => IndexConfig::Embedded { path: path.clone() },
        DatabaseSettings::Postgres(dsn) => IndexConfig::Postgres { dsn: dsn.clone() },
    };
    let setting = match &cfg {
        IndexConfig::Embedded { .. } => "database.path",
        IndexConfig::Postgres { .. } => "database.dsn",
    };
    let index = Index::open(&cfg)
        .await
        .with_context(|| format!("cannot open the metadata index ({setting})"))?;
    tracing::info!(index = index.describe(), "metadata index open");
    Ok(Some(index))
}

/// The failure of `berth serve` or `berth index`, with a hint where the cause has one.
pub fn failure(e: anyhow::Error) -> crate::exit::Failure {
    let hint = e.chain().find_map(|c| match c.downcast_ref::<IndexError>()? {
        IndexError::Corrupt { .. } | IndexError::Foreign { .. } | IndexError::Migrate { .. } => Some(
            "run `berth index rebuild` (with the same config) to set the file aside and index storage again, or point database.path elsewhere",
        ),
        IndexError::Unreachable { .. } => Some(
            "check that the database server runs and that database.dsn (REGISTRY_DATABASE_DSN) names it, its user and password",
        ),
        _ => None,
    });
    let f = crate::exit::Failure::other(e);
    match hint {
        Some(h) => f.with_hint(h),
        None => f,
    }
}

/// Raises the soft limit of open files to the hard one, as Distribution does: every
/// connection and open blob is a descriptor, and the usual soft default (1,024) is reached by
/// a few hundred clients.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}

/// Builds the authenticator (and token issuer) the settings ask for. Every mistake in the
/// files is reported here, at start, rather than on the first request.
async fn access_control(
    settings: &config::Settings,
    storage: &dyn Storage,
) -> anyhow::Result<AccessControl> {
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
            let issuer = match &cfg.signing_key {
                Some(_) => berth_auth::Issuer::new(&cfg, &realm, std::path::Path::new("")),
                None => {
                    let pem = shared_signing_key(storage).await?;
                    let origin = format!("{SIGNING_KEY} in {}", storage.describe());
                    berth_auth::Issuer::with_generated_key(&cfg, &realm, &pem, &origin)
                }
            }
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

/// Where the built-in issuer's generated signing key lives in the storage (for a folder,
/// `<root>/berth/token-signing-key.pem`, where earlier versions kept it).
const SIGNING_KEY: &str = "berth/token-signing-key.pem";

/// The built-in issuer's signing key, kept in the storage every replica shares: created once
/// (of replicas starting together one write wins, and all read that one back), so a token
/// from any replica is accepted by every other.
async fn shared_signing_key(storage: &dyn Storage) -> anyhow::Result<Vec<u8>> {
    let read = || async {
        storage
            .read(SIGNING_KEY, 64 * 1024)
            .await
            .map(|b| b.to_vec())
    };
    match read().await {
        Ok(pem) => return Ok(pem),
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context("cannot read the token signing key"));
        }
    }
    let pem = berth_auth::generate_signing_key_pem();
    if storage
        .put_if_absent(SIGNING_KEY, pem.into_bytes().into())
        .await
        .context("cannot store the generated token signing key")?
    {
        tracing::info!(
            key = SIGNING_KEY,
            storage = storage.describe(),
            "generated a new P-256 token signing key"
        );
    }
    read().await.context("cannot read the token signing key")
}

/// Removes, in the background, the temporary files a killed process left in the folder: those
/// older than this process (less a short grace, for another process that shares the folder
/// and is writing one right now).
fn spawn_temporary_sweep(storage: FolderStorage) {
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    tokio::task::spawn_blocking(move || match storage.sweep_temporaries(before) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed temporary files a crash left behind"),
        Err(e) => tracing::warn!(error = %e, "sweeping temporary files failed"),
    });
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

/// Puts back what a killed collection left aside, then (when `gc.enabled`) collects garbage
/// every `gc.interval`, in the background, retention rules first when there are any. Every
/// replica may run this: two runs at once delete nothing twice and keep what either must keep.
fn spawn_collector(
    registry: Registry,
    gc: config::GcSettings,
    retention: bool,
    metrics: Option<Arc<berth_server::Metrics>>,
) {
    tokio::spawn(async move {
        if let Err(e) = registry.gc_recover().await {
            tracing::warn!(error = %crate::exit::chain(&e), "cannot put back the blobs an interrupted garbage collection moved aside; the next run tries again");
        }
        if !gc.enabled {
            return;
        }
        let opts = berth_registry::GcOptions {
            grace: gc.grace,
            delete_untagged: gc.delete_untagged,
            dry_run: false,
            rate: gc.rate,
            policies: retention,
        };
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + gc.interval, gc.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match registry.collect_garbage(&opts).await {
                Ok(report) => {
                    if let Some(m) = &metrics {
                        m.gc_finished(&report);
                    }
                }
                Err(e) => {
                    if let Some(m) = &metrics {
                        m.gc_failed();
                    }
                    tracing::warn!(error = %crate::exit::chain(&e), "garbage collection stopped; nothing half-deleted is visible, the next run goes on");
                }
            }
        }
    });
}

async fn shutdown_signal(draining: Arc<std::sync::atomic::AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!("shutdown requested; finishing requests in flight (/readyz answers 503)");
}
