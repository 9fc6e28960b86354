//! `berth serve` on S3-compatible object storage: real Garage nodes on loopback, several Server
//! replicas on one bucket, CNCF Distribution's S3 driver on the same bucket, and faults (a
//! replica killed mid-upload, a Garage node killed during pushes and pulls, the store down).
//!
//! The rest of the server's end-to-end suite runs on S3 too: `scripts/test` runs it again with
//! `BERTH_TEST_STORAGE=s3` (see `common/server.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use berth_oci::media_type::*;
use berth_test_support::garage::Garage;
use berth_test_support::{
    curl::*, data::*, image::*, layout::*, net::*, serve::*, skopeo::*, storage::*,
};

fn s3_yaml(g: &Garage, bucket: &str, extra: &str) -> String {
    format!(
        "version: 0.1\nstorage:\n{}{extra}",
        g.distribution_yaml(bucket, "/registry")
    )
}

/// A replica of Server on `bucket`, serving blob bytes itself (redirects off), unless `extra`
/// says otherwise.
fn replica(dir: &Path, g: &Garage, bucket: &str, extra: &str) -> Server {
    let root = dir.join(format!("root-{}", random_suffix()));
    register_s3_root(&root, g.s3_config(bucket));
    Server::start_with_config(&root, &s3_yaml(g, bucket, extra), &["--delete-enabled"])
}

const BAD_SECRET: &str = "badbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadb";

const NO_REDIRECT: &str = "  redirect:\n    disable: true\n";

/// Sends `data` as one PATCH to `loc` on `srv`, starting at `start`; returns the response.
fn patch(srv: &Server, loc: &str, start: usize, data: &[u8]) -> Resp {
    srv.req("PATCH", &srv.on(loc))
        .header(
            "Content-Range",
            &format!("{start}-{}", start + data.len() - 1),
        )
        .body(data.to_vec())
        .send()
}

#[test]
fn chunked_patches_alternate_between_two_replicas_and_the_other_serves_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("reg");
    let a = replica(dir.path(), &g, "reg", NO_REDIRECT);
    let b = replica(dir.path(), &g, "reg", NO_REDIRECT);
    // 23 MiB in 3 MiB chunks: parts of the 10 MiB multipart upload fill across requests
    // served by different replicas.
    let blob = Blob::random(23 << 20);
    let loc = a.start_upload("s3/alt");
    let mut off = 0;
    for (i, chunk) in blob.bytes.chunks(3 << 20).enumerate() {
        let srv = if i % 2 == 0 { &b } else { &a };
        let r = patch(srv, &loc, off, chunk);
        assert_eq!(r.status, 202, "PATCH {i} on replica {}: {r}", i % 2);
        off += chunk.len();
        assert_eq!(r.header("range"), Some(&*format!("0-{}", off - 1)));
        // The other replica reports the same offset.
        let other = if i % 2 == 0 { &a } else { &b };
        let st = other.get(&other.on(&loc));
        assert_eq!(st.status, 204, "{st}");
        assert_eq!(st.header("range"), Some(&*format!("0-{}", off - 1)));
    }
    let r = a
        .req("PUT", &a.on(&format!("{loc}?digest={}", blob.digest)))
        .send();
    assert_eq!(r.status, 201, "{r}");
    let got = b.get(&format!("/v2/s3/alt/blobs/{}", blob.digest));
    assert_eq!(got.status, 200);
    assert!(got.body == blob.bytes, "replica b serves the blob intact");
    // A whole image pushed through one replica is pulled whole through the other.
    let img = oci_image("amd64", 2, 300_000);
    a.push_image("s3/img", "v1", &img);
    let r = b.get("/v2/s3/img/manifests/v1");
    assert_eq!(r.body, img.manifest.bytes);
    for l in &img.layers {
        assert!(b.get(&format!("/v2/s3/img/blobs/{}", l.digest)).body == l.bytes);
    }
    // Every blob in the bucket matches its digest (checked on a copy of the bucket).
    assert_eq!(
        check_blob_store(&a.root),
        5,
        "blob, config, 2 layers, manifest"
    );
}

