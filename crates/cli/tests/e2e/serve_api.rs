//! Every endpoint of `berth serve`, driven with `curl`: status codes, headers and bodies as the
//! OCI Distribution Spec and the Docker Registry HTTP API V2 define them.

use berth_oci::media_type::*;
use berth_test_support::{curl::*, data::*, image::*, serve::*};
use serde_json::{Value, json};

fn serve(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("root"), extra);
    (dir, srv)
}

#[track_caller]
fn assert_version_header(r: &Resp) {
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{r}"
    );
}

#[test]
fn base_endpoint_answers_200_with_the_version_header() {
    let (_d, srv) = serve(&[]);
    let r = srv.get("/v2/");
    assert_eq!(r.status, 200, "{r}");
    assert_version_header(&r);
    let r = srv.head("/v2/");
    assert_eq!(r.status, 200, "{r}");
    assert_version_header(&r);
    // Paths outside the API are JSON errors with the header too.
    srv.get("/v3/").assert_error_shape();
    let r = srv.get("/v2/repo/unknown/thing");
    assert_eq!(r.status, 404, "{r}");
    r.assert_error_shape();
}

#[test]
fn blob_get_head_and_ranges() {
    let (_d, srv) = serve(&[]);
    let blob = Blob::random(1000);
    let r = srv
        .req(
            "POST",
            &format!("/v2/e2e/blobs/blobs/uploads/?digest={}", blob.digest),
        )
        .body(blob.bytes.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(
        r.header("location")
            .map(|l| l.ends_with(&format!("/v2/e2e/blobs/blobs/{}", blob.digest))),
        Some(true),
        "{r}"
    );
    assert_version_header(&r);

    let path = format!("/v2/e2e/blobs/blobs/{}", blob.digest);
    let r = srv.head(&path);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert!(r.body.is_empty());

    let r = srv.get(&path);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, blob.bytes);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );

    let r = srv.req("GET", &path).header("Range", "bytes=10-19").send();
    assert_eq!(r.status, 206, "{r}");
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.body, &blob.bytes[10..20]);

    let r = srv.req("GET", &path).header("Range", "bytes=990-").send();
    assert_eq!(r.status, 206, "{r}");
    assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(r.body, &blob.bytes[990..]);

    let r = srv.req("GET", &path).header("Range", "bytes=-5").send();
    assert_eq!(r.status, 206, "{r}");
    assert_eq!(r.header("content-range"), Some("bytes 995-999/1000"));
    assert_eq!(r.body, &blob.bytes[995..]);

    // A range that ends past the end is cut to the blob.
    let r = srv
        .req("GET", &path)
        .header("Range", "bytes=995-5000")
        .send();
    assert_eq!(r.status, 206, "{r}");
    assert_eq!(r.body, &blob.bytes[995..]);

    let r = srv
        .req("GET", &path)
        .header("Range", "bytes=1000-2000")
        .send();
    r.assert_error(416, "RANGE_INVALID");
    assert_eq!(r.header("content-range"), Some("bytes */1000"), "{r}");

    let unknown = digest_of(b"not pushed");
    srv.get(&format!("/v2/e2e/blobs/blobs/{unknown}"))
        .assert_error(404, "BLOB_UNKNOWN");
    srv.head(&format!("/v2/e2e/blobs/blobs/{unknown}"))
        .assert_head_error(404);
    // A blob is visible only in the repository that links it.
    srv.get(&format!("/v2/other/blobs/{}", blob.digest))
        .assert_error(404, "BLOB_UNKNOWN");
}

#[test]
fn blob_delete_unlinks_the_blob_when_enabled() {
    let (_d, srv) = serve(&["--delete-enabled"]);
    let blob = Blob::random(300);
    srv.push_blob("e2e/del", &blob);
    let path = format!("/v2/e2e/del/blobs/{}", blob.digest);
    let r = srv.req("DELETE", &path).send();
    assert_eq!(r.status, 202, "{r}");
    assert_version_header(&r);
    srv.head(&path).assert_head_error(404);
    srv.get(&path).assert_error(404, "BLOB_UNKNOWN");
    srv.req("DELETE", &path)
        .send()
        .assert_error(404, "BLOB_UNKNOWN");
}

