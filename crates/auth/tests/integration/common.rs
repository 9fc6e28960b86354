//! Test helpers: keys made in the test, certificates made with rcgen, JWTs signed with
//! jsonwebtoken, and a tracing capture for audit events.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::pkcs1::EncodeRsaPrivateKey as _;

/// A signing key made in the test.
pub struct TestKey {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// PKCS#8 PEM of the private key (for rcgen).
    pub pkcs8_pem: String,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    pub rcgen_alg: &'static rcgen::SignatureAlgorithm,
}

impl TestKey {
    pub fn rsa() -> Self {
        let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let pkcs1 = k.to_pkcs1_der().unwrap();
        TestKey {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(pkcs1.as_bytes()),
            pkcs8_pem: k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            spki_der: k.to_public_key().to_public_key_der().unwrap().into_vec(),
            rcgen_alg: &rcgen::PKCS_RSA_SHA256,
        }
    }

    pub fn p256() -> Self {
        let k = p256::SecretKey::random(&mut rand_core::OsRng);
        let der = k.to_pkcs8_der().unwrap();
        TestKey {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            pkcs8_pem: k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            spki_der: k.public_key().to_public_key_der().unwrap().into_vec(),
            rcgen_alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    pub fn ed25519() -> Self {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let k = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = k.to_pkcs8_der().unwrap();
        TestKey {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            pkcs8_pem: k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            spki_der: k.verifying_key().to_public_key_der().unwrap().into_vec(),
            rcgen_alg: &rcgen::PKCS_ED25519,
        }
    }

    pub fn rcgen(&self) -> rcgen::KeyPair {
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&self.pkcs8_pem, self.rcgen_alg).unwrap()
    }

    /// A self-signed certificate (PEM) for this key.
    pub fn self_signed_pem(&self, cn: &str) -> String {
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.self_signed(&self.rcgen()).unwrap().pem()
    }

    pub fn kid(&self) -> String {
        berth_auth::libtrust_key_id(&self.spki_der)
    }
}

/// A CA made in the test, able to issue certificates.
pub struct TestCa {
    pub key: TestKey,
    pub params: rcgen::CertificateParams,
    pub cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new(key: TestKey, cn: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key.rcgen()).unwrap();
        TestCa { key, params, cert }
    }

    /// Issues a certificate for `subject` (a CA when `ca`), valid over the given years.
    pub fn issue(
        &self,
        subject: &TestKey,
        cn: &str,
        ca: bool,
        years: (i32, i32),
    ) -> rcgen::Certificate {
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        p.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        p.is_ca = if ca {
            rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        } else {
            rcgen::IsCa::ExplicitNoCa
        };
        let kp = self.key.rcgen();
        let issuer = rcgen::Issuer::from_params(&self.params, &kp);
        p.signed_by(&subject.rcgen(), &issuer).unwrap()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// Standard claims for service `berth`, issuer `issuer`, granting `access`.
pub fn claims(access: serde_json::Value) -> serde_json::Value {
    let n = now();
    serde_json::json!({
        "iss": "issuer", "sub": "alice", "aud": "berth",
        "exp": n + 300, "nbf": n - 1, "iat": n, "jti": "x",
        "access": access,
    })
}

pub fn pull(repo: &str) -> serde_json::Value {
    serde_json::json!([{"type": "repository", "name": repo, "actions": ["pull"]}])
}

/// Signs `claims` with `key`, header `kid`/`x5c` as given.
pub fn sign(
    key: &TestKey,
    kid: Option<&str>,
    x5c: Option<Vec<String>>,
    claims: &serde_json::Value,
) -> String {
    let mut h = Header::new(key.alg);
    h.kid = kid.map(str::to_owned);
    h.x5c = x5c;
    jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
}

/// A token with an arbitrary header JSON and signature bytes, built by hand.
pub fn raw_token(header: &serde_json::Value, claims: &serde_json::Value, sig: &[u8]) -> String {
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        e(header.to_string().as_bytes()),
        e(claims.to_string().as_bytes()),
        e(sig)
    )
}

pub fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

pub fn basic(user: &str, pass: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    let v = format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()));
    h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
    h
}

pub fn raw_auth(value: &[u8]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_bytes(value).unwrap(),
    );
    h
}

/// Collects everything written by a tracing subscriber.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    /// A subscriber writing JSON lines into this capture.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let c = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || CaptureWriter(c.clone()))
            .finish()
    }
}

pub struct CaptureWriter(Capture);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.0.lock().unwrap().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `text` to a new temp file.
pub fn temp_file(dir: &tempfile::TempDir, name: &str, text: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::File::create(&p).unwrap().write_all(text).unwrap();
    p
}