#[test]
fn concurrent_pushes_of_one_tag_through_two_replicas_end_with_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("race");
    let a = replica(dir.path(), &g, "race", NO_REDIRECT);
    let b = replica(dir.path(), &g, "race", NO_REDIRECT);
    let x = oci_image("amd64", 1, 1000);
    let y = oci_image("arm64", 1, 1000);
    for (srv, img) in [(&a, &x), (&b, &y)] {
        srv.push_blob("s3/race", &img.config);
        srv.push_blob("s3/race", &img.layers[0]);
    }
    let (ha, hb) = (a.host(), b.host());
    let (mx, my) = (x.manifest.clone(), y.manifest.clone());
    let t1 = std::thread::spawn(move || {
        for _ in 0..20 {
            let r = Req::new("PUT", format!("http://{ha}/v2/s3/race/manifests/latest"))
                .header("Content-Type", OCI_MANIFEST)
                .body(mx.bytes.clone())
                .send();
            assert_eq!(r.status, 201, "{r}");
        }
    });
    let t2 = std::thread::spawn(move || {
        for _ in 0..20 {
            let r = Req::new("PUT", format!("http://{hb}/v2/s3/race/manifests/latest"))
                .header("Content-Type", OCI_MANIFEST)
                .body(my.bytes.clone())
                .send();
            assert_eq!(r.status, 201, "{r}");
        }
    });
    t1.join().unwrap();
    t2.join().unwrap();
    let ra = a.get("/v2/s3/race/manifests/latest");
    let rb = b.get("/v2/s3/race/manifests/latest");
    assert_eq!(ra.body, rb.body, "both replicas serve the same winner");
    assert!(
        ra.body == x.manifest.bytes || ra.body == y.manifest.bytes,
        "the tag names one of the pushed manifests"
    );
    assert_eq!(
        ra.header("docker-content-digest").unwrap(),
        digest_of(&ra.body)
    );
    for img in [&x, &y] {
        let r = b.get(&format!("/v2/s3/race/manifests/{}", img.manifest.digest));
        assert_eq!(r.body, img.manifest.bytes, "both revisions stay reachable");
    }
}

