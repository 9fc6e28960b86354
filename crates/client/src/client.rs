//! The [`Client`]: one registry, its HTTP connection pool, its TLS setup, its credentials and
//! token cache, and the request loop every operation goes through (authentication, retries with
//! backoff, redirects that never carry credentials to another host).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::{OnceCell, Semaphore};

use berth_oci::token::{Challenge, ChallengeError, TokenResponse};

use crate::auth::{AuthMode, Scope, TokenCache, query_values, token_from};
use crate::credentials::Credentials;
use crate::error::{Error, Result, snippet};
use crate::keychain::Keychain;
use crate::retry::{RetryPolicy, parse_retry_after, retryable_status};
use crate::tls;

/// Most of an error body read (skopeo reads 1 MiB); its start holds the error code.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest token response accepted (skopeo's limit).
pub(crate) const MAX_TOKEN_BODY: usize = 1024 * 1024;
/// Largest listing page (tags, catalog) or referrers index accepted.
pub(crate) const MAX_LISTING_BODY: usize = 16 * 1024 * 1024;

/// Reads at most `limit` bytes of a body; the flag says whether there was more (not read).
pub(crate) async fn read_prefix(
    mut resp: Response,
    limit: usize,
) -> std::result::Result<(Bytes, bool), reqwest::Error> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Ok((Bytes::new(), true));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

/// Default chunk size of chunked uploads (4 MiB).
pub const DEFAULT_CHUNK_SIZE: usize = 4 * 1024 * 1024;

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// One streaming request: `POST` then a single `PUT` with the body when the digest is known,
    /// or one streaming `PATCH` then `PUT` when it has to be computed while sending.
    #[default]
    Streaming,
    /// `PATCH` requests of [`ClientOptions::chunk_size`] bytes (raised to the registry's
    /// `OCI-Chunk-Min-Length`), then `PUT`.
    Chunked,
}

/// How a [`Client`] connects and authenticates. Credentials come only from
/// [`ClientOptions::keychain`]: the client reads no environment variable and no `~/.docker`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to open a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response (default 60 s).
    pub read_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Registries (`host` or `host:port`) where plain HTTP and unverified TLS are accepted.
    pub insecure_registries: Vec<String>,
    /// Always use plain HTTP, whatever the host.
    pub plain_http: bool,
    /// Accept any TLS certificate (implied for hosts in `insecure_registries`).
    pub skip_tls_verify: bool,
    /// PEM files with CA certificates to trust besides the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// Where credentials come from (default: none, anonymous access).
    pub keychain: Keychain,
    /// Retry policy for 429, 5xx and dropped connections.
    pub retry: RetryPolicy,
    /// Upload strategy.
    pub upload_mode: UploadMode,
    /// Chunk size for [`UploadMode::Chunked`] (default 4 MiB).
    pub chunk_size: usize,
    /// Blob transfers allowed at once against this registry (default 4).
    pub max_concurrent_transfers: usize,
    /// Use the proxy named by `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (never for loopback hosts).
    pub proxy_from_env: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            insecure_registries: Vec::new(),
            plain_http: false,
            skip_tls_verify: false,
            ca_files: Vec::new(),
            keychain: Keychain::default(),
            retry: RetryPolicy::default(),
            upload_mode: UploadMode::Streaming,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_concurrent_transfers: 4,
            proxy_from_env: true,
        }
    }
}

/// The host of `host[:port]` (IPv6 addresses keep their brackets, as in URLs).
fn host_part(registry: &str) -> &str {
    if registry.starts_with('[') {
        registry.split_inclusive(']').next().unwrap_or("")
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    }
}

/// `host[:port]` of a URL, the way registries are named.
fn url_host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Whether `registry` (`host[:port]`) is `localhost` or a loopback address.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A client for one registry. Cheap to clone; clones share connections and tokens.
///
/// ```no_run
/// # async fn demo() -> Result<(), berth_client::Error> {
/// use berth_client::{Client, ClientOptions};
/// let client = Client::new("127.0.0.1:5000", ClientOptions::default())?;
/// client.ping().await?;
/// let tags = client.tags("library/alpine", None).await?;
/// println!("{tags:?}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub registry: String,
    api_host: String,
    pub http: reqwest::Client,
    pub opts: ClientOptions,
    allow_http: bool,
    base: OnceCell<String>,
    creds: OnceCell<Option<Credentials>>,
    mode: Mutex<AuthMode>,
    tokens: Mutex<TokenCache>,
    token_fetch: tokio::sync::Mutex<()>,
    pub transfers: Arc<Semaphore>,
}

