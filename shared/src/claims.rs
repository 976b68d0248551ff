//! From a Kratos identity to ID token claims.
//!
//! The return function knows the identity (it has the Kratos session); the consent function only
//! knows what Hydra hands it. So the identity's traits are resolved into claims once, at login,
//! grouped by the scope that releases them, and carried in Hydra's login `context`. Consent then
//! only filters by the scopes the user granted and never needs to call Kratos.
//!
//! Which trait feeds which claim is configuration (`BRIDGE_CLAIM_MAPPING_JSON`), because every
//! team's identity schema names its traits differently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::identity::{KratosIdentity, KratosSession};

/// Where one claim's value comes from, as written in the mapping JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ClaimSource {
    /// A JSON pointer into the identity (`/traits/email`, `/id`): the value found there.
    Pointer(String),
    /// `{"verified": "/traits/email"}`: true when the value at the pointer is one of the
    /// identity's verified addresses, false otherwise.
    Verified {
        /// The pointer whose value must be a verified address.
        verified: String,
    },
    /// `{"join": ["/traits/name/first", "/traits/name/last"]}`: the non-empty strings found,
    /// joined by a space (for `name` from first and last names).
    Join {
        /// The pointers to join, in order.
        join: Vec<String>,
    },
}

/// Scope -> claim -> source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ClaimMapping(BTreeMap<String, BTreeMap<String, ClaimSource>>);

/// Why a claim mapping is unusable.
#[derive(Debug, Error)]
pub enum ClaimMappingError {
    /// The JSON does not have the mapping's shape.
    #[error("not a scope -> claim -> source object: {0}")]
    Shape(String),
    /// A pointer is not a JSON pointer.
    #[error("claim `{claim}` of scope `{scope}`: `{pointer}` is not a JSON pointer (it must start with /)")]
    Pointer {
        /// Scope of the bad entry.
        scope: String,
        /// Claim of the bad entry.
        claim: String,
        /// The offending pointer.
        pointer: String,
    },
    /// A claim Hydra sets itself would be overwritten.
    #[error("claim `{0}` is set by Hydra and cannot be mapped")]
    Reserved(String),
}

/// Claims Hydra owns in the ID token; mapping them would confuse relying parties.
const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "acr",
    "amr",
    "auth_time",
    "at_hash",
    "c_hash",
    "sid",
    "azp",
];

impl Default for ClaimMapping {
    /// The standard OpenID Connect claims for the identity schema shipped in `stack/kratos`
    /// (traits `email`, `phone`, `name.first`, `name.last`).
    fn default() -> Self {
        let pointer = |p: &str| ClaimSource::Pointer(p.to_owned());
        let verified = |p: &str| ClaimSource::Verified {
            verified: p.to_owned(),
        };
        Self(BTreeMap::from([
            (
                "email".to_owned(),
                BTreeMap::from([
                    ("email".to_owned(), pointer("/traits/email")),
                    ("email_verified".to_owned(), verified("/traits/email")),
                ]),
            ),
            (
                "phone".to_owned(),
                BTreeMap::from([
                    ("phone_number".to_owned(), pointer("/traits/phone")),
                    (
                        "phone_number_verified".to_owned(),
                        verified("/traits/phone"),
                    ),
                ]),
            ),
            (
                "profile".to_owned(),
                BTreeMap::from([
                    (
                        "name".to_owned(),
                        ClaimSource::Join {
                            join: vec![
                                "/traits/name/first".to_owned(),
                                "/traits/name/last".to_owned(),
                            ],
                        },
                    ),
                    ("given_name".to_owned(), pointer("/traits/name/first")),
                    ("family_name".to_owned(), pointer("/traits/name/last")),
                ]),
            ),
        ]))
    }
}

impl ClaimMapping {
    /// Parses and validates the operator's mapping.
    pub fn from_json(json: &str) -> Result<Self, ClaimMappingError> {
        let mapping: Self =
            serde_json::from_str(json).map_err(|e| ClaimMappingError::Shape(e.to_string()))?;
        for (scope, claims) in &mapping.0 {
            for (claim, source) in claims {
                if RESERVED_CLAIMS.contains(&claim.as_str()) {
                    return Err(ClaimMappingError::Reserved(claim.clone()));
                }
                let pointers: Vec<&String> = match source {
                    ClaimSource::Pointer(p) => vec![p],
                    ClaimSource::Verified { verified } => vec![verified],
                    ClaimSource::Join { join } => join.iter().collect(),
                };
                if let Some(bad) = pointers.into_iter().find(|p| !p.starts_with('/')) {
                    return Err(ClaimMappingError::Pointer {
                        scope: scope.clone(),
                        claim: claim.clone(),
                        pointer: bad.clone(),
                    });
                }
            }
        }
        Ok(mapping)
    }

