//! The sealed payload: what login entry hands to the return function, and the one format it
//! travels in. `nonce(24) || XChaCha20-Poly1305(plaintext) || tag(16)`, with associated data
//! binding the key id and the token id; the plaintext is the compact binary encoding of
//! [`ReturnToPayload`] (see `encode_plaintext`). Tokens issued by earlier versions may carry the
//! URL part deflated, which `unseal` still reads. A change to the payload format changes this
//! file only.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XNonce};

use super::TokenError;
use crate::keyset::Key;
use crate::policy::Aal;

/// Upper bound on the inflated tail; far above any real `request_url`, it only stops a
/// decompression bomb from a holder of the key (e.g. a bug elsewhere) from exhausting memory.
pub(super) const MAX_TAIL_BYTES: usize = 64 * 1024;
/// Bytes of the XChaCha20-Poly1305 nonce in front of the ciphertext.
pub(super) const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Domain separation for the AEAD associated data, so a ciphertext made for another purpose or
/// format version under the same subkey can never be accepted here.
const AEAD_CONTEXT: &[u8] = b"hydra-kratos-bridge/return-to/v1\0";

/// First plaintext byte, so a future layout change is recognised rather than misparsed.
pub(super) const PLAINTEXT_FORMAT_V1: u8 = 1;
pub(super) const FLAG_REQUEST_URL: u8 = 0b0001;
pub(super) const FLAG_CLIENT_ID: u8 = 0b0010;
/// The challenge was canonical base64url and is stored as the bytes it encodes.
pub(super) const FLAG_CHALLENGE_BASE64URL: u8 = 0b0100;
/// The tail (`request_url`, `client_id`) is raw deflate. No longer written (see
/// `encode_plaintext`), still read so tokens issued before keep opening.
pub(super) const FLAG_TAIL_DEFLATED: u8 = 0b1000;
/// The tail ends with the sealed per-client policy ([`SealedPolicy`]). Tokens without it were
/// sealed for a client without a policy (or before policies existed) and mean "no policy".
pub(super) const FLAG_POLICY: u8 = 0b1_0000;
const KNOWN_FLAGS: u8 =
    FLAG_REQUEST_URL | FLAG_CLIENT_ID | FLAG_CHALLENGE_BASE64URL | FLAG_TAIL_DEFLATED | FLAG_POLICY;

/// Bits of the sealed policy's first byte.
const POLICY_AAL2: u8 = 0b0001;
const POLICY_HOOK: u8 = 0b0010;
const POLICY_MAX_AGE: u8 = 0b0100;
const POLICY_METHODS: u8 = 0b1000;
const POLICY_KNOWN_BITS: u8 = POLICY_AAL2 | POLICY_HOOK | POLICY_MAX_AGE | POLICY_METHODS;

/// What the return function must enforce for this login, decided at login entry from the
/// client's policy and the authorization request. It travels sealed so the return function
/// needs no second Hydra call, and so nobody can lower it on the way: a changed byte fails the
/// AEAD tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPolicy {
    /// The level the session must reach: the client's `required_aal` or the request's
    /// `acr_values`, whichever is higher.
    pub required_aal: Aal,
    /// First factors the session must have been obtained with; `None` allows any.
    pub allowed_methods: Option<Vec<String>>,
    /// The request's `max_age`, in seconds.
    pub max_age: Option<u64>,
    /// Whether the policy hook must allow the login before it is accepted.
    pub hook: bool,
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
    /// The client's policy for this login; `None` for clients without one and for tokens
    /// sealed before policies existed.
    pub policy: Option<SealedPolicy>,
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
            .field("policy", &self.policy)
            .finish()
    }
}

/// Encrypts `payload` for the token `jti` under `key` with `nonce`: the bytes of the `sealed`
/// claim before base64url.
pub(super) fn seal(
    key: &Key,
    jti: &str,
    nonce: &[u8],
    payload: &ReturnToPayload,
) -> Result<Vec<u8>, TokenError> {
    // nonce || plaintext, encrypted in place, then the tag: one buffer, no copies.
    let mut sealed = Vec::with_capacity(NONCE_BYTES + plaintext_capacity(payload) + TAG_BYTES);
    sealed.extend_from_slice(nonce);
    encode_plaintext(payload, &mut sealed)?;
    let plaintext = sealed
        .get_mut(NONCE_BYTES..)
        .ok_or(TokenError::SealFailed)?;
    let tag = key
        .aead()
        .encrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &associated_data(key.kid(), jti),
            plaintext,
        )
        .map_err(|_| TokenError::SealFailed)?;
    sealed.extend_from_slice(&tag);
    Ok(sealed)
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

