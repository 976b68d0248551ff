//! End-to-end scenarios in a real headless Chromium against the real local stack.
//!
//! Every scenario uses its own browser(s) and its own, never-seen Google account or phone
//! number, so they run in any order and in parallel. `./scripts/test` starts the stack(s) and
//! runs them with `--run-ignored all`; see tests/README.md.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bridge_e2e::{
    e2e, e2e_short_ttl, same_origin, unique_phone, Browser, Document, GoogleUser, Mark, Stack,
};
use demo_client::device::{DeviceAuthorization, DeviceError};
use demo_client::oauth::TokenError;
use serde_json::Value;
use url::Url;

const FIRST_PARTY: &str = "demo-first-party";
const SECOND_FIRST_PARTY: &str = "demo-second";
const THIRD_PARTY: &str = "demo-third-party";
const THIRD_PARTY_NAME: &str = "Third-Party Demo App";

// --- small helpers -------------------------------------------------------------------------

/// A full Google sign-in for `client_id`, from the demo client to its claims page.
async fn google_login(b: &Browser, client_id: &str, user: &GoogleUser) -> Value {
    google_sign_in(b, client_id, None, user).await;
    b.wait_for_claims().await
}

/// A Google sign-in for `client_id` from the demo client through the login site and the mock,
/// up to wherever the bridge sends the browser next.
async fn google_sign_in(b: &Browser, client_id: &str, scope: Option<&str>, user: &GoogleUser) {
    b.start(client_id, scope, None).await;
    b.wait_for_login_site().await;
    b.sign_in_with_google(user).await;
}

/// A Google account at the mock that Kratos has never seen.
async fn new_google_user(stack: &Stack, tag: &str) -> GoogleUser {
    let user = GoogleUser::unique(tag);
    stack.put_google_user(&user).await;
    user
}

/// Panics with `why` unless Hydra still waits for an answer to the login `challenge`.
async fn assert_login_pending(stack: &Stack, challenge: &str, why: &str) {
    assert_eq!(stack.hydra_login_request(challenge).await.0, 200, "{why}");
}

/// A new Google account, registered with Kratos by a first login in its own browser.
async fn registered_google_user(ctx: &bridge_e2e::Ctx, tag: &str) -> (GoogleUser, String) {
    let user = GoogleUser::unique(tag);
    ctx.stack.put_google_user(&user).await;
    let b = ctx.browser().await;
    let claims = google_login(&b, FIRST_PARTY, &user).await;
    (user, sub_of(&claims))
}

fn sub_of(claims: &Value) -> String {
    claims["sub"]
        .as_str()
        .unwrap_or_else(|| panic!("ID token without sub: {claims}"))
        .to_owned()
}

/// Identities whose e-mail trait is `email`.
async fn ids_with_email(stack: &Stack, email: &str) -> Vec<String> {
    ids(stack.identities_with_trait("email", email).await)
}

async fn ids_with_phone(stack: &Stack, phone: &str) -> Vec<String> {
    ids(stack.identities_with_trait("phone", phone).await)
}

fn ids(identities: Vec<Value>) -> Vec<String> {
    identities
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

/// The Kratos session id behind a cookie header (panics unless whoami says 200).
async fn kratos_session(stack: &Stack, cookie: &str) -> Value {
    let (status, session) = stack.whoami(cookie).await;
    assert_eq!(
        status, 200,
        "whoami with the browser's Kratos cookie: {session}"
    );
    session
}

/// The `login_challenge` the bridge received in `b`'s most recent visit to `/login`.
async fn last_login_challenge(b: &Browser) -> String {
    let history = b.history().await;
    history
        .requests_to(&b.stack().functions, "/login")
        .iter()
        .rev()
        .find_map(|u| param(u, "login_challenge"))
        .unwrap_or_else(|| panic!("[{}] the bridge's /login was never visited", b.label))
}

/// The return URL (`<functions>/login/return?t=...`) the bridge's latest `/login` handed to
/// Kratos (from the Location of its 303).
async fn last_return_url(b: &Browser) -> Url {
    let history = b.history().await;
    history
        .responses_from(&b.stack().functions, "/login")
        .iter()
        .rev()
        .filter_map(Document::location)
        .find_map(|kratos| param(&kratos, "return_to"))
        .and_then(|r| Url::parse(&r).ok())
        .unwrap_or_else(|| panic!("[{}] no /login redirect to Kratos with return_to", b.label))
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The `exp` claim (epoch seconds) of the return token in `return_url` (the JWT claims are
/// signed, not encrypted).
fn token_expiry(return_url: &Url) -> u64 {
    let token = param(return_url, "t").expect("t parameter");
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|c| serde_json::from_slice::<Value>(&c).ok())
        .expect("JWT claims");
    claims["exp"].as_u64().expect("exp claim")
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Changes one character in the middle of a JWT (never a dot) to another base64url one.
fn tamper(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let mut i = chars.len() / 2;
    while chars.get(i) == Some(&'.') {
        i += 1;
    }
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The bridge's own message page: title testid and the HTTP status the browser got for it.
async fn bridge_page(b: &Browser, url: &Url) -> (u16, String, String) {
    let mark = b.mark().await;
    b.goto(url).await;
    let title = b.text("page-title").await;
    let message = b.text("page-message").await;
    let status = b
        .since(mark)
        .await
        .responses
        .iter()
        .find(|d| d.url == *url)
        .map(|d| d.status)
        .unwrap_or_else(|| panic!("[{}] no response recorded for {url}", b.label));
    (status, title, message)
}

/// Checks the headers every HTML page of the functions must carry.
fn assert_secure_html_headers(what: &str, headers: &dyn Fn(&str) -> Option<String>) {
    let csp = headers("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{what}: CSP without frame-ancestors 'none': {csp}"
    );
    assert_eq!(
        headers("x-frame-options").map(|v| v.to_ascii_uppercase()),
        Some("DENY".to_owned()),
        "{what}: X-Frame-Options"
    );
    assert_eq!(
        headers("referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}: Referrer-Policy"
    );
    let cache = headers("cache-control").unwrap_or_default();
    assert!(
        cache.contains("no-store"),
        "{what}: Cache-Control without no-store: {cache:?}"
    );
}

// --- scenarios -----------------------------------------------------------------------------

/// An unknown Google user is registered by Kratos on the way; the ID token's `sub` is the new
/// Kratos identity, the first-party client skips the consent screen.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_google_new_user() {
    e2e("e2e_google_new_user", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("new");
        stack.put_google_user(&user).await;
        assert!(ids_with_email(stack, &user.email).await.is_empty());

        let b = ctx.browser().await;
        let claims = google_login(&b, FIRST_PARTY, &user).await;

        let sub = sub_of(&claims);
        assert_eq!(
            claims["email"],
            user.email.as_str(),
            "email claim: {claims}"
        );
        assert_eq!(ids_with_email(stack, &user.email).await, vec![sub.clone()]);
        let identity = stack
            .identity(&sub)
            .await
            .expect("the sub is a Kratos identity");
        assert_eq!(identity["traits"]["email"], user.email.as_str());
        let oidc = identity["credentials"]["oidc"]["identifiers"].to_string();
        assert!(
            oidc.contains(&format!("google:{}", user.sub)),
            "oidc credential of {sub}: {oidc}"
        );
        // First party: the consent function answered with a redirect, never a page.
        let history = b.history().await;
        let consent = history.responses_from(&stack.functions, "/consent");
        assert!(!consent.is_empty(), "consent endpoint was not involved");
        assert!(
            consent.iter().all(|d| d.status == 303),
            "first-party consent showed a page: {consent:?}"
        );
    })
    .await;
}

/// The same Google user again, in a new browser: same subject, no new identity.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_google_returning_user() {
    e2e("e2e_google_returning_user", |ctx| async move {
        let stack = &ctx.stack;
        let (user, first_sub) = registered_google_user(&ctx, "returning").await;
        let before = ids_with_email(stack, &user.email).await;
        assert_eq!(before, vec![first_sub.clone()]);
        let total_before = stack.identities().await.len();

        let b = ctx.browser().await;
        let claims = google_login(&b, FIRST_PARTY, &user).await;

        assert_eq!(
            sub_of(&claims),
            first_sub,
            "returning user got another subject"
        );
        assert_eq!(claims["email"], user.email.as_str());
        assert_eq!(
            ids_with_email(stack, &user.email).await,
            before,
            "a second identity was created for a returning user"
        );
        // Other scenarios may register users at the same time: the total can only grow by
        // their users, never by this one (checked above); report it for the log.
        eprintln!(
            "identities: {total_before} before, {} after",
            stack.identities().await.len()
        );
    })
    .await;
}

/// An unknown phone number registers through the login site's registration flow with an SMS
/// code and gets an ID token with `phone_number`.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_sms_new_user() {
    e2e("e2e_sms_new_user", |ctx| async move {
        let stack = &ctx.stack;
        let phone = unique_phone();
        assert!(ids_with_phone(stack, &phone).await.is_empty());

        let b = ctx.browser().await;
        b.start(FIRST_PARTY, Some("openid phone email"), None).await;
        b.wait_for_login_site().await;
        b.sign_up_with_sms(&phone).await;
        let claims = b.wait_for_claims().await;

        let sub = sub_of(&claims);
        assert_eq!(claims["phone_number"], phone.as_str(), "claims: {claims}");
        assert_eq!(ids_with_phone(stack, &phone).await, vec![sub.clone()]);
        let scope = b.granted_scope().await;
        assert!(
            scope.iter().any(|s| s == "phone"),
            "granted scope {scope:?}"
        );
        let session = kratos_session(stack, &b.kratos_cookie_header().await).await;
        assert_eq!(session["identity"]["id"], sub.as_str());
    })
    .await;
}

/// An existing phone identity signs in by SMS code: same subject.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_sms_returning_user() {
    e2e("e2e_sms_returning_user", |ctx| async move {
        let stack = &ctx.stack;
        let phone = unique_phone();
        let first = ctx.browser().await;
        first.start(FIRST_PARTY, Some("openid phone"), None).await;
        first.wait_for_login_site().await;
        first.sign_up_with_sms(&phone).await;
        let first_sub = sub_of(&first.wait_for_claims().await);

        let b = ctx.browser().await;
        b.start(FIRST_PARTY, Some("openid phone"), None).await;
        b.wait_for_login_site().await;
        b.sign_in_with_sms(&phone).await;
        let claims = b.wait_for_claims().await;

        assert_eq!(sub_of(&claims), first_sub);
        assert_eq!(claims["phone_number"], phone.as_str());
        assert_eq!(ids_with_phone(stack, &phone).await, vec![first_sub]);
    })
    .await;
}

