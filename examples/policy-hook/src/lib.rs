//! A small reference policy hook for the bridge's contract v1 (docs/policy.md).
//!
//! It shows the three things every hook must do, in the order they must be done:
//! 1. verify `Bridge-Signature` (HMAC-SHA256 over `"<t>.<body>"` with the key the doctor's
//!    `policy-hook-keys` prints) and refuse timestamps more than five minutes away, before
//!    reading the body;
//! 2. read the request and check its `version`;
//! 3. answer `allow`, `deny` with a reason, or `allow` with claims inside the bridge's namespace.
//!
//! The rules are deliberately plain, from the environment: `HOOK_DENY_SUBJECTS` (identity ids to
//! deny) and `HOOK_DENY_EMAIL_DOMAINS` (e-mail domains to deny, read from the `email` trait the
//! bridge sends when `BRIDGE_POLICY_HOOK_TRAITS` names it), both with `HOOK_DENY_REASON`;
//! `HOOK_ADD_CLAIMS_JSON` (claims added at consent, each name prefixed with
//! `HOOK_CLAIMS_NAMESPACE`); everything else is allowed.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The contract version this hook reads and answers.
pub const CONTRACT_VERSION: u64 = 1;

/// How far a signature's timestamp may be from our clock: the bridge signs just before sending,
/// so anything older is a replay (or a clock badly out of sync).
pub const MAX_SIGNATURE_AGE_SECONDS: u64 = 300;

/// The header the bridge signs with.
pub const SIGNATURE_HEADER: &str = "bridge-signature";

/// Why the hook cannot start; names the variable, never its value (keys are secrets).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required variable is missing.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable is present but unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a request's signature is refused; answered as 401 without more detail.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `Bridge-Signature` header.
    #[error("no signature")]
    Missing,
    /// Not `t=<digits>,kid=<kid>,v1=<64 hex>`.
    #[error("malformed signature")]
    Malformed,
    /// A kid this hook holds no key for (rotated out, or another deployment).
    #[error("unknown key")]
    UnknownKid,
    /// The timestamp is more than [`MAX_SIGNATURE_AGE_SECONDS`] away.
    #[error("stale signature")]
    Stale,
    /// The MAC does not match the body.
    #[error("bad signature")]
    Mismatch,
}

/// The verification keys, `kid:hex` pairs from `HOOK_SIGNING_KEYS` (the doctor's output).
pub struct SigningKeys(Vec<(String, [u8; 32])>);

impl SigningKeys {
    /// Parses `k2:<64 hex>,k1:<64 hex>`.
    pub fn parse(list: &str) -> Result<Self, SettingsError> {
        let invalid = SettingsError::Invalid {
            name: "HOOK_SIGNING_KEYS",
            reason: "must be kid:hex pairs (64 hex digits each), comma-separated, as `doctor policy-hook-keys` prints",
        };
        let mut keys = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, hex) = entry.split_once(':').ok_or_else(|| invalid.clone())?;
            let key = decode_hex_32(hex).ok_or_else(|| invalid.clone())?;
            keys.push((kid.to_owned(), key));
        }
        if keys.is_empty() {
            return Err(invalid);
        }
        Ok(Self(keys))
    }

    /// Checks a `Bridge-Signature` header against `body` at time `now` (Unix seconds).
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let mut fields = header.split(',').map(|part| part.split_once('='));
        let (Some(Some(("t", timestamp))), Some(Some(("kid", kid))), Some(Some(("v1", mac))), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(SignatureError::Malformed);
        };
        let presented = decode_hex_32(mac).ok_or(SignatureError::Malformed)?;
        let signed_at: u64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
        let key = self
            .0
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key)
            .ok_or(SignatureError::UnknownKid)?;
        if now.abs_diff(signed_at) > MAX_SIGNATURE_AGE_SECONDS {
            return Err(SignatureError::Stale);
        }
        let mut expected =
            Hmac::<Sha256>::new_from_slice(key).map_err(|_| SignatureError::Malformed)?;
        expected.update(timestamp.as_bytes());
        expected.update(b".");
        expected.update(body);
        let expected = expected.finalize().into_bytes();
        if bool::from(expected.as_slice().ct_eq(&presented)) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn decode_hex_32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(bytes)
}

