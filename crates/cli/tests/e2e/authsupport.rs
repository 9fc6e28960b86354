//! Helpers of the `auth_*` end-to-end tests: a `curl` wrapper that speaks TLS and sends
//! credentials, a test OCI image and its OCI image layout, an `htpasswd` wrapper, JWTs signed
//! with a test key, a Docker token server, storage snapshots and audit-log parsing. What other
//! tests share (the server guard, the test CA, skopeo) comes from `berth-test-support`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rcgen::PublicKeyData as _;
use serde_json::{Value, json};

pub use berth_oci::media_type::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
pub use berth_test_support::data::*;
pub use berth_test_support::pki::*;
pub use berth_test_support::process::*;
pub use berth_test_support::serve::Server;
pub use berth_test_support::skopeo::*;

// ---------------------------------------------------------------------------------------------
// curl

/// Credentials for a request.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    pub fn basic(u: &str, p: &str) -> Auth {
        Auth::Basic(u.to_owned(), p.to_owned())
    }
}

/// A `curl` invocation.
pub struct Curl {
    head: bool,
    args: Vec<std::ffi::OsString>,
    body: Option<Vec<u8>>,
    url: String,
}

/// `curl -X METHOD URL` (with `--head` for HEAD).
pub fn curl(method: &str, url: &str) -> Curl {
    let mut args: Vec<std::ffi::OsString> = vec![
        "-sS".into(),
        "-g".into(),
        "--noproxy".into(),
        "*".into(),
        "--max-time".into(),
        "30".into(),
    ];
    if method == "HEAD" {
        args.push("--head".into());
    } else {
        args.push("-X".into());
        args.push(method.into());
    }
    Curl {
        head: method == "HEAD",
        args,
        body: None,
        url: url.to_owned(),
    }
}

impl Curl {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn cacert(self, pki: &Pki) -> Self {
        self.arg("--cacert").arg(&pki.ca_file)
    }

    pub fn header(self, h: &str) -> Self {
        self.arg("-H").arg(h)
    }

    /// `-H @FILE`: headers read from a file (for values too long for a command line).
    pub fn header_file(self, p: &Path) -> Self {
        let mut a = std::ffi::OsString::from("@");
        a.push(p);
        self.arg("-H").arg(a)
    }

    pub fn auth(self, a: &Auth) -> Self {
        match a {
            Auth::None => self,
            Auth::Basic(u, p) => self.arg("-u").arg(format!("{u}:{p}")),
            Auth::Bearer(t) => self.header(&format!("Authorization: Bearer {t}")),
        }
    }

    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Some(b.into());
        self
    }

    /// Runs curl; `Err` with its stderr when curl fails (no HTTP answer).
    pub fn try_send(self) -> Result<Resp, String> {
        let dir = tempfile::tempdir().unwrap();
        let headers = dir.path().join("headers");
        let body = dir.path().join("body");
        let mut cmd = Command::new("curl");
        cmd.args(&self.args)
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&body)
            .arg("-w")
            .arg("%{http_code} %{http_version}");
        if let Some(b) = &self.body {
            let p = dir.path().join("upload");
            std::fs::write(&p, b).unwrap();
            let mut a = std::ffi::OsString::from("@");
            a.push(&p);
            cmd.arg("--data-binary").arg(a);
        }
        cmd.arg(&self.url);
        let out = cmd.output().expect("run curl");
        if !out.status.success() {
            return Err(format!(
                "curl {} failed ({}): {}",
                self.url,
                out.status,
                text(&out.stderr)
            ));
        }
        let w = text(&out.stdout);
        let (code, version) = w.split_once(' ').unwrap_or((&w, ""));
        let raw_headers = std::fs::read_to_string(&headers).unwrap_or_default();
        // The last response's header block (after any 100 Continue).
        let block = raw_headers
            .split("\r\n\r\n")
            .filter(|b| b.starts_with("HTTP/"))
            .last()
            .unwrap_or("");
        let headers = block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(Resp {
            status: code.parse().unwrap_or(0),
            version: version.to_owned(),
            headers,
            // With --head, curl writes the headers to the output file.
            body: if self.head {
                Vec::new()
            } else {
                std::fs::read(&body).unwrap_or_default()
            },
        })
    }

    /// Runs curl, panicking when there is no HTTP answer.
    pub fn send(self) -> Resp {
        self.try_send().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// `1.1` or `2`.
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", text(&self.body)))
    }

    /// The `code` of the first error of a registry error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/{} {}", self.version, self.status)?;
        for (k, v) in &self.headers {
            write!(f, "\n{k}: {v}")?;
        }
        write!(f, "\n\n{}", String::from_utf8_lossy(&self.body))
    }
}

