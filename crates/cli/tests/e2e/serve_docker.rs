//! `berth serve` with the Docker engine as the client: import, push, remove, pull, and check the
//! pulled image's files.

use std::io::Read;
use std::process::Command;

use berth_oci::media_type::*;
use berth_test_support::{data::*, docker::*, image::*, process::*, serve::*, storage::*};

/// Removes the Docker objects a test made, even when it fails.
struct DockerCleanup {
    images: Vec<String>,
    containers: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = run_ok(Command::new("docker").args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The files of a container's filesystem export (a tar stream) that are regular files.
fn files_of_export(tar_bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(path, data);
        }
    }
    out
}

#[test]
fn docker_push_rmi_pull_round_trip() {
    require_docker();
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("root"), &[]);
    let hello = format!("hello from berth e2e {}\n", random_suffix());
    let blob = random_bytes(300_000);
    let tarball = plain_tar(&[("hello", hello.as_bytes()), ("data/blob.bin", &blob)]);
    let tar_path = dir.path().join("rootfs.tar");
    std::fs::write(&tar_path, &tarball).unwrap();

    let image = format!("{}/e2e/img-{}:1", srv.host(), random_suffix());
    let mut cleanup = DockerCleanup {
        images: vec![image.clone()],
        containers: vec![],
    };
    docker(&["import", tar_path.to_str().unwrap(), &image]);
    let id_before = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    docker(&["push", &image]);
    let repo_digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{join .RepoDigests \" \"}}",
        &image,
    ]);
    let pushed_digest = repo_digests
        .split_whitespace()
        .find_map(|d| d.split_once('@').map(|(_, d)| d.to_owned()))
        .unwrap_or_else(|| panic!("no RepoDigests after push: {repo_digests:?}"));

    // The registry has the image under the tag and the digest docker reported.
    let repo_path = image
        .split_once('/')
        .unwrap()
        .1
        .rsplit_once(':')
        .unwrap()
        .0
        .to_owned();
    let r = srv
        .req("GET", &format!("/v2/{repo_path}/manifests/1"))
        .header("Accept", &format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"))
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(pushed_digest.as_str())
    );
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(
        check_blob_store(&srv.root),
        3,
        "config, one layer, manifest"
    );

    docker(&["rmi", &image]);
    let gone = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "the image was removed locally before the pull"
    );

    docker(&["pull", &image]);
    let id_after = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(
        id_after, id_before,
        "the pulled image has the pushed image's ID"
    );
    let repo_digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{join .RepoDigests \" \"}}",
        &image,
    ]);
    assert!(repo_digests.contains(&pushed_digest), "{repo_digests}");

    // Pulling by digest works too.
    let by_digest = format!("{}@{pushed_digest}", image.rsplit_once(':').unwrap().0);
    docker(&["pull", &by_digest]);

    // The files inside are the ones imported.
    let container = docker(&["create", &image, "/hello"]);
    cleanup.containers.push(container.clone());
    let export = run_ok(Command::new("docker").args(["export", &container])).stdout;
    let files = files_of_export(&export);
    assert_eq!(
        files.get("hello").map(Vec::as_slice),
        Some(hello.as_bytes()),
        "files: {:?}",
        files.keys()
    );
    assert_eq!(files.get("data/blob.bin").map(Vec::len), Some(blob.len()));
    assert!(files.get("data/blob.bin").is_some_and(|b| *b == blob));
    docker(&["rm", &container]);
    cleanup.containers.clear();
    docker(&["rmi", &image]);
    let _ = Command::new("docker").args(["rmi", &by_digest]).output();
}
