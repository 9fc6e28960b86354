//! One storage folder, two registries: what CNCF Distribution 2.8 (`docker-registry`) stored,
//! `berth serve` serves, and the reverse.

use std::path::Path;

use berth_oci::media_type::*;
use berth_test_support::{data::*, image::*, layout::*, serve::*, skopeo::*, storage::*};
use serde_json::{Value, json};

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// A layout with a three-layer image (`single`) and a two-platform index (`multi`).
struct Fixture {
    single: Image,
    index: Blob,
    amd: Image,
    arm: Image,
}

fn layout(dir: &Path) -> Fixture {
    let single = oci_image("amd64", 3, 100_000);
    let amd = oci_image("amd64", 1, 50_000);
    let arm = oci_image("arm64", 2, 50_000);
    let index = index_of(&[&amd, &arm], OCI_INDEX);
    let mut blobs = single.blobs();
    blobs.extend(amd.blobs());
    blobs.extend(arm.blobs());
    write_layout(
        dir,
        &blobs,
        &[
            ("single", OCI_MANIFEST, &single.manifest),
            ("multi", OCI_INDEX, &index),
        ],
    );
    Fixture {
        single,
        index,
        amd,
        arm,
    }
}

fn push(host: &str, src: &Path, tag: &str, repo: &str) {
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &oci(src, tag),
        &format!("docker://{host}/{repo}:{tag}"),
    ]);
}

/// Pulls `repo:tag` into a fresh layout and checks digests and blobs against `src`.
fn pull_and_compare(host: &str, src: &Path, out: &Path, tag: &str, repo: &str) {
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{host}/{repo}:{tag}"),
        &oci(out, tag),
    ]);
    assert_eq!(
        layout_ref(out, tag),
        layout_ref(src, tag),
        "{repo}:{tag} came back with another manifest"
    );
    let got = layout_blobs(out);
    let want = layout_blobs(src);
    for (k, v) in &got {
        assert_eq!(
            want.get(k),
            Some(v),
            "pulled blob {k} is not in the source layout"
        );
    }
}

#[track_caller]
fn check_served(srv: &Server, f: &Fixture) {
    let r = srv
        .req("GET", "/v2/e2e/compat/manifests/single")
        .header("Accept", OCI_MANIFEST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, f.single.manifest.bytes);
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(f.single.manifest.digest.as_str())
    );
    let r = srv
        .req("GET", "/v2/e2e/compat/manifests/multi")
        .header("Accept", OCI_INDEX)
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, f.index.bytes);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    for img in [&f.amd, &f.arm, &f.single] {
        // Config and layers (Distribution links manifests as revisions only, not as blobs).
        for b in std::iter::once(&img.config).chain(&img.layers) {
            let r = srv.head(&format!("/v2/e2e/compat/blobs/{}", b.digest));
            assert_eq!(r.status, 200, "{} {r}", b.digest);
        }
        let l = &img.layers[0];
        assert_eq!(
            srv.get(&format!("/v2/e2e/compat/blobs/{}", l.digest)).body,
            l.bytes
        );
    }
    let r = srv.get("/v2/e2e/compat/tags/list");
    assert_eq!(
        r.json(),
        json!({ "name": "e2e/compat", "tags": ["multi", "single"] }),
        "{r}"
    );
    let r = srv.get("/v2/_catalog");
    let repos: Vec<String> = serde_json::from_value(r.json()["repositories"].clone()).unwrap();
    assert!(
        repos.contains(&"e2e/compat".to_owned()) && repos.contains(&"e2e/other".to_owned()),
        "{r}"
    );
}