// ---------------------------------------------------------------------------------------------
// A test image

/// One small OCI image: a random layer (tar.gz), its config and manifest.
pub struct TestImage {
    /// The uncompressed layer tar (for `docker import`).
    pub layer_tar: Vec<u8>,
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

impl TestImage {
    pub fn random() -> TestImage {
        let hello = format!("hello from the berth auth tests {}\n", random_hex(8));
        let layer_tar = tar_of(&[
            ("hello.txt", hello.as_bytes()),
            ("data.bin", &random_bytes(20_000)),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&layer_tar).unwrap();
        let layer = gz.finish().unwrap();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(&layer_tar)]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(&config), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest_of(&layer), "size": layer.len()}],
        }))
        .unwrap();
        TestImage {
            layer_tar,
            layer,
            config,
            manifest,
        }
    }

    pub fn digest(&self) -> String {
        digest_of(&self.manifest)
    }

    /// Writes an OCI image layout at `dir` with this image tagged `tag`; returns the
    /// `oci:DIR:TAG` reference for skopeo.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> String {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for b in [&self.layer, &self.config, &self.manifest] {
            std::fs::write(blobs.join(&digest_of(b)["sha256:".len()..]), b).unwrap();
        }
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": self.digest(),
                "size": self.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        format!("oci:{}:{tag}", dir.display())
    }

    /// Pushes the blobs (monolithic POST) and the manifest with curl; asserts every step.
    pub fn push_with_curl(
        &self,
        srv: &Server,
        pki: Option<&Pki>,
        repo: &str,
        tag: &str,
        auth: &Auth,
    ) {
        for b in [&self.config, &self.layer] {
            let r = with_ca(
                curl(
                    "POST",
                    &srv.url(&format!(
                        "/v2/{repo}/blobs/uploads/?digest={}",
                        digest_of(b)
                    )),
                ),
                pki,
            )
            .auth(auth)
            .header("Content-Type: application/octet-stream")
            .body(b.clone())
            .send();
            assert_eq!(r.status, 201, "blob upload to {repo}: {r}");
        }
        let r = self.put_manifest(srv, pki, repo, tag, auth);
        assert_eq!(r.status, 201, "manifest PUT {repo}:{tag}: {r}");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(self.digest().as_str())
        );
    }

    /// `PUT /v2/<repo>/manifests/<tag>` with the manifest.
    pub fn put_manifest(
        &self,
        srv: &Server,
        pki: Option<&Pki>,
        repo: &str,
        tag: &str,
        auth: &Auth,
    ) -> Resp {
        with_ca(
            curl("PUT", &srv.url(&format!("/v2/{repo}/manifests/{tag}"))),
            pki,
        )
        .auth(auth)
        .header(&format!("Content-Type: {OCI_MANIFEST}"))
        .body(self.manifest.clone())
        .send()
    }
}

/// Adds `--cacert` when `pki` is given.
pub fn with_ca(c: Curl, pki: Option<&Pki>) -> Curl {
    match pki {
        Some(p) => c.cacert(p),
        None => c,
    }
}

// ---------------------------------------------------------------------------------------------
// htpasswd

/// Writes an htpasswd file with bcrypt entries made by Apache's `htpasswd -B`.
pub fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let _ = std::fs::remove_file(path);
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new("htpasswd");
        cmd.arg("-B").arg("-C").arg("5").arg("-i");
        if i == 0 {
            cmd.arg("-c");
        }
        cmd.arg(path).arg(user);
        let out = run_with_stdin(&mut cmd, password.as_bytes());
        assert!(
            out.status.success(),
            "htpasswd failed (apt-get install apache2-utils): {}",
            text(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JWTs

/// A P-256 token signing key made in the test, with a self-signed certificate for
/// `rootcertbundle`.
pub struct Signer {
    key: rcgen::KeyPair,
    pub cert_pem: String,
    /// The libtrust key id of the key (what Docker token servers put in `kid`).
    pub kid: String,
}

impl Signer {
    pub fn new(cn: &str) -> Signer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert_pem = p.self_signed(&key).unwrap().pem();
        let kid = berth_auth::libtrust_key_id(&key.subject_public_key_info());
        Signer { key, cert_pem, kid }
    }

    /// An ES256 JWT of `claims`, with `kid` in the header when given.
    pub fn sign_kid(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.typ = Some("JWT".into());
        h.kid = kid.map(str::to_owned);
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }

    /// An ES256 JWT of `claims` with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_kid(claims, Some(&self.kid))
    }
}

