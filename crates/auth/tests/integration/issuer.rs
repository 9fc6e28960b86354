//! The built-in token issuer: YAML config, users from an htpasswd file, access rules, signing
//! key generation, GET/POST token requests, and verification by the registry side.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::common::*;
use berth_auth::issuer::{parse_get_request, parse_post_request};
use berth_auth::{
    Action, Authenticator, Denial, IssueError, Issuer, IssuerConfig, MountDecision, Principal,
    Scope, TokenAuthenticator, TrustedKeys,
};

const REMOTE: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));

const YAML: &str = r#"
service: berth
issuer: berth-issuer
htpasswd: users.htpasswd
token_ttl: 120
groups: { admins: [alice], devs: [bob, carol] }
access:
  - { who: "group:admins", repos: "**", actions: [pull, push, delete], catalog: true }
  - { who: "user:bob", repos: "team/*", actions: [pull, push] }
  - { who: "anonymous", repos: "public/**", actions: [pull] }
  - { who: "authenticated", repos: "**", actions: [pull] }
"#;

fn users(dir: &Path) {
    let text: String = [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("carol", "carol-pw"),
    ]
    .iter()
    .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
    .collect();
    std::fs::write(dir.join("users.htpasswd"), text).unwrap();
}

fn setup() -> (tempfile::TempDir, Issuer) {
    let dir = tempfile::tempdir().unwrap();
    users(dir.path());
    let cfg_path = temp_file(&dir, "access.yml", YAML.as_bytes());
    let cfg = IssuerConfig::load(&cfg_path).unwrap();
    assert!(
        cfg.htpasswd.as_ref().unwrap().is_absolute(),
        "relative paths resolve against the config dir"
    );
    let issuer = Issuer::new(
        &cfg,
        "http://127.0.0.1:5000/token",
        &dir.path().join("state/signing.pem"),
    )
    .unwrap();
    (dir, issuer)
}

/// A refusal that asks the client to authenticate (the server answers it with 401).
fn unauthenticated(e: &IssueError) -> bool {
    matches!(e, IssueError::Unauthorized(a) if a.reason == Denial::Unauthenticated)
}

fn s(x: &str) -> Scope {
    Scope::parse(x).unwrap()
}

/// Decodes a token's claims without verification (to inspect what was granted).
fn claims_of(token: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn header_of(token: &str) -> serde_json::Value {
    let p = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn grants_the_intersection_and_the_registry_verifies_it() {
    let (_d, issuer) = setup();
    let reg = issuer.authenticator();
    assert_eq!(issuer.realm(), "http://127.0.0.1:5000/token");

    // bob: push on team/app granted; delete not; secret/x only pull (authenticated rule).
    let req = [
        s("repository:team/app:pull,push,delete"),
        s("repository:secret/x:push,pull"),
        s("registry:catalog:*"),
    ];
    let t = issuer
        .issue(Some(("bob", "bob-pw")), Some("berth"), &req, REMOTE)
        .await
        .unwrap();
    assert_eq!(t.token, t.access_token);
    assert_eq!(t.expires_in, 120);
    assert!(
        t.issued_at.ends_with('Z') && t.issued_at.contains('T'),
        "{}",
        t.issued_at
    );
    let c = claims_of(&t.token);
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["aud"], "berth");
    assert_eq!(c["iss"], "berth-issuer");
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 120);
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "secret/x", "actions": ["pull"]},
        ])
    );
    let h = header_of(&t.token);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["kid"], issuer.public_key().kid());

    let b = bearer(&t.token);
    assert_eq!(
        reg.authorize(
            &b,
            &[Scope::repository("team/app", &[Action::Pull, Action::Push])],
            REMOTE
        )
        .await
        .unwrap(),
        Principal::User("bob".into())
    );
    let e = reg
        .authorize(
            &b,
            &[Scope::repository("team/app", &[Action::Delete])],
            REMOTE,
        )
        .await
        .unwrap_err();
    assert!(
        e.www_authenticate
            .unwrap()
            .contains(r#"error="insufficient_scope""#)
    );
    assert!(
        reg.authorize(
            &b,
            &[Scope::repository("secret/x", &[Action::Push])],
            REMOTE
        )
        .await
        .is_err()
    );
    assert!(
        reg.authorize(&b, &[Scope::catalog()], REMOTE)
            .await
            .is_err()
    );
    // Mount: bob may push team/app and pull secret/x (mount) but not pull nowhere/else (upload).
    let t2 = issuer
        .issue(
            Some(("bob", "bob-pw")),
            Some("berth"),
            &[
                s("repository:team/app:pull,push"),
                s("repository:public/base:pull"),
            ],
            REMOTE,
        )
        .await
        .unwrap();
    assert_eq!(
        reg.authorize_mount(&bearer(&t2.token), "team/app", "public/base", REMOTE)
            .await
            .unwrap()
            .1,
        MountDecision::Mount
    );
    let t3 = issuer
        .issue(
            Some(("carol", "carol-pw")),
            None,
            &[s("repository:team/app:pull,push")],
            REMOTE,
        )
        .await
        .unwrap();
    assert!(
        reg.authorize_mount(&bearer(&t3.token), "team/app", "public/base", REMOTE)
            .await
            .is_err(),
        "carol cannot push team/app"
    );

    // alice (admins) gets everything including the catalog.
    let t = issuer
        .issue(Some(("alice", "alice-pw")), Some("berth"), &req, REMOTE)
        .await
        .unwrap();
    let b = bearer(&t.token);
    reg.authorize(
        &b,
        &[
            Scope::repository("team/app", &[Action::Delete]),
            Scope::catalog(),
        ],
        REMOTE,
    )
    .await
    .unwrap();

    // A token of this issuer is refused by a registry with another service name or key.
    let other_service = TokenAuthenticator::new("r", "other", "berth-issuer", {
        let mut k = TrustedKeys::new();
        k.add_key(issuer.public_key().clone());
        k
    });
    assert!(other_service.authorize(&b, &[], REMOTE).await.is_err());
    let (_d2, other_issuer) = setup();
    assert!(
        other_issuer
            .authenticator()
            .authorize(&b, &[], REMOTE)
            .await
            .is_err(),
        "other key"
    );
}

