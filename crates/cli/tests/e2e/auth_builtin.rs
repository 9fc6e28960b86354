//! `berth serve --auth-config access.yml`: the built-in token issuer over TLS with a test CA.
//! Users come from an htpasswd file, an access list with groups, globs and anonymous rules
//! decides what each token grants; skopeo and curl are the clients. Also: the OAuth2 POST form,
//! the signing key kept across restarts, cross-repository mounts, malformed and forged
//! credentials, and the same setup given as a CNCF Distribution config.yml.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::authsupport::*;
use base64::Engine as _;
use serde_json::{Value, json};

const SERVICE: &str = "berth-test";
const ISSUER: &str = "berth-test-issuer";
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// The access list of every test:
/// * `alice` (group `admins`): everything, and the catalog;
/// * `bob` and `dave` (group `devs`): pull and push on `team/*` (one path segment);
/// * `carol`: pull on `team/**` (any depth);
/// * any logged-in user: pull on `shared/[a-c]*`;
/// * everybody, anonymous included: pull on `public/**`.
const ACCESS_YML: &str = r#"# berth built-in token issuer
service: berth-test
issuer: berth-test-issuer
htpasswd: htpasswd
token_ttl: 600
groups:
  admins: [alice]
  devs: [bob, dave]
access:
  - who: group:admins
    repos: "**"
    actions: ["*"]
    catalog: true
  - who: group:devs
    repos: "team/*"
    actions: [pull, push]
  - who: user:carol
    repos: "team/**"
    actions: [pull]
  - who: authenticated
    repos: "shared/[a-c]*"
    actions: [pull]
  - who: anonymous
    repos: "public/**"
    actions: [pull]
"#;