#[test]
fn blob_delete_is_unsupported_when_disabled() {
    let (_d, srv) = serve(&[]);
    let blob = Blob::random(300);
    srv.push_blob("e2e/del", &blob);
    let path = format!("/v2/e2e/del/blobs/{}", blob.digest);
    srv.req("DELETE", &path)
        .send()
        .assert_error(405, "UNSUPPORTED");
    assert_eq!(srv.get(&path).body, blob.bytes);
}

#[test]
fn post_then_put_uploads_a_blob() {
    let (_d, srv) = serve(&[]);
    let r = srv.req("POST", "/v2/e2e/up/blobs/uploads/").send();
    assert_eq!(r.status, 202, "{r}");
    assert_version_header(&r);
    let loc = r.header("location").expect("Location").to_owned();
    let uuid = r
        .header("docker-upload-uuid")
        .expect("Docker-Upload-UUID")
        .to_owned();
    assert!(loc.contains(&uuid), "{r}");
    assert_eq!(r.header("range"), Some("0-0"));

    let blob = Blob::random(5000);
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", blob.digest))
        .body(blob.bytes.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    let got = srv.get(r.header("location").expect("Location on 201"));
    assert_eq!(got.body, blob.bytes);
    // The session is over.
    srv.get(&loc).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn chunked_upload_with_content_range() {
    let (_d, srv) = serve(&[]);
    let blob = Blob::random(300);
    let loc = srv.start_upload("e2e/chunks");

    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "0-99")
        .body(blob.bytes[..100].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    assert_eq!(r.header("range"), Some("0-99"));
    let loc = r.header("location").expect("Location on 202").to_owned();

    let r = srv.get(&loc);
    assert_eq!(r.status, 204, "{r}");
    assert_eq!(r.header("range"), Some("0-99"));
    assert!(r.header("docker-upload-uuid").is_some(), "{r}");
    assert_version_header(&r);

    // A chunk that leaves a gap is refused with the current offset.
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "150-199")
        .body(blob.bytes[150..200].to_vec())
        .send();
    r.assert_error(416, "RANGE_INVALID");
    assert_eq!(r.header("range"), Some("0-99"), "{r}");
    assert!(r.header("location").is_some(), "{r}");

    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "100-199")
        .body(blob.bytes[100..200].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    assert_eq!(r.header("range"), Some("0-199"));
    // A streamed chunk (no Content-Range) appends too.
    let r = srv
        .req("PATCH", &loc)
        .body(blob.bytes[200..250].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    assert_eq!(r.header("range"), Some("0-249"));
    // The last chunk comes with the PUT.
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", blob.digest))
        .header("Content-Range", "250-299")
        .body(blob.bytes[250..].to_vec())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        srv.get(&format!("/v2/e2e/chunks/blobs/{}", blob.digest))
            .body,
        blob.bytes
    );

    // And a PUT with an empty body finishes an upload fed only by PATCHes.
    let blob2 = Blob::random(64);
    let loc = srv.start_upload("e2e/chunks");
    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", "0-63")
        .body(blob2.bytes.clone())
        .send();
    assert_eq!(r.status, 202, "{r}");
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", blob2.digest))
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        srv.get(&format!("/v2/e2e/chunks/blobs/{}", blob2.digest))
            .body,
        blob2.bytes
    );
}