/// Signed in for client A, client B in the same browser passes without the login site and
/// with the same Kratos session; a third-party client still asks for consent.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_sso_second_client() {
    e2e("e2e_sso_second_client", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("sso");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        let first = google_login(&b, FIRST_PARTY, &user).await;
        let sub = sub_of(&first);
        let cookie = b.kratos_cookie_header().await;
        let session = kratos_session(stack, &cookie).await;

        // Client B: straight to its claims page.
        let mark = b.mark().await;
        b.start(SECOND_FIRST_PARTY, None, None).await;
        let second = b.wait_for_claims().await;
        let during = b.since(mark).await;
        assert_eq!(sub_of(&second), sub);
        assert!(
            second["aud"].to_string().contains(SECOND_FIRST_PARTY),
            "ID token not for client B: {second}"
        );
        assert!(
            !during.visited(&stack.login_site),
            "client B went through the login site: {:?}",
            during.requests
        );
        assert!(
            !during.visited(&stack.mock_google),
            "client B went to Google again"
        );
        assert!(
            during.requests_to(&stack.functions, "/login").len() == 1,
            "client B's login did not go through the bridge once: {:?}",
            during.requests
        );
        assert!(
            during
                .requests_to(&stack.kratos_public, "/self-service/login/browser")
                .is_empty(),
            "client B started a Kratos login flow"
        );
        let after = kratos_session(stack, &b.kratos_cookie_header().await).await;
        assert_eq!(
            after["id"], session["id"],
            "the Kratos session was replaced"
        );
        assert_eq!(after["authenticated_at"], session["authenticated_at"]);

        // A third-party client: no login either, but the consent screen.
        let mark = b.mark().await;
        b.start(THIRD_PARTY, None, None).await;
        b.wait_for("consent-title").await;
        assert_eq!(b.text("client-name").await, THIRD_PARTY_NAME);
        b.click("allow").await;
        let third = b.wait_for_claims().await;
        assert_eq!(sub_of(&third), sub);
        let during = b.since(mark).await;
        assert!(
            !during.visited(&stack.login_site),
            "the third-party client went through the login site"
        );
    })
    .await;
}

/// `prompt=login` after a login: the login site appears again and the user authenticates anew.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_prompt_login_forces_reauth() {
    e2e("e2e_prompt_login_forces_reauth", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("reauth");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        let first = google_login(&b, FIRST_PARTY, &user).await;
        let before = kratos_session(stack, &b.kratos_cookie_header().await).await;

        let mark = b.mark().await;
        b.start(FIRST_PARTY, None, Some("login")).await;
        b.wait_for_login_site().await;
        let kratos_start = b
            .since(mark)
            .await
            .requests_to(&stack.kratos_public, "/self-service/login/browser");
        assert!(
            kratos_start
                .iter()
                .any(|u| param(u, "refresh").as_deref() == Some("true")),
            "prompt=login did not ask Kratos for a refreshed login: {kratos_start:?}"
        );
        b.sign_in_with_google(&user).await;
        let second = b.wait_for_claims().await;

        assert_eq!(sub_of(&second), sub_of(&first));
        let during = b.since(mark).await;
        assert!(during.visited(&stack.mock_google), "no new Google sign-in");
        let first_auth = first["auth_time"].as_u64().unwrap_or(0);
        let second_auth = second["auth_time"].as_u64().unwrap_or(0);
        assert!(
            second_auth >= first_auth,
            "auth_time went back: {first_auth} -> {second_auth}"
        );
        let after = kratos_session(stack, &b.kratos_cookie_header().await).await;
        assert_ne!(
            after["authenticated_at"], before["authenticated_at"],
            "Kratos did not re-authenticate"
        );
    })
    .await;
}

