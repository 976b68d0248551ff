//! The return_to token: how the login flow survives the round trip through Kratos' login UI.
//!
//! The login function cannot keep server-side state per attempt, so it packs Hydra's login
//! challenge, Hydra's `request_url`, the client id and a hash of a browser-binding cookie into a
//! token that rides in the Kratos `return_to` URL (`<base>/login/return?t=<token>`). That URL is
//! visible to the browser, Kratos and any log in between, so the token must be both confidential
//! (the challenge is a bearer credential towards Hydra's admin API) and tamper-proof (an attacker
//! must not swap in another challenge).
//!
//! Layout: an HS256 JWT (header `kid`; claims `iss`, `aud`, `iat`, `exp`, `jti`, `sealed`) whose
//! `sealed` claim is base64url of `nonce(24) || XChaCha20-Poly1305(plaintext)`, with associated
//! data binding the kid and jti. The plaintext is a compact binary encoding of
//! [`ReturnToPayload`]; tokens issued by earlier versions may carry the URL part deflated,
//! which `open` still reads. That format is `payload.rs`; the JWS around it is `jws.rs`; this
//! file holds the codec that joins them, the claims checks and the errors.
//!
//! The JWS (RFC 7515 compact serialisation, HS256 only) is jsonwebtoken's, built without its
//! crypto features and run on [`crate::hs256::HS256_ONLY`], so neither RSA nor aws-lc reaches the
//! functions. Tokens are byte-compatible with every earlier version of the codec.
//!
//! Before jsonwebtoken sees a token, the codec checks its compact form and parses its header
//! strictly (HS256 pinned, a known kid, no other member), which is stricter than jsonwebtoken's
//! own header parsing. jsonwebtoken then checks the signature with the key the header names
//! before it looks at the claims, and the issuer and audience. The codec requires every claim
//! with its exact type, applies zero leeway to `exp` against the caller's clock (jsonwebtoken
//! would read the system clock and accept a token at the second it expires), and only then
//! decrypts. Every failure maps to a [`TokenError`] variant so the caller can choose an error
//! page; no variant carries token or payload text.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Header, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::epoch_seconds;
use crate::keyset::KeySet;
use crate::random;

mod jws;
mod payload;
#[cfg(test)]
mod tests;

pub use payload::{ReturnToPayload, SealedPolicy};

/// Tokens longer than this are refused before any parsing, so an attacker cannot make the
/// function base64-decode, parse or inflate megabytes. Browsers and proxies handle URLs of this
/// size without trouble; a 2 KB challenge plus a 1 KB `request_url` needs about 5 KB.
pub const MAX_TOKEN_CHARS: usize = 8 * 1024;

/// How far in the future `iat` may be before the token is refused: Lambda clocks are
/// NTP-disciplined, so a few seconds covers skew between the instance that issued the token and
/// the one that opens it, without letting a token live meaningfully longer than its TTL.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Bytes of the random token id (`jti`), the replay-protection key.
const JTI_BYTES: usize = 16;