/// A temp folder with a test CA, an htpasswd file of [`USERS`] and `access.yml`.
struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    passwords: BTreeMap<&'static str, String>,
    access: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let passwords: BTreeMap<&'static str, String> = USERS
            .iter()
            .map(|u| (*u, format!("{u}-pw-{}", random_hex(8))))
            .collect();
        let entries: Vec<(&str, &str)> = passwords.iter().map(|(u, p)| (*u, p.as_str())).collect();
        write_htpasswd(&dir.path().join("htpasswd"), &entries);
        let access = dir.path().join("access.yml");
        std::fs::write(&access, ACCESS_YML).unwrap();
        Setup {
            dir,
            pki,
            passwords,
            access,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn key_file(&self) -> PathBuf {
        self.root().join("berth/token-signing-key.pem")
    }

    /// `berth serve --tls-cert --tls-key --auth-config access.yml`.
    fn start(&self) -> Server {
        Server::start_tls(
            &self.root(),
            Some(&self.pki),
            &[OsStr::new("--auth-config"), self.access.as_os_str()],
        )
    }

    fn pw(&self, user: &str) -> &str {
        &self.passwords[user]
    }

    fn creds(&self, user: &str) -> String {
        format!("{user}:{}", self.pw(user))
    }

    fn basic(&self, user: &str) -> Auth {
        Auth::basic(user, self.pw(user))
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

    /// `GET /token?service=..&scope=..` as `user` (`None`: anonymous).
    fn token_request(&self, srv: &Server, user: Option<&str>, scopes: &[&str]) -> Resp {
        let mut q = format!("/token?service={SERVICE}");
        for s in scopes {
            q.push_str("&scope=");
            q.push_str(&s.replace(':', "%3A").replace('/', "%2F"));
        }
        let auth = user.map_or(Auth::None, |u| self.basic(u));
        curl("GET", &srv.url(&q))
            .cacert(&self.pki)
            .auth(&auth)
            .send()
    }

    /// A token for `user` asking for `scopes`; asserts that the endpoint answers 200.
    fn token(&self, srv: &Server, user: Option<&str>, scopes: &[&str]) -> String {
        let r = self.token_request(srv, user, scopes);
        assert_eq!(r.status, 200, "token for {user:?} {scopes:?}: {r}");
        let v = r.json();
        assert_eq!(v["token"], v["access_token"], "{v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Pushes a new image to `repo:v1` with curl as `user`.
    fn push(&self, srv: &Server, user: &str, repo: &str) -> TestImage {
        let img = TestImage::random();
        let t = self.token(srv, Some(user), &[&format!("repository:{repo}:pull,push")]);
        img.push_with_curl(srv, Some(&self.pki), repo, "v1", &Auth::Bearer(t));
        img
    }

    fn req(&self, srv: &Server, method: &str, path: &str, auth: &Auth) -> Resp {
        curl(method, &srv.url(path))
            .cacert(&self.pki)
            .auth(auth)
            .send()
    }
}

/// The claims of a JWT (not verified).
fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("JWT part");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url JWT part");
    serde_json::from_slice(&raw).expect("JSON JWT part")
}

/// The `access` claim as `type:name:actions` strings, sorted.
fn granted(token: &str) -> Vec<String> {
    let mut out: Vec<String> = jwt_part(token, 1)["access"]
        .as_array()
        .expect("access claim")
        .iter()
        .map(|a| {
            let actions: Vec<&str> = a["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            format!(
                "{}:{}:{}",
                a["type"].as_str().unwrap(),
                a["name"].as_str().unwrap(),
                actions.join(",")
            )
        })
        .collect();
    out.sort();
    out
}

fn bearer_challenge(srv: &Server, scope: Option<&str>, error: Option<&str>) -> String {
    let mut c = format!(
        "Bearer realm=\"{}\",service=\"{SERVICE}\"",
        srv.url("/token")
    );
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        c.push_str(&format!(",error=\"{e}\""));
    }
    c
}

/// Asserts a 401 with the Bearer challenge for `scope` and the `UNAUTHORIZED` body.
fn assert_bearer_401(srv: &Server, r: &Resp, scope: Option<&str>, error: Option<&str>) {
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(
        r.header("www-authenticate"),
        Some(bearer_challenge(srv, scope, error).as_str()),
        "{r}"
    );
    if !r.body.is_empty() {
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{r}");
    }
}

/// Asserts that skopeo failed because of authentication or authorization.
fn assert_auth_failure(out: &std::process::Output, what: &str) {
    eprintln!("{what}: skopeo said: {}", text(&out.stderr).trim());
    assert!(!out.status.success(), "{what}: skopeo succeeded");
    assert!(
        says_access_denied(&out.stderr),
        "{what}: skopeo failed for another reason: {}",
        text(&out.stderr)
    );
}

/// The scenario every way of configuring the issuer must pass: a user with push rights pushes
/// with skopeo; a pull-only user inspects and copies the image out, but cannot push; anonymous
/// clients are refused outside `public/**`.
fn check_push_pull_with_skopeo(srv: &Server, s: &Setup, repo: &str) {
    let img = TestImage::random();
    let dest = format!("docker://{}/{repo}:v1", srv.host());
    skopeo_ok(&[
        "copy",
        "--dest-creds",
        &s.creds("bob"),
        "--dest-cert-dir",
        s.cert_dir(),
        &s.layout(&img),
        &dest,
    ]);

    // The pull-only user sees exactly the pushed image.
    let out = skopeo_ok(&[
        "inspect",
        "--creds",
        &s.creds("carol"),
        "--cert-dir",
        s.cert_dir(),
        &dest,
    ]);
    let info: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["Digest"], img.digest().as_str(), "{info}");
    let pulled = s.dir.path().join(format!("pulled-{}", random_hex(4)));
    skopeo_ok(&[
        "copy",
        "--src-creds",
        &s.creds("carol"),
        "--src-cert-dir",
        s.cert_dir(),
        &dest,
        &format!("oci:{}:v1", pulled.display()),
    ]);
    let layer = pulled
        .join("blobs/sha256")
        .join(&digest_of(&img.layer)["sha256:".len()..]);
    assert_eq!(
        std::fs::read(&layer).ok().as_deref(),
        Some(img.layer.as_slice()),
        "the pulled layer is the pushed one"
    );

    // ...but cannot push: nothing is stored, the tag does not appear.
    let before = snapshot(&s.root());
    let other = TestImage::random();
    let out = skopeo(&[
        "copy",
        "--dest-creds",
        &s.creds("carol"),
        "--dest-cert-dir",
        s.cert_dir(),
        &s.layout(&other),
        &format!("docker://{}/{repo}:v2", srv.host()),
    ]);
    assert_auth_failure(&out, "pull-only user pushing");
    assert_eq!(
        snapshot(&s.root()),
        before,
        "a refused push changed the storage"
    );
    let admin = Auth::Bearer(s.token(srv, Some("alice"), &[&format!("repository:{repo}:pull")]));
    let r = s.req(srv, "GET", &format!("/v2/{repo}/manifests/v2"), &admin);
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN", "{r}");
    let r = s.req(
        srv,
        "HEAD",
        &format!("/v2/{repo}/blobs/{}", digest_of(&other.layer)),
        &admin,
    );
    assert_eq!(r.status, 404, "the refused push's layer is not there: {r}");

    // Anonymous clients may not read this repository.
    let out = skopeo(&["inspect", "--no-creds", "--cert-dir", s.cert_dir(), &dest]);
    assert_auth_failure(&out, "anonymous inspect of a private repository");

    // The audit log names the pusher and the refused user.
    let log = srv.log();
    let pushed = lines_of(&log, "berth::audit").into_iter().any(|l| {
        field(l, "action").as_deref() == Some("push")
            && field(l, "user").as_deref() == Some("bob")
            && field(l, "repository").as_deref() == Some(repo)
            && field(l, "digest").as_deref() == Some(img.digest().as_str())
    });
    assert!(pushed, "no audit line of bob's manifest push in:\n{log}");
    let refused = lines_of(&log, "berth_auth::audit").into_iter().any(|l| {
        field(l, "user").as_deref() == Some("carol")
            && field(l, "reason").as_deref() == Some("insufficient_scope")
    });
    assert!(refused, "no audit line of carol's refused push in:\n{log}");
    for pw in s.passwords.values() {
        assert!(!log.contains(pw.as_str()), "a password is in the log");
    }
}

