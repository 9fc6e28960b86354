//! `berth push-layer`, `append` and `mutate` end to end: folders and archives pushed to
//! `berth serve` and to CNCF Distribution, pulled back with skopeo and unpacked with umoci.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_oci::media_type::*;
use berth_test_support::{
    data::*, fault::*, image::*, process::*, serve::*, skopeo::*, storage::*,
};
use serde_json::Value;

const EPOCH: &str = "1700000000";

fn berth(args: &[&str]) -> Output {
    berth_env(args, &[])
}

fn berth_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("DOCKER_CONFIG", "/nonexistent-berth-test")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

#[track_caller]
fn berth_ok(args: &[&str]) -> String {
    let out = berth(args);
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The digest printed by a build command (`pushed NAME@sha256:...`).
fn pushed_digest(stdout: &str) -> String {
    stdout
        .trim()
        .rsplit('@')
        .next()
        .expect("NAME@DIGEST")
        .to_owned()
}

fn serve() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("root"), &[]);
    (dir, srv)
}

fn inspect(srv: &Server, reference: &str, extra: &[&str]) -> Value {
    let r = format!("docker://{}/{reference}", srv.host());
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&r);
    serde_json::from_slice(&skopeo_ok(&args)).unwrap()
}

fn raw_manifest(srv: &Server, reference: &str) -> Value {
    inspect(srv, reference, &["--raw"])
}

/// Pulls with skopeo into an OCI layout and unpacks it rootless with umoci; returns the rootfs.
fn pull_and_unpack(srv: &Server, reference: &str, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let src = format!("docker://{}/{reference}", srv.host());
    let dst = format!("oci:{}:img", layout.display());
    skopeo_ok(&["copy", "-q", "--src-tls-verify=false", &src, &dst]);
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:img", layout.display()))
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// Entries of a gzip layer blob as (path, uid, gid, mode, kind, link target).
fn layer_entries(blob: &Path) -> BTreeMap<String, (u64, u64, u32, char, String)> {
    let f = std::fs::File::open(blob).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Regular => 'f',
            _ => '?',
        };
        let link = e
            .link_name()
            .unwrap()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(
            e.path().unwrap().to_string_lossy().into_owned(),
            (
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mode().unwrap(),
                kind,
                link,
            ),
        );
    }
    out
}

fn write(path: &Path, content: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A rootfs with the cases users hit: modes, links, an empty dir, a long name, a link out.
fn sample_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    write(&root.join("usr/bin/app"), b"#!/bin/sh\necho app\n", 0o755);
    write(&root.join("etc/app/secret.conf"), b"key=1\n", 0o600);
    write(&root.join("etc/app/app.conf"), b"mode=prod\n", 0o644);
    std::fs::hard_link(root.join("usr/bin/app"), root.join("usr/bin/app-hardlink")).unwrap();
    symlink("app", root.join("usr/bin/app-link")).unwrap();
    symlink("/etc/passwd", root.join("etc/outside-link")).unwrap();
    symlink("../../../../../../tmp", root.join("etc/escape-link")).unwrap();
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    let long = "d".repeat(60) + "/" + &"f".repeat(120) + ".txt";
    write(&root.join("opt").join(long), b"long\n", 0o644);
    root
}