#[test]
fn a_replica_killed_mid_upload_and_a_garage_node_killed_do_not_stop_pushes_or_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Garage::cluster(3);
    g.create_bucket("ha-bucket");
    let mut a = replica(dir.path(), &g, "ha-bucket", NO_REDIRECT);
    let b = replica(dir.path(), &g, "ha-bucket", NO_REDIRECT);

    // A chunked upload starts on replica a, which dies with a PATCH in flight.
    let blob = Blob::random(30 << 20);
    let loc = a.start_upload("s3/ha");
    assert_eq!(patch(&a, &loc, 0, &blob.bytes[..12 << 20]).status, 202);
    let url = a.on(&loc);
    let tail = blob.bytes[12 << 20..].to_vec();
    let tail_file = dir.path().join("tail");
    std::fs::write(&tail_file, &tail).unwrap();
    let range = format!("Content-Range: {}-{}", 12 << 20, (30 << 20) - 1);
    let inflight = std::thread::spawn(move || {
        // Breaks off when the replica dies; its outcome does not matter.
        let _ = std::process::Command::new("curl")
            .args(["-s", "-X", "PATCH", "--limit-rate", "4M", "-H", &range])
            .args([
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
            ])
            .arg(format!("@{}", tail_file.display()))
            .arg(url)
            .output();
    });
    std::thread::sleep(Duration::from_millis(1500));
    a.kill9();
    inflight.join().unwrap();

    // The client asks replica b where the upload stands and resumes there.
    let st = b.get(&b.on(&loc));
    assert_eq!(st.status, 204, "{st}");
    let end: usize = st
        .header("range")
        .and_then(|r| r.strip_prefix("0-"))
        .unwrap()
        .parse()
        .unwrap();
    let offset = end + 1;
    assert!(offset >= 12 << 20, "the committed PATCH survives: {offset}");
    assert!(offset < 30 << 20);
    let r = patch(&b, &loc, offset, &blob.bytes[offset..]);
    assert_eq!(r.status, 202, "{r}");
    let r = b
        .req("PUT", &b.on(&format!("{loc}?digest={}", blob.digest)))
        .send();
    assert_eq!(r.status, 201, "{r}");
    let got = b.get(&format!("/v2/s3/ha/blobs/{}", blob.digest));
    assert!(got.body == blob.bytes, "the resumed blob is intact");

    // A Garage node dies while skopeo pushes an image through replica b, comes back, and dies
    // again while skopeo pulls the image (not node 0, the one the replicas talk to; with
    // replication factor 3 the other two still make a quorum). Both finish.
    let img = oci_image("amd64", 3, 16 << 20);
    let src = dir.path().join("src");
    write_layout(
        &src,
        &[&img.config, &img.layers[0], &img.layers[1], &img.layers[2]],
        &[("v1", OCI_MANIFEST, &img.manifest)],
    );
    let remote = format!("docker://{}/s3/ha-img:v1", b.host());
    let push = std::process::Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(&remote)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    kill_node_while_running(&mut g, 2, push, "push");
    g.restart(2);
    g.wait_healthy();
    let out = dir.path().join("out");
    let pull = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &remote])
        .arg(format!("oci:{}:v1", out.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    kill_node_while_running(&mut g, 2, pull, "pull");
    assert_eq!(layout_blobs(&out), layout_blobs(&src));

    // The node comes back; a new replica serves everything.
    g.restart(2);
    let c = replica(dir.path(), &g, "ha-bucket", NO_REDIRECT);
    assert!(c.get(&format!("/v2/s3/ha/blobs/{}", blob.digest)).body == blob.bytes);
    assert_eq!(c.get("/v2/s3/ha-img/manifests/v1").body, img.manifest.bytes);
}

/// Kills Garage node `i` once `client` has run for a moment, checks that it was still running
/// then (so the kill happened during the transfer), and that it finishes successfully.
fn kill_node_while_running(g: &mut Garage, i: usize, mut client: std::process::Child, what: &str) {
    std::thread::sleep(Duration::from_millis(100));
    let running = client.try_wait().unwrap().is_none();
    g.kill(i);
    let out = client.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {what} with node {i} killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        running,
        "skopeo {what} ended before node {i} was killed: make the image bigger"
    );
}

#[test]
fn the_store_going_down_mid_push_gives_a_retryable_5xx_and_no_partial_blob() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Garage::single();
    g.create_bucket("down");
    let srv = replica(dir.path(), &g, "down", NO_REDIRECT);
    let blob = Blob::random(14 << 20);
    let loc = srv.start_upload("s3/down");
    assert_eq!(patch(&srv, &loc, 0, &blob.bytes[..6 << 20]).status, 202);
    g.kill(0);
    let t = Instant::now();
    let r = patch(&srv, &loc, 6 << 20, &blob.bytes[6 << 20..]);
    assert!(
        (500..600).contains(&r.status),
        "a 5xx the client can retry: {r}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "fails within the retry window"
    );
    assert!(
        (500..600).contains(
            &srv.get(&format!("/v2/s3/down/blobs/{}", blob.digest))
                .status
        )
    );
    g.restart(0);
    // The blob is not visible; the upload resumes from its last committed offset.
    let until = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = srv.get(&srv.on(&loc));
        if st.status == 204 || Instant::now() > until {
            break st;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st.status, 204, "{st}");
    assert_eq!(st.header("range"), Some(&*format!("0-{}", (6 << 20) - 1)));
    srv.get(&format!("/v2/s3/down/blobs/{}", blob.digest))
        .assert_error(404, "BLOB_UNKNOWN");
    assert_eq!(
        patch(&srv, &loc, 6 << 20, &blob.bytes[6 << 20..]).status,
        202
    );
    let r = srv
        .req("PUT", &srv.on(&format!("{loc}?digest={}", blob.digest)))
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert!(srv.get(&format!("/v2/s3/down/blobs/{}", blob.digest)).body == blob.bytes);
}

