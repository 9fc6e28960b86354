//! `berth serve` killed with SIGKILL in the middle of uploads, then restarted on the same folder;
//! and stopped with SIGTERM.

use std::io::{Read, Write};
use std::time::Duration;

use berth_oci::media_type::*;
use berth_test_support::{data::*, image::*, net::*, process::*, serve::*, storage::*};

const REPO: &str = "e2e/crash";
const MIB: usize = 1 << 20;

/// Lets the server take in what was sent before it is killed (not an assertion on timing: the
/// checks hold however much of the partial body the server had read).
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn sigkill_during_a_chunked_upload_keeps_the_completed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut srv = Server::start(&root, &[]);
    let finished = Blob::random(2 * MIB);
    srv.push_blob(REPO, &finished);

    let data = random_bytes(12 * MIB);
    let mut loc = srv.start_upload(REPO);
    for i in 0..3 {
        let r = srv
            .req("PATCH", &loc)
            .header(
                "Content-Range",
                &format!("{}-{}", i * MIB, (i + 1) * MIB - 1),
            )
            .body(data[i * MIB..(i + 1) * MIB].to_vec())
            .send();
        assert_eq!(r.status, 202, "chunk {i}: {r}");
        loc = r.header("location").unwrap().to_owned();
    }
    // A fourth chunk of 8 MiB, of which 5 MiB are sent before the server dies.
    let conn = RawConn::send_partial(
        srv.port,
        "PATCH",
        &loc,
        &[
            ("Content-Length", (8 * MIB).to_string()),
            ("Content-Range", format!("{}-{}", 3 * MIB, 11 * MIB - 1)),
        ],
        &data[3 * MIB..8 * MIB],
    );
    settle();
    srv.kill9();
    drop(conn);

    let srv = Server::start(&root, &[]);
    assert_eq!(
        check_blob_store(&root),
        1,
        "only the finished blob is in the blob store"
    );
    assert_eq!(
        srv.get(&format!("/v2/{REPO}/blobs/{}", finished.digest))
            .body,
        finished.bytes
    );

    let r = srv.get(&loc);
    assert_eq!(
        r.status, 204,
        "the interrupted upload survives the restart: {r}"
    );
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", 3 * MIB - 1).as_str()),
        "offset = the completed PATCHes: {r}"
    );

    let r = srv
        .req("PATCH", &loc)
        .header("Content-Range", &format!("{}-{}", 3 * MIB, data.len() - 1))
        .body(data[3 * MIB..].to_vec())
        .send();
    assert_eq!(r.status, 202, "{r}");
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    let d = digest_of(&data);
    let r = srv.req("PUT", &format!("{loc}?digest={d}")).send();
    assert_eq!(r.status, 201, "{r}");
    let r = srv.get(&format!("/v2/{REPO}/blobs/{d}"));
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "the resumed blob reads back intact");
    assert_eq!(check_blob_store(&root), 2);
}

#[test]
fn sigkill_during_a_monolithic_upload_leaves_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut srv = Server::start(&root, &[]);
    let img = oci_image("amd64", 1, 1000);
    srv.push_image(REPO, "v1", &img);

    let data = random_bytes(10 * MIB);
    let d = digest_of(&data);
    let conn = RawConn::send_partial(
        srv.port,
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/?digest={d}"),
        &[
            ("Content-Length", data.len().to_string()),
            ("Content-Type", "application/octet-stream".into()),
        ],
        &data[..6 * MIB],
    );
    settle();
    srv.kill9();
    drop(conn);

    let srv = Server::start(&root, &[]);
    srv.head(&format!("/v2/{REPO}/blobs/{d}"))
        .assert_head_error(404);
    srv.get(&format!("/v2/{REPO}/blobs/{d}"))
        .assert_error(404, "BLOB_UNKNOWN");
    assert!(
        !blob_path(&root, &d).exists(),
        "a partial blob is in the blob store"
    );
    assert_eq!(check_blob_store(&root), 3);
    assert_eq!(
        srv.get(&format!("/v2/{REPO}/manifests/v1")).body,
        img.manifest.bytes
    );

    let r = srv
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
        .body(data.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert!(srv.get(&format!("/v2/{REPO}/blobs/{d}")).body == data);
    assert_eq!(check_blob_store(&root), 4);
}