#[test]
fn push_layer_folder_pulls_back_exactly_with_skopeo_and_umoci() {
    let (dir, srv) = serve();
    let root = sample_rootfs(dir.path());
    let cfg = dir.path().join("image.yaml");
    std::fs::write(
        &cfg,
        "config:\n  Env: [\"GREETING=${TEST_GREETING}\", 'LITERAL=$HOME']\n  WorkingDir: /srv\n  Labels:\n    tier: \"\"\n",
    )
    .unwrap();
    let out = berth_env(
        &[
            "push-layer",
            root.to_str().unwrap(),
            &format!("{}/team/app:v1", srv.host()),
            "--owner",
            "1000:1000",
            "--config",
            cfg.to_str().unwrap(),
            "--env",
            "MODE=prod",
            "--label",
            "team=build",
            "--entrypoint",
            r#"["/usr/bin/app","--serve"]"#,
            "--expose",
            "8080",
        ],
        &[("TEST_GREETING", "hello")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = pushed_digest(&String::from_utf8_lossy(&out.stdout));

    let work = tempfile::tempdir().unwrap();
    let rootfs = pull_and_unpack(&srv, "team/app:v1", work.path());
    for (rel, mode) in [
        ("usr/bin/app", 0o755),
        ("etc/app/secret.conf", 0o600),
        ("etc/app/app.conf", 0o644),
    ] {
        let src = std::fs::read(root.join(rel)).unwrap();
        assert_eq!(std::fs::read(rootfs.join(rel)).unwrap(), src, "{rel}");
        let m = std::fs::metadata(rootfs.join(rel)).unwrap().mode() & 0o7777;
        assert_eq!(m, mode, "mode of {rel}");
    }
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/bin/app-link")).unwrap(),
        Path::new("app")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/outside-link")).unwrap(),
        Path::new("/etc/passwd"),
        "a link pointing outside is kept as a link"
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("usr/bin/app-hardlink"))
            .unwrap()
            .ino(),
        std::fs::metadata(rootfs.join("usr/bin/app")).unwrap().ino(),
        "hard links stay hard links"
    );
    assert!(rootfs.join("var/empty").is_dir());
    let long = "d".repeat(60) + "/" + &"f".repeat(120) + ".txt";
    assert_eq!(
        std::fs::read(rootfs.join("opt").join(&long)).unwrap(),
        b"long\n"
    );

    // Owners are in the layer as given (umoci --rootless maps them to the caller).
    let manifest = raw_manifest(&srv, "team/app:v1");
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let entries = layer_entries(&blob_path(&srv.root, &layer_digest));
    assert!(
        entries.values().all(|e| e.0 == 1000 && e.1 == 1000),
        "{entries:?}"
    );
    assert_eq!(entries["usr/bin/app-link"].3, 'l');
    assert_eq!(entries["usr/bin/app-hardlink"].3, 'h');
    let names: Vec<&String> = entries.keys().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    let config = inspect(&srv, "team/app:v1", &["--config"]);
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        serde_json::json!(["GREETING=hello", "LITERAL=$HOME", "MODE=prod"])
    );
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/bin/app", "--serve"])
    );
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Labels"]["team"], "build");
    assert_eq!(c["Labels"]["tier"], "");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        inspect(&srv, "team/app:v1", &[])["Digest"]
            .as_str()
            .unwrap(),
        digest
    );
}

