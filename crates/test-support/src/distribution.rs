//! CNCF Distribution (Debian's `docker-registry`, 2.8) on loopback: the reference registry
//! that Berth's behaviour and storage layout are compared with, and a peer for the client's
//! tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::free_port;
use crate::process::{env_remove_prefixed, on_path};
use crate::serve::{Ready, Server};

/// Launchers of Distribution as a [`Server`], sharing its request and storage helpers.
impl Server {
    /// Starts CNCF Distribution with `storage` (the YAML under `storage:`, indented two
    /// spaces), deletes enabled.
    pub fn start_distribution_storage(storage: &str) -> Server {
        Self::spawn_retrying(
            "docker-registry",
            PathBuf::new(),
            false,
            Ready::V2,
            |port, logdir| {
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
                // The AWS SDK in Distribution 2.8 panics when AWS_CA_BUNDLE is set (as it is on
                // these machines) together with its own HTTP transport.
                env_remove_prefixed(&mut cmd, &["REGISTRY_", "AWS_"]);
                cmd
            },
        )
    }

    /// Starts CNCF Distribution (`docker-registry serve`) over `root`, deletes enabled.
    pub fn start_distribution(root: &Path) -> Server {
        let root = root.to_owned();
        Self::spawn_retrying(
            "docker-registry",
            root.clone(),
            false,
            Ready::V2,
            |port, logdir| {
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
                env_remove_prefixed(&mut cmd, &["REGISTRY_"]);
                cmd
            },
        )
    }
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
            on_path("docker-registry"),
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
