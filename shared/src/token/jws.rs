//! The JWS around the sealed payload: HS256 over jsonwebtoken, with a strict check of the
//! compact form and the header before jsonwebtoken sees the token.
//!
//! jsonwebtoken is built without its crypto features and runs on [`crate::hs256::HS256_ONLY`].
//! Its own header parsing is more lenient than ours, so the header is parsed here first: HS256
//! pinned, a known kid, no other member. jsonwebtoken then checks the signature with the key the
//! header names before it looks at the claims, and the issuer and audience.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::TokenError;
use crate::keyset::{Key, KeySet};

/// The one JWS algorithm issued and accepted; the header's `alg` is checked against it, never
/// used to choose how to verify, which is what defeats `none` and key-confusion forgeries.
const JWS_ALG: &str = "HS256";
/// The `typ` every token carries (as jsonwebtoken wrote it); a header with another is refused.
const JWS_TYP: &str = "JWT";
/// Registered JWS algorithms (RFC 7518 section 3.1) other than HS256 and `none`. A header naming
/// one is reported as [`TokenError::WrongAlgorithm`], which logs an algorithm-confusion attempt
/// (or a token from another system) more usefully than "malformed".
const OTHER_JWS_ALGS: [&str; 12] = [
    "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    "ES512", "EdDSA",
];

/// A presented JWS header. Unknown members are refused: RFC 7515 requires refusing a `crit` we do
/// not understand, and refusing `jwk`, `jku`, `x5u` and the like keeps anyone from later trusting
/// a key the token offers about itself. Duplicate members are refused by serde.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresentedHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    kid: Cow<'a, str>,
    #[serde(default)]
    typ: Option<String>,
}

/// The JWT claims as issued, in the member order every version of the codec wrote.
#[derive(Serialize)]
pub(super) struct IssuedClaims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub iat: u64,
    pub exp: u64,
    pub jti: &'a str,
    pub sealed: String,
}

/// The JWT claims as presented. `deny_unknown_fields` plus non-optional fields make every claim
/// required and exactly typed: an `exp` given as a string, a missing `jti`, an `aud` array or a
/// stray claim are all refused. (jsonwebtoken hands back owned claims, hence `String`.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PresentedClaims {
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub sealed: String,
}

/// The JWS header of every token sealed under the key `kid`.
pub(super) fn issued_header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(JWS_TYP.to_owned());
    header.kid = Some(kid.to_owned());
    header
}

/// What jsonwebtoken checks: HS256, issuer, audience, `exp`/`iss`/`aud` present, no leeway.
/// Expiry is the codec's own check against the caller's clock.
pub(super) fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation
}

/// Signs `claims` under `key` with `header` (from [`issued_header`]).
pub(super) fn sign(
    header: &Header,
    claims: &IssuedClaims<'_>,
    key: &Key,
) -> Result<String, TokenError> {
    jsonwebtoken::encode(header, claims, key.jws_encoding_key()).map_err(|_| TokenError::SealFailed)
}

/// Checks the compact form and the header, finds the key the header names, and lets
/// jsonwebtoken check the signature, issuer and audience: the key and the claims, which nothing
/// has read before the MAC vouched for them.
pub(super) fn verify<'k>(
    token: &str,
    keys: &'k KeySet,
    validation: &Validation,
) -> Result<(&'k Key, PresentedClaims), TokenError> {
    let header_json = URL_SAFE_NO_PAD
        .decode(compact_header(token)?)
        .map_err(|_| TokenError::Malformed)?;
    let header: PresentedHeader<'_> =
        serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    check_algorithm(&header.alg)?;
    if header.typ.is_some_and(|typ| typ != JWS_TYP) {
        return Err(TokenError::Malformed);
    }
    let key = keys.get(&header.kid).ok_or(TokenError::UnknownKey)?;

    // jsonwebtoken decodes nothing of the claims before the MAC vouches for them, then checks
    // issuer and audience.
    let claims = jsonwebtoken::decode::<PresentedClaims>(token, key.jws_decoding_key(), validation)
        .map_err(|error| refusal(error.kind()))?
        .claims;
    Ok((key, claims))
}

/// The header part of a compact JWS, once the token is known to have exactly three non-empty
/// parts: an empty signature is how unsigned (`alg: none`) tokens end, and a fourth part would
/// be something other than a JWS.
fn compact_header(token: &str) -> Result<&str, TokenError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, claims) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    if header.is_empty() || claims.is_empty() || signature.is_empty() || claims.contains('.') {
        return Err(TokenError::Malformed);
    }
    Ok(header)
}

/// What a jsonwebtoken refusal means for the caller. Algorithms are pinned before jsonwebtoken
/// runs, so `InvalidAlgorithm` only comes from a provider that refuses the key.
fn refusal(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
        _ => TokenError::Malformed,
    }
}

fn check_algorithm(alg: &str) -> Result<(), TokenError> {
    if alg == JWS_ALG {
        Ok(())
    } else if OTHER_JWS_ALGS.contains(&alg) {
        Err(TokenError::WrongAlgorithm)
    } else {
        Err(TokenError::Malformed)
    }
}
