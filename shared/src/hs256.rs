//! jsonwebtoken's crypto provider for the functions: HS256 on the `hmac` and `sha2` crates the
//! key set already uses, and nothing else.
//!
//! jsonwebtoken ships two providers behind features: `aws_lc_rs` (aws-lc, whose jitter-entropy
//! seeding and size the functions avoid) and `rust_crypto` (RSA, P-256, P-384 and Ed25519 as
//! well). The return_to token needs one algorithm, so the functions build jsonwebtoken with
//! neither feature and install this provider: every other algorithm, and every JWK helper, is an
//! error. The codec refuses any other `alg` before jsonwebtoken sees the token anyway; this makes
//! the refusal hold a second time, in the library.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The provider: HS256 signing and verification, nothing else.
pub static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: no_key_pair,
        rsa_pub_components_from_public_key: no_key_pair,
        ec_pub_components_from_private_key: no_ec_components,
        ed_pub_components_from_private_key: no_ed_components,
        compute_digest: no_digest,
    },
};

/// Makes [`HS256_ONLY`] jsonwebtoken's provider for this process; called by
/// [`crate::token::TokenCodec::new`], before anything encodes or decodes. A second call is a
/// no-op. A provider installed earlier stays: only a build with one of jsonwebtoken's crypto
/// features can have another one (this crate's test build, see
/// [`crate::testkit::ATTACKER_TOOLKIT`]),
/// and the codec pins HS256 before any provider is asked.
pub fn install() {
    #[cfg(not(test))]
    let provider = &HS256_ONLY;
    #[cfg(test)]
    let provider = &crate::testkit::ATTACKER_TOOLKIT;
    // Err means a provider is already installed, which is fine (see above).
    let _ = provider.install_default();
}

/// HMAC-SHA256 keyed with the JWS subkey, as a jsonwebtoken signer and verifier.
struct Hs256(HmacSha256);

impl Hs256 {
    fn keyed(secret: &[u8]) -> Result<Self, Error> {
        HmacSha256::new_from_slice(secret)
            .map(Self)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, jsonwebtoken::signature::Error> {
        Ok(self
            .0
            .clone()
            .chain_update(message)
            .finalize()
            .into_bytes()
            .to_vec())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    /// Constant time (hmac's `verify_slice`), so response timing does not tell a forger how many
    /// bytes of a guessed MAC were right.
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        self.0
            .clone()
            .chain_update(message)
            .verify_slice(signature)
            .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn signer_factory(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    if *algorithm != Algorithm::HS256 || key.family() != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Hs256::keyed(key.as_bytes())?))
}

fn verifier_factory(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> Result<Box<dyn JwtVerifier>, Error> {
    if *algorithm != Algorithm::HS256 || key.family() != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Hs256::keyed(key.try_get_as_bytes()?)?))
}

fn no_key_pair(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn no_ec_components(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn no_ed_components(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn no_digest(_: &[u8], _: ThumbprintHash) -> Result<Vec<u8>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_hs256_only() {
        let encoding = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let decoding = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let signer = signer_factory(&Algorithm::HS256, &encoding).expect("hs256");
        let signature = signer.try_sign(b"header.claims").expect("signature");
        // RFC 4231-style check against the hmac crate directly.
        let expected = HmacSha256::new_from_slice(b"0123456789abcdef0123456789abcdef")
            .expect("key")
            .chain_update(b"header.claims")
            .finalize()
            .into_bytes()
            .to_vec();
        assert_eq!(signature, expected);
        let verifier = verifier_factory(&Algorithm::HS256, &decoding).expect("hs256");
        assert!(verifier.verify(b"header.claims", &signature).is_ok());
        assert!(verifier.verify(b"header.claimz", &signature).is_err());
        assert!(verifier
            .verify(b"header.claims", &signature[..31].to_vec())
            .is_err());
        for algorithm in [
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::RS256,
            Algorithm::ES256,
        ] {
            assert!(
                signer_factory(&algorithm, &encoding).is_err(),
                "{algorithm:?}"
            );
            assert!(
                verifier_factory(&algorithm, &decoding).is_err(),
                "{algorithm:?}"
            );
        }
        assert!((HS256_ONLY.key_utils.compute_digest)(b"x", ThumbprintHash::SHA256).is_err());
    }
}
