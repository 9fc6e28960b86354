//! `skopeo`, the independent registry client the end-to-end tests check Berth against.

use std::process::{Command, Output, Stdio};

use crate::data::text;

/// Runs `skopeo --insecure-policy ARGS` with a private HOME and XDG_RUNTIME_DIR, so that no
/// credentials of the machine are used; returns its output (not checked).
pub fn skopeo(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo (apt-get install skopeo)")
}

/// [`skopeo`], asserting success; returns its stdout.
#[track_caller]
pub fn skopeo_ok(args: &[&str]) -> Vec<u8> {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out.stdout
}
