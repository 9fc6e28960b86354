//! Bad input to `berth serve`: each request is refused with the spec's error, and nothing stored
//! changes (the storage folder is compared before and after, ignoring upload sessions).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_oci::media_type::*;
use berth_test_support::{data::*, image::*, net::*, serve::*, storage::*};
use serde_json::json;

const REPO: &str = "e2e/base";

/// A server whose storage already holds an image, and a way to check that nothing changed.
struct Fixture {
    dir: tempfile::TempDir,
    srv: Server,
    img: Image,
    before: BTreeMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // Deep enough that a name climbing out of the root with `..` would still land inside
        // the tempdir, where the snapshot sees it.
        let root = dir.path().join("l1/l2/l3/l4/root");
        let srv = Server::start(&root, &["--delete-enabled"]);
        let img = oci_image("amd64", 2, 1000);
        srv.push_image(REPO, "v1", &img);
        let before = snapshot(dir.path(), &|_| false);
        assert!(
            before.keys().any(|k| k.contains("/_manifests/tags/v1/")),
            "fixture image is stored"
        );
        Fixture {
            dir,
            srv,
            img,
            before,
        }
    }

    fn root(&self) -> PathBuf {
        self.srv.root.clone()
    }

    /// Nothing in the tempdir changed (upload sessions aside).
    #[track_caller]
    fn assert_unchanged(&self) {
        let after = snapshot(self.dir.path(), &|_| false);
        let added: Vec<&String> = after
            .keys()
            .filter(|k| !self.before.contains_key(*k))
            .collect();
        let removed: Vec<&String> = self
            .before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .collect();
        let changed: Vec<&String> = after
            .iter()
            .filter(|(k, v)| self.before.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            added.is_empty() && removed.is_empty() && changed.is_empty(),
            "storage changed:\n added {added:#?}\n removed {removed:#?}\n changed {changed:#?}"
        );
        assert_eq!(
            check_blob_store(&self.root()),
            4,
            "config, 2 layers and the manifest"
        );
        // The fixture image is still served whole.
        let r = self.srv.get(&format!("/v2/{REPO}/manifests/v1"));
        assert_eq!(r.body, self.img.manifest.bytes, "{r}");
    }

    fn blob_path(&self, digest: &str) -> String {
        format!("/v2/{REPO}/blobs/{digest}")
    }
}

