//! htpasswd (Basic) authentication with files written by Debian's `htpasswd` (apache2-utils).

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

use crate::common::*;
use berth_auth::{
    Action, Authenticator, Denial, Htpasswd, HtpasswdAuthenticator, HtpasswdConfig, HtpasswdError,
    NoAuth, Principal, Scope,
};

const REMOTE: Option<IpAddr> = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));

/// Runs `htpasswd` (fails the test when the tool is missing: install apache2-utils).
fn htpasswd(args: &[&str], path: &Path) {
    let out = Command::new("htpasswd")
        .args(args)
        .arg(path)
        .args(["alice", "s3cret pass"])
        .output()
        .expect("htpasswd not found: apt-get install -y apache2-utils");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn needed() -> Vec<Scope> {
    vec![Scope::repository("team/app", &[Action::Pull, Action::Push])]
}

#[tokio::test]
async fn bcrypt_file_from_htpasswd_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    htpasswd(&["-Bbc"], &path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("alice:$2y$"), "{text}");
    // Add a second user with a higher cost.
    let out = Command::new("htpasswd")
        .args(["-Bb", "-C", "6"])
        .arg(&path)
        .args(["bob", "pw2"])
        .output()
        .unwrap();
    assert!(out.status.success());

    let auth = HtpasswdAuthenticator::from_config(&HtpasswdConfig {
        realm: "Berth".into(),
        path: path.clone(),
    })
    .unwrap();
    let who = auth
        .authorize(&basic("alice", "s3cret pass"), &needed(), REMOTE)
        .await
        .unwrap();
    assert_eq!(who, Principal::User("alice".into()));
    // Cached second time; still correct.
    assert_eq!(
        auth.authorize(&basic("alice", "s3cret pass"), &needed(), REMOTE)
            .await
            .unwrap(),
        who
    );
    assert_eq!(
        auth.authorize(&basic("bob", "pw2"), &[Scope::catalog()], REMOTE)
            .await
            .unwrap(),
        Principal::User("bob".into())
    );
    // All access for any authenticated user.
    auth.authorize(
        &basic("bob", "pw2"),
        &[Scope::repository("x", &[Action::Delete])],
        REMOTE,
    )
    .await
    .unwrap();

    let challenge = Some(r#"Basic realm="Berth""#);
    for (h, what) in [
        (basic("alice", "wrong"), "wrong password"),
        (basic("alice", "s3cret pas"), "prefix of password"),
        (basic("mallory", "s3cret pass"), "unknown user"),
        (http::HeaderMap::new(), "no credentials"),
        (raw_auth(b"Basic !!!"), "bad base64"),
        (
            raw_auth(format!("Basic {}", b64(b"alice")).as_bytes()),
            "missing colon",
        ),
        (
            raw_auth(format!("Basic {}", b64(b"al\xffce:x")).as_bytes()),
            "non-UTF-8",
        ),
        (raw_auth(b"Digest username=\"alice\""), "unknown scheme"),
        (raw_auth(b"Bearer abc"), "bearer at basic auth"),
        (
            raw_auth(format!("Basic {}", "A".repeat(9000)).as_bytes()),
            "huge header",
        ),
    ] {
        let e = auth.authorize(&h, &needed(), REMOTE).await.unwrap_err();
        assert_eq!(e.reason, Denial::Unauthenticated, "{what}");
        assert_eq!(e.code().as_str(), "UNAUTHORIZED", "{what}");
        assert_eq!(e.www_authenticate.as_deref(), challenge, "{what}");
        assert!(!e.message.contains("s3cret"), "{what}");
    }
}

#[test]
fn md5_sha_and_plain_entries_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, kind) in [
        ("-mbc", "$apr1$"),
        ("-sbc", "{SHA}"),
        ("-pbc", "plain-text"),
    ] {
        let path = dir.path().join(format!("htpasswd{flag}"));
        htpasswd(&[flag], &path);
        let text = std::fs::read_to_string(&path).unwrap();
        if flag == "-mbc" {
            assert!(text.starts_with("alice:$apr1$"), "{text}");
        }
        let err = Htpasswd::load(&path).unwrap_err();
        assert!(
            matches!(err, HtpasswdError::NotBcrypt { line: 1, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(kind), "{msg}");
        assert!(
            msg.contains("\"alice\"") && msg.contains("line 1") && msg.contains("htpasswd -B"),
            "{msg}"
        );
        assert!(HtpasswdAuthenticator::load("r", &path).is_err());
    }
}

#[tokio::test]
async fn failures_are_audited_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    htpasswd(&["-Bbc"], &path);
    let auth = HtpasswdAuthenticator::load("Berth", &path).unwrap();
    let cap = Capture::default();
    let _g = tracing::subscriber::set_default(cap.subscriber());
    auth.authorize(&basic("alice", "hunter2-wrong"), &needed(), REMOTE)
        .await
        .unwrap_err();
    auth.authorize(&basic("ghost", "hunter2-ghost"), &needed(), REMOTE)
        .await
        .unwrap_err();
    auth.authorize(&raw_auth(b"Basic %%%"), &needed(), REMOTE)
        .await
        .unwrap_err();
    auth.authorize(&http::HeaderMap::new(), &needed(), REMOTE)
        .await
        .unwrap_err();
    auth.authorize(&basic("alice", "s3cret pass"), &needed(), REMOTE)
        .await
        .unwrap();
    let text = cap.text();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["fields"]["event"] == "auth_failure")
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(
        (
            events[0]["fields"]["user"].as_str(),
            events[0]["fields"]["reason"].as_str()
        ),
        (Some("alice"), Some("wrong_password"))
    );
    assert_eq!(
        (
            events[1]["fields"]["user"].as_str(),
            events[1]["fields"]["reason"].as_str()
        ),
        (Some("ghost"), Some("unknown_user"))
    );
    assert_eq!(events[2]["fields"]["reason"], "basic_bad_base64");
    assert_eq!(events[0]["fields"]["remote"], "::1");
    assert_eq!(events[0]["level"], "WARN");
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
}

#[tokio::test]
async fn no_auth_allows_everything_anonymously() {
    let a: std::sync::Arc<dyn Authenticator> = std::sync::Arc::new(NoAuth);
    assert_eq!(
        a.authorize(&http::HeaderMap::new(), &needed(), None)
            .await
            .unwrap(),
        Principal::Anonymous
    );
    assert_eq!(
        a.authorize(&basic("x", "y"), &[Scope::catalog()], None)
            .await
            .unwrap(),
        Principal::Anonymous
    );
    let (_, d) = a
        .authorize_mount(&http::HeaderMap::new(), "t", "s", None)
        .await
        .unwrap();
    assert_eq!(d, berth_auth::MountDecision::Mount);
}
