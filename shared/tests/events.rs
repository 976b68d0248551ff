//! The API Gateway HTTP API (v2) fixtures in `events/`, one per route and case, each loaded
//! through `lambda_http`'s own event parser and its handler. The fixtures are also what
//! `cargo lambda invoke --data-file events/<name>.json` sends to a locally running function.
//!
//! Every fixture has a case here and every case a fixture. Missing fixtures are written on the
//! first run; `BRIDGE_REGENERATE_EVENTS=1 cargo test -p bridge-shared --features testkit --test events` rewrites them
//! all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use bridge::digest::sha256_hex;
use bridge::hydra::{ConsentRequest, LogoutRequest, OAuth2Client};
use bridge::replay::ReplayStore;
use bridge::testkit::*;

const BINDING: &str = "fixturebindingfixturebindingfixturebinding1";
const CSRF_COOKIE: &str = "fixturecsrffixturecsrffixturecsrffixturecsr";
const REQUEST_URL: &str = "https://oauth.example.com/oauth2/auth?client_id=app&response_type=code&scope=openid+email&state=fixture-state";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Login,
    Return,
    Consent,
    Logout,
    Error,
    Device,
    DeviceDone,
}

struct Case {
    name: &'static str,
    route: Route,
    method: &'static str,
    query: String,
    cookies: Vec<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    /// Whether the kit's Kratos knows the two sessions of [`Kit::add_sessions`] before `setup`.
    sessions: bool,
    setup: fn(&Kit, &Request),
    status: u16,
    location_prefix: Option<&'static str>,
}

impl Case {
    fn get(name: &'static str, route: Route, query: impl Into<String>, status: u16) -> Self {
        Self {
            name,
            route,
            method: "GET",
            query: query.into(),
            cookies: Vec::new(),
            headers: Vec::new(),
            body: None,
            sessions: false,
            setup: |_, _| {},
            status,
            location_prefix: None,
        }
    }
    fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookies.push(cookie.into());
        self
    }
    /// A case on the login route for `challenge`.
    fn login(name: &'static str, challenge: &str, status: u16) -> Self {
        Self::get(
            name,
            Route::Login,
            format!("login_challenge={challenge}"),
            status,
        )
    }
    /// A case on the consent route for `challenge`.
    fn consent(name: &'static str, challenge: &str, status: u16) -> Self {
        Self::get(
            name,
            Route::Consent,
            format!("consent_challenge={challenge}"),
            status,
        )
    }
    /// A case on the return route for `token`, from the browser it is bound to.
    fn back(name: &'static str, token: &str, status: u16) -> Self {
        Self::get(name, Route::Return, return_query(token), status)
            .cookie(format!("__Host-bridge_binding={BINDING}"))
    }
    /// A consent form post of `body` from the browser holding the CSRF cookie, to the consent
    /// screen of [`consent_3`].
    fn consent_post(name: &'static str, body: String, status: u16) -> Self {
        Self::get(name, Route::Consent, "", status)
            .post(body)
            .cookie(format!("__Host-bridge_csrf={CSRF_COOKIE}"))
            .setup(consent_3)
    }
    /// The browser sends `session_cookie`, and Kratos knows the sessions of [`Kit::add_sessions`].
    fn signed_in_as(mut self, session_cookie: &str) -> Self {
        self.sessions = true;
        self.cookie(session_cookie)
    }
    /// Signed in to Kratos with [`SESSION_COOKIE`] (session `sess-1`).
    fn signed_in(self) -> Self {
        self.signed_in_as(SESSION_COOKIE)
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn setup(mut self, setup: fn(&Kit, &Request)) -> Self {
        self.setup = setup;
        self
    }
    fn redirects_to(mut self, prefix: &'static str) -> Self {
        self.location_prefix = Some(prefix);
        self
    }
    fn post(mut self, body: String) -> Self {
        self.method = "POST";
        self.body = Some(body);
        self.headers.push((
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ));
        self
    }
}

fn path(route: Route) -> &'static str {
    match route {
        Route::Login => "/login",
        Route::Return => "/login/return",
        Route::Consent => "/consent",
        Route::Logout => "/logout",
        Route::Error => "/error",
        Route::Device => "/device",
        Route::DeviceDone => "/device/done",
    }
}

/// The third-party consent screen `consent-3`, which the consent form cases post to.
fn consent_3(kit: &Kit, _: &Request) {
    kit.hydra
        .add_consent("consent-3", consent_request("third", false, None));
}

fn seal(kit: &Kit, challenge: &str) -> String {
    kit.seal(challenge, REQUEST_URL, BINDING)
}

