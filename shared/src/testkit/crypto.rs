//! jsonwebtoken's crypto provider for tests that forge tokens.

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;
use jsonwebtoken::crypto::{CryptoProvider, KeyUtils};
use jsonwebtoken::Algorithm;

use crate::hs256::HS256_ONLY;

/// The provider of the handler tests: HS256 through [`HS256_ONLY`], so the codec is tested on
/// what the functions run, and every other algorithm through jsonwebtoken's RustCrypto provider
/// (which the `testkit` feature turns on), so the attack suite can forge RS256, ES256 or EdDSA
/// tokens with real keys in the same process.
pub static ATTACKER_TOOLKIT: CryptoProvider = CryptoProvider {
    signer_factory: |algorithm, key| match algorithm {
        Algorithm::HS256 => (HS256_ONLY.signer_factory)(algorithm, key),
        _ => (RUST_CRYPTO.signer_factory)(algorithm, key),
    },
    verifier_factory: |algorithm, key| match algorithm {
        Algorithm::HS256 => (HS256_ONLY.verifier_factory)(algorithm, key),
        _ => (RUST_CRYPTO.verifier_factory)(algorithm, key),
    },
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |der| {
            (RUST_CRYPTO.key_utils.rsa_pub_components_from_private_key)(der)
        },
        rsa_pub_components_from_public_key: |der| {
            (RUST_CRYPTO.key_utils.rsa_pub_components_from_public_key)(der)
        },
        ec_pub_components_from_private_key: |der, algorithm| {
            (RUST_CRYPTO.key_utils.ec_pub_components_from_private_key)(der, algorithm)
        },
        ed_pub_components_from_private_key: |der, curve| {
            (RUST_CRYPTO.key_utils.ed_pub_components_from_private_key)(der, curve)
        },
        compute_digest: |data, hash| (RUST_CRYPTO.key_utils.compute_digest)(data, hash),
    },
};

/// Makes [`ATTACKER_TOOLKIT`] jsonwebtoken's provider for this process, unless one is installed
/// already (the first install wins): call it before the first codec is built, as [`Kit::new`]
/// does, so the handler tests outside this crate run on the provider its own tests run on.
///
/// [`Kit::new`]: super::Kit::new
pub fn install_attacker_toolkit() {
    // Err means a provider is already installed; `crate::hs256::install` says why that is fine.
    let _ = ATTACKER_TOOLKIT.install_default();
}