#[test]
fn pusher_pushes_with_skopeo_and_a_pull_only_user_pulls_but_cannot_push() {
    let s = Setup::new();
    let srv = s.start();
    check_push_pull_with_skopeo(&srv, &s, "team/app");
}

#[test]
fn builtin_issuer_and_tls_from_a_distribution_config_yml() {
    let s = Setup::new();
    let cfg = s.dir.path().join("config.yml");
    let srv = Server::launch(true, |port| {
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\nauth:\n  builtin:\n    config: {access}\n",
                root = s.root().display(),
                cert = s.pki.cert_file.display(),
                key = s.pki.key_file.display(),
                access = s.access.display(),
            ),
        )
        .unwrap();
        let mut c = berth_cmd();
        c.arg("serve").arg("--config").arg(&cfg);
        c
    });
    check_push_pull_with_skopeo(&srv, &s, "team/cfg");
    assert!(
        s.root()
            .join("docker/registry/v2/repositories/team/cfg")
            .is_dir(),
        "the image is stored under storage.filesystem.rootdirectory"
    );
    assert!(
        s.key_file().is_file(),
        "the signing key is kept in the storage root"
    );
}

#[test]
fn anonymous_clients_pull_where_the_access_list_allows_and_nowhere_else() {
    let s = Setup::new();
    let srv = s.start();
    let public = s.push(&srv, "alice", "public/tools");
    let private = s.push(&srv, "alice", "private/tools");

    // skopeo without credentials: public yes, private no.
    let out = skopeo_ok(&[
        "inspect",
        "--no-creds",
        "--cert-dir",
        s.cert_dir(),
        &format!("docker://{}/public/tools:v1", srv.host()),
    ]);
    let info: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["Digest"], public.digest().as_str(), "{info}");
    let out = skopeo(&[
        "inspect",
        "--no-creds",
        "--cert-dir",
        s.cert_dir(),
        &format!("docker://{}/private/tools:v1", srv.host()),
    ]);
    assert_auth_failure(&out, "anonymous inspect of private/tools");

    // curl: an anonymous token carries what the rules allow, nothing more.
    let t = s.token(
        &srv,
        None,
        &[
            "repository:public/tools:pull,push",
            "repository:private/tools:pull",
        ],
    );
    assert_eq!(granted(&t), ["repository:public/tools:pull"]);
    assert_eq!(
        jwt_part(&t, 1)["sub"],
        "",
        "an anonymous token has no subject"
    );
    let anon = Auth::Bearer(t);
    let r = s.req(&srv, "GET", "/v2/public/tools/manifests/v1", &anon);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, public.manifest);
    let r = s.req(
        &srv,
        "GET",
        &format!("/v2/public/tools/blobs/{}", digest_of(&public.layer)),
        &anon,
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, public.layer);
    let r = s.req(&srv, "GET", "/v2/private/tools/manifests/v1", &anon);
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:private/tools:pull"),
        Some("insufficient_scope"),
    );
    let r = s.req(
        &srv,
        "GET",
        &format!("/v2/private/tools/blobs/{}", digest_of(&private.layer)),
        &anon,
    );
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:private/tools:pull"),
        Some("insufficient_scope"),
    );
    // No token at all: the challenge.
    let r = s.req(&srv, "GET", "/v2/public/tools/manifests/v1", &Auth::None);
    assert_bearer_401(&srv, &r, Some("repository:public/tools:pull"), None);

    // Anonymous pushes and catalog listing are refused and store nothing.
    let before = snapshot(&s.root());
    let other = TestImage::random();
    let r = curl(
        "POST",
        &srv.url(&format!(
            "/v2/public/tools/blobs/uploads/?digest={}",
            digest_of(&other.config)
        )),
    )
    .cacert(&s.pki)
    .auth(&anon)
    .body(other.config.clone())
    .send();
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:public/tools:pull,push"),
        Some("insufficient_scope"),
    );
    let r = other.put_manifest(&srv, Some(&s.pki), "public/tools", "v1", &anon);
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:public/tools:pull,push"),
        Some("insufficient_scope"),
    );
    let t = s.token(&srv, None, &["registry:catalog:*"]);
    assert!(granted(&t).is_empty());
    let r = s.req(&srv, "GET", "/v2/_catalog", &Auth::Bearer(t));
    assert_bearer_401(
        &srv,
        &r,
        Some("registry:catalog:*"),
        Some("insufficient_scope"),
    );
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed storage"
    );

    // Logged-in users keep what anonymous clients may do.
    let out = skopeo_ok(&[
        "inspect",
        "--creds",
        &s.creds("dave"),
        "--cert-dir",
        s.cert_dir(),
        &format!("docker://{}/public/tools:v1", srv.host()),
    ]);
    let info: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(info["Digest"], public.digest().as_str(), "{info}");
}