    /// Resolves every mapped claim of `identity`, grouped by scope; claims whose source is
    /// absent are left out rather than sent as null.
    pub fn resolve(&self, identity: &KratosIdentity) -> BTreeMap<String, Map<String, Value>> {
        let document = serde_json::json!({ "id": identity.id, "traits": identity.traits });
        let is_verified = |value: &str| {
            identity
                .verifiable_addresses
                .iter()
                .any(|a| a.verified && a.value.eq_ignore_ascii_case(value))
        };
        let mut resolved = BTreeMap::new();
        for (scope, claims) in &self.0 {
            let mut out = Map::new();
            for (claim, source) in claims {
                let value = match source {
                    ClaimSource::Pointer(p) => {
                        document.pointer(p).filter(|v| !v.is_null()).cloned()
                    }
                    ClaimSource::Verified { verified } => document
                        .pointer(verified)
                        .and_then(Value::as_str)
                        .map(|v| Value::Bool(is_verified(v))),
                    ClaimSource::Join { join } => {
                        let parts: Vec<&str> = join
                            .iter()
                            .filter_map(|p| document.pointer(p).and_then(Value::as_str))
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .collect();
                        (!parts.is_empty()).then(|| Value::String(parts.join(" ")))
                    }
                };
                if let Some(value) = value {
                    out.insert(claim.clone(), value);
                }
            }
            if !out.is_empty() {
                resolved.insert(scope.clone(), out);
            }
        }
        resolved
    }
}

/// What the return function hands to consent through Hydra's login `context`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoginContext {
    /// The Kratos identity id (also the Hydra subject).
    pub identity_id: String,
    /// Claims released by each scope, already resolved from the identity.
    #[serde(default)]
    pub claims_by_scope: BTreeMap<String, Map<String, Value>>,
    /// The traits the policy hook is sent (`BRIDGE_POLICY_HOOK_TRAITS`), for clients whose
    /// policy asks the hook: consent asks it again and makes no Kratos call. Empty otherwise.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub hook_traits: Map<String, Value>,
}

impl LoginContext {
    /// Builds the context from the identity with the configured mapping.
    pub fn from_identity(identity: &KratosIdentity, mapping: &ClaimMapping) -> Self {
        Self {
            identity_id: identity.id.clone(),
            claims_by_scope: mapping.resolve(identity),
            hook_traits: Map::new(),
        }
    }

    /// The ID token claims for the scopes the user granted, and no others.
    pub fn id_token_claims<'a>(
        &self,
        granted_scopes: impl IntoIterator<Item = &'a str>,
    ) -> Map<String, Value> {
        let mut claims = Map::new();
        for scope in granted_scopes {
            if let Some(scope_claims) = self.claims_by_scope.get(scope) {
                claims.extend(scope_claims.clone());
            }
        }
        claims
    }
}

