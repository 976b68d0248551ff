//! Routes of the demo relying party.
//!
//! Per-login secrets (`state`, `nonce`, PKCE verifier) and the last ID token of each browser live
//! in memory, keyed by a random HttpOnly cookie. That is the simplest design that is still
//! correct: nothing secret ever reaches the browser, and a callback is only accepted from the
//! browser that started the login (no login CSRF). A restart forgets everything, which is fine
//! for a demo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{middleware, Router};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::oauth::{self, AuthorizationRequest, Hydra, TokenError};

/// The OAuth2 clients the local stack registers; all public, PKCE only.
pub const CLIENTS: [&str; 3] = ["demo-first-party", "demo-second", "demo-third-party"];
pub const DEFAULT_SCOPE: &str = "openid offline_access email phone profile";
/// The browser cookie; named after the app so it cannot clash with Kratos' or the bridge's
/// cookies, which share the 127.0.0.1 cookie jar (cookies ignore ports).
pub const COOKIE_NAME: &str = "demo_client_sid";
/// Hydra's login and consent must be finished within this time; older pending logins are
/// dropped so the map cannot grow without bound.
const PENDING_TTL: Duration = Duration::from_secs(15 * 60);
/// How long an idle browser's last ID token is kept for logout.
const BROWSER_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Fixed settings, read once at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Origin (and optional path prefix) of this app, without trailing slash.
    pub base_url: String,
    /// `Secure` on the cookie when the app is served over https.
    pub secure_cookies: bool,
}

impl Config {
    pub fn new(base_url: &Url) -> Self {
        Self {
            base_url: base_url.as_str().trim_end_matches('/').to_owned(),
            secure_cookies: base_url.scheme() == "https",
        }
    }
    pub fn redirect_uri(&self) -> String {
        format!("{}/callback", self.base_url)
    }
    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}/logged-out", self.base_url)
    }
}

/// A login that was started and not yet finished.
#[derive(Debug, Clone)]
pub struct Pending {
    pub browser: String,
    pub client_id: String,
    pub nonce: String,
    pub code_verifier: String,
    pub created: Instant,
}

/// What the app remembers about one browser.
#[derive(Debug, Clone)]
pub struct Browser {
    /// Last ID token per client, for `id_token_hint` at logout.
    pub id_tokens: HashMap<String, String>,
    /// The most recent one, for a logout without `client_id`.
    pub last_id_token: Option<String>,
    /// `state` of the logout in progress, checked on `/logged-out`.
    pub logout_state: Option<String>,
    pub last_used: Instant,
}

