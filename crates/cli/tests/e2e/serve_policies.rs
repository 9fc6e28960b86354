//! Lifecycle policies with real clients: skopeo cannot move an immutable tag nor push past a
//! quota (it reports the registry's sentence), `berth gc --policies` deletes what retention
//! judges (and lists it first in a dry run), and a policy file with an error stops `berth
//! serve` at start with the line.

use std::path::Path;

use berth_oci::media_type::*;
use berth_test_support::process::berth_cmd;
use berth_test_support::{data::*, image::*, layout::*, serve::*, skopeo::*, storage::*};
use serde_json::Value;

const POLICIES: &str = "\
immutable:
  - repositories: prod/*
    tags: ['v*']
quotas:
  - repositories: small/*
    bytes: 100kB
retention:
  - repositories: ci/**
    keep:
      recent: 1
";

fn config(dir: &Path, root: &Path, policies: &str) -> std::path::PathBuf {
    let file = dir.join("policies.yml");
    std::fs::write(&file, policies).unwrap();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\ngc:\n  enabled: false\npolicies: {}\n",
            root.display(),
            file.display()
        ),
    )
    .unwrap();
    cfg
}

fn layout_of(dir: &Path, name: &str, img: &Image) -> String {
    let path = dir.join(name);
    let mut blobs = vec![&img.config];
    blobs.extend(img.layers.iter());
    write_layout(&path, &blobs, &[("t", OCI_MANIFEST, &img.manifest)]);
    format!("oci:{}:t", path.display())
}

fn copy(src: &str, dest: &str) -> (bool, String) {
    let out = skopeo(&["copy", "--dest-tls-verify=false", src, dest]);
    (out.status.success(), text(&out.stderr))
}

#[test]
fn skopeo_meets_immutable_tags_and_quotas_with_the_registrys_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = config(dir.path(), &root, POLICIES);
    let srv = Server::start_with_config(&root, &std::fs::read_to_string(&cfg).unwrap(), &[]);
    let a = oci_image("amd64", 1, 10_000);
    let b = oci_image("amd64", 1, 10_000);
    let (la, lb) = (
        layout_of(dir.path(), "a", &a),
        layout_of(dir.path(), "b", &b),
    );
    let dest = |r: &str| format!("docker://{}/{r}", srv.host());

    let (ok, err) = copy(&la, &dest("prod/app:v1"));
    assert!(ok, "{err}");
    let (ok, err) = copy(&lb, &dest("prod/app:v1"));
    assert!(!ok, "moving an immutable tag must fail");
    assert!(
        err.contains("immutable"),
        "skopeo shows the registry's sentence: {err}"
    );
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &dest("prod/app:v1"),
    ]);
    assert_eq!(raw, a.manifest.bytes, "the tag still names the first image");
    // Not covered by the rule: moves.
    assert!(copy(&la, &dest("prod/app:latest")).0);
    assert!(copy(&lb, &dest("prod/app:latest")).0);
    let r = srv
        .req(
            "DELETE",
            &format!("/v2/prod/app/manifests/{}", a.manifest.digest),
        )
        .send();
    r.assert_error(403, "DENIED");

    // 200 kB of layer into a 100 kB quota: refused with the figure, nothing tagged.
    let big = oci_image("amd64", 1, 200_000);
    let (ok, err) = copy(&layout_of(dir.path(), "big", &big), &dest("small/app:v1"));
    assert!(!ok, "a push past the quota must fail");
    assert!(err.contains("quota of 100000 bytes"), "{err}");
    assert_eq!(srv.get("/v2/small/app/tags/list").status, 404);
    // One that fits goes in.
    let (ok, err) = copy(&la, &dest("small/app:v1"));
    assert!(ok, "{err}");
}

#[test]
fn berth_gc_policies_lists_then_deletes_what_retention_judges() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = config(dir.path(), &root, POLICIES);
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    let mut srv = Server::start_with_config(&root, &yaml, &[]);
    let imgs: Vec<Image> = (0..3).map(|_| oci_image("amd64", 1, 5_000)).collect();
    for (i, img) in imgs.iter().enumerate() {
        srv.push_image("ci/app", &format!("t{i}"), img);
        // Push times a second apart at least, so that "most recent" is unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    srv.push_image("prod/app", "v1", &imgs[0]);
    srv.terminate(std::time::Duration::from_secs(10));

    let gc = |extra: &[&str]| {
        let out = berth_cmd()
            .args(["gc", "-c"])
            .arg(&cfg)
            .args(["--policies", "--grace", "0s"])
            .args(extra)
            .output()
            .unwrap();
        let t = text(&out.stdout) + &text(&out.stderr);
        assert!(out.status.success(), "{t}");
        t
    };
    let dry = gc(&["--dry-run"]);
    for t in ["t0", "t1"] {
        assert!(
            dry.contains(&format!("would delete tag ci/app:{t}")),
            "{dry}"
        );
    }
    assert!(
        !dry.contains("ci/app:t2") && !dry.contains("prod/app"),
        "{dry}"
    );
    assert!(
        dry.contains("2 tags would be deleted by retention"),
        "{dry}"
    );
    let done = gc(&[]);
    assert!(done.contains("deleted tag ci/app:t0"), "{done}");
    // The image of t1 is gone, blobs and all; t0's manifest lives on in prod/app.
    assert!(
        !blob_path(&root, &imgs[1].layers[0].digest).exists(),
        "t1's layer {} deleted:\n{done}\ndry run:\n{dry}",
        imgs[1].layers[0].digest
    );
    assert!(
        blob_path(&root, &imgs[0].layers[0].digest).exists(),
        "{done}"
    );

    let srv = Server::start_with_config(&root, &yaml, &[]);
    let tags: Value = srv.get("/v2/ci/app/tags/list").json();
    assert_eq!(tags["tags"], serde_json::json!(["t2"]));
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/ci/app:t2", srv.host()),
    ]);
    assert_eq!(raw, imgs[2].manifest.bytes);
    let r = srv.get(&format!("/v2/prod/app/blobs/{}", imgs[0].layers[0].digest));
    assert_eq!(r.status, 200);
}

#[test]
fn a_policy_file_with_an_error_stops_the_server_at_start_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = config(
        dir.path(),
        &root,
        "retention:\n  - repositories: ci/**\n    keep:\n      recnet: 3\n",
    );
    let out = berth_cmd()
        .args(["serve", "--addr", "127.0.0.1:0", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("policies.yml") && err.contains("line 4") && err.contains("recnet"),
        "{err}"
    );
    // Quotas without the index they count in: refused too, naming the setting.
    let cfg = config(
        dir.path(),
        &root,
        "quotas:\n  - repositories: '*'\n    bytes: 1GB\n",
    );
    let yaml = std::fs::read_to_string(&cfg).unwrap() + "database:\n  enabled: false\n";
    std::fs::write(&cfg, yaml).unwrap();
    let out = berth_cmd()
        .args(["serve", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("quotas") && err.contains("database"), "{err}");
}
