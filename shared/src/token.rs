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
//! [`ReturnToPayload`] (see `encode_plaintext`); tokens issued by earlier versions may
//! carry the URL part deflated, which `open` still reads.
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

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XNonce};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::epoch_seconds;
use crate::keyset::{Key, KeySet};
use crate::random;

/// Tokens longer than this are refused before any parsing, so an attacker cannot make the
/// function base64-decode, parse or inflate megabytes. Browsers and proxies handle URLs of this
/// size without trouble; a 2 KB challenge plus a 1 KB `request_url` needs about 5 KB.
pub const MAX_TOKEN_CHARS: usize = 8 * 1024;

/// How far in the future `iat` may be before the token is refused: Lambda clocks are
/// NTP-disciplined, so a few seconds covers skew between the instance that issued the token and
/// the one that opens it, without letting a token live meaningfully longer than its TTL.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Upper bound on the inflated tail; far above any real `request_url`, it only stops a
/// decompression bomb from a holder of the key (e.g. a bug elsewhere) from exhausting memory.
const MAX_TAIL_BYTES: usize = 64 * 1024;

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
const JTI_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Domain separation for the AEAD associated data, so a ciphertext made for another purpose or
/// format version under the same subkey can never be accepted here.
const AEAD_CONTEXT: &[u8] = b"hydra-kratos-bridge/return-to/v1\0";

/// First plaintext byte, so a future layout change is recognised rather than misparsed.
const PLAINTEXT_FORMAT_V1: u8 = 1;
const FLAG_REQUEST_URL: u8 = 0b0001;
const FLAG_CLIENT_ID: u8 = 0b0010;
/// The challenge was canonical base64url and is stored as the bytes it encodes.
const FLAG_CHALLENGE_BASE64URL: u8 = 0b0100;
/// The tail (`request_url`, `client_id`) is raw deflate. No longer written (see
/// `encode_plaintext`), still read so tokens issued before keep opening.
const FLAG_TAIL_DEFLATED: u8 = 0b1000;
const KNOWN_FLAGS: u8 =
    FLAG_REQUEST_URL | FLAG_CLIENT_ID | FLAG_CHALLENGE_BASE64URL | FLAG_TAIL_DEFLATED;

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
struct IssuedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    sealed: String,
}

/// The JWT claims as presented. `deny_unknown_fields` plus non-optional fields make every claim
/// required and exactly typed: an `exp` given as a string, a missing `jti`, an `aud` array or a
/// stray claim are all refused. (jsonwebtoken hands back owned claims, hence `String`.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresentedClaims {
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
        let mut current_header = Header::new(Algorithm::HS256);
        current_header.typ = Some(JWS_TYP.to_owned());
        current_header.kid = Some(keys.current().kid().to_owned());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);

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

        let mut randomness = [0u8; JTI_BYTES + NONCE_BYTES];
        random::fill(&mut randomness).map_err(|_| TokenError::Randomness)?;
        let (jti_bytes, nonce_bytes) = randomness.split_at(JTI_BYTES);
        let jti = URL_SAFE_NO_PAD.encode(jti_bytes);

        // nonce || plaintext, encrypted in place, then the tag: one buffer, no copies.
        let key = self.keys.current();
        let mut sealed = Vec::with_capacity(NONCE_BYTES + plaintext_capacity(payload) + TAG_BYTES);
        sealed.extend_from_slice(nonce_bytes);
        encode_plaintext(payload, &mut sealed)?;
        let plaintext = sealed
            .get_mut(NONCE_BYTES..)
            .ok_or(TokenError::SealFailed)?;
        let tag = key
            .aead()
            .encrypt_in_place_detached(
                XNonce::from_slice(nonce_bytes),
                &associated_data(key.kid(), &jti),
                plaintext,
            )
            .map_err(|_| TokenError::SealFailed)?;
        sealed.extend_from_slice(&tag);

        let claims = IssuedClaims {
            iss: &self.issuer,
            aud: &self.audience,
            iat: issued_at,
            exp: expires_at,
            jti: &jti,
            sealed: URL_SAFE_NO_PAD.encode(&sealed),
        };
        let token = jsonwebtoken::encode(&self.current_header, &claims, key.jws_encoding_key())
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
        let now = epoch_seconds(now).ok_or(TokenError::ClockOutOfRange)?;

        let header_json = URL_SAFE_NO_PAD
            .decode(compact_header(token)?)
            .map_err(|_| TokenError::Malformed)?;
        let header: PresentedHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        check_algorithm(&header.alg)?;
        if header.typ.is_some_and(|typ| typ != JWS_TYP) {
            return Err(TokenError::Malformed);
        }
        let key = self.keys.get(&header.kid).ok_or(TokenError::UnknownKey)?;

        // jsonwebtoken decodes nothing of the claims before the MAC vouches for them, then checks
        // issuer and audience.
        let claims = jsonwebtoken::decode::<PresentedClaims>(
            token,
            key.jws_decoding_key(),
            &self.validation,
        )
        .map_err(|error| refusal(error.kind()))?
        .claims;
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

