//! A guard around a `berth serve` process: started on a free loopback port, killed when
//! dropped (printing the end of its log when the test failed), with request helpers.
//!
//! With `BERTH_TEST_STORAGE=s3` (or `s3-redirect`), [`Server::start`] puts the server's data in
//! a bucket of its own Garage node; the [`crate::storage`] helpers then look at a copy of the
//! bucket, so that every test runs unchanged on both backends.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::curl::{Req, Resp};
use crate::data::random_suffix;
use crate::garage::Garage;
use crate::image::{Blob, Image};
use crate::net::{answers_v2, free_port};
use crate::pki::Pki;
use crate::postgres::{Postgres, postgres_mode};
use crate::process::{
    berth_bin, berth_cmd, env_remove_prefixed, signal, tail, tail_file, wait_timeout,
};
use crate::storage::{register_s3_root, s3_mode};

/// How long a server may take to answer after it was started.
const STARTUP: Duration = Duration::from_secs(60);

/// A running registry process (berth or docker-registry), killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The storage folder.
    pub root: PathBuf,
    log: PathBuf,
    _logdir: Option<tempfile::TempDir>,
    what: &'static str,
    /// Whether it serves HTTPS.
    pub tls: bool,
    /// The Garage node holding this server's bucket, in S3 mode.
    _garage: Option<Garage>,
    /// The PostgreSQL cluster holding its index, in S3 mode with `BERTH_TEST_DATABASE=postgres`.
    _postgres: Option<Postgres>,
}

