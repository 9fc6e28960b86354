//! Trusted public keys for token verification: loading them from a PEM bundle of X.509
//! certificates (Distribution's `rootcertbundle`) or a JWKS file, computing their key ids, and
//! verifying `x5c` certificate chains against the bundle.
//!
//! Supported keys: RSA (2048 bits or more), ECDSA P-256 and Ed25519.
//!
//! Key ids: a token's `kid` header may be
//! * Docker's libtrust key id — base32 (RFC 4648, no padding) of the first 30 bytes of the
//!   SHA-256 of the DER SubjectPublicKeyInfo, in 12 groups of 4 joined by `:` (what Distribution's
//!   token servers and `docker/auth` put there);
//! * the RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical JWK), which newer token
//!   servers use;
//! * the `kid` given to the key in a JWKS file.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use berth_oci::Digest;
use jsonwebtoken::{Algorithm, DecodingKey};
use rsa::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
use rsa::traits::PublicKeyParts as _;
use serde::Deserialize;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// Longest `x5c` chain followed.
pub const MAX_CHAIN: usize = 5;

/// Why a key, certificate or key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM text did not parse.
    #[error("{origin}: not valid PEM: {detail}")]
    Pem {
        /// Where the text came from.
        origin: String,
        /// The parser's message.
        detail: String,
    },
    /// The file held no usable key.
    #[error(
        "{0}: no CERTIFICATE or PUBLIC KEY blocks found; give a PEM bundle of X.509 certificates"
    )]
    Empty(String),
    /// A certificate did not parse.
    #[error("{origin}: certificate #{index} is not valid X.509 DER: {detail}")]
    Certificate {
        /// Where it came from.
        origin: String,
        /// 1-based position.
        index: usize,
        /// The parser's message.
        detail: String,
    },
    /// A key type this crate does not verify with.
    #[error("unsupported public key: {0}; use RSA (2048+ bits), ECDSA P-256 or Ed25519")]
    Unsupported(String),
    /// A JWKS file that did not parse.
    #[error("{origin}: not a JWKS document ({{\"keys\":[...]}}): {detail}")]
    Jwks {
        /// Where it came from.
        origin: String,
        /// What failed.
        detail: String,
    },
    /// An `x5c` chain that is malformed or does not lead to a trusted certificate.
    #[error("x5c certificate chain refused: {0}")]
    Chain(String),
}

/// The kind of a trusted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA; verifies RS256/RS384/RS512/PS256/PS384/PS512.
    Rsa,
    /// ECDSA on P-256; verifies ES256.
    EcP256,
    /// Ed25519; verifies EdDSA.
    Ed25519,
}