#[test]
fn the_same_folder_twice_gives_the_same_digests() {
    let (dir, srv) = serve();
    let root = sample_rootfs(dir.path());
    let a = berth_ok(&[
        "push-layer",
        root.to_str().unwrap(),
        &format!("{}/r:a", srv.host()),
    ]);
    let b = berth_ok(&[
        "push-layer",
        root.to_str().unwrap(),
        &format!("{}/r:b", srv.host()),
    ]);
    assert_eq!(pushed_digest(&a), pushed_digest(&b));
    // A zstd layer is a different blob, but also reproducible.
    let z1 = berth_ok(&[
        "push-layer",
        "--compression",
        "zstd",
        root.to_str().unwrap(),
        &format!("{}/r:z1", srv.host()),
    ]);
    let z2 = berth_ok(&[
        "push-layer",
        "--compression",
        "zstd",
        root.to_str().unwrap(),
        &format!("{}/r:z2", srv.host()),
    ]);
    assert_eq!(pushed_digest(&z1), pushed_digest(&z2));
    assert_ne!(pushed_digest(&a), pushed_digest(&z1));
    let m = raw_manifest(&srv, "r:z1");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn path_filters_and_u2g_select_and_shape_the_layer() {
    let (dir, srv) = serve();
    let root = sample_rootfs(dir.path());
    berth_ok(&[
        "push-layer",
        "--u2g",
        root.to_str().unwrap(),
        &format!("{}/filtered:v1", srv.host()),
        "usr/bin/*",
        "etc/app/secret.conf",
    ]);
    let m = raw_manifest(&srv, "filtered:v1");
    let entries = layer_entries(&blob_path(
        &srv.root,
        m["layers"][0]["digest"].as_str().unwrap(),
    ));
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert!(names.contains(&"usr/bin/app"), "{names:?}");
    assert!(names.contains(&"etc/app/secret.conf"), "{names:?}");
    assert!(!names.contains(&"etc/app/app.conf"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("opt")), "{names:?}");
    assert_eq!(
        entries["etc/app/secret.conf"].2 & 0o777,
        0o660,
        "u2g copies owner bits"
    );
}

#[test]
fn archives_are_pushed_as_they_are_to_distribution_and_berth() {
    let dir = tempfile::tempdir().unwrap();
    let root = sample_rootfs(dir.path());
    let tgz = dir.path().join("layer.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&root)
            .arg("."),
    );
    let tzst = dir.path().join("layer.tar.zst");
    run_ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-cf")
            .arg(&tzst)
            .arg("-C")
            .arg(&root)
            .arg("."),
    );
    let dist = Server::start_distribution(&dir.path().join("dist"));
    let (_d2, srv) = serve();
    for (target, file, tag) in [
        (&dist, &tgz, "gz"),
        (&srv, &tzst, "zst"),
        (&srv, &tgz, "gz"),
    ] {
        berth_ok(&[
            "push-layer",
            "--archive",
            file.to_str().unwrap(),
            &format!("{}/archived:{tag}", target.host()),
        ]);
        let m = raw_manifest(target, &format!("archived:{tag}"));
        assert_eq!(
            m["layers"][0]["digest"].as_str().unwrap(),
            digest_of(&std::fs::read(file).unwrap()),
            "the archive is the blob, byte for byte"
        );
        // diff_id is the digest of the uncompressed tar.
        let mut plain = Vec::new();
        let out = Command::new(if tag == "gz" { "gzip" } else { "zstd" })
            .args(["-dc"])
            .arg(file)
            .output()
            .unwrap();
        plain.extend_from_slice(&out.stdout);
        let config = inspect(target, &format!("archived:{tag}"), &["--config"]);
        assert_eq!(config["rootfs"]["diff_ids"][0], digest_of(&plain));
    }
    // append on Distribution: the base layer is mounted across repositories, not copied.
    let add = dir.path().join("add");
    write(&add.join("added.txt"), b"added\n", 0o644);
    let out = berth_ok(&[
        "append",
        &format!("{}/archived:gz", dist.host()),
        &format!("{}/appended:v1", dist.host()),
        "--rootfs",
        add.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["base_blobs"]["mounted"], 1, "{report}");
    let work = tempfile::tempdir().unwrap();
    let rootfs = pull_and_unpack(&dist, "appended:v1", work.path());
    assert_eq!(std::fs::read(rootfs.join("added.txt")).unwrap(), b"added\n");
    assert_eq!(
        std::fs::read(rootfs.join("etc/app/app.conf")).unwrap(),
        b"mode=prod\n"
    );
}

#[test]
fn append_mounts_base_layers_without_downloading_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let base = oci_image("amd64", 3, 200_000);
    srv.push_image("library/base", "3.0", &base);
    let add = dir.path().join("add");
    write(&add.join("app/bin/tool"), b"tool\n", 0o755);
    let log_before = srv.log().len();

    let out = berth_ok(&[
        "append",
        &format!("{}/library/base:3.0", srv.host()),
        &format!("{}/team/app:1", srv.host()),
        "--rootfs",
        add.to_str().unwrap(),
        "--remove",
        "/layer0/name",
        "--label",
        "stage=appended",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    let digest = report["digest"].as_str().unwrap().to_owned();
    assert_eq!(report["base_blobs"]["mounted"], 3, "{report}");
    assert_eq!(report["base_blobs"]["copied"], 0, "{report}");
    let log = srv.log()[log_before..].to_owned();
    for l in &base.layers {
        assert!(
            !log.lines()
                .any(|line| line.contains("method=GET") && line.contains(l.hex())),
            "base layer {} was downloaded:\n{log}",
            l.digest
        );
    }

    let info = inspect(&srv, "team/app:1", &[]);
    assert_eq!(info["Digest"], digest.as_str());
    let layers: Vec<&str> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 4);
    for (i, l) in base.layers.iter().enumerate() {
        assert_eq!(layers[i], l.digest, "base layers untouched and in order");
    }
    let config = inspect(&srv, "team/app:1", &["--config"]);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["PATH=/usr/bin"])
    );
    assert_eq!(config["config"]["Labels"]["stage"], "appended");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.base.digest"],
        base.manifest.digest
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.base.name"],
        format!("{}/library/base:3.0", srv.host())
    );
    let history = config["history"].as_array().unwrap();
    assert!(
        history.last().unwrap()["created_by"]
            .as_str()
            .unwrap()
            .contains("append")
    );

    // The result unpacks: the base's files, the new file, and the whiteout applied.
    let work = tempfile::tempdir().unwrap();
    let rootfs = pull_and_unpack(&srv, "team/app:1", work.path());
    assert_eq!(
        std::fs::read(rootfs.join("app/bin/tool")).unwrap(),
        b"tool\n"
    );
    assert!(rootfs.join("layer1/name").exists());
    assert!(
        !rootfs.join("layer0/name").exists(),
        "the whiteout hides it"
    );
    assert!(rootfs.join("layer0/data-amd64.bin").exists());
}

