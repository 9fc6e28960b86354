//! `berth serve` with external token authentication (`auth.token` in config.yml) over TLS: the
//! test signs Docker registry tokens (ES256 JWTs) with a key whose certificate is the
//! `rootcertbundle`, and sends them with curl.

use std::ffi::OsStr;

use crate::authsupport::*;
use serde_json::{Value, json};

const REALM: &str = "https://auth.example.invalid/token";
const SERVICE: &str = "berth-test";
const ISSUER: &str = "test-issuer";

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    signer: Signer,
    srv: Server,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let signer = Signer::new("test token signer");
        let bundle = dir.path().join("token-signers.pem");
        std::fs::write(&bundle, &signer.cert_pem).unwrap();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nauth:\n  token:\n    realm: {REALM}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                bundle.display()
            ),
        )
        .unwrap();
        let srv = Server::start_tls(
            &dir.path().join("root"),
            Some(&pki),
            &[OsStr::new("-c"), cfg.as_os_str()],
        );
        Setup {
            dir,
            pki,
            signer,
            srv,
        }
    }

    /// A valid token of subject `ci` granting `access`.
    fn token(&self, access: Value) -> String {
        self.signer
            .sign(&claims(ISSUER, SERVICE, "ci", 300, access))
    }

    fn req(&self, method: &str, path: &str, token: Option<&str>) -> Resp {
        let auth = token.map_or(Auth::None, |t| Auth::Bearer(t.to_owned()));
        curl(method, &self.srv.url(path))
            .cacert(&self.pki)
            .auth(&auth)
            .send()
    }

    /// Pushes a new image to `repo:v1` with a token granting push.
    fn push(&self, repo: &str) -> TestImage {
        let img = TestImage::random();
        let t = self.token(json!([repo_access(repo, &["pull", "push"])]));
        img.push_with_curl(&self.srv, Some(&self.pki), repo, "v1", &Auth::Bearer(t));
        img
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }
}

fn challenge(scope: Option<&str>, error: Option<&str>) -> String {
    let mut c = format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\"");
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        c.push_str(&format!(",error=\"{e}\""));
    }
    c
}

fn assert_401(r: &Resp, scope: Option<&str>, error: Option<&str>) {
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(
        r.header("www-authenticate"),
        Some(challenge(scope, error).as_str()),
        "{r}"
    );
    if !r.body.is_empty() {
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{r}");
    }
}

#[test]
fn pull_only_token_pulls_but_push_gets_an_insufficient_scope_challenge() {
    let s = Setup::start();
    let img = s.push("team/a");
    let pull = s.token(json!([repo_access("team/a", &["pull"])]));

    let r = s.req("GET", "/v2/team/a/manifests/v1", Some(&pull));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.manifest);
    let r = s.req(
        "GET",
        &format!("/v2/team/a/blobs/{}", digest_of(&img.layer)),
        Some(&pull),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.layer);

    let before = snapshot(&s.root());
    let r = s.req("POST", "/v2/team/a/blobs/uploads/", Some(&pull));
    assert_401(
        &r,
        Some("repository:team/a:pull,push"),
        Some("insufficient_scope"),
    );
    let other = TestImage::random();
    let r = other.put_manifest(&s.srv, Some(&s.pki), "team/a", "v2", &Auth::Bearer(pull));
    assert_401(
        &r,
        Some("repository:team/a:pull,push"),
        Some("insufficient_scope"),
    );
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed the storage"
    );
}

#[test]
fn token_for_one_repository_is_refused_on_another() {
    let s = Setup::start();
    s.push("team/a");
    s.push("team/b");
    let pull_a = s.token(json!([repo_access("team/a", &["pull"])]));
    let r = s.req("GET", "/v2/team/a/manifests/v1", Some(&pull_a));
    assert_eq!(r.status, 200, "{r}");
    let r = s.req("GET", "/v2/team/b/manifests/v1", Some(&pull_a));
    assert_401(
        &r,
        Some("repository:team/b:pull"),
        Some("insufficient_scope"),
    );
    // A prefix of the name is not the name.
    let r = s.req("GET", "/v2/team/a/b/manifests/v1", Some(&pull_a));
    assert_401(
        &r,
        Some("repository:team/a/b:pull"),
        Some("insufficient_scope"),
    );

    // Push rights on A do not push to B.
    let before = snapshot(&s.root());
    let push_a = s.token(json!([repo_access("team/a", &["pull", "push"])]));
    let img = TestImage::random();
    let r = curl(
        "POST",
        &s.srv.url(&format!(
            "/v2/team/b/blobs/uploads/?digest={}",
            digest_of(&img.config)
        )),
    )
    .cacert(&s.pki)
    .auth(&Auth::Bearer(push_a.clone()))
    .body(img.config.clone())
    .send();
    assert_401(
        &r,
        Some("repository:team/b:pull,push"),
        Some("insufficient_scope"),
    );
    let r = img.put_manifest(&s.srv, Some(&s.pki), "team/b", "v1", &Auth::Bearer(push_a));
    assert_401(
        &r,
        Some("repository:team/b:pull,push"),
        Some("insufficient_scope"),
    );
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed the storage"
    );
}