impl KeyKind {
    /// True when a token signed with `alg` can be verified by a key of this kind.
    pub fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

#[derive(Clone)]
enum Public {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key tokens may be signed with.
#[derive(Clone)]
pub struct TrustedKey {
    kind: KeyKind,
    public: Public,
    spki_der: Vec<u8>,
    libtrust_kid: String,
    thumbprint: String,
    jwks_kid: Option<String>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("kind", &self.kind)
            .field("kid", &self.libtrust_kid)
            .field("thumbprint", &self.thumbprint)
            .field("jwks_kid", &self.jwks_kid)
            .finish()
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Docker's libtrust key id of a DER SubjectPublicKeyInfo.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Digest::sha256_of(spki_der).to_bytes();
    // 30 bytes = 240 bits = exactly 48 base32 characters, so no padding arises.
    let mut chars = Vec::with_capacity(48);
    for chunk in digest[..30].chunks(5) {
        let mut acc: u64 = 0;
        for &b in chunk {
            acc = (acc << 8) | u64::from(b);
        }
        for i in (0..8).rev() {
            chars.push(ALPHABET[((acc >> (i * 5)) & 31) as usize]);
        }
    }
    chars
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

impl TrustedKey {
    /// A key from its DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| {
            KeyError::Unsupported(format!("SubjectPublicKeyInfo does not parse: {e}"))
        })?;
        let oid = spki.algorithm.oid;
        let (kind, public, thumb_json, decoding) = if oid == OID_RSA {
            let k = rsa::RsaPublicKey::from_public_key_der(der)
                .map_err(|e| KeyError::Unsupported(format!("RSA key does not parse: {e}")))?;
            if k.size() < 256 {
                return Err(KeyError::Unsupported(format!(
                    "RSA key of {} bits is too small",
                    k.size() * 8
                )));
            }
            let (n, e) = (k.n().to_bytes_be(), k.e().to_bytes_be());
            let json = format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64url(&e),
                b64url(&n)
            );
            let dk = DecodingKey::from_rsa_raw_components(&n, &e);
            (KeyKind::Rsa, Public::Rsa(k), json, dk)
        } else if oid == OID_EC {
            let k = p256::PublicKey::from_public_key_der(der)
                .map_err(|_| KeyError::Unsupported("EC key on a curve other than P-256".into()))?;
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&k, false);
            let (x, y) = (point.x().map(|x| x.to_vec()), point.y().map(|y| y.to_vec()));
            let (Some(x), Some(y)) = (x, y) else {
                return Err(KeyError::Unsupported("EC point at infinity".into()));
            };
            let json = format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64url(&x),
                b64url(&y)
            );
            let dk = DecodingKey::from_ec_der(point.as_bytes());
            (
                KeyKind::EcP256,
                Public::P256(p256::ecdsa::VerifyingKey::from(k)),
                json,
                dk,
            )
        } else if oid == OID_ED25519 {
            let k = ed25519_dalek::VerifyingKey::from_public_key_der(der)
                .map_err(|e| KeyError::Unsupported(format!("Ed25519 key does not parse: {e}")))?;
            let json = format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64url(k.as_bytes())
            );
            let dk = DecodingKey::from_ed_der(k.as_bytes());
            (KeyKind::Ed25519, Public::Ed25519(k), json, dk)
        } else {
            return Err(KeyError::Unsupported(format!("algorithm OID {oid}")));
        };
        Ok(TrustedKey {
            kind,
            public,
            spki_der: der.to_vec(),
            libtrust_kid: libtrust_key_id(der),
            thumbprint: b64url(&Digest::sha256_of(thumb_json.as_bytes()).to_bytes()),
            jwks_kid: None,
            decoding,
        })
    }

    /// The key of an X.509 certificate.
    pub fn from_certificate(cert: &Certificate) -> Result<Self, KeyError> {
        let der = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| KeyError::Unsupported(e.to_string()))?;
        Self::from_spki_der(&der)
    }

    /// The key kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The libtrust key id (what Berth's issuer puts in `kid`).
    pub fn kid(&self) -> &str {
        &self.libtrust_kid
    }

    /// The RFC 7638 JWK thumbprint.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The `jsonwebtoken` key.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// True when a token's `kid` names this key.
    pub fn matches_kid(&self, kid: &str) -> bool {
        kid == self.libtrust_kid || kid == self.thumbprint || self.jwks_kid.as_deref() == Some(kid)
    }

    /// Verifies a certificate signature made by this key over `tbs`.
    fn verify_cert_signature(&self, alg: ObjectIdentifier, tbs: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        use rsa::Pkcs1v15Sign;
        use rsa::sha2::{Sha256 as S256, Sha384, Sha512};
        match &self.public {
            Public::Rsa(k) => {
                if alg == OID_SHA256_RSA {
                    k.verify(
                        Pkcs1v15Sign::new::<S256>(),
                        &<S256 as rsa::sha2::Digest>::digest(tbs),
                        sig,
                    )
                    .is_ok()
                } else if alg == OID_SHA384_RSA {
                    k.verify(
                        Pkcs1v15Sign::new::<Sha384>(),
                        &<Sha384 as rsa::sha2::Digest>::digest(tbs),
                        sig,
                    )
                    .is_ok()
                } else if alg == OID_SHA512_RSA {
                    k.verify(
                        Pkcs1v15Sign::new::<Sha512>(),
                        &<Sha512 as rsa::sha2::Digest>::digest(tbs),
                        sig,
                    )
                    .is_ok()
                } else {
                    false
                }
            }
            Public::P256(k) => {
                alg == OID_ECDSA_SHA256
                    && p256::ecdsa::Signature::from_der(sig)
                        .is_ok_and(|s| k.verify(tbs, &s).is_ok())
            }
            Public::Ed25519(k) => {
                alg == OID_ED25519
                    && ed25519_dalek::Signature::from_slice(sig)
                        .is_ok_and(|s| k.verify_strict(tbs, &s).is_ok())
            }
        }
    }

    /// A key from JWK members (only public members are read).
    fn from_jwk(jwk: &RawJwk) -> Result<Self, KeyError> {
        let dec = |s: &Option<String>, what: &str| -> Result<Vec<u8>, KeyError> {
            let s = s
                .as_deref()
                .ok_or_else(|| KeyError::Unsupported(format!("JWK lacks {what}")))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| KeyError::Unsupported(format!("JWK member {what} is not base64url")))
        };
        let der = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let n = rsa::BigUint::from_bytes_be(&dec(&jwk.n, "n")?);
                let e = rsa::BigUint::from_bytes_be(&dec(&jwk.e, "e")?);
                let k = rsa::RsaPublicKey::new(n, e)
                    .map_err(|e| KeyError::Unsupported(format!("RSA JWK: {e}")))?;
                k.to_public_key_der()
                    .map_err(|e| KeyError::Unsupported(e.to_string()))?
                    .into_vec()
            }
            ("EC", Some("P-256")) => {
                let mut sec1 = vec![4u8];
                sec1.extend(dec(&jwk.x, "x")?);
                sec1.extend(dec(&jwk.y, "y")?);
                let k = p256::PublicKey::from_sec1_bytes(&sec1)
                    .map_err(|_| KeyError::Unsupported("EC JWK is not a P-256 point".into()))?;
                k.to_public_key_der()
                    .map_err(|e| KeyError::Unsupported(e.to_string()))?
                    .into_vec()
            }
            ("OKP", Some("Ed25519")) => {
                let x: [u8; 32] = dec(&jwk.x, "x")?
                    .try_into()
                    .map_err(|_| KeyError::Unsupported("Ed25519 JWK x is not 32 bytes".into()))?;
                let k = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|e| KeyError::Unsupported(format!("Ed25519 JWK: {e}")))?;
                k.to_public_key_der()
                    .map_err(|e| KeyError::Unsupported(e.to_string()))?
                    .into_vec()
            }
            (kty, crv) => {
                return Err(KeyError::Unsupported(format!(
                    "JWK kty {kty:?} crv {crv:?}"
                )));
            }
        };
        let mut key = Self::from_spki_der(&der)?;
        key.jwks_kid = jwk.kid.clone();
        Ok(key)
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

