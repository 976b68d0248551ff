//! In-process fakes of Hydra and Kratos and helpers shared by the handler tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::config::{Config, Needs};
use crate::hydra::*;
use crate::identity::*;
use crate::keyset::KeySet;
use crate::kratos::*;
use crate::replay::MemoryReplayStore;
use crate::token::TokenCodec;
use crate::upstream::{Upstream, UpstreamError};

pub const HYDRA_NEXT: &str = "https://oauth.example.com/oauth2/auth?login_verifier=v";
pub const KEYSET: &str = r#"{"current":"k2","keys":[{"kid":"k2","secret":"c2Vjb25kLWtleS1zZWNvbmQta2V5LXNlY29uZC1rZXktc2Vjb25k"},{"kid":"k1","secret":"Zmlyc3Qta2V5LWZpcnN0LWtleS1maXJzdC1rZXktZmlyc3Q"}]}"#;

/// The kinds of upstream failure tests inject.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamKind {
    NotFound,
    Expired,
    Transient,
    Rejected,
}

pub fn upstream_error(kind: UpstreamKind, upstream: Upstream) -> UpstreamError {
    match kind {
        UpstreamKind::NotFound => UpstreamError::NotFound { upstream },
        UpstreamKind::Expired => UpstreamError::Expired { upstream },
        UpstreamKind::Transient => UpstreamError::Transient {
            upstream,
            detail: "test".to_owned(),
        },
        UpstreamKind::Rejected => UpstreamError::Rejected {
            upstream,
            status: 400,
        },
    }
}

#[derive(Default)]
struct HydraState {
    logins: HashMap<String, LoginRequest>,
    consents: HashMap<String, ConsentRequest>,
    logouts: HashMap<String, LogoutRequest>,
    failures: HashMap<String, UpstreamKind>,
    accept_failures: HashMap<String, UpstreamKind>,
    accepted_logins: HashMap<String, AcceptLogin>,
    accepted_consents: HashMap<String, AcceptConsent>,
    rejected_consents: HashMap<String, RejectRequest>,
    accepted_logouts: Vec<String>,
    device_codes: HashMap<String, String>,
    accepted_devices: Vec<String>,
    clients: HashMap<String, OAuth2Client>,
    calls: Vec<String>,
    redirect: Option<String>,
}

/// A Hydra admin API that answers from memory and records what it was told.
#[derive(Default, Clone)]
pub struct FakeHydra(Arc<Mutex<HydraState>>);

impl FakeHydra {
    fn state(&self) -> std::sync::MutexGuard<'_, HydraState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn add_login(&self, challenge: &str, login: LoginRequest) {
        self.state().logins.insert(challenge.to_owned(), login);
    }
    pub fn add_consent(&self, challenge: &str, consent: ConsentRequest) {
        self.state().consents.insert(challenge.to_owned(), consent);
    }
    pub fn add_logout(&self, challenge: &str, logout: LogoutRequest) {
        self.state().logouts.insert(challenge.to_owned(), logout);
    }
    /// A device challenge whose request Hydra knows by `user_code` (usable once).
    pub fn add_device(&self, challenge: &str, user_code: &str) {
        self.state()
            .device_codes
            .insert(challenge.to_owned(), user_code.to_owned());
    }
    pub fn add_client(&self, client: OAuth2Client) {
        self.state()
            .clients
            .insert(client.client_id.clone(), client);
    }
    pub fn accepted_devices(&self) -> Vec<String> {
        self.state().accepted_devices.clone()
    }
    pub fn fail_challenge(&self, challenge: &str, kind: UpstreamKind) {
        self.state().failures.insert(challenge.to_owned(), kind);
    }
    pub fn fail_accept(&self, challenge: &str, kind: UpstreamKind) {
        self.state()
            .accept_failures
            .insert(challenge.to_owned(), kind);
    }
    pub fn heal_accept(&self, challenge: &str) {
        self.state().accept_failures.remove(challenge);
    }
    pub fn set_redirect(&self, url: &str) {
        self.state().redirect = Some(url.to_owned());
    }
    pub fn accepted_login(&self, challenge: &str) -> Option<AcceptLogin> {
        self.state().accepted_logins.get(challenge).cloned()
    }
    pub fn accepted_consent(&self, challenge: &str) -> Option<AcceptConsent> {
        self.state().accepted_consents.get(challenge).cloned()
    }
    pub fn rejected_consent(&self, challenge: &str) -> Option<RejectRequest> {
        self.state().rejected_consents.get(challenge).cloned()
    }
    pub fn accepted_logouts(&self) -> Vec<String> {
        self.state().accepted_logouts.clone()
    }
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }
    pub fn accept_count(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.starts_with("accept_login"))
            .count()
    }
    fn check(&self, call: &str, challenge: &str) -> Result<(), UpstreamError> {
        let mut state = self.state();
        state.calls.push(format!("{call}:{challenge}"));
        match state.failures.get(challenge) {
            Some(kind) => Err(upstream_error(*kind, Upstream::Hydra)),
            None => Ok(()),
        }
    }
    fn next(&self, challenge: &str) -> Result<RedirectTo, UpstreamError> {
        let state = self.state();
        if let Some(kind) = state.accept_failures.get(challenge) {
            return Err(upstream_error(*kind, Upstream::Hydra));
        }
        Ok(RedirectTo {
            redirect_to: state
                .redirect
                .clone()
                .unwrap_or_else(|| HYDRA_NEXT.to_owned()),
        })
    }
}