#[test]
fn malformed_digests_are_digest_invalid() {
    let f = Fixture::new();
    let srv = &f.srv;
    let bad = [
        "sha256:xyz",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8",
        "sha256:",
        "sha256:..%2F..%2F..%2F..%2Fetc",
    ];
    for d in bad {
        srv.get(&f.blob_path(d)).assert_error(400, "DIGEST_INVALID");
        srv.head(&f.blob_path(d)).assert_head_error(400);
        srv.req("DELETE", &f.blob_path(d))
            .send()
            .assert_error(400, "DIGEST_INVALID");
        srv.get(&format!("/v2/{REPO}/manifests/{d}"))
            .assert_error(400, "DIGEST_INVALID");
        srv.req("POST", &format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
            .body(b"content".to_vec())
            .send()
            .assert_error(400, "DIGEST_INVALID");
        let loc = srv.start_upload(REPO);
        srv.req("PUT", &format!("{loc}?digest={d}"))
            .body(b"x".to_vec())
            .send()
            .assert_error(400, "DIGEST_INVALID");
        srv.req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?mount={d}&from={REPO}"),
        )
        .send()
        .assert_error(400, "DIGEST_INVALID");
        srv.get(&format!("/v2/{REPO}/referrers/{d}"))
            .assert_error(400, "DIGEST_INVALID");
    }
    // Well-formed but of an algorithm Server does not compute.
    for d in [
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ] {
        srv.get(&f.blob_path(d)).assert_error(400, "DIGEST_INVALID");
        srv.req("POST", &format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
            .body(b"content".to_vec())
            .send()
            .assert_error(400, "DIGEST_INVALID");
        srv.put_manifest(REPO, d, OCI_MANIFEST, &f.img.manifest.bytes)
            .assert_error(400, "DIGEST_INVALID");
    }
    // A finish without any digest.
    let loc = srv.start_upload(REPO);
    srv.req("PUT", &loc)
        .body(b"x".to_vec())
        .send()
        .assert_error(400, "DIGEST_INVALID");
    f.assert_unchanged();
}

#[test]
fn digest_mismatch_on_put_discards_the_upload() {
    let f = Fixture::new();
    let srv = &f.srv;
    let data = random_bytes(10_000);
    let claimed = digest_of(b"something else");
    let actual = digest_of(&data);

    // Chunked, then a PUT with the wrong digest.
    let loc = srv.start_upload(REPO);
    let r = srv.req("PATCH", &loc).body(data.clone()).send();
    assert_eq!(r.status, 202, "{r}");
    let loc = r.header("location").unwrap().to_owned();
    srv.req("PUT", &format!("{loc}?digest={claimed}"))
        .send()
        .assert_error(400, "DIGEST_INVALID");
    srv.head(&f.blob_path(&claimed)).assert_head_error(404);
    srv.head(&f.blob_path(&actual)).assert_head_error(404);
    srv.get(&loc).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.req("PUT", &format!("{loc}?digest={actual}"))
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");

    // Monolithic POST with the wrong digest.
    srv.req(
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/?digest={claimed}"),
    )
    .body(data.clone())
    .send()
    .assert_error(400, "DIGEST_INVALID");
    // POST then a PUT carrying the body.
    let loc = srv.start_upload(REPO);
    srv.req("PUT", &format!("{loc}?digest={claimed}"))
        .body(data.clone())
        .send()
        .assert_error(400, "DIGEST_INVALID");
    srv.get(&loc).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.head(&f.blob_path(&claimed)).assert_head_error(404);
    srv.head(&f.blob_path(&actual)).assert_head_error(404);
    assert!(
        !blob_path(&f.root(), &actual).exists(),
        "mismatched content must not enter the blob store"
    );

    // A manifest PUT by a digest that is not its own.
    let other = oci_image("arm64", 1, 10);
    srv.put_manifest(
        REPO,
        &other.manifest.digest,
        OCI_MANIFEST,
        &f.img.manifest.bytes,
    )
    .assert_error(400, "DIGEST_INVALID");
    f.assert_unchanged();
}

#[test]
fn truncated_monolithic_upload_is_not_stored() {
    let f = Fixture::new();
    let srv = &f.srv;
    let data = random_bytes(100_000);
    let d = digest_of(&data);
    let conn = RawConn::send_partial(
        srv.port,
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/?digest={d}"),
        &[
            ("Content-Length", data.len().to_string()),
            ("Content-Type", "application/octet-stream".into()),
        ],
        &data[..40_000],
    );
    if let Some(status) = conn.close_and_read_status() {
        assert!(status >= 400, "a truncated upload answered {status}");
    }
    srv.head(&f.blob_path(&d)).assert_head_error(404);
    assert!(!blob_path(&f.root(), &d).exists());
    f.assert_unchanged();
    // The same blob pushed whole works.
    let r = srv
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
        .body(data.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(srv.get(&f.blob_path(&d)).body, data);
}

#[test]
fn truncated_chunk_leaves_the_upload_at_its_last_complete_chunk() {
    let f = Fixture::new();
    let srv = &f.srv;
    let data = random_bytes(3000);
    let loc = srv.start_upload(REPO);
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "0-999")
        .body(data[..1000].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    let loc = r.header("location").unwrap().to_owned();

    let conn = RawConn::send_partial(
        srv.port,
        "PATCH",
        &loc,
        &[
            ("Content-Length", "2000".into()),
            ("Content-Range", "1000-2999".into()),
        ],
        &data[1000..1700],
    );
    if let Some(status) = conn.close_and_read_status() {
        assert!(status >= 400, "a truncated chunk answered {status}");
    }
    let r = srv.get(&loc);
    assert_eq!(r.status, 204, "{r}");
    assert_eq!(
        r.header("range"),
        Some("0-999"),
        "the broken chunk must not count: {r}"
    );
    // Resume from the reported offset.
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "1000-2999")
        .body(data[1000..].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", digest_of(&data)))
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(srv.get(&f.blob_path(&digest_of(&data))).body, data);
}

#[test]
fn out_of_order_chunks_are_416() {
    let f = Fixture::new();
    let srv = &f.srv;
    let data = random_bytes(400);
    let loc = srv.start_upload(REPO);
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "0-99")
        .body(data[..100].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    let loc = r.header("location").unwrap().to_owned();
    for range in ["200-299", "50-149", "0-99", "101-200"] {
        let (a, b) = range.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let r = srv
            .req("PATCH", &loc)
            .header("Content-Range", range)
            .body(data[a..=b].to_vec())
            .send();
        r.assert_error(416, "RANGE_INVALID");
        assert_eq!(r.header("range"), Some("0-99"), "{range}: {r}");
    }
    // A PUT whose Content-Range does not continue the upload.
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", digest_of(&data)))
        .header("Content-Range", "300-399")
        .body(data[300..].to_vec())
        .send();
    r.assert_error(416, "RANGE_INVALID");
    // A Content-Length that disagrees with the Content-Range.
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "100-199")
        .body(data[100..150].to_vec())
        .send();
    assert!(r.status == 400 || r.status == 416, "{r}");
    r.assert_error_shape();
    // A malformed Content-Range.
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "bytes=oops")
        .body(data[100..200].to_vec())
        .send();
    assert!(r.status == 400 || r.status == 416, "{r}");
    r.assert_error_shape();
    let r = srv.get(&loc);
    assert_eq!(
        r.header("range"),
        Some("0-99"),
        "refused chunks must not count: {r}"
    );
    // The upload still completes.
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "100-399")
        .body(data[100..].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", digest_of(&data)))
        .send();
    assert_eq!(r.status, 201, "{r}");
}

