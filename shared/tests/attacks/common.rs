//! What the attack categories share: the tally of attempts, a deterministic generator and the
//! set-up of a genuine sign-in to attack. Also the one import list of the suite.

pub use std::cell::RefCell;
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

/// A genuine sign-in under attack: a kit whose Kratos knows both sessions, the token login entry
/// issued for one challenge with its binding cookie and its decoded segments, and the tally of
/// one category.
pub struct Attack {
    pub kit: Kit,
    pub token: String,
    pub binding: String,
    /// The token's JWS header.
    pub header: Value,
    /// The token's claims.
    pub claims: Value,
    /// The token's signature, as it stands in the token.
    pub signature: String,
    tally: RefCell<Tally>,
}

impl Attack {
    /// Issues a token for `challenge` (with Hydra's `request_url`) to attack in `category`.
    pub async fn new(category: &'static str, challenge: &str, request_url: &str) -> Self {
        let kit = Kit::with_sessions();
        let (token, binding) = issue(&kit, challenge, request_url).await;
        let (header, claims, signature) = segments(&token);
        Self {
            kit,
            token,
            binding,
            header,
            claims,
            signature,
            tally: RefCell::new(Tally::new(category)),
        }
    }

    /// Sends `token` from the browser of this sign-in: it must be refused with a 400.
    pub async fn refused(&self, what: &str, token: &str) {
        let problems = return_problems(&self.kit, token, &self.binding, &[400]).await;
        self.record(what, problems);
    }

    /// Records one attempt of this category, as [`Tally::record`].
    pub fn record(&self, what: &str, problems: Vec<String>) {
        self.tally.borrow_mut().record(what, problems);
    }

    /// Checks the genuine token still works after all the attempts, then closes the tally.
    pub async fn finish(self) {
        genuine_is_accepted(&self.kit, &self.token, &self.binding).await;
        self.close();
    }

    /// Closes the tally, for a test that used the genuine token itself.
    pub fn close(self) {
        self.tally.into_inner().finish();
    }
}

/// The header, claims and signature of a compact JWS.
pub fn segments(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64")).expect("json")
    };
    (decode(parts[0]), decode(parts[1]), parts[2].to_owned())
}

/// Hands `request` to the handler named `handler` (`login`, `return`, `consent`, `logout`, else
/// the error page) on `kit`.
pub async fn dispatch(kit: &Kit, handler: &str, request: Request) -> Response<Body> {
    match handler {
        "login" => login::handle(request, &kit.login_deps()).await,
        "return" => login_return::handle(request, &kit.return_deps()).await,
        "consent" => consent::handle(request, &kit.consent_deps()).await,
        "logout" => logout::handle(request, &kit.logout_deps()).await,
        _ => error_page::handle(request, &kit.error_deps()).await,
    }
}

/// Sends `token` to the return handler with the cookie header `cookies`.
pub async fn send_return(kit: &Kit, token: &str, cookies: &str) -> Response<Body> {
    login_return::handle(get(&return_link(token), Some(cookies)), &kit.return_deps()).await
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
    tally.record(what, return_problems(kit, token, binding, statuses).await);
}

/// What is wrong with how the return handler answered `token` from the browser `binding` was
/// set in: empty when it refused with one of `statuses` without any accept or claim.
pub async fn return_problems(
    kit: &Kit,
    token: &str,
    binding: &str,
    statuses: &[u16],
) -> Vec<String> {
    let before = kit.hydra.accept_count();
    let response = send_return(kit, token, &return_cookies(binding)).await;
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
    problems
}

/// Proves the set-up was sound: the untouched token is accepted.
pub async fn genuine_is_accepted(kit: &Kit, token: &str, binding: &str) {
    let response = send_return(kit, token, &return_cookies(binding)).await;
    assert_eq!(response.status(), 303, "the genuine token must work");
    assert_eq!(kit.hydra.accept_count(), 1);
}