/// Why a token could not be issued or was refused.
///
/// Variants are coarse on purpose: they say which error page to show and what to log, never the
/// token, its claims or its payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The token exceeds [`MAX_TOKEN_CHARS`]; refused unparsed.
    #[error("return_to token is longer than {MAX_TOKEN_CHARS} characters")]
    TooLong,
    /// Not a well-formed JWT of our shape: not three parts, bad base64/JSON, a header member or
    /// `alg` we do not know (including `none`), missing or mistyped claims, no kid.
    #[error("return_to token is malformed")]
    Malformed,
    /// The header names a registered JWS algorithm other than HS256 (e.g. RS256, ES256, HS512).
    #[error("return_to token uses a disallowed algorithm")]
    WrongAlgorithm,
    /// The HMAC does not match: the token was altered or forged.
    #[error("return_to token signature is invalid")]
    BadSignature,
    /// The header names a kid that is not (or no longer) in the key set.
    #[error("return_to token was issued under a key that is not in the key set")]
    UnknownKey,
    /// Signed by us, but for another audience (another deployment or purpose).
    #[error("return_to token is for another audience")]
    WrongAudience,
    /// Signed by us, but by another issuer (another deployment).
    #[error("return_to token is from another issuer")]
    WrongIssuer,
    /// `exp` is not after the caller's clock.
    #[error("return_to token has expired")]
    Expired,
    /// `iat` is further in the future than [`MAX_CLOCK_SKEW`].
    #[error("return_to token is issued in the future")]
    IssuedInFuture,
    /// Signature and claims are fine but the sealed payload does not decrypt or decode.
    #[error("return_to token payload cannot be decrypted")]
    Undecryptable,
    /// Sealing would produce a token over [`MAX_TOKEN_CHARS`], which `open` would then refuse.
    #[error("return_to payload is too large for a token")]
    PayloadTooLarge,
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Randomness,
    /// The clock passed to `seal`/`open` is before 1970 or absurdly far in the future.
    #[error("clock is out of range")]
    ClockOutOfRange,
    /// The codec was configured with an empty issuer/audience or a TTL under one second.
    #[error("token codec configuration is invalid: {reason}")]
    InvalidConfig {
        /// Which setting is wrong.
        reason: &'static str,
    },
    /// Encryption or JSON encoding failed while sealing; indicates a bug, not bad input.
    #[error("sealing the return_to token failed")]
    SealFailed,
}

/// A freshly issued token plus the facts the issuer may want to log or store.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    /// The URL-safe token text for `?t=`.
    pub token: String,
    /// The token's unique id (base64url of 16 random bytes), the replay-protection key.
    pub jti: String,
    /// Expiry in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedToken")
            .field("token", &format_args!("[{} chars]", self.token.len()))
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A verified, decrypted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedToken {
    /// The token's unique id, for single-use enforcement in the replay table.
    pub jti: String,
    /// Issue time in seconds since the Unix epoch.
    pub issued_at: u64,
    /// Expiry in seconds since the Unix epoch; the replay-table item's TTL.
    pub expires_at: u64,
    /// The sealed data.
    pub payload: ReturnToPayload,
}

/// Issues and opens return_to tokens for one deployment.
///
/// Built once at cold start; `seal` and `open` take the current time as a parameter so tests (and
/// the caller's single notion of "now" per request) control expiry exactly.
pub struct TokenCodec {
    keys: KeySet,
    issuer: String,
    audience: String,
    ttl: Duration,
    /// The current key's JWS header (`typ`, `alg`, `kid`), the same for every token it seals.
    current_header: Header,
    /// What jsonwebtoken checks: HS256, issuer, audience, `exp`/`iss`/`aud` present, no leeway.
    /// Expiry is the codec's own check against the caller's clock.
    validation: Validation,
}