#[test]
fn token_endpoint_answers_401_to_a_wrong_password_or_an_unknown_user() {
    let s = Setup::new();
    let srv = s.start();
    let wrong = format!("wrong-{}", random_hex(8));
    let scope = "repository%3Ateam%2Fapp%3Apull";
    let cases = [
        ("wrong password", Auth::basic("alice", &wrong)),
        ("unknown user", Auth::basic("mallory", s.pw("alice"))),
        ("empty password", Auth::basic("bob", "")),
    ];
    for (what, auth) in &cases {
        let r = curl(
            "GET",
            &srv.url(&format!("/token?service={SERVICE}&scope={scope}")),
        )
        .cacert(&s.pki)
        .auth(auth)
        .send();
        assert_eq!(r.status, 401, "{what}: {r}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!("Basic realm=\"{SERVICE}\"").as_str()),
            "{what}: {r}"
        );
        let v = r.json();
        assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED", "{what}: {v}");
        assert_eq!(v["error"], "invalid_grant", "{what}: {v}");
        assert!(v.get("token").is_none(), "{what}: {v}");
    }
    // Malformed Basic credentials on the token endpoint: 401 too.
    for h in ["Authorization: Basic !!!", "Authorization: Basic"] {
        let r = curl("GET", &srv.url(&format!("/token?service={SERVICE}")))
            .cacert(&s.pki)
            .header(h)
            .send();
        assert_eq!(r.status, 401, "{h}: {r}");
        assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED", "{h}: {r}");
    }
    // A token for another service is not issued.
    let r = curl(
        "GET",
        &srv.url(&format!("/token?service=another-registry&scope={scope}")),
    )
    .cacert(&s.pki)
    .auth(&s.basic("alice"))
    .send();
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.json()["error"], "invalid_request", "{r}");

    // skopeo with a wrong password fails before anything is read.
    let out = skopeo(&[
        "inspect",
        "--creds",
        &format!("alice:{wrong}"),
        "--cert-dir",
        s.cert_dir(),
        &format!("docker://{}/team/app:v1", srv.host()),
    ]);
    assert_auth_failure(&out, "skopeo with a wrong password");

    let log = srv.log();
    let reasons: Vec<(String, String)> = lines_of(&log, "berth_auth::audit")
        .iter()
        .filter_map(|l| Some((field(l, "user")?, field(l, "reason")?)))
        .collect();
    for (user, reason) in [("alice", "wrong_password"), ("mallory", "unknown_user")] {
        assert!(
            reasons.iter().any(|(u, r)| u == user && r == reason),
            "no audit line {user}/{reason}: {reasons:?}"
        );
    }
    assert!(!log.contains(&wrong), "the wrong password is in the log");
    assert!(!log.contains(s.pw("alice")), "a password is in the log");
}

#[test]
fn oauth2_password_grant_post_issues_a_token_that_pushes() {
    let s = Setup::new();
    let srv = s.start();
    let post = |form: &str| {
        curl("POST", &srv.url("/token"))
            .cacert(&s.pki)
            .header("Content-Type: application/x-www-form-urlencoded")
            .body(form.as_bytes().to_vec())
            .send()
    };
    let form = format!(
        "grant_type=password&username=bob&password={}&service={SERVICE}&client_id=berth-tests&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository%3Aprivate%2Fx%3Apull",
        s.pw("bob")
    );
    let r = post(&form);
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r}"
    );
    let v = r.json();
    let token = v["access_token"].as_str().expect("access_token").to_owned();
    assert_eq!(v["token"], v["access_token"], "{v}");
    assert_eq!(v["expires_in"], 600, "token_ttl from access.yml: {v}");
    assert!(
        v["issued_at"].as_str().is_some_and(|t| t.contains('T')),
        "{v}"
    );
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["sub"], "bob", "{claims}");
    assert_eq!(claims["aud"], SERVICE, "{claims}");
    assert_eq!(claims["iss"], ISSUER, "{claims}");
    assert_eq!(granted(&token), ["repository:team/app:pull,push"]);
    assert_eq!(jwt_part(&token, 0)["alg"], "ES256");

    // The token pushes and pulls.
    let img = TestImage::random();
    let bearer = Auth::Bearer(token);
    img.push_with_curl(&srv, Some(&s.pki), "team/app", "v1", &bearer);
    let r = s.req(&srv, "GET", "/v2/team/app/manifests/v1", &bearer);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.manifest);

    // Refusals of the form.
    let wrong = format!(
        "grant_type=password&username=bob&password=nope-{}&service={SERVICE}",
        random_hex(4)
    );
    let r = post(&wrong);
    assert_eq!(r.status, 401, "{r}");
    assert_eq!(r.json()["error"], "invalid_grant", "{r}");
    let r = post(&format!(
        "grant_type=password&username=mallory&password={}&service={SERVICE}",
        s.pw("bob")
    ));
    assert_eq!(r.status, 401, "{r}");
    let r = post(&format!(
        "grant_type=refresh_token&refresh_token=x&service={SERVICE}"
    ));
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.json()["error"], "unsupported_grant_type", "{r}");
    let r = post(&format!(
        "grant_type=password&username=bob&service={SERVICE}"
    ));
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.json()["error"], "invalid_request", "{r}");
    let r = post(&format!(
        "grant_type=password&username=bob&password={}&service=another-registry",
        s.pw("bob")
    ));
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.json()["error"], "invalid_request", "{r}");
}