/// The third-party consent screen: untick `profile` and allow (granted subset, no name
/// claims); then deny (the client gets `access_denied`).
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_consent_screen_allow_and_deny() {
    e2e("e2e_consent_screen_allow_and_deny", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("consent");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        let scope = "openid email profile";
        b.start(THIRD_PARTY, Some(scope), None).await;
        b.wait_for_login_site().await;
        b.sign_in_with_google(&user).await;

        b.wait_for("consent-title").await;
        assert_eq!(b.text("client-name").await, THIRD_PARTY_NAME);
        for name in ["openid", "email", "profile"] {
            let checkbox = b.wait_for(&format!("scope-{name}")).await;
            assert!(
                checkbox.is_selected().await.unwrap_or(false),
                "scope {name} is not pre-ticked"
            );
        }
        let openid = b.wait_for("scope-openid").await;
        assert!(
            !openid.is_enabled().await.unwrap_or(true),
            "openid can be unticked"
        );
        b.click("scope-profile").await;
        b.click("allow").await;
        let claims = b.wait_for_claims().await;

        let granted = b.granted_scope().await;
        assert!(granted.iter().any(|s| s == "openid"), "{granted:?}");
        assert!(granted.iter().any(|s| s == "email"), "{granted:?}");
        assert!(!granted.iter().any(|s| s == "profile"), "{granted:?}");
        assert_eq!(claims["email"], user.email.as_str());
        for claim in ["name", "given_name", "family_name"] {
            assert!(
                claims.get(claim).is_none(),
                "{claim} without profile: {claims}"
            );
        }

        // Second run, same browser: the choice was not remembered, so the screen comes again.
        b.start(THIRD_PARTY, Some(scope), None).await;
        b.wait_for("consent-title").await;
        b.click("deny").await;
        assert_eq!(b.text("oauth-error").await, "access_denied");
    })
    .await;
}

/// A used return URL opened in another browser (with its own Kratos session) is refused, with
/// or without the first browser's binding cookie, and that browser's own login stays pending;
/// the first browser reopening it lands where it did the first time.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_replay_rejected() {
    e2e("e2e_replay_rejected", |ctx| async move {
        let stack = &ctx.stack;
        let alice = GoogleUser::unique("replay-a");
        let mallory = GoogleUser::unique("replay-m");
        stack.put_google_user(&alice).await;
        stack.put_google_user(&mallory).await;

        let a = ctx.browser().await;
        google_login(&a, FIRST_PARTY, &alice).await;
        let return_url = last_return_url(&a).await;
        let history = a.history().await;
        let first_answer = history
            .responses
            .iter()
            .find(|d| d.url == return_url)
            .cloned()
            .expect("the browser went through the return URL");
        assert_eq!(first_answer.status, 303, "first use of the return URL");
        let first_target = first_answer.location().expect("redirect target");
        assert!(bridge_e2e::same_origin(&first_target, &stack.hydra_public));

        // Another browser with a Kratos session of its own and a login of its own pending.
        let m = ctx.browser().await;
        google_login(&m, FIRST_PARTY, &mallory).await;
        m.start(FIRST_PARTY, None, Some("login")).await;
        m.wait_for_login_site().await;
        let pending = last_login_challenge(&m).await;
        assert_eq!(stack.hydra_login_request(&pending).await.0, 200);

        let (status, title, _) = bridge_page(&m, &return_url).await;
        assert_eq!(status, 403, "replay in another browser: {title}");
        let (status, title, message) = {
            // Even with the first browser's binding cookie (stolen along with the link).
            let name = if stack
                .vars
                .get("BRIDGE_DEV_INSECURE_COOKIES")
                .map(String::as_str)
                == Some("true")
            {
                "bridge_binding"
            } else {
                "__Host-bridge_binding"
            };
            let binding = a
                .cookie(name)
                .await
                .expect("binding cookie in the first browser");
            m.set_cookie(name, &binding).await;
            bridge_page(&m, &return_url).await
        };
        assert_eq!(status, 403, "replay with a stolen binding cookie: {title}");
        assert!(message.contains("already been used"), "{message}");
        assert_eq!(
            stack.hydra_login_request(&pending).await.0,
            200,
            "the other browser's own login was accepted"
        );
        assert!(!m.exists("claims").await);

        // The first browser reopening its link goes where it went the first time.
        let mark = a.mark().await;
        a.goto(&return_url).await;
        let again = a
            .since(mark)
            .await
            .responses
            .into_iter()
            .find(|d| d.url == return_url)
            .expect("response to the reopened return URL");
        assert_eq!(again.status, 303, "reopened by the same browser");
        assert_eq!(again.location(), Some(first_target));
        let landed = a.url().await;
        assert!(
            !(bridge_e2e::same_origin(&landed, &stack.functions)
                && landed.path() == "/login/return"),
            "the same browser was refused: {landed}"
        );
        if a.exists("page-title").await {
            let title = a.text("page-title").await;
            assert_ne!(title, "Sign-in refused", "the same browser was refused");
        }
    })
    .await;
}

/// One character changed in the middle of the return token: 400, and the login is not
/// accepted (the untouched link still works afterwards).
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_tampered_token_rejected() {
    e2e("e2e_tampered_token_rejected", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("tamper");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        b.start(FIRST_PARTY, None, None).await;
        b.wait_for_login_site().await;
        let challenge = last_login_challenge(&b).await;
        let real = last_return_url(&b).await;
        let token = param(&real, "t").expect("t");
        let mut tampered = real.clone();
        tampered
            .query_pairs_mut()
            .clear()
            .append_pair("t", &tamper(&token));
        assert_ne!(tampered, real);

        let (status, title, _) = bridge_page(&b, &tampered).await;
        assert_eq!(status, 400, "tampered token: {title}");
        assert_eq!(title, "Invalid sign-in link");
        assert_eq!(
            stack.hydra_login_request(&challenge).await.0,
            200,
            "the login was accepted with a tampered token"
        );

        // The genuine link still leads through the login to the client.
        b.goto(&real).await;
        b.wait_for_login_site().await;
        b.sign_in_with_google(&user).await;
        let claims = b.wait_for_claims().await;
        assert_eq!(claims["email"], user.email.as_str());
    })
    .await;
}

