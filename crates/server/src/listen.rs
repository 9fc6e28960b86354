//! Serving the router over plain HTTP or TLS (rustls; HTTP/1.1 and HTTP/2 by ALPN), with
//! graceful shutdown and certificate reloading.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

use crate::conn::GuardAcceptor;

/// Certificate and key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub certificate: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Serve HTTPS with these files (plain HTTP when `None`).
    pub tls: Option<TlsFiles>,
    /// How long a client may leave a connection, a request body or a response without
    /// progress before it is cut (see the `conn` module); also the limit for sending request
    /// headers.
    pub idle_timeout: Duration,
}

/// The default of [`ListenOptions::idle_timeout`] (nginx's `client_body_timeout` and
/// `send_timeout` are 60 s too).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            tls: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The certificate or key could not be loaded.
    #[error(
        "cannot load TLS certificate {cert} and key {key}: check that both are PEM files and match"
    )]
    Tls {
        /// Certificate path.
        cert: String,
        /// Key path.
        key: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Binding or serving failed.
    #[error("cannot serve on {addr}: is another process using the port?")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How often certificate files are checked for renewal.
const RELOAD_CHECK: Duration = Duration::from_secs(10);
/// How long requests in flight get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

fn mtimes(t: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&t.certificate)?, m(&t.key)?))
}

/// Serves `app` on `addr` until `shutdown` completes, then drains requests in flight.
/// `on_listening` receives the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    options: ListenOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), ListenError> {
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(DRAIN));
    });
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(a) = h.listening().await {
            on_listening(a);
        }
    });
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let guard = GuardAcceptor {
        idle: options.idle_timeout,
    };
    let res = match options.tls {
        None => {
            let mut server = axum_server::bind(addr).handle(handle).acceptor(guard);
            configure(server.http_builder(), options.idle_timeout);
            server.serve(make).await
        }
        Some(files) => {
            // Both the server and the client use ring; installing is a no-op when already done.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = RustlsConfig::from_pem_file(&files.certificate, &files.key)
                .await
                .map_err(|source| ListenError::Tls {
                    cert: files.certificate.display().to_string(),
                    key: files.key.display().to_string(),
                    source,
                })?;
            spawn_reloader(config.clone(), files);
            // The guard sits under TLS, so a client that stalls the handshake is cut too.
            let acceptor = RustlsAcceptor::new(config).acceptor(guard);
            let mut server = axum_server::bind(addr).handle(handle).acceptor(acceptor);
            configure(server.http_builder(), options.idle_timeout);
            server.serve(make).await
        }
    };
    res.map_err(|source| ListenError::Io { addr, source })
}

/// HTTP settings shared by both transports.
fn configure(b: &mut Builder<TokioExecutor>, idle: Duration) {
    // A client must send its request headers within the idle limit (slowloris).
    b.http1().timer(TokioTimer::new()).header_read_timeout(idle);
    b.http2().max_header_list_size(MAX_HTTP2_HEADER_LIST);
}

/// Largest HTTP/2 header block accepted (HPACK-decoded size).
///
/// hyper's HTTP/2 default is 16 KiB, far below what HTTP/1.1 accepts (about 400 KiB), and a
/// request over the limit is answered by the protocol layer with a bare 431 followed by
/// `REFUSED_STREAM`, which clients such as curl take as a reason to retry and then report a dead
/// connection. With this limit, oversized `Authorization` headers (refused above 8 KiB) and other
/// large headers reach the application over both protocols and get the registry's JSON error.
const MAX_HTTP2_HEADER_LIST: u32 = 128 * 1024;

/// Reloads the certificate when its files change, so a renewed certificate needs no restart.
fn spawn_reloader(config: RustlsConfig, files: TlsFiles) {
    tokio::spawn(async move {
        let mut seen = mtimes(&files);
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let now = mtimes(&files);
            if now.is_some() && now != seen {
                match config
                    .reload_from_pem_file(&files.certificate, &files.key)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(certificate = %files.certificate.display(), "reloaded TLS certificate");
                        seen = now;
                    }
                    // A half-written renewal: keep the old certificate and try again later.
                    Err(e) => tracing::warn!(error = %e, "new TLS certificate not loaded yet"),
                }
            }
        }
    });
}