/// A request body: empty, replayable bytes, or a one-shot stream.
pub(crate) enum ReqBody {
    Empty,
    Bytes(Bytes),
    Stream(Option<reqwest::Body>),
}

/// One request to the registry, before authentication and retries.
pub(crate) struct Req {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: ReqBody,
    pub scopes: Vec<Scope>,
    pub delete: bool,
    pub what: String,
}

impl Req {
    pub fn new(method: Method, url: String, scope: Scope, what: impl Into<String>) -> Self {
        Req::with_scopes(method, url, vec![scope], what)
    }

    /// A request needing every scope of `scopes` in one token (none for the `/v2/` ping; pull
    /// on the source and push on the destination for a cross-repository mount).
    pub fn with_scopes(
        method: Method,
        url: String,
        scopes: Vec<Scope>,
        what: impl Into<String>,
    ) -> Self {
        Req {
            method,
            url,
            headers: HeaderMap::new(),
            body: ReqBody::Empty,
            scopes,
            delete: false,
            what: what.into(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn bytes(mut self, b: Bytes) -> Self {
        self.body = ReqBody::Bytes(b);
        self
    }

    pub fn stream(mut self, b: reqwest::Body) -> Self {
        self.body = ReqBody::Stream(Some(b));
        self
    }

    pub fn deleting(mut self) -> Self {
        self.delete = true;
        self
    }
}

fn origin(url: &reqwest::Url) -> (String, String, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().unwrap_or("").to_owned(),
        url.port_or_known_default(),
    )
}

impl Client {
    /// A client for `registry` (`host[:port]`, as in an image reference; `docker.io` is mapped to
    /// its API host). Fails only on bad options (such as an unreadable CA file).
    ///
    /// ```
    /// use std::time::Duration;
    /// use berth_client::{Client, ClientOptions};
    /// let opts = ClientOptions { connect_timeout: Duration::from_secs(3), ..ClientOptions::default() };
    /// let client = Client::new("localhost:5000", opts).unwrap();
    /// assert_eq!(client.registry(), "localhost:5000");
    /// ```
    pub fn new(registry: &str, opts: ClientOptions) -> Result<Self> {
        if registry.is_empty() || registry.contains('/') || registry.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "{registry:?} is not a registry host[:port]"
            )));
        }
        let insecure = opts.insecure_registries.iter().any(|h| h == registry);
        let loopback = is_loopback(registry);
        let tls = tls::client_config(&opts.ca_files, opts.skip_tls_verify || insecure)?;
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .user_agent(opts.user_agent.clone());
        if loopback || !opts.proxy_from_env {
            b = b.no_proxy();
        }
        let http = b
            .build()
            .map_err(|e| Error::Invalid(format!("cannot build the HTTP client: {e}")))?;
        let api_host = if registry == "docker.io" {
            "registry-1.docker.io".to_owned()
        } else {
            registry.to_owned()
        };
        let permits = opts.max_concurrent_transfers.max(1);
        Ok(Client {
            inner: Arc::new(Inner {
                registry: registry.to_owned(),
                api_host,
                http,
                allow_http: loopback || insecure || opts.plain_http,
                opts,
                base: OnceCell::new(),
                creds: OnceCell::new(),
                mode: Mutex::new(AuthMode::Unknown),
                tokens: Mutex::new(TokenCache::default()),
                token_fetch: tokio::sync::Mutex::new(()),
                transfers: Arc::new(Semaphore::new(permits)),
            }),
        })
    }

    /// The registry host this client talks to, as given to [`Client::new`].
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// `https://host` or `http://host`, decided once: plain HTTP when forced, else HTTPS, falling
    /// back to HTTP for loopback and insecure registries whose HTTPS port does not answer TLS.
    pub async fn base_url(&self) -> Result<String> {
        let i = &self.inner;
        i.base
            .get_or_try_init(|| async {
                if i.opts.plain_http {
                    return Ok(format!("http://{}", i.api_host));
                }
                let https = format!("https://{}", i.api_host);
                if !i.allow_http {
                    return Ok(https);
                }
                match i.http.get(format!("{https}/v2/")).send().await {
                    Ok(_) => Ok(https),
                    Err(e) => {
                        tracing::debug!(registry = %i.registry, error = %e, "HTTPS failed, using plain HTTP");
                        Ok(format!("http://{}", i.api_host))
                    }
                }
            })
            .await
            .cloned()
    }

    /// The absolute URL of an API path such as `/v2/<name>/tags/list`.
    pub(crate) async fn url(&self, path: &str) -> Result<String> {
        Ok(format!("{}{path}", self.base_url().await?))
    }

    async fn credentials(&self) -> Result<Option<Credentials>> {
        let i = &self.inner;
        i.creds
            .get_or_try_init(|| async {
                let keychain = &i.opts.keychain;
                if !keychain.needs_blocking() {
                    return keychain.resolve(&i.registry);
                }
                let (keychain, reg) = (keychain.clone(), i.registry.clone());
                tokio::task::spawn_blocking(move || keychain.resolve(&reg))
                    .await
                    .map_err(|e| Error::Credentials(format!("credential lookup panicked: {e}")))?
            })
            .await
            .cloned()
    }

    fn scope_key(scopes: &[Scope], delete: bool) -> String {
        query_values(scopes, delete).join(" ")
    }

    /// The `Authorization` value to send for `scope`, fetching a token when the registry is
    /// known to use bearer tokens and none is cached.
    async fn auth_header(&self, scopes: &[Scope], delete: bool) -> Result<Option<String>> {
        let mode = self.inner.mode.lock().expect("auth mode lock").clone();
        match mode {
            AuthMode::Unknown => Ok(None),
            AuthMode::Basic => Ok(self.credentials().await?.and_then(|c| c.basic_header())),
            AuthMode::Bearer { realm, service } => {
                let key = Self::scope_key(scopes, delete);
                if let Some(t) = self.inner.tokens.lock().expect("token lock").get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let _guard = self.inner.token_fetch.lock().await;
                if let Some(t) = self.inner.tokens.lock().expect("token lock").get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), scopes, delete)
                    .await?;
                let value = token.value.clone();
                self.inner
                    .tokens
                    .lock()
                    .expect("token lock")
                    .put(key, token);
                Ok(Some(format!("Bearer {value}")))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
        delete: bool,
    ) -> Result<crate::auth::Token> {
        let registry = &self.inner.registry;
        let mut url = reqwest::Url::parse(realm).map_err(|_| Error::Protocol {
            registry: registry.clone(),
            message: format!("bad token realm {realm:?}"),
        })?;
        let creds = self.credentials().await?;
        if creds.is_some() && !self.may_send_credentials_to(&url) {
            let host = url.host_str().unwrap_or_default();
            return Err(Error::Authentication {
                registry: registry.clone(),
                message: format!(
                    "the registry sends token requests to {realm}, on another host ({host}) over plain HTTP, so the credentials were not sent there: use an HTTPS token realm, or list {} as an insecure registry to allow it",
                    url_host_port(&url)
                ),
            });
        }
        let scopes = query_values(scopes, delete);
        let resp = match &creds {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("client_id", "berth"),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let joined = scopes.join(" ");
                if !joined.is_empty() {
                    form.push(("scope", &joined));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.inner
                    .http
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
                    .send()
                    .await
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut rb = self.inner.http.get(url);
                if let Some(h) = creds.as_ref().and_then(Credentials::basic_header) {
                    rb = rb.header(AUTHORIZATION, h);
                }
                rb.send().await
            }
        }
        .map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let body = self
            .read_capped(resp, MAX_TOKEN_BODY, "token endpoint")
            .await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let what = if creds.is_some() {
                "the token service refused the credentials"
            } else {
                "credentials are required"
            };
            return Err(Error::Authentication {
                registry: registry.clone(),
                message: format!("{what} ({status})"),
            });
        }
        if !status.is_success() {
            return Err(Error::from_response(
                registry,
                status.as_u16(),
                &body,
                "token endpoint",
            ));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| Error::Protocol {
            registry: registry.clone(),
            message: format!(
                "the token service answered something that is not a token: {}",
                snippet(&body)
            ),
        })?;
        token_from(&parsed).ok_or_else(|| Error::Protocol {
            registry: registry.clone(),
            message: "the token service answered without a token".into(),
        })
    }

    /// Learns from a 401 how to authenticate. Errors when retrying cannot help.
    async fn on_unauthorized(&self, resp: &Response, scopes: &[Scope], delete: bool) -> Result<()> {
        let registry = &self.inner.registry;
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(Challenge::parse);
        match challenge {
            None | Some(Err(ChallengeError::Malformed)) => Err(Error::Authentication {
                registry: registry.clone(),
                message: "the registry answered 401 without a usable WWW-Authenticate challenge"
                    .into(),
            }),
            Some(Err(ChallengeError::NoRealm)) => Err(Error::Protocol {
                registry: registry.clone(),
                message: "bearer challenge without a realm".into(),
            }),
            Some(Ok(Challenge::Bearer { realm, service, .. })) => {
                *self.inner.mode.lock().expect("auth mode lock") =
                    AuthMode::Bearer { realm, service };
                self.inner
                    .tokens
                    .lock()
                    .expect("token lock")
                    .invalidate(&Self::scope_key(scopes, delete));
                Ok(())
            }
            Some(Ok(Challenge::Basic { .. })) => {
                if self
                    .credentials()
                    .await?
                    .and_then(|c| c.basic_header())
                    .is_none()
                {
                    return Err(Error::Authentication {
                        registry: registry.clone(),
                        message:
                            "the registry requires a username and password and none were given"
                                .into(),
                    });
                }
                *self.inner.mode.lock().expect("auth mode lock") = AuthMode::Basic;
                Ok(())
            }
            Some(Err(e)) => Err(Error::Authentication {
                registry: registry.clone(),
                message: e.to_string(),
            }),
            Some(Ok(_)) => Err(Error::Authentication {
                registry: registry.clone(),
                message: "unsupported authentication challenge".into(),
            }),
        }
    }

    /// Maps a transport error to [`Error::Tls`] or [`Error::Unreachable`].
    pub(crate) fn transport_error(&self, e: reqwest::Error) -> Error {
        let registry = self.inner.registry.clone();
        let mut chain = String::new();
        let mut is_tls = false;
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.downcast_ref::<rustls::Error>().is_some() {
                is_tls = true;
            }
            let text = s.to_string();
            if text.contains("certificate")
                || text.contains("InvalidContentType")
                || text.contains("tls handshake")
            {
                is_tls = true;
            }
            if !chain.contains(&text) {
                if !chain.is_empty() {
                    chain.push_str(": ");
                }
                chain.push_str(&text);
            }
            src = s.source();
        }
        if is_tls {
            Error::Tls {
                registry,
                message: chain,
            }
        } else if e.is_timeout() {
            Error::Unreachable {
                registry,
                message: format!("timed out ({chain})"),
            }
        } else {
            Error::Unreachable {
                registry,
                message: chain,
            }
        }
    }

    /// Sends a request: authenticates (learning the scheme from a 401 and retrying once),
    /// retries 429/5xx and dropped connections when the body can be sent again, and follows
    /// redirects, sending credentials only to the registry's own origin.
    /// Returns the final response whatever its status.
    pub(crate) async fn send(&self, mut req: Req) -> Result<Response> {
        let policy = self.inner.opts.retry.clone();
        let base = reqwest::Url::parse(&self.base_url().await?)
            .map_err(|e| Error::Invalid(format!("bad registry URL: {e}")))?;
        let mut url = reqwest::Url::parse(&req.url)
            .map_err(|e| Error::Invalid(format!("bad URL {}: {e}", req.url)))?;
        let mut attempt = 0u32;
        let mut auth_retried = false;
        let mut redirects = 0;
        loop {
            attempt += 1;
            let same_origin = origin(&url) == origin(&base);
            let mut rb = self
                .inner
                .http
                .request(req.method.clone(), url.clone())
                .headers(req.headers.clone());
            if same_origin && let Some(h) = self.auth_header(&req.scopes, req.delete).await? {
                rb = rb.header(AUTHORIZATION, h);
            }
            let replayable = !matches!(req.body, ReqBody::Stream(_));
            rb = match &mut req.body {
                ReqBody::Empty => rb,
                ReqBody::Bytes(b) => rb.body(b.clone()),
                ReqBody::Stream(s) => match s.take() {
                    Some(body) => rb.body(body),
                    None => {
                        return Err(Error::Invalid(format!(
                            "{}: a streamed body cannot be sent twice",
                            req.what
                        )));
                    }
                },
            };
            tracing::debug!(method = %req.method, url = %url, attempt, "request");
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    let err = self.transport_error(e);
                    if replayable && err.is_transient() && attempt < policy.max_attempts {
                        tokio::time::sleep(policy.delay(attempt, None)).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_origin && !auth_retried {
                auth_retried = true;
                // Learn the challenge (dropping the stale token) even when the body cannot be
                // sent again, so that the caller's next request authenticates afresh.
                self.on_unauthorized(&resp, &req.scopes, req.delete).await?;
                if replayable {
                    attempt -= 1;
                    continue;
                }
            }
            if retryable_status(status.as_u16()) && replayable && attempt < policy.max_attempts {
                let after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                tracing::debug!(%status, "retrying");
                tokio::time::sleep(policy.delay(attempt, after)).await;
                continue;
            }
            if status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && replayable
                && let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok())
            {
                redirects += 1;
                if redirects > 5 {
                    return Err(self.protocol(format!("{}: too many redirects", req.what)));
                }
                url = url
                    .join(loc)
                    .map_err(|_| self.protocol(format!("bad redirect location {loc:?}")))?;
                if status == StatusCode::SEE_OTHER {
                    req.method = Method::GET;
                    req.body = ReqBody::Empty;
                }
                attempt -= 1;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Sends a request and turns any status outside `ok` into an error.
    pub(crate) async fn send_expect(&self, req: Req, ok: &[u16]) -> Result<Response> {
        let what = req.what.clone();
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(resp);
        }
        Err(self.error_from(resp, &what).await)
    }

    /// Whether credentials may go to a token realm: over HTTPS, to the registry's own host, or
    /// to a host the user listed as insecure. Anything else would hand them in clear text to
    /// whichever host a registry's 401 names.
    fn may_send_credentials_to(&self, realm: &reqwest::Url) -> bool {
        if realm.scheme() == "https" {
            return true;
        }
        let host = realm.host_str().unwrap_or_default();
        let own = host_part(&self.inner.api_host);
        host.eq_ignore_ascii_case(own)
            || self.inner.opts.insecure_registries.iter().any(|h| {
                h.eq_ignore_ascii_case(&url_host_port(realm)) || h.eq_ignore_ascii_case(host)
            })
    }

    /// Reads a body that is not a verified blob (a listing, a token, a referrers index), of at
    /// most `limit` bytes: a longer one is a protocol error and the rest is never read, so a
    /// registry that streams without end cannot exhaust memory.
    pub(crate) async fn read_capped(
        &self,
        resp: Response,
        limit: usize,
        what: &str,
    ) -> Result<Bytes> {
        match read_prefix(resp, limit).await {
            Ok((body, false)) => Ok(body),
            Ok((_, true)) => Err(self.protocol(format!(
                "{what}: the answer is larger than {} KiB, more than any registry sends; stopped reading",
                limit / 1024
            ))),
            Err(e) => Err(self.transport_error(e)),
        }
    }

    /// The error for a failed response (reads its body for the registry's error code).
    pub(crate) async fn error_from(&self, resp: Response, what: &str) -> Error {
        let status = resp.status().as_u16();
        let www = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The first bytes say what went wrong; a body that never ends is not read further.
        let body = read_prefix(resp, MAX_ERROR_BODY)
            .await
            .map(|(b, _)| b)
            .unwrap_or_default();
        let mut err = Error::from_response(&self.inner.registry, status, &body, what);
        if let (Error::Authentication { registry, message }, Some(w)) = (&err, &www)
            && w.contains("insufficient_scope")
        {
            err = Error::Authorization {
                registry: registry.clone(),
                message: message.clone(),
            };
        }
        err
    }

    pub(crate) fn protocol(&self, message: impl Into<String>) -> Error {
        Error::Protocol {
            registry: self.inner.registry.clone(),
            message: message.into(),
        }
    }

    /// Resolves a `Location` header against the request URL (registries may answer relative
    /// paths).
    pub(crate) fn resolve_location(&self, resp: &Response) -> Result<String> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.protocol("upload response without a Location header"))?;
        resp.url()
            .join(loc)
            .map(|u| u.to_string())
            .map_err(|_| self.protocol(format!("bad Location {loc:?}")))
    }

    /// Checks that the registry speaks the distribution API (`GET /v2/`), authenticating if it
    /// asks to.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// client.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/").await?;
        let resp = self
            .send_expect(Req::with_scopes(Method::GET, url, vec![], "/v2/"), &[200])
            .await?;
        let api_header = resp
            .headers()
            .get("docker-distribution-api-version")
            .is_some();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !api_header && (ctype.starts_with("text/html") || ctype.starts_with("text/xml")) {
            return Err(self.protocol(format!(
                "/v2/ answered {ctype}, not the distribution API; is this a registry?"
            )));
        }
        Ok(())
    }

    /// Verifies that the configured credentials are accepted (used by `login`): pings, and for
    /// token registries fetches a token for `/v2/` access.
    pub async fn check_login(&self) -> Result<()> {
        self.ping().await
    }
}

/// Percent-encodes a query or form value.
pub(crate) fn urlencode(s: &str) -> String {
    berth_oci::route::percent_encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "registry.local:443"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn encodes() {
        assert_eq!(
            urlencode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