/// Waiting at the login site past Hydra's login/consent TTL (and the token's), then finishing
/// the login: the browser is not stuck on an error page but restarts through Hydra's
/// request_url and reaches the client (or a fresh login).
#[tokio::test]
#[ignore = "needs the short-TTL local stack; run ./scripts/test"]
async fn e2e_expired_challenge_restarts() {
    e2e_short_ttl("e2e_expired_challenge_restarts", |ctx| async move {
        let stack = &ctx.stack;
        assert!(
            stack.login_consent_ttl <= Duration::from_secs(120),
            "{} declares a login/consent TTL of {:?}: not a short-TTL stack",
            stack.env_file.display(),
            stack.login_consent_ttl
        );
        let user = GoogleUser::unique("expired");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        b.start(FIRST_PARTY, None, None).await;
        b.wait_for_login_site().await;
        let challenge = last_login_challenge(&b).await;
        let exp = token_expiry(&last_return_url(&b).await);

        // Sit at the login site until both Hydra's challenge and the return token are dead.
        let patience = stack.login_consent_ttl + Duration::from_secs(60);
        let deadline = Instant::now() + patience;
        loop {
            let (status, _) = stack.hydra_login_request(&challenge).await;
            if status != 200 && now_epoch() >= exp {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "challenge still alive (HTTP {status}) after {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let mark = b.mark().await;
        b.sign_in_with_google(&user).await;
        let mut landed = b
            .wait_for_any(&["claims-json", "provider-google", "page-title"])
            .await;
        let returns = b
            .since(mark)
            .await
            .responses_from(&stack.functions, "/login/return");
        assert!(
            !returns.is_empty(),
            "the login did not come back to the bridge"
        );
        if landed == "page-title" {
            // The bridge's page for an expired sign-in: it must offer the way back in.
            let title = b.text("page-title").await;
            let message = b.text("page-message").await;
            if !b.exists("page-action").await {
                panic!(
                    "dead end after the TTL: bridge page {title:?} ({message}) without a way \
                     to start again; /login/return answered {:?}",
                    returns.iter().map(|d| d.status).collect::<Vec<_>>()
                );
            }
            let href = b
                .wait_for("page-action")
                .await
                .attr("href")
                .await
                .ok()
                .flatten()
                .and_then(|h| Url::parse(&h).ok())
                .expect("page-action href");
            assert!(
                bridge_e2e::same_origin(&href, &stack.hydra_public)
                    && href.path() == "/oauth2/auth",
                "the expired page offers {href}, not Hydra's request_url"
            );
            eprintln!("expired page {title:?} offers {href}; following it");
            b.click("page-action").await;
            landed = b.wait_for_any(&["claims-json", "provider-google"]).await;
        }
        let during = b.since(mark).await;
        assert!(
            during.requests.iter().any(|u| {
                bridge_e2e::same_origin(u, &stack.hydra_public) && u.path() == "/oauth2/auth"
            }),
            "no restart through Hydra's request_url: {:?}",
            during.requests
        );
        if landed == "claims-json" {
            // The Kratos session made a moment ago signs the restarted request in (SSO).
            let claims = b.wait_for_claims().await;
            assert_eq!(claims["email"], user.email.as_str());
        }
    })
    .await;
}

/// RP-initiated logout ends the Hydra session and the Kratos session.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_logout_ends_both_sessions() {
    e2e("e2e_logout_ends_both_sessions", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("logout");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        google_login(&b, FIRST_PARTY, &user).await;
        let cookie = b.kratos_cookie_header().await;
        kratos_session(stack, &cookie).await;

        let mut logout = stack.demo("logout");
        logout
            .query_pairs_mut()
            .append_pair("client_id", FIRST_PARTY);
        b.goto(&logout).await;
        b.wait_for("logged-out").await;
        assert_eq!(b.text("logout-state").await, "Logout state verified.");

        let (status, body) = stack.whoami(&cookie).await;
        assert_eq!(
            status, 401,
            "Kratos session still alive after logout: {body}"
        );
        // Hydra forgot the login too: the next login needs the login site again.
        b.start(FIRST_PARTY, None, None).await;
        b.wait_for_login_site().await;
    })
    .await;
}

/// Every HTML page the functions serve carries the security headers: the consent screen (real
/// challenge), the error page, the 400 and 403 pages, and every page a browser saw.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_security_headers() {
    e2e("e2e_security_headers", |ctx| async move {
        let stack = &ctx.stack;
        let user = GoogleUser::unique("headers");
        stack.put_google_user(&user).await;
        let b = ctx.browser().await;
        b.start(THIRD_PARTY, None, None).await;
        b.wait_for_login_site().await;
        let return_url = last_return_url(&b).await;
        b.sign_in_with_google(&user).await;
        b.wait_for("consent-title").await;
        let consent_url = b.url().await;
        assert_eq!(consent_url.path(), "/consent");

        let pages: Vec<(&str, Url, u16)> = vec![
            ("consent screen", consent_url.clone(), 200),
            (
                "error page",
                stack.function("error?error=access_denied&error_description=Denied"),
                200,
            ),
            ("login without challenge", stack.function("login"), 400),
            (
                "login with a malformed challenge",
                stack.function("login?login_challenge=%3Cscript%3E"),
                400,
            ),
            ("return without token", stack.function("login/return"), 400),
            (
                "return with garbage token",
                stack.function("login/return?t=not.a.token"),
                400,
            ),
            (
                "return from a browser without the binding cookie",
                return_url.clone(),
                403,
            ),
            ("consent without challenge", stack.function("consent"), 400),
            ("logout without challenge", stack.function("logout"), 400),
        ];
        for (what, url, status) in &pages {
            let response = stack.get(url).await;
            assert_eq!(response.status().as_u16(), *status, "{what}: {url}");
            let headers = response.headers().clone();
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                content_type.starts_with("text/html"),
                "{what}: {content_type}"
            );
            assert_secure_html_headers(what, &|name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        }

        // Finish in the browser, then check every document the functions sent it.
        b.click("allow").await;
        b.wait_for_claims().await;
        let history = b.history().await;
        let from_functions: Vec<&Document> = history
            .responses
            .iter()
            .filter(|d| bridge_e2e::same_origin(&d.url, &stack.functions))
            .collect();
        assert!(from_functions.len() >= 4, "{from_functions:?}");
        for document in from_functions {
            let what = format!("{} {}", document.status, document.url.path());
            if document
                .header("content-type")
                .unwrap_or_default()
                .starts_with("text/html")
            {
                assert_secure_html_headers(&what, &|name| document.header(name).map(str::to_owned));
            } else {
                // Redirects carry the no-cache and no-referrer part too.
                assert_eq!(
                    document.header("referrer-policy"),
                    Some("no-referrer"),
                    "{what}"
                );
                assert!(
                    document
                        .header("cache-control")
                        .unwrap_or_default()
                        .contains("no-store"),
                    "{what}"
                );
            }
        }
    })
    .await;
}

// --- device authorization grant (RFC 8628; Hydra v26+) --------------------------------------