#[test]
fn expired_foreign_unsigned_and_tampered_tokens_are_refused_and_change_nothing() {
    let s = Setup::start();
    let img = s.push("team/a");
    let all = json!([
        repo_access("team/a", &["pull", "push"]),
        repo_access("team/new", &["pull", "push"])
    ]);
    let good = claims(ISSUER, SERVICE, "ci", 300, all.clone());
    let stranger = Signer::new("unknown signer");
    let tampered = {
        // A valid signature over a pull-only token, with the payload swapped for one granting push.
        let t = s.token(json!([repo_access("team/a", &["pull"])]));
        let parts: Vec<&str> = t.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(&serde_json::to_vec(&good).unwrap()),
            parts[2]
        )
    };
    let hmac = {
        // The classic key-confusion attack: HS256 keyed with the public certificate.
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(s.signer.kid.clone());
        jsonwebtoken::encode(
            &h,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(s.signer.cert_pem.as_bytes()),
        )
        .unwrap()
    };
    let mut not_yet = good.clone();
    not_yet["nbf"] = json!(now() + 3600);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            s.signer
                .sign(&claims(ISSUER, SERVICE, "ci", -3600, all.clone())),
            "token_expired",
        ),
        (
            "wrong audience",
            s.signer
                .sign(&claims(ISSUER, "another-service", "ci", 300, all.clone())),
            "token_wrong_audience",
        ),
        (
            "wrong issuer",
            s.signer
                .sign(&claims("someone-else", SERVICE, "ci", 300, all.clone())),
            "token_wrong_issuer",
        ),
        (
            "not yet valid",
            s.signer.sign(&not_yet),
            "token_not_yet_valid",
        ),
        (
            "unknown key with its kid",
            stranger.sign(&good),
            "token_unknown_key",
        ),
        (
            "unknown key without kid",
            stranger.sign_kid(&good, None),
            "token_bad_signature",
        ),
        (
            "unknown key claiming the trusted kid",
            stranger.sign_kid(&good, Some(&s.signer.kid)),
            "token_bad_signature",
        ),
        ("tampered payload", tampered, "token_bad_signature"),
        ("alg none", unsigned_token(&good), "token_alg_none"),
        (
            "HS256 with the certificate as secret",
            hmac,
            "token_alg_hmac",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "token_malformed"),
    ];
    let before = snapshot(&s.root());
    let new_img = TestImage::random();
    for (what, token, _) in &cases {
        let r = s.req("GET", "/v2/team/a/manifests/v1", Some(token));
        assert_401(&r, Some("repository:team/a:pull"), Some("invalid_token"));
        let r = curl(
            "POST",
            &s.srv.url(&format!(
                "/v2/team/new/blobs/uploads/?digest={}",
                digest_of(&new_img.config)
            )),
        )
        .cacert(&s.pki)
        .auth(&Auth::Bearer(token.clone()))
        .body(new_img.config.clone())
        .send();
        assert_eq!(r.status, 401, "{what}: {r}");
        let r = new_img.put_manifest(
            &s.srv,
            Some(&s.pki),
            "team/a",
            "v1",
            &Auth::Bearer(token.clone()),
        );
        assert_eq!(r.status, 401, "{what}: {r}");
    }
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused tokens changed the storage"
    );
    // The tag still names the original image.
    let ok = s.token(json!([repo_access("team/a", &["pull"])]));
    let r = s.req("GET", "/v2/team/a/manifests/v1", Some(&ok));
    assert_eq!(r.body, img.manifest);

    let log = s.srv.log();
    let reasons: Vec<String> = lines_of(&log, "berth_auth::audit")
        .iter()
        .filter_map(|l| field(l, "reason"))
        .collect();
    for (what, token, reason) in &cases {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{what}: no audit line with reason {reason}; reasons: {reasons:?}"
        );
        assert!(
            !log.contains(token.as_str()),
            "{what}: the token is in the server log"
        );
    }
}

