//! Attacks on the return_to token: tampering, forged algorithms and claims, expiry, replay.

use crate::common::*;

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn unsigned_raw(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Signs `message` the way the codec does, with the real HMAC subkey of `kid`.
fn hmac_with_our_key(kid: &str, message: &str, algorithm: Algorithm) -> String {
    let keys = keys();
    let key = keys.get(kid).expect("kid");
    let secret = EncodingKey::from_secret(key.jws_secret());
    jsonwebtoken::crypto::sign(message.as_bytes(), &secret, algorithm).expect("sign")
}

pub(crate) fn signed_with_our_key(header: &Value, claims: &Value) -> String {
    let message = unsigned(header, claims);
    let kid = header["kid"].as_str().unwrap_or("k2");
    let signature = hmac_with_our_key(kid, &message, Algorithm::HS256);
    format!("{message}.{signature}")
}

// Throwaway keys generated with openssl for these tests only (PKCS#1 RSA, PKCS#8 P-256 and
// Ed25519, DER, base64): the "attacker's own real key" of the algorithm-confusion attacks.
const RSA_DER: &str = "MIIEogIBAAKCAQEAsCfS+XzBCDoU1i+2C0X+9PW395J4qhwspkr8m2/brMKEZ5hNQEKEfoigaWURLFBueSB7JIvl1q19wSgZL8/LgzoFA/H4zldW2FUIHZEENcBJCDVEFH0zMXuMSJCHaK6xeyAl4ru0L5IDdfCcV8UeR9lo/kS5etxyhbG/hwa+7um6N5DlCK3UJ4JIUMl3Pl6xaBhh0Q06fAbCza8qgq9IKAFsGUTjl6QKIzhz3+y6adu2ywUHSPh7mvYJcGHwZ7qUaAR3Fuw+Su1grbVKMTZ67hDMJOk0IcimG5WS7mQGD6NrQyjeGNi9onxTBUaDIlRXCbrIkfe2LALXpemkhCk2lwIDAQABAoIBAAJFaqe/oGO5gVB0TcNyQsUca4vmRBFWSuppqRdc/JSZRD8pFwOEav74uEeOQc7LpHUjMKnHJgxHot7EX5VHCm4WeqxMDWa4sWfNhGlX1+Vis7kEVQRNIPA2T8wL3EAcv+TnBGRAfakgPaBd8lHvrE8pSJQmX2zwr9yRkB0LQ16kSPWzFUMkrro0kqQIJjYK219NEmi1rE/n2vwUnbOSSvB4y5vnZxPuEpi/4xHoLpwgvZQj2CoIkCX2X1Q+msv/jZ+Hx6wYX5b2c+yK5od9VV9tpOvHBTcozQ883Rqj5GsP3Tglnk1P8nqQtFHDk8FWL32flKXKzqKb/q/dwQIQPkECgYEA2VI7gguXKfoibL/5irIBB19jZT/mTxTSFI+m7i5DIEpeQtfKYoUGbjUJUP+e1eAmPUjuTkm6nkbP8a3hjCwcxm/kQQUUNyeymt2ttRGUjAcphmd/ECdNRu6AaOls0dIo3cvCJBt6EIgZ4cYTH5NXqxA1jmJXsKymEF6sVh4RigcCgYEAz4H33qUQWk4gvYL+xwLxIXgiJPCNVCJ1fmRlGdLujFU+6LlfkVI6Ulb0o4iIze8wJMpwLO0oPg2cn6QRO7LnWcVii6hlVKcWh2m8Ai/9XxW/JuCZfB9Zh5sBlKLh5lhp7Wd11DCTO28x4N4w+eRxacKjcT9jQLKcAoA4wT8uCvECgYBm6LPZPxfT/ujySm4mqWgnT5pHxdyPsjJRHj1UKIAM+GpuiLUDti53XZIN0x4p9TzmZHTEidFfRfUOYuKdd/4gUbfqujb6b0f6YeLyDWMkc/fL95KJ2bKUVjhkdbTcHwLPFL/YTVKeJXTsHtnLaABptwFFbXhM51S0B8Df/tkbXQKBgGveUA+5Fqsa+gIJ2o9xhA+192nkclNOJm2xmqy17bOdjLpFwtw0NoUfFsT78MG8mPZHFdEE52p6gPSrwRmbgpAz/2pB+4rp4Ng7qrQoZjnLgDahgqf3U/8eINA3a97mDwqOQb4wEhlPUEpotmTwz9P+jiAMp3e2YUsbhGVQhorBAoGAWrq/uQHh4Xx+voZr9x5FsJAHVModLaXwpndOGZgyoLeQ+9vwvu7A+1/1ltNu7aRC3ZBnrZp6tn3vfj1Yz6nnbVFiNxnkgTI5cwMEu8ksgu93OEOSCgntHvUY1rLu7si2oEWytE6Po68N0S5Dw2ErH+00wUwdRySIgpRjwDkWUkw=";
const RSA_PUBLIC_DER: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsCfS+XzBCDoU1i+2C0X+9PW395J4qhwspkr8m2/brMKEZ5hNQEKEfoigaWURLFBueSB7JIvl1q19wSgZL8/LgzoFA/H4zldW2FUIHZEENcBJCDVEFH0zMXuMSJCHaK6xeyAl4ru0L5IDdfCcV8UeR9lo/kS5etxyhbG/hwa+7um6N5DlCK3UJ4JIUMl3Pl6xaBhh0Q06fAbCza8qgq9IKAFsGUTjl6QKIzhz3+y6adu2ywUHSPh7mvYJcGHwZ7qUaAR3Fuw+Su1grbVKMTZ67hDMJOk0IcimG5WS7mQGD6NrQyjeGNi9onxTBUaDIlRXCbrIkfe2LALXpemkhCk2lwIDAQAB";
const EC_DER: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoHc1OlnUQn9VwK7v+7zSAjgOCe5WGBl7d4lSpx7hvzChRANCAARtIGpSZSFgzcKfst7WaGicLNgY7crv7pT0I8+558V0diG44hlHxo54jbKn3CAPM3Fxe8D9kT5p/hYzBHgpRXWX";
const ED_DER: &str = "MC4CAQAwBQYDK2VwBCIEIF3GeNPdjQz6tofljdpH83q3OH2s1sVGSSueec+/hWgj";

/// The payload of the attack's genuine token, sealed again now by a codec for `keys`, `issuer`
/// and `audience` (another deployment, or a key set without our current key).
fn resealed(attack: &Attack, keys: KeySet, issuer: &str, audience: &str) -> String {
    let kit = &attack.kit;
    let codec = TokenCodec::new(keys, issuer, audience, kit.config.token_ttl).expect("codec");
    let opened = kit.codec().open(&attack.token, kit.now()).expect("open");
    codec.seal(&opened.payload, kit.now()).expect("seal").token
}

fn der(base64: &str) -> Vec<u8> {
    STANDARD.decode(base64).expect("test key")
}

// ------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn token_byte_flips_are_refused() {
    let attack = Attack::new(
        "token byte flips",
        "flip-challenge",
        "https://oauth.example.com/oauth2/auth?client_id=app",
    )
    .await;
    let token = &attack.token;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for index in 0..token.len() {
        let original = token.as_bytes()[index];
        // Two alterations per position: one bit flipped (often leaving the alphabet), and the
        // next character of the base64url alphabet (always valid base64url, so it must be the
        // signature that catches it).
        let next = alphabet
            .iter()
            .position(|&c| c == original)
            .map(|i| alphabet[(i + 1) % alphabet.len()])
            .unwrap_or(b'A');
        for replacement in [original ^ 0x01, next] {
            if replacement == original {
                continue;
            }
            let mut bytes = token.clone().into_bytes();
            bytes[index] = replacement;
            let altered = String::from_utf8_lossy(&bytes).into_owned();
            attack
                .refused(
                    &format!(
                        "byte {index} {:?} -> {:?}",
                        original as char, replacement as char
                    ),
                    &altered,
                )
                .await;
        }
    }
    attack.finish().await;
}