#[test]
fn glob_patterns_and_groups_decide_what_tokens_grant_and_the_registry_enforces_it() {
    let s = Setup::new();
    let srv = s.start();
    let all = "pull,push,delete";
    let cases: Vec<(Option<&str>, String, Vec<&str>)> = vec![
        // Group devs: team/* is one segment.
        (
            Some("bob"),
            "team/app:pull,push".into(),
            vec!["repository:team/app:pull,push"],
        ),
        (
            Some("dave"),
            format!("team/app:{all}"),
            vec!["repository:team/app:pull,push"],
        ),
        (Some("bob"), "team/app/sub:pull,push".into(), vec![]),
        (Some("bob"), "teamwork/app:pull".into(), vec![]),
        (Some("bob"), "other/app:pull".into(), vec![]),
        // carol: team/** crosses segments, pull only.
        (
            Some("carol"),
            "team/app/sub:pull,push".into(),
            vec!["repository:team/app/sub:pull"],
        ),
        (
            Some("carol"),
            "team/app:pull,push".into(),
            vec!["repository:team/app:pull"],
        ),
        // Group admins: everything.
        (
            Some("alice"),
            format!("any/deep/repo:{all}"),
            vec!["repository:any/deep/repo:pull,push,delete"],
        ),
        // authenticated: a character class.
        (
            Some("dave"),
            "shared/alpha:pull".into(),
            vec!["repository:shared/alpha:pull"],
        ),
        (Some("dave"), "shared/delta:pull".into(), vec![]),
        (None, "shared/alpha:pull".into(), vec![]),
        // anonymous: public/** for everybody.
        (
            None,
            "public/a/b:pull,push".into(),
            vec!["repository:public/a/b:pull"],
        ),
        (None, "public:pull".into(), vec![]),
    ];
    for (user, scope, want) in &cases {
        let t = s.token(&srv, *user, &[&format!("repository:{scope}")]);
        assert_eq!(granted(&t), *want, "{user:?} asking for {scope}");
        let sub = jwt_part(&t, 1)["sub"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(sub, user.unwrap_or(""), "subject of {user:?}'s token");
    }
    // Several scopes at once: each is decided on its own.
    let t = s.token(
        &srv,
        Some("bob"),
        &[
            "repository:team/app:pull,push",
            "repository:shared/beta:pull,delete",
            "repository:private/x:pull",
            "registry:catalog:*",
        ],
    );
    assert_eq!(
        granted(&t),
        [
            "repository:shared/beta:pull",
            "repository:team/app:pull,push"
        ]
    );
    let t = s.token(&srv, Some("alice"), &["registry:catalog:*"]);
    assert_eq!(granted(&t), ["registry:catalog:*"]);

    // The registry enforces the grants: dave (group devs) pushes to team/x, bob cannot push to
    // team/x/y, alice lists the catalog, bob cannot.
    let img = s.push(&srv, "dave", "team/x");
    let r = s.req(
        &srv,
        "GET",
        "/v2/team/x/manifests/v1",
        &Auth::Bearer(s.token(&srv, Some("carol"), &["repository:team/x:pull"])),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.manifest);
    let before = snapshot(&s.root());
    let bob_deep = s.token(&srv, Some("bob"), &["repository:team/x/y:pull,push"]);
    let r = img.put_manifest(
        &srv,
        Some(&s.pki),
        "team/x/y",
        "v1",
        &Auth::Bearer(bob_deep),
    );
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:team/x/y:pull,push"),
        Some("insufficient_scope"),
    );
    assert_eq!(snapshot(&s.root()), before);
    let admin = Auth::Bearer(s.token(&srv, Some("alice"), &["registry:catalog:*"]));
    let r = s.req(&srv, "GET", "/v2/_catalog", &admin);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["repositories"], json!(["team/x"]), "{r}");
    let bob = Auth::Bearer(s.token(&srv, Some("bob"), &["registry:catalog:*"]));
    let r = s.req(&srv, "GET", "/v2/_catalog", &bob);
    assert_bearer_401(
        &srv,
        &r,
        Some("registry:catalog:*"),
        Some("insufficient_scope"),
    );
    // Group admins may delete... only when deletes are enabled; bob may not even ask.
    let r = s.req(
        &srv,
        "DELETE",
        &format!("/v2/team/x/manifests/{}", img.digest()),
        &Auth::Bearer(s.token(&srv, Some("bob"), &["repository:team/x:delete"])),
    );
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:team/x:delete"),
        Some("insufficient_scope"),
    );
}

