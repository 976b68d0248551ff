//! What the attack categories share: the tally of attempts, a deterministic generator and the
//! set-up of a genuine sign-in to attack. Also the one import list of the suite.

pub use std::collections::BTreeSet;
pub use std::time::{Duration, Instant};

pub use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
pub use base64::Engine as _;
pub use bridge::handlers::{consent, error_page, login, login_return, logout};
pub use bridge::hydra::LogoutRequest;
pub use bridge::keyset::KeySet;
pub use bridge::replay::ReplayStore;
pub use bridge::testkit::*;
pub use bridge::token::TokenCodec;
pub use jsonwebtoken::{Algorithm, EncodingKey, Header};
pub use lambda_http::{Body, Request, Response};
pub use serde_json::{json, Value};
pub use url::Url;

pub use crate::checks::*;

// ------------------------------------------------------------------------------------------
// Bookkeeping

/// Counts one category of attempts; `finish` prints the line and fails on any acceptance.
pub struct Tally {
    category: &'static str,
    tried: usize,
    refused: usize,
    accepted: Vec<String>,
}

impl Tally {
    pub fn new(category: &'static str) -> Self {
        Self {
            category,
            tried: 0,
            refused: 0,
            accepted: Vec::new(),
        }
    }

    /// Records one attempt: `problems` empty means it was refused as it should be.
    pub fn record(&mut self, what: &str, problems: Vec<String>) {
        self.tried += 1;
        if problems.is_empty() {
            self.refused += 1;
        } else {
            self.accepted
                .push(format!("{what}: {}", problems.join("; ")));
        }
    }

    pub fn finish(self) {
        report(&format!(
            "attacks: {} {} tried, {} refused, {} accepted",
            self.category,
            self.tried,
            self.refused,
            self.accepted.len()
        ));
        assert!(self.tried > 0, "{}: nothing was tried", self.category);
        assert!(
            self.accepted.is_empty(),
            "{}: {} of {} attempts got through:\n{}",
            self.category,
            self.accepted.len(),
            self.tried,
            self.accepted.join("\n")
        );
    }
}

/// A small deterministic generator, so every run tries the same combinations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ------------------------------------------------------------------------------------------
// Set-up

/// A real token and its binding cookie, issued by the login entry handler for `challenge`.
pub async fn issue(kit: &Kit, challenge: &str, request_url: &str) -> (String, String) {
    issue_for(kit, challenge, login_request(false, "", request_url)).await
}

/// Like [`issue`], for a login request as Hydra describes it (a client with a policy, say).
pub async fn issue_for(
    kit: &Kit,
    challenge: &str,
    login: bridge::hydra::LoginRequest,
) -> (String, String) {
    kit.hydra.add_login(challenge, login);
    let response = login::handle(
        get(&format!("/login?login_challenge={challenge}"), None),
        &kit.login_deps(),
    )
    .await;
    assert_eq!(response.status(), 303, "login entry issues a token");
    token_and_binding(&response).expect("a token and its binding cookie")
}

/// Shows the consent screen for `challenge` and returns (cookie pair, CSRF token).
pub async fn consent_screen(kit: &Kit, challenge: &str) -> (String, String) {
    let response = consent::handle(
        get(&format!("/consent?consent_challenge={challenge}"), None),
        &kit.consent_deps(),
    )
    .await;
    assert_eq!(response.status(), 200, "consent screen");
    assert!(
        violations(&response).is_empty(),
        "{:?}",
        violations(&response)
    );
    form_csrf(&response)
}

/// The cookies of the browser `binding` was set in, signed in to Kratos.
pub fn return_cookies(binding: &str) -> String {
    format!("__Host-bridge_binding={binding}; {SESSION_COOKIE}")
}

/// Sends `token` to the return handler with the right cookies and records whether it was
/// refused with one of `statuses` without any accept or claim.
pub async fn attack_return(
    kit: &Kit,
    tally: &mut Tally,
    what: &str,
    token: &str,
    binding: &str,
    statuses: &[u16],
) {
    let before = kit.hydra.accept_count();
    let response = login_return::handle(
        get(&return_link(token), Some(&return_cookies(binding))),
        &kit.return_deps(),
    )
    .await;
    let mut problems = violations(&response);
    if !statuses.contains(&response.status().as_u16()) {
        problems.push(format!(
            "status {} (expected {statuses:?})",
            response.status()
        ));
    }
    if kit.hydra.accept_count() != before {
        problems.push("Hydra accept_login was called".to_owned());
    }
    if !kit.replay.is_empty() {
        problems.push("a claim was written".to_owned());
    }
    tally.record(what, problems);
}

/// Proves the set-up was sound: the untouched token is accepted.
pub async fn genuine_is_accepted(kit: &Kit, token: &str, binding: &str) {
    let response = login_return::handle(
        get(&return_link(token), Some(&return_cookies(binding))),
        &kit.return_deps(),
    )
    .await;
    assert_eq!(response.status(), 303, "the genuine token must work");
    assert_eq!(kit.hydra.accept_count(), 1);
}