#[test]
fn oversized_manifest_is_413() {
    let f = Fixture::new();
    let srv = &f.srv;
    let big = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": f.img.config.descriptor(OCI_CONFIG),
        "layers": [],
        "annotations": { "padding": "x".repeat(4 * 1024 * 1024) },
    });
    let bytes = serde_json::to_vec(&big).unwrap();
    assert!(bytes.len() > 4 * 1024 * 1024);
    let r = srv.put_manifest(REPO, "big", OCI_MANIFEST, &bytes);
    assert_eq!(r.status, 413, "{r}");
    r.assert_error_shape();
    // Without a Content-Length (chunked transfer encoding) the limit holds too.
    let r = srv
        .req("PUT", &format!("/v2/{REPO}/manifests/big2"))
        .header("Content-Type", OCI_MANIFEST)
        .header("Transfer-Encoding", "chunked")
        .body(bytes.clone())
        .send();
    assert_eq!(r.status, 413, "{r}");
    r.assert_error_shape();
    srv.get(&format!("/v2/{REPO}/manifests/big"))
        .assert_error(404, "MANIFEST_UNKNOWN");
    f.assert_unchanged();
}

#[test]
fn invalid_manifests_are_manifest_invalid() {
    let f = Fixture::new();
    let srv = &f.srv;
    let cfg = f.img.config.descriptor(OCI_CONFIG);
    let layer = f.img.layers[0].descriptor(OCI_LAYER_GZIP);
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("not JSON", OCI_MANIFEST.into(), b"{not json".to_vec()),
        ("empty body", OCI_MANIFEST.into(), vec![]),
        ("JSON array", OCI_MANIFEST.into(), b"[]".to_vec()),
        (
            "schemaVersion 3",
            OCI_MANIFEST.into(),
            serde_json::to_vec(&json!({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]})).unwrap(),
        ),
        (
            "no schemaVersion",
            OCI_MANIFEST.into(),
            serde_json::to_vec(&json!({"mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]})).unwrap(),
        ),
        (
            "Content-Type and mediaType disagree",
            OCI_INDEX.into(),
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": [layer]})).unwrap(),
        ),
        (
            "malformed descriptor digest",
            OCI_MANIFEST.into(),
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": "sha256:1234", "size": 1}]}))
            .unwrap(),
        ),
        (
            "negative size",
            OCI_MANIFEST.into(),
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": f.img.layers[0].digest, "size": -1}]}))
            .unwrap(),
        ),
        (
            "image manifest without config",
            OCI_MANIFEST.into(),
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [layer]})).unwrap(),
        ),
    ];
    for (what, ct, body) in cases {
        let r = srv.put_manifest(REPO, "bad", &ct, &body);
        assert_eq!(r.status, 400, "{what}: {r}");
        r.assert_error(400, "MANIFEST_INVALID");
    }
    srv.get(&format!("/v2/{REPO}/manifests/bad"))
        .assert_error(404, "MANIFEST_UNKNOWN");
    f.assert_unchanged();
}