fn return_query(token: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("t", token)
        .finish()
}

fn consent_request(client_id: &str, skip: bool, skip_consent: Option<bool>) -> ConsentRequest {
    ConsentRequest {
        client: OAuth2Client {
            client_id: client_id.to_owned(),
            client_name: Some("Example App".to_owned()),
            skip_consent,
            ..OAuth2Client::default()
        },
        context: Some(
            json!({"identity_id": "ident-1", "claims_by_scope": {"email": {"email": "ann@example.com", "email_verified": true}}}),
        ),
        requested_scope: vec!["openid".to_owned(), "email".to_owned()],
        requested_access_token_audience: Vec::new(),
        skip,
        request_url: String::new(),
        subject: "ident-1".to_owned(),
        ..ConsentRequest::default()
    }
}

fn token_in(request: &Request) -> String {
    bridge::request::query(request)
        .ok()
        .and_then(|q| q.single("t", 9000).ok().flatten().map(str::to_owned))
        .unwrap_or_default()
}

/// Marks the request's token as already used by `session_id`, leading to `redirect_to`.
fn pre_complete(kit: &Kit, request: &Request, session_id: &str, redirect_to: &str) {
    let claim = kit.earlier_claim(&token_in(request), session_id, "earlier");
    let replay = kit.replay.clone();
    let redirect_to = redirect_to.to_owned();
    futures_block_on(async move {
        replay.claim(&claim).await.expect("claim");
        replay
            .complete(&claim, &redirect_to)
            .await
            .expect("complete");
    });
}

/// Runs a small future to completion from a synchronous setup function.
fn futures_block_on(future: impl std::future::Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    })
    .join()
    .expect("setup thread");
}

