//! Token (JWT) verification: keys of every supported kind made in the test, certificates made
//! with rcgen, and every refusal the verifier must make.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use crate::common::*;
use berth_auth::{
    Action, Authenticator, Denial, InsufficientScope, MountDecision, Principal, Scope,
    TokenAuthenticator, TokenConfig, TokenError, TrustedKeys,
};
use serde_json::json;

const REMOTE: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));

fn rsa_key() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(TestKey::rsa)
}

fn verifier_for(keys: &[&TestKey]) -> TokenAuthenticator {
    let mut bundle = String::new();
    for (i, k) in keys.iter().enumerate() {
        bundle.push_str(&k.self_signed_pem(&format!("signer {i}")));
    }
    let mut t = TrustedKeys::new();
    t.add_pem_bundle(bundle.as_bytes(), "bundle").unwrap();
    TokenAuthenticator::new("https://auth.example/token", "berth", "issuer", t)
}

fn pull_a() -> Vec<Scope> {
    vec![Scope::repository("a", &[Action::Pull])]
}

#[tokio::test]
async fn each_key_kind_verifies_with_kid_and_without() {
    let p = TestKey::p256();
    let e = TestKey::ed25519();
    let keys = [rsa_key(), &p, &e];
    let v = verifier_for(&keys);
    for k in keys {
        for kid in [Some(k.kid()), None] {
            let tok = sign(k, kid.as_deref(), None, &claims(pull("a")));
            let who = v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap();
            assert_eq!(
                who,
                Principal::User("alice".into()),
                "{:?} kid {:?}",
                k.alg,
                kid
            );
        }
    }
}

#[test]
fn libtrust_kid_matches_openssl_and_coreutils() {
    // Independent computation: DER SPKI -> sha256 -> first 30 bytes -> base32 -> groups of 4.
    let k = TestKey::p256();
    let dir = tempfile::tempdir().unwrap();
    let der = temp_file(&dir, "spki.der", &k.spki_der);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl dgst -sha256 -binary {} | head -c 30 | base32 -w0",
            der.display()
        ))
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b32 = String::from_utf8(out.stdout).unwrap();
    assert_eq!(b32.len(), 48, "{b32}");
    let grouped = b32
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(k.kid(), grouped);
}

#[tokio::test]
async fn rfc7638_thumbprint_and_jwks_kids_are_accepted() {
    let p = TestKey::p256();
    let v = verifier_for(&[&p]);
    let thumb = {
        let mut t = TrustedKeys::new();
        t.add_pem_bundle(p.self_signed_pem("x").as_bytes(), "x")
            .unwrap();
        t.keys()[0].thumbprint().to_owned()
    };
    let tok = sign(&p, Some(&thumb), None, &claims(pull("a")));
    v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap();

    // JWKS with its own kid, for an Ed25519 key and an RSA key.
    let e = TestKey::ed25519();
    let dir = tempfile::tempdir().unwrap();
    let x = {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        let vk = ed25519_dalek::VerifyingKey::from_public_key_der(&e.spki_der).unwrap();
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            vk.as_bytes(),
        )
    };
    let (n, ex) = {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        let k = rsa::RsaPublicKey::from_public_key_der(&rsa_key().spki_der).unwrap();
        let enc = |b: Vec<u8>| {
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b)
        };
        (enc(k.n().to_bytes_be()), enc(k.e().to_bytes_be()))
    };
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed-1"},
        {"kty": "RSA", "n": n, "e": ex, "kid": "rsa-1", "use": "sig"},
    ]});
    let jwks_path = temp_file(&dir, "jwks.json", jwks.to_string().as_bytes());
    let cfg = TokenConfig {
        realm: "https://auth.example/token".into(),
        service: "berth".into(),
        issuer: "issuer".into(),
        rootcertbundle: None,
        jwks: Some(jwks_path),
        leeway_secs: 60,
        insufficient_scope: InsufficientScope::Unauthorized,
    };
    let v = TokenAuthenticator::from_config(&cfg).unwrap();
    for (k, kid) in [(&e, "ed-1"), (rsa_key(), "rsa-1")] {
        let tok = sign(k, Some(kid), None, &claims(pull("a")));
        v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap();
        // The libtrust kid of a JWKS key works too.
        let tok = sign(k, Some(&k.kid()), None, &claims(pull("a")));
        v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap();
    }
    // A kid from the JWKS on a token signed by another key is refused.
    let tok = sign(&p, Some("rsa-1"), None, &claims(pull("a")));
    assert_eq!(v.verify(&tok), Err(TokenError::BadSignature));
}

