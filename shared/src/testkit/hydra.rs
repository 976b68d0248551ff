//! A Hydra admin API in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::setup::HYDRA_NEXT;
use crate::hydra::*;
use crate::upstream::{Upstream, UpstreamError};

/// The kinds of upstream failure tests inject.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamKind {
    /// The challenge or client is unknown (404).
    NotFound,
    /// The challenge expired or was used (410).
    Expired,
    /// A passing failure (timeout, connection refused, 5xx).
    Transient,
    /// Any other refusal (a 4xx).
    Rejected,
}

/// The error a real client returns for a failure of `kind` at `upstream`.
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
    any_login: Option<LoginRequest>,
    consents: HashMap<String, ConsentRequest>,
    logouts: HashMap<String, LogoutRequest>,
    failures: HashMap<String, UpstreamKind>,
    accept_failures: HashMap<String, UpstreamKind>,
    accepted_logins: HashMap<String, AcceptLogin>,
    accepted_consents: Vec<(String, AcceptConsent)>,
    rejected_consents: HashMap<String, RejectRequest>,
    accepted_logouts: Vec<String>,
    device_codes: HashMap<String, String>,
    accepted_devices: Vec<String>,
    clients: HashMap<String, OAuth2Client>,
    calls: Vec<String>,
    redirect: Option<String>,
    accept_delay: Option<Duration>,
}

/// A Hydra admin API that answers from memory and records what it was told.
///
/// It knows the challenges and clients it was given (others are 404), can be told to fail a
/// challenge or its accept, and sends the browser to [`HYDRA_NEXT`] (or [`FakeHydra::set_redirect`])
/// after every accept or reject. Clones share their state, so a test keeps one to look at what
/// the handler under test did with another.
#[derive(Default, Clone)]
pub struct FakeHydra(Arc<Mutex<HydraState>>);

impl FakeHydra {
    fn state(&self) -> MutexGuard<'_, HydraState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Makes `challenge` a known login request.
    pub fn add_login(&self, challenge: &str, login: LoginRequest) {
        self.state().logins.insert(challenge.to_owned(), login);
    }
    /// Makes every login challenge without a request of its own answer with `login` (the fuzz
    /// targets, whose challenges are arbitrary bytes).
    pub fn set_login(&self, login: LoginRequest) {
        self.state().any_login = Some(login);
    }
    /// Makes `challenge` a known consent request.
    pub fn add_consent(&self, challenge: &str, consent: ConsentRequest) {
        self.state().consents.insert(challenge.to_owned(), consent);
    }
    /// Makes `challenge` a known logout request.
    pub fn add_logout(&self, challenge: &str, logout: LogoutRequest) {
        self.state().logouts.insert(challenge.to_owned(), logout);
    }
    /// A device challenge whose request Hydra knows by `user_code` (usable once).
    pub fn add_device(&self, challenge: &str, user_code: &str) {
        self.state()
            .device_codes
            .insert(challenge.to_owned(), user_code.to_owned());
    }
    /// Makes a client known by its id.
    pub fn add_client(&self, client: OAuth2Client) {
        self.state()
            .clients
            .insert(client.client_id.clone(), client);
    }
    /// The user codes of the device requests accepted so far.
    pub fn accepted_devices(&self) -> Vec<String> {
        self.state().accepted_devices.clone()
    }
    /// Fails every call about `challenge` (or client id) with `kind`.
    pub fn fail_challenge(&self, challenge: &str, kind: UpstreamKind) {
        self.state().failures.insert(challenge.to_owned(), kind);
    }
    /// Fails the accepts and rejects of `challenge` with `kind` (reading it still works).
    pub fn fail_accept(&self, challenge: &str, kind: UpstreamKind) {
        self.state()
            .accept_failures
            .insert(challenge.to_owned(), kind);
    }
    /// Lets the accepts of `challenge` succeed again.
    pub fn heal_accept(&self, challenge: &str) {
        self.state().accept_failures.remove(challenge);
    }
    /// Where Hydra sends the browser after an accept or reject; `{challenge}` in `url` is
    /// replaced by the challenge, so every login gets its own destination.
    pub fn set_redirect(&self, url: &str) {
        self.state().redirect = Some(url.to_owned());
    }
    /// Makes every login accept take `delay`, so racing requests overlap.
    pub fn set_accept_delay(&self, delay: Duration) {
        self.state().accept_delay = Some(delay);
    }
    /// Forgets what earlier requests did (calls, accepts, rejects) but keeps what Hydra knows,
    /// for fakes that live as long as the process (the fuzz targets).
    pub fn reset(&self) {
        let mut state = self.state();
        state.calls.clear();
        state.accepted_logins.clear();
        state.accepted_consents.clear();
        state.rejected_consents.clear();
        state.accepted_logouts.clear();
        state.accepted_devices.clear();
    }
    /// The last login accept of `challenge`.
    pub fn accepted_login(&self, challenge: &str) -> Option<AcceptLogin> {
        self.state().accepted_logins.get(challenge).cloned()
    }
    /// The last consent accept of `challenge`.
    pub fn accepted_consent(&self, challenge: &str) -> Option<AcceptConsent> {
        self.state()
            .accepted_consents
            .iter()
            .rev()
            .find(|(c, _)| c == challenge)
            .map(|(_, body)| body.clone())
    }
    /// Every consent accept, of any challenge, in order.
    pub fn accepted_consents(&self) -> Vec<AcceptConsent> {
        self.state()
            .accepted_consents
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }
    /// The last consent reject of `challenge`.
    pub fn rejected_consent(&self, challenge: &str) -> Option<RejectRequest> {
        self.state().rejected_consents.get(challenge).cloned()
    }
    /// The logout challenges accepted so far.
    pub fn accepted_logouts(&self) -> Vec<String> {
        self.state().accepted_logouts.clone()
    }
    /// Every call so far, as `method:challenge`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }
    /// How many login accepts were asked for.
    pub fn accept_count(&self) -> usize {
        self.count(|call| call.starts_with("accept_login:"))
    }
    /// How many login accepts were asked for `challenge`.
    pub fn accepts_of(&self, challenge: &str) -> usize {
        let call = format!("accept_login:{challenge}");
        self.count(|c| c == call)
    }
    /// How many decisions (login accepts, consent accepts and rejects) were asked for.
    pub fn decisions(&self) -> usize {
        self.count(|call| {
            ["accept_login:", "accept_consent:", "reject_consent:"]
                .iter()
                .any(|prefix| call.starts_with(prefix))
        })
    }
    fn count(&self, which: impl Fn(&str) -> bool) -> usize {
        self.state().calls.iter().filter(|c| which(c)).count()
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
        let redirect = state.redirect.as_deref().unwrap_or(HYDRA_NEXT);
        Ok(RedirectTo {
            redirect_to: redirect.replace("{challenge}", challenge),
        })
    }
    /// Answers a read of `challenge` (`call`) with what `find` finds, 404 when nothing.
    fn look_up<T: Clone>(
        &self,
        call: &str,
        challenge: &str,
        find: impl FnOnce(&HydraState) -> Option<&T>,
    ) -> Result<T, UpstreamError> {
        self.check(call, challenge)?;
        find(&self.state()).cloned().ok_or(UpstreamError::NotFound {
            upstream: Upstream::Hydra,
        })
    }
    /// Takes a decision on `challenge` (`call`): fails as told, or lets `record` keep what was
    /// decided and sends the browser on.
    fn decide(&self, call: &str, challenge: &str, record: impl FnOnce(&mut HydraState)) -> Answer {
        self.check(call, challenge)?;
        self.decided(challenge, record)
    }
    /// The end of a decision whose call was already checked: see [`FakeHydra::decide`].
    fn decided(&self, challenge: &str, record: impl FnOnce(&mut HydraState)) -> Answer {
        let next = self.next(challenge)?;
        record(&mut self.state());
        Ok(next)
    }
}