#[test]
fn challenge_without_a_token_names_exactly_the_needed_scope() {
    let s = Setup::start();
    let d = digest_of(b"x");
    let cases = [
        ("GET", "/v2/".to_owned(), None),
        (
            "GET",
            "/v2/team/a/manifests/v1".to_owned(),
            Some("repository:team/a:pull"),
        ),
        (
            "HEAD",
            format!("/v2/team/a/blobs/{d}"),
            Some("repository:team/a:pull"),
        ),
        (
            "GET",
            "/v2/team/a/tags/list".to_owned(),
            Some("repository:team/a:pull"),
        ),
        (
            "PUT",
            "/v2/team/a/manifests/v1".to_owned(),
            Some("repository:team/a:pull,push"),
        ),
        (
            "POST",
            "/v2/team/a/blobs/uploads/".to_owned(),
            Some("repository:team/a:pull,push"),
        ),
        (
            "DELETE",
            format!("/v2/team/a/manifests/{d}"),
            Some("repository:team/a:delete"),
        ),
        ("GET", "/v2/_catalog".to_owned(), Some("registry:catalog:*")),
        (
            "POST",
            format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a"),
            Some("repository:team/b:pull,push repository:team/a:pull"),
        ),
    ];
    for (method, path, scope) in &cases {
        let r = s.req(method, path, None);
        assert_401(&r, *scope, None);
    }
    // A valid token that grants nothing still opens GET /v2/ (the login check).
    let empty = s.token(json!([]));
    let r = s.req("GET", "/v2/", Some(&empty));
    assert_eq!(r.status, 200, "{r}");
    // Basic credentials are answered with the Bearer challenge: get a token first.
    let r = curl("GET", &s.srv.url("/v2/team/a/manifests/v1"))
        .cacert(&s.pki)
        .auth(&Auth::basic("alice", "password"))
        .send();
    assert_401(&r, Some("repository:team/a:pull"), None);
}

/// `berth serve` over TLS with `auth.token` whose realm is a [`TokenServer`] in the test:
/// `ci` may pull and push everywhere, `reader` may pull `team/**`, anonymous clients may pull
/// `public/**`.
struct WithTokenServer {
    dir: tempfile::TempDir,
    pki: Pki,
    tokens: TokenServer,
    srv: Server,
    ci_pw: String,
    reader_pw: String,
}

impl WithTokenServer {
    fn start() -> WithTokenServer {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let signer = Signer::new("test token server");
        let bundle = dir.path().join("token-signers.pem");
        std::fs::write(&bundle, &signer.cert_pem).unwrap();
        let ci_pw = format!("ci-{}", random_hex(8));
        let reader_pw = format!("reader-{}", random_hex(8));
        let policy: Policy = Box::new(|user, repo| match user {
            Some("ci") => vec!["pull", "push"],
            Some("reader") if repo.starts_with("team/") => vec!["pull"],
            _ if repo.starts_with("public/") => vec!["pull"],
            _ => vec![],
        });
        let tokens = TokenServer::start(
            signer,
            ISSUER,
            SERVICE,
            &[("ci", &ci_pw), ("reader", &reader_pw)],
            policy,
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nauth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                tokens.realm(),
                bundle.display()
            ),
        )
        .unwrap();
        let srv = Server::start_tls(
            &dir.path().join("root"),
            Some(&pki),
            &[OsStr::new("-c"), cfg.as_os_str()],
        );
        WithTokenServer {
            dir,
            pki,
            tokens,
            srv,
            ci_pw,
            reader_pw,
        }
    }

    fn cert_dir(&self) -> &str {
        self.pki.cert_dir.to_str().unwrap()
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.srv.host())
    }

    fn push_with_skopeo(&self, creds: &str, repo_tag: &str) -> (TestImage, std::process::Output) {
        let img = TestImage::random();
        let layout = img.write_oci_layout(
            &self.dir.path().join(format!("layout-{}", random_hex(4))),
            "v1",
        );
        let out = skopeo(&[
            "copy",
            "--dest-creds",
            creds,
            "--dest-cert-dir",
            self.cert_dir(),
            &layout,
            &self.reference(repo_tag),
        ]);
        (img, out)
    }
}

