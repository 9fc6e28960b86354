//! `berth serve` against a hostile or careless client: memory, threads and connections a client
//! can take, and what the operator sees. Each test makes the load with bounded loops on
//! 127.0.0.1 and then checks what another user would: that a pull still completes within a
//! stated time, and that the server's memory stays under a stated bound.

use std::io::Write as _;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_oci::media_type::*;
use berth_test_support::{
    curl::next_link, data::*, image::*, net::*, process::berth_bin, process::berth_cmd,
    process::raise_open_file_limit, process::rss_mib, process::run_ok, serve::*,
};

const REPO: &str = "hard/app";

/// How long a pull of the small test image may take while the server is under attack.
const PULL_LIMIT: Duration = Duration::from_secs(15);

/// Pulls `img` (manifest, config, layers) with curl and asserts that it completes within
/// [`PULL_LIMIT`] and that every byte matches.
#[track_caller]
fn assert_pull_completes(srv: &Server, img: &Image, auth: Option<&str>) {
    let start = Instant::now();
    let get = |path: &str| {
        let mut r = srv
            .req("GET", path)
            .arg("--max-time")
            .arg(&PULL_LIMIT.as_secs().to_string());
        if let Some(a) = auth {
            r = r.arg("-u").arg(a);
        }
        r.send()
    };
    let m = get(&format!("/v2/{REPO}/manifests/v1"));
    assert_eq!(m.status, 200, "manifest: {m}");
    assert_eq!(m.body, img.manifest.bytes);
    for b in img.blobs() {
        let r = get(&format!("/v2/{REPO}/blobs/{}", b.digest));
        assert_eq!(r.status, 200, "blob {}: {r}", b.digest);
        assert_eq!(digest_of(&r.body), b.digest);
    }
    let took = start.elapsed();
    assert!(took < PULL_LIMIT, "the pull took {took:?}");
}

/// A server with one image pushed; `extra` are more `berth serve` arguments.
fn server_with_image(dir: &std::path::Path, extra: &[&str], layer_bytes: usize) -> (Server, Image) {
    let srv = Server::start(&dir.join("root"), extra);
    let img = oci_image("amd64", 1, layer_bytes);
    srv.push_image(REPO, "v1", &img);
    (srv, img)
}

/// `berth.idletimeout` set in a config file.
fn idle_config(dir: &std::path::Path, idle: &str) -> String {
    let p = dir.join("idle.yml");
    std::fs::write(&p, format!("version: 0.1\nberth:\n  idletimeout: {idle}\n")).unwrap();
    p.display().to_string()
}