impl Browser {
    fn new() -> Self {
        Self {
            id_tokens: HashMap::new(),
            last_id_token: None,
            logout_state: None,
            last_used: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Store {
    /// Keyed by `state`.
    pub pending: HashMap<String, Pending>,
    /// Keyed by the browser cookie.
    pub browsers: HashMap<String, Browser>,
}

#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub hydra: Hydra,
    pub store: Mutex<Store>,
}

impl AppState {
    /// The store survives a panicking request: its maps stay consistent after any single insert
    /// or remove, so a poisoned lock is safe to reuse.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/start", get(start))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .route("/logged-out", get(logged_out))
        .route("/style.css", get(stylesheet))
        // The stack registers these as the third-party client's logo, policy and terms, so the
        // consent page has something real to show and link to.
        .route("/logo.svg", get(logo))
        .route("/policy", get(|| legal("Privacy policy")))
        .route("/tos", get(|| legal("Terms of service")))
        .fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Same header set as the login site: no framing, no caching of pages holding claims, no
/// `Referer` leaking codes or state, and no script at all.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    response
}

/// Failures that end a request with an error page.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("no randomness available: {0}")]
    Random(getrandom::Error),
    #[error("template failed: {0}")]
    Render(#[from] askama::Error),
    #[error("cookie is not a valid header value: {0}")]
    Header(#[from] axum::http::header::InvalidHeaderValue),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        eprintln!("demo-client: {self}");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html("<!doctype html><title>Error</title><p>Something went wrong.</p>"),
        )
            .into_response()
    }
}

fn random(bytes: usize) -> Result<String, AppError> {
    oauth::random_token(bytes).map_err(AppError::Random)
}

fn html(status: StatusCode, template: &impl Template) -> Result<Response, AppError> {
    Ok((status, Html(template.render()?)).into_response())
}

/// The browser id from the cookie, if the browser sent one.
fn browser_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// A session cookie (no `Max-Age`): the browser forgets it when closed, the server after
/// `BROWSER_TTL` idle.
fn browser_cookie(config: &Config, value: &str) -> Result<HeaderValue, AppError> {
    let cookie = Cookie::build((COOKIE_NAME, value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.secure_cookies)
        .build();
    Ok(HeaderValue::from_str(&cookie.to_string())?)
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    clients: Vec<&'static str>,
}

async fn index() -> Result<Response, AppError> {
    html(
        StatusCode::OK,
        &IndexPage {
            clients: CLIENTS.to_vec(),
        },
    )
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    heading: String,
    testid: String,
    message: String,
    detail: Option<String>,
}

fn problem(
    status: StatusCode,
    testid: &str,
    heading: &str,
    message: &str,
    detail: Option<String>,
) -> Result<Response, AppError> {
    html(
        status,
        &ProblemPage {
            heading: heading.to_owned(),
            testid: testid.to_owned(),
            message: message.to_owned(),
            detail,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    max_age: Option<String>,
    #[serde(default)]
    acr_values: Option<String>,
}

/// Starts a login: fresh `state`, `nonce` and PKCE verifier, remembered server-side under the
/// browser's cookie, then off to Hydra.
async fn start(
    State(app): State<Arc<AppState>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(client_id) = query
        .client_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.len() <= 200)
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "start-error",
            "Cannot start",
            "A client_id is required.",
            None,
        );
    };
    let scope = query
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SCOPE);
    let prompt = query.prompt.as_deref().filter(|p| !p.is_empty());
    let acr_values = query.acr_values.as_deref().filter(|a| !a.is_empty());
    let max_age = match query.max_age.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "start-error",
                    "Cannot start",
                    "max_age must be a number of seconds.",
                    None,
                )
            }
        },
    };

    let existing = browser_id(&headers);
    let browser = match &existing {
        Some(id) => id.clone(),
        None => random(32)?,
    };
    let state = random(32)?;
    let nonce = random(32)?;
    let code_verifier = random(32)?;
    let code_challenge = oauth::s256_challenge(&code_verifier);
    let redirect_uri = app.config.redirect_uri();

    {
        let mut store = app.store();
        let now = Instant::now();
        store
            .pending
            .retain(|_, p| now.duration_since(p.created) < PENDING_TTL);
        store.pending.insert(
            state.clone(),
            Pending {
                browser: browser.clone(),
                client_id: client_id.to_owned(),
                nonce: nonce.clone(),
                code_verifier,
                created: now,
            },
        );
    }

    let url = oauth::authorization_url(
        &app.hydra.public,
        &AuthorizationRequest {
            client_id,
            redirect_uri: &redirect_uri,
            scope,
            state: &state,
            nonce: &nonce,
            code_challenge: &code_challenge,
            prompt,
            max_age,
            acr_values,
        },
    );
    let mut response = Redirect::to(url.as_str()).into_response();
    if existing.is_none() {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, browser_cookie(&app.config, &browser)?);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_hint: Option<String>,
}

#[derive(Template)]
#[template(path = "oauth_error.html")]
struct OAuthErrorPage {
    client_id: String,
    error: String,
    description: Option<String>,
    hint: Option<String>,
}

#[derive(Debug)]
struct ClaimRow {
    name: String,
    value: String,
}

#[derive(Template)]
#[template(path = "signed_in.html")]
struct SignedInPage {
    client_id: String,
    subject: String,
    granted_scope: String,
    token_type: String,
    expires_in: String,
    refresh_token: bool,
    claims: Vec<ClaimRow>,
    claims_json: String,
}