#[test]
fn unknown_manifest_media_types_are_refused() {
    let f = Fixture::new();
    let srv = &f.srv;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": f.img.config.descriptor(OCI_CONFIG),
        "layers": [f.img.layers[0].descriptor(OCI_LAYER_GZIP)],
    }))
    .unwrap();
    for ct in ["application/vnd.example.unknown+json", "text/plain"] {
        let r = srv.put_manifest(REPO, "odd", ct, &body);
        r.assert_error(400, "MANIFEST_INVALID");
    }
    // A body declaring an unknown mediaType.
    let odd = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": "application/vnd.example.thing"}),
    )
    .unwrap();
    srv.put_manifest(REPO, "odd", "application/json", &odd)
        .assert_error(400, "MANIFEST_INVALID");
    // Docker schema 1 is served when found but never accepted.
    let v1 = serde_json::to_vec(
        &json!({"schemaVersion": 1, "name": REPO, "tag": "odd", "architecture": "amd64",
        "fsLayers": [{"blobSum": f.img.layers[0].digest}], "history": [{"v1Compatibility": "{}"}]}),
    )
    .unwrap();
    let r = srv.put_manifest(
        REPO,
        "odd",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        &v1,
    );
    assert_eq!(r.status, 400, "{r}");
    r.assert_error_shape();
    srv.get(&format!("/v2/{REPO}/manifests/odd"))
        .assert_error(404, "MANIFEST_UNKNOWN");
    f.assert_unchanged();
}

#[test]
fn invalid_repository_names_are_refused_and_nothing_escapes_the_root() {
    let f = Fixture::new();
    let srv = &f.srv;
    let escape = format!("escape-{}", random_suffix());
    let up8 = "../".repeat(8);
    let enc8 = "%2e%2e%2f".repeat(8);
    let names = [
        "..".to_owned(),
        "%2e%2e".to_owned(),
        format!("{up8}{escape}"),
        format!("{enc8}{escape}"),
        format!("%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/{escape}"),
        format!("{REPO}/{up8}{escape}"),
        format!("a%2F..%2F..%2F..%2F..%2F..%2F..%2F{escape}"),
        "Upper".to_owned(),
        "e2e/Base".to_owned(),
        "a//b".to_owned(),
        format!("/tmp/{escape}"),
        "a/./b".to_owned(),
        "a_".to_owned(),
        "-a".to_owned(),
        "a%00b".to_owned(),
        "a%20b".to_owned(),
        "x".repeat(300),
    ];
    let blob = Blob::random(100);
    let img = &f.img;
    for name in &names {
        let rs = vec![
            (
                "POST uploads",
                srv.req("POST", &format!("/v2/{name}/blobs/uploads/"))
                    .send(),
            ),
            (
                "POST monolithic",
                srv.req(
                    "POST",
                    &format!("/v2/{name}/blobs/uploads/?digest={}", blob.digest),
                )
                .body(blob.bytes.clone())
                .send(),
            ),
            (
                "POST mount",
                srv.req(
                    "POST",
                    &format!(
                        "/v2/{name}/blobs/uploads/?mount={}&from={REPO}",
                        img.config.digest
                    ),
                )
                .send(),
            ),
            (
                "PUT manifest",
                srv.put_manifest(name, "v1", OCI_MANIFEST, &img.manifest.bytes),
            ),
            ("GET manifest", srv.get(&format!("/v2/{name}/manifests/v1"))),
            (
                "GET blob",
                srv.get(&format!("/v2/{name}/blobs/{}", img.config.digest)),
            ),
            ("GET tags", srv.get(&format!("/v2/{name}/tags/list"))),
            (
                "DELETE manifest",
                srv.req("DELETE", &format!("/v2/{name}/manifests/v1"))
                    .send(),
            ),
            (
                "GET referrers",
                srv.get(&format!("/v2/{name}/referrers/{}", img.manifest.digest)),
            ),
        ];
        for (what, r) in rs {
            r.assert_error_shape();
            assert!(
                (r.status == 400 && r.error_code() == "NAME_INVALID") || r.status == 404,
                "{what} on {name:?}: expected 400 NAME_INVALID or 404: {r}"
            );
        }
    }
    // A mount whose `from` is not a valid name falls back to an upload session, linking nothing.
    for from in [
        format!("{up8}{escape}"),
        "Upper".into(),
        format!("{enc8}docker/registry/v2/repositories/{REPO}"),
    ] {
        let r = srv
            .req(
                "POST",
                &format!(
                    "/v2/{REPO}/blobs/uploads/?mount={}&from={from}",
                    img.config.digest
                ),
            )
            .send();
        assert_eq!(r.status, 202, "mount from {from:?}: {r}");
    }
    assert!(
        !std::path::Path::new("/tmp").join(&escape).exists(),
        "something was written to /tmp/{escape}"
    );
    f.assert_unchanged();
}

