//! Stream key generation. Keys are 160 random bits (hex, so they paste anywhere); key ids are
//! 64 random bits. Only the key's hash is stored (in the registry, see `cluster::state`).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// SHA-256 of a key. Keys are >= 128 random bits, so a fast hash is enough (no password
/// stretching needed), and it makes lookups possible without storing the key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new `(key_id, key)` pair.
pub fn generate() -> (String, String) {
    let mut rng = rand::rngs::OsRng;
    let mut id = [0u8; 8];
    let mut key = [0u8; 20];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut key);
    (
        format!("k_{}", hex::encode(id)),
        format!("hc_{}", hex::encode(key)),
    )
}

/// A new admin token (256 random bits).
pub fn admin_token() -> String {
    let mut t = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut t);
    hex::encode(t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_long_and_distinct() {
        let (id1, k1) = super::generate();
        let (id2, k2) = super::generate();
        assert_ne!(k1, k2);
        assert_ne!(id1, id2);
        assert!(k1.len() >= 3 + 32, "at least 128 bits of hex");
    }
}
