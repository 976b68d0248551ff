//! What the fuzz targets share: in-memory Hydra and Kratos written against the bridge's public
//! traits, handler dependencies with a fixed clock and key set, request builders that accept
//! any bytes, and the checks every response must pass.
//!
//! The oracles are deliberately strict: a panic, a 500, a `Location` outside Hydra's public
//! origin, Kratos' login flow and the return function (single sign-on), a CR/LF in a header, or
//! an accept that no genuine seed explains is a crash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bridge::config::{Config, Needs};
use bridge::clock::Clock;
use bridge::hydra::{
    AcceptConsent, AcceptDevice, AcceptLogin, ConsentRequest, HydraAdmin, LoginRequest, LogoutRequest,
    OAuth2Client, RedirectTo, RejectRequest,
};
use bridge::identity::{AuthenticationMethod, KratosIdentity, KratosSession, VerifiableAddress};
use bridge::keyset::KeySet;
use bridge::kratos::KratosApi;
use bridge::replay::{Claim, ClaimOutcome, MemoryReplayStore, ReplayStore};
use bridge::token::TokenCodec;
use bridge::upstream::{Upstream, UpstreamError};
use lambda_http::{Body, Request, Response};

/// The fuzzing deployment's key set (not a secret: it exists only here).
pub const KEYSET: &str = r#"{"current":"f2","keys":[{"kid":"f2","secret":"ZnV6ei1rZXktZnV6ei1rZXktZnV6ei1rZXktZnV6ei0y"},{"kid":"f1","secret":"ZnV6ei1rZXktZnV6ei1rZXktZnV6ei1rZXktZnV6ei0x"}]}"#;
/// The fixed clock of every target, so sealed seeds stay valid forever.
pub const NOW_SECONDS: u64 = 1_767_225_600;
pub const HYDRA_ORIGIN: &str = "https://oauth.example.com";
pub const HYDRA_NEXT: &str = "https://oauth.example.com/oauth2/auth?login_verifier=v";
pub const KRATOS_LOGIN: &str = "https://id.example.com/self-service/login/browser?";
/// The one Kratos session cookie the fake Kratos knows.
pub const SESSION_COOKIE: &str = "ory_kratos_session=s1";

pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECONDS)
}

pub fn clock() -> Clock {
    Arc::new(now)
}

pub fn config() -> Config {
    let env: HashMap<&str, &str> = HashMap::from([
        ("BRIDGE_PUBLIC_BASE_URL", "https://auth.example.com"),
        ("BRIDGE_HYDRA_ADMIN_URL", "http://hydra.internal:4445"),
        ("BRIDGE_HYDRA_PUBLIC_URL", HYDRA_ORIGIN),
        ("BRIDGE_KRATOS_PUBLIC_URL", "http://kratos.internal:4433"),
        ("BRIDGE_KRATOS_ADMIN_URL", "http://kratos.internal:4434"),
        ("BRIDGE_KRATOS_BROWSER_URL", "https://id.example.com"),
        ("BRIDGE_REPLAY_TABLE", "bridge-replay"),
    ]);
    Config::from_lookup(
        |k| env.get(k).map(|v| (*v).to_owned()),
        Needs { replay_table: true },
    )
    .expect("fuzz config")
}

pub fn keys() -> KeySet {
    KeySet::from_json(KEYSET).expect("fuzz key set")
}

pub fn codec(config: &Config) -> TokenCodec {
    let issuer = config.token_issuer();
    TokenCodec::new(keys(), issuer.clone(), issuer, config.token_ttl).expect("codec")
}

/// One current-thread runtime per process: the handlers never spawn.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        })
        .block_on(future)
}

/// A Hydra that knows every challenge. The login request's `request_url`, `skip` and the
/// requested scopes come from the fuzzer through [`FakeHydra::set_login`].
#[derive(Default, Clone)]
pub struct FakeHydra {
    login: Arc<Mutex<LoginRequest>>,
    consent: Arc<Mutex<ConsentRequest>>,
    pub accepts: Arc<AtomicUsize>,
    pub accepted_consents: Arc<Mutex<Vec<AcceptConsent>>>,
}

