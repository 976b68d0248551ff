//! Routes of the login site. Each page reads one Kratos flow and draws it; nothing here knows
//! about Hydra or OAuth2, which is the point: the bridge makes any Kratos UI an OAuth2 login.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{middleware, Router};
use serde::Deserialize;

use crate::kratos::{FlowKind, FlowLookup, Kratos, KratosError};
use crate::ui::{allowed_first_factors, build_forms, FormView, MessageView, Wording};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    pub kratos: Kratos,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/registration", get(registration))
        .route("/settings", get(settings))
        .route("/verification", get(verification))
        .route("/recovery", get(recovery))
        .route("/error", get(error))
        .route("/style.css", get(stylesheet))
        .fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers for every answer. The pages hold CSRF tokens and one-time-code forms, so they must
/// never be framed (clickjacking), cached (a shared cache would hand one user's token to another)
/// or leak the flow id through `Referer`. The CSP allows no script at all; `form-action` is left
/// out on purpose because browsers apply it to the redirects after a submit too, and the Kratos
/// submit legitimately redirects to Google, the caller's `return_to` and so on.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    response
}

/// Why a page could not be drawn. Shown to the user as a short, fixed text; the details go to
/// the log, not the page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Kratos(#[from] KratosError),
    #[error("template failed: {0}")]
    Render(#[from] askama::Error),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        eprintln!("login-site: {self}");
        let (status, text) = match self {
            PageError::Kratos(_) => (
                StatusCode::BAD_GATEWAY,
                "The sign-in service is not answering. Please try again in a moment.",
            ),
            PageError::Render(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong."),
        };
        (
            status,
            Html(format!("<!doctype html><title>Error</title><p>{text}</p>")),
        )
            .into_response()
    }
}

fn render(template: &impl Template) -> Result<Response, PageError> {
    Ok(Html(template.render()?).into_response())
}

/// Query of every flow page: Kratos appends `flow`; `return_to` may be set by whoever sent the
/// user here without a flow.
#[derive(Debug, Default, Deserialize)]
pub struct FlowQuery {
    #[serde(default)]
    flow: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

#[derive(Debug)]
pub struct LinkView {
    pub href: String,
    pub text: String,
    pub testid: Option<String>,
}

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    title: String,
    heading: String,
    messages: Vec<MessageView>,
    forms: Vec<FormView>,
    links: Vec<LinkView>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    heading: String,
    status: Option<String>,
    message: String,
    reason: Option<String>,
    error_id: Option<String>,
    login_href: String,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    title: String,
    login_href: String,
    registration_href: String,
}

/// Fixed wording per flow page.
struct PageSpec {
    kind: FlowKind,
    heading: &'static str,
    wording: Wording,
}

async fn show_flow(
    state: &AppState,
    spec: PageSpec,
    query: FlowQuery,
    headers: &HeaderMap,
) -> Result<Response, PageError> {
    let kratos = &state.kratos;
    let restart = || {
        Redirect::to(&kratos.browser_start_url(spec.kind, query.return_to.as_deref()))
            .into_response()
    };
    let Some(id) = query.flow.as_deref().filter(|id| !id.is_empty()) else {
        return Ok(restart());
    };
    let flow = match kratos
        .flow(spec.kind, id, headers.get(header::COOKIE))
        .await?
    {
        FlowLookup::Found(flow) => flow,
        FlowLookup::Gone => return Ok(restart()),
        FlowLookup::NeedsLogin => {
            return Ok(
                Redirect::to(&kratos.browser_start_url(FlowKind::Login, None)).into_response(),
            )
        }
    };

    let return_to = flow.return_to.as_deref();
    let links = match spec.kind {
        FlowKind::Login => vec![LinkView {
            href: kratos.browser_start_url(FlowKind::Registration, return_to),
            text: "No account yet? Create one".to_owned(),
            testid: Some("registration-link".to_owned()),
        }],
        FlowKind::Registration => vec![LinkView {
            href: kratos.browser_start_url(FlowKind::Login, return_to),
            text: "Already have an account? Sign in".to_owned(),
            testid: Some("login-link".to_owned()),
        }],
        _ => Vec::new(),
    };
    render(&FlowPage {
        title: spec.heading.to_owned(),
        heading: spec.heading.to_owned(),
        messages: flow
            .ui
            .messages
            .iter()
            .map(MessageView::from_text)
            .collect(),
        forms: build_forms(
            &flow.ui,
            spec.wording,
            allowed_first_factors(return_to).as_deref(),
        ),
        links,
    })
}

async fn login(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FlowQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let spec = PageSpec {
        kind: FlowKind::Login,
        heading: "Sign in",
        wording: Wording::SignIn,
    };
    show_flow(&state, spec, query, &headers).await
}

async fn registration(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FlowQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let spec = PageSpec {
        kind: FlowKind::Registration,
        heading: "Create an account",
        wording: Wording::SignUp,
    };
    show_flow(&state, spec, query, &headers).await
}

async fn settings(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FlowQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let spec = PageSpec {
        kind: FlowKind::Settings,
        heading: "Account settings",
        wording: Wording::Neutral,
    };
    show_flow(&state, spec, query, &headers).await
}

async fn verification(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FlowQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let spec = PageSpec {
        kind: FlowKind::Verification,
        heading: "Verify your account",
        wording: Wording::Neutral,
    };
    show_flow(&state, spec, query, &headers).await
}

async fn recovery(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FlowQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let spec = PageSpec {
        kind: FlowKind::Recovery,
        heading: "Recover your account",
        wording: Wording::Neutral,
    };
    show_flow(&state, spec, query, &headers).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorQuery {
    #[serde(default)]
    id: Option<String>,
}

/// Kratos sends the browser here only when it cannot return it to a flow (a fallback). The page
/// shows what Kratos stored and offers a fresh start.
async fn error(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ErrorQuery>,
) -> Result<Response, PageError> {
    let kratos = &state.kratos;
    let mut page = ErrorPage {
        title: "Error".to_owned(),
        heading: "Something went wrong".to_owned(),
        status: None,
        message: "The sign-in could not be completed.".to_owned(),
        reason: None,
        error_id: None,
        login_href: kratos.browser_start_url(FlowKind::Login, None),
    };
    if let Some(id) = query.id.as_deref().filter(|id| !id.is_empty()) {
        page.error_id = Some(id.to_owned());
        if let Some(body) = kratos.error(id).await? {
            if let Some(generic) = body.error {
                page.status = match (generic.code, generic.status) {
                    (Some(code), Some(status)) => Some(format!("{code} {status}")),
                    (Some(code), None) => Some(code.to_string()),
                    (None, status) => status,
                };
                if !generic.message.is_empty() {
                    page.message = generic.message;
                }
                page.reason = generic.reason.filter(|r| !r.is_empty());
            }
        }
    }
    render(&page)
}

async fn index(State(state): State<Arc<AppState>>) -> Result<Response, PageError> {
    render(&IndexPage {
        title: "Login site".to_owned(),
        login_href: state.kratos.browser_start_url(FlowKind::Login, None),
        registration_href: state.kratos.browser_start_url(FlowKind::Registration, None),
    })
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Not found</title><p>Not found.</p>"),
    )
        .into_response()
}