#[test]
fn deleted_upload_is_unknown_afterwards() {
    let (_d, srv) = serve(&[]);
    let loc = srv.start_upload("e2e/cancel");
    let r = srv.req("PATCH", &loc).body(random_bytes(100)).send();
    assert_eq!(r.status, 202, "{r}");
    let r = srv.req("DELETE", &loc).send();
    assert_eq!(r.status, 204, "{r}");
    assert_version_header(&r);
    srv.get(&loc).assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.req("PATCH", &loc)
        .body(random_bytes(10))
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.req("PUT", &format!("{loc}?digest={}", digest_of(b"")))
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    srv.req("DELETE", &loc)
        .send()
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn cross_repository_mount() {
    let (_d, srv) = serve(&[]);
    let blob = Blob::random(2000);
    srv.push_blob("e2e/source", &blob);

    let r = srv
        .req(
            "POST",
            &format!(
                "/v2/e2e/target/blobs/uploads/?mount={}&from=e2e/source",
                blob.digest
            ),
        )
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert!(
        r.header("location")
            .is_some_and(|l| l.ends_with(&format!("/v2/e2e/target/blobs/{}", blob.digest))),
        "{r}"
    );
    assert_eq!(
        srv.get(&format!("/v2/e2e/target/blobs/{}", blob.digest))
            .body,
        blob.bytes
    );

    // Absent from `from`: an upload session instead.
    let absent = Blob::random(10);
    let r = srv
        .req(
            "POST",
            &format!(
                "/v2/e2e/target2/blobs/uploads/?mount={}&from=e2e/source",
                absent.digest
            ),
        )
        .send();
    assert_eq!(r.status, 202, "{r}");
    let loc = r.header("location").expect("Location").to_owned();
    let r = srv
        .req("PUT", &format!("{loc}?digest={}", absent.digest))
        .body(absent.bytes.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    // A `from` repository that does not exist, or lacks the blob, falls back the same way.
    let r = srv
        .req(
            "POST",
            &format!(
                "/v2/e2e/target3/blobs/uploads/?mount={}&from=e2e/nothing",
                blob.digest
            ),
        )
        .send();
    assert_eq!(r.status, 202, "{r}");
    let r = srv
        .req(
            "POST",
            &format!(
                "/v2/e2e/target3/blobs/uploads/?mount={}&from=e2e/target2",
                blob.digest
            ),
        )
        .send();
    assert_eq!(r.status, 202, "{r}");
    srv.get(&format!("/v2/e2e/target3/blobs/{}", blob.digest))
        .assert_error(404, "BLOB_UNKNOWN");
}

#[test]
fn manifests_by_tag_and_digest() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 2, 500);
    let r = srv.push_image("e2e/man", "v1", &img);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(img.manifest.digest.as_str())
    );
    assert!(r.header("location").is_some_and(|l| l.ends_with(&format!("/v2/e2e/man/manifests/{}", img.manifest.digest))), "{r}");
    assert_version_header(&r);

    for reference in ["v1", img.manifest.digest.as_str()] {
        let path = format!("/v2/e2e/man/manifests/{reference}");
        let r = srv.req("GET", &path).header("Accept", OCI_MANIFEST).send();
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(
            r.body, img.manifest.bytes,
            "manifest bytes are served as pushed"
        );
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(img.manifest.digest.as_str())
        );

        let r = srv.req("HEAD", &path).header("Accept", OCI_MANIFEST).send();
        assert_eq!(r.status, 200, "{r}");
        assert!(r.body.is_empty());
        assert_eq!(
            r.header("content-length"),
            Some(img.manifest.size().to_string().as_str()),
            "{r}"
        );
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(img.manifest.digest.as_str())
        );
    }

    // PUT by digest.
    let img2 = oci_image("arm64", 1, 100);
    srv.push_blob("e2e/man", &img2.config);
    srv.push_blob("e2e/man", &img2.layers[0]);
    let r = srv.put_manifest(
        "e2e/man",
        &img2.manifest.digest,
        OCI_MANIFEST,
        &img2.manifest.bytes,
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        srv.get(&format!("/v2/e2e/man/manifests/{}", img2.manifest.digest))
            .body,
        img2.manifest.bytes
    );
    // Retagging moves the tag.
    let r = srv.put_manifest("e2e/man", "v1", OCI_MANIFEST, &img2.manifest.bytes);
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        srv.get("/v2/e2e/man/manifests/v1")
            .header("docker-content-digest"),
        Some(img2.manifest.digest.as_str())
    );
    // The first revision is still there by digest.
    assert_eq!(
        srv.get(&format!("/v2/e2e/man/manifests/{}", img.manifest.digest))
            .body,
        img.manifest.bytes
    );

    srv.get("/v2/e2e/man/manifests/nope")
        .assert_error(404, "MANIFEST_UNKNOWN");
    srv.get(&format!("/v2/e2e/man/manifests/{}", digest_of(b"x")))
        .assert_error(404, "MANIFEST_UNKNOWN");
    srv.head("/v2/e2e/man/manifests/nope")
        .assert_head_error(404);
    srv.get("/v2/e2e/never/manifests/v1")
        .assert_error(404, "NAME_UNKNOWN");
}

