//! A strict config.yml: every key is honoured, accepted with a warning, or refused at start
//! with its name; Distribution's `http.headers` and `storage.maintenance.readonly` are
//! honoured (a read-only registry serves skopeo's pull and refuses its push).

use std::path::Path;

use berth_oci::media_type::*;
use berth_test_support::process::berth_cmd;
use berth_test_support::{data::*, image::*, layout::*, serve::*, skopeo::*};

/// `berth serve -c` on `yaml`, expected to refuse to start: its stderr.
fn refused(dir: &Path, yaml: &str) -> String {
    let cfg = dir.join(format!("refused-{}.yml", random_suffix()));
    std::fs::write(&cfg, yaml).unwrap();
    let out = berth_cmd()
        .args(["serve", "--addr", "127.0.0.1:0", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {yaml}");
    text(&out.stderr)
}

#[test]
fn debians_default_config_serves_with_its_headers_and_says_what_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // Debian's /etc/docker/registry/config.yml, with a folder of the test's and without the
    // htpasswd section (it names a folder, not a file).
    let debian = include_str!("../data/debian-config.yml")
        .replace("/var/lib/docker-registry", &root.display().to_string());
    let debian = debian.split("auth:").next().unwrap().to_owned()
        + &debian[debian.find("health:").unwrap()..];
    let srv = Server::start_with_config(&root, &debian, &[]);
    let r = srv.get("/v2/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let r = srv.get("/v2/nothing/here/tags/list");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "errors carry it too"
    );
    let log = srv.log();
    for key in ["log.fields", "storage.cache", "health"] {
        assert!(
            log.contains(&format!("config key {key} has no effect")),
            "{key} is warned about: {log}"
        );
    }
}

#[test]
fn keys_berth_does_not_honour_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\n",
        dir.path().join("root").display()
    );
    let err = refused(
        dir.path(),
        &format!("{base}proxy:\n  remoteurl: https://registry-1.docker.io\n"),
    );
    assert!(err.contains("config key proxy is not supported"), "{err}");
    let err = refused(
        dir.path(),
        "storage:\n  fileystem:\n    rootdirectory: /tmp/x\n",
    );
    assert!(
        err.contains("unknown config key storage.fileystem"),
        "{err}"
    );
    let err = refused(
        dir.path(),
        &format!(
            "{base}notifications:\n  endpoints:\n    - name: audit\n      url: http://127.0.0.1:1/\n"
        ),
    );
    assert!(err.contains("notifications"), "{err}");
    let err = refused(
        dir.path(),
        &format!("{base}http:\n  tls:\n    clientcas: [/etc/ca.pem]\n"),
    );
    assert!(err.contains("http.tls.clientcas"), "{err}");
}

#[test]
fn a_read_only_registry_serves_pulls_and_refuses_pushes_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let writable = format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
        root.display()
    );
    let img = oci_image("amd64", 2, 20_000);
    {
        let srv = Server::start_with_config(&root, &writable, &[]);
        srv.push_image("lib/app", "v1", &img);
    }
    let read_only = writable + "  maintenance:\n    readonly:\n      enabled: true\n";
    let srv = Server::start_with_config(&root, &read_only, &[]);
    let out = dir.path().join("pulled");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/lib/app:v1", srv.host()),
        &format!("oci:{}:v1", out.display()),
    ]);
    assert_eq!(layout_ref(&out, "v1").0, img.manifest.digest);

    let other = oci_image("amd64", 1, 5_000);
    let src = dir.path().join("src");
    let mut blobs = vec![&other.config];
    blobs.extend(other.layers.iter());
    write_layout(&src, &blobs, &[("t", OCI_MANIFEST, &other.manifest)]);
    let push = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:t", src.display()),
        &format!("docker://{}/lib/app:v2", srv.host()),
    ]);
    assert!(!push.status.success());
    assert!(
        text(&push.stderr).contains("read-only"),
        "{}",
        text(&push.stderr)
    );
    srv.req("POST", "/v2/lib/app/blobs/uploads/")
        .send()
        .assert_error(405, "UNSUPPORTED");
    srv.req(
        "DELETE",
        &format!("/v2/lib/app/manifests/{}", img.manifest.digest),
    )
    .send()
    .assert_error(405, "UNSUPPORTED");
    assert_eq!(srv.get("/v2/lib/app/manifests/v1").status, 200);
    assert!(srv.log().contains("read-only"));
}