#[cfg(unix)]
fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn signing_key_is_generated_at_first_start_and_reused_after_a_restart() {
    let s = Setup::new();
    assert!(!s.key_file().exists());
    let srv = s.start();
    let key = std::fs::read(s.key_file()).expect("signing key made at first start");
    assert!(
        text(&key).contains("-----BEGIN PRIVATE KEY-----"),
        "a PKCS#8 PEM key"
    );
    #[cfg(unix)]
    assert_eq!(mode_of(&s.key_file()), 0o600, "the key is private");
    let img = s.push(&srv, "alice", "team/app");
    let old = s.token(&srv, Some("carol"), &["repository:team/app:pull"]);
    let kid = jwt_part(&old, 0)["kid"].clone();
    assert!(kid.is_string(), "tokens name their key");
    drop(srv);

    // Restarted: the same key, and the token issued before still works.
    let srv = s.start();
    assert_eq!(
        std::fs::read(s.key_file()).unwrap(),
        key,
        "the key was kept"
    );
    let r = s.req(
        &srv,
        "GET",
        "/v2/team/app/manifests/v1",
        &Auth::Bearer(old.clone()),
    );
    assert_eq!(r.status, 200, "a token from before the restart: {r}");
    assert_eq!(r.body, img.manifest);
    let new = s.token(&srv, Some("carol"), &["repository:team/app:pull"]);
    assert_eq!(
        jwt_part(&new, 0)["kid"],
        kid,
        "same key id after the restart"
    );
    drop(srv);

    // With the key removed a new one is made, and the old tokens stop working.
    std::fs::remove_file(s.key_file()).unwrap();
    let srv = s.start();
    let key2 = std::fs::read(s.key_file()).expect("a new key");
    assert_ne!(key2, key);
    let r = s.req(&srv, "GET", "/v2/team/app/manifests/v1", &Auth::Bearer(old));
    assert_bearer_401(
        &srv,
        &r,
        Some("repository:team/app:pull"),
        Some("invalid_token"),
    );
    let new = s.token(&srv, Some("carol"), &["repository:team/app:pull"]);
    let r = s.req(&srv, "GET", "/v2/team/app/manifests/v1", &Auth::Bearer(new));
    assert_eq!(r.status, 200, "{r}");
}