#[test]
fn append_reads_a_tar_on_stdin_and_keeps_a_docker_base_docker() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let base = docker_image("amd64", 2, 1000);
    srv.push_image("dock", "base", &base);
    let add = dir.path().join("add");
    write(&add.join("hello.txt"), b"hi\n", 0o644);
    let tar = Command::new("tar")
        .arg("cf")
        .arg("-")
        .arg("-C")
        .arg(&add)
        .arg("hello.txt")
        .output()
        .unwrap()
        .stdout;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "append",
            &format!("{}/dock:base", srv.host()),
            &format!("{}/dock:stdin", srv.host()),
        ])
        .env("DOCKER_CONFIG", "/nonexistent-berth-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = raw_manifest(&srv, "dock:stdin");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["layers"][2]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let config = inspect(&srv, "dock:stdin", &["--config"]);
    assert_eq!(config["rootfs"]["diff_ids"][2], digest_of(&tar));

    // --format oci converts the whole manifest.
    berth_ok(&[
        "mutate",
        &format!("{}/dock:stdin", srv.host()),
        &format!("{}/dock:oci", srv.host()),
        "--format",
        "oci",
        "--cmd",
        "/bin/sh -c true",
    ]);
    let m = raw_manifest(&srv, "dock:oci");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert!(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip")
    );
    let config = inspect(&srv, "dock:oci", &["--config"]);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "true"])
    );
    assert_eq!(
        config["history"].as_array().unwrap().last().unwrap()["empty_layer"],
        true
    );
}