#[test]
fn invalid_tags_are_refused_on_put_and_unknown_on_get() {
    let f = Fixture::new();
    let srv = &f.srv;
    let long = "t".repeat(129);
    for tag in [
        long.as_str(),
        "-dash",
        ".dot",
        "a%2Fb",
        "a+b",
        ".INVALID_MANIFEST_NAME",
    ] {
        srv.put_manifest(REPO, tag, OCI_MANIFEST, &f.img.manifest.bytes)
            .assert_error(400, "TAG_INVALID");
        // The spec answers 404 for a manifest that is not there, as Distribution does: no
        // manifest can be stored under an invalid tag.
        srv.get(&format!("/v2/{REPO}/manifests/{tag}"))
            .assert_error(404, "MANIFEST_UNKNOWN");
        srv.head(&format!("/v2/{REPO}/manifests/{tag}"))
            .assert_head_error(404);
    }
    f.assert_unchanged();
    // 128 characters is the limit, inclusive.
    let max = "t".repeat(128);
    let r = srv.put_manifest(REPO, &max, OCI_MANIFEST, &f.img.manifest.bytes);
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(srv.get(&format!("/v2/{REPO}/manifests/{max}")).status, 200);
}

#[test]
fn unknown_upload_ids_are_blob_upload_unknown() {
    let f = Fixture::new();
    let srv = &f.srv;
    // A live upload whose id is reused in the wrong repository below.
    let live = srv.start_upload(REPO);
    let live_id = live.rsplit('/').next().unwrap().to_owned();
    let ids = [
        "3f1b1c4e-9a47-4a7e-9d8f-1c2b3a4d5e6f".to_owned(),
        "not-a-uuid".to_owned(),
        "..".to_owned(),
        "..%2F..%2Fx".to_owned(),
        "%2e%2e%2f%2e%2e%2f%2e%2e%2fdata".to_owned(),
        live_id.to_uppercase(),
        format!("{live_id}%2Fdata"),
    ];
    let d = digest_of(b"x");
    for id in &ids {
        let p = format!("/v2/{REPO}/blobs/uploads/{id}");
        for r in [
            srv.get(&p),
            srv.req("PATCH", &p).body(b"abc".to_vec()).send(),
            srv.req("PUT", &format!("{p}?digest={d}"))
                .body(b"x".to_vec())
                .send(),
            srv.req("DELETE", &p).send(),
        ] {
            r.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
        }
    }
    // An upload id belongs to its repository.
    let p = format!("/v2/e2e/other/blobs/uploads/{live_id}");
    srv.get(&p).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.req("PATCH", &p)
        .body(b"abc".to_vec())
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let r = srv.get(&live);
    assert_eq!(
        (r.status, r.header("range")),
        (204, Some("0-0")),
        "the live upload is untouched: {r}"
    );
    f.assert_unchanged();
}
