//! A Kratos in memory, and the sessions tests sign in with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::Value;

use super::hydra::{upstream_error, UpstreamKind};
use crate::identity::*;
use crate::kratos::KratosApi;
use crate::upstream::{Upstream, UpstreamError};

#[derive(Default)]
struct KratosState {
    sessions: HashMap<String, KratosSession>,
    numbered: bool,
    whoami_calls: usize,
    last_cookie: Option<String>,
    fail_whoami: bool,
    fail_revoke: bool,
    revoked: Vec<String>,
    errors: HashMap<String, Value>,
}

/// A Kratos that knows sessions by their exact forwarded cookie header, and records what it
/// was asked. Clones share their state.
#[derive(Default, Clone)]
pub struct FakeKratos(Arc<Mutex<KratosState>>);

impl FakeKratos {
    /// A Kratos that also knows `ory_kratos_session=s<n>` as [`numbered_session`]`(n)` for every
    /// `n`, for tests that sign in as many different users.
    pub fn numbered() -> Self {
        let kratos = Self::default();
        kratos.state().numbered = true;
        kratos
    }
    fn state(&self) -> MutexGuard<'_, KratosState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Makes `session` the one behind exactly the cookie header `cookie`.
    pub fn add_session(&self, cookie: &str, session: KratosSession) {
        self.state().sessions.insert(cookie.to_owned(), session);
    }
    /// Makes `whoami` fail as a passing failure (or work again).
    pub fn fail_whoami(&self, fail: bool) {
        self.state().fail_whoami = fail;
    }
    /// Makes revoking a session fail as a passing failure (or work again).
    pub fn fail_revoke(&self, fail: bool) {
        self.state().fail_revoke = fail;
    }
    /// Makes `id` a known self-service flow error.
    pub fn add_error(&self, id: &str, error: Value) {
        self.state().errors.insert(id.to_owned(), error);
    }
    /// How many times `whoami` was asked.
    pub fn whoami_calls(&self) -> usize {
        self.state().whoami_calls
    }
    /// The cookie header `whoami` was last asked with.
    pub fn last_cookie(&self) -> Option<String> {
        self.state().last_cookie.clone()
    }
    /// The session ids revoked so far.
    pub fn revoked(&self) -> Vec<String> {
        self.state().revoked.clone()
    }
}

#[async_trait]
impl KratosApi for FakeKratos {
    async fn whoami(&self, kratos_cookies: &str) -> Result<Option<KratosSession>, UpstreamError> {
        let mut state = self.state();
        state.whoami_calls += 1;
        state.last_cookie = Some(kratos_cookies.to_owned());
        if state.fail_whoami {
            return Err(upstream_error(UpstreamKind::Transient, Upstream::Kratos));
        }
        if let Some(session) = state.sessions.get(kratos_cookies) {
            return Ok(Some(session.clone()));
        }
        let numbered = state.numbered;
        Ok(kratos_cookies
            .strip_prefix("ory_kratos_session=s")
            .filter(|_| numbered)
            .and_then(|n| n.parse().ok())
            .map(numbered_session))
    }
    async fn revoke_session(&self, session_id: &str) -> Result<(), UpstreamError> {
        let mut state = self.state();
        if state.fail_revoke {
            return Err(upstream_error(UpstreamKind::Transient, Upstream::Kratos));
        }
        state.revoked.push(session_id.to_owned());
        Ok(())
    }
    async fn flow_error(&self, id: &str) -> Result<Option<Value>, UpstreamError> {
        Ok(self.state().errors.get(id).cloned())
    }
}

/// An active aal1 session `id` of identity `identity_id` (Ann Lee, verified
/// `ann@example.com`), authenticated by `methods`.
pub fn session(id: &str, identity_id: &str, methods: &[&str]) -> KratosSession {
    KratosSession {
        id: id.to_owned(),
        active: Some(true),
        authenticated_at: Some("2026-01-01T00:00:00Z".to_owned()),
        authenticator_assurance_level: Some("aal1".to_owned()),
        authentication_methods: methods
            .iter()
            .map(|m| AuthenticationMethod {
                method: (*m).to_owned(),
                provider: None,
            })
            .collect(),
        identity: KratosIdentity {
            id: identity_id.to_owned(),
            traits: serde_json::json!({"email": "ann@example.com", "name": {"first": "Ann", "last": "Lee"}}),
            verifiable_addresses: vec![VerifiableAddress {
                value: "ann@example.com".to_owned(),
                verified: true,
                via: "email".to_owned(),
            }],
        },
    }
}

/// Session `sess-<n>` of identity `ident-<n>` (verified `user<n>@example.com`), signed in with
/// Google.
pub fn numbered_session(n: usize) -> KratosSession {
    let email = format!("user{n}@example.com");
    KratosSession {
        id: format!("sess-{n}"),
        identity: KratosIdentity {
            id: format!("ident-{n}"),
            traits: serde_json::json!({ "email": email }),
            verifiable_addresses: vec![VerifiableAddress {
                value: email,
                verified: true,
                via: "email".to_owned(),
            }],
        },
        ..google_session(session("", "", &[]))
    }
}

/// `session` signed in with Google: its only method is `oidc` by the `google` provider.
pub fn google_session(session: KratosSession) -> KratosSession {
    KratosSession {
        authentication_methods: vec![AuthenticationMethod {
            method: "oidc".to_owned(),
            provider: Some("google".to_owned()),
        }],
        ..session
    }
}