#[test]
fn append_to_a_multi_arch_base_rebuilds_every_platform_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let amd = oci_image("amd64", 2, 5000);
    let arm = oci_image("arm64", 2, 5000);
    srv.push_image("multi", &amd.manifest.digest, &amd);
    srv.push_image("multi", &arm.manifest.digest, &arm);
    let index = index_of(&[&amd, &arm], OCI_INDEX);
    let r = srv.put_manifest("multi", "base", OCI_INDEX, &index.bytes);
    assert_eq!(r.status, 201, "{r}");
    let add = dir.path().join("add");
    write(&add.join("etc/extra"), b"extra\n", 0o644);
    let log_before = srv.log().len();

    berth_ok(&[
        "append",
        &format!("{}/multi:base", srv.host()),
        &format!("{}/multi-new:all", srv.host()),
        "--rootfs",
        add.to_str().unwrap(),
    ]);
    let log = srv.log()[log_before..].to_owned();
    for l in amd.layers.iter().chain(arm.layers.iter()) {
        assert!(
            !log.lines()
                .any(|line| line.contains("method=GET") && line.contains(l.hex())),
            "base layer {} was downloaded",
            l.digest
        );
    }
    let idx = raw_manifest(&srv, "multi-new:all");
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let children = idx["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    let mut new_layer = None;
    for (child, base) in children.iter().zip([&amd, &arm]) {
        assert_eq!(child["platform"]["architecture"], base.arch.as_str());
        assert_ne!(child["digest"], base.manifest.digest.as_str());
        let m = raw_manifest(
            &srv,
            &format!("multi-new@{}", child["digest"].as_str().unwrap()),
        );
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[0]["digest"], base.layers[0].digest.as_str());
        assert_eq!(layers[1]["digest"], base.layers[1].digest.as_str());
        // One layer, built and uploaded once, on top of every platform.
        let top = layers[2]["digest"].clone();
        if let Some(prev) = &new_layer {
            assert_eq!(&top, prev);
        }
        new_layer = Some(top);
    }
    // skopeo picks the arm64 image and sees the new layer on top.
    let info = inspect(&srv, "multi-new:all", &["--override-arch", "arm64"]);
    assert_eq!(info["Layers"][2], new_layer.clone().unwrap());

    // --platform: only arm64 gets the layer; amd64 is kept as it was.
    berth_ok(&[
        "append",
        &format!("{}/multi:base", srv.host()),
        &format!("{}/multi-new:arm", srv.host()),
        "--rootfs",
        add.to_str().unwrap(),
        "--platform",
        "linux/arm64",
    ]);
    let idx = raw_manifest(&srv, "multi-new:arm");
    assert_eq!(idx["manifests"][0]["digest"], amd.manifest.digest.as_str());
    assert_ne!(idx["manifests"][1]["digest"], arm.manifest.digest.as_str());
}

