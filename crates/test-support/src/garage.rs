//! Real Garage nodes (the S3-compatible distributed store) on loopback, started from the
//! `garage` binary and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_s3::S3Config;

use crate::net::free_port;

/// The access key every test cluster has (Garage key ids are `GK` and 24 hex digits).
pub const ACCESS_KEY: &str = "GK31c2f218a2e44f485b94239e";
/// Its secret (64 hex digits).
pub const SECRET_KEY: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
const RPC_SECRET: &str = "4f1a6b2c9d8e7f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
/// Region every test node answers to.
pub const REGION: &str = "garage";

/// The `garage` binary: `$GARAGE_BIN`, else `garage` on `PATH`, else `~/.cargo/bin/garage`.
/// Panics with the command that installs it, so that no S3 test passes by being skipped.
pub fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("garage");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cargo/bin/garage");
    assert!(
        p.is_file(),
        "the S3 tests need Garage: `cargo install garage --locked` (scripts/test does this)"
    );
    p
}

/// One Garage node.
struct Node {
    config: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    child: Option<Child>,
}

/// A Garage cluster of one or more nodes, all in one temporary folder.
pub struct Garage {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl Garage {
    /// One node, replication factor 1.
    pub fn single() -> Garage {
        Garage::cluster(1)
    }

    /// `n` nodes in `n` zones, replication factor `n` (3 for the fault tests: any one node
    /// can be lost and reads and writes still reach a quorum).
    pub fn cluster(n: usize) -> Garage {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..n {
            let ndir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&ndir).expect("node dir");
            let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
            let config = ndir.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = {n}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{RPC_SECRET}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                    d = ndir.display()
                ),
            )
            .expect("write garage.toml");
            nodes.push(Node {
                config,
                s3_port,
                rpc_port,
                child: None,
            });
        }
        let mut g = Garage { nodes, dir };
        for i in 0..n {
            g.start_node(i);
        }
        let ids: Vec<String> = (0..n).map(|i| g.node_id(i)).collect();
        for (i, id) in ids.iter().enumerate().skip(1) {
            g.cli(
                0,
                &[
                    "node",
                    "connect",
                    &format!("{id}@127.0.0.1:{}", g.nodes[i].rpc_port),
                ],
            );
        }
        for (i, id) in ids.iter().enumerate() {
            g.cli(
                0,
                &[
                    "layout",
                    "assign",
                    "-z",
                    &format!("dc{i}"),
                    "-c",
                    "10G",
                    &id[..16],
                ],
            );
        }
        g.cli(0, &["layout", "apply", "--version", "1"]);
        g.cli(
            0,
            &[
                "key", "import", "-n", "berth", "--yes", ACCESS_KEY, SECRET_KEY,
            ],
        );
        g
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.config.with_file_name("garage.log")).expect("log");
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start garage server");
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", node.s3_port)).is_err() {
            assert!(Instant::now() < deadline, "garage node {i} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn node_id(&self, i: usize) -> String {
        let out = self.cli(i, &["node", "id", "-q"]);
        out.trim().split('@').next().expect("node id").to_owned()
    }

    /// Runs a `garage` admin command against node `i`, retrying while the cluster settles;
    /// returns its standard output.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(garage_bin())
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run garage");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Creates a bucket the test key may read, write and own.
    pub fn create_bucket(&self, name: &str) {
        self.cli(0, &["bucket", "create", name]);
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", name, "--key", "berth",
            ],
        );
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// Settings for Berth's S3 backend on `bucket` through node 0.
    pub fn s3_config(&self, bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            region: Some(REGION.into()),
            endpoint: Some(self.endpoint(0)),
            force_path_style: true,
            allow_http: true,
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(SECRET_KEY.into()),
            ..Default::default()
        }
    }

    /// A Distribution-style `storage.s3` section for `bucket` through node 0 (YAML, indented
    /// to sit under `storage:`).
    pub fn distribution_yaml(&self, bucket: &str, rootdirectory: &str) -> String {
        format!(
            "  s3:\n    region: {REGION}\n    regionendpoint: {}\n    forcepathstyle: true\n    secure: false\n    v4auth: true\n    bucket: {bucket}\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    rootdirectory: {rootdirectory}\n",
            self.endpoint(0)
        )
    }

    /// How many multipart uploads of `bucket` are neither completed nor aborted, from S3's
    /// ListMultipartUploads (asked with curl's SigV4 signing, not with the code under test).
    pub fn incomplete_uploads(&self, bucket: &str) -> usize {
        let out = Command::new("curl")
            .args(["-sSf", "--aws-sigv4", &format!("aws:amz:{REGION}:s3"), "--user"])
            .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
            // The SHA-256 of the empty body, which Garage wants named; `uploads=` (with `=`)
            // is how curl must spell the query for its signature to match.
            .args([
                "-H",
                "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ])
            .arg(format!("{}/{bucket}?uploads=", self.endpoint(0)))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "ListMultipartUploads failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .matches("<Upload>")
            .count()
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts node `i` after [`Garage::kill`].
    pub fn restart(&mut self, i: usize) {
        self.start_node(i);
    }

    /// Waits until node 0 sees every node connected again (after [`Garage::restart`]).
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.cli(0, &["status"]);
            if !st.to_ascii_lowercase().contains("failed") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "garage cluster not healthy: {st}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