/// An ES256 token signed with the issuer's own key file (as if the issuer had made it).
fn sign_with_server_key(s: &Setup, kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(s.key_file()).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.typ = Some("JWT".into());
    h.kid = Some(kid.to_owned());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("the server's key");
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

#[test]
fn malformed_huge_and_forged_credentials_get_401_promptly_and_change_nothing() {
    let s = Setup::new();
    let mut srv = s.start();
    let img = s.push(&srv, "alice", "team/app");
    let kid = jwt_part(&s.token(&srv, None, &[]), 0)["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let all = json!([
        repo_access("team/app", &["pull", "push", "delete"]),
        repo_access("team/new", &["pull", "push"])
    ]);
    // The control: well-formed claims signed with the server's key are accepted, so each forged
    // token below fails for the reason its name says.
    let good = sign_with_server_key(&s, &kid, &claims(ISSUER, SERVICE, "eve", 300, all.clone()));
    let r = s.req(
        &srv,
        "GET",
        "/v2/team/app/manifests/v1",
        &Auth::Bearer(good),
    );
    assert_eq!(r.status, 200, "{r}");

    let stranger = Signer::new("not the issuer");
    let forged: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned_token(&claims(ISSUER, SERVICE, "eve", 300, all.clone())),
        ),
        (
            "another audience",
            sign_with_server_key(
                &s,
                &kid,
                &claims(ISSUER, "another-registry", "eve", 300, all.clone()),
            ),
        ),
        (
            "another issuer",
            sign_with_server_key(
                &s,
                &kid,
                &claims("someone-else", SERVICE, "eve", 300, all.clone()),
            ),
        ),
        (
            "expired",
            sign_with_server_key(
                &s,
                &kid,
                &claims(ISSUER, SERVICE, "eve", -3600, all.clone()),
            ),
        ),
        (
            "unknown key claiming the server's kid",
            stranger.sign_kid(
                &claims(ISSUER, SERVICE, "eve", 300, all.clone()),
                Some(&kid),
            ),
        ),
        (
            "unknown key",
            stranger.sign(&claims(ISSUER, SERVICE, "eve", 300, all.clone())),
        ),
    ];
    let malformed = malformed_authorizations();
    let mut headers: Vec<(String, Vec<String>)> = forged
        .iter()
        .map(|(w, t)| (w.to_string(), vec![format!("Authorization: Bearer {t}")]))
        .collect();
    headers.extend(
        malformed
            .iter()
            .map(|(w, h)| (w.to_string(), vec![format!("Authorization: {h}")])),
    );
    let carol = s.token(&srv, Some("carol"), &["repository:team/app:pull"]);
    headers.push((
        "two Authorization headers".into(),
        vec![
            format!("Authorization: Bearer {carol}"),
            format!("Authorization: Bearer {carol}"),
        ],
    ));

    let before = snapshot(&s.root());
    let new_img = TestImage::random();
    for (what, hs) in &headers {
        let with = |c: Curl| hs.iter().fold(c, |c, h| c.header(h));
        let r = with(curl("GET", &srv.url("/v2/team/app/manifests/v1")))
            .cacert(&s.pki)
            .send();
        assert_bearer_401(
            &srv,
            &r,
            Some("repository:team/app:pull"),
            Some("invalid_token"),
        );
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}: {r}");
        let r = with(curl("GET", &srv.url("/v2/"))).cacert(&s.pki).send();
        assert_eq!(r.status, 401, "{what}: {r}");
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}: {r}");
        let r = with(curl(
            "POST",
            &srv.url(&format!(
                "/v2/team/new/blobs/uploads/?digest={}",
                digest_of(&new_img.config)
            )),
        ))
        .cacert(&s.pki)
        .body(new_img.config.clone())
        .send();
        assert_eq!(r.status, 401, "{what}: {r}");
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{what}: {r}");
        let r = with(curl("PUT", &srv.url("/v2/team/app/manifests/v1")))
            .cacert(&s.pki)
            .header(&format!("Content-Type: {OCI_MANIFEST}"))
            .body(new_img.manifest.clone())
            .send();
        assert_eq!(r.status, 401, "{what}: {r}");
        let r = with(curl(
            "DELETE",
            &srv.url(&format!("/v2/team/app/manifests/{}", img.digest())),
        ))
        .cacert(&s.pki)
        .send();
        assert_eq!(r.status, 401, "{what}: {r}");
    }

    // A 64 KiB Authorization header over HTTP/1.1, and 60 KiB over HTTP/2 (curl's HTTP/2 library
    // sends no header block of 64 KiB or more): the registry's 401, promptly.
    let huge = s.dir.path().join("huge-header");
    for (version, size) in HUGE_HEADERS {
        write_huge_authorization(&huge, size);
        for (method, path) in [
            ("GET", "/v2/team/app/manifests/v1".to_owned()),
            (
                "POST",
                format!(
                    "/v2/team/new/blobs/uploads/?digest={}",
                    digest_of(&new_img.config)
                ),
            ),
        ] {
            let started = Instant::now();
            let mut c = curl(method, &srv.url(&path))
                .cacert(&s.pki)
                .arg(version)
                .header_file(&huge);
            if method == "POST" {
                c = c.body(new_img.config.clone());
            }
            let r = c.send();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{version} {method}: took {:?}",
                started.elapsed()
            );
            assert_eq!(r.version, version.trim_start_matches("--http"), "{r}");
            assert_bearer_401(
                &srv,
                &r,
                Some(if method == "GET" {
                    "repository:team/app:pull"
                } else {
                    "repository:team/new:pull,push"
                }),
                Some("invalid_token"),
            );
            assert_eq!(r.error_code(), "UNAUTHORIZED", "{version} {method}: {r}");
        }
    }
    // Far beyond what any client sends (1 MiB): HTTP/1.1 refuses the request head itself (431),
    // promptly, and the server goes on serving.
    write_huge_authorization(&huge, 1024 * 1024);
    let started = Instant::now();
    let r = curl("GET", &srv.url("/v2/team/app/manifests/v1"))
        .cacert(&s.pki)
        .arg("--http1.1")
        .header_file(&huge)
        .try_send();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    if let Ok(r) = r {
        assert!([400, 401, 431].contains(&r.status), "1 MiB header: {r}");
    }

    srv.assert_running();
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed the storage"
    );
    // The registry still answers, and the tag names the original image.
    let r = s.req(
        &srv,
        "GET",
        "/v2/team/app/manifests/v1",
        &Auth::Bearer(carol),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, img.manifest);
    // No token of the requests above is in the log.
    let log = srv.log();
    for (what, t) in &forged {
        assert!(!log.contains(t.as_str()), "{what}: the token is in the log");
    }
}