#[test]
fn a_bucket_filled_by_distribution_is_served_and_the_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("shared");
    let storage = g.distribution_yaml("shared", "/registry");
    let dist = Server::start_distribution_storage(&storage);
    let img = oci_image("amd64", 2, 3 << 20);
    let src = dir.path().join("src");
    write_layout(
        &src,
        &[&img.config, &img.layers[0], &img.layers[1]],
        &[("v1", OCI_MANIFEST, &img.manifest)],
    );
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{}/from/dist:v1", dist.host()),
    ]);
    // Server, with the default redirect to presigned URLs, serves what Distribution stored.
    let berth = replica(dir.path(), &g, "shared", "");
    let out = dir.path().join("out");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/from/dist:v1", berth.host()),
        &format!("oci:{}:v1", out.display()),
    ]);
    assert_eq!(layout_blobs(&out), layout_blobs(&src));
    assert_eq!(
        berth.get("/v2/from/dist/tags/list").json()["tags"],
        serde_json::json!(["v1"])
    );
    // And Distribution serves what Server stored (chunked uploads included).
    let img2 = oci_image("arm64", 1, 12 << 20);
    let src2 = dir.path().join("src2");
    write_layout(
        &src2,
        &[&img2.config, &img2.layers[0]],
        &[("v2", OCI_MANIFEST, &img2.manifest)],
    );
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v2", src2.display()),
        &format!("docker://{}/from/berth:v2", berth.host()),
    ]);
    let out2 = dir.path().join("out2");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/from/berth:v2", dist.host()),
        &format!("oci:{}:v2", out2.display()),
    ]);
    assert_eq!(layout_blobs(&out2), layout_blobs(&src2));
    let cat = dist.get("/v2/_catalog").json();
    assert_eq!(
        cat["repositories"],
        serde_json::json!(["from/berth", "from/dist"])
    );
}

#[test]
fn blob_gets_redirect_to_presigned_urls_that_honour_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("redir");
    let srv = replica(dir.path(), &g, "redir", "");
    let blob = Blob::random(100_000);
    srv.push_blob("s3/redir", &blob);
    let path = format!("/v2/s3/redir/blobs/{}", blob.digest);
    let r = srv.get(&path);
    assert_eq!(r.status, 307, "{r}");
    let loc = r.header("location").unwrap().to_owned();
    assert!(loc.starts_with(&g.endpoint(0)), "{loc}");
    assert!(loc.contains("X-Amz-Signature="), "{loc}");
    assert_eq!(r.header("docker-content-digest"), Some(&*blob.digest));
    // HEAD is answered by Server; an unknown blob is a 404, not a redirect.
    let h = srv.head(&path);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("100000"));
    srv.get(&format!("/v2/s3/redir/blobs/{}", digest_of(b"nothing")))
        .assert_error(404, "BLOB_UNKNOWN");
    // A client that follows the redirect gets the bytes, and the range it asked for.
    let r = srv.req("GET", &path).arg("-L").send();
    assert_eq!(r.status, 200);
    assert!(r.body == blob.bytes);
    let r = srv
        .req("GET", &path)
        .header("Range", "bytes=1000-1999")
        .arg("-L")
        .send();
    assert_eq!(r.status, 206);
    assert!(r.body == blob.bytes[1000..2000]);
}

#[test]
fn abandoned_uploads_are_purged_and_their_multipart_uploads_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("purge");
    let srv = replica(
        dir.path(),
        &g,
        "purge",
        "  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 2s\n      interval: 1s\n",
    );
    let loc = srv.start_upload("s3/purge");
    // Enough for a multipart upload with a part in it.
    assert_eq!(patch(&srv, &loc, 0, &random_bytes(11 << 20)).status, 202);
    assert_eq!(g.incomplete_uploads("purge"), 1);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let st = srv.get(&srv.on(&loc));
        if st.status == 404 {
            st.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
            break;
        }
        assert!(Instant::now() < until, "upload not purged: {st}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(g.incomplete_uploads("purge"), 0, "multipart upload aborted");
}