#[test]
fn made_up_upload_ids_leave_the_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, img) = server_with_image(dir.path(), &[], 1000);
    let before = rss_mib(srv.pid());
    let port = srv.port;
    let id = "u".repeat(60_000);
    // 4 clients × 1,000 requests with 60 KB ids, valid or not, on PATCH, PUT and DELETE.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let id = id.clone();
            std::thread::spawn(move || {
                let methods = ["PATCH", "PUT", "DELETE"];
                for i in 0..1000 {
                    let m = methods[(i + c) % 3];
                    let query = if m == "PUT" {
                        format!("?digest=sha256:{}", "0".repeat(64))
                    } else {
                        String::new()
                    };
                    let req = format!(
                        "{m} /v2/{REPO}/blobs/uploads/{id}{c}-{i}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let r = raw_request(port, req.as_bytes());
                    assert!(r.starts_with("HTTP/1.1 404"), "{m}: {}", &r[..r.len().min(200)]);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let grew = rss_mib(srv.pid()).saturating_sub(before);
    // Distribution stays flat; before the fix this grew by about 240 MiB.
    assert!(grew < 48, "RSS grew by {grew} MiB");
    assert_pull_completes(&srv, &img, None);
}

#[test]
fn stalled_uploads_and_unread_downloads_hold_no_threads_others_need() {
    raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    // A layer larger than what the socket buffers and the read-ahead hold.
    let (srv, img) = server_with_image(dir.path(), &[], 16 << 20);
    // Together more than the blocking pool has threads (512): uploads that sent one byte of
    // a 1 MB chunk and stopped, and downloads whose client never reads.
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            let loc = srv.start_upload(REPO);
            let path = &loc[loc.find("/v2/").unwrap()..];
            let head = format!(
                "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\nx"
            );
            connect_small(srv.port, head.as_bytes())
        })
        .collect();
    let layer = img.layers[0].digest.clone();
    let head = format!("GET /v2/{REPO}/blobs/{layer} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let unread: Vec<TcpStream> = (0..260)
        .map(|_| connect_small(srv.port, head.as_bytes()))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    assert_pull_completes(&srv, &img, None);
    // And a push still completes.
    let blob = Blob::random(3 << 20);
    srv.push_blob(REPO, &blob);
    // Each unread download holds at most its read-ahead (a few MiB), whatever the blob's size.
    let rss = rss_mib(srv.pid());
    assert!(rss < 1200, "RSS is {rss} MiB");
    drop((stalled, unread));
}

#[test]
fn idle_limits_cut_silent_stalled_and_unread_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = idle_config(dir.path(), "2s");
    let (srv, img) = server_with_image(dir.path(), &["-c", &cfg], 16 << 20);
    let limit = Duration::from_secs(12);
    // A socket that never sends a byte.
    let mut silent = connect_small(srv.port, b"");
    // Headers sent a byte at a time, never finished (slowloris).
    let mut slow_head = connect_small(srv.port, b"GET /v2/ HTTP/1.1\r\n");
    // A keep-alive connection left idle after one request.
    let mut idle = connect_small(
        srv.port,
        b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    );
    // An upload that stalls mid-body.
    let loc = srv.start_upload(REPO);
    let path = &loc[loc.find("/v2/").unwrap()..];
    let mut stalled = connect_small(
        srv.port,
        format!("PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nabc")
            .as_bytes(),
    );
    // A download nobody reads.
    let layer = img.layers[0].digest.clone();
    let mut unread = connect_small(
        srv.port,
        format!("GET /v2/{REPO}/blobs/{layer} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let _ = slow_head.write_all(b"Host: 127");
    // `unread` is drained only after the limit has passed: by then the server gave up.
    std::thread::sleep(Duration::from_secs(6));
    for (what, s) in [
        ("silent socket", &mut silent),
        ("unfinished headers", &mut slow_head),
        ("idle keep-alive connection", &mut idle),
        ("stalled upload", &mut stalled),
        ("unread download", &mut unread),
    ] {
        assert!(closed_within(s, limit), "{what} was kept open");
    }
    // The unread download did not arrive whole: it was cut.
    // The stalled upload kept nothing past what was stored and can be resumed.
    let st = srv.get(path);
    assert_eq!(st.status, 204, "{st}");
    // A download that is read at any pace within the limit completes.
    assert_pull_completes(&srv, &img, None);
    // A slow handler is not cut: nothing here takes long, so check that a long but
    // progressing upload (2 s between chunks is under the limit) completes.
    let blob = Blob::random(64 << 10);
    let loc = srv.start_upload(REPO);
    let path = loc[loc.find("/v2/").unwrap()..].to_owned();
    let mut s = connect_small(
        srv.port,
        format!(
            "PUT {path}?digest={} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            blob.digest,
            blob.size()
        )
        .as_bytes(),
    );
    for part in blob.bytes.chunks(blob.size() / 3 + 1) {
        std::thread::sleep(Duration::from_millis(1500));
        s.write_all(part).unwrap();
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

#[test]
fn silent_sockets_beyond_the_inherited_open_file_limit() {
    raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // systemd's default soft limit is 1,024; 256 here, with far more silent sockets than that.
    let srv = Server::launch(false, |port| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
            .arg(berth_bin())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--root"])
            .arg(&root)
            .env_remove("RUST_LOG");
        c
    });
    let img = oci_image("amd64", 1, 1000);
    srv.push_image(REPO, "v1", &img);
    // Without a raised limit the server stops accepting, and connecting starts to fail too.
    let silent: Vec<TcpStream> = (0..400)
        .filter_map(|_| try_connect_small(srv.port))
        .collect();
    assert_eq!(
        silent.len(),
        400,
        "the server stopped accepting connections"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_pull_completes(&srv, &img, None);
    drop(silent);
}

#[test]
fn a_flood_of_wrong_passwords_does_not_stall_signed_in_users() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(Command::new("htpasswd").args(["-nbBC", "12", "alice", "right"]));
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &out.stdout).unwrap();
    let cfg = dir.path().join("auth.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: r\n    path: {}\n",
            file.display()
        ),
    )
    .unwrap();
    let srv = Server::launch(false, |port| {
        let mut c = berth_cmd();
        c.args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--root"])
            .arg(dir.path().join("root"))
            .arg("-c")
            .arg(&cfg);
        c
    });
    let img = oci_image("amd64", 1, 1000);
    let push = |path: &str, body: Vec<u8>, ct: Option<&str>| {
        let mut r = srv
            .req(
                if path.contains("manifests") {
                    "PUT"
                } else {
                    "POST"
                },
                path,
            )
            .arg("-u")
            .arg("alice:right")
            .body(body);
        if let Some(ct) = ct {
            r = r.header("Content-Type", ct);
        }
        let r = r.send();
        assert_eq!(r.status, 201, "{r}");
    };
    for b in [&img.config].into_iter().chain(&img.layers) {
        push(
            &format!("/v2/{REPO}/blobs/uploads/?digest={}", b.digest),
            b.bytes.clone(),
            None,
        );
    }
    push(
        &format!("/v2/{REPO}/manifests/v1"),
        img.manifest.bytes.clone(),
        Some(OCI_MANIFEST),
    );
    // 600 wrong-password requests at once, each with its own password: more than the
    // blocking pool has threads.
    let mut flood: Vec<TcpStream> = (0..600)
        .filter_map(|i| {
            let cred = b64(format!("mallory:guess-{i}").as_bytes());
            let req = format!(
                "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {cred}\r\nConnection: close\r\n\r\n"
            );
            let mut s = try_connect_small(srv.port)?;
            s.write_all(req.as_bytes()).ok()?;
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Alice signed in before (her check is remembered): her pull is not queued behind bcrypt.
    assert_pull_completes(&srv, &img, Some("alice:right"));
    let statuses: Vec<String> = flood
        .iter_mut()
        .map(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(300)));
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(s, &mut buf);
            String::from_utf8_lossy(buf.get(9..12).unwrap_or(b"")).into_owned()
        })
        .collect();
    assert!(
        statuses.iter().all(|s| s == "401" || s == "429"),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s == "429"),
        "no check was refused as busy"
    );
}