#[async_trait]
impl HydraAdmin for FakeHydra {
    async fn login_request(&self, challenge: &str) -> Result<LoginRequest, UpstreamError> {
        self.check("login_request", challenge)?;
        self.state()
            .logins
            .get(challenge)
            .cloned()
            .ok_or(UpstreamError::NotFound {
                upstream: Upstream::Hydra,
            })
    }
    async fn accept_login(
        &self,
        challenge: &str,
        body: &AcceptLogin,
    ) -> Result<RedirectTo, UpstreamError> {
        self.check("accept_login", challenge)?;
        let next = self.next(challenge)?;
        self.state()
            .accepted_logins
            .insert(challenge.to_owned(), body.clone());
        Ok(next)
    }
    async fn consent_request(&self, challenge: &str) -> Result<ConsentRequest, UpstreamError> {
        self.check("consent_request", challenge)?;
        self.state()
            .consents
            .get(challenge)
            .cloned()
            .ok_or(UpstreamError::NotFound {
                upstream: Upstream::Hydra,
            })
    }
    async fn accept_consent(
        &self,
        challenge: &str,
        body: &AcceptConsent,
    ) -> Result<RedirectTo, UpstreamError> {
        self.check("accept_consent", challenge)?;
        let next = self.next(challenge)?;
        self.state()
            .accepted_consents
            .insert(challenge.to_owned(), body.clone());
        Ok(next)
    }
    async fn reject_consent(
        &self,
        challenge: &str,
        body: &RejectRequest,
    ) -> Result<RedirectTo, UpstreamError> {
        self.check("reject_consent", challenge)?;
        let next = self.next(challenge)?;
        self.state()
            .rejected_consents
            .insert(challenge.to_owned(), body.clone());
        Ok(next)
    }
    async fn logout_request(&self, challenge: &str) -> Result<LogoutRequest, UpstreamError> {
        self.check("logout_request", challenge)?;
        self.state()
            .logouts
            .get(challenge)
            .cloned()
            .ok_or(UpstreamError::NotFound {
                upstream: Upstream::Hydra,
            })
    }
    async fn accept_logout(&self, challenge: &str) -> Result<RedirectTo, UpstreamError> {
        self.check("accept_logout", challenge)?;
        let next = self.next(challenge)?;
        self.state().accepted_logouts.push(challenge.to_owned());
        Ok(next)
    }
    async fn accept_device(
        &self,
        challenge: &str,
        body: &AcceptDevice,
    ) -> Result<RedirectTo, UpstreamError> {
        self.check("accept_device", challenge)?;
        let next = self.next(challenge)?;
        let mut state = self.state();
        // Like Hydra: a wrong, unknown or used code is one and the same 400.
        if state.device_codes.get(challenge) != Some(&body.user_code) {
            return Err(upstream_error(UpstreamKind::Rejected, Upstream::Hydra));
        }
        state.device_codes.remove(challenge);
        state.accepted_devices.push(body.user_code.clone());
        Ok(next)
    }
    async fn client(&self, client_id: &str) -> Result<OAuth2Client, UpstreamError> {
        self.check("client", client_id)?;
        self.state()
            .clients
            .get(client_id)
            .cloned()
            .ok_or(UpstreamError::NotFound {
                upstream: Upstream::Hydra,
            })
    }
}