#[test]
fn bad_input_fails_clearly_and_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let host = srv.host();

    // A rootfs that does not exist.
    let out = berth(&[
        "push-layer",
        "/nonexistent/rootfs",
        &format!("{host}/bad:v1"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/rootfs"), "{err}");

    // A truncated archive: the upload is abandoned before any manifest.
    let root = sample_rootfs(dir.path());
    let tgz = dir.path().join("layer.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&root)
            .arg("."),
    );
    let bytes = std::fs::read(&tgz).unwrap();
    let cut = dir.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = berth(&[
        "push-layer",
        "--archive",
        cut.to_str().unwrap(),
        &format!("{host}/bad:v1"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not pushed"), "{err}");
    // A file that is not an archive at all.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, random_bytes(10_000)).unwrap();
    let out = berth(&[
        "push-layer",
        "--archive",
        junk.to_str().unwrap(),
        &format!("{host}/bad:v1"),
    ]);
    assert_eq!(out.status.code(), Some(1));

    // A config file with a syntax error names the line and column, before any upload.
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "config:\n  Env: [unclosed\n").unwrap();
    let out = berth(&[
        "push-layer",
        root.to_str().unwrap(),
        &format!("{host}/bad:v1"),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line"), "{err}");
    assert!(err.contains("bad.yaml"), "{err}");

    // A base that does not exist.
    let out = berth(&[
        "append",
        &format!("{host}/nothing:here"),
        &format!("{host}/bad:v1"),
        "--rootfs",
        root.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad flags.
    let out = berth(&[
        "push-layer",
        root.to_str().unwrap(),
        &format!("{host}/bad:v1"),
        "--owner",
        "root",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // Nothing was written: no tag, and no manifest in the store.
    let r = srv.get("/v2/bad/tags/list");
    assert_eq!(r.status, 404, "{r}");
    let manifests = srv
        .root
        .join("docker/registry/v2/repositories/bad/_manifests");
    assert!(!manifests.exists(), "no manifest was stored");
}

#[test]
fn non_utf8_names_and_special_names_survive() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"caf\xe9.txt")), b"latin1").unwrap();
    std::fs::write(root.join("with space & quote'.txt"), b"x").unwrap();
    std::fs::write(root.join("ünïcødé.txt"), b"u").unwrap();
    berth_ok(&[
        "push-layer",
        root.to_str().unwrap(),
        &format!("{}/names:v1", srv.host()),
    ]);
    let m = raw_manifest(&srv, "names:v1");
    let blob = blob_path(&srv.root, m["layers"][0]["digest"].as_str().unwrap());
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(blob).unwrap(),
    ));
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        names.push(e.path_bytes().into_owned());
    }
    assert!(names.contains(&b"caf\xe9.txt".to_vec()), "{names:?}");
    assert!(names.contains(&"with space & quote'.txt".as_bytes().to_vec()));
    assert!(names.contains(&"ünïcødé.txt".as_bytes().to_vec()));
}

/// Peak resident memory of a process, sampled from /proc until it exits.
fn run_measuring_peak_rss(cmd: &mut Command) -> (Output, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            for line in s.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak = peak.max(kb * 1024);
                }
            }
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (
        Output {
            status,
            stdout,
            stderr,
        },
        peak,
    )
}

#[test]
fn memory_stays_flat_while_a_2_gib_folder_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let root = dir.path().join("big");
    std::fs::create_dir_all(&root).unwrap();
    // 2 GiB: a sparse file (cheap to make, still 2 GiB to read, hash and compress) plus
    // 32 MiB of random bytes that compress to about their own size, so that real data
    // crosses the upload.
    let f = std::fs::File::create(root.join("sparse.bin")).unwrap();
    f.set_len(2 * 1024 * 1024 * 1024 - 32 * 1024 * 1024)
        .unwrap();
    std::fs::write(root.join("random.bin"), random_bytes(32 * 1024 * 1024)).unwrap();
    let (out, peak) = run_measuring_peak_rss(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([
                "push-layer",
                "--level",
                "1",
                root.to_str().unwrap(),
                &format!("{}/big:v1", srv.host()),
            ])
            .env("DOCKER_CONFIG", "/nonexistent-berth-test"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = raw_manifest(&srv, "big:v1");
    let size = m["layers"][0]["size"].as_u64().unwrap();
    assert!(
        size > 32 * 1024 * 1024,
        "the random part was uploaded ({size} bytes)"
    );
    assert_eq!(
        std::fs::metadata(blob_path(
            &srv.root,
            m["layers"][0]["digest"].as_str().unwrap()
        ))
        .unwrap()
        .len(),
        size
    );
    // Bounded by the pipeline's buffers (a few 4 MiB chunks, compressor state), not by the
    // 2 GiB of input or the ~34 MB blob.
    assert!(
        peak < 96 * 1024 * 1024,
        "peak RSS {} MiB while pushing a 2 GiB folder",
        peak / (1024 * 1024)
    );
    eprintln!(
        "peak RSS of berth push-layer on 2 GiB: {} MiB",
        peak / (1024 * 1024)
    );
}

/// Checks that an interrupted `push-layer --level 1` (its output `out`) pushed `reference` to
/// `srv` with the same digest as a push of the same folder straight to `srv`, and that the
/// stored layer blob is complete.
#[track_caller]
fn assert_same_as_a_direct_push(srv: &Server, root: &Path, out: &Output, reference: &str) {
    let direct = berth_ok(&[
        "push-layer",
        "--level",
        "1",
        root.to_str().unwrap(),
        &format!("{}/direct:v1", srv.host()),
    ]);
    assert_eq!(
        pushed_digest(&String::from_utf8_lossy(&out.stdout)),
        pushed_digest(&direct)
    );
    let m = raw_manifest(srv, reference);
    let d = m["layers"][0]["digest"].as_str().unwrap();
    let stored = std::fs::read(blob_path(&srv.root, d)).unwrap();
    assert_eq!(digest_of(&stored), d, "the stored blob is complete");
}

#[test]
fn a_connection_broken_midway_still_ends_with_the_exact_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("data.bin"), random_bytes(20 * 1024 * 1024)).unwrap();
    let (proxy, cut) = cutting_proxy(srv.port, srv.port, 9 * 1024 * 1024);
    let out = berth(&[
        "push-layer",
        "--level",
        "1",
        root.to_str().unwrap(),
        &format!("127.0.0.1:{proxy}/flaky:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_as_a_direct_push(&srv, &root, &out, "flaky:v1");
    check_blob_store(&srv.root);
    assert!(
        cut.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy did cut a connection"
    );
}

#[test]
fn a_lost_upload_session_streams_the_layer_again_from_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (_d1, first) = serve();
    let (_d2, second) = serve();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("data.bin"), random_bytes(12 * 1024 * 1024)).unwrap();
    let (proxy, cut) = cutting_proxy(first.port, second.port, 5 * 1024 * 1024);
    let out = berth(&[
        "push-layer",
        "--level",
        "1",
        "--chunk-size",
        "1M",
        root.to_str().unwrap(),
        &format!("127.0.0.1:{proxy}/failover:v1"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("streaming the layer again"), "{stderr}");
    // The image is complete on the registry that took over.
    assert_same_as_a_direct_push(&second, &root, &out, "failover:v1");
    assert!(cut.load(std::sync::atomic::Ordering::SeqCst));
    // Nothing was committed on the registry that lost the session.
    assert_eq!(first.get("/v2/failover/tags/list").status, 404);
    check_blob_store(&first.root);
}

#[test]
fn standard_labels_come_from_git_or_ci_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, srv) = serve();
    let repo = dir.path().join("checkout");
    let root = repo.join("rootfs");
    write(&root.join("app"), b"app\n", 0o755);
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(&repo),
        )
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://git.example.com/team/app.git",
    ]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    git(&["tag", "v2.0.0"]);
    let head = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap();
    let run = |tag: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "push-layer".to_owned(),
            "rootfs".to_owned(),
            format!("{}/labels:{tag}", srv.host()),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(&args)
            .current_dir(&repo)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("DOCKER_CONFIG", "/nonexistent-berth-test")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        inspect(&srv, &format!("labels:{tag}"), &["--config"])["config"]["Labels"].clone()
    };
    let l = run("git", &[], &[]);
    assert_eq!(l["org.opencontainers.image.revision"], head.trim());
    assert_eq!(l["org.opencontainers.image.version"], "v2.0.0");
    // The remote, as a browsable URL.
    assert_eq!(
        l["org.opencontainers.image.source"],
        "https://git.example.com/team/app"
    );
    let l = run(
        "gh",
        &[],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("GITHUB_REPOSITORY", "org/app"),
            ("GITHUB_REF_NAME", "main"),
        ],
    );
    assert_eq!(
        l["org.opencontainers.image.revision"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        l["org.opencontainers.image.source"],
        "https://github.com/org/app"
    );
    assert_eq!(l["org.opencontainers.image.version"], "main");
    let l = run("none", &["--no-labels", "--label", "only=this"], &[]);
    assert_eq!(l, serde_json::json!({"only": "this"}));
}
