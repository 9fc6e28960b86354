//! The `berth` client commands, run as a process against real registries on loopback:
//! Debian's docker-registry (plain and htpasswd), a bearer-token front proxy, and `berth serve`.
//! skopeo checks that pulled layouts are valid and that layouts it writes can be pushed.

use std::path::Path;
use std::process::Stdio;

use berth_client::{Client, Digest, Manifest};
use berth_test_support::{client::*, distribution::*, fault::*, net::*, process::*};
use tokio::io::AsyncWriteExt as _;

/// Output of one `berth` run.
struct Out {
    code: i32,
    raw: Vec<u8>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs `berth` with an isolated Docker config directory and no credential variables.
async fn berth_in(config: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env("DOCKER_CONFIG", config)
        .env_remove("BERTH_USERNAME")
        .env_remove("BERTH_PASSWORD")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run berth");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).await.unwrap();
        drop(s);
    }
    let out = child.wait_with_output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        raw: out.stdout.clone(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

struct Env {
    config: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            config: tempfile::tempdir().unwrap(),
        }
    }
    async fn run(&self, args: &[&str]) -> Out {
        berth_in(self.config.path(), args, None).await
    }
    async fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        berth_in(self.config.path(), args, Some(stdin)).await
    }
}

/// `berth serve` on a free port in a temp dir; killed on drop. This is the project's own
/// registry, used as one side of the cross-registry tests.
struct BerthServe {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl BerthServe {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .args(["serve", "--addr", &addr, "--root"])
                .arg(dir.path().join("data"))
                .arg("--delete-enabled")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run berth serve");
            for _ in 0..200 {
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return BerthServe {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("berth serve did not start");
    }
}

impl Drop for BerthServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lib_client(addr: &str) -> Client {
    Client::new(addr, opts(None)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_commands_and_exit_codes() {
    let reg = DockerRegistry::start(false);
    let c = lib_client(&reg.addr);
    let index = push_image(
        &c,
        "team/app",
        "v1",
        &["linux/amd64", "linux/arm64"],
        1,
        2000,
    )
    .await;
    let single = push_image(&c, "team/tool", "1.0", &["linux/amd64"], 2, 1000).await;
    for t in ["v2", "v3"] {
        c.put_manifest("team/app", t, &index).await.unwrap();
    }
    let env = Env::new();
    let r = reg.addr.as_str();

    assert_eq!(
        env.run(&["ping", r]).await.ok().stdout.trim(),
        format!("{r}: OK")
    );
    assert_eq!(
        env.run(&["catalog", r]).await.ok().stdout,
        "team/app\nteam/tool\n"
    );
    assert_eq!(
        env.run(&["catalog", r, "--limit", "1", "--json"])
            .await
            .ok()
            .json()["repositories"],
        serde_json::json!(["team/app"])
    );
    assert_eq!(
        env.run(&["search", r, "*tool"]).await.ok().stdout,
        "team/tool\n"
    );

    let app = format!("{r}/team/app");
    assert_eq!(env.run(&["tags", &app]).await.ok().stdout, "v1\nv2\nv3\n");
    assert_eq!(
        env.run(&["tags", &app, "--limit", "1", "--last", "v1"])
            .await
            .ok()
            .stdout,
        "v2\n"
    );
    let with = env
        .run(&["tags", &app, "--digests", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        with["tags"][2]["digest"],
        serde_json::json!(index.digest.to_string())
    );

    // manifest prints the raw bytes, exactly: their hash is the digest; --platform picks
    // from the index.
    let raw = env
        .run(&["manifest", &format!("{app}:v1")])
        .await
        .ok()
        .stdout;
    assert_eq!(raw.as_bytes(), &index.bytes[..]);
    assert_eq!(
        berth_test_support::data::digest_of(raw.as_bytes()),
        index.digest.to_string()
    );
    let arm = env
        .run(&[
            "manifest",
            &format!("{app}:v1"),
            "--platform",
            "linux/arm64",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        arm["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = env
        .run(&["config", &format!("{app}:v1"), "--platform", "linux/arm64"])
        .await
        .ok()
        .json();
    assert_eq!(config["architecture"], "arm64");

    let digest = env.run(&["digest", &format!("{app}:v2")]).await.ok().stdout;
    assert_eq!(digest.trim(), index.digest.to_string());

    // blob -o, verified; size = config + layers.
    let layer = single.parse().unwrap().layers[1].clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer.bin");
    env.run(&[
        "blob",
        &format!("{r}/team/tool@{}", layer.digest),
        "-o",
        file.to_str().unwrap(),
    ])
    .await
    .ok();
    assert_eq!(
        Digest::sha256_of(&std::fs::read(&file).unwrap()),
        layer.digest
    );
    let stdout_blob = env
        .run(&["blob", &format!("{r}/team/tool@{}", layer.digest)])
        .await
        .ok();
    assert_eq!(Digest::sha256_of(&stdout_blob.raw), layer.digest);
    let size = env
        .run(&["size", &format!("{r}/team/tool:1.0"), "--json"])
        .await
        .ok()
        .json();
    let p = single.parse().unwrap();
    let want = p.config.unwrap().size + p.layers.iter().map(|l| l.size).sum::<u64>();
    assert_eq!(size["images"][0]["total"], serde_json::json!(want));
    let per_platform = env.run(&["size", &format!("{app}:v1")]).await.ok().stdout;
    assert_eq!(per_platform.lines().count(), 2, "{per_platform}");

    // Exit codes: not found 3, usage 2, unreachable 5.
    let missing = env.run(&["manifest", &format!("{app}:nope")]).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("not found") && missing.stderr.contains("hint"),
        "{}",
        missing.stderr
    );
    let lines: Vec<&str> = missing.stderr.trim().lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
        "one error line, then the hint on its own line: {}",
        missing.stderr
    );
    assert_eq!(env.run(&["manifest", "Bad//Ref"]).await.code, 2);
    assert_eq!(
        env.run(&["blob", &format!("{app}:v1")]).await.code,
        2,
        "blob needs a digest"
    );
    assert_eq!(env.run(&["tags"]).await.code, 2, "clap usage error");
    assert_eq!(
        env.run(&["ping", &format!("127.0.0.1:{}", free_port())])
            .await
            .code,
        5
    );
    assert!(
        env.run(&["tags", "--help"])
            .await
            .ok()
            .stdout
            .contains("Exit codes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_between_registries_keeps_digests() {
    let a = DockerRegistry::start(false);
    let b = DockerRegistry::start(false);
    let served = BerthServe::start();
    let ca = lib_client(&a.addr);
    let index = push_image(
        &ca,
        "src",
        "v1",
        &["linux/amd64", "linux/arm64", "linux/s390x"],
        2,
        30_000,
    )
    .await;
    let env = Env::new();
    let src = format!("{}/src:v1", a.addr);

    // Whole index, destination tag taken from the source.
    let rep = env
        .run(&["cp", &src, &format!("{}/dst", b.addr), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(rep["digest"], serde_json::json!(index.digest.to_string()));
    assert_eq!(rep["manifests"], 4);
    let d = env
        .run(&["digest", &format!("{}/dst:v1", b.addr)])
        .await
        .ok()
        .stdout;
    assert_eq!(d.trim(), index.digest.to_string());
    // Again: nothing to move.
    let again = env
        .run(&["cp", &src, &format!("{}/dst:v1", b.addr), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(again["blobs_copied"], 0);

    // One platform; a subset.
    env.run(&[
        "cp",
        &src,
        &format!("{}/one:arm", b.addr),
        "--platform",
        "linux/arm64",
    ])
    .await
    .ok();
    let m = env
        .run(&["manifest", &format!("{}/one:arm", b.addr), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    env.run(&[
        "cp",
        &src,
        &format!("{}/sub:two", b.addr),
        "--platform",
        "linux/arm64",
        "--platform",
        "linux/s390x",
    ])
    .await
    .ok();
    let sub = env
        .run(&["manifest", &format!("{}/sub:two", b.addr), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(sub["manifest"]["manifests"].as_array().unwrap().len(), 2);

    // berth serve on one side, then back to docker-registry, chunked this time.
    env.run(&["cp", &src, &format!("{}/mid:v1", served.addr)])
        .await
        .ok();
    env.run(&[
        "cp",
        &format!("{}/mid:v1", served.addr),
        &format!("{}/back:v1", b.addr),
        "--chunked",
        "--chunk-size",
        "8K",
    ])
    .await
    .ok();
    let back = env
        .run(&["digest", &format!("{}/back:v1", b.addr)])
        .await
        .ok()
        .stdout;
    assert_eq!(back.trim(), index.digest.to_string());
    let mid = env
        .run(&["digest", &format!("{}/mid:v1", served.addr)])
        .await
        .ok()
        .stdout;
    assert_eq!(mid.trim(), index.digest.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_delete() {
    let reg = DockerRegistry::start(false);
    let c = lib_client(&reg.addr);
    let oci = push_image(&c, "app", "v1", &["linux/amd64"], 1, 100).await;
    // A Docker schema 2 manifest: tagging must keep its bytes and media type.
    let docker_bytes = String::from_utf8(oci.bytes.to_vec())
        .unwrap()
        .replace(
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .replace(
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.container.image.v1+json",
        )
        .replace(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        );
    let docker = Manifest::from_bytes(docker_bytes.into_bytes(), None).unwrap();
    c.put_manifest("app", "docker", &docker).await.unwrap();
    let env = Env::new();
    let r = reg.addr.as_str();

    env.run(&["tag", &format!("{r}/app:docker"), "docker2"])
        .await
        .ok();
    let t = env
        .run(&["manifest", &format!("{r}/app:docker2"), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        t["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(t["digest"], serde_json::json!(docker.digest.to_string()));
    env.run(&["tag", &format!("{r}/app:v1"), &format!("{r}/other:copied")])
        .await
        .ok();
    assert_eq!(
        env.run(&["digest", &format!("{r}/other:copied")])
            .await
            .ok()
            .stdout
            .trim(),
        oci.digest.to_string()
    );
    assert_eq!(
        env.run(&["tag", &format!("{r}/app:v1"), "127.0.0.1:1/x:y"])
            .await
            .code,
        2,
        "tag across registries"
    );

    // Distribution 2.8 cannot delete a tag alone: refuse clearly, delete nothing.
    let rm = env.run(&["rm", &format!("{r}/app:docker2")]).await;
    assert_eq!(rm.code, 1);
    assert!(
        rm.stderr.contains("only deletes manifests by digest") && rm.stderr.contains("docker"),
        "{}",
        rm.stderr
    );
    env.run(&["digest", &format!("{r}/app:docker2")]).await.ok();
    // By digest it works.
    env.run(&["rm", &format!("{r}/app@{}", docker.digest)])
        .await
        .ok();
    assert_eq!(
        env.run(&["digest", &format!("{r}/app:docker2")]).await.code,
        3
    );

    assert_eq!(
        env.run(&["rm-repo", &format!("{r}/app")]).await.code,
        2,
        "needs --yes"
    );
    let out = env
        .run(&["rm-repo", &format!("{r}/app"), "--yes", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(out["deletedManifests"].as_array().unwrap().len(), 1);
    assert_eq!(env.run(&["digest", &format!("{r}/app:v1")]).await.code, 3);
    // The other repository still has its copy.
    env.run(&["digest", &format!("{r}/other:copied")])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_deletes_only_the_tag_on_berth_serve() {
    let served = BerthServe::start();
    let c = lib_client(&served.addr);
    let m = push_image(&c, "app", "v1", &["linux/amd64"], 1, 100).await;
    c.put_manifest("app", "v2", &m).await.unwrap();
    let env = Env::new();
    let r = served.addr.as_str();
    env.run(&["rm", &format!("{r}/app:v2")]).await.ok();
    assert_eq!(env.run(&["digest", &format!("{r}/app:v2")]).await.code, 3);
    assert_eq!(
        env.run(&["digest", &format!("{r}/app:v1")])
            .await
            .ok()
            .stdout
            .trim(),
        m.digest.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_push_interoperate_with_skopeo() {
    assert!(
        on_path("skopeo"),
        "skopeo is not installed: apt-get install -y skopeo"
    );
    let a = DockerRegistry::start(false);
    let b = DockerRegistry::start(false);
    let ca = lib_client(&a.addr);
    let index = push_image(&ca, "app", "v1", &["linux/amd64", "linux/arm64"], 1, 4000).await;
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let l = layout.to_str().unwrap();

    env.run(&["pull", &format!("{}/app:v1", a.addr), l])
        .await
        .ok();
    // skopeo reads berth's layout.
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{l}:v1")])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert_eq!(Digest::sha256_of(&inspect.stdout), index.digest);
    let copy = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{l}:v1"))
        .arg(format!("docker://{}/viaskopeo:v1", b.addr))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    assert_eq!(
        env.run(&["digest", &format!("{}/viaskopeo:v1", b.addr)])
            .await
            .ok()
            .stdout
            .trim(),
        index.digest.to_string()
    );

    // berth pushes a layout skopeo wrote.
    let written = dir.path().join("skopeo-layout");
    let w = written.to_str().unwrap();
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{}/app:v1", a.addr))
        .arg(format!("oci:{w}:skopeo"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = env
        .run(&["push", w, &format!("{}/pushed:v7", b.addr), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(rep["digest"], serde_json::json!(index.digest.to_string()));
    assert_eq!(
        env.run(&["digest", &format!("{}/pushed:v7", b.addr)])
            .await
            .ok()
            .stdout
            .trim(),
        index.digest.to_string()
    );
    // Naming a missing image in the layout is a not-found.
    assert_eq!(
        env.run(&[
            "push",
            w,
            &format!("{}/pushed:v8", b.addr),
            "--name",
            "nope"
        ])
        .await
        .code,
        3
    );
    // Pull of one platform.
    env.run(&[
        "pull",
        &format!("{}/app:v1", a.addr),
        l,
        "--name",
        "arm",
        "--platform",
        "linux/arm64",
    ])
    .await
    .ok();
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_logout_with_htpasswd() {
    let reg = DockerRegistry::start_htpasswd("alice", "pw1");
    let c = Client::new(&reg.addr, opts(Some(("alice", "pw1")))).unwrap();
    push_image(&c, "secret", "v1", &["linux/amd64"], 1, 10).await;
    let env = Env::new();
    let r = reg.addr.as_str();
    let repo = format!("{r}/secret");

    let anon = env.run(&["tags", &repo]).await;
    assert_eq!(anon.code, 4, "{}", anon.stderr);
    assert!(
        anon.stderr.contains("berth login"),
        "says what to do: {}",
        anon.stderr
    );
    assert_eq!(
        env.run(&["login", r, "--creds", "alice:wrong"]).await.code,
        4
    );
    assert!(
        !env.config.path().join("config.json").exists(),
        "nothing saved on failure"
    );
    env.run_stdin(&["login", r, "--username", "alice"], "pw1\n")
        .await
        .ok();
    let saved = std::fs::read_to_string(env.config.path().join("config.json")).unwrap();
    assert!(saved.contains(r) && !saved.contains("pw1"), "{saved}");
    assert_eq!(env.run(&["tags", &repo]).await.ok().stdout, "v1\n");
    assert_eq!(
        env.run(&["tags", &repo, "--creds", "alice:pw1"])
            .await
            .ok()
            .stdout,
        "v1\n"
    );
    env.run(&["logout", r]).await.ok();
    assert_eq!(env.run(&["tags", &repo]).await.code, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_registry_and_corrupt_source() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, Some(("tok", "en"))).await;
    let plain = DockerRegistry::start(false);
    let c = Client::new(&proxy.addr, opts(Some(("tok", "en")))).unwrap();
    let index = push_image(
        &c,
        "b/app",
        "v1",
        &["linux/amd64", "linux/arm64"],
        1,
        20_000,
    )
    .await;
    let env = Env::new();
    let p = proxy.addr.as_str();

    assert_eq!(
        env.run(&["tags", &format!("{p}/b/app"), "--creds", "tok:en"])
            .await
            .ok()
            .stdout,
        "v1\n"
    );
    assert_eq!(env.run(&["tags", &format!("{p}/b/app")]).await.code, 4);
    // Tokens expire mid-copy: refreshed, the copy goes on.
    proxy.faults(|f| f.token_max_uses = Some(2));
    let rep = env
        .run(&[
            "cp",
            &format!("{p}/b/app:v1"),
            &format!("{}/copy:v1", plain.addr),
            "--src-creds",
            "tok:en",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(rep["digest"], serde_json::json!(index.digest.to_string()));
    // A tag via mount on the token registry.
    env.run(&[
        "tag",
        &format!("{p}/b/app:v1"),
        &format!("{p}/c/app:v1"),
        "--creds",
        "tok:en",
    ])
    .await
    .ok();
    proxy.faults(|f| f.token_max_uses = None);

    // A corrupt blob at the source: the copy fails and nothing is tagged.
    let victim = all_blobs(&c, "b/app", &index).await.pop().unwrap();
    proxy.faults(|f| f.corrupt_blob = Some(victim.to_string()));
    let bad = env
        .run(&[
            "cp",
            &format!("{p}/b/app:v1"),
            &format!("{}/bad:v1", plain.addr),
            "--src-creds",
            "tok:en",
        ])
        .await;
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("digest mismatch"), "{}", bad.stderr);
    assert_eq!(
        env.run(&["digest", &format!("{}/bad:v1", plain.addr)])
            .await
            .code,
        3
    );

    // A server answering HTML.
    proxy.faults(|f| f.html = true);
    let html = env.run(&["ping", p]).await;
    assert_eq!(html.code, 1);
    assert!(html.stderr.contains("registry"), "{}", html.stderr);
}