/// The parts of the bridge's request these rules look at (the contract has more: `client`,
/// `amr`, `acr`, `requested_scope`, `requested_audience`, `request_id`).
#[derive(Debug, Deserialize)]
pub struct PolicyRequest {
    /// Must be [`CONTRACT_VERSION`].
    pub version: u64,
    /// `login` or `consent`.
    pub stage: String,
    /// The Kratos identity id.
    pub subject: String,
    /// The traits the bridge was told to send (`BRIDGE_POLICY_HOOK_TRAITS`); none otherwise.
    #[serde(default)]
    pub traits: Map<String, Value>,
}

impl PolicyRequest {
    /// The domain of the `email` trait, lower-cased; `None` without one.
    fn email_domain(&self) -> Option<String> {
        let email = self.traits.get("email")?.as_str()?;
        let (_, domain) = email.rsplit_once('@')?;
        Some(domain.to_ascii_lowercase())
    }
}

/// The example rule set.
#[derive(Debug, Default)]
pub struct Rules {
    /// Identity ids that may not sign in.
    pub deny_subjects: BTreeSet<String>,
    /// E-mail domains (lower case) whose addresses may not sign in: a rule that holds before the
    /// identity exists, unlike a subject.
    pub deny_email_domains: BTreeSet<String>,
    /// What a denied user reads.
    pub deny_reason: String,
    /// Claims added at consent, already prefixed with the namespace.
    pub add_claims: Map<String, Value>,
}

impl Rules {
    /// Denies listed subjects and e-mail domains; adds the claims at consent (the ID token is
    /// made there; the bridge ignores claims in a login answer); allows everyone else.
    pub fn decide(&self, request: &PolicyRequest) -> Value {
        let denied_domain = request
            .email_domain()
            .is_some_and(|domain| self.deny_email_domains.contains(&domain));
        if denied_domain || self.deny_subjects.contains(&request.subject) {
            return json!({"version": CONTRACT_VERSION, "decision": "deny", "reason": self.deny_reason});
        }
        if request.stage == "consent" && !self.add_claims.is_empty() {
            return json!({"version": CONTRACT_VERSION, "decision": "allow", "claims": self.add_claims});
        }
        json!({"version": CONTRACT_VERSION, "decision": "allow"})
    }
}

/// The hook: keys and rules, read once.
pub struct Hook {
    keys: SigningKeys,
    rules: Rules,
}

impl Hook {
    /// Reads `HOOK_SIGNING_KEYS` (required), `HOOK_DENY_SUBJECTS`, `HOOK_DENY_EMAIL_DOMAINS`,
    /// `HOOK_DENY_REASON`, `HOOK_CLAIMS_NAMESPACE` and `HOOK_ADD_CLAIMS_JSON` through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let keys = SigningKeys::parse(
            &get("HOOK_SIGNING_KEYS").ok_or(SettingsError::Missing("HOOK_SIGNING_KEYS"))?,
        )?;
        let list = |name: &str| -> BTreeSet<String> {
            get(name)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let deny_subjects = list("HOOK_DENY_SUBJECTS");
        let deny_email_domains = list("HOOK_DENY_EMAIL_DOMAINS")
            .into_iter()
            .map(|domain| domain.to_ascii_lowercase())
            .collect();
        let deny_reason = get("HOOK_DENY_REASON")
            .unwrap_or_else(|| "This account may not sign in to this application.".to_owned());
        let add_claims = match get("HOOK_ADD_CLAIMS_JSON") {
            None => Map::new(),
            Some(json) => {
                let namespace = get("HOOK_CLAIMS_NAMESPACE")
                    .ok_or(SettingsError::Missing("HOOK_CLAIMS_NAMESPACE"))?;
                let claims: Map<String, Value> = serde_json::from_str(&json).map_err(|_| SettingsError::Invalid {
                    name: "HOOK_ADD_CLAIMS_JSON",
                    reason: "must be a JSON object of claim names (without the namespace) to values",
                })?;
                claims
                    .into_iter()
                    .map(|(name, value)| (format!("{namespace}{name}"), value))
                    .collect()
            }
        };
        Ok(Self {
            keys,
            rules: Rules {
                deny_subjects,
                deny_email_domains,
                deny_reason,
                add_claims,
            },
        })
    }

    /// One request: 405 for anything but `POST`, 401 for a bad signature (checked before the
    /// body is parsed), 400 for a body outside the contract, else 200 with the decision.
    pub fn handle(&self, request: &Request, now: u64) -> Response<Body> {
        if request.method() != Method::POST {
            return answer(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST"}));
        }
        let body: &[u8] = request.body().as_ref();
        let signature = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        if let Err(error) = self.keys.verify(signature, body, now) {
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"error": error.to_string()}),
            );
        }
        match serde_json::from_slice::<PolicyRequest>(body) {
            Ok(policy_request) if policy_request.version == CONTRACT_VERSION => {
                answer(StatusCode::OK, self.rules.decide(&policy_request))
            }
            _ => answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "not a contract v1 request"}),
            ),
        }
    }
}

