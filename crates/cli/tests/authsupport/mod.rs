//! Helpers of the `auth_*` end-to-end tests: a guard around a `berth serve` process, a test CA
//! and server certificates made with rcgen, a `curl` wrapper, a raw TLS client (rustls), a test
//! OCI image and its OCI image layout, `skopeo` and `htpasswd` wrappers, JWTs signed with a test
//! key, storage snapshots and audit-log parsing.
//!
//! Included by each `auth_*.rs` file with `mod authsupport;`; not every file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;
use rcgen::PublicKeyData as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How long `berth serve` may take to listen.
const STARTUP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Small things

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// Random lowercase hex, `2 * n` characters.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Runs a command to completion, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command with `input` on its stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The server

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// The `berth` binary with no `REGISTRY_*` or `RUST_LOG` from the test's environment.
pub fn berth_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A running `berth serve`, killed when dropped. Its stdout and stderr go to a log file.
pub struct Berth {
    child: Option<Child>,
    pub port: u16,
    pub tls: bool,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Berth {
    /// `berth serve --addr 127.0.0.1:PORT --root ROOT [--tls-cert --tls-key] ARGS...`.
    pub fn start(root: &Path, pki: Option<&Pki>, args: &[&OsStr]) -> Berth {
        let tls = pki.map(|p| (p.cert_file.clone(), p.key_file.clone()));
        Self::launch(tls.is_some(), |port| {
            let mut c = berth_cmd();
            c.arg("serve")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--root")
                .arg(root);
            if let Some((cert, key)) = &tls {
                c.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            }
            c.args(args);
            c
        })
    }

    /// Starts the command `make(port)` builds (it must make the server listen on
    /// `127.0.0.1:port`) and waits until it logs that it listens. Retries with another port when
    /// the port was taken in the meantime.
    pub fn launch(tls: bool, make: impl Fn(u16) -> Command) -> Berth {
        let logdir = tempfile::tempdir().expect("log tempdir");
        for attempt in 0..5 {
            let port = free_port();
            let log = logdir.path().join(format!("berth-{port}.log"));
            let logf = std::fs::File::create(&log).unwrap();
            let mut cmd = make(port);
            cmd.stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf);
            let child = cmd.spawn().expect("start berth serve");
            let mut srv = Berth {
                child: Some(child),
                port,
                tls,
                log,
                _logdir: tempfile::tempdir().unwrap(),
            };
            let until = Instant::now() + STARTUP;
            loop {
                let log = srv.log();
                if log.contains("berth registry listening") {
                    srv._logdir = logdir;
                    return srv;
                }
                if let Some(st) = srv.child.as_mut().unwrap().try_wait().unwrap() {
                    srv.child = None;
                    if attempt < 4 && (log.contains("in use") || log.contains("cannot serve")) {
                        break;
                    }
                    panic!(
                        "berth serve exited with {st} before listening:\n{}",
                        tail(&log, 30)
                    );
                }
                assert!(
                    Instant::now() < until,
                    "berth serve did not listen on port {port} within {STARTUP:?}:\n{}",
                    tail(&log, 30)
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("could not find a free port for berth serve")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http(s)://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the server wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics when the process has exited.
    pub fn assert_running(&mut self) {
        let st = self.child.as_mut().expect("server").try_wait().unwrap();
        assert!(
            st.is_none(),
            "berth serve exited with {st:?}:\n{}",
            tail(&self.log(), 30)
        );
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of the berth serve log (port {}) ----\n{}",
                self.port,
                tail(&self.log(), 60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test CA and a server certificate for `127.0.0.1` and `localhost`, written as PEM files:
/// `ca.pem`, `server.crt`, `server.key`, and `certs/ca.crt` (a directory for skopeo's
/// `--cert-dir`).
pub struct Pki {
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    pub ca_der: Vec<u8>,
    pub ca_file: PathBuf,
    pub cert_dir: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// DER of the server certificate in `cert_file`.
    pub leaf_der: Vec<u8>,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let cert_dir = dir.join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), ca.pem()).unwrap();
        let mut pki = Pki {
            ca_params,
            ca_key,
            ca_der: ca.der().to_vec(),
            ca_file,
            cert_dir,
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            leaf_der: Vec::new(),
        };
        pki.leaf_der = pki.write_server_cert(1);
        pki
    }

    /// Issues a server certificate with `serial` for 127.0.0.1 and localhost (a new key), and
    /// returns (certificate PEM, key PEM, certificate DER).
    pub fn issue_server_cert(&self, serial: u64) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "berth test server");
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Writes a new server certificate and key over `cert_file`/`key_file` (each through a
    /// temporary file and a rename) and returns the certificate's DER.
    pub fn write_server_cert(&self, serial: u64) -> Vec<u8> {
        let (cert, key, der) = self.issue_server_cert(serial);
        for (path, data) in [(&self.key_file, key), (&self.cert_file, cert)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, data).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        der
    }

    /// A rustls client configuration trusting this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
            .unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// Connects to `port` over TLS (server name `localhost`), completing the handshake.
    pub fn connect(
        &self,
        port: u16,
        alpn: &[&[u8]],
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let conn = rustls::ClientConnection::new(
            self.client_config(alpn),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        s
    }

    /// The DER of the certificate the server on `port` presents now (verified against the CA).
    pub fn served_certificate(&self, port: u16) -> Vec<u8> {
        let s = self.connect(port, &[b"http/1.1"]);
        s.conn.peer_certificates().expect("server certificates")[0].to_vec()
    }
}

/// Sends raw bytes as one HTTP/1.1 request over TLS and returns what the server answers before
/// it closes or `Connection: close` completes (write errors are ignored: the server may stop
/// reading early).
pub fn raw_tls_request(pki: &Pki, port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = pki.connect(port, &[b"http/1.1"]);
    let _ = s.write_all(request).and_then(|()| s.flush());
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

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
            "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(&layer), "size": layer.len()}],
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
        srv: &Berth,
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
        srv: &Berth,
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
// skopeo, htpasswd

/// Runs `skopeo --insecure-policy ARGS` with a private HOME and XDG_RUNTIME_DIR, so that no
/// credentials of the machine are used; does not check the exit status.
pub fn skopeo(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();

    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo (apt-get install skopeo)")
}

/// [`skopeo`], panicking when it fails.
pub fn skopeo_ok(args: &[&str]) -> Output {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

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