#[tokio::test]
async fn truncated_and_extended_tokens_are_refused() {
    let cut = || {
        Attack::new(
            "token truncated/extended",
            "cut-challenge",
            "https://oauth.example.com/oauth2/auth",
        )
    };
    // The "standard base64" variant below differs from the token only where the token has a `-`
    // or `_`, which some random tokens lack; re-issuing until this one has one keeps the count
    // the same on every run (every variant is an attack).
    let mut attack = cut().await;
    while !attack.token.contains(['-', '_']) {
        attack = cut().await;
    }
    let token = &attack.token;
    for length in 0..token.len() {
        attack
            .refused(&format!("first {length} characters"), &token[..length])
            .await;
    }
    for skip in 1..40 {
        attack
            .refused(
                &format!("without the first {skip} characters"),
                &token[skip..],
            )
            .await;
    }
    let signature = token.rsplit('.').next().unwrap_or_default();
    for suffix in [
        "A", "AA", "AAA", "AAAA", "=", "==", ".", "..", ".A", ".e30", " ", "\t", "\0", "%00", "~",
        "é", signature,
    ] {
        attack
            .refused(
                &format!("with {suffix:?} appended"),
                &format!("{token}{suffix}"),
            )
            .await;
    }
    let parts: Vec<&str> = token.split('.').collect();
    for (what, altered) in [
        ("header doubled", format!("{}.{}", parts[0], token)),
        (
            "claims doubled",
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[1], parts[2]),
        ),
        ("signature doubled", format!("{token}.{}", parts[2])),
        (
            "padding added",
            format!("{}=.{}=.{}=", parts[0], parts[1], parts[2]),
        ),
        ("standard base64", token.replace('-', "+").replace('_', "/")),
        ("signature dropped", format!("{}.{}.", parts[0], parts[1])),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        (
            "JWS JSON serialisation",
            json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string(),
        ),
        (
            "whitespace inside",
            format!("{}. {}.{}", parts[0], parts[1], parts[2]),
        ),
        ("lower-cased", token.to_ascii_lowercase()),
        ("upper-cased", token.to_ascii_uppercase()),
    ] {
        assert_ne!(&altered, token, "{what} is the genuine token");
        attack.refused(what, &altered).await;
    }
    attack.finish().await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let attack = Attack::new("token alg none", "none-challenge", "").await;
    for alg in ["none", "None", "NONE", "nOnE", "", "null"] {
        for kid in [Some("k2"), None] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            for tail in ["", attack.signature.as_str(), "AAAA"] {
                let forged = format!("{}.{tail}", unsigned(&header, &attack.claims));
                attack
                    .refused(
                        &format!("alg {alg:?} kid {kid:?} sig {} chars", tail.len()),
                        &forged,
                    )
                    .await;
            }
        }
    }
    for raw_header in [
        r#"{"alg":null,"kid":"k2"}"#,
        r#"{"kid":"k2"}"#,
        r#"{"alg":["HS256"],"kid":"k2"}"#,
        r#"{"alg":"HS256","alg":"none","kid":"k2"}"#,
        r#"{"alg":"none","alg":"HS256","kid":"k2"}"#,
    ] {
        let forged = format!("{}.", unsigned_raw(raw_header, &attack.claims));
        attack.refused(raw_header, &forged).await;
    }
    // A header that says HS256 but carries no signature at all.
    let forged = format!("{}.", unsigned(&attack.header, &attack.claims));
    attack.refused("HS256 without signature", &forged).await;
    attack.finish().await;
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let attack = Attack::new("token algorithm confusion", "confusion-challenge", "").await;
    let asymmetric: [(Algorithm, EncodingKey); 10] = [
        (Algorithm::RS256, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::RS384, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::RS512, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::PS256, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::PS512, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::ES256, EncodingKey::from_ec_der(&der(EC_DER))),
        (Algorithm::EdDSA, EncodingKey::from_ed_der(&der(ED_DER))),
        // HMAC with the attacker's own secret, and with our RSA public key as the secret (the
        // classic confusion where a verifier feeds its public key to HMAC).
        (
            Algorithm::HS256,
            EncodingKey::from_secret(b"attacker-secret-attacker-secret!"),
        ),
        (
            Algorithm::HS256,
            EncodingKey::from_secret(&der(RSA_PUBLIC_DER)),
        ),
        (
            Algorithm::HS512,
            EncodingKey::from_secret(&der(RSA_PUBLIC_DER)),
        ),
    ];
    for (algorithm, key) in &asymmetric {
        for kid in ["k2", "k1"] {
            let mut header = Header::new(*algorithm);
            header.kid = Some(kid.to_owned());
            let forged =
                jsonwebtoken::encode(&header, &attack.claims, key).expect("sign with a real key");
            attack
                .refused(
                    &format!("{algorithm:?} signed with an attacker key, kid {kid}"),
                    &forged,
                )
                .await;
        }
    }
    // Foreign algorithm names over a MAC made with our own HMAC subkey (what a confused
    // verifier would accept).
    for alg in [
        "RS256", "RS512", "ES256", "ES384", "EdDSA", "PS256", "HS384", "HS512", "hs256", "HS256 ",
        "A256GCM",
    ] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k2"});
        let message = unsigned(&header, &attack.claims);
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let signature = hmac_with_our_key("k2", &message, algorithm);
            attack
                .refused(
                    &format!("alg {alg:?} with our {algorithm:?} MAC"),
                    &format!("{message}.{signature}"),
                )
                .await;
        }
    }
    // Keys the attacker offers in the header itself.
    let mut with_jwk = Header::new(Algorithm::RS256);
    with_jwk.kid = Some("k2".to_owned());
    with_jwk.jwk = Some(
        jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_rsa_der(&der(RSA_DER)),
            Algorithm::RS256,
        )
        .expect("jwk"),
    );
    with_jwk.jku = Some("https://evil.example/jwks.json".to_owned());
    with_jwk.x5u = Some("https://evil.example/cert.pem".to_owned());
    let forged = jsonwebtoken::encode(
        &with_jwk,
        &attack.claims,
        &EncodingKey::from_rsa_der(&der(RSA_DER)),
    )
    .expect("sign");
    attack
        .refused("RS256 with embedded jwk/jku/x5u", &forged)
        .await;
    let mut hs_with_jwk = with_jwk.clone();
    hs_with_jwk.alg = Algorithm::HS256;
    let forged = jsonwebtoken::encode(
        &hs_with_jwk,
        &attack.claims,
        &EncodingKey::from_secret(b"attacker-secret-attacker-secret!"),
    )
    .expect("sign");
    attack
        .refused("HS256 with embedded jwk and attacker secret", &forged)
        .await;
    attack.finish().await;
}

