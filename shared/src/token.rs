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
//! [`ReturnToPayload`] (see `encode_plaintext`), with the URL part deflated when that helps.
//!
//! Verification pins HS256, checks the signature with the key the header names, requires every
//! claim with its exact type, applies zero leeway to `exp` against the caller's clock, and only
//! then decrypts. Every failure maps to a [`TokenError`] variant so the caller can choose an error
//! page; no variant carries token or payload text.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XNonce;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keyset::{Key, KeySet};

/// Tokens longer than this are refused before any parsing, so an attacker cannot make the
/// function base64-decode, parse or inflate megabytes. Browsers and proxies handle URLs of this
/// size without trouble; a 2 KB challenge plus a 1 KB `request_url` needs about 4.7 KB.
pub const MAX_TOKEN_CHARS: usize = 8 * 1024;

/// How far in the future `iat` may be before the token is refused: Lambda clocks are
/// NTP-disciplined, so a few seconds covers skew between the instance that issued the token and
/// the one that opens it, without letting a token live meaningfully longer than its TTL.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Upper bound on the inflated tail; far above any real `request_url`, it only stops a
/// decompression bomb from a holder of the key (e.g. a bug elsewhere) from exhausting memory.
const MAX_TAIL_BYTES: usize = 64 * 1024;

const JTI_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;
const BINDING_COOKIE_BYTES: usize = 32;

/// Domain separation for the AEAD associated data, so a ciphertext made for another purpose or
/// format version under the same subkey can never be accepted here.
const AEAD_CONTEXT: &[u8] = b"hydra-kratos-bridge/return-to/v1\0";

/// First plaintext byte, so a future layout change is recognised rather than misparsed.
const PLAINTEXT_FORMAT_V1: u8 = 1;
const FLAG_REQUEST_URL: u8 = 0b0001;
const FLAG_CLIENT_ID: u8 = 0b0010;
/// The challenge was canonical base64url and is stored as the bytes it encodes.
const FLAG_CHALLENGE_BASE64URL: u8 = 0b0100;
/// The tail (`request_url`, `client_id`) is raw deflate.
const FLAG_TAIL_DEFLATED: u8 = 0b1000;
const KNOWN_FLAGS: u8 =
    FLAG_REQUEST_URL | FLAG_CLIENT_ID | FLAG_CHALLENGE_BASE64URL | FLAG_TAIL_DEFLATED;

/// Below this a tail rarely shrinks, and every deflate call costs about 10 microseconds of
/// table set-up in miniz_oxide whatever the input size.
const MIN_DEFLATE_INPUT_BYTES: usize = 128;

/// Deflate level for the tail; on short URLs higher levels find nothing more.
const DEFLATE_LEVEL: u8 = 1;

/// Why a token could not be issued or was refused.
///
/// Variants are coarse on purpose: they say which error page to show and what to log, never the
/// token, its claims or its payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The token exceeds [`MAX_TOKEN_CHARS`]; refused unparsed.
    #[error("return_to token is longer than {MAX_TOKEN_CHARS} characters")]
    TooLong,
    /// Not a well-formed JWT of our shape: bad base64/JSON, missing or mistyped claims, no kid.
    #[error("return_to token is malformed")]
    Malformed,
    /// The header asks for an algorithm other than HS256 (e.g. `none`, RS256, ES256).
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
    /// Encryption or JWT encoding failed while sealing; indicates a bug, not bad input.
    #[error("sealing the return_to token failed")]
    SealFailed,
}

/// What the login entry function hands to the return function through the browser.
#[derive(Clone, PartialEq, Eq)]
pub struct ReturnToPayload {
    /// Hydra's login challenge, needed to accept or reject the login request.
    pub login_challenge: String,
    /// Hydra's `request_url`, to restart the OAuth2 flow if the challenge has expired.
    pub request_url: Option<String>,
    /// The OAuth2 client, for error pages and first-party decisions without another Hydra call.
    pub client_id: Option<String>,
    /// sha256 of the binding cookie set by login entry (see [`browser_binding_hash`]), so the
    /// token only works in the browser that started the login.
    pub browser_binding: [u8; 32],
}

impl fmt::Debug for ReturnToPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The challenge is a credential towards Hydra's admin API: never print it.
        f.debug_struct("ReturnToPayload")
            .field(
                "login_challenge",
                &format_args!("[{} bytes]", self.login_challenge.len()),
            )
            .field("request_url", &self.request_url.as_ref().map(String::len))
            .field("client_id", &self.client_id)
            .field("browser_binding", &"[redacted]")
            .finish()
    }
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