#[test]
fn manifest_accept_negotiation() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    srv.push_image("e2e/accept", "v1", &img);
    let path = "/v2/e2e/accept/manifests/v1";
    let ok_accepts = [
        format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"),
        format!("{DOCKER_MANIFEST};q=0.9, {OCI_INDEX}, {OCI_MANIFEST};q=0.5"),
        "*/*".to_owned(),
        "application/*".to_owned(),
    ];
    for a in &ok_accepts {
        let r = srv.req("GET", path).header("Accept", a).send();
        assert_eq!(r.status, 200, "Accept: {a}: {r}");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST), "Accept: {a}");
        assert_eq!(r.body, img.manifest.bytes);
    }
    // Several Accept headers are one list.
    let r = srv
        .req("GET", path)
        .header("Accept", DOCKER_MANIFEST)
        .header("Accept", OCI_MANIFEST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    // A client that accepts none of the manifest's type is not handed it under another type.
    let r = srv
        .req("GET", path)
        .header("Accept", DOCKER_MANIFEST)
        .send();
    r.assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn docker_schema2_content_type_is_kept_byte_for_byte() {
    let (_d, srv) = serve(&[]);
    let a = docker_image("amd64", 2, 300);
    let b = docker_image("arm64", 1, 300);
    srv.push_image("e2e/docker", "amd64", &a);
    srv.push_image("e2e/docker", "arm64", &b);
    let list = index_of(&[&a, &b], DOCKER_MANIFEST_LIST);
    let r = srv.put_manifest("e2e/docker", "multi", DOCKER_MANIFEST_LIST, &list.bytes);
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(list.digest.as_str())
    );

    let r = srv
        .req("GET", "/v2/e2e/docker/manifests/amd64")
        .header("Accept", DOCKER_MANIFEST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(r.body, a.manifest.bytes);
    let r = srv
        .req("GET", "/v2/e2e/docker/manifests/multi")
        .header("Accept", DOCKER_MANIFEST_LIST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST_LIST));
    assert_eq!(r.body, list.bytes);
    let r = srv
        .req("HEAD", "/v2/e2e/docker/manifests/multi")
        .header("Accept", DOCKER_MANIFEST_LIST)
        .send();
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST_LIST), "{r}");

    // A manifest pushed with Content-Type parameters is stored under its media type.
    let c = docker_image("s390x", 1, 100);
    srv.push_blob("e2e/docker", &c.config);
    srv.push_blob("e2e/docker", &c.layers[0]);
    let r = srv.put_manifest(
        "e2e/docker",
        "param",
        &format!("{DOCKER_MANIFEST}; charset=utf-8"),
        &c.manifest.bytes,
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        srv.get("/v2/e2e/docker/manifests/param")
            .header("content-type"),
        Some(DOCKER_MANIFEST)
    );
}

#[test]
fn index_is_refused_when_a_child_is_missing() {
    let (_d, srv) = serve(&[]);
    let a = oci_image("amd64", 1, 100);
    let b = oci_image("arm64", 1, 100);
    srv.push_image("e2e/idx", "amd64", &a);
    // b's blobs are there but its manifest is not.
    srv.push_blob("e2e/idx", &b.config);
    srv.push_blob("e2e/idx", &b.layers[0]);
    let index = index_of(&[&a, &b], OCI_INDEX);
    let r = srv.put_manifest("e2e/idx", "multi", OCI_INDEX, &index.bytes);
    r.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    srv.get("/v2/e2e/idx/manifests/multi")
        .assert_error(404, "MANIFEST_UNKNOWN");
    let d = docker_image("amd64", 1, 100);
    let list = index_of(&[&d], DOCKER_MANIFEST_LIST);
    srv.put_manifest("e2e/idx", "dlist", DOCKER_MANIFEST_LIST, &list.bytes)
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");

    // With the child pushed, it is accepted.
    let r = srv.put_manifest("e2e/idx", "arm64", OCI_MANIFEST, &b.manifest.bytes);
    assert_eq!(r.status, 201, "{r}");
    let r = srv.put_manifest("e2e/idx", "multi", OCI_INDEX, &index.bytes);
    assert_eq!(r.status, 201, "{r}");
    let r = srv
        .req("GET", "/v2/e2e/idx/manifests/multi")
        .header("Accept", OCI_INDEX)
        .send();
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some(OCI_INDEX)),
        "{r}"
    );
    assert_eq!(r.body, index.bytes);
}