impl fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCodec")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenCodec {
    /// Sets up a codec; `issuer` and `audience` should identify this deployment (for example the
    /// public base URL and its `/login/return` URL) so tokens of another deployment sharing a key
    /// are still refused. `ttl` is whole seconds, at least one.
    pub fn new(
        keys: KeySet,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, TokenError> {
        let issuer = issuer.into();
        let audience = audience.into();
        if issuer.is_empty() {
            return Err(TokenError::InvalidConfig {
                reason: "issuer is empty",
            });
        }
        if audience.is_empty() {
            return Err(TokenError::InvalidConfig {
                reason: "audience is empty",
            });
        }
        if ttl.as_secs() == 0 {
            return Err(TokenError::InvalidConfig {
                reason: "ttl is shorter than one second",
            });
        }

        crate::hs256::install();
        let current_header = jws::issued_header(keys.current().kid());
        let validation = jws::validation(&issuer, &audience);

        Ok(Self {
            keys,
            issuer,
            audience,
            ttl,
            current_header,
            validation,
        })
    }

    /// The key set, for the CSRF helpers that share it.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The configured token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for `payload` under the current key, valid from `now` for the TTL.
    pub fn seal(
        &self,
        payload: &ReturnToPayload,
        now: SystemTime,
    ) -> Result<SealedToken, TokenError> {
        let issued_at = epoch_seconds(now).ok_or(TokenError::ClockOutOfRange)?;
        let expires_at = issued_at
            .checked_add(self.ttl.as_secs())
            .ok_or(TokenError::ClockOutOfRange)?;

        let mut randomness = [0u8; JTI_BYTES + payload::NONCE_BYTES];
        random::fill(&mut randomness).map_err(|_| TokenError::Randomness)?;
        let (jti_bytes, nonce_bytes) = randomness.split_at(JTI_BYTES);
        let jti = URL_SAFE_NO_PAD.encode(jti_bytes);

        let key = self.keys.current();
        let sealed = payload::seal(key, &jti, nonce_bytes, payload)?;
        let claims = jws::IssuedClaims {
            iss: &self.issuer,
            aud: &self.audience,
            iat: issued_at,
            exp: expires_at,
            jti: &jti,
            sealed: URL_SAFE_NO_PAD.encode(&sealed),
        };
        let token = jws::sign(&self.current_header, &claims, key)?;
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::PayloadTooLarge);
        }
        Ok(SealedToken {
            token,
            jti,
            expires_at,
        })
    }

    /// Verifies and decrypts a presented token as of `now`.
    ///
    /// Checks run cheapest-and-unauthenticated first (length, header, kid), then the signature,
    /// then claims, and decryption last, so unauthenticated input never reaches the AEAD or the
    /// inflater.
    pub fn open(&self, token: &str, now: SystemTime) -> Result<OpenedToken, TokenError> {
        self.open_checked(token, now, true)
    }

    /// Like [`open`](Self::open) but an expired token still opens: everything else (length,
    /// algorithm, key, signature, issuer, audience, shape, `iat`, decryption) is checked the
    /// same. Only for offering a fresh start through the payload's `request_url` after
    /// [`TokenError::Expired`]; an expired token must never be used to accept a login.
    pub fn open_ignoring_expiry(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<OpenedToken, TokenError> {
        self.open_checked(token, now, false)
    }

    fn open_checked(
        &self,
        token: &str,
        now: SystemTime,
        check_expiry: bool,
    ) -> Result<OpenedToken, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::TooLong);
        }
        let now = epoch_seconds(now).ok_or(TokenError::ClockOutOfRange)?;

        let (key, claims) = jws::verify(token, &self.keys, &self.validation)?;
        // jsonwebtoken compared them already; the exact string type is what this adds (an `aud`
        // array holding our audience is refused above, by the claims' type).
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }

        if claims.exp <= claims.iat || !is_well_formed_jti(&claims.jti) {
            return Err(TokenError::Malformed);
        }
        // RFC 7519: the token must not be accepted on or after `exp`. No leeway.
        if check_expiry && now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.iat > now.saturating_add(MAX_CLOCK_SKEW.as_secs()) {
            return Err(TokenError::IssuedInFuture);
        }

        let payload = payload::unseal(key, &claims.jti, &claims.sealed)?;
        Ok(OpenedToken {
            jti: claims.jti,
            issued_at: claims.iat,
            expires_at: claims.exp,
            payload,
        })
    }
}

/// Hashes the binding cookie's value for [`ReturnToPayload::browser_binding`]; only the hash
/// travels in the token, so reading the URL does not reveal the cookie.
pub fn browser_binding_hash(cookie_value: &str) -> [u8; 32] {
    Sha256::digest(cookie_value.as_bytes()).into()
}

/// Compares a presented binding cookie with the hash from an opened token in constant time, so
/// response timing does not leak how much of a guessed cookie was right.
pub fn browser_binding_matches(expected: &[u8; 32], cookie_value: &str) -> bool {
    bool::from(browser_binding_hash(cookie_value).ct_eq(expected))
}

fn is_well_formed_jti(jti: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(jti)
        .is_ok_and(|bytes| bytes.len() == JTI_BYTES)
}