/// How a launcher knows that the process it started serves.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ready {
    /// `GET /v2/` over plain HTTP answers 200.
    V2,
    /// The process's log contains this text.
    Log(&'static str),
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
    /// storage helpers ([`snapshot`](crate::storage::snapshot),
    /// [`check_blob_store`](crate::storage::check_blob_store),
    /// [`blob_path`](crate::storage::blob_path)) look at a
    /// copy of the bucket made under `root` each time they are called; so every test runs
    /// unchanged on both backends. `s3` serves blob bytes through Berth, `s3-redirect` answers
    /// blob GETs with redirects to presigned Garage URLs (the S3 default).
    pub fn start_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let root = root.to_owned();
        let s3 = s3_mode().map(|redirect| {
            std::fs::create_dir_all(&root).expect("root folder");
            let g = Garage::single();
            g.create_bucket("berth");
            let cfg = root.with_extension("berth-s3.yml");
            let mut yaml = format!(
                "version: 0.1\nstorage:\n{}",
                g.distribution_yaml("berth", "/registry")
            );
            if !redirect {
                yaml.push_str("  redirect:\n    disable: true\n");
            }
            let pg = postgres_mode().then(|| {
                let pg = Postgres::start();
                let dsn = pg.create_database("berth");
                yaml.push_str(&format!("database:\n  dsn: {dsn}\n"));
                pg
            });
            std::fs::write(&cfg, yaml).expect("write config");
            register_s3_root(&root, g.s3_config("berth"));
            (g, cfg, pg)
        });
        let cfg = s3.as_ref().map(|(_, c, _)| c.clone());
        let mut srv =
            Self::spawn_retrying("berth serve", root.clone(), false, Ready::V2, |port, _| {
                let mut cmd = Command::new(berth_bin());
                cmd.arg("serve")
                    .arg("--addr")
                    .arg(format!("127.0.0.1:{port}"));
                match &cfg {
                    Some(c) => cmd.arg("-c").arg(c),
                    None => cmd.arg("--root").arg(&root),
                };
                cmd.args(extra);
                env_remove_prefixed(&mut cmd, &["REGISTRY_"]);
                cmd.envs(env.iter().copied());
                cmd
            });
        if let Some((g, _, pg)) = s3 {
            srv._garage = Some(g);
            srv._postgres = pg;
        }
        srv
    }

    /// Starts `berth serve -c <yaml>` (a Distribution-style config, such as a `storage.s3`
    /// one) with extra arguments; `root` is only where the storage helpers look.
    pub fn start_with_config(root: &Path, yaml: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(root).expect("root folder");
        let cfg = root.with_extension(format!("{}.yml", random_suffix()));
        std::fs::write(&cfg, yaml).expect("write config");
        Self::spawn_retrying(
            "berth serve",
            root.to_owned(),
            false,
            Ready::V2,
            |port, _| {
                let mut cmd = Command::new(berth_bin());
                cmd.arg("serve")
                    .arg("--addr")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("-c")
                    .arg(&cfg)
                    .args(extra);
                env_remove_prefixed(&mut cmd, &["REGISTRY_"]);
                cmd
            },
        )
    }

    /// `berth serve --addr 127.0.0.1:PORT --root ROOT [--tls-cert --tls-key] ARGS...` (TLS with
    /// `pki`'s server certificate when given), with no
    /// `REGISTRY_*` or `RUST_LOG` from the test's environment; ready once it logs that it
    /// listens (with authentication on, `/v2/` does not answer 200).
    pub fn start_tls(root: &Path, pki: Option<&Pki>, args: &[&OsStr]) -> Server {
        let tls = pki.map(|p| (p.cert_file.clone(), p.key_file.clone()));
        let mut srv = Self::launch(tls.is_some(), |port| {
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
        });
        srv.root = root.to_owned();
        srv
    }

    /// Starts the command `make(port)` builds (it must make a `berth serve` listen on
    /// `127.0.0.1:port`, over TLS when `tls`) and waits until it logs that it listens.
    pub fn launch(tls: bool, make: impl Fn(u16) -> Command) -> Server {
        Self::spawn_retrying(
            "berth serve",
            PathBuf::new(),
            tls,
            Ready::Log("berth registry listening"),
            |port, _| make(port),
        )
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

    /// Starts the command `make(port, logdir)` builds on a free port and waits until it is
    /// `ready`; retries with another port when someone took the port in the meantime.
    pub(crate) fn spawn_retrying(
        what: &'static str,
        root: PathBuf,
        tls: bool,
        ready: Ready,
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
                tls,
                _garage: None,
                _postgres: None,
            };
            let until = Instant::now() + STARTUP;
            loop {
                let up = match ready {
                    Ready::V2 => answers_v2(port),
                    Ready::Log(line) => srv.log().contains(line),
                };
                if up {
                    srv._logdir = Some(logdir);
                    return srv;
                }
                if let Some(st) = srv.child.as_mut().unwrap().try_wait().unwrap() {
                    let log = tail_file(&srv.log, 30);
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
                        tail_file(&srv.log, 30)
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

    /// `http(s)://127.0.0.1:PORT` + path (or an absolute `Location` value unchanged).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            let scheme = if self.tls { "https" } else { "http" };
            format!("{scheme}://127.0.0.1:{}{path}", self.port)
        }
    }

    /// Panics when the process has exited.
    pub fn assert_running(&mut self) {
        let st = self.child.as_mut().expect("server").try_wait().unwrap();
        assert!(
            st.is_none(),
            "{} exited with {st:?}:\n{}",
            self.what,
            tail(&self.log(), 30)
        );
    }

    /// The process id; panics when it was stopped.
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

    /// `GET path`.
    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path).send()
    }

    /// `HEAD path`.
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

    /// A replica of a Berth fleet: a server on the Garage `bucket` (under `/registry`, redirects
    /// off) with its index in PostgreSQL at `dsn`, deletes enabled, `extra` appended to its
    /// config.yml; its storage helpers look at the bucket.
    pub fn start_replica(dir: &Path, g: &Garage, bucket: &str, dsn: &str, extra: &str) -> Server {
        let root = dir.join(format!("root-{}", random_suffix()));
        register_s3_root(&root, g.s3_config(bucket));
        let yaml = format!(
            "version: 0.1\nstorage:\n{}  redirect:\n    disable: true\ndatabase:\n  dsn: {dsn}\n{extra}",
            g.distribution_yaml(bucket, "/registry")
        );
        Server::start_with_config(&root, &yaml, &["--delete-enabled"])
    }

    /// Pushes an image as Distribution 2.8 accepts it (each blob by POST, then PUT with the
    /// digest) under `reference`; asserts 201.
    pub fn push_image_in_two_steps(&self, repo: &str, reference: &str, img: &Image) {
        for blob in std::iter::once(&img.config).chain(img.layers.iter()) {
            self.push_blob_in_two_steps(repo, blob);
        }
        let r = self.put_manifest(repo, reference, img.media_type, &img.manifest.bytes);
        assert_eq!(r.status, 201, "push manifest {repo}:{reference}: {r}");
    }

    /// Pushes a blob by POST, then PUT with the digest; asserts 201.
    pub fn push_blob_in_two_steps(&self, repo: &str, blob: &Blob) {
        let loc = self.start_upload(repo);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = Req::new(
            "PUT",
            format!("{}{sep}digest={}", self.on(&loc), blob.digest),
        )
        .body(blob.bytes.clone())
        .send();
        assert_eq!(r.status, 201, "push blob {} to {repo}: {r}", blob.digest);
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
                tail_file(&self.log, 60)
            );
        }
    }
}