#[test]
fn image_manifest_is_refused_when_a_blob_is_missing() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 3, 100);
    srv.push_blob("e2e/miss", &img.config);
    srv.push_blob("e2e/miss", &img.layers[0]);
    srv.push_blob("e2e/miss", &img.layers[2]);
    let r = srv.put_manifest("e2e/miss", "v1", OCI_MANIFEST, &img.manifest.bytes);
    r.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    // The missing config is caught too.
    let img2 = oci_image("amd64", 1, 100);
    srv.push_blob("e2e/miss", &img2.layers[0]);
    srv.put_manifest("e2e/miss", "v2", OCI_MANIFEST, &img2.manifest.bytes)
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    // A blob of another repository does not count.
    srv.push_blob("e2e/elsewhere", &img.layers[1]);
    srv.put_manifest("e2e/miss", "v1", OCI_MANIFEST, &img.manifest.bytes)
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    srv.get("/v2/e2e/miss/manifests/v1")
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn foreign_layer_with_urls_is_accepted_without_its_blob() {
    let (_d, srv) = serve(&[]);
    let config = Blob::new(
        br#"{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
    );
    srv.push_blob("e2e/foreign", &config);
    let own = Blob::random(100);
    srv.push_blob("e2e/foreign", &own);
    let foreign = digest_of(b"a Windows base layer that lives elsewhere");
    let manifest = |urls: Option<Vec<&str>>| {
        let mut fl = json!({ "mediaType": DOCKER_FOREIGN_LAYER, "digest": foreign, "size": 12345 });
        if let Some(u) = urls {
            fl["urls"] = json!(u);
        }
        let v = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.descriptor(DOCKER_CONFIG),
            "layers": [fl, own.descriptor(DOCKER_LAYER_GZIP)],
        });
        serde_json::to_vec(&v).unwrap()
    };
    let with_urls = manifest(Some(vec!["https://example.invalid/layer.tar.gz"]));
    let r = srv.put_manifest("e2e/foreign", "win", DOCKER_MANIFEST, &with_urls);
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(srv.get("/v2/e2e/foreign/manifests/win").body, with_urls);
    // Without urls the layer must be in the repository.
    srv.put_manifest("e2e/foreign", "nourls", DOCKER_MANIFEST, &manifest(None))
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[test]
fn tags_list_is_sorted_and_paginated() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    let mut tags = vec!["v2", "latest", "v10", "1.0", "alpha", "Beta", "_x"];
    for t in &tags {
        srv.push_image("e2e/tags", t, &img);
    }
    tags.sort();
    let r = srv.get("/v2/e2e/tags/tags/list");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json(), json!({ "name": "e2e/tags", "tags": tags }));
    assert!(r.header("link").is_none(), "{r}");

    // Pages of 3 following the Link header.
    let mut got: Vec<String> = Vec::new();
    let mut next = Some("/v2/e2e/tags/tags/list?n=3".to_owned());
    let mut pages = 0;
    while let Some(url) = next {
        let r = srv.get(&url);
        assert_eq!(r.status, 200, "{r}");
        let page: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
        assert!(page.len() <= 3, "{r}");
        got.extend(page);
        next = next_link(&r);
        pages += 1;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(got, tags);
    assert_eq!(pages, 3);

    let r = srv.get(&format!("/v2/e2e/tags/tags/list?n=2&last={}", tags[1]));
    assert_eq!(r.json()["tags"], json!(tags[2..4]));
    let l = r.header("link").expect("Link on a partial page");
    assert!(
        l.contains(&format!("last={}", tags[3])) && l.contains("n=2") && l.contains("rel=\"next\""),
        "{l}"
    );
    let r = srv.get(&format!(
        "/v2/e2e/tags/tags/list?last={}",
        tags[tags.len() - 1]
    ));
    assert_eq!(r.json()["tags"], json!([]));
    srv.get("/v2/e2e/nothing/tags/list")
        .assert_error(404, "NAME_UNKNOWN");
}