fn assert_skopeo_auth_failure(out: &std::process::Output, what: &str) {
    eprintln!("{what}: skopeo said: {}", text(&out.stderr).trim());
    assert!(!out.status.success(), "{what}: skopeo succeeded");
    assert!(
        says_access_denied(&out.stderr),
        "{what}: skopeo failed for another reason: {}",
        text(&out.stderr)
    );
}

#[test]
fn skopeo_follows_the_bearer_challenge_to_an_external_token_server() {
    let t = WithTokenServer::start();

    // Push: skopeo gets a token for pull,push on team/app from the realm and pushes with it.
    let (img, out) = t.push_with_skopeo(&format!("ci:{}", t.ci_pw), "team/app:v1");
    assert!(
        out.status.success(),
        "skopeo copy as ci failed: {}",
        text(&out.stderr)
    );
    let seen = t.tokens.seen();
    assert!(
        seen.iter().any(|r| r.user.as_deref() == Some("ci")
            && r.service.as_deref() == Some(SERVICE)
            && r.status == 200
            && r.scopes
                .iter()
                .any(|s| s == "repository:team/app:pull,push")),
        "skopeo did not ask the token server for push on team/app: {seen:?}"
    );

    // Pull with a pull-only user: inspect, then copy out and compare the layer.
    let reader = format!("reader:{}", t.reader_pw);
    let out = skopeo_ok(&[
        "inspect",
        "--creds",
        &reader,
        "--cert-dir",
        t.cert_dir(),
        &t.reference("team/app:v1"),
    ]);
    let info: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["Digest"], img.digest().as_str(), "{info}");
    let pulled = t.dir.path().join("pulled");
    skopeo_ok(&[
        "copy",
        "--src-creds",
        &reader,
        "--src-cert-dir",
        t.cert_dir(),
        &t.reference("team/app:v1"),
        &format!("oci:{}:v1", pulled.display()),
    ]);
    assert_eq!(
        std::fs::read(
            pulled
                .join("blobs/sha256")
                .join(&digest_of(&img.layer)["sha256:".len()..])
        )
        .ok()
        .as_deref(),
        Some(img.layer.as_slice())
    );

    // The pull-only user cannot push; nothing is stored.
    let before = snapshot(&t.root());
    let (_, out) = t.push_with_skopeo(&reader, "team/app:v2");
    assert_skopeo_auth_failure(&out, "reader pushing");
    assert_eq!(
        snapshot(&t.root()),
        before,
        "a refused push changed storage"
    );

    // A wrong password is refused by the token server, and skopeo fails.
    let out = skopeo(&[
        "inspect",
        "--creds",
        "ci:wrong-password",
        "--cert-dir",
        t.cert_dir(),
        &t.reference("team/app:v1"),
    ]);
    assert_skopeo_auth_failure(&out, "wrong password");
    assert!(
        t.tokens
            .seen()
            .iter()
            .any(|r| r.user.as_deref() == Some("ci") && r.status == 401),
        "the token server did not see the wrong password"
    );

    // Anonymous: public/** only.
    let (public, out) = t.push_with_skopeo(&format!("ci:{}", t.ci_pw), "public/tool:v1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = skopeo_ok(&[
        "inspect",
        "--no-creds",
        "--cert-dir",
        t.cert_dir(),
        &t.reference("public/tool:v1"),
    ]);
    let info: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["Digest"], public.digest().as_str(), "{info}");
    let out = skopeo(&[
        "inspect",
        "--no-creds",
        "--cert-dir",
        t.cert_dir(),
        &t.reference("team/app:v1"),
    ]);
    assert_skopeo_auth_failure(&out, "anonymous inspect of team/app");
}