/// Finishes a login. Order matters: the `state` is checked (and consumed) before anything else,
/// so neither an error nor a code is ever accepted for a login this browser did not start.
async fn callback(
    State(app): State<Arc<AppState>>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let pending = {
        let mut store = app.store();
        query.state.as_deref().and_then(|s| store.pending.remove(s))
    };
    let browser = browser_id(&headers);
    let pending = match pending {
        Some(p) if Some(&p.browser) == browser.as_ref() && p.created.elapsed() < PENDING_TTL => p,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "state-error",
                "Invalid state",
                "This callback does not belong to a login started in this browser (unknown, \
                 reused or expired state).",
                query
                    .error
                    .clone()
                    .map(|e| format!("The authorization server also said: {e}")),
            )
        }
    };

    if let Some(error) = query.error {
        return html(
            StatusCode::OK,
            &OAuthErrorPage {
                client_id: pending.client_id,
                error,
                description: query.error_description.filter(|d| !d.is_empty()),
                hint: query.error_hint.filter(|h| !h.is_empty()),
            },
        );
    }
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "callback-error",
            "No code",
            "The callback carried neither a code nor an error.",
            None,
        );
    };

    let tokens = match app
        .hydra
        .exchange_code(
            &pending.client_id,
            &code,
            &app.config.redirect_uri(),
            &pending.code_verifier,
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(e) => {
            eprintln!("demo-client: token exchange failed: {e}");
            let detail = match &e {
                TokenError::Rejected {
                    error, description, ..
                } => format!("{error}: {description}"),
                other => other.to_string(),
            };
            return problem(
                StatusCode::BAD_GATEWAY,
                "token-error",
                "Code exchange failed",
                "Hydra did not exchange the authorization code for tokens.",
                Some(detail),
            );
        }
    };

    let Some(id_token) = tokens.id_token.clone() else {
        return problem(
            StatusCode::BAD_GATEWAY,
            "token-error",
            "No ID token",
            "Hydra returned no ID token; was the openid scope granted?",
            tokens.scope.clone(),
        );
    };
    let claims = match oauth::id_token_claims(&id_token) {
        Ok(claims) => claims,
        Err(e) => {
            return problem(
                StatusCode::BAD_GATEWAY,
                "token-error",
                "Unreadable ID token",
                "The ID token could not be decoded.",
                Some(e.to_string()),
            )
        }
    };
    // The nonce ties the ID token to this very login; without the check a token issued for
    // another login could be replayed into this one.
    if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
        return problem(
            StatusCode::BAD_REQUEST,
            "nonce-error",
            "Nonce mismatch",
            "The ID token was not issued for this login (nonce differs).",
            None,
        );
    }
    if !oauth::audience_contains(&claims, &pending.client_id) {
        return problem(
            StatusCode::BAD_REQUEST,
            "audience-error",
            "Wrong audience",
            "The ID token was not issued to this client.",
            None,
        );
    }

    {
        let mut store = app.store();
        let now = Instant::now();
        store
            .browsers
            .retain(|_, b| now.duration_since(b.last_used) < BROWSER_TTL);
        let entry = store
            .browsers
            .entry(pending.browser.clone())
            .or_insert_with(Browser::new);
        entry
            .id_tokens
            .insert(pending.client_id.clone(), id_token.clone());
        entry.last_id_token = Some(id_token);
        entry.last_used = now;
    }

    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let claims_json = serde_json::to_string_pretty(&claims).unwrap_or_default();
    let claims = claims
        .iter()
        .map(|(name, value)| ClaimRow {
            name: name.clone(),
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect();
    html(
        StatusCode::OK,
        &SignedInPage {
            client_id: pending.client_id,
            subject,
            granted_scope: tokens.scope.unwrap_or_default(),
            token_type: tokens.token_type.unwrap_or_default(),
            expires_in: tokens.expires_in.map(|e| e.to_string()).unwrap_or_default(),
            refresh_token: tokens.refresh_token.is_some_and(|r| !r.is_empty()),
            claims,
            claims_json,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct LogoutQuery {
    #[serde(default)]
    client_id: Option<String>,
}

/// RP-initiated logout. Hydra only honours `post_logout_redirect_uri` together with an
/// `id_token_hint` (that is how it knows which client's registered URIs to check), so the last
/// ID token of this browser goes along. Without one, Hydra still logs out but then shows its own
/// fallback page instead of coming back here.
async fn logout(
    State(app): State<Arc<AppState>>,
    Query(query): Query<LogoutQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut url = oauth::endpoint(&app.hydra.public, "/oauth2/sessions/logout");
    let client_id = query.client_id.as_deref().filter(|c| !c.is_empty());
    let mut hint = None;
    if let Some(browser) = browser_id(&headers) {
        let mut store = app.store();
        if let Some(entry) = store.browsers.get_mut(&browser) {
            let token = match client_id {
                Some(client_id) => entry.id_tokens.get(client_id).cloned(),
                None => entry.last_id_token.clone(),
            };
            if let Some(token) = token {
                let state = random(32)?;
                entry.logout_state = Some(state.clone());
                entry.last_used = Instant::now();
                hint = Some((token, state));
            }
        }
    }
    if let Some((id_token, state)) = hint {
        url.query_pairs_mut()
            .append_pair("id_token_hint", &id_token)
            .append_pair(
                "post_logout_redirect_uri",
                &app.config.post_logout_redirect_uri(),
            )
            .append_pair("state", &state);
    }
    Ok(Redirect::to(url.as_str()).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LoggedOutQuery {
    #[serde(default)]
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "logged_out.html")]
struct LoggedOutPage {
    state_verified: bool,
}

/// Where Hydra sends the browser after logout. The `state` check shows whether this is the end
/// of a logout this browser started; the stored ID tokens are dropped either way.
async fn logged_out(
    State(app): State<Arc<AppState>>,
    Query(query): Query<LoggedOutQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut state_verified = false;
    if let Some(browser) = browser_id(&headers) {
        let mut store = app.store();
        if let Some(entry) = store.browsers.remove(&browser) {
            state_verified = entry.logout_state.is_some() && entry.logout_state == query.state;
        }
    }
    html(StatusCode::OK, &LoggedOutPage { state_verified })
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

async fn logo() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../templates/logo.svg"),
    )
        .into_response()
}

/// A placeholder legal page for the demo client (the titles are fixed strings, never input).
async fn legal(title: &'static str) -> Response {
    Html(format!(
        "<!doctype html><title>{title}</title><h1>{title}</h1><p>The demo client has no real {title}.</p>"
    ))
    .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><p>Not found.</p>"),
    )
        .into_response()
}