/// The JWT claims. `deny_unknown_fields` plus non-optional fields make every claim required and
/// exactly typed: an `exp` given as a string, a missing `jti` or a stray claim are all refused.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnToClaims {
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
    jti: String,
    sealed: String,
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

        // If some other crate in the build also enables jsonwebtoken's `rust_crypto` feature,
        // jsonwebtoken cannot choose a provider and panics on first use; pinning aws-lc here
        // prevents that. `Err` means a provider was already installed on purpose: keep it.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();

        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the caller's `now` in `open`, not jsonwebtoken's own clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "iss", "aud"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);

        Ok(Self {
            keys,
            issuer,
            audience,
            ttl,
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
        let issued_at = epoch_seconds(now)?;
        let expires_at = issued_at
            .checked_add(self.ttl.as_secs())
            .ok_or(TokenError::ClockOutOfRange)?;

        let mut randomness = [0u8; JTI_BYTES + NONCE_BYTES];
        getrandom::fill(&mut randomness).map_err(|_| TokenError::Randomness)?;
        let (jti_bytes, nonce_bytes) = randomness.split_at(JTI_BYTES);
        let jti = URL_SAFE_NO_PAD.encode(jti_bytes);

        let key = self.keys.current();
        let plaintext = encode_plaintext(payload)?;
        let ciphertext = key
            .aead()
            .encrypt(
                XNonce::from_slice(nonce_bytes),
                Payload {
                    msg: &plaintext,
                    aad: &associated_data(key.kid(), &jti),
                },
            )
            .map_err(|_| TokenError::SealFailed)?;
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(nonce_bytes);
        sealed.extend_from_slice(&ciphertext);

        let claims = ReturnToClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: issued_at,
            exp: expires_at,
            jti: jti.clone(),
            sealed: URL_SAFE_NO_PAD.encode(&sealed),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key.jwt_signing_key())
            .map_err(|_| TokenError::SealFailed)?;
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
        let now = epoch_seconds(now)?;

        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::Malformed)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;

        let claims = jsonwebtoken::decode::<ReturnToClaims>(
            token,
            key.jwt_verifying_key(),
            &self.validation,
        )
        .map_err(|error| map_jwt_error(error.kind()))?
        .claims;

        // jsonwebtoken already compared these, but the typed claims are what we rely on.
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

        let payload = unseal(key, &claims.jti, &claims.sealed)?;
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

/// A fresh binding cookie value: 256 random bits, base64url, unguessable by an attacker who
/// wants to replay a token in their own browser.
pub fn new_binding_cookie_value() -> Result<String, TokenError> {
    let mut value = [0u8; BINDING_COOKIE_BYTES];
    getrandom::fill(&mut value).map_err(|_| TokenError::Randomness)?;
    Ok(URL_SAFE_NO_PAD.encode(value))
}

fn epoch_seconds(time: SystemTime) -> Result<u64, TokenError> {
    time.duration_since(UNIX_EPOCH)
        .map(|since_epoch| since_epoch.as_secs())
        .map_err(|_| TokenError::ClockOutOfRange)
}

fn associated_data(kid: &str, jti: &str) -> Vec<u8> {
    // Kids and jtis never contain NUL, so the concatenation is unambiguous.
    let mut aad = Vec::with_capacity(AEAD_CONTEXT.len() + kid.len() + 1 + jti.len());
    aad.extend_from_slice(AEAD_CONTEXT);
    aad.extend_from_slice(kid.as_bytes());
    aad.push(0);
    aad.extend_from_slice(jti.as_bytes());
    aad
}

fn is_well_formed_jti(jti: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(jti)
        .is_ok_and(|bytes| bytes.len() == JTI_BYTES)
}

fn map_jwt_error(kind: &JwtErrorKind) -> TokenError {
    match kind {
        JwtErrorKind::InvalidSignature => TokenError::BadSignature,
        JwtErrorKind::InvalidAlgorithm
        | JwtErrorKind::MissingAlgorithm
        | JwtErrorKind::UnsupportedAlgorithm
        | JwtErrorKind::InvalidAlgorithmName => TokenError::WrongAlgorithm,
        JwtErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        JwtErrorKind::InvalidAudience => TokenError::WrongAudience,
        JwtErrorKind::ExpiredSignature => TokenError::Expired,
        // Shape problems (base64, JSON, missing or mistyped claims) and anything jsonwebtoken
        // may add later: refuse as malformed.
        _ => TokenError::Malformed,
    }
}

