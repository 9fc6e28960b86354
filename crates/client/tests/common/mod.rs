//! Test servers on loopback: Debian's `docker-registry` (CNCF Distribution 2.8), plain or with
//! htpasswd, and a fault-injecting front proxy that can demand bearer tokens (it runs its own
//! token endpoint), fail requests, corrupt or cut blobs, redirect blob downloads to another
//! origin, tamper with manifests, or answer HTML. Every server runs in a temp dir on a free
//! port and stops on drop.
//!
//! Shared by the library's tests and the CLI's tests (`#[path]`-included there).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_client::{Client, ClientOptions, Credentials, Digest, Keychain, Manifest};
use bytes::Bytes;
use futures::StreamExt as _;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` process; killed on drop.
pub struct DockerRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its storage and config.
    pub dir: tempfile::TempDir,
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the external tools the tests need are installed.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl DockerRegistry {
    /// A plain registry (no auth). `relative` makes it answer relative `Location`s (needed behind
    /// the proxy).
    pub fn start(relative: bool) -> Self {
        Self::start_with(None, relative)
    }

    /// A registry demanding `user`/`pass` with htpasswd (bcrypt).
    pub fn start_htpasswd(user: &str, pass: &str) -> Self {
        Self::start_with(Some((user, pass)), false)
    }

    fn start_with(htpasswd: Option<(&str, &str)>, relative: bool) -> Self {
        assert!(
            have("docker-registry"),
            "docker-registry is not installed: apt-get install -y docker-registry"
        );
        let mut dir = tempfile::tempdir().unwrap();
        let auth = match htpasswd {
            Some((u, p)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", u, p])
                    .output()
                    .expect("htpasswd (apache2-utils)");
                assert!(out.status.success());
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                format!(
                    "auth: {{htpasswd: {{realm: r, path: {}}}}}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}, relativeurls: {relative}}}\n{auth}",
                dir.path().join("data").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let mut reg = DockerRegistry {
                child,
                addr: addr.clone(),
                dir,
            };
            if wait_listening(&addr, &mut reg.child) {
                return reg;
            }
            dir = std::mem::replace(&mut reg.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start");
    }
}

fn wait_listening(addr: &str, child: &mut Child) -> bool {
    for _ in 0..200 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Faults the proxy injects. Mutate through [`FrontProxy::faults`].
#[derive(Default, Clone)]
pub struct Faults {
    /// Statuses (and `Retry-After`) to answer to the next requests under `/v2/`, in order.
    pub fail_next: Vec<(u16, Option<String>)>,
    /// Flip a byte in downloads of this blob.
    pub corrupt_blob: Option<String>,
    /// Cut the next download of this blob after this many bytes (the connection drops).
    pub cut_blob_once: Option<(String, usize)>,
    /// Append a byte to every manifest body served by GET.
    pub tamper_manifests: bool,
    /// Answer every request with an HTML page.
    pub html: bool,
    /// Answer blob GETs with a 307 to the proxy's second ("storage") origin.
    pub redirect_blobs: bool,
    /// Each token is accepted for this many requests, then refused (simulates expiry).
    pub token_max_uses: Option<usize>,
}

/// What the proxy saw.
#[derive(Default)]
pub struct Seen {
    /// `METHOD path?query` of every request to the registry API.
    pub requests: Mutex<Vec<String>>,
    /// Tokens issued.
    pub tokens_issued: AtomicUsize,
    /// Scopes asked of the token endpoint.
    pub scopes: Mutex<Vec<String>>,
    /// Requests the storage origin got.
    pub storage_hits: AtomicUsize,
    /// Whether the storage origin ever got an `Authorization` header.
    pub storage_saw_auth: AtomicBool,
    /// Requests that carried `Range`.
    pub range_requests: AtomicUsize,
}

struct ProxyState {
    backend: String,
    http: reqwest::Client,
    bearer: Option<(String, String)>,
    token_realm: String,
    storage_origin: String,
    faults: Mutex<Faults>,
    tokens: Mutex<HashMap<String, (Vec<String>, usize)>>,
    seen: Seen,
}

/// A proxy in front of a registry (usually a `docker-registry` with relative URLs).
pub struct FrontProxy {
    state: Arc<ProxyState>,
    /// `127.0.0.1:PORT` of the registry API.
    pub addr: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FrontProxy {
    /// Fronts `backend` (`127.0.0.1:PORT`). With `bearer`, every request needs a token from the
    /// proxy's `/token` endpoint, which takes these basic credentials.
    pub async fn start(backend: &str, bearer: Option<(&str, &str)>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let storage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = api.local_addr().unwrap().to_string();
        let storage_addr = storage.local_addr().unwrap().to_string();
        let state = Arc::new(ProxyState {
            backend: format!("http://{backend}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
            bearer: bearer.map(|(u, p)| (u.to_owned(), p.to_owned())),
            token_realm: format!("http://{addr}/token"),
            storage_origin: format!("http://{storage_addr}"),
            faults: Mutex::new(Faults::default()),
            tokens: Mutex::new(HashMap::new()),
            seen: Seen::default(),
        });
        let app = axum::Router::new()
            .route("/token", get(token))
            .fallback(proxy)
            .with_state(state.clone());
        let store = axum::Router::new()
            .fallback(storage_handler)
            .with_state(state.clone());
        let t1 = tokio::spawn(async move {
            axum::serve(api, app).await.unwrap();
        });
        let t2 = tokio::spawn(async move {
            axum::serve(storage, store).await.unwrap();
        });
        FrontProxy {
            state,
            addr,
            tasks: vec![t1, t2],
        }
    }

    /// Changes the faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.faults.lock().unwrap());
    }

    /// What the proxy saw.
    pub fn seen(&self) -> &Seen {
        &self.state.seen
    }

    /// Requests seen so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.seen.requests.lock().unwrap().clone()
    }
}

fn error_json(status: StatusCode, code: &str, headers: HeaderMap) -> Response {
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{code}"}}]}}"#);
    let mut r = (status, body).into_response();
    r.headers_mut().extend(headers);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

async fn token(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let Some((u, p)) = &st.bearer else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let expected = format!("Basic {}", base64_encode(&format!("{u}:{p}")));
    let got = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got != expected {
        return error_json(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", HeaderMap::new());
    }
    let scopes: Vec<String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(percent_decode)
        .collect();
    st.seen
        .scopes
        .lock()
        .unwrap()
        .extend(scopes.iter().cloned());
    let n = st.seen.tokens_issued.fetch_add(1, Ordering::SeqCst);
    let t = format!("tok-{n}-{}", rand::random::<u64>());
    st.tokens.lock().unwrap().insert(t.clone(), (scopes, 0));
    axum::Json(serde_json::json!({"token": t, "expires_in": 300})).into_response()
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scopes a request needs: (resource, action).
fn needed(method: &str, path: &str, query: &str) -> Vec<(String, &'static str)> {
    if path == "/v2/" || path == "/v2" {
        return vec![];
    }
    if path == "/v2/_catalog" {
        return vec![("registry:catalog".into(), "*")];
    }
    let rest = path.trim_start_matches("/v2/");
    let name = ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| &rest[..i]))
        .min_by_key(|s| s.len())
        .unwrap_or(rest)
        .to_owned();
    let action = match method {
        "GET" | "HEAD" => "pull",
        "DELETE" => "delete",
        _ => "push",
    };
    let mut v = vec![(format!("repository:{name}"), action)];
    if let Some(from) = query.split('&').find_map(|kv| kv.strip_prefix("from=")) {
        v.push((format!("repository:{}", percent_decode(from)), "pull"));
    }
    v
}

fn granted(scopes: &[String], resource: &str, action: &str) -> bool {
    scopes.iter().any(|s| {
        s.rsplit_once(':').is_some_and(|(res, actions)| {
            res == resource && actions.split(',').any(|a| a == action || a == "*")
        })
    })
}

async fn proxy(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    st.seen.requests.lock().unwrap().push(format!(
        "{method} {path}{}",
        if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        }
    ));
    if req.headers().contains_key("range") {
        st.seen.range_requests.fetch_add(1, Ordering::SeqCst);
    }
    let faults = st.faults.lock().unwrap().clone();
    if faults.html {
        let mut r = (
            StatusCode::OK,
            "<html><body>Welcome to nginx!</body></html>",
        )
            .into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/html"));
        return r;
    }
    if !faults.fail_next.is_empty() {
        let (status, after) = st.faults.lock().unwrap().fail_next.remove(0);
        let mut h = HeaderMap::new();
        if let Some(a) = after {
            h.insert("retry-after", HeaderValue::from_str(&a).unwrap());
        }
        return error_json(StatusCode::from_u16(status).unwrap(), "TOOMANYREQUESTS", h);
    }
    if st.bearer.is_some() {
        let needs = needed(&method, &path, &query);
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let ok = match auth.strip_prefix("Bearer ") {
            Some(t) => {
                let mut tokens = st.tokens.lock().unwrap();
                match tokens.get_mut(t) {
                    Some((scopes, uses)) => {
                        *uses += 1;
                        let fresh = faults.token_max_uses.is_none_or(|m| *uses <= m);
                        fresh && needs.iter().all(|(r, a)| granted(scopes, r, a))
                    }
                    None => false,
                }
            }
            None => false,
        };
        if !ok {
            let scope: Vec<String> = needs.iter().map(|(r, a)| format!("{r}:{a}")).collect();
            let mut challenge =
                format!(r#"Bearer realm="{}",service="berth-test""#, st.token_realm);
            if !scope.is_empty() {
                challenge.push_str(&format!(r#",scope="{}""#, scope.join(" ")));
            }
            let mut h = HeaderMap::new();
            h.insert(
                "www-authenticate",
                HeaderValue::from_str(&challenge).unwrap(),
            );
            return error_json(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", h);
        }
    }
    let is_blob_get = method == "GET" && path.contains("/blobs/sha256:");
    if is_blob_get && faults.redirect_blobs {
        let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
        r.headers_mut().insert(
            "location",
            HeaderValue::from_str(&format!("{}{path}", st.storage_origin)).unwrap(),
        );
        return r;
    }
    let resp = forward(&st, req, &method, &path, &query).await;
    let digest = path.rsplit('/').next().unwrap_or("").to_owned();
    if is_blob_get {
        if faults.corrupt_blob.as_deref() == Some(digest.as_str()) {
            return map_body(resp, |mut b| {
                if let Some(x) = b.first_mut() {
                    *x ^= 0xff;
                }
                b
            })
            .await;
        }
        if let Some((d, n)) = &faults.cut_blob_once
            && *d == digest
        {
            st.faults.lock().unwrap().cut_blob_once = None;
            return cut_after(resp, *n);
        }
    }
    if faults.tamper_manifests
        && method == "GET"
        && path.contains("/manifests/")
        && resp.status() == StatusCode::OK
    {
        return map_body(resp, |mut b| {
            b.push(b' ');
            b
        })
        .await;
    }
    resp
}

async fn forward(st: &ProxyState, req: Request, method: &str, path: &str, query: &str) -> Response {
    let url = if query.is_empty() {
        format!("{}{path}", st.backend)
    } else {
        format!("{}{path}?{query}", st.backend)
    };
    let mut headers = req.headers().clone();
    for h in ["host", "authorization", "connection", "transfer-encoding"] {
        headers.remove(h);
    }
    let body = reqwest::Body::wrap_stream(req.into_body().into_data_stream());
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = match st
        .http
        .request(m, &url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if k != "connection" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    out.body(Body::from_stream(resp.bytes_stream())).unwrap()
}

async fn map_body(resp: Response, f: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let new = f(bytes.to_vec());
    parts.headers.insert(
        "content-length",
        HeaderValue::from_str(&new.len().to_string()).unwrap(),
    );
    Response::from_parts(parts, Body::from(new))
}

fn cut_after(resp: Response, n: usize) -> Response {
    let (parts, body) = resp.into_parts();
    let mut sent = 0usize;
    let stream = body.into_data_stream().flat_map(move |chunk| {
        let items: Vec<Result<Bytes, std::io::Error>> = match chunk {
            Ok(c) if sent >= n => {
                let _ = c;
                vec![Err(std::io::Error::other("cut"))]
            }
            Ok(c) => {
                let take = (n - sent).min(c.len());
                sent += take;
                if take < c.len() {
                    vec![Ok(c.slice(..take)), Err(std::io::Error::other("cut"))]
                } else {
                    vec![Ok(c)]
                }
            }
            Err(e) => vec![Err(std::io::Error::other(e.to_string()))],
        };
        futures::stream::iter(items)
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

async fn storage_handler(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    st.seen.storage_hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().contains_key("authorization") {
        st.seen.storage_saw_auth.store(true, Ordering::SeqCst);
    }
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    forward(&st, req, &method, &path, "").await
}

/// Client options for tests: no Docker config, no environment credentials, quick retries.
pub fn opts(creds: Option<(&str, &str)>) -> ClientOptions {
    ClientOptions {
        keychain: creds
            .map(|(u, p)| Keychain::from(Credentials::basic(u, p)))
            .unwrap_or_default(),
        retry: berth_client::RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        },
        ..ClientOptions::default()
    }
}

/// Random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// Pushes a random image for each platform (`os/arch`), with `layers` random layers of
/// `layer_size` bytes each plus one layer shared by all platforms, and an OCI index over them
/// tagged `tag` (or the single manifest when one platform is given). Returns the top manifest.
pub async fn push_image(
    client: &Client,
    repo: &str,
    tag: &str,
    platforms: &[&str],
    layers: usize,
    layer_size: usize,
) -> Manifest {
    let shared = Bytes::from(random_bytes(layer_size));
    let shared_digest = client.push_blob_bytes(repo, shared.clone()).await.unwrap();
    let mut entries = Vec::new();
    let mut last = None;
    for p in platforms {
        let (os, arch) = p.split_once('/').unwrap();
        let mut layer_descs = vec![serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": shared_digest.to_string(), "size": shared.len()
        })];
        let mut diff_ids = vec![shared_digest.to_string()];
        for _ in 0..layers {
            let data = Bytes::from(random_bytes(layer_size));
            let len = data.len();
            let d = client.push_blob_bytes(repo, data).await.unwrap();
            diff_ids.push(d.to_string());
            layer_descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": len
            }));
        }
        let config = serde_json::json!({
            "architecture": arch, "os": os, "created": "2024-01-01T00:00:00Z",
            "config": {"Env": [format!("NONCE={}", rand::random::<u64>())]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        });
        let config_bytes = Bytes::from(serde_json::to_vec(&config).unwrap());
        let config_len = config_bytes.len();
        let config_digest = client.push_blob_bytes(repo, config_bytes).await.unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_len},
            "layers": layer_descs,
        });
        let m = Manifest::from_bytes(serde_json::to_vec(&manifest).unwrap(), None).unwrap();
        if platforms.len() == 1 {
            client.put_manifest(repo, tag, &m).await.unwrap();
            return m;
        }
        client
            .put_manifest(repo, &m.digest.to_string(), &m)
            .await
            .unwrap();
        entries.push(serde_json::json!({
            "mediaType": m.media_type, "digest": m.digest.to_string(), "size": m.size(),
            "platform": {"os": os, "architecture": arch}
        }));
        last = Some(m);
    }
    let _ = last;
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let m = Manifest::from_bytes(serde_json::to_vec(&index).unwrap(), None).unwrap();
    client.put_manifest(repo, tag, &m).await.unwrap();
    m
}

/// Every blob digest reachable from `m` (config and layers of each platform).
pub async fn all_blobs(client: &Client, repo: &str, m: &Manifest) -> Vec<Digest> {
    let parsed = m.parse().unwrap();
    let mut out = Vec::new();
    if m.is_index() {
        for c in parsed.manifests {
            let child = client
                .get_manifest(repo, &c.digest.to_string())
                .await
                .unwrap();
            out.extend(Box::pin(all_blobs(client, repo, &child)).await);
        }
    } else {
        out.extend(parsed.config.map(|c| c.digest));
        out.extend(parsed.layers.into_iter().map(|l| l.digest));
    }
    out.sort();
    out.dedup();
    out
}

/// Path of a file in a temp dir.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
