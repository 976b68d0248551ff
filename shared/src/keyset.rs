//! The rotating set of secrets behind the return_to token and the consent CSRF tokens.
//!
//! Operators keep one secret per key id (`kid`) in a small JSON document (see `docs/design.md`).
//! Rotation works by adding a new key, pointing `current` at it, and removing the old key once
//! every token it issued has expired: new tokens always use `current`, old ones keep verifying while
//! their key is still listed.
//!
//! Each secret is never used directly. HKDF-SHA256 derives independent subkeys for JWT signing,
//! payload encryption, CSRF tokens and policy hook signatures, so a weakness in how one purpose
//! uses its key cannot leak into another, and the hook's key can be handed to the hook's operator
//! without handing over anything that signs tokens.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Fewer than 32 bytes would make the derived 256-bit subkeys weaker than they claim to be.
pub const MIN_SECRET_BYTES: usize = 32;

/// An upper bound keeps a pasted-in mistake (a whole PEM file, say) from being silently accepted.
pub const MAX_SECRET_BYTES: usize = 1024;

/// Kids travel in JWT headers and CSRF tokens, so they stay short and need no escaping.
pub const MAX_KID_CHARS: usize = 64;

/// More keys than this is not rotation any more but a misconfiguration, and each key costs HKDF
/// work at cold start.
pub const MAX_KEYS: usize = 16;

const HKDF_INFO_JWT: &[u8] = b"hydra-kratos-bridge/v1/return-to/jwt-hs256";
const HKDF_INFO_AEAD: &[u8] = b"hydra-kratos-bridge/v1/return-to/aead-xchacha20poly1305";
const HKDF_INFO_CSRF: &[u8] = b"hydra-kratos-bridge/v1/csrf/hmac-sha256";
/// Public on purpose: the hook's operator may derive its key from the secret with these
/// parameters instead of running the doctor (docs/policy.md).
pub const HKDF_INFO_POLICY_HOOK: &[u8] = b"hydra-kratos-bridge/v1/policy-hook/hmac-sha256";

/// Prefixed to every CSRF MAC input so a CSRF MAC can never be mistaken for another use of HMAC.
const CSRF_DOMAIN: &[u8] = b"hydra-kratos-bridge/v1/csrf\0";

/// Secrets are written base64url; accepting optional padding spares operators a confusing error
/// when their tool of choice adds `=`.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Why a key set document was refused.
///
/// Every message names the offending field (by path and, where safe, kid) but never echoes a
/// secret or any other value from the document: these errors end up in logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeySetError {
    /// The text is not JSON at all; only the position is reported because the text is secret.
    #[error("key set is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// A required field is absent or has the wrong JSON type.
    #[error("key set field `{field}` is missing or is not {expected}")]
    WrongShape {
        /// Path of the field, e.g. `keys[1].secret`.
        field: String,
        /// What the field should have been, e.g. `a string`.
        expected: &'static str,
    },
    /// A field the format does not define, most likely a typo of a real one.
    #[error("key set has an unexpected field `{field}`")]
    UnknownField {
        /// Path of the field; the name is replaced by a placeholder if it looks odd.
        field: String,
    },
    /// Without keys nothing can be signed or verified.
    #[error("key set field `keys` is empty")]
    NoKeys,
    /// See [`MAX_KEYS`].
    #[error("key set field `keys` lists {count} keys; at most {MAX_KEYS} are allowed")]
    TooManyKeys {
        /// How many keys the document lists.
        count: usize,
    },
    /// The kid is empty, too long or contains characters outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "key set field `keys[{index}].kid` must be 1 to {MAX_KID_CHARS} characters of A-Z a-z 0-9 . _ -"
    )]
    InvalidKid {
        /// Position of the key in `keys`.
        index: usize,
    },
    /// Two keys share a kid, so a token's kid would not say which secret signed it.
    #[error("key set field `keys[{index}].kid` repeats the kid {kid:?}")]
    DuplicateKid {
        /// Position of the second occurrence in `keys`.
        index: usize,
        /// The repeated kid (kids are not secret).
        kid: String,
    },
    /// The secret is not base64url text.
    #[error("key set field `keys[{index}].secret` (kid {kid:?}) is not base64url")]
    SecretNotBase64Url {
        /// Position of the key in `keys`.
        index: usize,
        /// The key's kid.
        kid: String,
    },
    /// The secret decodes to fewer than [`MIN_SECRET_BYTES`] or more than [`MAX_SECRET_BYTES`].
    #[error(
        "key set field `keys[{index}].secret` (kid {kid:?}) decodes to {length} bytes; \
         {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} are required"
    )]
    SecretLength {
        /// Position of the key in `keys`.
        index: usize,
        /// The key's kid.
        kid: String,
        /// Decoded length in bytes.
        length: usize,
    },
    /// `current` must name one of the listed kids; its value is not printed in case it is not a kid.
    #[error("key set field `current` does not name a kid listed in `keys`")]
    CurrentNotListed,
    /// HKDF or HMAC refused a key; impossible with the lengths used here, but reported rather
    /// than papered over so that a broken build can never run with a weak key.
    #[error("deriving the subkeys of key set field `keys[{index}]` failed")]
    KeyDerivation {
        /// Position of the key in `keys`.
        index: usize,
    },
}