#[test]
fn config_without_keys_or_with_bad_files_is_refused() {
    let base = TokenConfig {
        realm: "r".into(),
        service: "s".into(),
        issuer: "i".into(),
        rootcertbundle: None,
        jwks: None,
        leeway_secs: 60,
        insufficient_scope: InsufficientScope::Unauthorized,
    };
    let e = TokenAuthenticator::from_config(&base).unwrap_err();
    assert!(e.to_string().contains("rootcertbundle"), "{e}");
    let mut c = base.clone();
    c.rootcertbundle = Some("/nonexistent/bundle.pem".into());
    assert!(
        TokenAuthenticator::from_config(&c)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/bundle.pem")
    );
    // A certificate with a P-384 key is refused with a clear message.
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = rcgen::CertificateParams::new(vec![])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let mut t = TrustedKeys::new();
    let err = t
        .add_pem_bundle(cert.pem().as_bytes(), "p384.pem")
        .unwrap_err();
    assert!(err.to_string().contains("P-256"), "{err}");
    // yaml/json config parsing of the token section.
    let parsed: TokenConfig = serde_json::from_value(json!({
        "realm": "r", "service": "s", "issuer": "i", "rootcertbundle": "/x.pem"
    }))
    .unwrap();
    assert_eq!(parsed.leeway_secs, 60);
    assert!(
        serde_json::from_value::<TokenConfig>(
            json!({"realm": "r", "service": "s", "issuer": "i", "typo": 1})
        )
        .is_err()
    );
}

#[tokio::test]
async fn x5c_chains_to_the_bundle() {
    let ca = TestCa::new(TestKey::p256(), "Test Root");
    let leaf = TestKey::ed25519();
    let leaf_cert = ca.issue(&leaf, "token signer", false, (2000, 4000));
    let mut bundle = TrustedKeys::new();
    bundle
        .add_pem_bundle(ca.cert.pem().as_bytes(), "ca.pem")
        .unwrap();
    let v = TokenAuthenticator::new("r", "berth", "issuer", bundle);

    let x5c = vec![b64(leaf_cert.der())];
    let tok = sign(&leaf, None, Some(x5c.clone()), &claims(pull("a")));
    v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap();

    // Via an intermediate CA carried in x5c.
    let inter_key = TestKey::rsa();
    let inter_cert = ca.issue(&inter_key, "Intermediate", true, (2000, 4000));
    let inter = TestCa {
        key: inter_key,
        params: inter_params("Intermediate"),
        cert: inter_cert,
    };
    let leaf2 = TestKey::p256();
    let leaf2_cert = inter.issue(&leaf2, "signer 2", false, (2000, 4000));
    let tok = sign(
        &leaf2,
        None,
        Some(vec![b64(leaf2_cert.der()), b64(inter.cert.der())]),
        &claims(pull("a")),
    );
    v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap();
    // Without the intermediate, the chain is broken.
    let tok = sign(
        &leaf2,
        None,
        Some(vec![b64(leaf2_cert.der())]),
        &claims(pull("a")),
    );
    assert!(matches!(v.verify(&tok), Err(TokenError::Chain(_))));

    // A non-CA leaf cannot act as an intermediate.
    let rogue = TestKey::p256();
    let leaf_as_ca = TestCa {
        key: leaf,
        params: inter_params("token signer"),
        cert: leaf_cert,
    };
    let rogue_cert = leaf_as_ca.issue(&rogue, "rogue", false, (2000, 4000));
    let tok = sign(
        &rogue,
        None,
        Some(vec![b64(rogue_cert.der()), b64(leaf_as_ca.cert.der())]),
        &claims(pull("a")),
    );
    let err = v.verify(&tok).unwrap_err();
    assert!(
        matches!(&err, TokenError::Chain(m) if m.contains("not a CA")),
        "{err:?}"
    );

    // An expired leaf certificate.
    let old = TestKey::p256();
    let old_cert = ca.issue(&old, "old", false, (2000, 2001));
    let tok = sign(
        &old,
        None,
        Some(vec![b64(old_cert.der())]),
        &claims(pull("a")),
    );
    assert!(matches!(v.verify(&tok), Err(TokenError::Chain(m)) if m.contains("expired")));

    // A self-signed certificate not in the bundle.
    let stranger = TestKey::p256();
    let cert = rcgen::CertificateParams::new(vec![])
        .unwrap()
        .self_signed(&stranger.rcgen())
        .unwrap();
    let tok = sign(
        &stranger,
        None,
        Some(vec![b64(cert.der())]),
        &claims(pull("a")),
    );
    assert!(matches!(v.verify(&tok), Err(TokenError::Chain(_))));

    // x5c naming a trusted leaf, but the token signed by another key.
    let other = TestKey::p256();
    let tok = sign(&other, None, Some(x5c), &claims(pull("a")));
    assert_eq!(v.verify(&tok), Err(TokenError::BadSignature));
}

