//! Content digests (`algorithm:encoded`) as defined by the OCI image spec, and a streaming hasher
//! whose state can be saved and restored.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

/// A digest algorithm that Berth can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default and the only one every client supports.
    Sha256,
    /// SHA-512, registered by the OCI image spec.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The string does not follow the `algorithm:encoded` grammar.
    #[error("invalid digest {0:?}: expected algorithm:hex, such as sha256:<64 hex characters>")]
    Invalid(String),
    /// The grammar is right but the algorithm is not one Berth computes.
    #[error("unsupported digest algorithm {0:?}: use sha256 or sha512")]
    Unsupported(String),
}

/// A validated content digest such as `sha256:e3b0...`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from an algorithm and its lowercase hex encoding, checking the length.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Invalid(format!("{algorithm}:{hex}")));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The raw hash output (the encoded part decoded), for key ids and cache keys that are
    /// built from hash bytes rather than from the digest string.
    pub fn to_bytes(&self) -> Vec<u8> {
        hex::decode(&self.hex).expect("a digest's encoded part is validated hex")
    }
}

/// Checks the generic grammar of the OCI image spec:
/// `algorithm ::= component (separator component)*`, `component ::= [a-z0-9]+`,
/// `separator ::= [+._-]`, `encoded ::= [a-zA-Z0-9=_-]+`.
fn grammar_ok(s: &str) -> Option<(&str, &str)> {
    let (alg, enc) = s.split_once(':')?;
    let sep = |b: u8| matches!(b, b'+' | b'.' | b'_' | b'-');
    let comp = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if alg.is_empty() || sep(alg.as_bytes()[0]) || sep(alg.as_bytes()[alg.len() - 1]) {
        return None;
    }
    let mut prev_sep = false;
    for b in alg.bytes() {
        if sep(b) {
            if prev_sep {
                return None;
            }
            prev_sep = true;
        } else if comp(b) {
            prev_sep = false;
        } else {
            return None;
        }
    }
    if enc.is_empty()
        || !enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
    {
        return None;
    }
    Some((alg, enc))
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = grammar_ok(s).ok_or_else(|| DigestError::Invalid(s.to_owned()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::Unsupported(other.to_owned())),
        };
        Digest::new(algorithm, enc).map_err(|_| DigestError::Invalid(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state (uses SHA-NI where the CPU has it).
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Which algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Serializes the state, so that hashing can resume in another request or process with
    /// [`Hasher::restore`] (CNCF Distribution saves Go's hash state the same way, so that a
    /// chunked upload is hashed once as it streams in and never re-read). The bytes are
    /// `sha2`'s `SerializableState` encoding; stored states depend on it, so it must not change.
    pub fn save(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Restores a hasher of `algorithm` from [`Hasher::save`]'s bytes; `None` when they are not
    /// a valid state of that algorithm.
    pub fn restore(algorithm: Algorithm, bytes: &[u8]) -> Option<Self> {
        match algorithm {
            Algorithm::Sha256 => {
                let state = SerializedState::<sha2::Sha256>::try_from(bytes).ok()?;
                sha2::Sha256::deserialize(&state).ok().map(Hasher::Sha256)
            }
            Algorithm::Sha512 => {
                let state = SerializedState::<sha2::Sha512>::try_from(bytes).ok()?;
                sha2::Sha512::deserialize(&state).ok().map(Hasher::Sha512)
            }
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.to_bytes().len(), 32);
        assert_eq!(d.to_bytes()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:zz",
            "-sha:abc",
            "sha256:../../etc",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::Unsupported("md5".into()))
        );
    }

    #[test]
    fn resumed_state_gives_the_same_digest() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut a = Hasher::new(alg);
            a.update(b"hello, ");
            let mut b = Hasher::restore(alg, &a.save()).unwrap();
            a.update(b"world");
            b.update(b"world");
            assert_eq!(a.finish(), b.finish());
            assert!(Hasher::restore(alg, b"garbage").is_none());
        }
    }

    #[test]
    fn saved_sha256_state_keeps_its_format() {
        // Upload states saved by earlier versions are read back, so a saved SHA-256 state is
        // exactly sha2's own serialization of it.
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"abc");
        let raw = {
            let mut r = sha2::Sha256::new();
            r.update(b"abc");
            r.serialize().to_vec()
        };
        assert_eq!(h.save(), raw);
        assert!(Hasher::restore(Algorithm::Sha512, &raw).is_none());
    }

    #[test]
    fn sha512_roundtrip() {
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.hex().len(), 128);
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }
}
