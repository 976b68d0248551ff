//! Hex SHA-256, the form in which ids and secrets are stored, compared and logged without being
//! revealed: replay keys, session hashes, attempt counters, CSRF bindings and flow ids.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `value`, lower case.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
