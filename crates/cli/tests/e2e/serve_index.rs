//! The metadata index: a tree CNCF Distribution filled is indexed on first start, a deleted or
//! damaged index file is rebuilt, a SIGKILL between the storage and index writes leaves
//! neither a phantom nor a lost tag, and replicas on one bucket and one PostgreSQL see each
//! other's pushes at once, keep serving pulls when PostgreSQL goes away and refuse pushes
//! with a retryable 503 until it is back.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_oci::media_type::*;
use berth_test_support::garage::Garage;
use berth_test_support::postgres::Postgres;
use berth_test_support::process::berth_cmd;
use berth_test_support::{curl::*, image::*, net::*, serve::*};

/// Waits until the server's log says the start-up reconcile finished.
fn wait_reconciled(srv: &Server) {
    let until = Instant::now() + Duration::from_secs(120);
    while !srv.log().contains("index reconciled with storage") {
        assert!(
            Instant::now() < until,
            "no reconcile finished:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn catalog(srv: &Server) -> Vec<String> {
    let r = srv.get("/v2/_catalog");
    assert_eq!(r.status, 200, "{r}");
    names(&r.json(), "repositories")
}

fn tags(srv: &Server, repo: &str) -> Vec<String> {
    let r = srv.get(&format!("/v2/{repo}/tags/list"));
    assert_eq!(r.status, 200, "{r}");
    names(&r.json(), "tags")
}

/// `berth index rebuild [--check]` with these arguments: (exit code, stdout + stderr).
fn rebuild(args: &[&str]) -> (i32, String) {
    let out = berth_cmd()
        .args(["index", "rebuild"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn root_arg(root: &Path) -> Vec<&str> {
    vec!["--root", root.to_str().unwrap()]
}

#[test]
fn a_tree_distribution_filled_is_indexed_at_first_start_and_a_lost_or_damaged_index_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let imgs: Vec<Image> = (0..3).map(|_| oci_image("amd64", 1, 500)).collect();
    {
        let d = Server::start_distribution(&root);
        for (i, repo) in ["team/b", "team/a", "alpha"].iter().enumerate() {
            for tag in ["v1", "latest", "V2"] {
                d.push_image_in_two_steps(repo, tag, &imgs[i]);
            }
        }
    }
    let index_file = root.join("berth/index.db");
    assert!(!index_file.exists());
    let srv = Server::start(&root, &[]);
    wait_reconciled(&srv);
    assert!(
        index_file.exists(),
        "the embedded index lives under the root"
    );
    let want_repos = vec!["alpha", "team/a", "team/b"];
    assert_eq!(catalog(&srv), want_repos);
    assert_eq!(tags(&srv, "team/a"), vec!["V2", "latest", "v1"]);
    // Pages, in order, with Link headers.
    let r = srv.get("/v2/_catalog?n=2");
    assert_eq!(names(&r.json(), "repositories"), vec!["alpha", "team/a"]);
    assert!(
        r.header("link")
            .is_some_and(|l| l.contains("last=team%2Fa") || l.contains("last=team/a")),
        "{r}"
    );
    let r = srv.get("/v2/team/a/tags/list?n=1&last=V2");
    assert_eq!(names(&r.json(), "tags"), vec!["latest"]);
    let (code, out) = rebuild(&root_arg(&root));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 repositories, 3 manifests, 9 tags"), "{out}");

    // Listings come from the index: a tag written into storage behind Berth's back is not
    // listed until a rebuild, which --check reports and rebuild adds.
    let tags_dir = root.join("docker/registry/v2/repositories/team/a/_manifests/tags");
    copy_dir(&tags_dir.join("v1"), &tags_dir.join("sideways"));
    assert_eq!(tags(&srv, "team/a"), vec!["V2", "latest", "v1"]);
    let (code, out) = rebuild(&[&["--check"][..], &root_arg(&root)].concat());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("team/a: 1 tags not indexed") && out.contains("sideways"),
        "{out}"
    );
    assert!(out.contains("hint: run `berth index rebuild`"), "{out}");
    let (code, out) = rebuild(&root_arg(&root));
    assert_eq!(code, 0, "{out}");
    assert_eq!(tags(&srv, "team/a"), vec!["V2", "latest", "sideways", "v1"]);
    drop(srv);

    // The index file deleted: the next start indexes storage again.
    std::fs::remove_file(&index_file).unwrap();
    let srv = Server::start(&root, &[]);
    wait_reconciled(&srv);
    assert_eq!(catalog(&srv), want_repos);
    assert_eq!(tags(&srv, "team/b"), vec!["V2", "latest", "v1"]);
    drop(srv);

    // A damaged file stops the server with the setting and the way out.
    for f in ["index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(root.join("berth").join(f));
    }
    std::fs::write(&index_file, vec![7u8; 4096]).unwrap();
    let out = berth_cmd()
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{}", free_port()),
            "--root",
        ])
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("database.path") && err.contains("damaged"),
        "{err}"
    );
    assert!(err.contains("hint: run `berth index rebuild`"), "{err}");
    let (code, out) = rebuild(&root_arg(&root));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("moved it to"), "{out}");
    let srv = Server::start(&root, &[]);
    assert_eq!(catalog(&srv), want_repos);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn sigkill_between_storage_and_index_writes_leaves_no_phantom_and_no_lost_tag() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let repo = "crash/index";
    let imgs: Vec<Image> = (0..4).map(|_| oci_image("amd64", 1, 100)).collect();
    let mut srv = Server::start(&root, &[]);
    for img in &imgs {
        srv.push_blob(repo, &img.config);
        srv.push_blob(repo, &img.layers[0]);
    }
    wait_reconciled(&srv);
    let port = srv.port;
    let pushers: Vec<_> = (0..16)
        .map(|c| {
            let manifests: Vec<Vec<u8>> = imgs.iter().map(|i| i.manifest.bytes.clone()).collect();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    let m = &manifests[i % manifests.len()];
                    let mut req = format!(
                        "PUT /v2/{repo}/manifests/c{c}-{i} HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
    std::thread::sleep(Duration::from_millis(700));
    srv.kill9();
    for p in pushers {
        p.join().unwrap();
    }
    // What the kill left: the tags storage holds.
    let tag_dir = root.join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags"
    ));
    let stored: BTreeSet<String> = std::fs::read_dir(&tag_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("current/link").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        stored.len() > 16,
        "pushes went through before the kill: {}",
        stored.len()
    );

    let srv = Server::start(&root, &[]);
    wait_reconciled(&srv);
    let listed: BTreeSet<String> = tags(&srv, repo).into_iter().collect();
    assert_eq!(
        listed, stored,
        "after the restart the index lists exactly what storage holds"
    );
    for t in listed.iter().take(200) {
        let r = srv.head(&format!("/v2/{repo}/manifests/{t}"));
        assert_eq!(r.status, 200, "listed tag {t} resolves");
    }
    let (code, out) = rebuild(&[&["--check"][..], &root_arg(&root)].concat());
    assert_eq!(code, 0, "{out}");
}

