//! In-process tests: the router is driven with `oneshot`; Hydra's token endpoint is a small axum
//! server on an ephemeral port whose next answer each test sets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;
use url::Url;

use crate::app::{router, AppState, Config, COOKIE_NAME, DEFAULT_SCOPE};
use crate::oauth::{s256_challenge, Hydra};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Default)]
struct FakeHydraState {
    /// Next token answer: status and JSON body.
    answer: Option<(u16, Value)>,
    /// Form fields of the last token request.
    last_form: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct FakeHydra(Arc<Mutex<FakeHydraState>>);

async fn fake_token(State(fake): State<FakeHydra>, body: String) -> Response {
    let Ok(mut state) = fake.0.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    state.last_form = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let (status, body) = state
        .answer
        .clone()
        .unwrap_or((500, json!({"error": "server_error"})));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

struct Harness {
    app: Router,
    state: Arc<AppState>,
    hydra: FakeHydra,
    hydra_base: String,
}

const BASE: &str = "http://127.0.0.1:5555";

async fn setup() -> Result<Harness, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hydra_base = format!("http://{}", listener.local_addr()?);
    let hydra = FakeHydra::default();
    let fake_app = Router::new()
        .route("/oauth2/token", post(fake_token))
        .with_state(hydra.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, fake_app).await;
    });
    let state = Arc::new(AppState {
        config: Config::new(&Url::parse(BASE)?),
        hydra: Hydra::new(Url::parse(&hydra_base)?)?,
        store: Mutex::default(),
    });
    Ok(Harness {
        app: router(state.clone()),
        state,
        hydra,
        hydra_base,
    })
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> Result<Url, url::ParseError> {
        Url::parse(
            self.headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        )
    }
    fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

async fn get_page(
    app: &Router,
    uri: &str,
    cookie: Option<&str>,
) -> Result<Page, Box<dyn std::error::Error>> {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok(Page {
        status,
        headers,
        body: String::from_utf8(body.to_vec())?,
    })
}

fn query_of(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// `name=value` of the cookie the app set, ready to send back.
fn cookie_pair(page: &Page) -> String {
    page.header(header::SET_COOKIE)
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn unsigned_jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Starts a login and returns (authorization URL query, cookie pair).
async fn start(
    h: &Harness,
    uri: &str,
) -> Result<(HashMap<String, String>, String), Box<dyn std::error::Error>> {
    let page = get_page(&h.app, uri, None).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    Ok((query_of(&page.location()?), cookie_pair(&page)))
}

#[tokio::test]
async fn start_builds_authorization_url_with_s256_challenge() -> TestResult {
    let h = setup().await?;
    let page = get_page(&h.app, "/start?client_id=demo-first-party", None).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let location = page.location()?;
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.host_str().unwrap_or_default(),
            location.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        h.hydra_base
    );
    assert_eq!(location.path(), "/oauth2/auth");
    let q = query_of(&location);
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        q.get("client_id").map(String::as_str),
        Some("demo-first-party")
    );
    assert_eq!(
        q.get("redirect_uri").map(String::as_str),
        Some("http://127.0.0.1:5555/callback")
    );
    assert_eq!(q.get("scope").map(String::as_str), Some(DEFAULT_SCOPE));
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(
        !q.contains_key("prompt") && !q.contains_key("max_age") && !q.contains_key("acr_values")
    );
    let state = q.get("state").ok_or("no state")?;
    let nonce = q.get("nonce").ok_or("no nonce")?;
    let challenge = q.get("code_challenge").ok_or("no challenge")?;
    assert!(state.len() >= 43 && nonce.len() >= 43 && state != nonce);

    let store = h.state.store();
    let pending = store.pending.get(state).ok_or("state not remembered")?;
    assert_eq!(&pending.nonce, nonce);
    assert_eq!(&s256_challenge(&pending.code_verifier), challenge);
    assert!(pending.code_verifier.len() >= 43);

    let set_cookie = page.header(header::SET_COOKIE);
    assert!(set_cookie.starts_with(&format!("{COOKIE_NAME}={}", pending.browser)));
    assert!(set_cookie.contains("HttpOnly"));
    assert!(set_cookie.contains("SameSite=Lax"));
    assert!(set_cookie.contains("Path=/"));
    assert!(!set_cookie.contains("Secure"), "http base URL: no Secure");
    Ok(())
}