const DEVICE_CLIENT: &str = "demo-device";
const DEVICE_CLIENT_NAME: &str = "Demo TV";
const DEVICE_SCOPE: &str = "openid offline_access email phone profile";

/// The demo client in device mode, pointed at this stack's Hydra: it plays the TV.
fn device(stack: &Stack) -> demo_client::oauth::Hydra {
    demo_client::oauth::Hydra::new(stack.hydra_public.clone()).expect("device client")
}

/// Whether the stack's Hydra has the device grant; on `STACK_ORY=v1` (Hydra v2.3.0) the device
/// scenarios have nothing to test, and say so.
fn has_device_grant(stack: &Stack, scenario: &str) -> bool {
    let hydra = stack.vars.get("HYDRA_VERSION").cloned().unwrap_or_default();
    let supported = !hydra.starts_with("v2.");
    if !supported {
        eprintln!("{scenario}: not applicable, Hydra {hydra} has no device authorization grant");
    }
    supported
}

async fn start_device(stack: &Stack) -> DeviceAuthorization {
    let grant = device(stack)
        .start_device_authorization(DEVICE_CLIENT, DEVICE_SCOPE)
        .await
        .unwrap_or_else(|e| panic!("device authorization at Hydra: {e}"));
    assert_eq!(
        grant.user_code.len(),
        8,
        "Hydra's medium preset: {}",
        grant.user_code
    );
    grant
}

/// The code as a person types it: lower case, a dash in the middle.
fn typed_casually(user_code: &str) -> String {
    let lower = user_code.to_ascii_lowercase();
    format!("{}-{}", &lower[..4], &lower[4..])
}

/// Opens the verification address the device shows (with or without the code in it), checks the
/// bridge's form and submits `typed` (or the pre-filled code).
async fn enter_device_code(b: &Browser, grant: &DeviceAuthorization, typed: Option<&str>) {
    let address = match typed {
        Some(_) => grant.verification_uri.clone(),
        None => grant
            .verification_uri_complete
            .clone()
            .expect("Hydra sends verification_uri_complete"),
    };
    b.goto(&Url::parse(&address).expect("verification URL"))
        .await;
    b.wait_for("device-title").await;
    let page = b.url().await;
    assert!(
        bridge_e2e::same_origin(&page, &b.stack().functions) && page.path() == "/device",
        "Hydra's verification address led to {page}, not the bridge's /device"
    );
    match typed {
        Some(code) => b.type_into("user-code", code).await,
        None => {
            let field = b.wait_for("user-code").await;
            let value = field.prop("value").await.ok().flatten().unwrap_or_default();
            assert_eq!(
                value, grant.user_code,
                "the code from the link is pre-filled"
            );
        }
    }
    submit_device_code(b).await;
}

