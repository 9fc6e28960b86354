//! `berth serve` with skopeo as the client: OCI image layouts written by hand are copied into the
//! registry and back, and must come back with identical digests.

use std::path::Path;

use berth_oci::media_type::*;
use berth_test_support::{data::*, image::*, layout::*, serve::*, skopeo::*, storage::*};
use serde_json::Value;

fn serve(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("root"), extra);
    (dir, srv)
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Copies a layout into the registry and back with `--all --preserve-digests`, and checks that
/// the tag names the same manifest digest and that the blob sets are identical.
fn round_trip(srv: &Server, src: &Path, out: &Path, tag: &str, repo: &str) {
    let remote = format!("docker://{}/{repo}:{tag}", srv.host());
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &oci(src, tag),
        &remote,
    ]);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &remote,
        &oci(out, tag),
    ]);
    let (d_in, mt_in) = layout_ref(src, tag);
    let (d_out, mt_out) = layout_ref(out, tag);
    assert_eq!(d_out, d_in, "manifest digest changed on the round trip");
    assert_eq!(mt_out, mt_in);
    assert_eq!(
        layout_blobs(out),
        layout_blobs(src),
        "blob sets differ after the round trip"
    );
}

#[test]
fn skopeo_round_trips_a_three_layer_oci_image() {
    let (dir, srv) = serve(&[]);
    let img = oci_image("amd64", 3, 200_000);
    let src = dir.path().join("src");
    write_layout(
        &src,
        &[&img.config, &img.layers[0], &img.layers[1], &img.layers[2]],
        &[("v1", OCI_MANIFEST, &img.manifest)],
    );
    let out = dir.path().join("out");
    round_trip(&srv, &src, &out, "v1", "e2e/multi-layer");

    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/e2e/multi-layer:v1", srv.host()),
    ]);
    assert_eq!(
        raw, img.manifest.bytes,
        "inspect --raw returns the manifest byte for byte"
    );
    let info: Value = serde_json::from_slice(&skopeo_ok(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/e2e/multi-layer:v1", srv.host()),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], img.manifest.digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(check_blob_store(&srv.root), 5);
}

#[test]
fn skopeo_round_trips_a_multi_arch_index() {
    let (dir, srv) = serve(&[]);
    let amd = oci_image("amd64", 2, 50_000);
    let arm = oci_image("arm64", 2, 50_000);
    let index = index_of(&[&amd, &arm], OCI_INDEX);
    let src = dir.path().join("src");
    let mut blobs: Vec<&Blob> = amd.blobs();
    blobs.extend(arm.blobs());
    write_layout(&src, &blobs, &[("multi", OCI_INDEX, &index)]);
    let out = dir.path().join("out");
    round_trip(&srv, &src, &out, "multi", "e2e/index");

    let host = srv.host();
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/e2e/index:multi"),
    ]);
    assert_eq!(raw, index.bytes);
    for img in [&amd, &arm] {
        let raw = skopeo_ok(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/e2e/index@{}", img.manifest.digest),
        ]);
        assert_eq!(raw, img.manifest.bytes, "child {} by digest", img.arch);
    }
    // Picking one platform out of the index.
    let out1 = dir.path().join("arm-only");
    skopeo_ok(&[
        "--override-arch",
        "arm64",
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/e2e/index:multi"),
        &oci(&out1, "arm"),
    ]);
    assert_eq!(layout_ref(&out1, "arm").0, arm.manifest.digest);
}

#[test]
fn skopeo_list_tags_and_delete() {
    let (dir, srv) = serve(&["--delete-enabled"]);
    let a = oci_image("amd64", 1, 1000);
    let b = oci_image("amd64", 1, 1000);
    let src = dir.path().join("src");
    let mut blobs = a.blobs();
    blobs.extend(b.blobs());
    write_layout(
        &src,
        &blobs,
        &[
            ("a", OCI_MANIFEST, &a.manifest),
            ("b", OCI_MANIFEST, &b.manifest),
        ],
    );
    let host = srv.host();
    for (tag, from) in [("v1", "a"), ("v2", "b"), ("latest", "b"), ("0.9", "a")] {
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            &oci(&src, from),
            &format!("docker://{host}/e2e/tags:{tag}"),
        ]);
    }
    let list = |host: &str| -> Vec<String> {
        let v: Value = serde_json::from_slice(&skopeo_ok(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/e2e/tags"),
        ]))
        .unwrap();
        assert_eq!(v["Repository"], format!("{host}/e2e/tags"));
        serde_json::from_value(v["Tags"].clone()).unwrap()
    };
    assert_eq!(list(&host), ["0.9", "latest", "v1", "v2"]);

    // skopeo deletes by digest: every tag of that manifest goes.
    skopeo_ok(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{host}/e2e/tags:v1"),
    ]);
    assert_eq!(list(&host), ["latest", "v2"]);
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/e2e/tags:v1"),
    ]);
    assert!(!out.status.success(), "v1 is gone");
    let r = srv.get(&format!("/v2/e2e/tags/manifests/{}", a.manifest.digest));
    r.assert_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(srv.get("/v2/e2e/tags/manifests/v2").body, b.manifest.bytes);
}

#[test]
fn skopeo_delete_is_refused_when_deletes_are_disabled() {
    let (dir, srv) = serve(&[]);
    let a = oci_image("amd64", 1, 1000);
    let src = dir.path().join("src");
    write_layout(
        &src,
        &[&a.config, &a.layers[0]],
        &[("a", OCI_MANIFEST, &a.manifest)],
    );
    let remote = format!("docker://{}/e2e/nodelete:v1", srv.host());
    skopeo_ok(&["copy", "--dest-tls-verify=false", &oci(&src, "a"), &remote]);
    let out = skopeo(&["delete", "--tls-verify=false", &remote]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "delete must fail when disabled");
    assert!(
        err.contains("UNSUPPORTED") || err.contains("405"),
        "skopeo's error names the refusal: {err}"
    );
    assert_eq!(
        skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &remote]),
        a.manifest.bytes
    );
}

#[test]
fn skopeo_docker_schema2_keeps_its_media_type() {
    let (dir, srv) = serve(&[]);
    let img = oci_image("amd64", 2, 20_000);
    let src = dir.path().join("src");
    write_layout(
        &src,
        &[&img.config, &img.layers[0], &img.layers[1]],
        &[("v1", OCI_MANIFEST, &img.manifest)],
    );
    let remote = format!("docker://{}/e2e/schema2:v1", srv.host());
    skopeo_ok(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &oci(&src, "v1"),
        &remote,
    ]);

    let raw = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &remote]);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    let pushed_digest = digest_of(&raw);
    let r = srv
        .req("GET", "/v2/e2e/schema2/manifests/v1")
        .header("Accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
        .send();
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST), "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(pushed_digest.as_str())
    );

    // `dir:` keeps the manifest exactly as the registry serves it.
    let out = dir.path().join("back");
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &remote,
        &format!("dir:{}", out.display()),
    ]);
    let back = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(back, raw);
    let v: Value = serde_json::from_slice(&back).unwrap();
    assert_eq!(v["mediaType"], DOCKER_MANIFEST);
    // The layers are the original compressed blobs.
    for l in &img.layers {
        assert_eq!(std::fs::read(out.join(l.hex())).unwrap(), l.bytes);
    }
}