#[tokio::test]
async fn anonymous_and_bad_credentials() {
    let (_d, issuer) = setup();
    let reg = issuer.authenticator();
    let req = [
        s("repository:public/lib/base:pull,push"),
        s("repository:team/app:pull"),
    ];
    let t = issuer
        .issue(None, Some("berth"), &req, REMOTE)
        .await
        .unwrap();
    let c = claims_of(&t.token);
    assert_eq!(c["sub"], "");
    assert_eq!(
        c["access"],
        serde_json::json!([{"type": "repository", "name": "public/lib/base", "actions": ["pull"]}])
    );
    let b = bearer(&t.token);
    assert_eq!(
        reg.authorize(
            &b,
            &[Scope::repository("public/lib/base", &[Action::Pull])],
            REMOTE
        )
        .await
        .unwrap(),
        Principal::Anonymous
    );
    assert!(
        reg.authorize(
            &b,
            &[Scope::repository("team/app", &[Action::Pull])],
            REMOTE
        )
        .await
        .is_err()
    );

    for (u, p) in [("bob", "wrong"), ("nobody", "bob-pw"), ("bob", "")] {
        let e = issuer
            .issue(Some((u, p)), Some("berth"), &req, REMOTE)
            .await
            .unwrap_err();
        assert!(unauthenticated(&e), "{u}");
        assert_eq!(e.www_authenticate(), Some(r#"Basic realm="berth""#));
        assert_eq!(e.body()["errors"][0]["code"], "UNAUTHORIZED");
        assert_eq!(e.body()["error"], "invalid_grant");
    }
    let e = issuer
        .issue(None, Some("elsewhere"), &req, REMOTE)
        .await
        .unwrap_err();
    assert!(matches!(e, IssueError::InvalidRequest(_)));
}

#[tokio::test]
async fn get_and_post_requests() {
    let (_d, issuer) = setup();
    let q = "service=berth&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository:public/x:pull+repository:other:pull&scope=garbage&account=bob&client_id=docker";
    let req = parse_get_request(q, &basic("bob", "bob-pw"), REMOTE).unwrap();
    assert_eq!(req.service.as_deref(), Some("berth"));
    assert_eq!(req.account.as_deref(), Some("bob"));
    assert_eq!(req.client_id.as_deref(), Some("docker"));
    assert_eq!(
        req.scopes.len(),
        3,
        "the unparsable scope is dropped: {:?}",
        req.scopes
    );
    let t = issuer.handle(&req, REMOTE).await.unwrap();
    assert_eq!(
        claims_of(&t.token)["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );

    // Anonymous GET.
    let req = parse_get_request(
        "service=berth&scope=repository:public/x:pull",
        &http::HeaderMap::new(),
        REMOTE,
    )
    .unwrap();
    assert!(req.credentials.is_none());
    issuer.handle(&req, REMOTE).await.unwrap();
    // account that does not match the credentials.
    assert!(matches!(
        parse_get_request("account=alice", &basic("bob", "bob-pw"), REMOTE),
        Err(IssueError::InvalidRequest(_))
    ));
    // Malformed Authorization on the token endpoint: 401.
    let e = parse_get_request("service=berth", &raw_auth(b"Basic ###"), REMOTE).unwrap_err();
    assert!(unauthenticated(&e));
    assert!(matches!(
        parse_get_request("service=%zz", &http::HeaderMap::new(), REMOTE),
        Err(IssueError::InvalidRequest(_))
    ));

    // OAuth2 POST.
    let body = b"grant_type=password&username=bob&password=bob-pw&service=berth&scope=repository%3Ateam%2Fapp%3Apush&client_id=containerd";
    let req = parse_post_request(body).unwrap();
    let t = issuer.handle(&req, REMOTE).await.unwrap();
    assert_eq!(claims_of(&t.token)["sub"], "bob");
    let wrong = parse_post_request(b"grant_type=password&username=bob&password=nope&service=berth")
        .unwrap();
    assert!(unauthenticated(
        &issuer.handle(&wrong, REMOTE).await.unwrap_err()
    ));
    let e = parse_post_request(b"grant_type=refresh_token&refresh_token=abc&service=berth")
        .unwrap_err();
    assert!(matches!(e, IssueError::UnsupportedGrantType(_)));
    assert_eq!(e.body()["error"], "unsupported_grant_type");
    assert!(matches!(
        parse_post_request(b"grant_type=password&username=bob"),
        Err(IssueError::InvalidRequest(_))
    ));
    assert!(matches!(
        parse_post_request(b"username=bob&password=x"),
        Err(IssueError::InvalidRequest(_))
    ));
    assert!(matches!(
        parse_post_request(&[0xff, 0xfe]),
        Err(IssueError::InvalidRequest(_))
    ));
    assert!(matches!(
        parse_post_request(&vec![b'a'; 70_000]),
        Err(IssueError::InvalidRequest(_))
    ));
}

#[test]
fn signing_key_is_generated_once_with_mode_0600_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    users(dir.path());
    let cfg = IssuerConfig::load(&temp_file(&dir, "access.yml", YAML.as_bytes())).unwrap();
    let key_path = dir.path().join("root/auth/key.pem");
    let a = Issuer::new(&cfg, "r", &key_path).unwrap();
    let text = std::fs::read_to_string(&key_path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let b = Issuer::new(&cfg, "r", &key_path).unwrap();
    assert_eq!(
        a.public_key().kid(),
        b.public_key().kid(),
        "restart reuses the key"
    );
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), text);
}

#[tokio::test]
async fn configured_keys_ed25519_and_openssl_sec1() {
    let dir = tempfile::tempdir().unwrap();
    users(dir.path());
    // An Ed25519 PKCS#8 key made in the test.
    let ed = TestKey::ed25519();
    temp_file(&dir, "ed.pem", ed.pkcs8_pem.as_bytes());
    let yaml = format!("{YAML}signing_key: ed.pem\nrealm: https://reg.example/token\n");
    let cfg = IssuerConfig::load(&temp_file(&dir, "a.yml", yaml.as_bytes())).unwrap();
    let issuer = Issuer::new(&cfg, "unused", &dir.path().join("never.pem")).unwrap();
    assert!(!dir.path().join("never.pem").exists());
    assert_eq!(issuer.realm(), "https://reg.example/token");
    assert_eq!(issuer.public_key().kid(), ed.kid());
    let t = issuer
        .issue(None, None, &[s("repository:public/x:pull")], REMOTE)
        .await
        .unwrap();
    assert_eq!(header_of(&t.token)["alg"], "EdDSA");
    issuer
        .authenticator()
        .authorize(&bearer(&t.token), &[s("repository:public/x:pull")], REMOTE)
        .await
        .unwrap();

    // A SEC1 "EC PRIVATE KEY" from the openssl CLI.
    let sec1 = dir.path().join("ec.pem");
    let out = std::process::Command::new("openssl")
        .args(["ecparam", "-name", "prime256v1", "-genkey", "-out"])
        .arg(&sec1)
        .output()
        .expect("openssl not found: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_to_string(&sec1)
            .unwrap()
            .contains("EC PRIVATE KEY")
    );
    let yaml = format!("{YAML}signing_key: ec.pem\n");
    let cfg = IssuerConfig::load(&temp_file(&dir, "b.yml", yaml.as_bytes())).unwrap();
    let issuer = Issuer::new(&cfg, "r", &dir.path().join("never.pem")).unwrap();
    let t = issuer
        .issue(None, None, &[s("repository:public/x:pull")], REMOTE)
        .await
        .unwrap();
    assert_eq!(header_of(&t.token)["alg"], "ES256");
    issuer
        .authenticator()
        .authorize(&bearer(&t.token), &[s("repository:public/x:pull")], REMOTE)
        .await
        .unwrap();

    // RSA signing keys are refused with advice.
    let rsa = TestKey::rsa();
    temp_file(&dir, "rsa.pem", rsa.pkcs8_pem.as_bytes());
    let yaml = format!("{YAML}signing_key: rsa.pem\n");
    let cfg = IssuerConfig::load(&temp_file(&dir, "c.yml", yaml.as_bytes())).unwrap();
    let err = Issuer::new(&cfg, "r", &dir.path().join("never.pem")).unwrap_err();
    assert!(err.to_string().contains("P-256 or Ed25519"), "{err}");
}

#[test]
fn config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |yaml: &str| {
        IssuerConfig::from_yaml(yaml, "t.yml")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad("service: s\nissuer: i\nacess: []\n").contains("t.yml"),
        "typo'd key refused"
    );
    assert!(bad("issuer: i\n").contains("service"));
    assert!(bad("service: s\nissuer: i\ntoken_ttl: 0\n").contains("token_ttl"));
    assert!(bad("service: s\nissuer: i\ntoken_ttl: 999999\n").contains("token_ttl"));
    assert!(
        bad("service: s\nissuer: i\naccess: [{who: anonymous, repos: x, actions: [fly]}]\n")
            .contains("t.yml")
    );
    // Undefined group, and an htpasswd file with an MD5 entry, fail at Issuer::new.
    let cfg = IssuerConfig::from_yaml(
        "service: s\nissuer: i\naccess: [{who: 'group:x', repos: '**', actions: [pull]}]\n",
        "t",
    )
    .unwrap();
    let e = Issuer::new(&cfg, "r", &dir.path().join("k.pem")).unwrap_err();
    assert!(e.to_string().contains("\"x\""), "{e}");
    let md5 = temp_file(
        &dir,
        "md5.htpasswd",
        b"bob:$apr1$ZKvWtUPk$gm7DEqqbQ3I3wWmcv0Xg.1\n",
    );
    let cfg = IssuerConfig::from_yaml(
        &format!("service: s\nissuer: i\nhtpasswd: {}\n", md5.display()),
        "t",
    )
    .unwrap();
    let e = Issuer::new(&cfg, "r", &dir.path().join("k.pem")).unwrap_err();
    assert!(e.to_string().contains("htpasswd -B"), "{e}");
    // Without htpasswd, any credentials are refused but anonymous works.
    let cfg = IssuerConfig::from_yaml(
        "service: s\nissuer: i\naccess: [{who: anonymous, repos: '**', actions: [pull]}]\n",
        "t",
    )
    .unwrap();
    let issuer = Issuer::new(&cfg, "r", &dir.path().join("k.pem")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(unauthenticated(
        &rt.block_on(issuer.issue(Some(("a", "b")), None, &[], None))
            .unwrap_err()
    ));
    assert!(
        rt.block_on(issuer.issue(None, None, &[s("repository:z:pull")], None))
            .is_ok()
    );
}

#[tokio::test]
async fn issuer_audit_events() {
    let (_d, issuer) = setup();
    let cap = Capture::default();
    let _g = tracing::subscriber::set_default(cap.subscriber());
    issuer
        .issue(Some(("bob", "not-bobs-pw")), None, &[], REMOTE)
        .await
        .unwrap_err();
    issuer
        .issue(
            Some(("bob", "bob-pw")),
            None,
            &[s("repository:team/a:push")],
            REMOTE,
        )
        .await
        .unwrap();
    let text = cap.text();
    let ev: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fail = ev
        .iter()
        .find(|e| e["fields"]["event"] == "auth_failure")
        .expect(&text);
    assert_eq!(fail["fields"]["reason"], "wrong_password");
    assert_eq!(fail["fields"]["scheme"], "token_endpoint");
    let ok = ev
        .iter()
        .find(|e| e["fields"]["event"] == "token_issued")
        .expect(&text);
    assert_eq!(ok["fields"]["granted"], "repository:team/a:push");
    assert!(!text.contains("bob-pw") && !text.contains("not-bobs-pw"));
}