fn inter_params(cn: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p
}

#[tokio::test]
async fn claim_checks() {
    let k = TestKey::p256();
    let v = verifier_for(&[&k]);
    let kid = k.kid();
    let n = now();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims(pull("a"));
        f(&mut c);
        sign(&k, Some(&kid), None, &c)
    };
    let cases: Vec<(String, TokenError)> = vec![
        (with(&|c| c["exp"] = json!(n - 120)), TokenError::Expired),
        (
            with(&|c| c["nbf"] = json!(n + 600)),
            TokenError::NotYetValid,
        ),
        (
            with(&|c| c["aud"] = json!("other-registry")),
            TokenError::WrongAudience,
        ),
        (
            with(&|c| c["aud"] = json!(["x", "y"])),
            TokenError::WrongAudience,
        ),
        (with(&|c| c["iss"] = json!("evil")), TokenError::WrongIssuer),
        (
            with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            TokenError::Claim("exp".into()),
        ),
        (
            with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
            TokenError::Claim("aud".into()),
        ),
    ];
    for (tok, want) in cases {
        assert_eq!(v.verify(&tok), Err(want.clone()), "{want:?}");
        let e = v
            .authorize(&bearer(&tok), &pull_a(), REMOTE)
            .await
            .unwrap_err();
        assert_eq!(e.reason, Denial::Unauthenticated);
        assert!(
            e.www_authenticate
                .unwrap()
                .ends_with(r#",error="invalid_token""#)
        );
    }
    // Within the 60 s skew: accepted. `aud` as an array containing the service: accepted.
    v.verify(&with(&|c| c["exp"] = json!(n - 20))).unwrap();
    v.verify(&with(&|c| c["nbf"] = json!(n + 20))).unwrap();
    v.verify(&with(&|c| c["aud"] = json!(["x", "berth"])))
        .unwrap();
    // A stricter leeway refuses the same token.
    let strict = verifier_for(&[&k]).with_leeway(0);
    assert_eq!(
        strict.verify(&with(&|c| c["exp"] = json!(n - 20))),
        Err(TokenError::Expired)
    );
    // No sub: anonymous principal.
    let tok = with(&|c| drop(c.as_object_mut().unwrap().remove("sub")));
    assert_eq!(
        v.authorize(&bearer(&tok), &pull_a(), REMOTE).await.unwrap(),
        Principal::Anonymous
    );
}