#[test]
fn cross_repository_mount_without_pull_on_the_source_starts_an_upload_instead() {
    let s = Setup::start();
    let img = s.push("team/a");
    let layer = digest_of(&img.layer);
    let link = |repo: &str| {
        s.root().join(format!(
            "docker/registry/v2/repositories/{repo}/_layers/sha256/{}/link",
            &layer["sha256:".len()..]
        ))
    };
    let post = |repo: &str, query: &str, token: &str| {
        s.req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?{query}"),
            Some(token),
        )
    };

    // Push on the target, no pull on the source: 202, a plain upload session, no blob.
    let push_b = s.token(json!([repo_access("team/b", &["pull", "push"])]));
    let r = post("team/b", &format!("mount={layer}&from=team/a"), &push_b);
    assert_eq!(r.status, 202, "{r}");
    assert_eq!(r.header("docker-content-digest"), None, "{r}");
    let location = r.header("location").expect("Location").to_owned();
    assert!(location.contains("/v2/team/b/blobs/uploads/"), "{location}");
    let r = s.req("HEAD", &format!("/v2/team/b/blobs/{layer}"), Some(&push_b));
    assert_eq!(r.status, 404, "the blob leaked into team/b: {r}");
    assert!(!link("team/b").exists());
    // The session is a normal upload: the client sends the bytes itself.
    let url = if location.starts_with('/') {
        s.srv.url(&location)
    } else {
        location.clone()
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = curl("PUT", &format!("{url}{sep}digest={layer}"))
        .cacert(&s.pki)
        .auth(&Auth::Bearer(push_b.clone()))
        .header("Content-Type: application/octet-stream")
        .body(img.layer.clone())
        .send();
    assert_eq!(r.status, 201, "{r}");
    assert!(link("team/b").exists());

    // Naming `from` twice does not mount from the repository that was not authorized.
    let push_c_pull_x = s.token(json!([
        repo_access("team/c", &["pull", "push"]),
        repo_access("team/x", &["pull"])
    ]));
    for query in [
        format!("mount={layer}&from=team/x&from=team/a"),
        format!("mount={layer}&from=team/a&from=team/x"),
        format!("mount={layer}&from=Bad..Name&from=team/a"),
    ] {
        let r = post("team/c", &query, &push_c_pull_x);
        assert_ne!(r.status, 201, "{query}: {r}");
        assert_eq!(r.header("docker-content-digest"), None, "{query}: {r}");
        assert!(!link("team/c").exists(), "{query}: the blob leaked");
    }

    // Pull on the source too: 201, mounted.
    let push_d_pull_a = s.token(json!([
        repo_access("team/d", &["pull", "push"]),
        repo_access("team/a", &["pull"])
    ]));
    let r = post(
        "team/d",
        &format!("mount={layer}&from=team/a"),
        &push_d_pull_a,
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.header("docker-content-digest"), Some(layer.as_str()));
    let r = s.req(
        "GET",
        &format!("/v2/team/d/blobs/{layer}"),
        Some(&push_d_pull_a),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.layer);

    // Pull on the source but no push on the target: refused with the challenge for both.
    let pull_only = s.token(json!([
        repo_access("team/e", &["pull"]),
        repo_access("team/a", &["pull"])
    ]));
    let r = post("team/e", &format!("mount={layer}&from=team/a"), &pull_only);
    assert_401(
        &r,
        Some("repository:team/e:pull,push repository:team/a:pull"),
        Some("insufficient_scope"),
    );
    assert!(!link("team/e").exists());
}

#[test]
fn malformed_and_huge_authorization_headers_get_401_with_the_bearer_challenge() {
    let s = Setup::start();
    let img = s.push("team/a");
    let before = snapshot(&s.root());
    let new_img = TestImage::random();
    for (what, value) in malformed_authorizations() {
        let h = format!("Authorization: {value}");
        let r = curl("GET", &s.srv.url("/v2/team/a/manifests/v1"))
            .cacert(&s.pki)
            .header(&h)
            .send();
        assert_401(&r, Some("repository:team/a:pull"), Some("invalid_token"));
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}: {r}");
        let r = curl(
            "POST",
            &s.srv.url(&format!(
                "/v2/team/a/blobs/uploads/?digest={}",
                digest_of(&new_img.config)
            )),
        )
        .cacert(&s.pki)
        .header(&h)
        .body(new_img.config.clone())
        .send();
        assert_eq!(r.status, 401, "{what}: {r}");
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}: {r}");
    }
    let huge = s.dir.path().join("huge");
    for (version, size) in HUGE_HEADERS {
        write_huge_authorization(&huge, size);
        let started = std::time::Instant::now();
        let r = curl("GET", &s.srv.url("/v2/team/a/manifests/v1"))
            .cacert(&s.pki)
            .arg(version)
            .header_file(&huge)
            .send();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_401(&r, Some("repository:team/a:pull"), Some("invalid_token"));
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{version}: {r}");
    }
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed storage"
    );
    let ok = s.token(json!([repo_access("team/a", &["pull"])]));
    let r = s.req("GET", "/v2/team/a/manifests/v1", Some(&ok));
    assert_eq!(r.body, img.manifest);
}