/// Authentication method references (RFC 8176) and the context class, derived from the Kratos
/// session so relying parties can tell a Google login from an SMS code login.
///
/// | Kratos method | `amr` |
/// |---|---|
/// | `oidc` (e.g. Google) | `fed` (federated; not in RFC 8176's registry, but the common value) |
/// | `code` sent by SMS (the identity has a phone address and no email) | `sms`, `otp` |
/// | `code` sent by email | `otp` |
/// | `password` | `pwd` |
/// | `totp`, `lookup_secret` | `otp` |
/// | `webauthn`, `passkey` | `hwk` |
///
/// Two or more distinct factors add `mfa`. `acr` is the session's authenticator assurance level
/// (`aal1`, `aal2`).
pub fn authentication_references(session: &KratosSession) -> (Vec<String>, String) {
    let mut amr: Vec<String> = Vec::new();
    let mut push = |value: &str| {
        if !amr.iter().any(|v| v == value) {
            amr.push(value.to_owned());
        }
    };
    let code_via_sms = session.identity.sms_only();
    for method in &session.authentication_methods {
        match method.method.as_str() {
            "oidc" | "saml" => push("fed"),
            "code" if code_via_sms => {
                push("sms");
                push("otp");
            }
            "code" | "totp" | "lookup_secret" => push("otp"),
            "password" => push("pwd"),
            "webauthn" | "passkey" => push("hwk"),
            _ => {}
        }
    }
    let factors = session
        .authentication_methods
        .iter()
        .map(|m| m.method.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if factors >= 2 {
        push("mfa");
    }
    let acr = session
        .authenticator_assurance_level
        .clone()
        .unwrap_or_else(|| "aal1".to_owned());
    (amr, acr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::VerifiableAddress;

    fn identity(traits: Value, verified: &[(&str, &str)]) -> KratosIdentity {
        KratosIdentity {
            id: "id-1".to_owned(),
            traits,
            verifiable_addresses: verified
                .iter()
                .map(|(value, via)| VerifiableAddress {
                    value: (*value).to_owned(),
                    verified: true,
                    via: (*via).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn default_mapping_resolves_standard_claims() {
        let identity = identity(
            serde_json::json!({"email": "Ann@Example.com", "phone": "+15550001", "name": {"first": "Ann", "last": "Lee"}}),
            &[("ann@example.com", "email")],
        );
        let context = LoginContext::from_identity(&identity, &ClaimMapping::default());
        let claims = context.id_token_claims(["openid", "email", "profile"]);
        assert_eq!(claims["email"], "Ann@Example.com");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["name"], "Ann Lee");
        assert_eq!(claims["given_name"], "Ann");
        assert!(
            !claims.contains_key("phone_number"),
            "phone scope not granted"
        );
        let phone = context.id_token_claims(["phone"]);
        assert_eq!(phone["phone_number"], "+15550001");
        assert_eq!(phone["phone_number_verified"], false);
    }

    #[test]
    fn absent_traits_are_left_out() {
        let identity = identity(serde_json::json!({"phone": "+15550001"}), &[]);
        let context = LoginContext::from_identity(&identity, &ClaimMapping::default());
        assert!(context.id_token_claims(["email", "profile"]).is_empty());
    }

    #[test]
    fn custom_mapping_from_json() {
        let mapping = ClaimMapping::from_json(
            r#"{"email": {"email": "/traits/contact/mail"}, "org": {"org_id": "/traits/org"}}"#,
        )
        .expect("valid");
        let identity = identity(
            serde_json::json!({"contact": {"mail": "x@y.z"}, "org": "acme"}),
            &[],
        );
        let context = LoginContext::from_identity(&identity, &mapping);
        assert_eq!(context.id_token_claims(["org"])["org_id"], "acme");
        assert_eq!(context.id_token_claims(["email"])["email"], "x@y.z");
    }

    #[test]
    fn bad_mappings_are_refused() {
        assert!(ClaimMapping::from_json("[]").is_err());
        assert!(matches!(
            ClaimMapping::from_json(r#"{"email": {"email": "traits.email"}}"#),
            Err(ClaimMappingError::Pointer { .. })
        ));
        assert!(matches!(
            ClaimMapping::from_json(r#"{"openid": {"sub": "/traits/email"}}"#),
            Err(ClaimMappingError::Reserved(_))
        ));
    }

    fn session(methods: &[&str], identity: KratosIdentity) -> KratosSession {
        KratosSession {
            id: "s-1".to_owned(),
            authenticated_at: None,
            identity,
            ..crate::testkit::session("", "", methods)
        }
    }

    #[test]
    fn amr_for_google_sms_and_email_code() {
        let google = session(
            &["oidc"],
            identity(serde_json::json!({"email": "a@b.c"}), &[]),
        );
        assert_eq!(
            authentication_references(&google),
            (vec!["fed".to_owned()], "aal1".to_owned())
        );
        let mut phone_identity =
            identity(serde_json::json!({"phone": "+1555"}), &[("+1555", "sms")]);
        let sms = session(&["code"], phone_identity.clone());
        assert_eq!(authentication_references(&sms).0, vec!["sms", "otp"]);
        phone_identity.traits = serde_json::json!({"email": "a@b.c"});
        phone_identity.verifiable_addresses[0].via = "email".to_owned();
        let email_code = session(&["code"], phone_identity);
        assert_eq!(authentication_references(&email_code).0, vec!["otp"]);
        let mfa = session(&["oidc", "totp"], identity(serde_json::json!({}), &[]));
        assert_eq!(authentication_references(&mfa).0, vec!["fed", "otp", "mfa"]);
    }
}