#[tokio::test]
async fn forged_and_unknown_keys_are_refused() {
    let trusted = TestKey::p256();
    let v = verifier_for(&[&trusted, rsa_key()]);
    let stranger = TestKey::p256();
    // Unknown kid.
    let tok = sign(&stranger, Some(&stranger.kid()), None, &claims(pull("a")));
    assert_eq!(v.verify(&tok), Err(TokenError::UnknownKey));
    // No kid: every trusted key is tried, none verifies.
    let tok = sign(&stranger, None, None, &claims(pull("a")));
    assert_eq!(v.verify(&tok), Err(TokenError::BadSignature));
    // A trusted kid on a stranger's signature.
    let tok = sign(&stranger, Some(&trusted.kid()), None, &claims(pull("a")));
    assert_eq!(v.verify(&tok), Err(TokenError::BadSignature));
    // Claims altered after signing.
    let good = sign(&trusted, Some(&trusted.kid()), None, &claims(pull("a")));
    let parts: Vec<&str> = good.split('.').collect();
    let evil_claims =
        claims(json!([{"type": "repository", "name": "a", "actions": ["pull", "push", "delete"]}]));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            evil_claims.to_string()
        ),
        parts[2]
    );
    assert_eq!(v.verify(&forged), Err(TokenError::BadSignature));
    // alg none, in any case, with or without a signature.
    for alg in ["none", "None", "NONE"] {
        let tok = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims(pull("a")), b"");
        assert_eq!(v.verify(&tok), Err(TokenError::AlgNone), "{alg}");
        let e = v
            .authorize(&bearer(&tok), &pull_a(), REMOTE)
            .await
            .unwrap_err();
        assert_eq!(e.reason, Denial::Unauthenticated);
    }
    // HS256 signed with the RSA public key bytes (the classic key-confusion attack).
    let hs = {
        let h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(
            &h,
            &claims(pull("a")),
            &jsonwebtoken::EncodingKey::from_secret(&rsa_key().spki_der),
        )
        .unwrap()
    };
    assert_eq!(v.verify(&hs), Err(TokenError::Symmetric));
    // An algorithm mismatching the key: ES256 header, RSA kid.
    let tok = sign(&trusted, Some(&rsa_key().kid()), None, &claims(pull("a")));
    assert_eq!(v.verify(&tok), Err(TokenError::BadSignature));
    // Unsupported algorithm, crit header, garbage.
    let tok = raw_token(&json!({"alg": "ES512"}), &claims(pull("a")), b"x");
    assert!(matches!(
        v.verify(&tok),
        Err(TokenError::UnsupportedAlgorithm(_))
    ));
    let tok = raw_token(
        &json!({"alg": "ES256", "crit": ["exp"]}),
        &claims(pull("a")),
        b"x",
    );
    assert_eq!(v.verify(&tok), Err(TokenError::Critical));
    for junk in ["", "a.b", "a.b.c.d", "!!!.e30.", "e30.e30.e30"] {
        assert_eq!(v.verify(junk), Err(TokenError::Malformed), "{junk:?}");
    }
}