/// Claims issued by `iss` for `aud`, subject `sub`, valid from a second ago for `ttl` seconds
/// (negative: expired), granting `access`.
pub fn claims(iss: &str, aud: &str, sub: &str, ttl: i64, access: Value) -> Value {
    let n = now() as i64;
    json!({
        "iss": iss, "sub": sub, "aud": aud,
        "exp": n + ttl, "nbf": n - 1, "iat": n - 1, "jti": random_hex(8),
        "access": access,
    })
}

/// One `access` entry for a repository.
pub fn repo_access(name: &str, actions: &[&str]) -> Value {
    json!({"type": "repository", "name": name, "actions": actions})
}

/// An unsigned JWT (`alg: none`).
pub fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(&serde_json::to_vec(claims).unwrap())
    )
}

// ---------------------------------------------------------------------------------------------
// Storage and logs

/// Every file and directory under `root` with each file's digest, to compare before and after.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel + "/", String::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, digest_of(&std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The log lines of a `tracing` target (e.g. `berth::audit`).
pub fn lines_of<'a>(log: &'a str, target: &str) -> Vec<&'a str> {
    let needle = format!(" {target}: ");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

/// The value of `key=value` or `key="value"` in a text-format log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        Some(rest.split(' ').next().unwrap_or("").to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Bad credentials