/// The tags listed, each fetched: every listed tag must resolve to the manifest pushed under
/// it, whatever moment a kill cut a push at (a tag is listed only once its link is complete).
#[track_caller]
fn check_tags(srv: &Server, imgs: &[Image], prefix: &str) -> (Vec<String>, Vec<String>) {
    let r = srv.get(&format!("/v2/{REPO}/tags/list"));
    if r.status == 404 {
        // No tag pushed yet.
        r.assert_error(404, "NAME_UNKNOWN");
        return (vec![], vec![]);
    }
    assert_eq!(r.status, 200, "{r}");
    let tags: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
    let (mut served, mut dangling) = (vec![], vec![]);
    for t in tags.into_iter().filter(|t| t.starts_with(prefix)) {
        let i: usize = t.rsplit('-').next().unwrap().parse().unwrap();
        let r = srv.get(&format!("/v2/{REPO}/manifests/{t}"));
        if r.status == 404 {
            r.assert_error(404, "MANIFEST_UNKNOWN");
            dangling.push(t);
        } else {
            assert_eq!(r.status, 200, "tag {t}: {r}");
            assert_eq!(r.body, imgs[i % imgs.len()].manifest.bytes, "tag {t}");
            served.push(t);
        }
    }
    (served, dangling)
}

#[test]
fn sigkill_while_pushing_manifests_leaves_a_consistent_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let imgs: Vec<Image> = (0..10).map(|_| oci_image("amd64", 1, 100)).collect();
    let mut pushed_some = false;
    for round in 0..4 {
        let mut srv = Server::start(&root, &[]);
        if round == 0 {
            for img in &imgs {
                srv.push_blob(REPO, &img.config);
                srv.push_blob(REPO, &img.layers[0]);
            }
        }
        check_blob_store(&root);
        // The tags of the round the last kill cut.
        let last = format!("r{}-", round.max(1) - 1);
        let (served, dangling) = check_tags(&srv, &imgs, &last);
        assert!(
            dangling.is_empty(),
            "listed tags that do not resolve: {dangling:?}"
        );
        pushed_some |= !served.is_empty();
        // What the last kill left is swept at start.
        assert_no_temporaries(&root);
        // 32 clients push manifests under new tags without pause until the server dies.
        let port = srv.port;
        let pushers: Vec<_> = (0..32)
            .map(|c| {
                let manifests: Vec<Vec<u8>> =
                    imgs.iter().map(|i| i.manifest.bytes.clone()).collect();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let m = &manifests[i % manifests.len()];
                        let mut req = format!(
                            "PUT /v2/{REPO}/manifests/r{round}-c{c}-{i} HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            m.len()
                        )
                        .into_bytes();
                        req.extend_from_slice(m);
                        if !raw_request(port, &req).starts_with("HTTP/1.1 201") {
                            return;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + 50 * round));
        srv.kill9();
        for p in pushers {
            p.join().unwrap();
        }
        // Temporary files of this kill are older than the next server by its grace.
        std::thread::sleep(Duration::from_secs(3));
    }
    let srv = Server::start(&root, &[]);
    check_blob_store(&root);
    let (served, dangling) = check_tags(&srv, &imgs, "");
    assert!(
        pushed_some || !served.is_empty(),
        "some pushes went through before each kill"
    );
    assert!(
        dangling.is_empty(),
        "listed tags that do not resolve: {dangling:?}"
    );
    assert_no_temporaries(&root);
    for (i, img) in imgs.iter().enumerate() {
        let r = srv.put_manifest(
            REPO,
            &format!("after-{i}"),
            OCI_MANIFEST,
            &img.manifest.bytes,
        );
        assert_eq!(r.status, 201, "{r}");
    }
    let (_, dangling) = check_tags(&srv, &imgs, "after-");
    assert!(dangling.is_empty(), "{dangling:?}");
}

