//! The Docker engine of the machine as a client of `berth serve` with access control:
//! `docker login`, `docker push`, `docker pull`, `docker logout`, once with htpasswd (the server
//! configured by a CNCF Distribution config.yml) and once with the built-in token issuer (the
//! engine follows the Bearer challenge to `/token` itself). Plain HTTP on 127.0.0.1, which the
//! engine treats as an insecure registry. Every docker command runs with a temporary
//! `DOCKER_CONFIG`, so the user's credentials are neither used nor changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_test_support::docker::require_docker;
use serde_json::Value;

use crate::authsupport::*;

/// A private Docker client configuration for one registry; logs out and removes the images it
/// made when dropped, even when the test fails.
struct Docker {
    config: tempfile::TempDir,
    registry: String,
    images: Vec<String>,
}

impl Docker {
    fn new(registry: &str) -> Docker {
        require_docker();
        Docker {
            config: tempfile::tempdir().unwrap(),
            registry: registry.to_owned(),
            images: Vec::new(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.config.path());
        c
    }

    /// Runs `docker ARGS`, without checking the status.
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run docker")
    }

    /// Runs `docker ARGS`, panicking when it fails; returns stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed with {}\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    }

    /// `docker login REGISTRY -u USER --password-stdin`.
    fn login(&self, user: &str, password: &str) -> Output {
        run_with_stdin(
            self.cmd().args([
                "login",
                &self.registry,
                "--username",
                user,
                "--password-stdin",
            ]),
            password.as_bytes(),
        )
    }

    /// The `auths` entry of the registry in the private config.json.
    fn stored_auth(&self) -> Option<Value> {
        let raw = std::fs::read(self.config.path().join("config.json")).ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        v["auths"].get(&self.registry).cloned()
    }

    /// `docker import` of a one-file tar as `REGISTRY/repo:tag`; returns the reference and the
    /// image ID.
    fn import(&mut self, dir: &Path, repo: &str, tag: &str) -> (String, String) {
        let img = TestImage::random();
        let tar = dir.join(format!("rootfs-{}.tar", random_hex(4)));
        std::fs::write(&tar, &img.layer_tar).unwrap();
        let reference = format!("{}/{repo}:{tag}", self.registry);
        self.images.push(reference.clone());
        self.ok(&["import", tar.to_str().unwrap(), &reference]);
        let id = self.image_id(&reference).expect("imported image");
        (reference, id)
    }

    fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.run(&["image", "inspect", "--format", "{{.Id}}", reference]);
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_owned())
    }

    /// `docker rmi` and a check that the image is gone locally.
    fn remove(&self, reference: &str) {
        self.ok(&["rmi", reference]);
        assert_eq!(self.image_id(reference), None, "{reference} is still there");
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let _ = self.run(&["logout", &self.registry]);
        for i in &self.images {
            let _ = self.run(&["rmi", "-f", i]);
        }
    }
}

/// Asserts that a docker command failed because of authentication or authorization.
fn assert_denied(out: &Output, what: &str) {
    eprintln!("{what}: docker said: {}", text(&out.stderr).trim());
    assert!(!out.status.success(), "{what}: docker succeeded");
    assert!(
        says_access_denied(&out.stderr),
        "{what}: docker failed for another reason: {}",
        text(&out.stderr)
    );
}

fn manifest_path(root: &Path, repo: &str, tag: &str) -> PathBuf {
    root.join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
    ))
}

#[test]
fn docker_login_push_pull_logout_with_htpasswd_from_a_config_yml() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let htpasswd = dir.path().join("htpasswd");
    let password = format!("pw-{}", random_hex(8));
    write_htpasswd(&htpasswd, &[("alice", &password)]);
    let cfg = dir.path().join("config.yml");
    let srv = Server::launch(false, |port| {
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: Server docker test\n    path: {}\n",
                root.display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let mut c = berth_cmd();
        c.arg("serve").arg("--config").arg(&cfg);
        c
    });
    let mut docker = Docker::new(&srv.host());

    // A wrong password: login fails, nothing is stored.
    let out = docker.login("alice", "wrong-password");
    assert_denied(&out, "docker login with a wrong password");
    assert_eq!(docker.stored_auth(), None);

    // Without logging in, a push is refused.
    let repo = format!("team/app-{}", random_hex(4));
    let (image, id) = docker.import(dir.path(), &repo, "1");
    let out = docker.run(&["push", &image]);
    assert_denied(&out, "docker push without login");
    assert!(!manifest_path(&root, &repo, "1").exists());

    // Login, push, remove, pull: the same image comes back.
    let out = docker.login("alice", &password);
    assert!(out.status.success(), "docker login: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Login Succeeded"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        docker.stored_auth().is_some(),
        "login stored no credentials"
    );
    docker.ok(&["push", &image]);
    assert!(
        manifest_path(&root, &repo, "1").exists(),
        "the tag was pushed"
    );
    let r = curl("GET", &srv.url(&format!("/v2/{repo}/tags/list")))
        .auth(&Auth::basic("alice", &password))
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["tags"], serde_json::json!(["1"]), "{r}");
    docker.remove(&image);
    docker.ok(&["pull", &image]);
    assert_eq!(docker.image_id(&image).as_deref(), Some(id.as_str()));

    // The audit log names the user.
    let log = srv.log();
    assert!(
        lines_of(&log, "berth::audit").iter().any(|l| {
            field(l, "user").as_deref() == Some("alice")
                && field(l, "repository").as_deref() == Some(repo.as_str())
                && field(l, "action").as_deref() == Some("push")
        }),
        "no audit line of alice's push in:\n{log}"
    );
    assert!(!log.contains(&password), "the password is in the log");

    // Logout: the credentials are gone and the registry refuses the pull again.
    docker.ok(&["logout", &srv.host()]);
    assert_eq!(docker.stored_auth(), None, "logout kept the credentials");
    docker.remove(&image);
    let out = docker.run(&["pull", &image]);
    assert_denied(&out, "docker pull after logout");
}

