//! `berth serve` with htpasswd (HTTP Basic) authentication over TLS, configured by flags, by a
//! CNCF Distribution config.yml and by `REGISTRY_*` variables; skopeo and curl as clients; the
//! audit lines of pushes, deletes and failed logins.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::authsupport::*;

const REALM: &str = "Server test";

/// A temp folder with a test CA and server certificate, and an htpasswd file with `alice`.
struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    htpasswd: PathBuf,
    password: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let htpasswd = dir.path().join("htpasswd");
        let password = format!("pw-{}", random_hex(8));
        write_htpasswd(&htpasswd, &[("alice", &password)]);
        Setup {
            dir,
            pki,
            htpasswd,
            password,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A config.yml with only the `auth.htpasswd` section.
    fn auth_config(&self) -> PathBuf {
        let p = self.dir.path().join("auth-only.yml");
        std::fs::write(
            &p,
            format!(
                "auth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n",
                self.htpasswd.display()
            ),
        )
        .unwrap();
        p
    }

    /// Starts berth with TLS and htpasswd given by flags and `-c auth-only.yml`.
    fn start(&self, extra: &[&str]) -> Server {
        let cfg = self.auth_config();
        let mut args: Vec<&OsStr> = vec![OsStr::new("-c"), cfg.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        Server::start_tls(&self.root(), Some(&self.pki), &args)
    }

    fn creds(&self) -> String {
        format!("alice:{}", self.password)
    }

    fn cert_dir(&self) -> &str {
        self.pki.cert_dir.to_str().unwrap()
    }

    fn layout(&self, img: &TestImage) -> String {
        img.write_oci_layout(
            &self.dir.path().join(format!("layout-{}", random_hex(4))),
            "v1",
        )
    }
}

/// Asserts a 401 with the Basic challenge and an UNAUTHORIZED body.
fn assert_basic_401(r: &Resp) {
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Basic realm=\"{REALM}\"").as_str()),
        "{r}"
    );
    assert_eq!(r.error_code(), "UNAUTHORIZED", "{r}");
}

/// skopeo pushes and inspects with the right credentials over TLS (trusting only the test CA);
/// wrong or no credentials are refused by skopeo and curl.
fn check_htpasswd_tls_round_trip(srv: &Server, s: &Setup, repo: &str) {
    let img = TestImage::random();
    let dest = format!("docker://{}/{repo}:v1", srv.host());
    skopeo_ok(&[
        "copy",
        "--dest-creds",
        &s.creds(),
        "--dest-cert-dir",
        s.cert_dir(),
        &s.layout(&img),
        &dest,
    ]);

    // The registry holds exactly the pushed manifest.
    let r = curl("GET", &srv.url(&format!("/v2/{repo}/manifests/v1")))
        .cacert(&s.pki)
        .auth(&Auth::basic("alice", &s.password))
        .header(&format!("Accept: {OCI_MANIFEST}"))
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.version, "2", "curl and berth negotiate HTTP/2 over TLS");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(img.digest().as_str())
    );
    assert_eq!(r.body, img.manifest);

    let out = skopeo_ok(&[
        "inspect",
        "--creds",
        &s.creds(),
        "--cert-dir",
        s.cert_dir(),
        &dest,
    ]);
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["Digest"], img.digest().as_str(), "{info}");

    // Wrong password and no credentials: skopeo fails.
    for auth in [vec!["--creds", "alice:wrong-password"], vec!["--no-creds"]] {
        let mut args = vec!["inspect", "--cert-dir", s.cert_dir()];
        args.extend(auth.iter().copied());
        args.push(&dest);
        let out = skopeo(&args);
        assert!(!out.status.success(), "skopeo {args:?} succeeded");
        let err = text(&out.stderr).to_ascii_lowercase();
        assert!(
            err.contains("unauthorized") || err.contains("401"),
            "skopeo {args:?}: {err}"
        );
    }

    // Wrong password, unknown user, no credentials: curl gets 401 with the Basic challenge.
    for auth in [
        Auth::basic("alice", "wrong-password"),
        Auth::basic("mallory", &s.password),
        Auth::None,
    ] {
        for path in ["/v2/".to_owned(), format!("/v2/{repo}/manifests/v1")] {
            let r = curl("GET", &srv.url(&path))
                .cacert(&s.pki)
                .auth(&auth)
                .send();
            assert_basic_401(&r);
        }
    }
}

#[test]
fn htpasswd_over_tls_with_flags_pushes_and_inspects_with_skopeo_and_refuses_bad_credentials() {
    let s = Setup::new();
    let srv = s.start(&[]);
    check_htpasswd_tls_round_trip(&srv, &s, "team/app");
}

