//! Helpers of the `serve_*` end-to-end tests: a guard around a `berth serve` process (and one
//! around CNCF Distribution's `docker-registry`), a `curl` wrapper, a raw HTTP/1.1 socket for
//! requests that break off, OCI image builders and an OCI image layout writer, and snapshots of
//! storage folders.
//!
//! Included by each test file with `#[path = "common/server.rs"] mod server;`; not every test
//! file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How long a server may take to answer `/v2/` after it was started.
const STARTUP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Digests and random data

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// A random lowercase suffix for names that live in shared state (Docker images).
pub fn random_suffix() -> String {
    hex::encode(random_bytes(4))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
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

/// Sends a signal to a process with the `kill` utility.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Waits for a child up to `limit`; `None` when it is still running.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Whether `GET /v2/` on the port answers 200.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

/// A running registry process (berth or docker-registry), killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    /// The storage folder.
    pub root: PathBuf,
    log: PathBuf,
    _logdir: Option<tempfile::TempDir>,
    what: &'static str,
    /// The Garage node holding this server's bucket, in S3 mode.
    _garage: Option<berth_s3::testing::Garage>,
}

impl Server {
    /// Starts `berth serve` on a free loopback port over `root` with extra arguments, and waits
    /// until `/v2/` answers.
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        Self::start_env(root, extra, &[])
    }

    /// [`Server::start`] with extra environment variables.
    ///
    /// With `BERTH_TEST_STORAGE=s3` (or `s3-redirect`) the server keeps its data in a bucket
    /// of its own Garage node instead, through a Distribution `storage.s3` config, and the
    /// storage helpers below ([`snapshot`], [`check_blob_store`], [`blob_path`]) look at a
    /// copy of the bucket made under `root` each time they are called; so every test runs
    /// unchanged on both backends. `s3` serves blob bytes through Berth, `s3-redirect` answers
    /// blob GETs with redirects to presigned Garage URLs (the S3 default).
    pub fn start_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let root = root.to_owned();
        let s3 = s3_mode().map(|redirect| {
            std::fs::create_dir_all(&root).expect("root folder");
            let g = berth_s3::testing::Garage::single();
            g.create_bucket("berth");
            let cfg = root.with_extension("berth-s3.yml");
            let mut yaml = format!(
                "version: 0.1\nstorage:\n{}",
                g.distribution_yaml("berth", "/registry")
            );
            if !redirect {
                yaml.push_str("  redirect:\n    disable: true\n");
            }
            std::fs::write(&cfg, yaml).expect("write config");
            S3_ROOTS
                .lock()
                .unwrap()
                .insert(root.clone(), g.s3_config("berth"));
            (g, cfg)
        });
        let cfg = s3.as_ref().map(|(_, c)| c.clone());
        let mut srv = Self::spawn_retrying("berth serve", root.clone(), |port, _logdir| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
            cmd.arg("serve")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"));
            match &cfg {
                Some(c) => cmd.arg("-c").arg(c),
                None => cmd.arg("--root").arg(&root),
            };
            cmd.args(extra);
            for (k, _) in std::env::vars() {
                if k.starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            cmd.envs(env.iter().copied());
            cmd
        });
        srv._garage = s3.map(|(g, _)| g);
        srv
    }

    /// Starts `berth serve -c <yaml>` (a Distribution-style config, such as a `storage.s3`
    /// one) with extra arguments; `root` is only where the storage helpers look.
    pub fn start_with_config(root: &Path, yaml: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(root).expect("root folder");
        let cfg = root.with_extension(format!("{}.yml", random_suffix()));
        std::fs::write(&cfg, yaml).expect("write config");
        Self::spawn_retrying("berth serve", root.to_owned(), |port, _logdir| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
            cmd.arg("serve")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-c")
                .arg(&cfg)
                .args(extra);
            for (k, _) in std::env::vars() {
                if k.starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            cmd
        })
    }

    /// Starts CNCF Distribution with `storage` (the YAML under `storage:`, indented two
    /// spaces), deletes enabled.
    pub fn start_distribution_storage(storage: &str) -> Server {
        Self::spawn_retrying("docker-registry", PathBuf::new(), |port, logdir| {
            let cfg = logdir.join(format!("config-{port}.yml"));
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
                ),
            )
            .unwrap();
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&cfg);
            for (k, _) in std::env::vars() {
                // The AWS SDK in Distribution 2.8 panics when AWS_CA_BUNDLE is set (as it is
                // on these machines) together with its own HTTP transport.
                if k.starts_with("REGISTRY_") || k.starts_with("AWS_") {
                    cmd.env_remove(k);
                }
            }
            cmd
        })
    }

    /// The same request path on another server: `Location` values name the server that
    /// answered, and a replica behind a load balancer would get the same path.
    pub fn on(&self, location: &str) -> String {
        let path = match location.find("/v2/") {
            Some(i) => &location[i..],
            None => location,
        };
        self.url(path)
    }

    /// Starts CNCF Distribution (`docker-registry serve`) over `root`, deletes enabled.
    pub fn start_distribution(root: &Path) -> Server {
        let root = root.to_owned();
        Self::spawn_retrying("docker-registry", root.clone(), |port, logdir| {
            let cfg = logdir.join(format!("config-{port}.yml"));
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    root.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&cfg);
            for (k, _) in std::env::vars() {
                if k.starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            cmd
        })
    }

    fn spawn_retrying(
        what: &'static str,
        root: PathBuf,
        make: impl Fn(u16, &Path) -> Command,
    ) -> Server {
        let logdir = tempfile::tempdir().expect("log tempdir");
        for attempt in 0..5 {
            let port = free_port();
            let log = logdir.path().join(format!("server-{port}.log"));
            let logf = std::fs::File::create(&log).unwrap();
            let mut cmd = make(port, logdir.path());
            cmd.stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
            let mut srv = Server {
                child: Some(child),
                port,
                root: root.clone(),
                log,
                _logdir: None,
                what,
                _garage: None,
            };
            let until = Instant::now() + STARTUP;
            loop {
                if answers(port) {
                    srv._logdir = Some(logdir);
                    return srv;
                }
                if let Some(st) = srv.child.as_mut().unwrap().try_wait().unwrap() {
                    let log = tail(&srv.log, 30);
                    srv.child = None;
                    // Someone took the port between our probe and the server's bind: retry.
                    let port_taken = ["in use", "cannot listen", "cannot serve"]
                        .iter()
                        .any(|m| log.contains(m));
                    if attempt < 4 && port_taken {
                        break;
                    }
                    panic!("{what} exited with {st} before answering /v2/:\n{log}");
                }
                if Instant::now() > until {
                    panic!(
                        "{what} did not answer GET /v2/ on port {port} within {STARTUP:?}:\n{}",
                        tail(&srv.log, 30)
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("{what}: could not find a free port")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` + path (or an absolute `Location` value unchanged).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status (`None`: still running, and
    /// then killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("server is running");
        signal(c.id(), "TERM");
        let st = wait_timeout(&mut c, limit);
        if st.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        st
    }

    /// Waits up to `limit` for the process to exit by itself (`None`: still running, and then
    /// killed).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("server is running");
        let st = wait_timeout(&mut c, limit);
        if st.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        st
    }

    /// A request to this server.
    pub fn req(&self, method: &str, path: &str) -> Req {
        Req::new(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path).send()
    }

    pub fn head(&self, path: &str) -> Resp {
        self.req("HEAD", path).send()
    }

    /// Monolithic blob upload; asserts 201.
    pub fn push_blob(&self, repo: &str, blob: &Blob) {
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest),
            )
            .body(blob.bytes.clone())
            .send();
        assert_eq!(r.status, 201, "push blob {} to {repo}: {r}", blob.digest);
    }

    /// PUT of a manifest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Resp {
        self.req("PUT", &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(bytes.to_vec())
            .send()
    }

    /// Pushes the blobs of an image and its manifest under `reference`; asserts 201.
    pub fn push_image(&self, repo: &str, reference: &str, img: &Image) -> Resp {
        self.push_blob(repo, &img.config);
        for l in &img.layers {
            self.push_blob(repo, l);
        }
        let r = self.put_manifest(repo, reference, img.media_type, &img.manifest.bytes);
        assert_eq!(r.status, 201, "push manifest {repo}:{reference}: {r}");
        r
    }

    /// Starts an upload session; returns its `Location` (a path or URL).
    pub fn start_upload(&self, repo: &str) -> String {
        let r = self
            .req("POST", &format!("/v2/{repo}/blobs/uploads/"))
            .send();
        assert_eq!(r.status, 202, "POST upload: {r}");
        r.header("location").expect("Location on 202").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of the {} log (port {}) ----\n{}",
                self.what,
                self.port,
                tail(&self.log, 40)
            );
        }
    }
}

/// Fails the test with a clear message when the Docker daemon is not reachable.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Docker daemon is not reachable (`docker info` failed); this test needs it:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run the docker CLI; this test needs a Docker engine: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP through curl

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Header names lower-cased, in order.
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self}"))
    }

    /// The first error code of a spec error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code in {self}"))
            .to_owned()
    }

    /// Asserts an error answer: status, the spec's JSON body with `code`, and the version header.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected {status} {code}: {self}");
        self.assert_error_shape();
        let body = self.json();
        let codes: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["code"].as_str())
            .collect();
        assert!(
            codes.contains(&code),
            "expected error code {code}, got {codes:?}: {self}"
        );
    }

    /// Asserts that an error answer has the spec's shape (any code) and the version header.
    #[track_caller]
    pub fn assert_error_shape(&self) {
        assert!(self.status >= 400, "not an error: {self}");
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{self}"
        );
        let v = self.json();
        let errs = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {self}"));
        assert!(!errs.is_empty(), "empty errors array: {self}");
        for e in errs {
            assert!(
                e["code"].as_str().is_some_and(|c| !c.is_empty()),
                "error without code: {self}"
            );
        }
    }

    /// Asserts a HEAD error answer: status and version header (HEAD has no body).
    #[track_caller]
    pub fn assert_head_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{self}"
        );
        assert!(self.body.is_empty());
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            write!(f, "\n  {k}: {v}")?;
        }
        let body = self.text();
        let cut: String = body.chars().take(600).collect();
        write!(f, "\n  body ({} bytes): {cut}", self.body.len())
    }
}

/// A request run through the `curl` binary.
pub struct Req {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    extra: Vec<String>,
}

impl Req {
    pub fn new(method: &str, url: String) -> Req {
        Req {
            method: method.to_owned(),
            url,
            headers: vec![],
            body: None,
            extra: vec![],
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Req {
        self.body = Some(b.into());
        self
    }

    /// Extra curl arguments.
    pub fn arg(mut self, a: &str) -> Req {
        self.extra.push(a.to_owned());
        self
    }

    pub fn send(self) -> Resp {
        let tmp = tempfile::tempdir().expect("curl tempdir");
        let hfile = tmp.path().join("headers");
        let bfile = tmp.path().join("body");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--path-as-is", "--max-time", "300", "-H", "Expect:"]);
        cmd.arg("-D").arg(&hfile).arg("-o").arg(&bfile);
        if self.method == "HEAD" {
            cmd.arg("-I");
        } else {
            cmd.args(["-X", &self.method]);
        }
        let has_ct = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        for (k, v) in &self.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = &self.body {
            let f = tmp.path().join("request");
            std::fs::write(&f, b).unwrap();
            cmd.arg("--data-binary").arg(format!("@{}", f.display()));
            if !has_ct {
                // curl would otherwise send application/x-www-form-urlencoded.
                cmd.args(["-H", "Content-Type:"]);
            }
        }
        cmd.args(&self.extra);
        cmd.arg(&self.url);
        let out = cmd.output().expect("run curl");
        assert!(
            out.status.success(),
            "curl {} {} failed ({}): {}",
            self.method,
            self.url,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = std::fs::read_to_string(&hfile).unwrap_or_default();
        // With -I curl writes the headers to the output file too; a HEAD answer has no body.
        let body = if self.method == "HEAD" {
            Vec::new()
        } else {
            std::fs::read(&bfile).unwrap_or_default()
        };
        parse_head(&raw, body).unwrap_or_else(|| {
            panic!(
                "curl {} {}: no HTTP status in {raw:?}",
                self.method, self.url
            )
        })
    }
}

/// Parses the last header block of a (possibly multi-block) response head.
fn parse_head(raw: &str, body: Vec<u8>) -> Option<Resp> {
    let blocks: Vec<&str> = raw
        .split("\r\n\r\n")
        .filter(|b| b.trim_start().starts_with("HTTP/"))
        .collect();
    let last = blocks.last()?;
    let mut lines = last.trim_start().split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Follows a `Link: <url>; rel="next"` header.
pub fn next_link(r: &Resp) -> Option<String> {
    let l = r.header("link")?;
    let start = l.find('<')? + 1;
    let end = l.find('>')?;
    assert!(l.contains("rel=\"next\""), "Link without rel=\"next\": {l}");
    Some(l[start..end].to_owned())
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over a socket, for requests that break off

/// A connection on which a request head and part of its body were sent.
pub struct RawConn {
    pub stream: TcpStream,
}

impl RawConn {
    /// Sends `method path` with the given headers (Host and Content-Length are the caller's to
    /// give) and `body_part`, without finishing the body.
    pub fn send_partial(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body_part: &[u8],
    ) -> RawConn {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("send head");
        s.write_all(body_part).expect("send body part");
        s.flush().unwrap();
        RawConn { stream: s }
    }

    /// Half-closes the connection and reads whatever the server answers (it may answer
    /// nothing); returns the status if one came.
    pub fn close_and_read_status(mut self) -> Option<u16> {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = Vec::new();
        let _ = self.stream.read_to_end(&mut buf);
        let s = String::from_utf8_lossy(&buf);
        s.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Sends a whole raw request on a new connection (the request should say `Connection: close`)
/// and returns the raw response ("" if the connection broke).
pub fn raw_request(port: u16, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Images

/// Content and its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(bytes: Vec<u8>) -> Blob {
        let digest = digest_of(&bytes);
        Blob { bytes, digest }
    }

    pub fn random(n: usize) -> Blob {
        Blob::new(random_bytes(n))
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }

    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.size() })
    }
}

/// A tar.gz layer holding `files` (path, content, mode); returns the layer and its diff ID.
pub fn layer(files: &[(&str, &[u8])]) -> (Blob, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).expect("tar entry");
    }
    let raw = tar.into_inner().expect("tar");
    let diff_id = digest_of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (Blob::new(gz.finish().unwrap()), diff_id)
}

/// An uncompressed tar holding `files`.
pub fn plain_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, *content).expect("tar entry");
    }
    tar.into_inner().expect("tar")
}

/// An image: config, layers and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
    pub media_type: &'static str,
    pub arch: String,
}

impl Image {
    /// Every blob of the image, manifest included.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = vec![&self.config];
        v.extend(self.layers.iter());
        v.push(&self.manifest);
        v
    }

    pub fn platform_descriptor(&self) -> Value {
        let mut d = self.manifest.descriptor(self.media_type);
        d["platform"] = json!({ "architecture": self.arch, "os": "linux" });
        d
    }
}

fn build_image(arch: &str, n_layers: usize, layer_bytes: usize, docker: bool) -> Image {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..n_layers {
        let content = random_bytes(layer_bytes);
        let (l, d) = layer(&[
            (&format!("layer{i}/data-{arch}.bin"), &content),
            (&format!("layer{i}/name"), arch.as_bytes()),
        ]);
        layers.push(l);
        diff_ids.push(d);
    }
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": { "Env": ["PATH=/usr/bin"], "Labels": { "nonce": random_suffix() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": [],
        }))
        .unwrap(),
    );
    let (mt, cmt, lmt) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": config.descriptor(cmt),
        "layers": layers.iter().map(|l| l.descriptor(lmt)).collect::<Vec<_>>(),
    });
    Image {
        config,
        layers,
        manifest: Blob::new(serde_json::to_vec_pretty(&manifest).unwrap()),
        media_type: mt,
        arch: arch.to_owned(),
    }
}

/// A random OCI image for `arch` with `n_layers` layers of about `layer_bytes` bytes each.
pub fn oci_image(arch: &str, n_layers: usize, layer_bytes: usize) -> Image {
    build_image(arch, n_layers, layer_bytes, false)
}

/// A random Docker schema 2 image.
pub fn docker_image(arch: &str, n_layers: usize, layer_bytes: usize) -> Image {
    build_image(arch, n_layers, layer_bytes, true)
}

/// An OCI image index (or Docker manifest list) of images.
pub fn index_of(images: &[&Image], media_type: &str) -> Blob {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": images.iter().map(|i| i.platform_descriptor()).collect::<Vec<_>>(),
    });
    Blob::new(serde_json::to_vec_pretty(&v).unwrap())
}

/// An OCI artifact manifest (empty config) that refers to `subject`.
pub fn artifact(
    artifact_type: &str,
    subject: &Blob,
    subject_media_type: &str,
    layer: &Blob,
) -> Blob {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": { "mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2 },
        "layers": [ layer.descriptor("application/octet-stream") ],
        "subject": subject.descriptor(subject_media_type),
        "annotations": { "org.example.note": "e2e" },
    });
    Blob::new(serde_json::to_vec(&v).unwrap())
}

// ---------------------------------------------------------------------------------------------
// OCI image layouts

/// Writes an OCI image layout: `oci-layout`, every blob, and an `index.json` naming each
/// `(tag, media type, manifest)`.
pub fn write_layout(dir: &Path, blobs: &[&Blob], refs: &[(&str, &str, &Blob)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in blobs.iter().copied().chain(refs.iter().map(|r| r.2)) {
        std::fs::write(dir.join("blobs/sha256").join(b.hex()), &b.bytes).unwrap();
    }
    let manifests: Vec<Value> = refs
        .iter()
        .map(|(tag, mt, b)| {
            let mut d = b.descriptor(mt);
            d["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
            d
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
}

/// The blobs of a layout: file name (hex) to content digest, checking that each file's content
/// matches its name.
pub fn layout_blobs(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256_hex(&data),
            name,
            "layout blob {} does not match its name",
            e.path().display()
        );
        out.insert(name, data.len());
    }
    out
}

/// The `(digest, mediaType)` index.json names for `tag`.
pub fn layout_ref(dir: &Path, tag: &str) -> (String, String) {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("index.json has no {tag}: {v}"));
    (
        m["digest"].as_str().unwrap().to_owned(),
        m["mediaType"].as_str().unwrap().to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// skopeo

/// Runs skopeo with an accept-anything policy; returns the output (not checked).
pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo")
}

/// Runs skopeo and asserts success; returns stdout.
#[track_caller]
pub fn skopeo_ok(args: &[&str]) -> Vec<u8> {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// Storage folders

/// Every file and directory under `dir` (relative paths; directories end with `/`) with a
/// content digest for files, skipping `_uploads` subtrees and anything `skip` matches.
pub fn snapshot(dir: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, String> {
    let roots: Vec<PathBuf> = S3_ROOTS.lock().unwrap().keys().cloned().collect();
    for r in roots.iter().filter(|r| r.starts_with(dir)) {
        mirror_bucket(r);
    }
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel.split('/').any(|c| c == "_uploads") || skip(&rel) {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(p);
            } else {
                out.insert(rel, sha256_hex(&std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Files only, from [`snapshot`].
pub fn stored_files(root: &Path) -> BTreeMap<String, String> {
    snapshot(root, &|_| false)
        .into_iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .collect()
}

/// Checks every blob under `docker/registry/v2/blobs`: its data's SHA-256 equals its path.
/// Returns how many there are.
pub fn check_blob_store(root: &Path) -> usize {
    mirror_bucket(root);
    let base = root.join("docker/registry/v2/blobs/sha256");
    let mut n = 0;
    let Ok(prefixes) = std::fs::read_dir(&base) else {
        return 0;
    };
    for p in prefixes {
        let p = p.unwrap();
        for b in std::fs::read_dir(p.path()).unwrap() {
            let b = b.unwrap();
            let hex = b.file_name().to_string_lossy().into_owned();
            assert!(
                hex.starts_with(&*p.file_name().to_string_lossy()),
                "blob {hex} under the wrong prefix"
            );
            let data_path = b.path().join("data");
            if !data_path.exists() {
                // A kill between creating the blob's folder and renaming its finished temporary
                // file into `data` leaves only the temporary file, which nothing serves.
                for e in std::fs::read_dir(b.path()).unwrap() {
                    let name = e.unwrap().file_name().to_string_lossy().into_owned();
                    assert!(
                        name.starts_with(".berth-tmp-"),
                        "blob folder {hex} holds {name} but no data"
                    );
                }
                continue;
            }
            let data = std::fs::read(&data_path)
                .unwrap_or_else(|e| panic!("{}: {e}", data_path.display()));
            assert_eq!(
                sha256_hex(&data),
                hex,
                "stored blob {} does not hash to its name",
                data_path.display()
            );
            n += 1;
        }
    }
    n
}

/// The storage path of a blob's data.
pub fn blob_path(root: &Path, digest: &str) -> PathBuf {
    mirror_bucket(root);
    let hex = digest.strip_prefix("sha256:").unwrap();
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

// ---------------------------------------------------------------------------------------------
// S3 mode

/// Roots of servers whose data is in a bucket, and how to reach it.
static S3_ROOTS: std::sync::Mutex<BTreeMap<PathBuf, berth_s3::S3Config>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Makes the storage helpers look at a copy of the bucket behind `cfg` (under its
/// `registry` root directory) when they are given `root`.
pub fn register_s3_root(root: &Path, cfg: berth_s3::S3Config) {
    S3_ROOTS.lock().unwrap().insert(root.to_owned(), cfg);
}

/// `Some(redirect)` when the tests run on S3 (`BERTH_TEST_STORAGE=s3` or `s3-redirect`).
pub fn s3_mode() -> Option<bool> {
    match std::env::var("BERTH_TEST_STORAGE").as_deref() {
        Ok("s3") => Some(false),
        Ok("s3-redirect") => Some(true),
        Ok("") | Ok("folder") | Err(_) => None,
        Ok(other) => panic!("BERTH_TEST_STORAGE={other}: use s3, s3-redirect or folder"),
    }
}

/// Replaces the contents of `root` with a copy of the bucket behind it (a no-op for a server
/// on folder storage), so that folder-based checks see what the bucket holds. Objects still
/// being written (uploads) are left out, as they are not objects yet.
pub fn mirror_bucket(root: &Path) {
    let Some(cfg) = S3_ROOTS.lock().unwrap().get(root).cloned() else {
        return;
    };
    let root = root.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use berth_storage::Storage;
            let s = berth_s3::S3Storage::connect(berth_s3::S3Config {
                root_directory: "registry".into(),
                ..cfg
            })
            .await
            .expect("connect to the test bucket");
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            let mut stack = vec![String::new()];
            while let Some(dir) = stack.pop() {
                let names = match s.list(if dir.is_empty() { "docker" } else { &dir }).await {
                    Ok(n) => n,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => panic!("list {dir}: {e}"),
                };
                let dir = if dir.is_empty() {
                    "docker".to_owned()
                } else {
                    dir
                };
                for n in names {
                    let key = format!("{dir}/{n}");
                    match s.stat(&key).await {
                        Ok(m) if m.is_dir => stack.push(key),
                        Ok(m) if m.modified.is_none() => {} // an upload being written
                        Ok(_) => {
                            let data = s.read(&key, 1 << 30).await.unwrap();
                            let p = root.join(&key);
                            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                            std::fs::write(p, data).unwrap();
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => panic!("stat {key}: {e}"),
                    }
                }
            }
        });
    })
    .join()
    .expect("mirror the bucket");
}