impl FakeHydra {
    /// Forgets what earlier inputs did (the deps holding this Hydra live for the process).
    pub fn reset(&self) {
        self.accepts.store(0, Ordering::SeqCst);
        self.accepted_consents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
    pub fn set_login(&self, login: LoginRequest) {
        *self.login.lock().unwrap_or_else(|e| e.into_inner()) = login;
    }
    pub fn set_consent(&self, consent: ConsentRequest) {
        *self.consent.lock().unwrap_or_else(|e| e.into_inner()) = consent;
    }
    fn next() -> RedirectTo {
        RedirectTo {
            redirect_to: HYDRA_NEXT.to_owned(),
        }
    }
}

#[async_trait]
impl HydraAdmin for FakeHydra {
    async fn login_request(&self, _challenge: &str) -> Result<LoginRequest, UpstreamError> {
        Ok(self.login.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    async fn accept_login(
        &self,
        _challenge: &str,
        _body: &AcceptLogin,
    ) -> Result<RedirectTo, UpstreamError> {
        self.accepts.fetch_add(1, Ordering::SeqCst);
        Ok(Self::next())
    }
    async fn consent_request(&self, challenge: &str) -> Result<ConsentRequest, UpstreamError> {
        if challenge != "c1" {
            return Err(UpstreamError::NotFound {
                upstream: Upstream::Hydra,
            });
        }
        Ok(self
            .consent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
    async fn accept_consent(
        &self,
        _challenge: &str,
        body: &AcceptConsent,
    ) -> Result<RedirectTo, UpstreamError> {
        self.accepts.fetch_add(1, Ordering::SeqCst);
        self.accepted_consents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(body.clone());
        Ok(Self::next())
    }
    async fn reject_consent(
        &self,
        _challenge: &str,
        _body: &RejectRequest,
    ) -> Result<RedirectTo, UpstreamError> {
        self.accepts.fetch_add(1, Ordering::SeqCst);
        Ok(Self::next())
    }
    async fn logout_request(&self, _challenge: &str) -> Result<LogoutRequest, UpstreamError> {
        Ok(LogoutRequest::default())
    }
    async fn accept_logout(&self, _challenge: &str) -> Result<RedirectTo, UpstreamError> {
        Ok(Self::next())
    }
    async fn accept_device(
        &self,
        _challenge: &str,
        _body: &AcceptDevice,
    ) -> Result<RedirectTo, UpstreamError> {
        Ok(Self::next())
    }
    async fn client(&self, client_id: &str) -> Result<OAuth2Client, UpstreamError> {
        Ok(OAuth2Client {
            client_id: client_id.to_owned(),
            ..OAuth2Client::default()
        })
    }
}

/// A Kratos that knows exactly one session, behind [`SESSION_COOKIE`].
#[derive(Default, Clone)]
pub struct FakeKratos;

pub fn session() -> KratosSession {
    KratosSession {
        id: "sess-1".to_owned(),
        active: Some(true),
        authenticated_at: Some("2026-01-01T00:00:00Z".to_owned()),
        authenticator_assurance_level: Some("aal1".to_owned()),
        authentication_methods: vec![AuthenticationMethod {
            method: "oidc".to_owned(),
            provider: Some("google".to_owned()),
        }],
        identity: KratosIdentity {
            id: "ident-1".to_owned(),
            traits: serde_json::json!({"email": "ann@example.com", "name": {"first": "Ann", "last": "Lee"}}),
            verifiable_addresses: vec![VerifiableAddress {
                value: "ann@example.com".to_owned(),
                verified: true,
                via: "email".to_owned(),
            }],
        },
    }
}

#[async_trait]
impl KratosApi for FakeKratos {
    async fn whoami(&self, cookies: &str) -> Result<Option<KratosSession>, UpstreamError> {
        Ok((cookies == SESSION_COOKIE).then(session))
    }
    async fn revoke_session(&self, _session_id: &str) -> Result<(), UpstreamError> {
        Ok(())
    }
    async fn flow_error(&self, _id: &str) -> Result<Option<serde_json::Value>, UpstreamError> {
        Ok(None)
    }
}

/// A replay store that starts empty again on [`ResettableStore::reset`], so handler deps can be
/// built once per process while every input sees a fresh store.
#[derive(Default)]
pub struct ResettableStore(Mutex<Arc<MemoryReplayStore>>);

impl ResettableStore {
    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::default();
    }
    fn current(&self) -> Arc<MemoryReplayStore> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl ReplayStore for ResettableStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        self.current().claim(claim).await
    }
    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        self.current().complete(claim, redirect_to).await
    }
    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        self.current().release(claim).await
    }
}

/// Percent-encodes the bytes a request target cannot carry, so any input becomes a request
/// (API Gateway hands the functions what the browser sent, encoded the same way).
pub fn as_query(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits fuzz input into `n` parts at NUL bytes (missing parts are empty).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, &[]);
    out
}

/// A GET request; `None` when the bytes make no valid header value (a browser cannot send it).
pub fn get(path: &str, query: &[u8], cookie: &[u8]) -> Option<Request> {
    let mut builder = http::Request::builder()
        .method("GET")
        .uri(format!("{path}?{}", as_query(query)));
    if !cookie.is_empty() {
        builder = builder.header("cookie", http::HeaderValue::from_bytes(cookie).ok()?);
    }
    builder.body(Body::Empty).ok()
}