#[test]
fn cross_repository_mount_needs_pull_on_the_source_and_otherwise_starts_an_upload() {
    let s = Setup::new();
    let srv = s.start();
    let private = s.push(&srv, "alice", "private/base");
    let shared = s.push(&srv, "alice", "team/base");
    let layer_link = |repo: &str, d: &str| {
        s.root().join(format!(
            "docker/registry/v2/repositories/{repo}/_layers/sha256/{}/link",
            &d["sha256:".len()..]
        ))
    };

    // bob asks for both scopes, as clients do; the token grants team/app only.
    let private_layer = digest_of(&private.layer);
    let t = s.token(
        &srv,
        Some("bob"),
        &[
            "repository:team/app:pull,push",
            "repository:private/base:pull",
        ],
    );
    assert_eq!(granted(&t), ["repository:team/app:pull,push"]);
    let bob = Auth::Bearer(t);
    let r = s.req(
        &srv,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?mount={private_layer}&from=private/base"),
        &bob,
    );
    assert_eq!(r.status, 202, "no pull on the source: a plain upload: {r}");
    assert!(r.header("location").is_some(), "{r}");
    assert_eq!(r.header("docker-content-digest"), None, "{r}");
    let r = s.req(
        &srv,
        "HEAD",
        &format!("/v2/team/app/blobs/{private_layer}"),
        &bob,
    );
    assert_eq!(r.status, 404, "the private blob did not leak: {r}");
    assert!(!layer_link("team/app", &private_layer).exists());

    // Naming the source twice, or once invalid and once valid, does not get around the check:
    // the blob is mounted from no repository other than the one authorized.
    let both = Auth::Bearer(s.token(
        &srv,
        Some("bob"),
        &["repository:team/app:pull,push", "repository:team/base:pull"],
    ));
    for query in [
        format!("mount={private_layer}&from=team/base&from=private/base"),
        format!("mount={private_layer}&from=private/base&from=team/base"),
        format!("mount={private_layer}&from=Not..Valid&from=private/base"),
        format!("from=private/base&mount={private_layer}&from=team/base"),
    ] {
        let r = s.req(
            &srv,
            "POST",
            &format!("/v2/team/app/blobs/uploads/?{query}"),
            &both,
        );
        assert_ne!(r.status, 201, "{query}: {r}");
        assert_eq!(r.header("docker-content-digest"), None, "{query}: {r}");
        let r = s.req(
            &srv,
            "HEAD",
            &format!("/v2/team/app/blobs/{private_layer}"),
            &bob,
        );
        assert_eq!(r.status, 404, "{query}: the private blob leaked: {r}");
        assert!(!layer_link("team/app", &private_layer).exists(), "{query}");
    }

    // With pull on the source, the blob is mounted.
    let shared_layer = digest_of(&shared.layer);
    let r = s.req(
        &srv,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?mount={shared_layer}&from=team/base"),
        &Auth::Bearer(s.token(
            &srv,
            Some("bob"),
            &["repository:team/app:pull,push", "repository:team/base:pull"],
        )),
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(shared_layer.as_str())
    );
    let r = s.req(
        &srv,
        "GET",
        &format!("/v2/team/app/blobs/{shared_layer}"),
        &bob,
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body, shared.layer);

    // skopeo copying private → team as bob fails: bob cannot read the source.
    let out = skopeo(&[
        "copy",
        "--src-creds",
        &s.creds("bob"),
        "--dest-creds",
        &s.creds("bob"),
        "--src-cert-dir",
        s.cert_dir(),
        "--dest-cert-dir",
        s.cert_dir(),
        &format!("docker://{}/private/base:v1", srv.host()),
        &format!("docker://{}/team/copy:v1", srv.host()),
    ]);
    assert_auth_failure(&out, "copying from a repository bob cannot read");
    assert!(!layer_link("team/copy", &private_layer).exists());
}

#[test]
fn percent_encoded_route_words_do_not_get_around_authorization() {
    let s = Setup::new();
    let srv = s.start();
    let img = s.push(&srv, "alice", "private/tools");
    let before = snapshot(&s.root());
    let carol = Auth::Bearer(s.token(&srv, Some("carol"), &["repository:team/app:pull"]));
    let layer = digest_of(&img.layer);
    // `%73` is `s`, `%5F` is `_`, `%2F` is `/`: the registry must route exactly what it
    // authorizes, so each of these is refused or unknown, never served.
    let cases = [
        ("GET", "/v2/private/tools/manifest%73/v1".to_owned()),
        ("HEAD", "/v2/private/tools/manifest%73/v1".to_owned()),
        ("GET", format!("/v2/private/tools/blob%73/{layer}")),
        ("GET", "/v2/private/tools/tag%73/list".to_owned()),
        ("GET", "/v2/private/tools/tags/lis%74".to_owned()),
        ("GET", "/v2/%5Fcatalog".to_owned()),
        ("GET", "/v2/private%2Ftools/manifests/v1".to_owned()),
        ("PUT", "/v2/private/tools/manifest%73/v2".to_owned()),
        ("POST", "/v2/private/tools/blob%73/uploads/".to_owned()),
        ("POST", "/v2/private/tools/blobs/upload%73/".to_owned()),
        (
            "DELETE",
            format!("/v2/private/tools/manifest%73/{}", img.digest()),
        ),
    ];
    for auth in [Auth::None, carol] {
        for (method, path) in &cases {
            let mut c = curl(method, &srv.url(path))
                .cacert(&s.pki)
                .arg("--path-as-is")
                .auth(&auth);
            if *method == "PUT" {
                c = c
                    .header(&format!("Content-Type: {OCI_MANIFEST}"))
                    .body(img.manifest.clone());
            }
            let r = c.send();
            assert!(
                [400, 401, 403, 404, 405].contains(&r.status),
                "{method} {path} with {auth:?}: {r}"
            );
            assert_ne!(r.body, img.manifest, "{method} {path}: the manifest leaked");
            assert!(
                !text(&r.body).contains(&digest_of(&img.config)),
                "{method} {path}: the manifest leaked: {r}"
            );
            if r.status != 401 && r.status != 403 && *method != "HEAD" {
                // Not a refusal: the path is unknown to the registry (or the name invalid).
                assert!(
                    ["UNSUPPORTED", "NAME_INVALID", "NAME_UNKNOWN"]
                        .contains(&r.error_code().as_str()),
                    "{method} {path}: {r}"
                );
            }
        }
    }
    assert_eq!(
        snapshot(&s.root()),
        before,
        "refused requests changed the storage"
    );
}
