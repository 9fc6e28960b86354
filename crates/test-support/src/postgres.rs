//! A private PostgreSQL cluster for one test: Debian's `postgresql` binaries, a temporary data
//! folder, a free loopback port, trust authentication; stopped when dropped.
//!
//! PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user (its
//! folder handed to that user), as `../shared/NOTES.md` describes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::process::signal;

/// Whether `BERTH_TEST_DATABASE=postgres` asks the S3 test servers to keep their index in
/// PostgreSQL.
pub fn postgres_mode() -> bool {
    match std::env::var("BERTH_TEST_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("") | Ok("embedded") | Err(_) => false,
        Ok(other) => panic!("BERTH_TEST_DATABASE={other}: use postgres or embedded"),
    }
}

/// The folder of Debian's PostgreSQL server binaries (the newest installed version).
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: apt-get install postgresql (scripts/test does)")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().expect("no /usr/lib/postgresql/<version>").1
}

/// A running cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn as_root() -> bool {
    // The process's own /proc entry is owned by its user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A command of the cluster's binaries, as the `postgres` user when running as root.
fn pg_command(program: &str) -> Command {
    let path = bin_dir().join(program);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Postgres {
    /// Initializes and starts a cluster; panics with PostgreSQL's output if it cannot.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("berth-pg")
            .tempdir()
            .expect("temp dir");
        if as_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown of the PostgreSQL folder failed");
        }
        let out = pg_command("initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            dir,
            port: 0,
            child: None,
        };
        pg.launch(free_port());
        pg
    }

    fn launch(&mut self, port: u16) {
        self.port = port;
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        let child = pg_command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            // fsync off: a killed server loses nothing (the OS holds what it wrote), only a
            // power cut would. Commits stay synchronous, so a stop never drops acknowledged ones.
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(bin_dir().join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < until,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates a database and returns its DSN.
    pub fn create_database(&self, name: &str) -> String {
        let out = Command::new(bin_dir().join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.dsn(name)
    }

    /// The DSN of a database of this cluster.
    pub fn dsn(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL with `psql` and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", db, "-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server at once (SIGQUIT to the postmaster: the database goes away).
    pub fn stop(&mut self) {
        if let Some(pid) = postmaster_pid(&self.data()) {
            signal(pid, "QUIT");
        }
        if let Some(mut c) = self.child.take() {
            let _ = crate::process::wait_timeout(&mut c, Duration::from_secs(20));
            let _ = c.kill();
            let _ = c.wait();
        }
        let until = Instant::now() + Duration::from_secs(20);
        while self.data().join("postmaster.pid").exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.launch(port);
    }
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