/// All keys an instance accepts, and which of them signs new tokens.
///
/// Built once at cold start from the key set JSON; cheap to share by reference afterwards.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    current_index: usize,
}

impl KeySet {
    /// Parses and validates the key set document from `docs/design.md`, deriving every subkey up
    /// front so that a bad document fails at cold start rather than on the first request.
    pub fn from_json(json: &str) -> Result<Self, KeySetError> {
        let document: serde_json::Value =
            serde_json::from_str(json).map_err(|error| KeySetError::InvalidJson {
                line: error.line(),
                column: error.column(),
            })?;
        let top = document
            .as_object()
            .ok_or_else(|| KeySetError::WrongShape {
                field: "(document)".to_owned(),
                expected: "an object",
            })?;
        reject_unknown_fields(top, "", &["current", "keys", "secret"])?;
        let current_kid = string_field(top, "current", "current")?;
        // CloudFormation's generated secret can only add a top-level member, so a first-deploy
        // key set reads `{"current": "k1", "keys": [{"kid": "k1"}], "secret": "..."}`: the
        // top-level secret belongs to the current key, which must then have none of its own.
        let top_level_secret = match top.get("secret") {
            None => None,
            Some(_) => Some(string_field(top, "secret", "secret")?),
        };
        let mut top_level_secret_used = false;
        let entries = top
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| KeySetError::WrongShape {
                field: "keys".to_owned(),
                expected: "an array",
            })?;
        if entries.is_empty() {
            return Err(KeySetError::NoKeys);
        }
        if entries.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys {
                count: entries.len(),
            });
        }

        let mut keys = Vec::with_capacity(entries.len());
        let mut seen_kids = HashSet::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.as_object().ok_or_else(|| KeySetError::WrongShape {
                field: format!("keys[{index}]"),
                expected: "an object",
            })?;
            let prefix = format!("keys[{index}].");
            reject_unknown_fields(entry, &prefix, &["kid", "secret"])?;
            let kid = string_field(entry, "kid", &format!("{prefix}kid"))?;
            if !is_valid_kid(kid) {
                return Err(KeySetError::InvalidKid { index });
            }
            if !seen_kids.insert(kid) {
                return Err(KeySetError::DuplicateKid {
                    index,
                    kid: kid.to_owned(),
                });
            }
            let encoded_secret = match (entry.contains_key("secret"), top_level_secret) {
                (false, Some(secret)) if kid == current_kid => {
                    top_level_secret_used = true;
                    secret
                }
                _ => string_field(entry, "secret", &format!("{prefix}secret"))?,
            };
            let secret = BASE64URL_ANY_PADDING.decode(encoded_secret).map_err(|_| {
                KeySetError::SecretNotBase64Url {
                    index,
                    kid: kid.to_owned(),
                }
            })?;
            if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&secret.len()) {
                return Err(KeySetError::SecretLength {
                    index,
                    kid: kid.to_owned(),
                    length: secret.len(),
                });
            }
            keys.push(Key::derive(kid, &secret).ok_or(KeySetError::KeyDerivation { index })?);
        }

        if top_level_secret.is_some() && !top_level_secret_used {
            return Err(KeySetError::WrongShape {
                field: "secret".to_owned(),
                expected:
                    "absent, or the secret of the current key when that key has none of its own",
            });
        }
        let current_index = keys
            .iter()
            .position(|key| key.kid == current_kid)
            .ok_or(KeySetError::CurrentNotListed)?;
        Ok(Self {
            keys,
            current_index,
        })
    }

    /// The key new tokens are issued under.
    pub fn current(&self) -> &Key {
        // `current_index` is checked against `keys` in `from_json`, the only constructor.
        &self.keys[self.current_index]
    }

    /// Looks up the key a presented token names; `None` means the key was rotated out (or never
    /// existed), which callers report as an unknown key rather than a forgery.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// Lists the accepted kids, for start-up logs that must not show secrets.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.kid.as_str())
    }

    /// The CSRF key of the current key, which the consent function uses to issue form tokens.
    pub fn csrf_key(&self) -> &CsrfKey {
        &self.current().csrf
    }

    /// Checks a CSRF token issued by [`CsrfKey::token_for`] under any listed key, so a consent form
    /// rendered just before a rotation can still be submitted just after it.
    pub fn verify_csrf_token(&self, bound_to: &str, presented: &str) -> bool {
        let Some((kid, _)) = presented.rsplit_once('.') else {
            return false;
        };
        self.get(kid)
            .is_some_and(|key| key.csrf.verify(bound_to, presented))
    }
}

