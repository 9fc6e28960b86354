//! Saving and restoring SHA-256 state between the requests of a chunked upload, so that an
//! upload is hashed once as it streams in and never re-read (CNCF Distribution does the same
//! with Go's hash state; `sha2` 0.11 exposes its state through `SerializableState`).

use sha2::Sha256;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

/// Serializes a hasher's state.
pub fn save(h: &Sha256) -> Vec<u8> {
    h.serialize().to_vec()
}

/// Restores a hasher from [`save`]'s bytes; `None` when they are not a valid state.
pub fn load(bytes: &[u8]) -> Option<Sha256> {
    let arr = SerializedState::<Sha256>::try_from(bytes).ok()?;
    Sha256::deserialize(&arr).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn resumed_state_gives_the_same_digest() {
        let mut a = Sha256::new();
        a.update(b"hello, ");
        let mut b = load(&save(&a)).unwrap();
        a.update(b"world");
        b.update(b"world");
        assert_eq!(a.finalize(), b.finalize());
        assert!(load(b"garbage").is_none());
    }
}