#[test]
fn catalog_is_sorted_and_paginated() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    let mut repos = vec!["zeta", "alpha/one", "alpha/two", "beta", "alpha", "m/n/o/p"];
    for r in &repos {
        srv.push_image(r, "v1", &img);
    }
    // A repository with only an upload session is not in the catalog.
    srv.start_upload("uploading/only");
    repos.sort();
    let r = srv.get("/v2/_catalog");
    assert_eq!(r.status, 200, "{r}");
    assert_version_header(&r);
    assert_eq!(r.json(), json!({ "repositories": repos }));

    let mut got: Vec<String> = Vec::new();
    let mut next = Some("/v2/_catalog?n=2".to_owned());
    let mut pages = 0;
    while let Some(url) = next {
        let r = srv.get(&url);
        assert_eq!(r.status, 200, "{r}");
        let page: Vec<String> = serde_json::from_value(r.json()["repositories"].clone()).unwrap();
        assert!(page.len() <= 2, "{r}");
        got.extend(page);
        next = next_link(&r);
        pages += 1;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(got, repos);
    let r = srv.get("/v2/_catalog?n=2&last=alpha/one");
    assert_eq!(r.json()["repositories"], json!(["alpha/two", "beta"]));
    assert!(
        r.header("link").is_some_and(|l| l.contains("last=beta")),
        "{r}"
    );
}

#[test]
fn referrers_api() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    srv.push_image("e2e/ref", "v1", &img);
    let empty = Blob::new(b"{}".to_vec());
    srv.push_blob("e2e/ref", &empty);
    let sbom_blob = Blob::random(50);
    let sig_blob = Blob::random(50);
    srv.push_blob("e2e/ref", &sbom_blob);
    srv.push_blob("e2e/ref", &sig_blob);
    let sbom = artifact(
        "application/vnd.example.sbom",
        &img.manifest,
        OCI_MANIFEST,
        &sbom_blob,
    );
    let sig = artifact(
        "application/vnd.example.signature",
        &img.manifest,
        OCI_MANIFEST,
        &sig_blob,
    );
    for a in [&sbom, &sig] {
        let r = srv.put_manifest("e2e/ref", &a.digest, OCI_MANIFEST, &a.bytes);
        assert_eq!(r.status, 201, "{r}");
        assert_eq!(
            r.header("oci-subject"),
            Some(img.manifest.digest.as_str()),
            "{r}"
        );
    }
    // A manifest without subject gets no OCI-Subject header.
    let plain = oci_image("arm64", 1, 10);
    let r = srv.push_image("e2e/ref", "plain", &plain);
    assert!(r.header("oci-subject").is_none(), "{r}");

    let path = format!("/v2/e2e/ref/referrers/{}", img.manifest.digest);
    let r = srv.get(&path);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let m = v["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{v}");
    let find = |d: &str| {
        m.iter()
            .find(|x| x["digest"] == d)
            .cloned()
            .unwrap_or_else(|| panic!("{d} not in {v}"))
    };
    let s = find(&sbom.digest);
    assert_eq!(s["artifactType"], "application/vnd.example.sbom");
    assert_eq!(s["mediaType"], OCI_MANIFEST);
    assert_eq!(s["size"], sbom.size());
    assert_eq!(s["annotations"]["org.example.note"], "e2e");
    assert!(r.header("oci-filters-applied").is_none(), "{r}");

    let r = srv.get(&format!(
        "{path}?artifactType=application/vnd.example.signature"
    ));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"), "{r}");
    let m: Vec<Value> = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(m.len(), 1, "{r}");
    assert_eq!(m[0]["digest"], sig.digest.as_str());

    // Unknown subject: an empty index, not an error.
    let r = srv.get(&format!("/v2/e2e/ref/referrers/{}", digest_of(b"nobody")));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["manifests"], json!([]));
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    srv.get("/v2/e2e/ref/referrers/sha256:xyz")
        .assert_error(400, "DIGEST_INVALID");
}