fn unseal(key: &Key, jti: &str, sealed: &str) -> Result<ReturnToPayload, TokenError> {
    let mut sealed = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| TokenError::Undecryptable)?;
    let ciphertext_bytes = sealed
        .len()
        .checked_sub(NONCE_BYTES + TAG_BYTES)
        .ok_or(TokenError::Undecryptable)?;
    // Decrypted where it lies: the plaintext is only read, to build the payload.
    let (nonce, rest) = sealed.split_at_mut(NONCE_BYTES);
    let (ciphertext, tag) = rest.split_at_mut(ciphertext_bytes);
    key.aead()
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &associated_data(key.kid(), jti),
            ciphertext,
            Tag::from_slice(tag),
        )
        .map_err(|_| TokenError::Undecryptable)?;
    decode_plaintext(ciphertext).ok_or(TokenError::Undecryptable)
}

/// Encodes the payload as the AEAD plaintext:
///
/// `format(1) || flags(1) || binding(32) || challenge || tail`, where each string is a big-endian
/// u16 length plus bytes and `tail` holds the optional `request_url` and `client_id` strings.
///
/// Binary rather than JSON because every byte here is paid for twice over in base64 in the URL.
/// Hydra's challenge is base64url already, so it is stored decoded (25% smaller, under a
/// microsecond). The tail is no longer deflated: miniz_oxide zeroes about 300 KB of tables per
/// call, which made deflate half the cost of a seal (about 11 of 22 microseconds) to save about
/// 140 bytes (7% of the token) on a typical 600-character `request_url`.
fn encode_plaintext(payload: &ReturnToPayload, out: &mut Vec<u8>) -> Result<(), TokenError> {
    let flags_at = out.len() + 1;
    out.push(PLAINTEXT_FORMAT_V1);
    out.push(0);
    out.extend_from_slice(&payload.browser_binding);

    // The challenge goes straight into `out` behind a length placeholder.
    let mut flags = 0;
    let length_at = out.len();
    out.extend_from_slice(&[0, 0]);
    if URL_SAFE_NO_PAD
        .decode_vec(&payload.login_challenge, out)
        .is_ok()
    {
        flags |= FLAG_CHALLENGE_BASE64URL;
    } else {
        out.truncate(length_at + 2);
        out.extend_from_slice(payload.login_challenge.as_bytes());
    }
    let challenge_length =
        u16::try_from(out.len() - length_at - 2).map_err(|_| TokenError::PayloadTooLarge)?;
    set_bytes(out, length_at, &challenge_length.to_be_bytes())?;

    if let Some(request_url) = &payload.request_url {
        flags |= FLAG_REQUEST_URL;
        push_string(out, request_url.as_bytes())?;
    }
    if let Some(client_id) = &payload.client_id {
        flags |= FLAG_CLIENT_ID;
        push_string(out, client_id.as_bytes())?;
    }
    set_bytes(out, flags_at, &[flags])
}

/// An upper bound on the plaintext [`encode_plaintext`] writes, so its buffer is allocated once.
fn plaintext_capacity(payload: &ReturnToPayload) -> usize {
    let string = |value: Option<&String>| value.map_or(0, |value| 2 + value.len());
    2 + payload.browser_binding.len()
        + 2
        + payload.login_challenge.len()
        + string(payload.request_url.as_ref())
        + string(payload.client_id.as_ref())
}