pub(super) fn unseal(key: &Key, jti: &str, sealed: &str) -> Result<ReturnToPayload, TokenError> {
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
pub(super) fn encode_plaintext(
    payload: &ReturnToPayload,
    out: &mut Vec<u8>,
) -> Result<(), TokenError> {
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
    if let Some(policy) = &payload.policy {
        flags |= FLAG_POLICY;
        encode_policy(policy, out)?;
    }
    set_bytes(out, flags_at, &[flags])
}

/// `bits(1) || [max_age u64 BE] || [methods joined by ','as a string]`.
fn encode_policy(policy: &SealedPolicy, out: &mut Vec<u8>) -> Result<(), TokenError> {
    let mut bits = 0;
    if policy.required_aal == Aal::Aal2 {
        bits |= POLICY_AAL2;
    }
    if policy.hook {
        bits |= POLICY_HOOK;
    }
    if policy.max_age.is_some() {
        bits |= POLICY_MAX_AGE;
    }
    if policy.allowed_methods.is_some() {
        bits |= POLICY_METHODS;
    }
    out.push(bits);
    if let Some(max_age) = policy.max_age {
        out.extend_from_slice(&max_age.to_be_bytes());
    }
    if let Some(methods) = &policy.allowed_methods {
        push_string(out, methods.join(",").as_bytes())?;
    }
    Ok(())
}

fn decode_policy(tail: &mut PayloadReader<'_>) -> Option<SealedPolicy> {
    let bits = tail.take(1)?[0];
    if bits & !POLICY_KNOWN_BITS != 0 {
        return None;
    }
    let max_age = if bits & POLICY_MAX_AGE != 0 {
        Some(u64::from_be_bytes(tail.take(8)?.try_into().ok()?))
    } else {
        None
    };
    let allowed_methods = if bits & POLICY_METHODS != 0 {
        Some(tail.string()?.split(',').map(str::to_owned).collect())
    } else {
        None
    };
    Some(SealedPolicy {
        required_aal: if bits & POLICY_AAL2 != 0 {
            Aal::Aal2
        } else {
            Aal::Aal1
        },
        allowed_methods,
        max_age,
        hook: bits & POLICY_HOOK != 0,
    })
}

/// An upper bound on the plaintext [`encode_plaintext`] writes, so its buffer is allocated once.
pub(super) fn plaintext_capacity(payload: &ReturnToPayload) -> usize {
    let string = |value: Option<&String>| value.map_or(0, |value| 2 + value.len());
    2 + payload.browser_binding.len()
        + 2
        + payload.login_challenge.len()
        + string(payload.request_url.as_ref())
        + string(payload.client_id.as_ref())
        + payload.policy.as_ref().map_or(0, |policy| {
            1 + 8
                + policy
                    .allowed_methods
                    .as_ref()
                    .map_or(0, |m| 2 + m.join(",").len())
        })
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
pub(super) fn decode_plaintext(plaintext: &[u8]) -> Option<ReturnToPayload> {
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
    let policy = if flags & FLAG_POLICY != 0 {
        Some(decode_policy(&mut tail)?)
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
        policy,
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
    use crate::token::tests::{payload, random_base64url};

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
                policy: None,
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

    #[test]
    fn the_sealed_policy_round_trips_and_is_optional() {
        let without = payload();
        assert_eq!(without.policy, None);
        assert_eq!(plaintext_of(&without)[1] & FLAG_POLICY, 0);
        for policy in [
            SealedPolicy {
                required_aal: Aal::Aal2,
                allowed_methods: Some(vec!["code".to_owned(), "oidc".to_owned()]),
                max_age: Some(300),
                hook: true,
            },
            SealedPolicy {
                required_aal: Aal::Aal1,
                allowed_methods: None,
                max_age: None,
                hook: false,
            },
        ] {
            let with = ReturnToPayload {
                policy: Some(policy),
                ..without.clone()
            };
            let plaintext = plaintext_of(&with);
            assert_eq!(decode_plaintext(&plaintext), Some(with.clone()));
            // Unknown policy bits are refused rather than ignored.
            let mut unknown_bit = plaintext.clone();
            let bits_at = plaintext.len()
                - 1
                - with.policy.as_ref().map_or(0, |p| {
                    p.max_age.map_or(0, |_| 8)
                        + p.allowed_methods
                            .as_ref()
                            .map_or(0, |m| 2 + m.join(",").len())
                });
            unknown_bit[bits_at] |= 0b1000_0000;
            assert_eq!(decode_plaintext(&unknown_bit), None);
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
        unknown_flag[1] |= 0b10_0000;
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