#[tokio::test]
async fn start_passes_scope_prompt_max_age_and_acr_values() -> TestResult {
    let h = setup().await?;
    let (q, _) = start(
        &h,
        "/start?client_id=demo-third-party&scope=openid%20email&prompt=login&max_age=0&acr_values=aal2",
    )
    .await?;
    assert_eq!(q.get("scope").map(String::as_str), Some("openid email"));
    assert_eq!(q.get("prompt").map(String::as_str), Some("login"));
    assert_eq!(q.get("max_age").map(String::as_str), Some("0"));
    assert_eq!(q.get("acr_values").map(String::as_str), Some("aal2"));

    let page = get_page(&h.app, "/start?client_id=x&max_age=soon", None).await?;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = get_page(&h.app, "/start", None).await?;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("data-testid=\"start-error\""));
    Ok(())
}

#[tokio::test]
async fn callback_rejects_unknown_state_and_foreign_browser() -> TestResult {
    let h = setup().await?;
    let page = get_page(&h.app, "/callback?code=c&state=forged", None).await?;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("data-testid=\"state-error\""));

    let (q, _) = start(&h, "/start?client_id=demo-second").await?;
    let state = q.get("state").ok_or("no state")?;
    // Right state, but another browser (no or other cookie): login CSRF attempt.
    let page = get_page(
        &h.app,
        &format!("/callback?code=c&state={state}"),
        Some(&format!("{COOKIE_NAME}=someone-else")),
    )
    .await?;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("data-testid=\"state-error\""));
    assert!(
        h.state.store().pending.is_empty(),
        "a state is single-use, even when rejected"
    );
    assert!(h
        .hydra
        .0
        .lock()
        .map_err(|_| "poisoned")?
        .last_form
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn error_callback_shows_the_error_escaped() -> TestResult {
    let h = setup().await?;
    let (q, cookie) = start(&h, "/start?client_id=demo-third-party").await?;
    let state = q.get("state").ok_or("no state")?;
    let page = get_page(
        &h.app,
        &format!(
            "/callback?error=access_denied&error_description=The+user+said+%3Cb%3Eno%3C%2Fb%3E&state={state}"
        ),
        Some(&cookie),
    )
    .await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains("<code data-testid=\"oauth-error\">access_denied</code>"));
    assert!(page
        .body
        .contains("data-testid=\"oauth-error-description\""));
    assert!(!page.body.contains("<b>no</b>"));
    assert!(page.body.contains("&#60;b&#62;no") || page.body.contains("&lt;b&gt;no"));
    Ok(())
}

#[tokio::test]
async fn callback_exchanges_code_and_shows_claims_then_logout_uses_hint() -> TestResult {
    let h = setup().await?;
    let (q, cookie) = start(&h, "/start?client_id=demo-first-party").await?;
    let state = q.get("state").ok_or("no state")?;
    let nonce = q.get("nonce").ok_or("no nonce")?;
    let challenge = q.get("code_challenge").ok_or("no challenge")?;
    let id_token = unsigned_jwt(&json!({
        "iss": "http://127.0.0.1:4444", "sub": "user-1", "aud": ["demo-first-party"],
        "nonce": nonce, "phone_number": "+15555550100", "name": "<img src=x>",
        "phone_number_verified": true
    }));
    h.hydra.0.lock().map_err(|_| "poisoned")?.answer = Some((
        200,
        json!({"access_token": "at", "id_token": id_token, "refresh_token": "rt",
               "scope": "openid offline_access phone", "expires_in": 3599, "token_type": "bearer"}),
    ));

    let page = get_page(
        &h.app,
        &format!("/callback?code=good-code&state={state}&scope=openid"),
        Some(&cookie),
    )
    .await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    {
        let fake = h.hydra.0.lock().map_err(|_| "poisoned")?;
        let form = &fake.last_form;
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("authorization_code")
        );
        assert_eq!(form.get("code").map(String::as_str), Some("good-code"));
        assert_eq!(
            form.get("redirect_uri").map(String::as_str),
            Some("http://127.0.0.1:5555/callback")
        );
        assert_eq!(
            form.get("client_id").map(String::as_str),
            Some("demo-first-party")
        );
        let verifier = form.get("code_verifier").ok_or("no verifier")?;
        assert_eq!(&s256_challenge(verifier), challenge);
    }
    assert!(page
        .body
        .contains("<code data-testid=\"granted-scope\">openid offline_access phone</code>"));
    assert!(page.body.contains("<table data-testid=\"claims\">"));
    assert!(page.body.contains(
        "<tr data-claim=\"phone_number\"><th>phone_number</th><td>+15555550100</td></tr>"
    ));
    assert!(page.body.contains("<pre data-testid=\"claims-json\">"));
    assert!(
        page.body.contains("&#34;sub&#34;: &#34;user-1&#34;")
            || page.body.contains("&quot;sub&quot;: &quot;user-1&quot;")
    );
    assert!(!page.body.contains("<img src=x>"));
    assert!(page.body.contains("signature was not verified"));
    assert!(page.body.contains("data-testid=\"refresh-token\">received"));

    // Replaying the callback fails: the state was consumed.
    let replay = get_page(
        &h.app,
        &format!("/callback?code=good-code&state={state}"),
        Some(&cookie),
    )
    .await?;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);

    let logout = get_page(&h.app, "/logout?client_id=demo-first-party", Some(&cookie)).await?;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    let location = logout.location()?;
    assert_eq!(location.path(), "/oauth2/sessions/logout");
    let lq = query_of(&location);
    assert_eq!(lq.get("id_token_hint"), Some(&id_token));
    assert_eq!(
        lq.get("post_logout_redirect_uri").map(String::as_str),
        Some("http://127.0.0.1:5555/logged-out")
    );
    let logout_state = lq.get("state").ok_or("no logout state")?;

    let done = get_page(
        &h.app,
        &format!("/logged-out?state={logout_state}"),
        Some(&cookie),
    )
    .await?;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("data-testid=\"logged-out\""));
    assert!(done.body.contains("Logout state verified."));
    Ok(())
}