struct Root {
    der: Vec<u8>,
    cert: Certificate,
    key: TrustedKey,
}

/// The set of keys and root certificates a token verifier trusts.
#[derive(Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
    roots: Vec<Root>,
}

impl std::fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKeys")
            .field("keys", &self.keys)
            .field("roots", &self.roots.len())
            .finish()
    }
}

fn now_unix() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn cert_valid_at(cert: &Certificate, now: Duration) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_before.to_unix_duration() <= now && now <= v.not_after.to_unix_duration()
}

/// `Some(true/false)` from the basicConstraints extension, `None` when absent.
fn is_ca(cert: &Certificate) -> Option<bool> {
    let exts = cert.tbs_certificate.extensions.as_ref()?;
    let ext = exts.iter().find(|e| e.extn_id == OID_BASIC_CONSTRAINTS)?;
    Some(
        BasicConstraints::from_der(ext.extn_value.as_bytes())
            .map(|b| b.ca)
            .unwrap_or(false),
    )
}

fn signed_by(child: &Certificate, issuer: &Certificate, issuer_key: &TrustedKey) -> bool {
    if child.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let Ok(tbs) = child.tbs_certificate.to_der() else {
        return false;
    };
    let Some(sig) = child.signature.as_bytes() else {
        return false;
    };
    issuer_key.verify_cert_signature(child.signature_algorithm.oid, &tbs, sig)
}

