//! Garbage collection: `berth gc` on a folder CNCF Distribution wrote frees what Distribution's
//! own `registry garbage-collect` frees, keeps the signatures its `--delete-untagged` would
//! delete, and leaves a tree Distribution still serves; and collection running on two replicas
//! of one bucket while clients push and pull loses no tagged image nor any of its referrers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_oci::media_type::*;
use berth_test_support::garage::Garage;
use berth_test_support::postgres::Postgres;
use berth_test_support::process::berth_cmd;
use berth_test_support::{data::*, image::*, serve::*, storage::*};

/// Distribution's `registry garbage-collect --dry-run` over `root`: the blobs it would delete.
fn distribution_would_delete(dir: &Path, root: &Path, delete_untagged: bool) -> BTreeSet<String> {
    let cfg = dir.join("gc-config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("docker-registry");
    cmd.args(["garbage-collect", "--dry-run"]);
    if delete_untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd
        .arg(&cfg)
        .env_remove("REGISTRY_STORAGE")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text.lines()
        .filter_map(|l| l.split("blob eligible for deletion: ").nth(1))
        .map(|d| d.trim().to_owned())
        .collect()
}

/// `berth gc` with these arguments: (exit code, stdout + stderr).
fn berth_gc(args: &[&str]) -> (i32, String) {
    let out = berth_cmd().arg("gc").args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The blobs a `berth gc` report lists.
fn listed_blobs(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.split(" blob ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Pulls an image through `srv` and checks every digest.
fn pulls_verified(srv: &Server, repo: &str, reference: &str, img: &Image) {
    let r = srv
        .req("GET", &format!("/v2/{repo}/manifests/{reference}"))
        .header("Accept", img.media_type)
        .send();
    assert_eq!(r.status, 200, "{repo}:{reference}: {r}");
    assert_eq!(
        digest_of(&r.body),
        img.manifest.digest,
        "{repo}:{reference}"
    );
    for b in std::iter::once(&img.config).chain(img.layers.iter()) {
        let r = srv.get(&format!("/v2/{repo}/blobs/{}", b.digest));
        assert_eq!(r.status, 200, "{repo}:{reference} blob {}: {r}", b.digest);
        assert_eq!(digest_of(&r.body), b.digest);
    }
}

/// A signature of `subject`: an artifact with the empty config and one layer.
fn signature(subject: &Image) -> (Blob, Blob) {
    let layer = Blob::random(300);
    let sig = artifact(
        "application/vnd.example.signature",
        &subject.manifest,
        subject.media_type,
        &layer,
    );
    (sig, layer)
}

#[test]
fn berth_gc_frees_what_distributions_gc_frees_keeps_referrers_and_distribution_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (a, b, c, e) = (
        oci_image("amd64", 2, 2000),
        oci_image("amd64", 1, 2000),
        oci_image("arm64", 1, 2000),
        oci_image("amd64", 1, 2000),
    );
    let (sig_a, sig_a_layer) = signature(&a);
    let (sig_b, sig_b_layer) = signature(&b);
    let empty = Blob::new(b"{}".to_vec());
    let orphan = Blob::random(5000);
    {
        let d = Server::start_distribution(&root);
        d.push_image_in_two_steps("app", "v1", &a);
        d.push_image_in_two_steps("app", "v2", &b);
        // v2 moves on: b is untagged from now on.
        d.push_image_in_two_steps("app", "v2", &c);
        for (sig, layer) in [(&sig_a, &sig_a_layer), (&sig_b, &sig_b_layer)] {
            d.push_blob_in_two_steps("app", &empty);
            d.push_blob_in_two_steps("app", layer);
            let r = d.put_manifest("app", &sig.digest, OCI_MANIFEST, &sig.bytes);
            assert_eq!(r.status, 201, "{r}");
        }
        d.push_image_in_two_steps("gone", "v1", &e);
        let r = d
            .req(
                "DELETE",
                &format!("/v2/gone/manifests/{}", e.manifest.digest),
            )
            .send();
        assert_eq!(r.status, 202, "{r}");
        d.push_blob_in_two_steps("app", &orphan);
    }
    let root_s = root.to_str().unwrap();

    // Every manifest kept: the same blobs as Distribution's collector.
    let theirs = distribution_would_delete(dir.path(), &root, false);
    let (code, out) = berth_gc(&["--root", root_s, "--grace", "0s", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    let ours = listed_blobs(&out);
    let mut want: BTreeSet<String> = e.blobs().iter().map(|b| b.digest.clone()).collect();
    want.insert(orphan.digest.clone());
    assert_eq!(
        theirs,
        want,
        "Distribution frees the deleted image and the orphan (e {:?}, orphan {})",
        e.blobs().iter().map(|b| &b.digest).collect::<Vec<_>>(),
        orphan.digest
    );
    assert_eq!(ours, theirs, "{out}");
    assert!(out.contains("would delete blob"), "{out}");

    // Untagged manifests too: Distribution also deletes a's signature, Berth keeps it, as
    // it keeps what a signature needs (its layer and the empty config a's signature shares
    // with b's).
    let theirs = distribution_would_delete(dir.path(), &root, true);
    let (code, out) = berth_gc(&[
        "--root",
        root_s,
        "--grace",
        "0s",
        "--dry-run",
        "--delete-untagged",
    ]);
    assert_eq!(code, 0, "{out}");
    let ours = listed_blobs(&out);
    assert!(ours.is_subset(&theirs), "{ours:?} vs {theirs:?}");
    let only_theirs: BTreeSet<String> = theirs.difference(&ours).cloned().collect();
    let kept: BTreeSet<String> = [&sig_a, &sig_a_layer, &empty]
        .iter()
        .map(|b| b.digest.clone())
        .collect();
    assert_eq!(only_theirs, kept);
    assert!(
        out.contains(&format!("would delete manifest app@{}", b.manifest.digest))
            && out.contains(&format!("would delete manifest app@{}", sig_b.digest))
            && !out.contains(&sig_a.digest.to_string().replace("sha256:", "app@sha256:")),
        "{out}"
    );
    assert!(
        root.join("docker/registry/v2/repositories/app/_manifests/revisions/sha256")
            .join(b.manifest.hex())
            .exists(),
        "a dry run changes nothing"
    );

    // For real; then Distribution serves what is left and its own collector finds nothing
    // more to free.
    let (code, out) = berth_gc(&["--root", root_s, "--grace", "0s", "--delete-untagged"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(listed_blobs(&out), ours, "{out}");
    assert!(
        out.contains(&format!("deleted manifest app@{}", b.manifest.digest)),
        "{out}"
    );
    assert_eq!(
        distribution_would_delete(dir.path(), &root, false),
        BTreeSet::new()
    );
    let d = Server::start_distribution(&root);
    pulls_verified(&d, "app", "v1", &a);
    pulls_verified(&d, "app", "v2", &c);
    let r = d
        .req("GET", &format!("/v2/app/manifests/{}", sig_a.digest))
        .header("Accept", OCI_MANIFEST)
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(digest_of(&r.body), sig_a.digest);
    for blob in [&sig_a_layer, &empty] {
        assert_eq!(d.get(&format!("/v2/app/blobs/{}", blob.digest)).status, 200);
    }
    for gone in [&b.manifest.digest, &sig_b.digest] {
        assert_eq!(d.get(&format!("/v2/app/manifests/{gone}")).status, 404);
    }
    assert_eq!(
        d.get(&format!("/v2/app/blobs/{}", orphan.digest)).status,
        404
    );
    // And Berth serves it too, the signature listed as a referrer of what it signs.
    drop(d);
    let srv = Server::start(&root, &[]);
    pulls_verified(&srv, "app", "v1", &a);
    let r = srv.get(&format!("/v2/app/referrers/{}", a.manifest.digest));
    assert_eq!(r.status, 200, "{r}");
    assert!(r.text().contains(&sig_a.digest), "{r}");
}

/// What a soak client pushed and expects to pull at the end.
#[derive(Default)]
struct Expected {
    /// (repository, tag) → the image it points at last.
    tags: BTreeMap<(String, String), Image>,
    /// (repository, index tag) → the index and its children.
    indexes: BTreeMap<(String, String), (Blob, Vec<Image>)>,
    /// (repository, subject digest) → signatures (manifest, layer).
    signatures: Vec<(String, String, Blob, Blob)>,
}

/// Pushes `img` as a client does: a `HEAD` per blob, uploading only what is missing (so a
/// blob that sat unreferenced is reused, the case a collection must not break).
fn push_like_a_client(srv: &Server, repo: &str, reference: &str, img: &Image) {
    for b in std::iter::once(&img.config).chain(img.layers.iter()) {
        if srv.head(&format!("/v2/{repo}/blobs/{}", b.digest)).status != 200 {
            srv.push_blob(repo, b);
        }
    }
    let r = srv.put_manifest(repo, reference, img.media_type, &img.manifest.bytes);
    assert_eq!(r.status, 201, "push {repo}:{reference}: {r}");
}

fn soak_replica(dir: &Path, g: &Garage, dsn: &str) -> Server {
    let gc = format!("gc:\n  interval: 1s\n  grace: {GRACE_SECS}s\n  deleteuntagged: true\n");
    Server::start_replica(dir, g, "soak", dsn, &gc)
}

const GRACE_SECS: u64 = 4;

#[test]
fn collection_on_two_replicas_while_clients_push_and_pull_loses_nothing_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let g = Garage::single();
    g.create_bucket("soak");
    let pg = Postgres::start();
    let dsn = pg.create_database("berth");
    let replicas = Arc::new([
        soak_replica(dir.path(), &g, &dsn),
        soak_replica(dir.path(), &g, &dsn),
    ]);
    let expected = Arc::new(Mutex::new(Expected::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let base = oci_image("amd64", 1, 4000);
    replicas[0].push_image("soak/base", "v1", &base);
    expected
        .lock()
        .unwrap()
        .tags
        .insert(("soak/base".into(), "v1".into()), base.clone());
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (replicas, expected, stop, base) = (
                replicas.clone(),
                expected.clone(),
                stop.clone(),
                base.clone(),
            );
            std::thread::spawn(move || {
                let repo = format!("soak/w{w}");
                // Blobs uploaded and left unreferenced for a while, then reused by a push.
                let mut spare: Vec<(Instant, Image)> = Vec::new();
                let mut round = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let srv = &replicas[round % 2];
                    match round % 5 {
                        // A new tag, and `latest` moved (its old image becomes garbage).
                        0 | 1 => {
                            let img = oci_image("amd64", 2, 1500);
                            // Shared with the base image, mounted across repositories.
                            let r = srv
                                .req(
                                    "POST",
                                    &format!(
                                        "/v2/{repo}/blobs/uploads/?mount={}&from=soak/base",
                                        base.layers[0].digest
                                    ),
                                )
                                .send();
                            assert_eq!(r.status, 201, "mount: {r}");
                            let tag = if round.is_multiple_of(5) {
                                format!("t{round}")
                            } else {
                                "latest".into()
                            };
                            push_like_a_client(srv, &repo, &tag, &img);
                            expected
                                .lock()
                                .unwrap()
                                .tags
                                .insert((repo.clone(), tag), img);
                        }
                        // A multi-platform index whose children are untagged.
                        2 => {
                            let kids = [oci_image("amd64", 1, 800), oci_image("arm64", 1, 800)];
                            for k in &kids {
                                push_like_a_client(srv, &repo, &k.manifest.digest, k);
                            }
                            let index = index_of(&[&kids[0], &kids[1]], OCI_INDEX);
                            let tag = format!("multi{}", round % 3);
                            let r = srv.put_manifest(&repo, &tag, OCI_INDEX, &index.bytes);
                            assert_eq!(r.status, 201, "index: {r}");
                            expected
                                .lock()
                                .unwrap()
                                .indexes
                                .insert((repo.clone(), tag), (index, kids.to_vec()));
                        }
                        // A signature of a tagged image, untagged itself.
                        3 => {
                            let subject = expected
                                .lock()
                                .unwrap()
                                .tags
                                .iter()
                                .find(|((r, _), _)| *r == repo)
                                .map(|(_, i)| i.clone());
                            if let Some(subject) = subject {
                                let (sig, layer) = signature(&subject);
                                srv.push_blob(&repo, &Blob::new(b"{}".to_vec()));
                                srv.push_blob(&repo, &layer);
                                let r =
                                    srv.put_manifest(&repo, &sig.digest, OCI_MANIFEST, &sig.bytes);
                                assert_eq!(r.status, 201, "signature: {r}");
                                expected.lock().unwrap().signatures.push((
                                    repo.clone(),
                                    subject.manifest.digest.clone(),
                                    sig,
                                    layer,
                                ));
                            }
                        }
                        // Upload blobs now, reference them later (past the grace window
                        // sometimes); and pull something tagged.
                        _ => {
                            let img = oci_image("amd64", 1, 1000);
                            srv.push_blob(&repo, &img.config);
                            srv.push_blob(&repo, &img.layers[0]);
                            spare.push((Instant::now(), img));
                            if let Some(pos) = spare.iter().position(|(at, _)| {
                                at.elapsed() > Duration::from_secs(GRACE_SECS + 1)
                            }) {
                                let (_, img) = spare.remove(pos);
                                let tag = format!("late{round}");
                                push_like_a_client(srv, &repo, &tag, &img);
                                expected
                                    .lock()
                                    .unwrap()
                                    .tags
                                    .insert((repo.clone(), tag), img);
                            }
                            let pick = expected
                                .lock()
                                .unwrap()
                                .tags
                                .iter()
                                .find(|((r, _), _)| *r == repo)
                                .map(|((r, t), i)| (r.clone(), t.clone(), i.clone()));
                            if let Some((r, t, i)) = pick {
                                pulls_verified(&replicas[(round + 1) % 2], &r, &t, &i);
                            }
                        }
                    }
                    round += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(25));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("a soak client failed");
    }
    // Collections ran meanwhile, on both replicas.
    for srv in replicas.iter() {
        assert!(
            srv.log().contains("garbage collection finished"),
            "{}",
            srv.log()
        );
    }
    let freed: usize = replicas
        .iter()
        .map(|s| {
            s.log()
                .matches("garbage collection deleted an untagged manifest")
                .count()
        })
        .sum();
    assert!(
        freed > 0,
        "moved `latest` tags left untagged images to collect"
    );

    // After the window and a run or two more, what nothing reaches is gone.
    std::thread::sleep(Duration::from_secs(GRACE_SECS + 4));
    let exp = expected.lock().unwrap();
    let mut reachable: BTreeSet<String> = BTreeSet::new();
    for ((repo, tag), img) in &exp.tags {
        for srv in replicas.iter() {
            pulls_verified(srv, repo, tag, img);
        }
        reachable.extend(img.blobs().iter().map(|b| b.digest.clone()));
    }
    for ((repo, tag), (index, kids)) in &exp.indexes {
        let r = replicas[1].get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(r.status, 200, "{repo}:{tag}: {r}");
        assert_eq!(digest_of(&r.body), index.digest);
        reachable.insert(index.digest.clone());
        for k in kids {
            pulls_verified(&replicas[0], repo, &k.manifest.digest, k);
            reachable.extend(k.blobs().iter().map(|b| b.digest.clone()));
        }
    }
    let live: BTreeSet<&String> = exp.tags.values().map(|i| &i.manifest.digest).collect();
    for (repo, subject, sig, layer) in &exp.signatures {
        if !live.contains(subject) {
            continue;
        }
        let r = replicas[0].get(&format!("/v2/{repo}/manifests/{}", sig.digest));
        assert_eq!(r.status, 200, "signature of a live image: {r}");
        assert_eq!(
            replicas[1]
                .get(&format!("/v2/{repo}/blobs/{}", layer.digest))
                .status,
            200
        );
        let r = replicas[1].get(&format!("/v2/{repo}/referrers/{subject}"));
        assert!(r.text().contains(&sig.digest), "{r}");
        reachable.extend([sig.digest.clone(), layer.digest.clone(), digest_of(b"{}")]);
    }
    let root = dir.path().join("mirror");
    register_s3_root(&root, g.s3_config("soak"));
    mirror_bucket(&root);
    let blobs_dir = root.join("docker/registry/v2/blobs/sha256");
    let mut stored = BTreeSet::new();
    for prefix in std::fs::read_dir(&blobs_dir).unwrap() {
        for hex in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            stored.insert(format!(
                "sha256:{}",
                hex.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    let extra: Vec<_> = stored.difference(&reachable).collect();
    assert!(
        extra.is_empty(),
        "blobs nothing reaches outlived the window: {extra:?}"
    );
    let missing: Vec<_> = reachable.difference(&stored).collect();
    assert!(missing.is_empty(), "{missing:?}");
}