fn unseal(key: &Key, jti: &str, sealed: &str) -> Result<ReturnToPayload, TokenError> {
    let sealed = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| TokenError::Undecryptable)?;
    if sealed.len() < NONCE_BYTES {
        return Err(TokenError::Undecryptable);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let plaintext = key
        .aead()
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &associated_data(key.kid(), jti),
            },
        )
        .map_err(|_| TokenError::Undecryptable)?;
    decode_plaintext(&plaintext).ok_or(TokenError::Undecryptable)
}

/// Encodes the payload as the AEAD plaintext:
///
/// `format(1) || flags(1) || binding(32) || challenge || tail`, where each string is a big-endian
/// u16 length plus bytes and `tail` holds the optional `request_url` and `client_id` strings.
///
/// Binary rather than JSON because every byte here is paid for twice over in base64 in the URL.
/// Hydra's challenge is base64url already, so it is stored decoded (25% smaller, under a
/// microsecond); deflating that near-random text would save slightly less at about 30 times the
/// cost. Deflate is kept for the tail, where URLs have structure worth compressing.
fn encode_plaintext(payload: &ReturnToPayload) -> Result<Vec<u8>, TokenError> {
    let mut flags = 0;
    let packed_challenge = URL_SAFE_NO_PAD.decode(&payload.login_challenge).ok();
    let challenge = match &packed_challenge {
        Some(bytes) => {
            flags |= FLAG_CHALLENGE_BASE64URL;
            bytes.as_slice()
        }
        None => payload.login_challenge.as_bytes(),
    };

    let mut tail = Vec::new();
    if let Some(request_url) = &payload.request_url {
        flags |= FLAG_REQUEST_URL;
        push_string(&mut tail, request_url.as_bytes())?;
    }
    if let Some(client_id) = &payload.client_id {
        flags |= FLAG_CLIENT_ID;
        push_string(&mut tail, client_id.as_bytes())?;
    }
    if tail.len() >= MIN_DEFLATE_INPUT_BYTES {
        let deflated = miniz_oxide::deflate::compress_to_vec(&tail, DEFLATE_LEVEL);
        if deflated.len() < tail.len() {
            flags |= FLAG_TAIL_DEFLATED;
            tail = deflated;
        }
    }

    let mut plaintext =
        Vec::with_capacity(2 + payload.browser_binding.len() + 2 + challenge.len() + tail.len());
    plaintext.push(PLAINTEXT_FORMAT_V1);
    plaintext.push(flags);
    plaintext.extend_from_slice(&payload.browser_binding);
    push_string(&mut plaintext, challenge)?;
    plaintext.extend_from_slice(&tail);
    Ok(plaintext)
}

fn push_string(encoded: &mut Vec<u8>, value: &[u8]) -> Result<(), TokenError> {
    let length = u16::try_from(value.len()).map_err(|_| TokenError::PayloadTooLarge)?;
    encoded.extend_from_slice(&length.to_be_bytes());
    encoded.extend_from_slice(value);
    Ok(())
}

/// Inverse of [`encode_plaintext`]; `None` on any inconsistency, including trailing bytes.
fn decode_plaintext(plaintext: &[u8]) -> Option<ReturnToPayload> {
    let mut head = PayloadReader { rest: plaintext };
    if head.take(1)? != [PLAINTEXT_FORMAT_V1] {
        return None;
    }
    let flags = head.take(1)?[0];
    if flags & !KNOWN_FLAGS != 0 {
        return None;
    }
    let browser_binding: [u8; 32] = head.take(32)?.try_into().ok()?;
    let challenge = head.bytes()?;
    let login_challenge = if flags & FLAG_CHALLENGE_BASE64URL != 0 {
        URL_SAFE_NO_PAD.encode(challenge)
    } else {
        String::from_utf8(challenge.to_vec()).ok()?
    };

    let inflated;
    let mut tail = if flags & FLAG_TAIL_DEFLATED != 0 {
        inflated =
            miniz_oxide::inflate::decompress_to_vec_with_limit(head.rest, MAX_TAIL_BYTES).ok()?;
        PayloadReader { rest: &inflated }
    } else {
        PayloadReader { rest: head.rest }
    };
    let request_url = if flags & FLAG_REQUEST_URL != 0 {
        Some(tail.string()?)
    } else {
        None
    };
    let client_id = if flags & FLAG_CLIENT_ID != 0 {
        Some(tail.string()?)
    } else {
        None
    };
    if !tail.rest.is_empty() {
        return None;
    }
    Some(ReturnToPayload {
        login_challenge,
        request_url,
        client_id,
        browser_binding,
    })
}