/// Presses Continue on the code form and waits until the bridge has answered the POST, so the
/// next step never acts on the page being left.
async fn submit_device_code(b: &Browser) {
    let mark = b.mark().await;
    b.click("device-submit").await;
    let deadline = Instant::now() + bridge_e2e::WAIT;
    loop {
        let answered = b
            .since(mark)
            .await
            .responses
            .iter()
            .any(|d| d.url.path() == "/device");
        if answered {
            return;
        }
        if Instant::now() > deadline {
            b.fail("the bridge never answered the device code form")
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new Google account starts a device sign-in: the TV's grant, and a browser that opened the
/// link with the code and signed in with Google (first-time registration on the way); it stands
/// at consent next.
async fn device_google_sign_in(
    ctx: &bridge_e2e::Ctx,
    tag: &str,
) -> (Browser, DeviceAuthorization, GoogleUser) {
    let user = GoogleUser::unique(tag);
    ctx.stack.put_google_user(&user).await;
    let grant = start_device(&ctx.stack).await;
    let b = ctx.browser().await;
    enter_device_code(&b, &grant, None).await;
    b.wait_for_login_site().await;
    b.sign_in_with_google(&user).await;
    (b, grant, user)
}

/// Consent in the browser, the done page naming the client, and the device's tokens.
async fn finish_device_sign_in(b: &Browser, grant: &DeviceAuthorization) -> Value {
    b.wait_for("consent-title").await;
    assert_eq!(b.text("client-name").await, DEVICE_CLIENT_NAME);
    b.click("allow").await;
    b.wait_for("device-done-title").await;
    assert_eq!(b.text("client-name").await, DEVICE_CLIENT_NAME);
    let done = b.url().await;
    assert_eq!(done.path(), "/device/done", "{done}");
    let tokens = device(b.stack())
        .wait_for_device_tokens(DEVICE_CLIENT, grant, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("[{}] the device got no tokens: {e}", b.label));
    let id_token = tokens.id_token.expect("openid was granted: an ID token");
    let claims = demo_client::oauth::id_token_claims(&id_token).expect("ID token claims");
    assert!(
        demo_client::oauth::audience_contains(&claims, DEVICE_CLIENT),
        "aud: {claims:?}"
    );
    // The login went through the return function: sealed token, binding cookie, replay record.
    let history = b.history().await;
    assert!(
        !history
            .requests_to(&b.stack().functions, "/login/return")
            .is_empty(),
        "[{}] the device login did not pass the return function",
        b.label
    );
    Value::Object(claims)
}

/// A TV asks for a device code; the user opens the address with the code, signs in with Google
/// (a new account, registered on the way), allows the TV at consent and is told to go back to
/// it; the TV's poll gets an ID token for that Kratos identity.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_device_flow_google() {
    e2e("e2e_device_flow_google", |ctx| async move {
        let stack = &ctx.stack;
        if !has_device_grant(stack, "e2e_device_flow_google") {
            return;
        }
        let (b, grant, user) = device_google_sign_in(&ctx, "device").await;
        let claims = finish_device_sign_in(&b, &grant).await;

        let sub = sub_of(&claims);
        assert_eq!(ids_with_email(stack, &user.email).await, vec![sub.clone()]);
        assert_eq!(claims["email"], user.email.as_str(), "claims: {claims}");
    })
    .await;
}

/// The same with a new phone number: the user types the code by hand (lower case, with a dash)
/// at the plain verification address, registers by SMS code, and the TV gets `phone_number`.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_device_flow_sms() {
    e2e("e2e_device_flow_sms", |ctx| async move {
        let stack = &ctx.stack;
        if !has_device_grant(stack, "e2e_device_flow_sms") {
            return;
        }
        let phone = unique_phone();
        let grant = start_device(stack).await;
        let b = ctx.browser().await;
        enter_device_code(&b, &grant, Some(&typed_casually(&grant.user_code))).await;
        b.wait_for_login_site().await;
        b.sign_up_with_sms(&phone).await;
        let claims = finish_device_sign_in(&b, &grant).await;

        assert_eq!(claims["phone_number"], phone.as_str(), "claims: {claims}");
        assert_eq!(ids_with_phone(stack, &phone).await, vec![sub_of(&claims)]);
    })
    .await;
}

/// The user denies the TV at consent: the bridge rejects the consent at Hydra and says so on its
/// own page, naming the client; the TV gets no token. (Hydra v26 does not tell the device about
/// the denial: it keeps answering `authorization_pending` until the code expires, then
/// `expired_token`.)
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_device_flow_denied() {
    e2e("e2e_device_flow_denied", |ctx| async move {
        let stack = &ctx.stack;
        if !has_device_grant(stack, "e2e_device_flow_denied") {
            return;
        }
        let (b, grant, _) = device_google_sign_in(&ctx, "device-deny").await;
        b.wait_for("consent-title").await;
        assert_eq!(b.text("client-name").await, DEVICE_CLIENT_NAME);
        b.click("deny").await;
        assert_eq!(b.text("page-title").await, "Device not signed in");
        let message = b.text("page-message").await;
        assert!(
            message.contains(DEVICE_CLIENT_NAME),
            "denial page: {message}"
        );

        let outcome = device(stack)
            .wait_for_device_tokens(DEVICE_CLIENT, &grant, Duration::from_secs(5))
            .await;
        match outcome {
            Err(DeviceError::TimedOut) => {}
            Err(DeviceError::Token(TokenError::Rejected { error, .. }))
                if error == "access_denied" || error == "expired_token" => {}
            Err(other) => panic!("the denied device should get no token, got: {other}"),
            Ok(_) => panic!("a denied device got tokens"),
        }
    })
    .await;
}

/// Codes that must not work: a wrong one (the form comes back with a message), one already used
/// by a finished sign-in, one past Hydra's `ttl.device_user_code` (on the short-TTL stack), and
/// a browser that keeps guessing is refused with 429 even when it finally types the right code.
#[tokio::test]
#[ignore = "needs the local stack and the short-TTL stack; run ./scripts/test"]
async fn e2e_device_code_wrong_expired_or_reused() {
    e2e(
        "e2e_device_code_wrong_expired_or_reused",
        |ctx| async move {
            let stack = &ctx.stack;
            if !has_device_grant(stack, "e2e_device_code_wrong_expired_or_reused") {
                return;
            }
            // Wrong: a well-formed code Hydra does not know.
            let grant = start_device(stack).await;
            let b = ctx.browser().await;
            let wrong = if grant.user_code == "WRONGCDE" {
                "WRONGCDF"
            } else {
                "WRONGCDE"
            };
            enter_device_code(&b, &grant, Some(wrong)).await;
            let error = b.text("device-error").await;
            assert!(
                error.contains("did not work"),
                "wrong code message: {error}"
            );
            assert!(b.exists("user-code").await, "the form is offered again");

            // Guessing: the per-browser limit (BRIDGE_DEVICE_MAX_ATTEMPTS, 5 by default) is spent
            // by wrong codes; then even the right code is refused and nothing reaches Hydra.
            let limit: usize = stack
                .vars
                .get("BRIDGE_DEVICE_MAX_ATTEMPTS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            for _ in 1..limit {
                b.type_into("user-code", wrong).await;
                submit_device_code(&b).await;
                b.wait_for("device-error").await;
            }
            let mark = b.mark().await;
            b.type_into("user-code", &grant.user_code).await;
            submit_device_code(&b).await;
            assert_eq!(b.text("page-title").await, "Too many attempts");
            let refused = b.since(mark).await;
            let statuses: Vec<u16> = refused
                .responses
                .iter()
                .filter(|d| d.url.path() == "/device")
                .map(|d| d.status)
                .collect();
            assert_eq!(statuses, vec![429], "the guessing browser's last submit");

            // The right code from a browser that has not been guessing still works, once.
            let user = GoogleUser::unique("device-reuse");
            stack.put_google_user(&user).await;
            let first = ctx.browser().await;
            enter_device_code(&first, &grant, None).await;
            first.wait_for_login_site().await;
            first.sign_in_with_google(&user).await;
            finish_device_sign_in(&first, &grant).await;

            // Reused: the same code after the sign-in finished.
            let again = ctx.browser().await;
            enter_device_code(&again, &grant, Some(&grant.user_code)).await;
            let error = again.text("device-error").await;
            assert!(
                error.contains("already used"),
                "reused code message: {error}"
            );

            // Expired: on the short-TTL stack, a code older than ttl.device_user_code.
            let short = ctx.with_stack(Stack::short_ttl().await);
            let short_stack = &short.stack;
            let ttl: u64 = short_stack
                .vars
                .get("STACK_DEVICE_CODE_TTL_SECONDS")
                .and_then(|v| v.parse().ok())
                .expect("the short-TTL stack declares STACK_DEVICE_CODE_TTL_SECONDS");
            assert!(ttl <= 60, "not a short device-code TTL: {ttl} s");
            let old = start_device(short_stack).await;
            tokio::time::sleep(Duration::from_secs(ttl + 2)).await;
            let late = short.browser().await;
            enter_device_code(&late, &old, Some(&old.user_code)).await;
            let error = late.text("device-error").await;
            assert!(error.contains("expired"), "expired code message: {error}");
        },
    )
    .await;
}

// --- per-client policy (docs/policy.md) ------------------------------------------------------

/// Needs a second factor (`required_aal: aal2`).
const AAL2_CLIENT: &str = "demo-aal2";
/// May only be signed in to with Google (`allowed_methods: ["oidc"]`).
const GOOGLE_ONLY_CLIENT: &str = "demo-google-only";
/// May only get `openid email` (`allowed_scopes`).
const SCOPED_CLIENT: &str = "demo-scoped";
/// Asks the policy hook (`hook: true`).
const HOOKED_CLIENT: &str = "demo-hooked";

/// RFC 6238 TOTP as Kratos checks it: HMAC-SHA1, 30-second steps, 6 digits, over the base32
/// secret the settings flow shows.
fn totp(secret: &str, unix_seconds: u64) -> String {
    use hmac::{Hmac, Mac};
    let key = base32_decode(secret).unwrap_or_else(|| panic!("TOTP secret is not base32"));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(&(unix_seconds / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let truncated = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", truncated % 1_000_000)
}

/// RFC 4648 base32 (upper or lower case, padding optional); `None` for any other character.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut held = 0u32;
    let mut out = Vec::new();
    for c in text.trim().trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())?;
        bits = (bits << 5) | value as u64;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    Some(out)
}

#[test]
fn totp_matches_the_rfc_6238_sha1_vectors() {
    // RFC 6238 appendix B: the ASCII secret "12345678901234567890", last 6 of the 8 digits.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(
        base32_decode(secret).as_deref(),
        Some(&b"12345678901234567890"[..])
    );
    assert_eq!(totp(secret, 59), "287082");
    assert_eq!(totp(secret, 1_111_111_109), "081804");
    assert_eq!(totp(secret, 1_234_567_890), "005924");
    assert_eq!(totp(&secret.to_ascii_lowercase(), 2_000_000_000), "279037");
    assert_eq!(base32_decode("not base32!"), None);
}