/// One key of the set with its derived subkeys; the raw secret is not kept.
pub struct Key {
    kid: String,
    /// The JWS subkey as jsonwebtoken's signing and verification keys, made once per cold start.
    jws_encoding: EncodingKey,
    jws_decoding: DecodingKey,
    /// The JWS subkey itself, only so tests can forge tokens under other HMAC algorithms (kept
    /// for the crate's tests and the `testkit` feature, never in the functions).
    #[cfg(any(test, feature = "testkit"))]
    jws_secret: [u8; 32],
    aead: XChaCha20Poly1305,
    csrf: CsrfKey,
    policy_hook: PolicyHookKey,
}

impl Key {
    /// `None` only if HKDF or HMAC refuse a 32-byte key, which they never do.
    fn derive(kid: &str, secret: &[u8]) -> Option<Self> {
        let hkdf = Hkdf::<Sha256>::new(None, secret);
        let jwt_key = expand_32(&hkdf, HKDF_INFO_JWT)?;
        let aead_key = expand_32(&hkdf, HKDF_INFO_AEAD)?;
        let csrf_key = expand_32(&hkdf, HKDF_INFO_CSRF)?;
        let policy_hook_key = expand_32(&hkdf, HKDF_INFO_POLICY_HOOK)?;
        Some(Self {
            kid: kid.to_owned(),
            jws_encoding: EncodingKey::from_secret(&jwt_key),
            jws_decoding: DecodingKey::from_secret(&jwt_key),
            #[cfg(any(test, feature = "testkit"))]
            jws_secret: jwt_key,
            aead: XChaCha20Poly1305::new(&aead_key.into()),
            csrf: CsrfKey {
                kid: kid.to_owned(),
                keyed_mac: <HmacSha256 as Mac>::new_from_slice(&csrf_key).ok()?,
            },
            policy_hook: PolicyHookKey {
                kid: kid.to_owned(),
                keyed_mac: <HmacSha256 as Mac>::new_from_slice(&policy_hook_key).ok()?,
                secret: policy_hook_key,
            },
        })
    }

    /// The key id, written into token headers so verification knows which secret to use.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// This key's CSRF subkey, for callers that must pin a specific key.
    pub fn csrf_key(&self) -> &CsrfKey {
        &self.csrf
    }