struct PayloadReader<'a> {
    rest: &'a [u8],
}

impl<'a> PayloadReader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.rest.len() < count {
            return None;
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Some(taken)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        self.take(usize::from(length))
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::tests::test_key_set;
    use serde_json::json;

    const ISSUER: &str = "https://auth.example.com";
    const AUDIENCE: &str = "https://auth.example.com/login/return";
    const TTL: Duration = Duration::from_secs(600);

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    const T0: u64 = 1_750_000_000;

    fn codec_with(keys: KeySet) -> TokenCodec {
        TokenCodec::new(keys, ISSUER, AUDIENCE, TTL).unwrap()
    }

    fn codec() -> TokenCodec {
        codec_with(test_key_set("k1", &[("k1", 1)]))
    }

    fn random_base64url(chars: usize) -> String {
        let mut bytes = vec![0u8; chars];
        getrandom::fill(&mut bytes).unwrap();
        let mut text = URL_SAFE_NO_PAD.encode(&bytes);
        text.truncate(chars);
        text
    }

    fn payload() -> ReturnToPayload {
        ReturnToPayload {
            login_challenge: random_base64url(1500),
            request_url: Some(format!(
                "https://hydra.example.com/oauth2/auth?client_id=demo&response_type=code&scope=openid+offline&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&state={}&nonce={}",
                random_base64url(32),
                random_base64url(32)
            )),
            client_id: Some("demo".to_owned()),
            browser_binding: browser_binding_hash("cookie-value"),
        }
    }

    /// Signs arbitrary claims with the real signing key of `kid`, to build tokens that pass the
    /// signature check but are wrong in one specific way.
    fn sign_raw(codec: &TokenCodec, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            claims,
            codec.keys.get(kid).unwrap().jwt_signing_key(),
        )
        .unwrap()
    }

    /// The claims of a genuine token, as JSON, for tests that alter one of them.
    fn genuine_claims(codec: &TokenCodec) -> serde_json::Value {
        let sealed = codec.seal(&payload(), at(T0)).unwrap();
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&sealed.token)
            .unwrap()
            .claims
    }

    fn unsigned_token(
        header: &serde_json::Value,
        claims: &serde_json::Value,
        signature: &str,
    ) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            signature
        )
    }

    #[test]
    fn round_trip_preserves_payload_and_reports_times() {
        let codec = codec();
        let payload = payload();
        let sealed = codec.seal(&payload, at(T0)).unwrap();
        assert_eq!(sealed.expires_at, T0 + 600);
        assert_eq!(sealed.jti.len(), 22);
        let opened = codec.open(&sealed.token, at(T0 + 1)).unwrap();
        assert_eq!(opened.payload, payload);
        assert_eq!(opened.jti, sealed.jti);
        assert_eq!(opened.issued_at, T0);
        assert_eq!(opened.expires_at, T0 + 600);
    }

    #[test]
    fn round_trip_without_optional_fields_and_with_unicode() {
        let codec = codec();
        for payload in [
            ReturnToPayload {
                login_challenge: "c".to_owned(),
                request_url: None,
                client_id: None,
                browser_binding: [0; 32],
            },
            ReturnToPayload {
                login_challenge: String::new(),
                request_url: Some("https://h/ü?x=ä".to_owned()),
                client_id: None,
                browser_binding: [0xFF; 32],
            },
            ReturnToPayload {
                login_challenge: "challenge".to_owned(),
                request_url: None,
                client_id: Some("client".to_owned()),
                browser_binding: [7; 32],
            },
        ] {
            let sealed = codec.seal(&payload, at(T0)).unwrap();
            assert_eq!(codec.open(&sealed.token, at(T0)).unwrap().payload, payload);
        }
    }

    #[test]
    fn each_token_gets_a_fresh_jti_and_ciphertext() {
        let codec = codec();
        let payload = payload();
        let first = codec.seal(&payload, at(T0)).unwrap();
        let second = codec.seal(&payload, at(T0)).unwrap();
        assert_ne!(first.jti, second.jti);
        assert_ne!(first.token, second.token);
    }

    #[test]
    fn token_does_not_reveal_the_payload() {
        let codec = codec();
        let payload = payload();
        let sealed = codec.seal(&payload, at(T0)).unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&sealed.token)
            .unwrap()
            .claims
            .to_string();
        assert!(!claims.contains(&payload.login_challenge[..40]));
        assert!(!claims.contains("hydra.example.com"));
        assert!(!claims.contains("demo"));
    }

    #[test]
    fn flipping_any_byte_is_refused() {
        let codec = codec();
        let payload = ReturnToPayload {
            login_challenge: random_base64url(200),
            request_url: Some("https://hydra.example.com/oauth2/auth?x=1".to_owned()),
            client_id: Some("demo".to_owned()),
            browser_binding: [3; 32],
        };
        let token = codec.seal(&payload, at(T0)).unwrap().token;
        let mut refusals = std::collections::BTreeMap::<String, usize>::new();
        for index in 0..token.len() {
            for mask in [0x01u8, 0x20, 0x80] {
                let mut bytes = token.clone().into_bytes();
                bytes[index] ^= mask;
                // Non-UTF-8 cannot arrive as &str; what would arrive is the lossy form.
                let tampered = String::from_utf8_lossy(&bytes).into_owned();
                let error = codec
                    .open(&tampered, at(T0 + 1))
                    .expect_err(&format!("flip {mask:#x} at {index} accepted"));
                *refusals.entry(format!("{error:?}")).or_default() += 1;
            }
        }
        println!("tamper refusals by kind: {refusals:?}");
    }

    #[test]
    fn truncated_tokens_are_refused() {
        let codec = codec();
        let token = codec.seal(&payload(), at(T0)).unwrap().token;
        for length in (0..token.len()).step_by(7).chain([token.len() - 1]) {
            assert!(
                codec.open(&token[..length], at(T0 + 1)).is_err(),
                "length {length}"
            );
        }
    }

    #[test]
    fn extended_tokens_are_refused() {
        let codec = codec();
        let token = codec.seal(&payload(), at(T0)).unwrap().token;
        for suffix in ["A", "=", ".", ".A", "AAAA", "%00", " "] {
            let extended = format!("{token}{suffix}");
            assert!(
                codec.open(&extended, at(T0 + 1)).is_err(),
                "suffix {suffix:?}"
            );
        }
        let prefixed = format!("A{token}");
        assert!(codec.open(&prefixed, at(T0 + 1)).is_err());
    }

    #[test]
    fn over_long_tokens_are_refused_before_parsing() {
        let codec = codec();
        assert_eq!(
            codec.open(&"A".repeat(MAX_TOKEN_CHARS + 1), at(T0)),
            Err(TokenError::TooLong)
        );
        let huge = ReturnToPayload {
            login_challenge: random_base64url(8000),
            request_url: None,
            client_id: None,
            browser_binding: [0; 32],
        };
        assert_eq!(codec.seal(&huge, at(T0)), Err(TokenError::PayloadTooLarge));
    }

    #[test]
    fn expiry_has_zero_leeway() {
        let codec = codec();
        let sealed = codec.seal(&payload(), at(T0)).unwrap();
        assert!(codec.open(&sealed.token, at(sealed.expires_at - 1)).is_ok());
        assert_eq!(
            codec.open(&sealed.token, at(sealed.expires_at)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            codec.open(&sealed.token, at(sealed.expires_at + 1)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn expired_token_opens_only_when_ignoring_expiry_and_only_if_genuine() {
        let codec = codec();
        let original = payload();
        let sealed = codec.seal(&original, at(T0)).unwrap();
        let late = at(sealed.expires_at + 3600);
        assert_eq!(codec.open(&sealed.token, late), Err(TokenError::Expired));
        let opened = codec.open_ignoring_expiry(&sealed.token, late).unwrap();
        assert_eq!(opened.payload.request_url, original.request_url);
        assert_eq!(opened.expires_at, sealed.expires_at);
        // Everything but expiry is still checked: an altered token does not open.
        let mut altered = sealed.token.into_bytes();
        let middle = altered.len() / 2;
        altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(codec.open_ignoring_expiry(&altered, late).is_err());
    }

    #[test]
    fn issued_in_the_future_beyond_skew_is_refused() {
        let codec = codec();
        let sealed = codec.seal(&payload(), at(T0)).unwrap();
        let skew = MAX_CLOCK_SKEW.as_secs();
        assert!(codec.open(&sealed.token, at(T0 - skew)).is_ok());
        assert_eq!(
            codec.open(&sealed.token, at(T0 - skew - 1)),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn exp_as_string_is_refused() {
        let codec = codec();
        let mut claims = genuine_claims(&codec);
        claims["exp"] = json!((T0 + 600).to_string());
        let token = sign_raw(&codec, "k1", &claims);
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Malformed));
    }

    type ClaimsAlteration = fn(&mut serde_json::Value);

    #[test]
    fn mistyped_or_missing_claims_are_refused() {
        let codec = codec();
        let genuine = genuine_claims(&codec);
        // Sanity: re-signing the genuine claims verbatim is accepted.
        assert!(codec
            .open(&sign_raw(&codec, "k1", &genuine), at(T0))
            .is_ok());
        let alterations: Vec<(&str, ClaimsAlteration)> = vec![
            ("missing jti", |c| {
                drop(c.as_object_mut().unwrap().remove("jti"))
            }),
            ("missing exp", |c| {
                drop(c.as_object_mut().unwrap().remove("exp"))
            }),
            ("missing iat", |c| {
                drop(c.as_object_mut().unwrap().remove("iat"))
            }),
            ("missing iss", |c| {
                drop(c.as_object_mut().unwrap().remove("iss"))
            }),
            ("missing aud", |c| {
                drop(c.as_object_mut().unwrap().remove("aud"))
            }),
            ("missing sealed", |c| {
                drop(c.as_object_mut().unwrap().remove("sealed"))
            }),
            ("iat as string", |c| c["iat"] = json!(T0.to_string())),
            ("exp as float", |c| {
                c["exp"] = json!((T0 + 600) as f64 + 0.5)
            }),
            ("exp negative", |c| c["exp"] = json!(-1)),
            ("jti as number", |c| c["jti"] = json!(5)),
            ("jti too short", |c| c["jti"] = json!("abc")),
            ("aud as array", |c| c["aud"] = json!([AUDIENCE])),
            ("extra claim", |c| c["sub"] = json!("someone")),
            ("exp before iat", |c| c["iat"] = json!(T0 + 601)),
        ];
        for (name, alter) in alterations {
            let mut claims = genuine.clone();
            alter(&mut claims);
            let token = sign_raw(&codec, "k1", &claims);
            let result = codec.open(&token, at(T0));
            assert_eq!(result, Err(TokenError::Malformed), "{name}");
        }
        let mut claims = genuine.clone();
        claims.as_object_mut().unwrap().remove("jti");
        assert_eq!(
            codec.open(&sign_raw(&codec, "k1", &claims), at(T0)),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let codec = codec();
        let sealed = codec.seal(&payload(), at(T0)).unwrap();
        let keys = test_key_set("k1", &[("k1", 1)]);
        let other_audience =
            TokenCodec::new(keys, ISSUER, "https://other/login/return", TTL).unwrap();
        assert_eq!(
            other_audience.open(&sealed.token, at(T0)),
            Err(TokenError::WrongAudience)
        );
        let keys = test_key_set("k1", &[("k1", 1)]);
        let other_issuer = TokenCodec::new(keys, "https://other", AUDIENCE, TTL).unwrap();
        assert_eq!(
            other_issuer.open(&sealed.token, at(T0)),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn unknown_or_missing_kid_is_refused() {
        let codec = codec();
        let other = codec_with(test_key_set("k9", &[("k9", 1)]));
        let token = other.seal(&payload(), at(T0)).unwrap().token;
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::UnknownKey));

        let claims = genuine_claims(&codec);
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let token = unsigned_token(&header, &claims, "AAAA");
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Malformed));
    }

    #[test]
    fn same_kid_with_another_secret_fails_the_signature() {
        let codec = codec();
        let impostor = codec_with(test_key_set("k1", &[("k1", 2)]));
        let token = impostor.seal(&payload(), at(T0)).unwrap().token;
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let codec = codec();
        let claims = genuine_claims(&codec);
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
            for signature in ["", "AAAA"] {
                let token = unsigned_token(&header, &claims, signature);
                // jsonwebtoken knows no `none` algorithm, so the header itself does not parse.
                assert_eq!(
                    codec.open(&token, at(T0)),
                    Err(TokenError::Malformed),
                    "alg {alg}"
                );
            }
        }
    }

    #[test]
    fn asymmetric_algorithms_are_refused() {
        let codec = codec();
        let claims = genuine_claims(&codec);
        // A valid-looking HS256 MAC (using the real key) under a foreign alg must still fail: the
        // classic key-confusion attack signs with the HMAC secret and claims RS256.
        let genuine = sign_raw(&codec, "k1", &claims);
        let signature = genuine.rsplit('.').next().unwrap();
        for alg in ["RS256", "ES256", "EdDSA", "PS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
            let token = unsigned_token(&header, &claims, signature);
            assert_eq!(
                codec.open(&token, at(T0)),
                Err(TokenError::WrongAlgorithm),
                "alg {alg}"
            );
        }
    }

    #[test]
    fn undecryptable_payload_is_refused() {
        let codec = codec();
        let genuine = genuine_claims(&codec);

        // Random bytes where the sealed blob should be.
        let mut claims = genuine.clone();
        claims["sealed"] = json!(random_base64url(200));
        let token = sign_raw(&codec, "k1", &claims);
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Undecryptable));

        // The genuine blob under another jti (associated data mismatch).
        let mut claims = genuine.clone();
        claims["jti"] = json!(URL_SAFE_NO_PAD.encode([0u8; 16]));
        let token = sign_raw(&codec, "k1", &claims);
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Undecryptable));

        // Not base64url, and shorter than a nonce.
        for sealed in ["!!!", "AAAA"] {
            let mut claims = genuine.clone();
            claims["sealed"] = json!(sealed);
            let token = sign_raw(&codec, "k1", &claims);
            assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Undecryptable));
        }

        // A blob sealed under another key's AEAD key but signed with ours.
        let other = codec_with(test_key_set("k1", &[("k1", 5)]));
        let other_claims = genuine_claims(&other);
        let token = sign_raw(&codec, "k1", &other_claims);
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Undecryptable));
    }

    #[test]
    fn rotation_keeps_old_tokens_until_the_key_is_removed() {
        let before = codec_with(test_key_set("k1", &[("k1", 1)]));
        let old_token = before.seal(&payload(), at(T0)).unwrap().token;

        let rotated = codec_with(test_key_set("k2", &[("k2", 2), ("k1", 1)]));
        assert!(rotated.open(&old_token, at(T0 + 10)).is_ok());
        let new_token = rotated.seal(&payload(), at(T0)).unwrap().token;
        let header = jsonwebtoken::decode_header(&new_token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k2"));
        assert!(rotated.open(&new_token, at(T0 + 10)).is_ok());

        let removed = codec_with(test_key_set("k2", &[("k2", 2)]));
        assert_eq!(
            removed.open(&old_token, at(T0 + 10)),
            Err(TokenError::UnknownKey)
        );
        assert!(removed.open(&new_token, at(T0 + 10)).is_ok());
    }

    #[test]
    fn token_length_for_a_two_kilobyte_challenge() {
        let codec = codec();
        let payload = ReturnToPayload {
            login_challenge: random_base64url(2048),
            request_url: Some(format!(
                "https://hydra.example.com/oauth2/auth?client_id=demo-client&response_type=code&scope=openid+offline_access+email+profile&redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fcallback&state={}&nonce={}&code_challenge={}&code_challenge_method=S256&extra={}",
                random_base64url(43),
                random_base64url(43),
                random_base64url(43),
                random_base64url(700)
            )[..1024]
                .to_owned()),
            client_id: Some("demo-client".to_owned()),
            browser_binding: browser_binding_hash("cookie"),
        };
        assert_eq!(payload.request_url.as_ref().unwrap().len(), 1024);
        let sealed = codec.seal(&payload, at(T0)).unwrap();
        println!(
            "token length for a 2048-char random challenge + 1024-char request_url: {} chars",
            sealed.token.len()
        );
        assert!(sealed.token.len() <= MAX_TOKEN_CHARS);
        assert_eq!(codec.open(&sealed.token, at(T0)).unwrap().payload, payload);
    }

    #[test]
    fn errors_and_debug_never_show_token_or_payload() {
        let codec = codec();
        let payload = payload();
        let sealed = codec.seal(&payload, at(T0)).unwrap();
        let debug = format!("{payload:?} {sealed:?} {codec:?}");
        assert!(!debug.contains(&payload.login_challenge[..40]));
        assert!(!debug.contains(&sealed.token[..40]));
        for error in [
            codec.open(&sealed.token, at(T0 + 10_000)).unwrap_err(),
            codec.open(&sealed.token[..100], at(T0)).unwrap_err(),
        ] {
            let message = format!("{error} {error:?}");
            assert!(!message.contains(&sealed.token[..20]));
        }
    }

    #[test]
    fn codec_configuration_is_validated() {
        let keys = || test_key_set("k1", &[("k1", 1)]);
        assert!(TokenCodec::new(keys(), "", AUDIENCE, TTL).is_err());
        assert!(TokenCodec::new(keys(), ISSUER, "", TTL).is_err());
        assert!(TokenCodec::new(keys(), ISSUER, AUDIENCE, Duration::from_millis(999)).is_err());
    }

    #[test]
    fn clock_before_epoch_is_an_error_not_a_panic() {
        let codec = codec();
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            codec.seal(&payload(), before_epoch),
            Err(TokenError::ClockOutOfRange)
        );
        assert_eq!(
            codec.open("a.b.c", before_epoch),
            Err(TokenError::ClockOutOfRange)
        );
    }

    #[test]
    fn browser_binding_helpers() {
        let cookie = new_binding_cookie_value().unwrap();
        assert_eq!(cookie.len(), 43);
        assert_ne!(cookie, new_binding_cookie_value().unwrap());
        let hash = browser_binding_hash(&cookie);
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(cookie.as_bytes())));
        assert!(browser_binding_matches(&hash, &cookie));
        assert!(!browser_binding_matches(&hash, "other"));
    }

    #[test]
    fn plaintext_round_trips_every_challenge_shape() {
        let long_url = Some(format!(
            "https://hydra.example.com/oauth2/auth?{}",
            "a=b&".repeat(100)
        ));
        for (challenge, request_url, packed, deflated) in [
            (random_base64url(1500), long_url.clone(), true, true),
            // A hex challenge (older Hydra) is also canonical base64url.
            (
                "0123456789abcdef0123456789abcdef".to_owned(),
                None,
                true,
                false,
            ),
            // Non-canonical trailing bits, padding and foreign characters stay raw.
            (
                "abd".to_owned(),
                Some("https://h/".to_owned()),
                false,
                false,
            ),
            ("YWJj=".to_owned(), None, false, false),
            ("chal.lenge~ü".to_owned(), long_url, false, true),
            (String::new(), None, true, false),
        ] {
            let payload = ReturnToPayload {
                login_challenge: challenge.clone(),
                request_url,
                client_id: Some("client".to_owned()),
                browser_binding: [9; 32],
            };
            let plaintext = encode_plaintext(&payload).unwrap();
            let flags = plaintext[1];
            assert_eq!(flags & FLAG_CHALLENGE_BASE64URL != 0, packed, "{challenge}");
            assert_eq!(flags & FLAG_TAIL_DEFLATED != 0, deflated, "{challenge}");
            assert_eq!(decode_plaintext(&plaintext), Some(payload), "{challenge}");
        }
    }

    #[test]
    fn plaintext_decoder_rejects_inconsistent_input() {
        let payload = payload();
        let plaintext = encode_plaintext(&payload).unwrap();
        assert_ne!(plaintext[1] & FLAG_TAIL_DEFLATED, 0);
        assert_eq!(decode_plaintext(&plaintext), Some(payload.clone()));
        assert_eq!(decode_plaintext(&plaintext[..plaintext.len() - 1]), None);
        assert_eq!(decode_plaintext(&plaintext[..40]), None);
        assert_eq!(decode_plaintext(&[]), None);
        // Trailing bytes after a raw tail are refused. (Inflate stops at the final deflate block and
        // ignores what follows; harmless, as only the key holder can produce a plaintext.)
        let short = ReturnToPayload {
            request_url: Some("https://h/".to_owned()),
            ..payload.clone()
        };
        let mut trailing = encode_plaintext(&short).unwrap();
        assert_eq!(trailing[1] & FLAG_TAIL_DEFLATED, 0);
        trailing.push(0);
        assert_eq!(decode_plaintext(&trailing), None);
        let mut bad_version = plaintext.clone();
        bad_version[0] = 2;
        assert_eq!(decode_plaintext(&bad_version), None);
        let mut unknown_flag = plaintext.clone();
        unknown_flag[1] |= 0b1_0000;
        assert_eq!(decode_plaintext(&unknown_flag), None);
        let mut undeflated = plaintext.clone();
        undeflated[1] &= !FLAG_TAIL_DEFLATED;
        assert_eq!(decode_plaintext(&undeflated), None);

        // A deflate bomb in the tail is cut off at the limit instead of filling memory.
        let mut bomb = vec![PLAINTEXT_FORMAT_V1, FLAG_TAIL_DEFLATED | FLAG_REQUEST_URL];
        bomb.extend_from_slice(&[0; 32]);
        bomb.extend_from_slice(&[0, 0]);
        bomb.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(
            &vec![b'a'; 10 * MAX_TAIL_BYTES],
            6,
        ));
        assert_eq!(decode_plaintext(&bomb), None);
    }
}