fn answer(status: StatusCode, value: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Seconds since the Unix epoch, the unit of the signature's `t`.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn sign(timestamp: u64, body: &str) -> String {
        let key = decode_hex_32(KEY_HEX).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{timestamp}.{body}").as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("t={timestamp},kid=k2,v1={hex}")
    }

    fn hook(extra: &[(&str, &str)]) -> Hook {
        let mut vars = vec![(
            "HOOK_SIGNING_KEYS",
            format!("k2:{KEY_HEX},k1:{}", "ff".repeat(32)),
        )];
        vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        Hook::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    fn post(body: &str, signature: Option<String>) -> Request {
        let mut request = Request::new(Body::from(body.to_owned()));
        *request.method_mut() = Method::POST;
        if let Some(signature) = signature {
            request
                .headers_mut()
                .insert(SIGNATURE_HEADER, HeaderValue::from_str(&signature).unwrap());
        }
        request
    }

    fn answer_of(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    const NOW: u64 = 1_760_000_000;
    const CONSENT: &str = r#"{"version":1,"stage":"consent","subject":"id-1","client":{"client_id":"web","client_name":null},"amr":["fed"],"acr":"aal1","requested_scope":["openid"],"requested_audience":[],"traits":{},"request_id":"0123456789abcdef"}"#;

    #[test]
    fn signatures_are_verified_and_old_ones_refused() {
        let keys = SigningKeys::parse(&format!("k2:{KEY_HEX}")).unwrap();
        let body = CONSENT.as_bytes();
        assert_eq!(
            keys.verify(Some(&sign(NOW, CONSENT)), body, NOW + 10),
            Ok(())
        );
        assert_eq!(keys.verify(None, body, NOW), Err(SignatureError::Missing));
        assert_eq!(
            keys.verify(Some("v1=abc"), body, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            keys.verify(
                Some(&sign(NOW, CONSENT)),
                body,
                NOW + MAX_SIGNATURE_AGE_SECONDS + 1
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            keys.verify(Some(&sign(NOW, CONSENT)), b"{\"tampered\":1}", NOW),
            Err(SignatureError::Mismatch)
        );
        let other_kid = sign(NOW, CONSENT).replace("kid=k2", "kid=k9");
        assert_eq!(
            keys.verify(Some(&other_kid), body, NOW),
            Err(SignatureError::UnknownKid)
        );
        let replayed_later = sign(NOW - MAX_SIGNATURE_AGE_SECONDS - 1, CONSENT);
        assert_eq!(
            keys.verify(Some(&replayed_later), body, NOW),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn settings_are_checked_at_start_up() {
        assert!(matches!(
            Hook::from_lookup(|_| None),
            Err(SettingsError::Missing("HOOK_SIGNING_KEYS"))
        ));
        assert!(SigningKeys::parse("k2:abcd").is_err());
        assert!(SigningKeys::parse(KEY_HEX).is_err());
        let without_namespace = Hook::from_lookup(|name| match name {
            "HOOK_SIGNING_KEYS" => Some(format!("k2:{KEY_HEX}")),
            "HOOK_ADD_CLAIMS_JSON" => Some(r#"{"tenant":"acme"}"#.to_owned()),
            _ => None,
        });
        assert!(matches!(
            without_namespace,
            Err(SettingsError::Missing("HOOK_CLAIMS_NAMESPACE"))
        ));
    }

    #[test]
    fn listed_subjects_are_denied_with_the_reason() {
        let hook = hook(&[
            ("HOOK_DENY_SUBJECTS", "id-0, id-1"),
            ("HOOK_DENY_REASON", "Ask your administrator."),
        ]);
        let response = hook.handle(&post(CONSENT, Some(sign(NOW, CONSENT))), NOW);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            answer_of(&response),
            json!({"version": 1, "decision": "deny", "reason": "Ask your administrator."})
        );
    }

    #[test]
    fn listed_email_domains_are_denied_whatever_the_case() {
        let hook = hook(&[("HOOK_DENY_EMAIL_DOMAINS", "Blocked.example.com")]);
        let blocked = CONSENT.replace(
            "\"traits\":{}",
            "\"traits\":{\"email\":\"ann@blocked.EXAMPLE.com\"}",
        );
        let response = hook.handle(&post(&blocked, Some(sign(NOW, &blocked))), NOW);
        assert_eq!(answer_of(&response)["decision"], "deny");
        let elsewhere = blocked.replace("blocked.EXAMPLE.com", "example.com");
        let response = hook.handle(&post(&elsewhere, Some(sign(NOW, &elsewhere))), NOW);
        assert_eq!(answer_of(&response)["decision"], "allow");
        let response = hook.handle(&post(CONSENT, Some(sign(NOW, CONSENT))), NOW);
        assert_eq!(
            answer_of(&response)["decision"],
            "allow",
            "no email trait sent: nothing to deny on"
        );
    }

    #[test]
    fn claims_are_added_under_the_namespace_at_consent_only() {
        let hook = hook(&[
            ("HOOK_CLAIMS_NAMESPACE", "https://auth.example.com/claims/"),
            ("HOOK_ADD_CLAIMS_JSON", r#"{"tenant":"acme"}"#),
        ]);
        let response = hook.handle(&post(CONSENT, Some(sign(NOW, CONSENT))), NOW);
        assert_eq!(
            answer_of(&response),
            json!({"version": 1, "decision": "allow", "claims": {"https://auth.example.com/claims/tenant": "acme"}})
        );
        let login = CONSENT.replace("\"consent\"", "\"login\"");
        let response = hook.handle(&post(&login, Some(sign(NOW, &login))), NOW);
        assert_eq!(
            answer_of(&response),
            json!({"version": 1, "decision": "allow"})
        );
    }

    #[test]
    fn unsigned_unknown_and_non_post_requests_are_refused() {
        let hook = hook(&[]);
        assert_eq!(
            hook.handle(&post(CONSENT, None), NOW).status(),
            StatusCode::UNAUTHORIZED
        );
        let v2 = CONSENT.replace("\"version\":1", "\"version\":2");
        assert_eq!(
            hook.handle(&post(&v2, Some(sign(NOW, &v2))), NOW).status(),
            StatusCode::BAD_REQUEST
        );
        let mut get = post(CONSENT, Some(sign(NOW, CONSENT)));
        *get.method_mut() = Method::GET;
        assert_eq!(
            hook.handle(&get, NOW).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            answer_of(&hook.handle(&post(CONSENT, Some(sign(NOW, CONSENT))), NOW)),
            json!({"version": 1, "decision": "allow"})
        );
    }
}