    /// This key's policy hook subkey; the doctor prints it for every listed key so the hook can
    /// keep verifying across a rotation.
    pub fn policy_hook_key(&self) -> &PolicyHookKey {
        &self.policy_hook
    }

    /// The key the codec signs return_to tokens with, when this is the current key.
    pub(crate) fn jws_encoding_key(&self) -> &EncodingKey {
        &self.jws_encoding
    }

    /// The key the codec verifies return_to tokens of this kid with.
    pub(crate) fn jws_decoding_key(&self) -> &DecodingKey {
        &self.jws_decoding
    }

    /// Tests forge tokens with our real secret under algorithms the codec must refuse, and check
    /// that an independent JWT library accepts what the codec issues. Public (with the
    /// `testkit` feature only) because the attack suite is an integration test in `tests/`.
    #[cfg(any(test, feature = "testkit"))]
    pub fn jws_secret(&self) -> &[u8; 32] {
        &self.jws_secret
    }

    pub(crate) fn aead(&self) -> &XChaCha20Poly1305 {
        &self.aead
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("material", &"[redacted]")
            .finish()
    }
}

/// HMAC-SHA256 key for the consent form's CSRF tokens.
///
/// A token is `<kid>.<base64url MAC>` over a caller-chosen string (for instance the consent
/// challenge plus the binding cookie), so it is only valid for that one form and survives key
/// rotation while its kid is listed.
pub struct CsrfKey {
    kid: String,
    /// HMAC state already keyed with the derived CSRF subkey; cloned for each MAC.
    keyed_mac: HmacSha256,
}

