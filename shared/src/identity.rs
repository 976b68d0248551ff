//! What Kratos tells the bridge about a user: the session and the identity behind it.
//!
//! Plain data, no HTTP and no configuration, so the claims mapping can read an identity without
//! depending on the Kratos client (which depends on the configuration, which holds the claims
//! mapping).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One way the user proved who they are in this session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AuthenticationMethod {
    /// `oidc`, `code`, `password`, ...
    pub method: String,
    /// For `oidc`: the provider id (`google`).
    #[serde(default)]
    pub provider: Option<String>,
}

/// An address Kratos can verify (email or phone).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VerifiableAddress {
    /// The address itself.
    pub value: String,
    /// Whether the user proved they own it.
    #[serde(default)]
    pub verified: bool,
    /// `email` or `sms`.
    #[serde(default)]
    pub via: String,
}

/// The parts of a Kratos identity the bridge uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct KratosIdentity {
    /// Stable identity id: the OAuth2 subject.
    pub id: String,
    /// The identity's traits as the operator's schema defines them.
    #[serde(default)]
    pub traits: Value,
    /// Addresses with their verification state.
    #[serde(default)]
    pub verifiable_addresses: Vec<VerifiableAddress>,
}

impl KratosIdentity {
    /// True when the identity can only have received a one-time code by SMS: it has an SMS
    /// address and no email address. Used to tell `sms` from email `otp` in `amr`.
    pub fn sms_only(&self) -> bool {
        let via = |channel: &str| self.verifiable_addresses.iter().any(|a| a.via == channel);
        via("sms") && !via("email")
    }
}

/// A Kratos session as `/sessions/whoami` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct KratosSession {
    /// Session id (not the session token): what Hydra stores as `identity_provider_session_id`.
    pub id: String,
    /// Kratos answers `active: false` for sessions that were revoked but not yet deleted.
    pub active: Option<bool>,
    /// RFC 3339 time of the last authentication, for `max_age`.
    pub authenticated_at: Option<String>,
    /// `aal1` or `aal2`.
    pub authenticator_assurance_level: Option<String>,
    /// How the user authenticated.
    #[serde(default)]
    pub authentication_methods: Vec<AuthenticationMethod>,
    /// Who the user is.
    pub identity: KratosIdentity,
}

impl KratosSession {
    /// Seconds since the user last authenticated, if Kratos said when.
    pub fn seconds_since_authentication(&self, now: std::time::SystemTime) -> Option<u64> {
        let at = self.authenticated_at.as_deref()?;
        let at =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
        let now = time::OffsetDateTime::from(now);
        let elapsed = (now - at).whole_seconds();
        u64::try_from(elapsed.max(0)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_since_authentication() {
        let session: KratosSession = serde_json::from_value(serde_json::json!({
            "id": "s", "authenticated_at": "2026-01-01T00:00:00Z", "identity": {"id": "i"}
        }))
        .expect("session");
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600 + 90);
        assert_eq!(session.seconds_since_authentication(now), Some(90));
    }
}
