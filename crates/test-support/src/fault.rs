//! Fault-injecting proxies on loopback: an HTTP front proxy for a registry (bearer tokens,
//! failures, corrupt or cut blobs, redirects to a second origin, tampered manifests, HTML), and
//! a TCP proxy that cuts a connection midway or fails over to another registry.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt as _;

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
    /// Answer every request under `/v2/` with this status and a body that never ends.
    pub endless_body: Option<u16>,
    /// Answer token requests with 200 and a body that never ends.
    pub endless_token: bool,
    /// Name this host (instead of 127.0.0.1) in the token realm of challenges.
    pub realm_host: Option<String>,
}

/// A body that streams zeros (as JSON-looking text) until the reader stops.
fn endless(status: StatusCode) -> Response {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let head = futures::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"errors\":["))
    });
    let tail = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    let mut r = Response::new(Body::from_stream(head.chain(tail)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
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
    if st.faults.lock().unwrap().endless_token {
        return endless(StatusCode::OK);
    }
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
    if let Some(status) = faults.endless_body {
        return endless(StatusCode::from_u16(status).unwrap());
    }
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
            let realm = match &faults.realm_host {
                Some(h) => st.token_realm.replacen("127.0.0.1", h, 1),
                None => st.token_realm.clone(),
            };
            let mut challenge = format!(r#"Bearer realm="{realm}",service="berth-test""#);
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

/// A loopback TCP proxy to `first` that cuts the one connection in flight when the bytes sent
/// upstream first pass `cut_after`, and sends every later connection to `second`. With
/// `second == first` that is a dropped connection; with another registry, to the client the
/// registry lost its upload session midway (as after a failover to a fresh replica). The flag
/// tells whether the cut happened.
pub fn cutting_proxy(first: u16, second: u16, cut_after: u64) -> (u16, Arc<AtomicBool>) {
    use std::io::Write as _;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::AtomicU64;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let cut_seen = cut.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let target = if cut.load(Ordering::SeqCst) {
                second
            } else {
                first
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (sent, cut) = (sent.clone(), cut.clone());
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // After a failover, connections the client kept open to `first` fail too,
                    // as they would if that registry were gone.
                    if first != second && target == first && cut.load(Ordering::SeqCst) {
                        let _ = c_read.shutdown(Shutdown::Both);
                        let _ = s_write.shutdown(Shutdown::Both);
                        break;
                    }
                    let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    if total > cut_after && !cut.swap(true, Ordering::SeqCst) {
                        let _ = c_read.shutdown(Shutdown::Both);
                        let _ = s_write.shutdown(Shutdown::Both);
                        break;
                    }
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(Shutdown::Both);
            });
        }
    });
    (port, cut_seen)
}