/// Changes one character in the middle of the token (the encrypted payload).
fn tamper(token: &str) -> String {
    let middle = token.len() / 2;
    let replacement = if &token[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    format!("{}{replacement}{}", &token[..middle], &token[middle + 1..])
}

fn cases(kit: &Kit) -> Vec<Case> {
    let csrf = format!("__Host-bridge_csrf={CSRF_COOKIE}");
    let csrf_token = kit.keys().csrf_key().token_for(&format!(
        "consent:{}:{CSRF_COOKIE}",
        sha256_hex("consent-3")
    ));
    let form = |action: &str, token: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("consent_challenge", "consent-3")
            .append_pair("csrf_token", token)
            .append_pair("grant_scope", "openid")
            .append_pair("grant_scope", "email")
            .append_pair("action", action)
            .finish()
    };
    let device_token = kit
        .keys()
        .csrf_key()
        .token_for(&format!("device:{}:{CSRF_COOKIE}", sha256_hex("device-1")));
    let device_form = |code: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("device_challenge", "device-1")
            .append_pair("csrf_token", &device_token)
            .append_pair("user_code", code)
            .finish()
    };
    let valid = seal(kit, "login-ok");
    vec![
        // Login entry.
        Case::get("login-missing-challenge", Route::Login, "", 400),
        Case::login("login-malformed-challenge", "%3Cscript%3E", 400),
        Case::get(
            "login-oversized-challenge",
            Route::Login,
            format!("login_challenge={}", "a".repeat(9000)),
            400,
        ),
        Case::login("login-unknown-challenge", "unknown", 400),
        Case::login("login-expired-challenge", "expired", 410)
            .setup(|kit, _| kit.hydra.fail_challenge("expired", UpstreamKind::Expired)),
        Case::login("login-hydra-unavailable", "down", 503)
            .setup(|kit, _| kit.hydra.fail_challenge("down", UpstreamKind::Transient)),
        Case::login("login-skip", "login-skip", 303)
            .setup(|kit, _| {
                kit.hydra
                    .add_login("login-skip", login_request(true, "ident-1", REQUEST_URL))
            })
            .redirects_to(HYDRA_NEXT),
        Case::login("login-sso-existing-session", "login-sso", 303)
            .signed_in()
            .setup(|kit, _| {
                kit.hydra
                    .add_login("login-sso", login_request(false, "", REQUEST_URL))
            })
            // Single sign-on skips Kratos' login flow: straight to the return function.
            .redirects_to("https://auth.example.com/login/return?t="),
        Case::login("login-prompt-login", "login-prompt", 303)
            .signed_in()
            .setup(|kit, _| {
                kit.hydra.add_login(
                    "login-prompt",
                    login_request(false, "", &format!("{REQUEST_URL}&prompt=login")),
                );
            })
            .redirects_to(
                "https://id.example.com/self-service/login/browser?refresh=true&return_to=",
            ),
        Case::login("login-new-browser", "login-new", 303)
            .setup(|kit, _| {
                kit.hydra
                    .add_login("login-new", login_request(false, "", REQUEST_URL))
            })
            .redirects_to("https://id.example.com/self-service/login/browser?return_to="),
        Case {
            method: "POST",
            ..Case::login("login-wrong-method", "x", 405)
        },
        // Return.
        Case::back("return-valid", &valid, 303)
            .signed_in()
            .redirects_to(HYDRA_NEXT),
        Case::get("return-missing-token", Route::Return, "", 400),
        Case::back("return-tampered-token", &tamper(&valid), 400).signed_in(),
        Case::back("return-expired-token", &seal(kit, "login-late"), 410)
            .signed_in()
            .setup(|kit, _| kit.advance(Duration::from_secs(601))),
        Case::get(
            "return-without-binding-cookie",
            Route::Return,
            return_query(&seal(kit, "login-ok")),
            403,
        )
        .signed_in(),
        Case::back("return-without-kratos-session", &seal(kit, "login-ok"), 303)
            .redirects_to("https://id.example.com/self-service/login/browser?return_to="),
        Case::back("return-replay-other-session", &seal(kit, "login-ok"), 403)
            .signed_in_as("ory_kratos_session=s2")
            .setup(|kit, request| pre_complete(kit, request, "sess-1", HYDRA_NEXT)),
        Case::back("return-same-session-repeat", &seal(kit, "login-ok"), 303)
            .signed_in()
            .setup(|kit, request| {
                pre_complete(
                    kit,
                    request,
                    "sess-1",
                    "https://oauth.example.com/oauth2/auth?login_verifier=first",
                );
            })
            .redirects_to("https://oauth.example.com/oauth2/auth?login_verifier=first"),
        Case::back("return-hydra-unavailable", &seal(kit, "login-ok"), 503)
            .signed_in()
            .setup(|kit, _| kit.hydra.fail_accept("login-ok", UpstreamKind::Transient)),
        Case::back("return-expired-challenge", &seal(kit, "login-ok"), 303)
            .signed_in()
            .setup(|kit, _| kit.hydra.fail_accept("login-ok", UpstreamKind::Expired))
            .redirects_to(REQUEST_URL),
        // Consent.
        Case::consent("consent-skip", "consent-1", 303)
            .setup(|kit, _| {
                kit.hydra
                    .add_consent("consent-1", consent_request("third", true, None))
            })
            .redirects_to(HYDRA_NEXT),
        Case::consent("consent-first-party", "consent-2", 303)
            .setup(|kit, _| {
                kit.hydra
                    .add_consent("consent-2", consent_request("first", false, Some(true)))
            })
            .redirects_to(HYDRA_NEXT),
        Case::consent("consent-screen", "consent-3", 200).setup(consent_3),
        Case::consent_post("consent-allow", form("allow", &csrf_token), 303)
            .header("origin", "https://auth.example.com")
            .redirects_to(HYDRA_NEXT),
        Case::consent_post("consent-deny", form("deny", &csrf_token), 303)
            .header("origin", "https://auth.example.com")
            .redirects_to(HYDRA_NEXT),
        Case::consent_post("consent-csrf-missing", form("allow", ""), 403),
        Case::consent_post("consent-foreign-origin", form("allow", &csrf_token), 403)
            .header("origin", "https://evil.example.net"),
        // Device verification (Hydra v26+).
        Case::get(
            "device-form",
            Route::Device,
            "device_challenge=device-1&user_code=bcdf-ghjk",
            200,
        ),
        Case::get("device-without-challenge", Route::Device, "", 303)
            .redirects_to("https://oauth.example.com/oauth2/device/verify"),
        Case::get("device-code-accepted", Route::Device, "", 303)
            .post(device_form("bcdf ghjk"))
            .cookie(csrf.clone())
            .header("origin", "https://auth.example.com")
            .setup(|kit, _| kit.hydra.add_device("device-1", "BCDFGHJK"))
            .redirects_to(HYDRA_NEXT),
        Case::get("device-code-wrong", Route::Device, "", 400)
            .post(device_form("ZZZZ-ZZZZ"))
            .cookie(csrf)
            .header("origin", "https://auth.example.com")
            .setup(|kit, _| kit.hydra.add_device("device-1", "BCDFGHJK")),
        Case::get("device-done", Route::DeviceDone, "client_id=tv", 200).setup(|kit, _| {
            kit.hydra.add_client(OAuth2Client {
                client_id: "tv".to_owned(),
                client_name: Some("Living-room TV".to_owned()),
                ..OAuth2Client::default()
            })
        }),
        // Logout.
        Case::get(
            "logout-valid",
            Route::Logout,
            "logout_challenge=logout-1",
            303,
        )
        .signed_in()
        .setup(|kit, _| {
            kit.hydra.add_logout(
                "logout-1",
                LogoutRequest {
                    subject: "ident-1".to_owned(),
                    sid: "sid".to_owned(),
                    rp_initiated: true,
                },
            );
        })
        .redirects_to(HYDRA_NEXT),
        Case::get("logout-missing-challenge", Route::Logout, "", 400),
        // Errors.
        Case::get(
            "error-hydra",
            Route::Error,
            "error=invalid_request&error_description=The+request+is+missing+a+parameter",
            200,
        ),
        Case::get(
            "error-kratos",
            Route::Error,
            "id=9f425a8d-7efc-4768-8f23-7647a74fdf13",
            200,
        )
        .setup(|kit, _| {
            kit.kratos.add_error(
                "9f425a8d-7efc-4768-8f23-7647a74fdf13",
                json!({"error": {"message": "The flow expired"}}),
            )
        }),
    ]
}