/// What Hydra answers to a decision: where the browser goes next.
type Answer = Result<RedirectTo, UpstreamError>;

#[async_trait]
impl HydraAdmin for FakeHydra {
    async fn login_request(&self, challenge: &str) -> Result<LoginRequest, UpstreamError> {
        self.look_up("login_request", challenge, |s| {
            s.logins.get(challenge).or(s.any_login.as_ref())
        })
    }
    async fn accept_login(&self, challenge: &str, body: &AcceptLogin) -> Answer {
        self.check("accept_login", challenge)?;
        let delay = self.state().accept_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.decided(challenge, |s| {
            s.accepted_logins.insert(challenge.to_owned(), body.clone());
        })
    }
    async fn consent_request(&self, challenge: &str) -> Result<ConsentRequest, UpstreamError> {
        self.look_up("consent_request", challenge, |s| s.consents.get(challenge))
    }
    async fn accept_consent(&self, challenge: &str, body: &AcceptConsent) -> Answer {
        self.decide("accept_consent", challenge, |s| {
            s.accepted_consents
                .push((challenge.to_owned(), body.clone()))
        })
    }
    async fn reject_consent(&self, challenge: &str, body: &RejectRequest) -> Answer {
        self.decide("reject_consent", challenge, |s| {
            s.rejected_consents
                .insert(challenge.to_owned(), body.clone());
        })
    }
    async fn logout_request(&self, challenge: &str) -> Result<LogoutRequest, UpstreamError> {
        self.look_up("logout_request", challenge, |s| s.logouts.get(challenge))
    }
    async fn accept_logout(&self, challenge: &str) -> Answer {
        self.decide("accept_logout", challenge, |s| {
            s.accepted_logouts.push(challenge.to_owned())
        })
    }
    async fn accept_device(&self, challenge: &str, body: &AcceptDevice) -> Answer {
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
        self.look_up("client", client_id, |s| s.clients.get(client_id))
    }
}