#[test]
fn berth_serves_what_distribution_stored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    let f = layout(&src);

    let mut dist = Server::start_distribution(&root);
    push(&dist.host(), &src, "single", "e2e/compat");
    push(&dist.host(), &src, "multi", "e2e/compat");
    push(&dist.host(), &src, "single", "e2e/other");
    // An upload that Distribution began and never finished.
    let loc = dist.start_upload("e2e/compat");
    let part = random_bytes(1000);
    let r = dist.req("PATCH", &loc).body(part.clone()).send();
    assert_eq!(r.status, 202, "{r}");
    let loc = r.header("location").unwrap().to_owned();
    dist.kill9();

    let srv = Server::start(&root, &["--delete-enabled"]);
    check_served(&srv, &f);
    pull_and_compare(
        &srv.host(),
        &src,
        &dir.path().join("out1"),
        "single",
        "e2e/compat",
    );
    pull_and_compare(
        &srv.host(),
        &src,
        &dir.path().join("out2"),
        "multi",
        "e2e/compat",
    );

    // Server continues Distribution's upload (which has no Server hash state).
    let path = loc
        .split_once("/v2/")
        .map(|(_, p)| format!("/v2/{p}"))
        .unwrap();
    let path = path.split('?').next().unwrap().to_owned();
    let r = srv.get(&path);
    assert_eq!(r.status, 204, "{r}");
    assert_eq!(r.header("range"), Some("0-999"), "{r}");
    let rest = random_bytes(500);
    let r = srv
        .req("PATCH", &path)
        .header("Content-Range", "1000-1499")
        .body(rest.clone())
        .send();
    assert_eq!(r.status, 202, "{r}");
    let mut whole = part;
    whole.extend_from_slice(&rest);
    let r = srv
        .req("PUT", &format!("{path}?digest={}", digest_of(&whole)))
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        srv.get(&format!("/v2/e2e/compat/blobs/{}", digest_of(&whole)))
            .body,
        whole
    );

    // And Server can add to and delete from Distribution's tree.
    push(&srv.host(), &src, "single", "e2e/compat-more");
    let r = srv.req("DELETE", "/v2/e2e/other/manifests/single").send();
    assert_eq!(r.status, 202, "{r}");
    assert_eq!(
        check_blob_store(&root),
        14,
        "13 image blobs and the finished upload"
    );
}

#[test]
fn distribution_serves_what_berth_stored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let src = dir.path().join("src");
    let f = layout(&src);

    let mut srv = Server::start(&root, &[]);
    push(&srv.host(), &src, "single", "e2e/compat");
    push(&srv.host(), &src, "multi", "e2e/compat");
    push(&srv.host(), &src, "single", "e2e/other");
    // A Docker schema 2 image and a referrer too: Distribution must not trip on Server's extras.
    let d = docker_image("amd64", 1, 1000);
    srv.push_image("e2e/dockerish", "v1", &d);
    let blob = Blob::random(20);
    srv.push_blob("e2e/compat", &blob);
    srv.push_blob("e2e/compat", &Blob::new(b"{}".to_vec()));
    let sbom = artifact(
        "application/vnd.example.sbom",
        &f.single.manifest,
        OCI_MANIFEST,
        &blob,
    );
    let r = srv.put_manifest("e2e/compat", &sbom.digest, OCI_MANIFEST, &sbom.bytes);
    assert_eq!(r.status, 201, "{r}");
    srv.kill9();

    let dist = Server::start_distribution(&root);
    check_served(&dist, &f);
    let r = dist.get("/v2/_catalog");
    assert_eq!(
        r.json()["repositories"],
        json!(["e2e/compat", "e2e/dockerish", "e2e/other"]),
        "{r}"
    );
    let r = dist.get("/v2/e2e/compat/tags/list");
    assert_eq!(r.json()["tags"], json!(["multi", "single"]));
    pull_and_compare(
        &dist.host(),
        &src,
        &dir.path().join("out1"),
        "single",
        "e2e/compat",
    );
    pull_and_compare(
        &dist.host(),
        &src,
        &dir.path().join("out2"),
        "multi",
        "e2e/compat",
    );
    pull_and_compare(
        &dist.host(),
        &src,
        &dir.path().join("out3"),
        "single",
        "e2e/other",
    );
    let r = dist
        .req("GET", "/v2/e2e/dockerish/manifests/v1")
        .header("Accept", DOCKER_MANIFEST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, d.manifest.bytes);
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    let r = dist
        .req("GET", &format!("/v2/e2e/compat/manifests/{}", sbom.digest))
        .header("Accept", OCI_MANIFEST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    let v: Value = r.json();
    assert_eq!(v["subject"]["digest"], f.single.manifest.digest.as_str());
}