/// `text` with every `127.0.0.1:PORT` written as `127.0.0.1:PORT`, so that a port number never
/// looks like a status code.
pub fn without_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        let (before, after) = rest.split_at(i + "127.0.0.1:".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("PORT");
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// True when a client's error output (skopeo, docker) says that authentication or
/// authorization failed.
pub fn says_access_denied(stderr: &[u8]) -> bool {
    let err = without_ports(&text(stderr)).to_ascii_lowercase();
    [
        "unauthorized",
        "denied",
        "401",
        "403",
        "authentication required",
        "no basic auth credentials",
        "insufficient_scope",
    ]
    .iter()
    .any(|w| err.contains(w))
}

/// Malformed `Authorization` values, each with what is wrong with it. Every auth mode must
/// answer each with 401 and the `UNAUTHORIZED` body, and change nothing.
pub fn malformed_authorizations() -> Vec<(&'static str, String)> {
    vec![
        ("Basic with bad base64", "Basic !!!".into()),
        ("Basic without a colon", format!("Basic {}", b64(b"alice"))),
        (
            "Basic with an empty user",
            format!("Basic {}", b64(b":password")),
        ),
        ("Basic with nothing", "Basic".into()),
        ("Bearer with nothing", "Bearer".into()),
        ("Bearer with two words", "Bearer abc def".into()),
        ("Bearer that is not a JWT", "Bearer not-a-jwt".into()),
        (
            "unknown scheme",
            "Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag".into(),
        ),
        (
            "Digest scheme",
            "Digest username=\"alice\", realm=\"x\"".into(),
        ),
        ("scheme only", "Token".into()),
    ]
}

/// Writes `Authorization: Bearer AAAA...` (`size` characters of token) as a curl `-H @file`.
pub fn write_huge_authorization(path: &Path, size: usize) {
    std::fs::write(
        path,
        format!("Authorization: Bearer {}\r\n", "A".repeat(size)),
    )
    .unwrap();
}

/// The largest header curl sends over HTTP/2 is under 64 KiB (its HTTP/2 library refuses
/// larger header blocks), so huge headers are sent with 64 KiB over HTTP/1.1 and 60 KiB over
/// HTTP/2: `(curl flag, token size)`.
pub const HUGE_HEADERS: [(&str, usize); 2] = [("--http1.1", 64 * 1024), ("--http2", 60 * 1024)];

// ---------------------------------------------------------------------------------------------
// An external token server

/// A request the [`TokenServer`] answered.
#[derive(Debug, Clone)]
pub struct SeenTokenRequest {
    /// The Basic user, if credentials were sent.
    pub user: Option<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The `scope` parameters.
    pub scopes: Vec<String>,
    /// The status it answered.
    pub status: u16,
}

/// Which actions a user (`None`: anonymous) may have on a repository.
pub type Policy = Box<dyn Fn(Option<&str>, &str) -> Vec<&'static str> + Send + Sync>;

/// A tiny Docker token server on 127.0.0.1 (plain HTTP, one thread) for `auth.token` tests:
/// answers `GET /token?service=..&scope=..` (Basic credentials of its users, or anonymous) with
/// a JWT signed by the test's [`Signer`], granting of each requested scope what the [`Policy`]
/// allows; wrong credentials get 401. Stops when dropped.
pub struct TokenServer {
    pub port: u16,
    pub seen: Arc<std::sync::Mutex<Vec<SeenTokenRequest>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn percent_decode_query(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push((hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap()) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    /// Starts the server: tokens from `issuer` for `service`, users and passwords `users`.
    pub fn start(
        signer: Signer,
        issuer: &str,
        service: &str,
        users: &[(&str, &str)],
        policy: Policy,
    ) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let users: BTreeMap<String, String> = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        let (issuer, service) = (issuer.to_owned(), service.to_owned());
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = text(&head);
                let mut lines = head.split("\r\n");
                let target = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or("")
                    .to_owned();
                let auth = lines
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.trim().to_owned());
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let mut params: Vec<(String, String)> = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    params.push((percent_decode_query(k), percent_decode_query(v)));
                }
                let scopes: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
                    .filter(|s| !s.is_empty())
                    .collect();
                let service_param = params
                    .iter()
                    .find(|(k, _)| k == "service")
                    .map(|(_, v)| v.clone());
                let user = auth.as_deref().and_then(|a| {
                    let b = a.strip_prefix("Basic ")?;
                    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
                    let raw = String::from_utf8(raw).ok()?;
                    let (u, p) = raw.split_once(':')?;
                    Some((u.to_owned(), p.to_owned()))
                });
                let (status, body) = if path != "/token" {
                    (404, json!({"error": "not found"}))
                } else if auth.is_some()
                    && user
                        .as_ref()
                        .is_none_or(|(u, p)| users.get(u).is_none_or(|want| want != p))
                {
                    (401, json!({"error": "invalid_grant"}))
                } else {
                    let who = user.as_ref().map(|(u, _)| u.as_str());
                    let mut access = Vec::new();
                    for s in &scopes {
                        let mut parts = s.splitn(2, ':');
                        let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        let Some((name, actions)) = rest.rsplit_once(':') else {
                            continue;
                        };
                        if kind != "repository" {
                            continue;
                        }
                        let allowed = policy(who, name);
                        let granted: Vec<&str> =
                            actions.split(',').filter(|a| allowed.contains(a)).collect();
                        if !granted.is_empty() {
                            access.push(repo_access(name, &granted));
                        }
                    }
                    let token = signer.sign(&claims(
                        &issuer,
                        &service,
                        who.unwrap_or(""),
                        300,
                        Value::Array(access),
                    ));
                    (
                        200,
                        json!({"token": token, "access_token": token, "expires_in": 300}),
                    )
                };
                seen2.lock().unwrap().push(SeenTokenRequest {
                    user: user.map(|(u, _)| u),
                    service: service_param,
                    scopes,
                    status,
                });
                let body = serde_json::to_vec(&body).unwrap();
                let reason = match status {
                    200 => "OK",
                    401 => "Unauthorized",
                    _ => "Not Found",
                };
                let mut res = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                if status == 401 {
                    res.push_str("WWW-Authenticate: Basic realm=\"test token server\"\r\n");
                }
                res.push_str("\r\n");
                let _ = conn.write_all(res.as_bytes());
                let _ = conn.write_all(&body);
                let _ = conn.flush();
            }
        });
        TokenServer {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The requests answered so far.
    pub fn seen(&self) -> Vec<SeenTokenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