#[test]
fn deep_json_is_not_stored_as_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, img) = server_with_image(dir.path(), &[], 1000);
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
    m["annotations"] = serde_json::json!({"a": "b"});
    let text = serde_json::to_string(&m).unwrap();
    let deep = format!(
        "{{\"x\":{}1{},{}",
        "[".repeat(100_000),
        "]".repeat(100_000),
        &text[1..]
    );
    srv.put_manifest(REPO, "deep", OCI_MANIFEST, deep.as_bytes())
        .assert_error(400, "MANIFEST_INVALID");
    assert_eq!(srv.get(&format!("/v2/{REPO}/manifests/deep")).status, 404);
}

#[test]
fn the_access_log_shows_the_query_masked_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _img) = server_with_image(dir.path(), &[], 1000);
    srv.get(&format!("/v2/{REPO}/tags/list?n=1&last=a"));
    srv.get("/token?account=x&password=hunter2");
    let long = "a".repeat(64 * 1024);
    srv.get(&format!("/v2/{long}/tags/list"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = srv.log();
        if log.contains("tags/list?n=1&last=a") && log.contains("password=***")
            || Instant::now() > deadline
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(log.contains("tags/list?n=1&last=a"), "{log}");
    assert!(log.contains("password=***"), "{log}");
    assert!(!log.contains("hunter2"), "a password was logged");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
}

#[test]
fn referrers_are_bounded_at_push_and_answered_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, img) = server_with_image(dir.path(), &[], 100);
    let empty = Blob::new(b"{}".to_vec());
    srv.push_blob(REPO, &empty);
    let referrer = |note: String| {
        let v = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example+sig",
            "config": empty.descriptor(OCI_EMPTY),
            "layers": [empty.descriptor(OCI_EMPTY)],
            "subject": img.manifest.descriptor(OCI_MANIFEST),
            "annotations": {"org.example.note": note},
        });
        Blob::new(serde_json::to_vec(&v).unwrap())
    };
    // One referrer whose annotations no referrers entry may hold: refused, with a sentence.
    let big = referrer("n".repeat(1100 << 10));
    let r = srv.put_manifest(REPO, &big.digest, OCI_MANIFEST, &big.bytes);
    r.assert_error(400, "MANIFEST_INVALID");
    assert!(r.text().contains("referrers entry"), "{r}");
    let mut pushed: Vec<String> = (0..300)
        .map(|i| {
            let a = referrer(format!("signature {i}"));
            let r = srv.put_manifest(REPO, &a.digest, OCI_MANIFEST, &a.bytes);
            assert_eq!(r.status, 201, "{r}");
            a.digest
        })
        .collect();
    pushed.sort();
    // Pages linked with `Link: rel="next"`, together every referrer once, in digest order.
    let mut seen = Vec::new();
    let mut path = format!(
        "/v2/{REPO}/referrers/{}?artifactType=application/vnd.example%2Bsig",
        img.manifest.digest
    );
    let mut pages = 0;
    loop {
        let r = srv.get(&path);
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
        let m = r.json()["manifests"].as_array().unwrap().clone();
        assert!(m.len() <= 256, "a page of {}", m.len());
        seen.extend(m.iter().map(|d| d["digest"].as_str().unwrap().to_owned()));
        pages += 1;
        match next_link(&r) {
            Some(next) => path = next,
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, pushed);
    // The client follows the pages.
    let out = run_ok(berth_cmd().args([
        "referrers",
        "--json",
        &format!("127.0.0.1:{}/{REPO}:v1", srv.port),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["referrers"].as_array().unwrap().len(), 300);
}

/// A small tmpfs mounted at a folder, unmounted when dropped (the tests run as root here).
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path }
    }

    /// Bytes in use.
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(&self.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_answers_507_once_logged_and_frees_the_failed_upload() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(dir.path().join("disk"), "24m");
    let root = disk.path.join("root");
    let srv = Server::start(&root, &[]);
    let img = oci_image("amd64", 1, 1000);
    srv.push_image(REPO, "v1", &img);
    let before = disk.used();
    // Twice a blob larger than the disk, monolithic and chunked.
    let big = Blob::random(40 << 20);
    for _ in 0..2 {
        let r = srv
            .req(
                "POST",
                &format!("/v2/{REPO}/blobs/uploads/?digest={}", big.digest),
            )
            .body(big.bytes.clone())
            .send();
        assert_eq!(r.status, 507, "{r}");
        assert!(r.text().contains("storage is full"), "{r}");
        let loc = srv.start_upload(REPO);
        let r = srv
            .req("PATCH", &srv.on(&loc))
            .header("Content-Type", "application/octet-stream")
            .body(big.bytes.clone())
            .send();
        assert_eq!(r.status, 507, "{r}");
        // The failed upload is gone, and so is its space.
        assert_eq!(srv.get(&srv.on(&loc)[srv.url("").len()..]).status, 404);
    }
    let after = disk.used();
    assert!(
        after < before + (2 << 20),
        "{} bytes still taken",
        after.saturating_sub(before)
    );
    // Everything stored before is intact, and small pushes work again.
    assert_pull_completes(&srv, &img, None);
    let small = Blob::random(1 << 20);
    srv.push_blob(REPO, &small);
    let log = srv.log();
    assert_eq!(log.matches("the storage is full").count(), 1, "{log}");
    assert!(log.contains("the storage has room again"), "{log}");
    drop(srv);
}