const ACCESS_YML: &str = r#"service: berth-docker-test
issuer: berth-docker-test
htpasswd: htpasswd
groups:
  pushers: [alice]
access:
  - who: group:pushers
    repos: "**"
    actions: [pull, push]
  - who: user:carol
    repos: "team/**"
    actions: [pull]
  - who: anonymous
    repos: "public/*"
    actions: [pull]
"#;

#[test]
fn docker_login_push_pull_logout_with_the_builtin_token_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let alice_pw = format!("alice-{}", random_hex(8));
    let carol_pw = format!("carol-{}", random_hex(8));
    write_htpasswd(
        &dir.path().join("htpasswd"),
        &[("alice", &alice_pw), ("carol", &carol_pw)],
    );
    let access = dir.path().join("access.yml");
    std::fs::write(&access, ACCESS_YML).unwrap();
    let srv = Server::start_tls(&root, None, &["--auth-config".as_ref(), access.as_os_str()]);
    let mut docker = Docker::new(&srv.host());

    // A wrong password: the token endpoint refuses it, login fails.
    let out = docker.login("alice", "wrong-password");
    assert_denied(&out, "docker login with a wrong password");
    assert_eq!(docker.stored_auth(), None);

    // alice (group pushers) logs in and pushes a team image and a public one.
    let out = docker.login("alice", &alice_pw);
    assert!(out.status.success(), "docker login: {}", text(&out.stderr));
    let team = format!("team/app-{}", random_hex(4));
    let (image, id) = docker.import(dir.path(), &team, "1");
    docker.ok(&["push", &image]);
    assert!(
        manifest_path(&root, &team, "1").exists(),
        "the tag was pushed"
    );
    let public = format!("public/tool-{}", random_hex(4));
    let (public_image, public_id) = docker.import(dir.path(), &public, "1");
    docker.ok(&["push", &public_image]);
    let log = srv.log();
    let issued_to_alice = lines_of(&log, "berth_auth::audit").into_iter().any(|l| {
        field(l, "event").as_deref() == Some("token_issued")
            && field(l, "user").as_deref() == Some("alice")
            && field(l, "granted").is_some_and(|g| g.contains(&format!("{team}:pull,push")))
    });
    assert!(
        issued_to_alice,
        "the engine did not get its push token from /token:\n{log}"
    );

    // carol may pull team/** but not push.
    let out = docker.login("carol", &carol_pw);
    assert!(out.status.success(), "docker login: {}", text(&out.stderr));
    docker.remove(&image);
    docker.ok(&["pull", &image]);
    assert_eq!(docker.image_id(&image).as_deref(), Some(id.as_str()));
    let (other, _) = docker.import(dir.path(), &team, "2");
    let out = docker.run(&["push", &other]);
    assert_denied(&out, "carol pushing");
    assert!(
        !manifest_path(&root, &team, "2").exists(),
        "carol's push stored a tag"
    );

    // Logged out: public/* pulls anonymously, team/** does not.
    docker.ok(&["logout", &srv.host()]);
    assert_eq!(docker.stored_auth(), None, "logout kept the credentials");
    docker.remove(&public_image);
    docker.ok(&["pull", &public_image]);
    assert_eq!(
        docker.image_id(&public_image).as_deref(),
        Some(public_id.as_str())
    );
    docker.remove(&image);
    let out = docker.run(&["pull", &image]);
    assert_denied(&out, "anonymous pull of a team image");

    let log = srv.log();
    for pw in [&alice_pw, &carol_pw] {
        assert!(!log.contains(pw.as_str()), "a password is in the log");
    }
}
