//! Concurrent pushes to `berth serve`: the same blob uploaded twice at once, and one tag PUT with
//! two different manifests at once.

use std::sync::{Arc, Barrier};

use berth_oci::media_type::*;
use berth_test_support::{curl::*, data::*, image::*, serve::*, storage::*};
use serde_json::json;

const MIB: usize = 1 << 20;

/// POST, two PATCHes, PUT: a chunked upload through curl.
fn chunked_upload(srv: &Server, repo: &str, blob: &Blob) -> Resp {
    let mut loc = srv.start_upload(repo);
    let half = blob.size() / 2;
    for (a, b) in [(0, half), (half, blob.size())] {
        let r = srv
            .req("PATCH", &loc)
            .header("Content-Range", &format!("{a}-{}", b - 1))
            .body(blob.bytes[a..b].to_vec())
            .send();
        assert_eq!(r.status, 202, "{r}");
        loc = r.header("location").unwrap().to_owned();
    }
    srv.req("PUT", &format!("{loc}?digest={}", blob.digest))
        .send()
}

#[test]
fn concurrent_uploads_of_the_same_blob_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Arc::new(Server::start(&dir.path().join("root"), &[]));
    let blob = Arc::new(Blob::random(6 * MIB));
    // Two clients in one repository and two in another, chunked and monolithic, all at once.
    let jobs: Vec<(&str, bool)> = vec![
        ("e2e/same", true),
        ("e2e/same", true),
        ("e2e/same", false),
        ("e2e/other", true),
        ("e2e/other", false),
    ];
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(repo, chunked)| {
            let (srv, blob, barrier) = (srv.clone(), blob.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                if chunked {
                    chunked_upload(&srv, repo, &blob)
                } else {
                    srv.req(
                        "POST",
                        &format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest),
                    )
                    .body(blob.bytes.clone())
                    .send()
                }
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 201, "{r}");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(blob.digest.as_str())
        );
    }
    for repo in ["e2e/same", "e2e/other"] {
        let r = srv.get(&format!("/v2/{repo}/blobs/{}", blob.digest));
        assert_eq!(r.status, 200, "{r}");
        assert!(r.body == blob.bytes, "blob in {repo} reads back intact");
    }
    assert_eq!(check_blob_store(&srv.root), 1);
    // No upload session is left behind.
    for repo in ["e2e/same", "e2e/other"] {
        let uploads = srv
            .root
            .join(format!("docker/registry/v2/repositories/{repo}/_uploads"));
        let left: Vec<_> = std::fs::read_dir(&uploads)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "upload sessions left in {repo}: {left:?}");
    }
}

#[test]
fn concurrent_puts_of_one_tag_leave_it_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Arc::new(Server::start(&dir.path().join("root"), &[]));
    let a = oci_image("amd64", 2, 10_000);
    let b = oci_image("arm64", 2, 10_000);
    for img in [&a, &b] {
        for blob in [&img.config, &img.layers[0], &img.layers[1]] {
            srv.push_blob("e2e/race", blob);
        }
    }
    let digests = [a.manifest.digest.clone(), b.manifest.digest.clone()];
    for round in 0..10 {
        let tag = format!("t{round}");
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [a.manifest.bytes.clone(), b.manifest.bytes.clone()]
            .into_iter()
            .map(|m| {
                let (srv, barrier, tag) = (srv.clone(), barrier.clone(), tag.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    srv.put_manifest("e2e/race", &tag, OCI_MANIFEST, &m)
                })
            })
            .collect();
        for h in handles {
            let r = h.join().unwrap();
            assert_eq!(r.status, 201, "round {round}: {r}");
        }
        let r = srv.get(&format!("/v2/e2e/race/manifests/{tag}"));
        assert_eq!(r.status, 200, "{r}");
        let d = r.header("docker-content-digest").unwrap().to_owned();
        assert!(
            digests.contains(&d),
            "tag {tag} points at {d}, neither pushed manifest"
        );
        assert_eq!(
            digest_of(&r.body),
            d,
            "the body served for {tag} is the manifest it names"
        );
        // The tag's current link agrees with what is served (on S3, in a copy of the bucket).
        mirror_bucket(&srv.root);
        let link = srv.root.join(format!(
            "docker/registry/v2/repositories/e2e/race/_manifests/tags/{tag}/current/link"
        ));
        assert_eq!(std::fs::read_to_string(&link).unwrap(), d);
    }
    // Both revisions are intact and reachable by digest.
    for img in [&a, &b] {
        let r = srv.get(&format!("/v2/e2e/race/manifests/{}", img.manifest.digest));
        assert_eq!(r.body, img.manifest.bytes);
        for l in &img.layers {
            assert!(srv.get(&format!("/v2/e2e/race/blobs/{}", l.digest)).body == l.bytes);
        }
    }
    let tags: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    assert_eq!(
        srv.get("/v2/e2e/race/tags/list").json(),
        json!({ "name": "e2e/race", "tags": tags })
    );
    assert_eq!(check_blob_store(&srv.root), 8);
}
