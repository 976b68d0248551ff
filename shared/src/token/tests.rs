//! The token codec's unit tests: round trips, every refusal, compatibility and the JWS. (The
//! payload format's own tests are in `payload.rs`.)

use super::jws::IssuedClaims;
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

pub(super) fn random_base64url(chars: usize) -> String {
    let mut bytes = vec![0u8; chars];
    getrandom::fill(&mut bytes).unwrap();
    let mut text = URL_SAFE_NO_PAD.encode(&bytes);
    text.truncate(chars);
    text
}

pub(super) fn payload() -> ReturnToPayload {
    ReturnToPayload {
        login_challenge: random_base64url(1500),
        request_url: Some(format!(
            "https://hydra.example.com/oauth2/auth?client_id=demo&response_type=code&scope=openid+offline&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&state={}&nonce={}",
            random_base64url(32),
            random_base64url(32)
        )),
        client_id: Some("demo".to_owned()),
        browser_binding: browser_binding_hash("cookie-value"),
        policy: None,
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

/// The test codec, a fresh [`payload`] and the token sealed for it at `T0`.
fn sealed() -> (TokenCodec, ReturnToPayload, SealedToken) {
    let codec = codec();
    let payload = payload();
    let sealed = codec.seal(&payload, at(T0)).unwrap();
    (codec, payload, sealed)
}

/// A token for a fresh [`payload`] sealed at `T0` by a codec with `keys`.
fn sealed_under(keys: KeySet) -> String {
    codec_with(keys).seal(&payload(), at(T0)).unwrap().token
}

/// Seals `payload` at `T0` and checks that the token opens to the same payload.
fn assert_round_trip(codec: &TokenCodec, payload: &ReturnToPayload) -> SealedToken {
    let sealed = codec.seal(payload, at(T0)).unwrap();
    assert_eq!(&codec.open(&sealed.token, at(T0)).unwrap().payload, payload);
    sealed
}

#[test]
fn round_trip_preserves_payload_and_reports_times() {
    let (codec, payload, sealed) = sealed();
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
            policy: None,
        },
        ReturnToPayload {
            login_challenge: String::new(),
            request_url: Some("https://h/ü?x=ä".to_owned()),
            client_id: None,
            browser_binding: [0xFF; 32],
            policy: None,
        },
        ReturnToPayload {
            login_challenge: "challenge".to_owned(),
            request_url: None,
            client_id: Some("client".to_owned()),
            browser_binding: [7; 32],
            policy: None,
        },
    ] {
        assert_round_trip(&codec, &payload);
    }
}

#[test]
fn each_token_gets_a_fresh_jti_and_ciphertext() {
    let (codec, payload, first) = sealed();
    let second = codec.seal(&payload, at(T0)).unwrap();
    assert_ne!(first.jti, second.jti);
    assert_ne!(first.token, second.token);
}

#[test]
fn token_does_not_reveal_the_payload() {
    let (_, payload, sealed) = sealed();
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
        policy: None,
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
        policy: None,
    };
    assert_eq!(codec.seal(&huge, at(T0)), Err(TokenError::PayloadTooLarge));
}

#[test]
fn expiry_has_zero_leeway() {
    let (codec, _, sealed) = sealed();
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
    let (codec, original, sealed) = sealed();
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
    let (codec, _, sealed) = sealed();
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
    let assert_malformed = |claims: &serde_json::Value, what: &str| {
        let token = sign_raw(&codec, "k1", claims);
        assert_eq!(
            codec.open(&token, at(T0)),
            Err(TokenError::Malformed),
            "{what}"
        );
    };
    for claim in ["jti", "exp", "iat", "iss", "aud", "sealed"] {
        let mut claims = genuine.clone();
        claims.as_object_mut().unwrap().remove(claim);
        assert_malformed(&claims, &format!("missing {claim}"));
    }
    let alterations: Vec<(&str, ClaimsAlteration)> = vec![
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
        assert_malformed(&claims, name);
    }
}

#[test]
fn wrong_audience_or_issuer_is_refused() {
    let (_, _, sealed) = sealed();
    let keys = test_key_set("k1", &[("k1", 1)]);
    let other_audience = TokenCodec::new(keys, ISSUER, "https://other/login/return", TTL).unwrap();
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
    let token = sealed_under(test_key_set("k9", &[("k9", 1)]));
    assert_eq!(codec.open(&token, at(T0)), Err(TokenError::UnknownKey));

    let claims = genuine_claims(&codec);
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let token = unsigned_token(&header, &claims, "AAAA");
    assert_eq!(codec.open(&token, at(T0)), Err(TokenError::Malformed));
}

#[test]
fn same_kid_with_another_secret_fails_the_signature() {
    let token = sealed_under(test_key_set("k1", &[("k1", 2)]));
    assert_eq!(codec().open(&token, at(T0)), Err(TokenError::BadSignature));
}

/// Opens the genuine claims of `codec` under a header `{"alg": alg, "kid": "k1"}` for each of
/// `algs`, with each of `signatures`, and expects every one to fail with `expected`.
fn assert_algs_refused(
    codec: &TokenCodec,
    claims: &serde_json::Value,
    algs: &[&str],
    signatures: &[&str],
    expected: TokenError,
) {
    for alg in algs {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
        for signature in signatures {
            let token = unsigned_token(&header, claims, signature);
            assert_eq!(
                codec.open(&token, at(T0)).err().as_ref(),
                Some(&expected),
                "alg {alg}"
            );
        }
    }
}

#[test]
fn alg_none_is_refused() {
    let codec = codec();
    let claims = genuine_claims(&codec);
    // `none` is no signature algorithm at all: the header is malformed.
    assert_algs_refused(
        &codec,
        &claims,
        &["none", "None", "NONE"],
        &["", "AAAA"],
        TokenError::Malformed,
    );
}

#[test]
fn asymmetric_algorithms_are_refused() {
    let codec = codec();
    let claims = genuine_claims(&codec);
    // A valid-looking HS256 MAC (using the real key) under a foreign alg must still fail: the
    // classic key-confusion attack signs with the HMAC secret and claims RS256.
    let genuine = sign_raw(&codec, "k1", &claims);
    let signature = genuine.rsplit('.').next().unwrap();
    assert_algs_refused(
        &codec,
        &claims,
        &["RS256", "ES256", "EdDSA", "PS256", "HS384", "HS512"],
        &[signature],
        TokenError::WrongAlgorithm,
    );
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
        policy: None,
    };
    assert_eq!(payload.request_url.as_ref().unwrap().len(), 1024);
    let sealed = assert_round_trip(&codec, &payload);
    println!(
        "token length for a 2048-char random challenge + 1024-char request_url: {} chars",
        sealed.token.len()
    );
    assert!(sealed.token.len() <= MAX_TOKEN_CHARS);
}

#[test]
fn errors_and_debug_never_show_token_or_payload() {
    let (codec, payload, sealed) = sealed();
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
            policy: None,
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