/// No `.berth-tmp-*` file is left under `root` (the sweep runs in the background at start,
/// so this waits for it a little).
#[track_caller]
fn assert_no_temporaries(root: &std::path::Path) {
    let find = || {
        let out = std::process::Command::new("find")
            .arg(root)
            .args(["-name", ".berth-tmp-*"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut left = find();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = find();
    }
    assert!(left.is_empty(), "temporary files left behind:\n{left}");
}

/// Starts a PATCH that declares `declared` bytes at `start`, sends `sent` bytes of filler, and
/// drops the connection.
fn broken_off_patch(port: u16, loc: &str, start: usize, declared: usize, sent: usize) {
    let filler = vec![0xA5u8; sent];
    let conn = RawConn::send_partial(
        port,
        "PATCH",
        loc,
        &[
            ("Content-Length", declared.to_string()),
            ("Content-Range", format!("{start}-{}", start + declared - 1)),
        ],
        &filler,
    );
    drop(conn);
}

/// A chunk upload that breaks off after tens of MiB leaves the server's writer with buffered
/// data still going to disk. A resume that comes at once, and a finishing PUT without body, must
/// still store exactly the blob the digest names.
#[test]
fn resume_right_after_a_broken_off_chunk_stores_the_exact_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let srv = Server::start(&root, &[]);
    for attempt in 0..4 {
        let data = random_bytes(2 * MIB);
        let d = digest_of(&data);
        let loc = srv.start_upload(REPO);
        let r = srv
            .req("PATCH", &loc)
            .header("Content-Range", &format!("0-{}", MIB - 1))
            .body(data[..MIB].to_vec())
            .send();
        assert_eq!(r.status, 202, "{r}");
        broken_off_patch(srv.port, &loc, MIB, 200 * MIB, (66 + 6 * attempt) * MIB);
        // Resume at once, on a raw socket (no process start in between).
        let mut req = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Range: {}-{}\r\nContent-Length: {MIB}\r\n\r\n",
            MIB,
            2 * MIB - 1
        )
        .into_bytes();
        req.extend_from_slice(&data[MIB..]);
        let resp = raw_request(srv.port, &req);
        assert!(
            resp.starts_with("HTTP/1.1 202"),
            "attempt {attempt}: resume answered {resp}"
        );
        let req = format!(
            "PUT {loc}?digest={d} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let resp = raw_request(srv.port, req.as_bytes());
        assert!(
            resp.starts_with("HTTP/1.1 201"),
            "attempt {attempt}: finish answered {resp}"
        );
        let r = srv.head(&format!("/v2/{REPO}/blobs/{d}"));
        assert_eq!(
            r.header("content-length"),
            Some((2 * MIB).to_string().as_str()),
            "attempt {attempt}: {r}"
        );
        assert!(
            srv.get(&format!("/v2/{REPO}/blobs/{d}")).body == data,
            "attempt {attempt}: blob content"
        );
        check_blob_store(&root);
    }
    // All data sent, then a retried chunk breaks off, then the PUT comes at once.
    for attempt in 0..2 {
        let data = random_bytes(2 * MIB);
        let d = digest_of(&data);
        let loc = srv.start_upload(REPO);
        let r = srv.req("PATCH", &loc).body(data.clone()).send();
        assert_eq!(r.status, 202, "{r}");
        broken_off_patch(srv.port, &loc, 2 * MIB, 200 * MIB, (66 + 6 * attempt) * MIB);
        let req = format!(
            "PUT {loc}?digest={d} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let resp = raw_request(srv.port, req.as_bytes());
        assert!(
            resp.starts_with("HTTP/1.1 201"),
            "attempt {attempt}: finish answered {resp}"
        );
        assert!(
            srv.get(&format!("/v2/{REPO}/blobs/{d}")).body == data,
            "attempt {attempt}: blob content"
        );
        check_blob_store(&root);
    }
    // Give abandoned writers time to finish, then look again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(check_blob_store(&root), 6);
}

#[test]
fn sigterm_shuts_down_gracefully_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(&dir.path().join("root"), &[]);
    srv.push_blob(REPO, &Blob::random(1000));
    let st = srv
        .terminate(Duration::from_secs(60))
        .expect("berth serve did not exit within 60 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
}

#[test]
fn sigterm_with_an_idle_keep_alive_connection_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(&dir.path().join("root"), &[]);
    // One finished request on a connection that stays open.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let st = srv
        .terminate(Duration::from_secs(60))
        .expect("berth serve did not exit within 60 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
    drop(s);
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(&dir.path().join("root"), &[]);
    let blob = Blob::random(2 * MIB);
    let mut conn = RawConn::send_partial(
        srv.port,
        "POST",
        &format!("/v2/{REPO}/blobs/uploads/?digest={}", blob.digest),
        &[
            ("Content-Length", blob.size().to_string()),
            ("Connection", "close".into()),
        ],
        &blob.bytes[..MIB],
    );
    settle();
    let pid = srv.pid();
    signal(pid, "TERM");
    settle();
    conn.stream.write_all(&blob.bytes[MIB..]).unwrap();
    let mut resp = Vec::new();
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let _ = conn.stream.read_to_end(&mut resp);
    let head = String::from_utf8_lossy(&resp);
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "the upload in flight is finished: {head}"
    );
    let st = srv
        .wait_exit(Duration::from_secs(60))
        .expect("berth serve did not exit after SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
    assert_eq!(check_blob_store(&srv.root), 1);
}