/// A new Google account with TOTP: signs in at the login site (no client) and enrols an
/// authenticator on the login site's settings page, in its own browser. Returns the account and
/// the TOTP secret.
async fn totp_enrolled_google_user(ctx: &bridge_e2e::Ctx, tag: &str) -> (GoogleUser, String) {
    let user = new_google_user(&ctx.stack, tag).await;
    let b = ctx.browser().await;
    b.sign_in_at_login_site(&user).await;
    b.goto(&ctx.stack.login_site.join("settings").expect("settings URL"))
        .await;
    let secret = b
        .wait_for_css_on_secret_page("#kratos-text-totp_secret_key")
        .await
        .text()
        .await
        .unwrap_or_else(|e| panic!("[{}] TOTP secret text: {e}", b.label));
    let secret = secret.trim().to_owned();
    assert!(
        base32_decode(&secret).is_some_and(|key| key.len() >= 10),
        "[{}] the settings flow shows no usable TOTP secret",
        b.label
    );
    submit_totp(&b, &secret).await;
    // Kratos' "Your changes have been saved!"
    b.wait_for_css_on_secret_page("[data-message-id=\"1050001\"]")
        .await;
    (user, secret)
}

/// Types the current TOTP code into the form Kratos shows (settings or a step-up login) and
/// submits it. Failures never print the page: the settings page shows the secret.
async fn submit_totp(b: &Browser, secret: &str) {
    let field = b
        .wait_for_css_on_secret_page("input[name=\"totp_code\"]")
        .await;
    let _ = field.clear().await;
    field
        .send_keys(&totp(secret, now_epoch()))
        .await
        .unwrap_or_else(|e| panic!("[{}] type the TOTP code: {e}", b.label));
    b.wait_for_css_on_secret_page("button[name=\"method\"][value=\"totp\"]")
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("[{}] submit the TOTP code: {e}", b.label));
}

/// The bridge sent `b` back to Kratos for the second factor (`aal=aal2`) after `mark`; enters the
/// TOTP code there and returns the client's claims.
async fn step_up_with_totp(b: &Browser, mark: Mark, secret: &str) -> Value {
    let site = b.stack().login_site.clone();
    b.wait_for_url("the login site's second-factor page", |u| {
        same_origin(u, &site) && u.path() == "/login"
    })
    .await;
    submit_totp(b, secret).await;
    let claims = b.wait_for_claims().await;
    let stepped_up = b
        .since(mark)
        .await
        .requests_to(&b.stack().kratos_public, "/self-service/login/browser")
        .iter()
        .any(|u| param(u, "aal").as_deref() == Some("aal2"));
    assert!(
        stepped_up,
        "[{}] the bridge did not ask Kratos for aal2",
        b.label
    );
    claims
}

/// The status of the latest response from the functions' `path` in `b`'s history.
async fn last_status_from(b: &Browser, path: &str) -> u16 {
    b.history()
        .await
        .responses_from(&b.stack().functions, path)
        .last()
        .map(|d| d.status)
        .unwrap_or_else(|| panic!("[{}] no response from the bridge's {path}", b.label))
}

/// A client with `required_aal: aal2`: the Google sign-in (aal1) is sent back to Kratos for the
/// TOTP step, then accepted with `acr=aal2`.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_aal2_client_steps_up() {
    e2e("e2e_aal2_client_steps_up", |ctx| async move {
        let stack = &ctx.stack;
        let (user, secret) = totp_enrolled_google_user(&ctx, "aal2").await;

        let b = ctx.browser().await;
        let mark = b.mark().await;
        google_sign_in(&b, AAL2_CLIENT, None, &user).await;
        let claims = step_up_with_totp(&b, mark, &secret).await;

        assert_eq!(claims["acr"], "aal2", "claims: {claims}");
        assert!(
            claims["amr"]
                .as_array()
                .is_some_and(|amr| amr.iter().any(|m| m == "otp")),
            "amr without otp: {claims}"
        );
        assert_eq!(claims["email"], user.email.as_str());
        let session = kratos_session(stack, &b.kratos_cookie_header().await).await;
        assert_eq!(session["authenticator_assurance_level"], "aal2");
        assert_eq!(session["identity"]["id"], sub_of(&claims).as_str());
    })
    .await;
}

/// A client without a policy gets `acr=aal1` from a Google sign-in; the same client asking with
/// `acr_values=aal2` is sent to the TOTP step and gets `acr=aal2`.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_acr_values_aal2_honoured() {
    e2e("e2e_acr_values_aal2_honoured", |ctx| async move {
        let (user, secret) = totp_enrolled_google_user(&ctx, "acr").await;

        let b = ctx.browser().await;
        let plain = google_login(&b, FIRST_PARTY, &user).await;
        assert_eq!(plain["acr"], "aal1", "without acr_values: {plain}");

        let mark = b.mark().await;
        b.start_with(FIRST_PARTY, &[("acr_values", "aal2")]).await;
        let claims = step_up_with_totp(&b, mark, &secret).await;
        assert_eq!(claims["acr"], "aal2", "with acr_values=aal2: {claims}");
        assert_eq!(sub_of(&claims), sub_of(&plain));
        assert!(
            !b.since(mark).await.visited(&ctx.stack.mock_google),
            "the step-up asked for Google again"
        );
    })
    .await;
}

/// A Google-only client: the login site shows only the Google button (the bridge's methods
/// hint) and a Google sign-in passes; a session from an SMS code is sent back to Kratos to sign
/// in again (`refresh=true`) and the login is not accepted.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_client_allowed_methods_enforced() {
    e2e("e2e_client_allowed_methods_enforced", |ctx| async move {
        let stack = &ctx.stack;
        let user = new_google_user(stack, "google-only").await;
        let g = ctx.browser().await;
        g.start(GOOGLE_ONLY_CLIENT, None, None).await;
        g.wait_for_login_site().await;
        assert!(
            !g.exists("phone-input").await,
            "the login site offers the SMS code to a Google-only client"
        );
        g.sign_in_with_google(&user).await;
        let claims = g.wait_for_claims().await;
        assert!(
            claims["aud"].to_string().contains(GOOGLE_ONLY_CLIENT),
            "{claims}"
        );

        let phone = unique_phone();
        let s = ctx.browser().await;
        s.start(FIRST_PARTY, Some("openid phone"), None).await;
        s.wait_for_login_site().await;
        s.sign_up_with_sms(&phone).await;
        s.wait_for_claims().await;

        let mark = s.mark().await;
        s.start(GOOGLE_ONLY_CLIENT, None, None).await;
        let site = stack.login_site.clone();
        s.wait_for_url("the login site", |u| same_origin(u, &site))
            .await;
        let during = s.since(mark).await;
        assert!(
            during
                .requests_to(&stack.kratos_public, "/self-service/login/browser")
                .iter()
                .any(|u| param(u, "refresh").as_deref() == Some("true")),
            // Paths only: the URLs carry the return token and the login challenge.
            "an SMS session was not sent to sign in again: {:?}",
            during
                .requests
                .iter()
                .map(|u| u.path().to_owned())
                .collect::<Vec<_>>()
        );
        assert!(
            !s.exists("phone-input").await,
            "the login site offers the SMS code to a Google-only client"
        );
        assert!(!s.exists("claims-json").await);
        assert_login_pending(
            stack,
            &last_login_challenge(&s).await,
            "the SMS session's login was accepted for a Google-only client",
        )
        .await;
    })
    .await;
}