impl CsrfKey {
    /// Issues the token to embed in a form bound to `bound_to`.
    pub fn token_for(&self, bound_to: &str) -> String {
        let mac = self.mac(bound_to);
        format!("{}.{}", self.kid, URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks a token against this key only, in constant time with respect to the MAC.
    pub fn verify(&self, bound_to: &str, presented: &str) -> bool {
        let Some((kid, encoded_mac)) = presented.rsplit_once('.') else {
            return false;
        };
        if kid != self.kid {
            return false;
        }
        let Ok(presented_mac) = URL_SAFE_NO_PAD.decode(encoded_mac) else {
            return false;
        };
        let expected_mac = self.mac(bound_to);
        bool::from(expected_mac.as_slice().ct_eq(presented_mac.as_slice()))
    }

    fn mac(&self, bound_to: &str) -> [u8; 32] {
        let mut mac = self.keyed_mac.clone();
        mac.update(CSRF_DOMAIN);
        mac.update(bound_to.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_subkey(f, "CsrfKey", &self.kid)
    }
}

/// A subkey's `Debug`: its type and kid, never key material (these end up in error logs).
fn debug_subkey(f: &mut fmt::Formatter<'_>, type_name: &str, kid: &str) -> fmt::Result {
    f.debug_struct(type_name)
        .field("kid", &kid)
        .field("key", &"[redacted]")
        .finish()
}

/// HMAC-SHA256 key for the policy hook's request signatures (`Bridge-Signature`, docs/policy.md).
///
/// Unlike the other subkeys this one leaves the bridge: the hook needs it to verify what the
/// bridge sends. It is derived with its own HKDF info string, so knowing it tells nothing about
/// the token or CSRF keys of the same secret.
#[derive(Clone)]
pub struct PolicyHookKey {
    kid: String,
    /// Kept so [`PolicyHookKey::to_hex`] can hand it to the hook's operator.
    secret: [u8; 32],
    /// HMAC state already keyed with the subkey; cloned for each signature.
    keyed_mac: HmacSha256,
}

impl PolicyHookKey {
    /// The kid of the key set entry this subkey comes from, sent with each signature so a hook
    /// holding several keys knows which one to check during a rotation.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// HMAC-SHA256 of `message`, the value of the signature's `v1`.
    pub fn mac(&self, message: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed_mac.clone();
        for part in message {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The subkey as lower-case hex, the form the hook is configured with. Only the doctor's
    /// `policy-hook-keys` command calls this; nothing in the functions logs it.
    pub fn to_hex(&self) -> String {
        lower_hex(&self.secret)
    }
}

impl fmt::Debug for PolicyHookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_subkey(f, "PolicyHookKey", &self.kid)
    }
}

/// Lower-case hex, the spelling of MACs in the hook's signature header.
pub fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn expand_32(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Option<[u8; 32]> {
    let mut okm = [0u8; 32];
    hkdf.expand(info, &mut okm).ok()?;
    Some(okm)
}

fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_CHARS
        && kid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

fn string_field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
    path: &str,
) -> Result<&'a str, KeySetError> {
    object
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| KeySetError::WrongShape {
            field: path.to_owned(),
            expected: "a string",
        })
}

fn reject_unknown_fields(
    object: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    known: &[&str],
) -> Result<(), KeySetError> {
    match object.keys().find(|name| !known.contains(&name.as_str())) {
        None => Ok(()),
        Some(name) => {
            // A field name is normally harmless to print, but a mangled document could put a
            // secret where a name belongs; only print names that look like identifiers.
            let printable = name.len() <= 32
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            let shown = if printable {
                name.as_str()
            } else {
                "<unusual name>"
            };
            Err(KeySetError::UnknownField {
                field: format!("{prefix}{shown}"),
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic, valid secret for tests: `fill` repeated 32 times, base64url.
    pub(crate) fn test_secret(fill: u8) -> String {
        URL_SAFE_NO_PAD.encode([fill; 32])
    }

    pub(crate) fn test_key_set(current: &str, kids: &[(&str, u8)]) -> KeySet {
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|(kid, fill)| serde_json::json!({"kid": kid, "secret": test_secret(*fill)}))
            .collect();
        let json = serde_json::json!({"current": current, "keys": keys}).to_string();
        KeySet::from_json(&json).unwrap()
    }

    #[test]
    fn parses_the_documented_shape_and_picks_current() {
        let json = format!(
            r#"{{"current": "k2", "keys": [{{"kid": "k2", "secret": "{}"}}, {{"kid": "k1", "secret": "{}"}}]}}"#,
            test_secret(2),
            test_secret(1)
        );
        let keys = KeySet::from_json(&json).unwrap();
        assert_eq!(keys.current().kid(), "k2");
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(keys.get("k1").is_some());
        assert!(keys.get("k3").is_none());
    }

    #[test]
    fn accepts_padded_base64url_secrets() {
        let padded = format!("{}=", URL_SAFE_NO_PAD.encode([7u8; 32]));
        let json = format!(r#"{{"current":"a","keys":[{{"kid":"a","secret":"{padded}"}}]}}"#);
        assert!(KeySet::from_json(&json).is_ok());
    }

    fn error_for(json: &str) -> KeySetError {
        KeySet::from_json(json).unwrap_err()
    }

    #[test]
    fn validation_errors_name_the_field_and_never_the_secret() {
        let good = test_secret(1);
        let short = URL_SAFE_NO_PAD.encode([9u8; 31]);
        let cases: Vec<(String, KeySetError)> = vec![
            (
                "{not json".to_owned(),
                KeySetError::InvalidJson { line: 1, column: 2 },
            ),
            (
                "[]".to_owned(),
                KeySetError::WrongShape {
                    field: "(document)".to_owned(),
                    expected: "an object",
                },
            ),
            (
                format!(r#"{{"keys":[{{"kid":"a","secret":"{good}"}}]}}"#),
                KeySetError::WrongShape {
                    field: "current".to_owned(),
                    expected: "a string",
                },
            ),
            (
                r#"{"current":"a","keys":{}}"#.to_owned(),
                KeySetError::WrongShape {
                    field: "keys".to_owned(),
                    expected: "an array",
                },
            ),
            (
                r#"{"current":"a","keys":[]}"#.to_owned(),
                KeySetError::NoKeys,
            ),
            (
                format!(
                    r#"{{"current":"a","keys":[{{"kid":"a","secret":"{good}"}}],"curent":"a"}}"#
                ),
                KeySetError::UnknownField {
                    field: "curent".to_owned(),
                },
            ),
            (
                format!(r#"{{"current":"a","keys":[{{"kid":"a","secret":"{good}","{good}":1}}]}}"#),
                KeySetError::UnknownField {
                    field: "keys[0].<unusual name>".to_owned(),
                },
            ),
            (
                format!(r#"{{"current":"a","keys":[{{"kid":"a b","secret":"{good}"}}]}}"#),
                KeySetError::InvalidKid { index: 0 },
            ),
            (
                format!(r#"{{"current":"a","keys":[{{"kid":"","secret":"{good}"}}]}}"#),
                KeySetError::InvalidKid { index: 0 },
            ),
            (
                format!(
                    r#"{{"current":"a","keys":[{{"kid":"{}","secret":"{good}"}}]}}"#,
                    "k".repeat(MAX_KID_CHARS + 1)
                ),
                KeySetError::InvalidKid { index: 0 },
            ),
            (
                format!(
                    r#"{{"current":"a","keys":[{{"kid":"a","secret":"{good}"}},{{"kid":"a","secret":"{good}"}}]}}"#
                ),
                KeySetError::DuplicateKid {
                    index: 1,
                    kid: "a".to_owned(),
                },
            ),
            (
                r#"{"current":"a","keys":[{"kid":"a","secret":"not base64!"}]}"#.to_owned(),
                KeySetError::SecretNotBase64Url {
                    index: 0,
                    kid: "a".to_owned(),
                },
            ),
            (
                format!(r#"{{"current":"a","keys":[{{"kid":"a","secret":"{short}"}}]}}"#),
                KeySetError::SecretLength {
                    index: 0,
                    kid: "a".to_owned(),
                    length: 31,
                },
            ),
            (
                r#"{"current":"a","keys":[{"kid":"a","secret":7}]}"#.to_owned(),
                KeySetError::WrongShape {
                    field: "keys[0].secret".to_owned(),
                    expected: "a string",
                },
            ),
            (
                format!(r#"{{"current":"{good}","keys":[{{"kid":"a","secret":"{good}"}}]}}"#),
                KeySetError::CurrentNotListed,
            ),
        ];
        for (json, expected) in cases {
            let error = error_for(&json);
            assert_eq!(error, expected, "for {json}");
            let message = error.to_string();
            assert!(!message.contains(&good), "secret leaked: {message}");
            assert!(!message.contains(&short), "secret leaked: {message}");
        }
    }

    #[test]
    fn too_many_keys_is_refused() {
        let kids: Vec<(String, u8)> = (0..=MAX_KEYS).map(|i| (format!("k{i}"), 1)).collect();
        let kid_refs: Vec<(&str, u8)> = kids.iter().map(|(k, f)| (k.as_str(), *f)).collect();
        let keys: Vec<serde_json::Value> = kid_refs
            .iter()
            .map(|(kid, fill)| serde_json::json!({"kid": kid, "secret": test_secret(*fill)}))
            .collect();
        let json = serde_json::json!({"current": "k0", "keys": keys}).to_string();
        assert_eq!(
            error_for(&json),
            KeySetError::TooManyKeys {
                count: MAX_KEYS + 1
            }
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let keys = test_key_set("k1", &[("k1", 0xAB)]);
        let debug = format!("{keys:?} {:?}", keys.csrf_key());
        assert!(debug.contains("k1"));
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains(&test_secret(0xAB)));
        // Neither the raw nor derived key bytes may appear as a byte list.
        assert!(!debug.contains("171"), "{debug}");
    }

    #[test]
    fn subkeys_differ_per_purpose_and_per_key() {
        let keys = test_key_set("a", &[("a", 1), ("b", 2)]);
        let a = keys.get("a").unwrap();
        let b = keys.get("b").unwrap();
        assert_ne!(a.csrf.mac("x"), b.csrf.mac("x"));
        let hkdf = Hkdf::<Sha256>::new(None, &[1u8; 32]);
        let jwt = expand_32(&hkdf, HKDF_INFO_JWT).unwrap();
        let aead = expand_32(&hkdf, HKDF_INFO_AEAD).unwrap();
        let csrf = expand_32(&hkdf, HKDF_INFO_CSRF).unwrap();
        let hook = expand_32(&hkdf, HKDF_INFO_POLICY_HOOK).unwrap();
        assert_ne!(hook, csrf);
        assert_ne!(hook, jwt);
        assert_ne!(hook, aead);
        assert_eq!(a.policy_hook_key().to_hex(), lower_hex(&hook));
        assert_ne!(a.policy_hook_key().to_hex(), b.policy_hook_key().to_hex());
        assert_eq!(a.policy_hook_key().kid(), "a");
        assert!(!format!("{:?}", a.policy_hook_key()).contains(&lower_hex(&hook)));
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_ne!(jwt, csrf);
        assert_ne!(aead, csrf);
        assert_ne!(jwt, aead);
        let mut expected = <HmacSha256 as Mac>::new_from_slice(&csrf).unwrap();
        expected.update(CSRF_DOMAIN);
        expected.update(b"x");
        assert_eq!(
            a.csrf.mac("x").as_slice(),
            expected.finalize().into_bytes().as_slice()
        );
    }

    #[test]
    fn csrf_token_round_trip_binding_and_rotation() {
        let old = test_key_set("k1", &[("k1", 1)]);
        let token = old.csrf_key().token_for("consent-challenge-1");
        assert!(token.starts_with("k1."));
        assert!(old.verify_csrf_token("consent-challenge-1", &token));
        assert!(!old.verify_csrf_token("consent-challenge-2", &token));
        assert!(!old.verify_csrf_token("consent-challenge-1", ""));
        assert!(!old.verify_csrf_token("consent-challenge-1", "k1."));
        assert!(!old.verify_csrf_token("consent-challenge-1", "k1"));

        // A flipped MAC character is refused.
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(!old.verify_csrf_token("consent-challenge-1", &tampered));

        // After rotation the old token verifies while k1 is listed, and not once it is removed.
        let rotated = test_key_set("k2", &[("k2", 2), ("k1", 1)]);
        assert!(rotated.verify_csrf_token("consent-challenge-1", &token));
        assert!(rotated
            .csrf_key()
            .token_for("consent-challenge-1")
            .starts_with("k2."));
        let removed = test_key_set("k2", &[("k2", 2)]);
        assert!(!removed.verify_csrf_token("consent-challenge-1", &token));

        // Same kid with a different secret: refused.
        let replaced = test_key_set("k1", &[("k1", 3)]);
        assert!(!replaced.verify_csrf_token("consent-challenge-1", &token));

        // A key only verifies tokens carrying its own kid.
        assert!(!rotated
            .get("k2")
            .unwrap()
            .csrf_key()
            .verify("consent-challenge-1", &token));
    }

    #[test]
    fn cloudformation_first_deploy_shape_is_accepted() {
        let generated = "A".repeat(32) + &"b".repeat(32);
        let first = KeySet::from_json(&format!(
            r#"{{"current":"k1","keys":[{{"kid":"k1"}}],"secret":"{generated}"}}"#
        ))
        .expect("first-deploy shape");
        assert_eq!(first.current().kid(), "k1");
        // The top-level secret only ever stands for the current key without a secret of its own.
        let stray = KeySet::from_json(&format!(
            r#"{{"current":"k1","keys":[{{"kid":"k1","secret":"{generated}"}}],"secret":"{generated}"}}"#
        ));
        assert!(stray.is_err(), "a top-level secret nobody uses is refused");
        let not_current = KeySet::from_json(&format!(
            r#"{{"current":"k2","keys":[{{"kid":"k2","secret":"{generated}"}},{{"kid":"k1"}}],"secret":"{generated}"}}"#
        ));
        assert!(not_current.is_err());
    }
}