fn pg_replica(dir: &Path, g: &Garage, dsn: &str) -> Server {
    Server::start_replica(dir, g, "shared", dsn, "")
}

#[test]
fn replicas_on_one_bucket_and_one_postgres_share_the_index_and_survive_its_loss() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("shared");
    let mut pg = Postgres::start();
    let dsn = pg.create_database("berth");
    let a = pg_replica(dir.path(), &g, &dsn);
    let b = pg_replica(dir.path(), &g, &dsn);
    wait_reconciled(&a);
    wait_reconciled(&b);
    let x = oci_image("amd64", 1, 1000);
    let y = oci_image("arm64", 1, 1000);
    assert_eq!(a.push_image("pg/one", "v1", &x).status, 201);
    // Seen by the other replica at once, from the shared index.
    assert_eq!(tags(&b, "pg/one"), vec!["v1"]);
    assert_eq!(catalog(&b), vec!["pg/one"]);
    assert_eq!(
        pg.psql(
            "berth",
            "SELECT count(*) FROM tags WHERE deleted_at IS NULL"
        ),
        "1"
    );
    assert_eq!(b.push_image("pg/one", "v2", &y).status, 201);
    assert_eq!(tags(&a, "pg/one"), vec!["v1", "v2"]);

    // Pulls are recorded in batches (GET, not HEAD), within seconds, from any replica.
    assert_eq!(
        b.head(&format!("/v2/pg/one/manifests/{}", y.manifest.digest))
            .status,
        200
    );
    assert_eq!(b.get("/v2/pg/one/manifests/v1").status, 200);
    let pulled = |d: &str| {
        pg.psql(
            "berth",
            &format!("SELECT last_pulled_at IS NOT NULL FROM manifests WHERE digest = '{d}'"),
        )
    };
    let until = Instant::now() + Duration::from_secs(20);
    while pulled(&x.manifest.digest) != "t" {
        assert!(Instant::now() < until, "the pull of v1 was never recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(pulled(&y.manifest.digest), "f", "a HEAD is no pull");

    // Both replicas push one tag at once: storage and index end with the same winner.
    let (ha, hb) = (a.host(), b.host());
    let threads: Vec<_> = [
        (ha, x.manifest.bytes.clone()),
        (hb, y.manifest.bytes.clone()),
    ]
    .into_iter()
    .map(|(h, m)| {
        std::thread::spawn(move || {
            for _ in 0..20 {
                let r = Req::new("PUT", format!("http://{h}/v2/pg/one/manifests/race"))
                    .header("Content-Type", OCI_MANIFEST)
                    .body(m.clone())
                    .send();
                assert_eq!(r.status, 201, "{r}");
            }
        })
    })
    .collect();
    for t in threads {
        t.join().unwrap();
    }
    let served = a.get("/v2/pg/one/manifests/race");
    let winner = served.header("docker-content-digest").unwrap().to_owned();
    assert_eq!(
        pg.psql(
            "berth",
            "SELECT digest FROM tags WHERE repository = 'pg/one' AND tag = 'race'"
        ),
        winner,
        "the index names the manifest storage serves"
    );

    // PostgreSQL goes away: pulls go on, listings walk storage, pushes get a retryable 503.
    pg.stop();
    let r = a.get("/v2/pg/one/manifests/v1");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(tags(&b, "pg/one"), vec!["race", "v1", "v2"]);
    let r = Req::new("PUT", a.url("/v2/pg/one/manifests/v3"))
        .header("Content-Type", OCI_MANIFEST)
        .body(x.manifest.bytes.clone())
        .send();
    assert_eq!(r.status, 503, "{r}");
    assert!(r.text().contains("UNAVAILABLE"), "{r}");
    assert!(r.header("retry-after").is_some(), "{r}");
    assert_eq!(
        b.get("/v2/pg/one/manifests/v3").status,
        404,
        "nothing was stored"
    );
    assert!(a.log().contains("the index is unavailable"), "{}", a.log());

    // Back again: pushes succeed and both replicas list them.
    pg.restart();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Req::new("PUT", a.url("/v2/pg/one/manifests/v3"))
            .header("Content-Type", OCI_MANIFEST)
            .body(x.manifest.bytes.clone())
            .send();
        if r.status == 201 {
            break;
        }
        assert!(
            Instant::now() < until,
            "pushes resume once PostgreSQL is back: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(tags(&b, "pg/one"), vec!["race", "v1", "v2", "v3"]);
    let cfg = dir.path().join("rebuild.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n{}database:\n  dsn: {dsn}\n",
            g.distribution_yaml("shared", "/registry")
        ),
    )
    .unwrap();
    let (code, out) = rebuild(&["--check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_unreachable_database_stops_the_server_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  dsn: postgres://berth:s3cret@127.0.0.1:{port}/berth\n",
            dir.path().join("root").display()
        ),
    )
    .unwrap();
    let out = berth_cmd()
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
    assert!(err.contains("database.dsn"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the password is never shown: {err}"
    );
    assert!(err.contains("hint:"), "{err}");
}