/// A client allowed only `openid email`: asking for more ends on the bridge's 403 page with
/// nothing granted (even though consent is skipped for it); asking for `openid email` passes.
/// The allowed request signs in from a second browser: in the first one Hydra would remember the
/// login and the bridge's skip path accepts it without the identity's claims (a known gap,
/// tracked separately; see docs/policy.md), which is not what this scenario is about.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_scope_allowlist_enforced() {
    e2e("e2e_scope_allowlist_enforced", |ctx| async move {
        let stack = &ctx.stack;
        let user = new_google_user(stack, "scoped").await;
        let b = ctx.browser().await;
        google_sign_in(
            &b,
            SCOPED_CLIENT,
            Some("openid email offline_access"),
            &user,
        )
        .await;
        assert_eq!(b.text("page-title").await, "Sign-in refused");
        assert_eq!(last_status_from(&b, "/consent").await, 403);
        assert!(!b.exists("claims-json").await);

        let allowed = ctx.browser().await;
        google_sign_in(&allowed, SCOPED_CLIENT, Some("openid email"), &user).await;
        let claims = allowed.wait_for_claims().await;
        assert_eq!(claims["email"], user.email.as_str());
        let mut granted = allowed.granted_scope().await;
        granted.sort();
        assert_eq!(granted, vec!["email", "openid"]);
    })
    .await;
}

/// The reference hook denies the e-mail domain it is configured with: the bridge's 403 page
/// shows the hook's reason and the login stays unaccepted; a client without the hook still
/// signs the same account in.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_policy_hook_denies() {
    e2e("e2e_policy_hook_denies", |ctx| async move {
        let stack = &ctx.stack;
        let domain = stack
            .vars
            .get("HOOK_DENY_EMAIL_DOMAINS")
            .and_then(|list| list.split(',').next())
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .expect("the stack declares HOOK_DENY_EMAIL_DOMAINS")
            .to_owned();
        let mut user = GoogleUser::unique("hook-deny");
        user.email = format!("{}@{domain}", user.sub);
        stack.put_google_user(&user).await;

        let b = ctx.browser().await;
        b.start(HOOKED_CLIENT, None, None).await;
        b.wait_for_login_site().await;
        let challenge = last_login_challenge(&b).await;
        b.sign_in_with_google(&user).await;
        assert_eq!(b.text("page-title").await, "Sign-in refused");
        let reason = stack
            .vars
            .get("HOOK_DENY_REASON")
            .cloned()
            .unwrap_or_default();
        assert_eq!(b.text("page-detail").await, reason, "the hook's reason");
        assert_eq!(last_status_from(&b, "/login/return").await, 403);
        assert_login_pending(stack, &challenge, "a login the hook denied was accepted").await;

        b.start(FIRST_PARTY, None, None).await;
        let claims = b.wait_for_claims().await;
        assert_eq!(claims["email"], user.email.as_str());
    })
    .await;
}

/// The reference hook's claims (tenant=acme, in the bridge's namespace) reach the ID token of
/// the client that asks the hook, and only that client's.
#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn e2e_policy_hook_adds_claims() {
    e2e("e2e_policy_hook_adds_claims", |ctx| async move {
        let stack = &ctx.stack;
        let namespace = stack
            .vars
            .get("HOOK_CLAIMS_NAMESPACE")
            .cloned()
            .expect("the stack declares HOOK_CLAIMS_NAMESPACE");
        let tenant = format!("{namespace}tenant");
        let user = new_google_user(stack, "hook-claims").await;

        let b = ctx.browser().await;
        let claims = google_login(&b, HOOKED_CLIENT, &user).await;
        assert_eq!(claims[&tenant], "acme", "claims: {claims}");
        assert_eq!(claims["email"], user.email.as_str());

        b.start(FIRST_PARTY, None, None).await;
        let other = b.wait_for_claims().await;
        assert_eq!(sub_of(&other), sub_of(&claims));
        assert!(
            other.get(&tenant).is_none(),
            "a client without the hook got its claim: {other}"
        );
    })
    .await;
}

/// On the short-TTL stack, whose hook URL is a closed port: the hook client's sign-in ends on the
/// bridge's 503 page with a "Try again" link to the same return link, nothing accepted; a client
/// without the hook signs the same session in.
#[tokio::test]
#[ignore = "needs the short-TTL local stack; run ./scripts/test"]
async fn e2e_policy_hook_down_fails_closed() {
    e2e_short_ttl("e2e_policy_hook_down_fails_closed", |ctx| async move {
        let stack = &ctx.stack;
        let hook = stack
            .vars
            .get("BRIDGE_POLICY_HOOK_URL")
            .cloned()
            .unwrap_or_default();
        assert!(
            !hook.is_empty() && hook != stack.function("policy-hook").as_str(),
            "{} must point its bridge at a hook that is down (STACK_POLICY_HOOK=down), not {hook:?}",
            stack.env_file.display()
        );
        let user = new_google_user(stack, "hook-down").await;
        let b = ctx.browser().await;
        // A Kratos session first, made without Hydra: the 15 s login TTL of this stack then only
        // has to cover the quick single sign-on below.
        b.sign_in_at_login_site(&user).await;

        b.start(HOOKED_CLIENT, None, None).await;
        assert_eq!(b.text("page-title").await, "Temporarily unavailable");
        let challenge = last_login_challenge(&b).await;
        let history = b.history().await;
        let refused = history
            .responses_from(&stack.functions, "/login/return")
            .last()
            .cloned()
            .expect("the bridge's return function answered");
        assert_eq!(refused.status, 503);
        assert!(refused.header("retry-after").is_some(), "no Retry-After");
        let retry = b
            .wait_for("page-action")
            .await
            .attr("href")
            .await
            .ok()
            .flatten()
            .and_then(|h| refused.url.join(&h).ok())
            .expect("a Try again link");
        assert!(
            same_origin(&retry, &refused.url)
                && retry.path() == refused.url.path()
                && param(&retry, "t").is_some()
                && param(&retry, "t") == param(&refused.url, "t"),
            "Try again is not the same return link"
        );
        assert_login_pending(stack, &challenge, "a login was accepted while the hook was down")
            .await;

        b.start(FIRST_PARTY, None, None).await;
        let claims = b.wait_for_claims().await;
        assert_eq!(claims["email"], user.email.as_str());
    })
    .await;
}