/// Overwrites the placeholder at `at` once its value is known.
fn set_bytes(out: &mut [u8], at: usize, value: &[u8]) -> Result<(), TokenError> {
    out.get_mut(at..at + value.len())
        .ok_or(TokenError::SealFailed)?
        .copy_from_slice(value);
    Ok(())
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
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use serde_json::json;
    use std::time::UNIX_EPOCH;

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
    /// signature check but are wrong in one specific way. jsonwebtoken signs, so these tests also
    /// show that the codec accepts a standard JWS made elsewhere.
    fn sign_raw(codec: &TokenCodec, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let secret = EncodingKey::from_secret(codec.keys.get(kid).unwrap().jws_secret());
        jsonwebtoken::encode(&header, claims, &secret).unwrap()
    }

    /// Signs `header.claims` as given (any header, any JSON text) with the real HS256 key of
    /// `kid`, for header-parsing tests that must get past nothing but the header.
    fn sign_with_header(codec: &TokenCodec, kid: &str, header: &str, claims: &str) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let secret = EncodingKey::from_secret(codec.keys.get(kid).unwrap().jws_secret());
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &secret, Algorithm::HS256).unwrap();
        format!("{message}.{signature}")
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
                // `none` is no signature algorithm at all: the header is malformed.
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
        let cookie = crate::random::random_token().unwrap();
        assert_eq!(cookie.len(), 43);
        assert_ne!(cookie, crate::random::random_token().unwrap());
        let hash = browser_binding_hash(&cookie);
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(cookie.as_bytes())));
        assert!(browser_binding_matches(&hash, &cookie));
        assert!(!browser_binding_matches(&hash, "other"));
    }

    fn plaintext_of(payload: &ReturnToPayload) -> Vec<u8> {
        let mut plaintext = Vec::new();
        encode_plaintext(payload, &mut plaintext).unwrap();
        assert!(plaintext.len() <= plaintext_capacity(payload));
        plaintext
    }

    #[test]
    fn plaintext_round_trips_every_challenge_shape() {
        let long_url = Some(format!(
            "https://hydra.example.com/oauth2/auth?{}",
            "a=b&".repeat(100)
        ));
        for (challenge, request_url, packed) in [
            (random_base64url(1500), long_url.clone(), true),
            // A hex challenge (older Hydra) is also canonical base64url.
            ("0123456789abcdef0123456789abcdef".to_owned(), None, true),
            // Non-canonical trailing bits, padding and foreign characters stay raw.
            ("abd".to_owned(), Some("https://h/".to_owned()), false),
            ("YWJj=".to_owned(), None, false),
            ("chal.lenge~ü".to_owned(), long_url, false),
            (String::new(), None, true),
        ] {
            let payload = ReturnToPayload {
                login_challenge: challenge.clone(),
                request_url,
                client_id: Some("client".to_owned()),
                browser_binding: [9; 32],
            };
            let plaintext = plaintext_of(&payload);
            let flags = plaintext[1];
            assert_eq!(flags & FLAG_CHALLENGE_BASE64URL != 0, packed, "{challenge}");
            assert_eq!(flags & FLAG_TAIL_DEFLATED, 0, "{challenge}");
            assert_eq!(
                decode_plaintext(&plaintext),
                Some(payload.clone()),
                "{challenge}"
            );
            // The deflated form earlier tokens carry decodes to the same payload.
            let deflated = with_deflated_tail(&plaintext);
            assert_eq!(decode_plaintext(&deflated), Some(payload), "{challenge}");
        }
    }

    /// The plaintext as the codec wrote it before it stopped deflating: the tail (everything
    /// after the challenge) raw-deflated, at the level it used.
    fn with_deflated_tail(plaintext: &[u8]) -> Vec<u8> {
        let challenge_length = usize::from(u16::from_be_bytes([plaintext[34], plaintext[35]]));
        let tail_at = 36 + challenge_length;
        let mut deflated = plaintext[..tail_at].to_vec();
        deflated[1] |= FLAG_TAIL_DEFLATED;
        deflated.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(
            &plaintext[tail_at..],
            1,
        ));
        deflated
    }

    #[test]
    fn plaintext_decoder_rejects_inconsistent_input() {
        let payload = payload();
        let plaintext = with_deflated_tail(&plaintext_of(&payload));
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
        let mut trailing = plaintext_of(&short);
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

    /// Issued by the codec when it first signed with jsonwebtoken 11 (key `test_key_set("k1",
    /// &[("k1", 1)])`, issued at T0, deflated tail). The in-crate JWS that followed wrote the same
    /// header and claims bytes, so this also stands for its tokens: tokens in flight during a
    /// deployment must still open.
    const JSONWEBTOKEN_ERA_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20iLCJhdWQiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vbG9naW4vcmV0dXJuIiwiaWF0IjoxNzUwMDAwMDAwLCJleHAiOjE3NTAwMDA2MDAsImp0aSI6IkJXUXFGdmk3eFJwZ0ZyMUdwZkhENUEiLCJzZWFsZWQiOiJrb0ZoQkZvYXZyMVFQbUhoZVVXM0xHSUpMMi1oa1B1ZlhoMU96S2R5WWEyNFdfM2Jka3Radm5hZTNmUTQ1QUJaXzRWZjk0dGlsek9sdkRPczE3a0hmSUhISzNuTzJmdDVMOFYzako5STNxMWpPRGJ3cWVmcWdaNUVhQTZRdWNrbWs0TzJwWGduMXF5bHBBU05PNGVYNmEtYUVNb3NOZ0lIOTRlYXpiZGVKaW1vNkhGN1RCVUF0TmdOS2hqSy02TjFfNFlzaVZvV29NVlhZTWhqQmlIX0FpZVJVWnVVVlJMTnY0X0RiSHZwX05tTWxUSlNDanprWjdQLVJ0RmJ3QTF2VU12aUFnb0dIQVdyXzRQZFlVbDVmX2J0a1IwZUVNem1WcmcyRG1hdmpTMGk5LTFRelR4R2xyYVZaRjJabkVRbXFPcUlNLXZ6eGFKUUpEYkNiWHZzdzM1bTUxayJ9.hm4BmRFE1C0YFTUKtREH3IoUhiC-iVObIhftgJ5HaO0";

    #[test]
    fn tokens_issued_through_jsonwebtoken_still_open() {
        let opened = codec().open(JSONWEBTOKEN_ERA_TOKEN, at(T0 + 1)).unwrap();
        assert_eq!(opened.jti, "BWQqFvi7xRpgFr1GpfHD5A");
        assert_eq!((opened.issued_at, opened.expires_at), (T0, T0 + 600));
        assert_eq!(
            opened.payload,
            ReturnToPayload {
                login_challenge: "aGVsbG8td29ybGQtdGhpcy1pcy1hLWNoYWxsZW5nZQ".to_owned(),
                request_url: Some(format!(
                    "https://hydra.example.com/oauth2/auth?client_id=demo&response_type=code&scope=openid+offline&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&state={}&nonce=n-0S6_WzA2Mj",
                    "x".repeat(40)
                )),
                client_id: Some("demo".to_owned()),
                browser_binding: browser_binding_hash("cookie-value"),
            }
        );
    }

    #[test]
    fn issued_tokens_are_standard_hs256_jws() {
        let codec = codec();
        let token = codec.seal(&payload(), at(T0)).unwrap().token;
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#
        );
        // An independent implementation verifies the signature and reads the claims.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false;
        let secret = DecodingKey::from_secret(codec.keys.current().jws_secret());
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &secret, &validation)
            .unwrap()
            .claims;
        let names: Vec<&str> = claims
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "sealed"]);
    }

    #[test]
    fn claims_keep_their_order_and_escaping() {
        let keys = || test_key_set("k1", &[("k1", 1)]);
        for (issuer, audience) in [
            (ISSUER, AUDIENCE),
            (
                "https://a.example/\"quoted\"\\path",
                "tab\there, ünïcode and \u{1}",
            ),
        ] {
            let codec = TokenCodec::new(keys(), issuer, audience, TTL).unwrap();
            let sealed = codec.seal(&payload(), at(T0)).unwrap();
            let claims = sealed.token.split('.').nth(1).unwrap();
            let written = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
            let expected = serde_json::to_string(&IssuedClaims {
                iss: issuer,
                aud: audience,
                iat: T0,
                exp: T0 + 600,
                jti: &sealed.jti,
                sealed: parsed["sealed"].as_str().unwrap().to_owned(),
            })
            .unwrap();
            assert_eq!(written, expected);
            assert!(codec.open(&sealed.token, at(T0)).is_ok());
        }
    }

    #[test]
    fn header_is_parsed_strictly_even_under_a_valid_mac() {
        let codec = codec();
        let claims = genuine_claims(&codec).to_string();
        assert!(codec
            .open(
                &sign_with_header(&codec, "k1", r#"{"alg":"HS256","kid":"k1"}"#, &claims),
                at(T0)
            )
            .is_ok());
        let cases = [
            (
                r#"{"alg":"HS256","kid":"k1","typ":"JWS"}"#,
                TokenError::Malformed,
            ),
            (
                r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#,
                TokenError::Malformed,
            ),
            (
                r#"{"alg":"HS256","kid":"k1","jku":"https://evil/"}"#,
                TokenError::Malformed,
            ),
            (
                r#"{"alg":"HS256","kid":"k1","b64":false}"#,
                TokenError::Malformed,
            ),
            (
                r#"{"alg":"HS256","alg":"HS256","kid":"k1"}"#,
                TokenError::Malformed,
            ),
            (
                r#"{"alg":"HS256","kid":"k1","kid":"k1"}"#,
                TokenError::Malformed,
            ),
            (r#"{"alg":"HS256","kid":1}"#, TokenError::Malformed),
            (r#"{"alg":"hs256","kid":"k1"}"#, TokenError::Malformed),
            (r#"{"alg":"HS256 ","kid":"k1"}"#, TokenError::Malformed),
            (r#"{"alg":"ES512","kid":"k1"}"#, TokenError::WrongAlgorithm),
            (r#"{"alg":"HS256","kid":"k1"} x"#, TokenError::Malformed),
            (r#"[{"alg":"HS256","kid":"k1"}]"#, TokenError::Malformed),
            (r#"{"alg":"HS256","kid":"k2"}"#, TokenError::UnknownKey),
        ];
        for (header, expected) in cases {
            let token = sign_with_header(&codec, "k1", header, &claims);
            assert_eq!(codec.open(&token, at(T0)), Err(expected), "{header}");
        }
    }

    #[test]
    fn compact_form_needs_exactly_three_non_empty_parts() {
        let codec = codec();
        let token = codec.seal(&payload(), at(T0)).unwrap().token;
        let parts: Vec<&str> = token.split('.').collect();
        for altered in [
            format!("{}.{}", parts[0], parts[1]),
            format!("{}.{}.", parts[0], parts[1]),
            format!(".{}.{}", parts[1], parts[2]),
            format!("{}..{}", parts[0], parts[2]),
            format!("{token}.{}", parts[2]),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[1], parts[2]),
            "..".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                codec.open(&altered, at(T0)),
                Err(TokenError::Malformed),
                "{altered:.20}"
            );
        }
    }

    #[test]
    fn signature_is_checked_before_the_claims_are_read() {
        let codec = codec();
        // Claims that are not even base64url, under a signature that does not match: the
        // signature is what refuses it.
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#);
        let signature = URL_SAFE_NO_PAD.encode([0u8; 32]);
        let token = format!("{header}.!!not-base64!!.{signature}");
        assert_eq!(codec.open(&token, at(T0)), Err(TokenError::BadSignature));
        // A signature of the wrong length is a bad signature, not a crash or a prefix match.
        let genuine = codec.seal(&payload(), at(T0)).unwrap().token;
        let (signing_input, signature) = genuine.rsplit_once('.').unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        for length in [0, 1, 16, 31] {
            let truncated = URL_SAFE_NO_PAD.encode(&bytes[..length]);
            if truncated.is_empty() {
                continue;
            }
            assert_eq!(
                codec.open(&format!("{signing_input}.{truncated}"), at(T0)),
                Err(TokenError::BadSignature)
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let longer = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&longer));
        assert_eq!(codec.open(&longer, at(T0)), Err(TokenError::BadSignature));
        let huge = format!("{signing_input}.{}", "A".repeat(200));
        assert_eq!(codec.open(&huge, at(T0)), Err(TokenError::BadSignature));
    }
}