#[test]
fn htpasswd_and_tls_from_a_distribution_config_yml() {
    let s = Setup::new();
    let cfg = s.dir.path().join("config.yml");
    let srv = Server::launch(true, |port| {
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\nauth:\n  htpasswd:\n    realm: {REALM}\n    path: {htpasswd}\n",
                root = s.root().display(),
                cert = s.pki.cert_file.display(),
                key = s.pki.key_file.display(),
                htpasswd = s.htpasswd.display(),
            ),
        )
        .unwrap();
        let mut c = berth_cmd();
        c.arg("serve").arg("-c").arg(&cfg);
        c
    });
    check_htpasswd_tls_round_trip(&srv, &s, "cfg/app");
    assert!(
        s.root()
            .join("docker/registry/v2/repositories/cfg/app")
            .is_dir(),
        "the image is stored under storage.filesystem.rootdirectory"
    );
}

#[test]
fn htpasswd_and_tls_from_registry_environment_variables() {
    let s = Setup::new();
    let srv = Server::launch(true, |port| {
        let mut c = berth_cmd();
        c.arg("serve")
            .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", s.root())
            .env("REGISTRY_HTTP_TLS_CERTIFICATE", &s.pki.cert_file)
            .env("REGISTRY_HTTP_TLS_KEY", &s.pki.key_file)
            .env("REGISTRY_AUTH_HTPASSWD_REALM", REALM)
            .env("REGISTRY_AUTH_HTPASSWD_PATH", &s.htpasswd);
        c
    });
    check_htpasswd_tls_round_trip(&srv, &s, "env/app");
    assert!(
        s.root()
            .join("docker/registry/v2/repositories/env/app")
            .is_dir(),
        "the image is stored under REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
    );
}

#[test]
fn skopeo_push_with_wrong_password_fails_and_stores_nothing() {
    let s = Setup::new();
    let srv = s.start(&[]);
    let before = snapshot(&s.root());
    let img = TestImage::random();
    let layout = s.layout(&img);
    for creds in ["alice:wrong-password", &format!("mallory:{}", s.password)] {
        let out = skopeo(&[
            "copy",
            "--dest-creds",
            creds,
            "--dest-cert-dir",
            s.cert_dir(),
            &layout,
            &format!("docker://{}/team/app:v1", srv.host()),
        ]);
        assert!(!out.status.success(), "skopeo copy with {creds} succeeded");
    }
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused pushes changed the storage"
    );
    // Without TLS trust the push fails too (the test CA is not in the system store).
    let out = skopeo(&[
        "copy",
        "--dest-creds",
        &s.creds(),
        &layout,
        &format!("docker://{}/team/app:v1", srv.host()),
    ]);
    assert!(
        !out.status.success(),
        "skopeo trusted the test CA without --dest-cert-dir"
    );
    let err = text(&out.stderr);
    assert!(err.contains("x509") || err.contains("certificate"), "{err}");
    assert_eq!(snapshot(&s.root()), before);
}

#[test]
fn audit_lines_record_push_delete_and_failed_login_and_never_secrets() {
    let s = Setup::new();
    let srv = s.start(&["--delete-enabled"]);
    let img = TestImage::random();
    skopeo_ok(&[
        "copy",
        "--dest-creds",
        &s.creds(),
        "--dest-cert-dir",
        s.cert_dir(),
        &s.layout(&img),
        &format!("docker://{}/team/app:v1", srv.host()),
    ]);
    let r = curl(
        "DELETE",
        &srv.url(&format!("/v2/team/app/manifests/{}", img.digest())),
    )
    .cacert(&s.pki)
    .auth(&Auth::basic("alice", &s.password))
    .send();
    assert_eq!(r.status, 202, "{r}");
    let wrong = format!("wrong-{}", random_hex(8));
    let r = curl("GET", &srv.url("/v2/team/app/tags/list"))
        .cacert(&s.pki)
        .auth(&Auth::basic("alice", &wrong))
        .send();
    assert_eq!(r.status, 401, "{r}");

    let log = srv.log();
    let audit = lines_of(&log, "berth::audit");
    let find = |action: &str, digest: &str| {
        audit.iter().find(|l| {
            field(l, "action").as_deref() == Some(action)
                && field(l, "digest").as_deref() == Some(digest)
        })
    };
    for action in ["push", "delete"] {
        let line = find(action, &img.digest())
            .unwrap_or_else(|| panic!("no berth::audit {action} line of the manifest in:\n{log}"));
        assert_eq!(field(line, "user").as_deref(), Some("alice"), "{line}");
        assert_eq!(
            field(line, "repository").as_deref(),
            Some("team/app"),
            "{line}"
        );
        assert_eq!(
            field(line, "remote").as_deref(),
            Some("127.0.0.1"),
            "{line}"
        );
    }
    // The blobs' pushes are audited too.
    for blob in [&img.config, &img.layer] {
        assert!(
            find("push", &digest_of(blob)).is_some(),
            "blob push not audited:\n{log}"
        );
    }

    let failures = lines_of(&log, "berth_auth::audit");
    let failure = failures
        .iter()
        .find(|l| field(l, "reason").as_deref() == Some("wrong_password"))
        .unwrap_or_else(|| panic!("no failed-login audit line in:\n{log}"));
    assert_eq!(
        field(failure, "user").as_deref(),
        Some("alice"),
        "{failure}"
    );
    assert_eq!(
        field(failure, "remote").as_deref(),
        Some("127.0.0.1"),
        "{failure}"
    );

    for secret in [
        s.password.clone(),
        wrong.clone(),
        b64(format!("alice:{}", s.password).as_bytes()),
        b64(format!("alice:{wrong}").as_bytes()),
    ] {
        assert!(
            !log.contains(&secret),
            "the server log contains a secret:\n{log}"
        );
    }
}

