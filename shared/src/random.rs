//! Unguessable values from the operating system's random source: the browser-binding and CSRF
//! cookies, the replay record's attempt id, and the token's jti and nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use thiserror::Error;

/// Bytes of a [`random_token`]: 256 bits, beyond any guessing.
const RANDOM_TOKEN_BYTES: usize = 32;

/// The operating system's random number generator failed; nothing secret can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("random number generator failed")]
pub struct RandomnessUnavailable;

/// Fills `bytes` with random bytes.
pub fn fill(bytes: &mut [u8]) -> Result<(), RandomnessUnavailable> {
    getrandom::fill(bytes).map_err(|_| RandomnessUnavailable)
}

/// A fresh random token: 256 random bits, base64url without padding (43 characters), so it can
/// go into a cookie or a URL as it is.
pub fn random_token() -> Result<String, RandomnessUnavailable> {
    let mut value = [0u8; RANDOM_TOKEN_BYTES];
    fill(&mut value)?;
    Ok(URL_SAFE_NO_PAD.encode(value))
}