#[test]
fn wrong_credentials_or_a_missing_bucket_stop_the_server_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("real");
    for (yaml, want) in [
        (s3_yaml(&g, "missing", ""), "\"missing\" does not exist"),
        (
            s3_yaml(&g, "real", "").replace(berth_test_support::garage::SECRET_KEY, BAD_SECRET),
            "refused access",
        ),
    ] {
        let cfg = dir.path().join(format!("{}.yml", random_suffix()));
        std::fs::write(&cfg, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{}", free_port()),
                "-c",
            ])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "{err}");
        assert!(
            !err.contains(berth_test_support::garage::SECRET_KEY) && !err.contains(BAD_SECRET),
            "no secret in the message: {err}"
        );
    }
}

/// Two replicas on one bucket with the built-in token issuer and no `signing_key`, each on its
/// own host (here: its own working folder, where the local default folder would be): the key
/// generated once lives in the bucket, so a token from one replica opens the other.
#[test]
fn a_token_from_one_replica_is_accepted_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("keys");
    let out = berth_test_support::process::run_ok(
        std::process::Command::new("htpasswd").args(["-nbBC", "5", "alice", "secret"]),
    );
    std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
    let access = dir.path().join("access.yml");
    std::fs::write(
        &access,
        "service: berth-test\nissuer: berth-test\nhtpasswd: htpasswd\naccess:\n  - who: user:alice\n    repos: \"**\"\n    actions: [\"*\"]\n",
    )
    .unwrap();
    let cfg = dir.path().join("s3.yml");
    std::fs::write(&cfg, s3_yaml(&g, "keys", "")).unwrap();
    let start = |host: &str| {
        let cwd = dir.path().join(host);
        std::fs::create_dir_all(&cwd).unwrap();
        let (cfg, access) = (cfg.clone(), access.clone());
        Server::launch(false, move |port| {
            let mut c = berth_test_support::process::berth_cmd();
            c.current_dir(&cwd)
                .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "-c"])
                .arg(&cfg)
                .arg("--auth-config")
                .arg(&access);
            c
        })
    };
    // Started together, as a deployment rolls out.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start("host-a"));
        let b = s.spawn(|| start("host-b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let token = |srv: &Server| {
        let r = srv
            .req(
                "GET",
                "/token?service=berth-test&scope=repository:team/app:pull,push",
            )
            .arg("-u")
            .arg("alice:secret")
            .send();
        assert_eq!(r.status, 200, "{r}");
        r.json()["token"].as_str().unwrap().to_owned()
    };
    for (from, to) in [(&a, &b), (&b, &a)] {
        let t = token(from);
        let r = to
            .req("GET", "/v2/team/app/tags/list")
            .header("Authorization", &format!("Bearer {t}"))
            .send();
        assert_eq!(r.status, 404, "the token was refused: {r}");
        r.assert_error(404, "NAME_UNKNOWN");
    }
    // Nothing secret was left in either host's local folder.
    for host in ["host-a", "host-b"] {
        let local = dir
            .path()
            .join(host)
            .join("berth-data/berth/token-signing-key.pem");
        assert!(!local.exists(), "{} exists", local.display());
    }
}

#[test]
fn readyz_follows_the_store_and_healthz_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Garage::single();
    g.create_bucket("ready");
    let srv = replica(dir.path(), &g, "ready", NO_REDIRECT);
    assert_eq!(srv.get("/readyz").status, 200);
    assert_eq!(srv.get("/healthz").status, 200);
    g.kill(0);
    let t = Instant::now();
    let r = srv.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().starts_with("not ready"), "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the probe answers within its deadline: {:?}",
        t.elapsed()
    );
    assert_eq!(
        srv.get("/healthz").status,
        200,
        "the process itself is alive"
    );
    g.restart(0);
    g.wait_healthy();
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.get("/readyz").status != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again once the store answers"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