#[test]
fn manifest_delete_by_tag_and_digest() {
    let (_d, srv) = serve(&["--delete-enabled"]);
    let img = oci_image("amd64", 1, 100);
    srv.push_image("e2e/mdel", "a", &img);
    srv.push_image("e2e/mdel", "b", &img);
    srv.push_image("e2e/mdel", "c", &img);
    let r = srv.req("DELETE", "/v2/e2e/mdel/manifests/a").send();
    assert_eq!(r.status, 202, "{r}");
    srv.get("/v2/e2e/mdel/manifests/a")
        .assert_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(
        srv.get("/v2/e2e/mdel/tags/list").json()["tags"],
        json!(["b", "c"])
    );
    assert_eq!(srv.get("/v2/e2e/mdel/manifests/b").status, 200);
    // By digest: the revision and every tag on it go.
    let r = srv
        .req(
            "DELETE",
            &format!("/v2/e2e/mdel/manifests/{}", img.manifest.digest),
        )
        .send();
    assert_eq!(r.status, 202, "{r}");
    srv.get(&format!("/v2/e2e/mdel/manifests/{}", img.manifest.digest))
        .assert_error(404, "MANIFEST_UNKNOWN");
    srv.get("/v2/e2e/mdel/manifests/b")
        .assert_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(srv.get("/v2/e2e/mdel/tags/list").json()["tags"], json!([]));
    srv.req("DELETE", "/v2/e2e/mdel/manifests/a")
        .send()
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[test]
fn manifest_delete_is_unsupported_when_disabled() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    srv.push_image("e2e/mdel", "a", &img);
    srv.req("DELETE", "/v2/e2e/mdel/manifests/a")
        .send()
        .assert_error(405, "UNSUPPORTED");
    srv.req(
        "DELETE",
        &format!("/v2/e2e/mdel/manifests/{}", img.manifest.digest),
    )
    .send()
    .assert_error(405, "UNSUPPORTED");
    assert_eq!(srv.get("/v2/e2e/mdel/manifests/a").status, 200);
}

#[test]
fn unsupported_methods_are_json_errors() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    srv.push_image("e2e/methods", "v1", &img);
    for (m, p) in [
        ("POST", "/v2/e2e/methods/manifests/v1"),
        ("PATCH", "/v2/e2e/methods/tags/list"),
        ("PUT", "/v2/_catalog"),
        (
            "POST",
            &format!("/v2/e2e/methods/blobs/{}", img.config.digest),
        ),
    ] {
        let r = srv.req(m, p).send();
        assert!(r.status == 405 || r.status == 404, "{m} {p}: {r}");
        r.assert_error_shape();
    }
}

/// The next spec version's draft: a manifest pushed by digest with `?tag=` parameters gets
/// every tag in the same request (`OCI-Tag` answers each), and a sha512 digest is what its
/// tags resolve to.
#[test]
fn manifest_put_by_digest_with_tag_parameters_and_sha512() {
    let (_d, srv) = serve(&[]);
    let img = oci_image("amd64", 1, 100);
    srv.push_blob("e2e/tags", &img.config);
    srv.push_blob("e2e/tags", &img.layers[0]);
    let sha512 = sha512_digest_of(&img.manifest.bytes);
    let tags: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    // One invalid tag: nothing is created.
    let r = srv
        .req(
            "PUT",
            &format!(
                "/v2/e2e/tags/manifests/{sha512}?{}&tag=-bad",
                query.join("&")
            ),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.bytes.clone())
        .send();
    r.assert_error(400, "TAG_INVALID");
    assert_eq!(srv.get("/v2/e2e/tags/manifests/t0").status, 404);
    // Twelve tags in one push.
    let r = srv
        .req(
            "PUT",
            &format!("/v2/e2e/tags/manifests/{sha512}?{}", query.join("&")),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.bytes.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.header("docker-content-digest"), Some(sha512.as_str()));
    let answered: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "oci-tag")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        answered,
        tags.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let listed = srv.get("/v2/e2e/tags/tags/list").json();
    let mut want = tags.clone();
    want.sort();
    assert_eq!(listed["tags"], json!(want));
    for t in &tags {
        let r = srv.get(&format!("/v2/e2e/tags/manifests/{t}"));
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(sha512.as_str()),
            "{t}"
        );
        assert_eq!(r.body, img.manifest.bytes);
    }
    let r = srv.get(&format!("/v2/e2e/tags/manifests/{sha512}"));
    assert_eq!(r.status, 200, "{r}");
}