#[test]
fn malformed_huge_and_bearer_authorization_headers_get_401_and_change_nothing() {
    let s = Setup::new();
    let mut srv = s.start(&[]);
    let img = TestImage::random();
    img.push_with_curl(
        &srv,
        Some(&s.pki),
        "team/app",
        "v1",
        &Auth::basic("alice", &s.password),
    );
    let before = snapshot(&s.root());
    let new_img = TestImage::random();
    let mut values = malformed_authorizations();
    // A token is no use where Basic credentials are expected; two headers are refused too.
    values.push((
        "a bearer token",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into(),
    ));
    for (what, value) in &values {
        let h = format!("Authorization: {value}");
        for (method, path) in [
            ("GET", "/v2/".to_owned()),
            ("GET", "/v2/team/app/manifests/v1".to_owned()),
            ("DELETE", format!("/v2/team/app/manifests/{}", img.digest())),
        ] {
            let r = curl(method, &srv.url(&path))
                .cacert(&s.pki)
                .header(&h)
                .send();
            assert_basic_401(&r);
            assert!(!r.body.is_empty(), "{what}: {method} {path}: no error body");
        }
        let r = curl(
            "POST",
            &srv.url(&format!(
                "/v2/team/new/blobs/uploads/?digest={}",
                digest_of(&new_img.config)
            )),
        )
        .cacert(&s.pki)
        .header(&h)
        .body(new_img.config.clone())
        .send();
        assert_basic_401(&r);
        let r = curl("PUT", &srv.url("/v2/team/app/manifests/v1"))
            .cacert(&s.pki)
            .header(&h)
            .header(&format!("Content-Type: {OCI_MANIFEST}"))
            .body(new_img.manifest.clone())
            .send();
        assert_basic_401(&r);
    }
    // Right credentials sent twice: refused (exactly one Authorization header is accepted).
    let good = format!(
        "Authorization: Basic {}",
        b64(format!("alice:{}", s.password).as_bytes())
    );
    let r = curl("GET", &srv.url("/v2/team/app/manifests/v1"))
        .cacert(&s.pki)
        .header(&good)
        .header(&good)
        .send();
    assert_basic_401(&r);

    // Huge headers: the registry's 401, promptly, over both protocols.
    let huge = s.dir.path().join("huge");
    for (version, size) in HUGE_HEADERS {
        write_huge_authorization(&huge, size);
        let started = std::time::Instant::now();
        let r = curl("GET", &srv.url("/v2/team/app/manifests/v1"))
            .cacert(&s.pki)
            .arg(version)
            .header_file(&huge)
            .send();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{version}: took {:?}",
            started.elapsed()
        );
        assert_eq!(r.version, version.trim_start_matches("--http"), "{r}");
        assert_basic_401(&r);
    }

    srv.assert_running();
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed the storage"
    );
    let r = curl("GET", &srv.url("/v2/team/app/manifests/v1"))
        .cacert(&s.pki)
        .auth(&Auth::basic("alice", &s.password))
        .send();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.manifest);
    let reasons: Vec<String> = lines_of(&srv.log(), "berth_auth::audit")
        .iter()
        .filter_map(|l| field(l, "reason"))
        .collect();
    for reason in [
        "basic_bad_base64",
        "unknown_authorization_scheme",
        "authorization_header_too_large",
        "multiple_authorization_headers",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no audit line with reason {reason}: {reasons:?}"
        );
    }
}