#[tokio::test]
async fn callback_rejects_wrong_nonce_and_reports_token_errors() -> TestResult {
    let h = setup().await?;
    let (q, cookie) = start(&h, "/start?client_id=demo-second").await?;
    let state = q.get("state").ok_or("no state")?;
    h.hydra.0.lock().map_err(|_| "poisoned")?.answer = Some((
        200,
        json!({"id_token": unsigned_jwt(&json!({"sub": "u", "aud": "demo-second", "nonce": "other"})),
               "scope": "openid"}),
    ));
    let page = get_page(
        &h.app,
        &format!("/callback?code=c&state={state}"),
        Some(&cookie),
    )
    .await?;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("data-testid=\"nonce-error\""));

    let (q, cookie) = start(&h, "/start?client_id=demo-second").await?;
    let state = q.get("state").ok_or("no state")?;
    h.hydra.0.lock().map_err(|_| "poisoned")?.answer = Some((
        400,
        json!({"error": "invalid_grant", "error_description": "The code was already used"}),
    ));
    let page = get_page(
        &h.app,
        &format!("/callback?code=c&state={state}"),
        Some(&cookie),
    )
    .await?;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    assert!(page.body.contains("data-testid=\"token-error\""));
    assert!(page.body.contains("invalid_grant"));
    Ok(())
}

#[tokio::test]
async fn logout_without_id_token_goes_to_hydra_without_hint() -> TestResult {
    let h = setup().await?;
    let page = get_page(&h.app, "/logout?client_id=demo-second", None).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let location = page.location()?;
    assert_eq!(location.path(), "/oauth2/sessions/logout");
    assert_eq!(location.query(), None);
    let page = get_page(&h.app, "/logged-out", None).await?;
    assert!(page.body.contains("data-testid=\"logged-out\""));
    assert!(page.body.contains("not verified"));
    Ok(())
}

#[tokio::test]
async fn index_links_and_security_headers() -> TestResult {
    let h = setup().await?;
    let page = get_page(&h.app, "/", None).await?;
    assert_eq!(page.status, StatusCode::OK);
    for client in ["demo-first-party", "demo-second", "demo-third-party"] {
        assert!(page.body.contains(&format!(
            "<a href=\"/start?client_id={client}\" data-testid=\"start-{client}\">"
        )));
    }
    for uri in [
        "/",
        "/start",
        "/callback",
        "/logged-out",
        "/style.css",
        "/nope",
    ] {
        let page = get_page(&h.app, uri, None).await?;
        assert!(page
            .header(header::CONTENT_SECURITY_POLICY)
            .contains("frame-ancestors 'none'"));
        assert_eq!(page.header(header::X_FRAME_OPTIONS), "DENY", "{uri}");
        assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
    }
    Ok(())
}