fn event(case: &Case) -> Value {
    let path = path(case.route);
    let mut headers = serde_json::Map::new();
    headers.insert("host".to_owned(), json!("auth.example.com"));
    headers.insert("accept".to_owned(), json!("text/html"));
    headers.insert("x-forwarded-proto".to_owned(), json!("https"));
    for (name, value) in &case.headers {
        headers.insert((*name).to_owned(), json!(value));
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{} {path}", case.method),
        "rawPath": path,
        "rawQueryString": case.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bridgeapi",
            "domainName": "auth.example.com",
            "domainPrefix": "auth",
            "http": {"method": case.method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10", "userAgent": "Mozilla/5.0"},
            "requestId": format!("fixture-{}", case.name),
            "routeKey": format!("{} {path}", case.method),
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1_767_225_600_000u64
        },
        "isBase64Encoded": false
    });
    if !case.cookies.is_empty() {
        event["cookies"] = json!(case.cookies);
    }
    if let Some(body) = &case.body {
        event["body"] = json!(body);
    }
    event
}

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

async fn run(kit: &Kit, route: Route, request: Request) -> Response<Body> {
    use bridge::handlers::{consent, device, error_page, login, login_return, logout};
    match route {
        Route::Login => login::handle(request, &kit.login_deps()).await,
        Route::Return => login_return::handle(request, &kit.return_deps()).await,
        Route::Consent => consent::handle(request, &kit.consent_deps()).await,
        Route::Logout => logout::handle(request, &kit.logout_deps()).await,
        Route::Device | Route::DeviceDone => device::handle(request, &kit.device_deps()).await,
        Route::Error => error_page::handle(request, &kit.error_deps()).await,
    }
}

#[tokio::test]
async fn every_event_fixture_goes_through_its_handler() {
    let regenerate = std::env::var("BRIDGE_REGENERATE_EVENTS").is_ok_and(|v| v == "1");
    let dir = events_dir();
    std::fs::create_dir_all(&dir).expect("events dir");
    let names: Vec<&str> = cases(&Kit::new()).iter().map(|c| c.name).collect();
    for name in &names {
        let file = dir.join(format!("{name}.json"));
        if regenerate || !file.exists() {
            // Each fixture is generated with a fresh kit: the fixed test clock keeps its token valid.
            let kit = Kit::new();
            let case = cases(&kit)
                .into_iter()
                .find(|c| c.name == *name)
                .expect("case");
            let text = serde_json::to_string_pretty(&event(&case)).expect("json");
            std::fs::write(&file, format!("{text}\n")).expect("write fixture");
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("read events")
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_owned)
        })
        .collect();
    on_disk.sort();
    for name in &on_disk {
        assert!(
            names.contains(&name.as_str()),
            "events/{name}.json has no case in shared/tests/events.rs"
        );
    }

    for name in names {
        let kit = Kit::new();
        let case = cases(&kit)
            .into_iter()
            .find(|c| c.name == name)
            .expect("case");
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("fixture");
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: not an API Gateway v2 event: {e}"));
        if case.sessions {
            kit.add_sessions();
        }
        (case.setup)(&kit, &request);
        let response = run(&kit, case.route, request).await;
        assert_eq!(response.status().as_u16(), case.status, "{name}");
        if let Some(prefix) = case.location_prefix {
            let location = location(&response);
            assert!(
                location.starts_with(prefix),
                "{name}: Location {location} does not start with {prefix}"
            );
        }
        if response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
        {
            assert_secure_html(&response);
        }
    }
}