impl TrustedKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one key.
    pub fn add_key(&mut self, key: TrustedKey) {
        self.keys.push(key);
    }

    /// The keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Adds every `CERTIFICATE` (whose key becomes trusted and which may anchor `x5c` chains)
    /// and `PUBLIC KEY` block of a PEM bundle. `origin` names it in errors.
    pub fn add_pem_bundle(&mut self, pem_text: &[u8], origin: &str) -> Result<usize, KeyError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| KeyError::Pem {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
        let mut added = 0;
        for (i, block) in blocks.iter().enumerate() {
            match block.tag() {
                "CERTIFICATE" => {
                    let cert = Certificate::from_der(block.contents()).map_err(|e| {
                        KeyError::Certificate {
                            origin: origin.to_owned(),
                            index: i + 1,
                            detail: e.to_string(),
                        }
                    })?;
                    let key = TrustedKey::from_certificate(&cert)?;
                    self.keys.push(key.clone());
                    self.roots.push(Root {
                        der: block.contents().to_vec(),
                        cert,
                        key,
                    });
                    added += 1;
                }
                "PUBLIC KEY" => {
                    self.keys.push(TrustedKey::from_spki_der(block.contents())?);
                    added += 1;
                }
                _ => {}
            }
        }
        if added == 0 {
            return Err(KeyError::Empty(origin.to_owned()));
        }
        Ok(added)
    }

    /// Adds the keys of a JWKS document (`{"keys":[...]}`); each key's `kid` is honoured.
    pub fn add_jwks(&mut self, json: &[u8], origin: &str) -> Result<usize, KeyError> {
        let set: RawJwks = serde_json::from_slice(json).map_err(|e| KeyError::Jwks {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
        let n = set.keys.len();
        for jwk in &set.keys {
            self.keys
                .push(TrustedKey::from_jwk(jwk).map_err(|e| KeyError::Jwks {
                    origin: origin.to_owned(),
                    detail: e.to_string(),
                })?);
        }
        Ok(n)
    }

    /// Loads a PEM bundle file and/or a JWKS file.
    pub fn load(rootcertbundle: Option<&Path>, jwks: Option<&Path>) -> Result<Self, KeyError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| KeyError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let mut keys = TrustedKeys::new();
        if let Some(p) = rootcertbundle {
            keys.add_pem_bundle(&read(p)?, &p.display().to_string())?;
        }
        if let Some(p) = jwks {
            keys.add_jwks(&read(p)?, &p.display().to_string())?;
        }
        Ok(keys)
    }

    /// Keys whose id is `kid`.
    pub fn by_kid(&self, kid: &str) -> Vec<&TrustedKey> {
        self.keys.iter().filter(|k| k.matches_kid(kid)).collect()
    }

    /// Verifies an `x5c` header (base64 DER certificates, leaf first) against the bundle's
    /// certificates and returns the leaf's key. The leaf must be a bundle certificate itself or
    /// chain to one through certificates of `x5c` that are CAs; every certificate must be within
    /// its validity period and every signature must verify.
    pub fn key_from_x5c(&self, x5c: &[String]) -> Result<TrustedKey, KeyError> {
        let chain_err = |m: &str| KeyError::Chain(m.to_owned());
        if x5c.is_empty() || x5c.len() > MAX_CHAIN {
            return Err(chain_err("x5c must hold 1 to 5 certificates"));
        }
        let mut ders = Vec::with_capacity(x5c.len());
        let mut certs = Vec::with_capacity(x5c.len());
        for c in x5c {
            let der = base64::engine::general_purpose::STANDARD
                .decode(c)
                .map_err(|_| chain_err("an x5c entry is not base64"))?;
            certs.push(
                Certificate::from_der(&der)
                    .map_err(|_| chain_err("an x5c entry is not an X.509 certificate"))?,
            );
            ders.push(der);
        }
        let now = now_unix();
        if let Some(bad) = certs.iter().position(|c| !cert_valid_at(c, now)) {
            return Err(KeyError::Chain(format!(
                "certificate #{} of x5c is expired or not yet valid",
                bad + 1
            )));
        }
        let mut idx = 0;
        loop {
            let cert = &certs[idx];
            if self.roots.iter().any(|r| r.der == ders[idx]) {
                break;
            }
            let anchored = self.roots.iter().any(|r| {
                is_ca(&r.cert) != Some(false)
                    && cert_valid_at(&r.cert, now)
                    && signed_by(cert, &r.cert, &r.key)
            });
            if anchored {
                break;
            }
            let Some(next) = certs.get(idx + 1) else {
                return Err(chain_err(
                    "the chain does not lead to a certificate of the rootcertbundle",
                ));
            };
            if is_ca(next) != Some(true) {
                return Err(chain_err("an intermediate certificate is not a CA"));
            }
            let next_key = TrustedKey::from_certificate(next)?;
            if !signed_by(cert, next, &next_key) {
                return Err(chain_err(
                    "a certificate is not signed by the next one in x5c",
                ));
            }
            idx += 1;
        }
        TrustedKey::from_certificate(&certs[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtrust_kid_shape() {
        let kid = libtrust_key_id(b"anything");
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert!(kid.split(':').all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        }));
        // Known vector: base32 of the first 30 bytes of SHA-256("") (e3b0c442 98fc1c14 ...).
        assert_eq!(&libtrust_key_id(b"")[..9], "4OYM:IQUY");
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk: RawJwk = serde_json::from_str(r#"{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#).unwrap();
        let k = TrustedKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            k.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert!(k.matches_kid("2011-04-29"));
        assert!(k.matches_kid(&libtrust_key_id(k.spki_der())));
        assert!(!k.matches_kid("other"));
        assert_eq!(k.kind(), KeyKind::Rsa);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            TrustedKey::from_spki_der(b"\x30\x00"),
            Err(KeyError::Unsupported(_))
        ));
        let mut k = TrustedKeys::new();
        assert!(matches!(
            k.add_pem_bundle(b"", "x"),
            Err(KeyError::Empty(_))
        ));
        assert!(matches!(
            k.add_pem_bundle(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "x"
            ),
            Err(KeyError::Certificate { .. })
        ));
        assert!(matches!(k.add_jwks(b"{}", "j"), Err(KeyError::Jwks { .. })));
        assert!(matches!(
            k.add_jwks(br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#, "j"),
            Err(KeyError::Jwks { .. })
        ));
        assert!(matches!(k.key_from_x5c(&[]), Err(KeyError::Chain(_))));
        assert!(matches!(
            k.key_from_x5c(&["!!".into()]),
            Err(KeyError::Chain(_))
        ));
    }
}