#[tokio::test]
async fn unknown_or_mistyped_kid_is_refused() {
    let attack = Attack::new("token unknown kid", "kid-challenge", "").await;
    let long_kid = "k".repeat(5000);
    for kid in [
        json!("k9"),
        json!("K2"),
        json!("k2 "),
        json!(" k2"),
        json!("k2\u{0}"),
        json!("k"),
        json!(""),
        json!("../k2"),
        json!("k2/../k1"),
        json!("k1' OR '1'='1"),
        json!("*"),
        json!(long_kid),
        json!(2),
        json!(null),
        json!(["k2"]),
        json!({"kid": "k2"}),
        json!(true),
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let message = unsigned(&header, &attack.claims);
        // The genuine signature, and a MAC under the current key over the altered header.
        let ours = hmac_with_our_key("k2", &message, Algorithm::HS256);
        for tail in [attack.signature.as_str(), ours.as_str()] {
            attack
                .refused(&format!("kid {kid}"), &format!("{message}.{tail}"))
                .await;
        }
    }
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let message = unsigned(&header, &attack.claims);
    let ours = hmac_with_our_key("k2", &message, Algorithm::HS256);
    attack
        .refused("no kid, current key's MAC", &format!("{message}.{ours}"))
        .await;
    let forged = format!(
        "{}.{ours}",
        unsigned_raw(r#"{"alg":"HS256","kid":"k9","kid":"k2"}"#, &attack.claims)
    );
    attack.refused("duplicate kid", &forged).await;
    attack.finish().await;
}

#[tokio::test]
async fn mistyped_claims_are_refused_even_when_signed() {
    let attack = Attack::new("token claim types", "attack.claims-challenge", "").await;
    let exp = attack.claims["exp"].as_u64().expect("exp");
    let iat = attack.claims["iat"].as_u64().expect("iat");
    let wrong_values = |n: u64| {
        vec![
            json!(n.to_string()),
            json!(n as f64 + 0.5),
            json!(format!("{n}.0")),
            json!(true),
            json!(null),
            json!([n]),
            json!({"value": n}),
            json!(-1),
            json!(-(n as i64)),
            serde_json::from_str::<Value>("18446744073709551616").expect("big"),
            serde_json::from_str::<Value>("1e400").unwrap_or(json!("1e400")),
            json!(""),
        ]
    };
    for (claim, value) in [("exp", exp), ("iat", iat)] {
        for wrong in wrong_values(value) {
            let mut altered = attack.claims.clone();
            altered[claim] = wrong.clone();
            let forged = signed_with_our_key(&attack.header, &altered);
            attack.refused(&format!("{claim} = {wrong}"), &forged).await;
        }
    }
    for claim in ["iss", "aud", "jti", "sealed"] {
        for wrong in [
            json!(5),
            json!(null),
            json!([attack.claims[claim].clone()]),
            json!({"v": attack.claims[claim].clone()}),
            json!(true),
        ] {
            let mut altered = attack.claims.clone();
            altered[claim] = wrong.clone();
            let forged = signed_with_our_key(&attack.header, &altered);
            attack.refused(&format!("{claim} = {wrong}"), &forged).await;
        }
        let mut altered = attack.claims.clone();
        altered.as_object_mut().expect("object").remove(claim);
        let forged = signed_with_our_key(&attack.header, &altered);
        attack.refused(&format!("{claim} missing"), &forged).await;
    }
    for claim in ["exp", "iat"] {
        let mut altered = attack.claims.clone();
        altered.as_object_mut().expect("object").remove(claim);
        let forged = signed_with_our_key(&attack.header, &altered);
        attack.refused(&format!("{claim} missing"), &forged).await;
    }
    for (extra, value) in [
        ("sub", json!("admin")),
        ("nbf", json!(0)),
        ("login_challenge", json!("other")),
        ("exp2", json!(exp)),
    ] {
        let mut altered = attack.claims.clone();
        altered[extra] = value;
        let forged = signed_with_our_key(&attack.header, &altered);
        attack
            .refused(&format!("extra claim {extra}"), &forged)
            .await;
    }
    // Duplicate attack.claims: a lenient parser might read the first and a checker the second.
    let body = attack.claims.to_string();
    for duplicate in [
        format!(r#"{{"exp":"{exp}",{}"#, &body[1..]),
        format!(r#"{},"exp":{}}}"#, &body[..body.len() - 1], exp + 100_000),
        format!(
            r#"{},"aud":"https://evil.example"}}"#,
            &body[..body.len() - 1]
        ),
    ] {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(attack.header.to_string()),
            URL_SAFE_NO_PAD.encode(&duplicate)
        );
        let signature = hmac_with_our_key("k2", &message, Algorithm::HS256);
        attack
            .refused("duplicate claim", &format!("{message}.{signature}"))
            .await;
    }
    // exp not after iat.
    let mut altered = attack.claims.clone();
    altered["iat"] = json!(exp);
    let forged = signed_with_our_key(&attack.header, &altered);
    attack.refused("iat = exp", &forged).await;
    attack.finish().await;
}

#[tokio::test]
async fn expired_tokens_are_gone() {
    let mut tally = Tally::new("token expiry");
    let ttl = Kit::new().config.token_ttl;
    for (advance, expected) in [
        (ttl + Duration::from_secs(1), 410),
        (ttl, 410),
        (ttl + Duration::from_secs(3600 * 24 * 365), 410),
    ] {
        let kit = Kit::with_sessions();
        let (token, binding) = issue(&kit, "expiry-challenge", "").await;
        kit.advance(advance);
        attack_return(
            &kit,
            &mut tally,
            &format!("{} s after issue", advance.as_secs()),
            &token,
            &binding,
            &[expected],
        )
        .await;
    }
    // Issued in the future (a clock rolled back, or a forged iat): refused as invalid.
    let kit = Kit::with_sessions();
    let (token, binding) = issue(&kit, "future-challenge", "").await;
    let (header, claims, _) = segments(&token);
    for ahead in [6u64, 600, 86_400] {
        let mut altered = claims.clone();
        altered["iat"] = json!(claims["iat"].as_u64().expect("iat") + ahead);
        altered["exp"] = json!(claims["exp"].as_u64().expect("exp") + ahead);
        let forged = signed_with_our_key(&header, &altered);
        attack_return(
            &kit,
            &mut tally,
            &format!("iat {ahead} s ahead"),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    // One second before expiry it still works: the boundary is exact.
    let kit = Kit::with_sessions();
    let (token, binding) = issue(&kit, "edge-challenge", "").await;
    kit.advance(ttl - Duration::from_secs(1));
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn other_audience_issuer_or_retired_key_is_refused() {
    let attack = Attack::new("token audience/issuer/retired key", "aud-challenge", "").await;
    let others = [
        "https://other.example.com",
        "https://auth.example.com/",
        "http://auth.example.com",
        "https://AUTH.example.com",
        "https://auth.example.com.evil.example",
        "https://auth.example.com/login/return",
        "",
    ];
    for other in others {
        for claim in ["aud", "iss"] {
            let mut altered = attack.claims.clone();
            altered[claim] = json!(other);
            let forged = signed_with_our_key(&attack.header, &altered);
            attack
                .refused(&format!("{claim} = {other:?}, signed"), &forged)
                .await;
        }
    }
    // Sealed by another deployment's codec under the same key set.
    for (issuer, audience) in [
        ("https://other.example.com", "https://auth.example.com"),
        ("https://auth.example.com", "https://other.example.com"),
    ] {
        let forged = resealed(&attack, keys(), issuer, audience);
        attack
            .refused(&format!("sealed for iss {issuer} aud {audience}"), &forged)
            .await;
    }
    // Keys that are not (or no longer) in the set: a retired kid, and a listed kid whose secret
    // was replaced.
    for keyset in [
        r#"{"current":"k0","keys":[{"kid":"k0","secret":"cmV0aXJlZC1rZXktcmV0aXJlZC1rZXktcmV0aXJlZC1rZXk"}]}"#,
        r#"{"current":"k1","keys":[{"kid":"k1","secret":"cmVwbGFjZWQtc2VjcmV0LXJlcGxhY2VkLXNlY3JldC14eHg"}]}"#,
        r#"{"current":"k2","keys":[{"kid":"k2","secret":"cmVwbGFjZWQtc2VjcmV0LXJlcGxhY2VkLXNlY3JldC14eHg"}]}"#,
    ] {
        let retired = KeySet::from_json(keyset).expect("keys");
        let ours = attack.kit.config.token_issuer();
        let forged = resealed(&attack, retired, &ours, &ours);
        attack
            .refused(&format!("minted under {}", &keyset[..20]), &forged)
            .await;
    }
    attack.finish().await;
}

#[tokio::test]
async fn tokens_only_work_in_their_browser_and_once() {
    let attack = Attack::new("token browser binding/replay", "bind-challenge", "").await;
    let (kit, token, binding) = (&attack.kit, &attack.token, &attack.binding);
    let other = "A".repeat(43);
    for cookies in [
        SESSION_COOKIE.to_owned(),
        format!("__Host-bridge_binding={other}; {SESSION_COOKIE}"),
        format!("bridge_binding={binding}; {SESSION_COOKIE}"),
        format!("__host-bridge_binding={binding}; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding={binding}x; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding={}; {SESSION_COOKIE}", &binding[..42]),
        format!("__Host-bridge_binding={binding}; __Host-bridge_binding={other}; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding=\"{binding}\"; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding= {binding}x; {SESSION_COOKIE}"),
    ] {
        let response = send_return(kit, token, &cookies).await;
        let mut problems = violations(&response);
        if response.status() != 403 && response.status() != 400 {
            problems.push(format!("status {}", response.status()));
        }
        if kit.hydra.accept_count() != 0 {
            problems.push("accepted".to_owned());
        }
        attack.record(&format!("cookies {cookies:?}"), problems);
    }
    genuine_is_accepted(kit, token, binding).await;
    // The same link again from another Kratos session (someone who copied the URL and the
    // binding cookie): refused, still one accept.
    for session_cookie in [
        "ory_kratos_session=s2",
        "ory_kratos_session=s2; ory_kratos_session=s1",
    ] {
        let cookies = format!("__Host-bridge_binding={binding}; {session_cookie}");
        let response = send_return(kit, token, &cookies).await;
        let mut problems = violations(&response);
        // Refused, or (a cookie Kratos does not recognise) sent to log in again: never on to
        // Hydra.
        if location(&response).starts_with(HYDRA_ORIGIN) {
            problems.push(format!("redirected to {}", location(&response)));
        }
        if kit.hydra.accept_count() != 1 {
            problems.push("accepted a second time".to_owned());
        }
        attack.record(&format!("replay with {session_cookie}"), problems);
    }
    attack.close();
}