/// A form POST to `/consent`.
pub fn post(form: &[u8], cookie: &[u8], origin: &[u8]) -> Option<Request> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/consent")
        .header("content-type", "application/x-www-form-urlencoded");
    if !cookie.is_empty() {
        builder = builder.header("cookie", http::HeaderValue::from_bytes(cookie).ok()?);
    }
    if !origin.is_empty() {
        builder = builder.header("origin", http::HeaderValue::from_bytes(origin).ok()?);
    }
    builder.body(Body::Binary(form.to_vec())).ok()
}

/// The invariants of every response; panics (a crash for libFuzzer) when one fails.
pub fn check(response: &Response<Body>) {
    let status = response.status().as_u16();
    assert!(status != 500, "500 Internal Server Error");
    for (name, value) in response.headers() {
        assert!(
            !value
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "CR/LF/NUL in header {name}"
        );
    }
    if let Some(location) = response.headers().get("location") {
        let location = location.to_str().expect("Location is visible ASCII");
        let on_hydra = location.starts_with(&format!("{HYDRA_ORIGIN}/"))
            && url::Url::parse(location).is_ok_and(|u| {
                u.origin().ascii_serialization() == HYDRA_ORIGIN && u.username().is_empty()
            });
        let to_kratos = location.starts_with(KRATOS_LOGIN)
            && url::Url::parse(location).is_ok_and(|u| {
                u.query_pairs().filter(|(k, _)| k == "return_to").count() == 1
                    && u.query_pairs().any(|(k, v)| {
                        k == "return_to"
                            && v.starts_with("https://auth.example.com/login/return?t=")
                    })
            });
        // Single sign-on: straight to our own return function, carrying nothing but the token.
        let to_return = location.starts_with("https://auth.example.com/login/return?t=")
            && url::Url::parse(location).is_ok_and(|u| {
                u.origin().ascii_serialization() == "https://auth.example.com"
                    && u.path() == "/login/return"
                    && u.query_pairs().all(|(k, _)| k == "t")
                    && u.fragment().is_none()
            });
        assert!(
            on_hydra || to_kratos || to_return,
            "Location outside Hydra, Kratos and the return function: {location}"
        );
    }
}

/// Seeds are written by the targets' `init` when `BRIDGE_FUZZ_WRITE_SEEDS` names a directory, so
/// the committed corpus can be regenerated: `BRIDGE_FUZZ_WRITE_SEEDS=fuzz/corpus/<target>
/// cargo +nightly fuzz run <target> -- -runs=0`.
pub fn write_seed(name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("BRIDGE_FUZZ_WRITE_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(name), bytes);
    }
}

/// A login request as Hydra would describe it.
pub fn login_request(request_url: &str, skip: bool) -> LoginRequest {
    LoginRequest {
        client: OAuth2Client {
            client_id: "app".to_owned(),
            ..OAuth2Client::default()
        },
        request_url: request_url.to_owned(),
        requested_scope: vec!["openid".to_owned()],
        skip,
        subject: if skip {
            "ident-1".to_owned()
        } else {
            String::new()
        },
    }
}

/// A third-party consent request for `scopes`.
pub fn consent_request(scopes: &[&str]) -> ConsentRequest {
    ConsentRequest {
        client: OAuth2Client {
            client_id: "third".to_owned(),
            client_name: Some("Third".to_owned()),
            skip_consent: Some(false),
            ..OAuth2Client::default()
        },
        context: Some(serde_json::json!({
            "identity_id": "ident-1",
            "claims_by_scope": {"email": {"email": "ann@example.com"}, "profile": {"name": "Ann"}}
        })),
        requested_scope: scopes.iter().map(|s| (*s).to_owned()).collect(),
        requested_access_token_audience: vec!["api".to_owned()],
        request_url: String::new(),
        skip: false,
        subject: "ident-1".to_owned(),
    }
}

/// Reads the `Set-Cookie` pair and the `t=` token of a login entry redirect.
pub fn token_and_binding(response: &Response<Body>) -> Option<(String, String)> {
    let location = url::Url::parse(response.headers().get("location")?.to_str().ok()?).ok()?;
    let return_to = location
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())?;
    let token = url::Url::parse(&return_to)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())?;
    let cookie = response.headers().get("set-cookie")?.to_str().ok()?;
    let binding = cookie.split(';').next()?.split_once('=')?.1.to_owned();
    Some((token, binding))
}

/// Every file in the corpus directories libFuzzer was started with, read once at start-up: the
/// genuine seeds a target may legitimately accept (mutations of them must not be).
pub fn startup_corpus() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        let Ok(entries) = std::fs::read_dir(&arg) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                files.push(bytes);
            }
        }
    }
    files
}