#[derive(Default)]
struct KratosState {
    sessions: HashMap<String, KratosSession>,
    whoami_calls: usize,
    last_cookie: Option<String>,
    fail_whoami: bool,
    fail_revoke: bool,
    revoked: Vec<String>,
    errors: HashMap<String, Value>,
}

/// A Kratos that knows sessions by their exact forwarded cookie header.
#[derive(Default, Clone)]
pub struct FakeKratos(Arc<Mutex<KratosState>>);

impl FakeKratos {
    fn state(&self) -> std::sync::MutexGuard<'_, KratosState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn add_session(&self, cookie: &str, session: KratosSession) {
        self.state().sessions.insert(cookie.to_owned(), session);
    }
    pub fn fail_whoami(&self, fail: bool) {
        self.state().fail_whoami = fail;
    }
    pub fn fail_revoke(&self, fail: bool) {
        self.state().fail_revoke = fail;
    }
    pub fn add_error(&self, id: &str, error: Value) {
        self.state().errors.insert(id.to_owned(), error);
    }
    pub fn whoami_calls(&self) -> usize {
        self.state().whoami_calls
    }
    pub fn last_cookie(&self) -> Option<String> {
        self.state().last_cookie.clone()
    }
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
        Ok(state.sessions.get(kratos_cookies).cloned())
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

/// Everything a handler test needs, with a controllable clock.
pub struct Kit {
    pub config: Config,
    pub hydra: Arc<FakeHydra>,
    pub kratos: Arc<FakeKratos>,
    pub replay: Arc<MemoryReplayStore>,
    now: Arc<Mutex<SystemTime>>,
}

impl Kit {
    pub fn new() -> Self {
        let env = crate::config::tests::base_env();
        let config = Config::from_lookup(|k| env.get(k).cloned(), Needs { replay_table: true })
            .expect("config");
        Self {
            config,
            hydra: Arc::new(FakeHydra::default()),
            kratos: Arc::new(FakeKratos::default()),
            replay: Arc::new(MemoryReplayStore::default()),
            now: Arc::new(Mutex::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            )),
        }
    }
    pub fn keys(&self) -> KeySet {
        KeySet::from_json(KEYSET).expect("key set")
    }
    pub fn codec(&self) -> TokenCodec {
        let issuer = self.config.token_issuer();
        TokenCodec::new(self.keys(), issuer.clone(), issuer, self.config.token_ttl).expect("codec")
    }
    pub fn now(&self) -> SystemTime {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
    pub fn clock(&self) -> crate::clock::Clock {
        let now = self.now.clone();
        Arc::new(move || {
            *now.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }
}

pub fn get(uri: &str, cookie: Option<&str>) -> Request {
    let mut builder = http::Request::builder().method("GET").uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder.body(Body::Empty).expect("request")
}

/// A form POST as a browser sends it.
pub fn post_form(uri: &str, body: &str, cookie: Option<&str>, origin: Option<&str>) -> Request {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    if let Some(origin) = origin {
        builder = builder.header("origin", origin);
    }
    builder.body(Body::Text(body.to_owned())).expect("request")
}

/// The CSRF cookie (`name=value`) a form page set and the token its form carries.
pub fn form_csrf(response: &Response<Body>) -> (String, String) {
    let cookie = set_cookies(response)[0]
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let token = body(response)
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf token in form")
        .to_owned();
    (cookie, token)
}

pub fn location(response: &Response<Body>) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

pub fn body(response: &Response<Body>) -> String {
    crate::response::tests::body_text(response)
}

pub fn login_request(skip: bool, subject: &str, request_url: &str) -> LoginRequest {
    LoginRequest {
        client: OAuth2Client {
            client_id: "app".to_owned(),
            ..OAuth2Client::default()
        },
        request_url: request_url.to_owned(),
        requested_scope: vec!["openid".to_owned(), "email".to_owned()],
        skip,
        subject: subject.to_owned(),
    }
}

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