#[tokio::test]
async fn scopes_decide_per_repository() {
    let k = TestKey::p256();
    let v = verifier_for(&[&k]);
    let access = json!([
        {"type": "repository", "name": "a", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]);
    let tok = sign(&k, Some(&k.kid()), None, &claims(access));
    let h = bearer(&tok);
    v.authorize(
        &h,
        &[Scope::repository("a", &[Action::Pull, Action::Push])],
        REMOTE,
    )
    .await
    .unwrap();
    v.authorize(&h, &[Scope::catalog()], REMOTE).await.unwrap();
    v.authorize(&h, &[], REMOTE).await.unwrap();

    // A token for repository a used on repository b.
    let need_b = [Scope::repository("b", &[Action::Pull])];
    let e = v.authorize(&h, &need_b, REMOTE).await.unwrap_err();
    assert_eq!(e.reason, Denial::Unauthenticated);
    assert_eq!(e.code().as_str(), "UNAUTHORIZED");
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some(
            r#"Bearer realm="https://auth.example/token",service="berth",scope="repository:b:pull",error="insufficient_scope""#
        )
    );
    // Delete on a is not granted.
    let e = v
        .authorize(&h, &[Scope::repository("a", &[Action::Delete])], REMOTE)
        .await
        .unwrap_err();
    assert!(
        e.www_authenticate
            .unwrap()
            .contains(r#"scope="repository:a:delete""#)
    );
    // A prefix of the name is not the name.
    assert!(
        v.authorize(&h, &[Scope::repository("a/b", &[Action::Pull])], REMOTE)
            .await
            .is_err()
    );

    // The 403 option.
    let v403 = verifier_for(&[&k]).with_insufficient_scope(InsufficientScope::Forbidden);
    let e = v403.authorize(&h, &need_b, REMOTE).await.unwrap_err();
    assert_eq!((e.reason, e.code().as_str()), (Denial::Denied, "DENIED"));
}

#[tokio::test]
async fn challenges_name_exactly_the_needed_scopes() {
    let k = TestKey::p256();
    let v = verifier_for(&[&k]);
    let e = v
        .authorize(&http::HeaderMap::new(), &[], REMOTE)
        .await
        .unwrap_err();
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some(r#"Bearer realm="https://auth.example/token",service="berth""#)
    );
    let needed = [
        Scope::repository("t", &[Action::Pull, Action::Push]),
        Scope::repository("s", &[Action::Pull]),
    ];
    let e = v
        .authorize(&http::HeaderMap::new(), &needed, REMOTE)
        .await
        .unwrap_err();
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some(
            r#"Bearer realm="https://auth.example/token",service="berth",scope="repository:t:pull,push repository:s:pull""#
        )
    );
    let body = serde_json::to_value(e.body()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(body["errors"][0]["detail"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn malformed_authorization_headers() {
    let k = TestKey::p256();
    let v = verifier_for(&[&k]);
    let huge = format!("Bearer {}", "a".repeat(9000));
    let cases: Vec<Vec<u8>> = vec![
        b"Bearer".to_vec(),
        b"Bearer not-a-jwt".to_vec(),
        b"Digest x".to_vec(),
        b"Negotiate abc".to_vec(),
        b"Bearer \xff\xfe".to_vec(),
        huge.into_bytes(),
    ];
    for c in cases {
        let e = v
            .authorize(&raw_auth(&c), &pull_a(), REMOTE)
            .await
            .unwrap_err();
        assert_eq!(
            e.reason,
            Denial::Unauthenticated,
            "{:?}",
            String::from_utf8_lossy(&c)
        );
        assert!(e.www_authenticate.unwrap().starts_with("Bearer "));
    }
    // Basic credentials at a token registry: 401 with the Bearer challenge (no error attribute).
    let e = v
        .authorize(&basic("alice", "pw"), &pull_a(), REMOTE)
        .await
        .unwrap_err();
    assert_eq!(
        e.www_authenticate.as_deref(),
        Some(
            r#"Bearer realm="https://auth.example/token",service="berth",scope="repository:a:pull""#
        )
    );
}

#[tokio::test]
async fn mount_needs_pull_on_source_else_plain_upload() {
    let k = TestKey::p256();
    let v = verifier_for(&[&k]);
    let tok = |access: serde_json::Value| bearer(&sign(&k, Some(&k.kid()), None, &claims(access)));
    let both = tok(json!([
        {"type": "repository", "name": "t", "actions": ["pull", "push"]},
        {"type": "repository", "name": "s", "actions": ["pull"]},
    ]));
    assert_eq!(
        v.authorize_mount(&both, "t", "s", REMOTE).await.unwrap().1,
        MountDecision::Mount
    );
    let target_only =
        tok(json!([{"type": "repository", "name": "t", "actions": ["pull", "push"]}]));
    assert_eq!(
        v.authorize_mount(&target_only, "t", "s", REMOTE)
            .await
            .unwrap()
            .1,
        MountDecision::Upload
    );
    let source_only = tok(json!([{"type": "repository", "name": "s", "actions": ["pull"]}]));
    let e = v
        .authorize_mount(&source_only, "t", "s", REMOTE)
        .await
        .unwrap_err();
    assert!(
        e.www_authenticate
            .unwrap()
            .contains(r#"scope="repository:t:pull,push repository:s:pull""#)
    );
    let e = v
        .authorize_mount(&http::HeaderMap::new(), "t", "s", REMOTE)
        .await
        .unwrap_err();
    assert_eq!(e.reason, Denial::Unauthenticated);
}

#[tokio::test]
async fn audit_events_never_carry_the_token() {
    let k = TestKey::p256();
    let v = verifier_for(&[&k]);
    let cap = Capture::default();
    let _g = tracing::subscriber::set_default(cap.subscriber());
    let mut c = claims(pull("a"));
    c["exp"] = json!(now() - 3600);
    let tok = sign(&k, Some(&k.kid()), None, &c);
    v.authorize(&bearer(&tok), &pull_a(), REMOTE)
        .await
        .unwrap_err();
    let good = sign(&k, Some(&k.kid()), None, &claims(pull("a")));
    v.authorize(
        &bearer(&good),
        &[Scope::repository("b", &[Action::Pull])],
        REMOTE,
    )
    .await
    .unwrap_err();
    // No credentials: not a failure, no event.
    v.authorize(&http::HeaderMap::new(), &pull_a(), REMOTE)
        .await
        .unwrap_err();
    let text = cap.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["fields"]["reason"], "token_expired");
    assert_eq!(lines[0]["fields"]["remote"], "192.0.2.7");
    assert_eq!(lines[0]["target"], berth_auth::audit::AUDIT_TARGET);
    assert_eq!(lines[1]["fields"]["reason"], "insufficient_scope");
    assert_eq!(lines[1]["fields"]["user"], "alice");
    for t in [&tok, &good] {
        assert!(
            !text.contains(t.split('.').nth(2).unwrap()),
            "token signature leaked"
        );
    }
}
