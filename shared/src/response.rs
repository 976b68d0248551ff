//! Every response the functions send is built here: pages with the security headers the bridge
//! promises, 303 redirects, and the one place where a [`Failure`] becomes a page (or JSON for
//! API clients) with the right status.

use std::sync::OnceLock;

use askama::Template;
use base64::Engine;
use http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use sha2::{Digest, Sha256};
use url::Url;

/// The stylesheet of every page, inline so a page needs no second request; the CSP allows it by
/// hash rather than with `unsafe-inline`.
const CSS: &str = "body{font-family:system-ui,sans-serif;background:#f5f6f8;color:#1d2330;margin:0}\
main{max-width:32rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem}.detail,.reference{color:#5a6272;font-size:.9rem}\
.button,button{display:inline-block;background:#2457d6;color:#fff;border:0;border-radius:8px;padding:.6rem 1.2rem;font-size:1rem;text-decoration:none;cursor:pointer}\
button.secondary{background:#e4e7ee;color:#1d2330}.actions{display:flex;gap:1rem;justify-content:flex-end}\
fieldset{border:0;padding:0}label{display:block;margin:.5rem 0}.logo{border-radius:8px}.links a{margin-right:1rem}";

fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src https: http: data:; \
             base-uri 'none'; frame-ancestors 'none'"
        )
    })
}

/// Headers that every response carries: the return_to token and challenges travel in URLs, so
/// nothing may be cached or leak through `Referer`, and no page may be framed.
fn with_common_headers(builder: http::response::Builder) -> http::response::Builder {
    builder
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
}

/// An HTML page with the full set of security headers.
pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let builder = with_common_headers(Response::builder().status(status))
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, csp())
        .header(header::X_FRAME_OPTIONS, "DENY");
    finish(builder, Body::Text(body))
}

/// A JSON answer for API clients.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let builder = with_common_headers(Response::builder().status(status))
        .header(header::CONTENT_TYPE, "application/json");
    finish(builder, Body::Text(value.to_string()))
}

/// A 303 redirect; `cookies` are full `Set-Cookie` values.
pub fn see_other(location: &Url, cookies: &[String]) -> Response<Body> {
    let mut builder = with_common_headers(Response::builder().status(StatusCode::SEE_OTHER));
    match HeaderValue::from_str(location.as_str()) {
        Ok(value) => builder = builder.header(header::LOCATION, value),
        // A `Url` is always a valid header value; refuse to redirect rather than panic if not.
        Err(_) => return Failure::Internal.into_response(false),
    }
    for cookie in cookies {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    finish(builder, Body::Empty)
}

/// Adds `Set-Cookie` headers to a finished response.
pub fn with_cookies(mut response: Response<Body>, cookies: &[String]) -> Response<Body> {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn finish(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::Text("Internal error".to_owned()));
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

/// A link offered on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Where it leads.
    pub href: String,
    /// What it says.
    pub label: String,
}

impl Action {
    /// Builds a link.
    pub fn new(href: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            href: href.into(),
            label: label.into(),
        }
    }
}

/// Why a request did not end in the redirect it wanted. Each variant has its status and page;
/// handlers return these and never build error responses themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request itself is wrong (missing or malformed parameter, bad token).
    BadRequest {
        /// Short headline.
        title: &'static str,
        /// What happened, for the user.
        message: &'static str,
        /// A way to start again, when one is known.
        restart: Option<Url>,
    },
    /// The sign-in request is too old or was already finished.
    Expired {
        /// A way to start again, when one is known.
        restart: Option<Url>,
    },
    /// The request is refused for security reasons (replay, CSRF, foreign origin).
    Forbidden {
        /// What happened, for the user.
        message: &'static str,
    },
    /// Another attempt with the same link is still running.
    InProgress {
        /// The same link, to try again.
        retry: Option<String>,
    },
    /// An upstream failed in a way that may pass; the same link works later.
    Unavailable {
        /// The same link (or an equivalent one), to try again.
        retry: Option<String>,
    },
    /// Too many attempts from this browser or address (device user codes); say when to retry.
    TooManyAttempts {
        /// Seconds until attempts are counted afresh.
        retry_after: u64,
    },
    /// An upstream refused us: most likely a configuration problem.
    BadGateway,
    /// The body is larger than any legitimate form.
    PayloadTooLarge,
    /// Wrong HTTP method for this route.
    MethodNotAllowed,
    /// Unknown route.
    NotFound,
    /// Our own bug; never caused by input.
    Internal,
    /// The client's sign-in policy (Hydra `metadata.bridge`) cannot be used. 502, like
    /// [`Failure::BadGateway`]: what Hydra holds for the client is invalid, which is neither the
    /// person's fault (400, they cannot fix it) nor the bridge's bug (500, reserved for those
    /// and alarmed as such); the operator who registered the client must fix it. Never a silent
    /// fallback to the defaults, which would weaken exactly the clients that asked for more.
    ClientPolicyInvalid,
    /// The client's policy refused this sign-in (a grant outside its allow-list, or the policy
    /// hook said no); `reason` is the hook's words, shown escaped, when it gave some.
    PolicyDenied {
        /// The hook's reason, already cleaned and cut by [`crate::hook`].
        reason: Option<String>,
    },
    /// An upstream call failed: the page it becomes, with the log line that records why. The
    /// line is written when the failure is rendered, so it is written once, whichever route
    /// mapped it (see `handlers::FailurePolicy`).
    Upstream(Box<UpstreamFailure>),
}

/// An upstream failure on its way to its page: what the user is shown, and what its log line
/// says (and so which metric it counts into, see [`crate::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    shown: Failure,
    event: &'static str,
    message: &'static str,
    flow: Option<String>,
    upstream: &'static str,
    failure: &'static str,
    error: String,
}

impl UpstreamFailure {
    /// Records `error` as `event` of `flow` (when the request has one), to be shown as `shown`.
    pub(crate) fn new(
        shown: Failure,
        event: &'static str,
        message: &'static str,
        flow: Option<&str>,
        error: &crate::upstream::UpstreamError,
    ) -> Self {
        Self {
            shown,
            event,
            message,
            flow: flow.map(str::to_owned),
            upstream: error.upstream().log_name(),
            failure: error.failure(),
            error: error.to_string(),
        }
    }

    /// Writes the failure's log line. Rendering does it; a route that answers the failure with
    /// something else than its page (a restart) calls it itself.
    pub(crate) fn log(&self) {
        tracing::warn!(
            flow = self.flow.as_deref(),
            event = self.event,
            upstream = self.upstream,
            failure = self.failure,
            error = %self.error,
            "{}",
            self.message
        );
    }
}

impl From<UpstreamFailure> for Failure {
    fn from(failure: UpstreamFailure) -> Self {
        Self::Upstream(Box::new(failure))
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    css: &'a str,
    title: &'a str,
    message: &'a str,
    detail: Option<&'a str>,
    action: Option<Action>,
    reference: Option<&'a str>,
}

/// Renders a plain message page (also used by the error function).
pub fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    detail: Option<&str>,
    action: Option<Action>,
    reference: Option<&str>,
) -> Response<Body> {
    let page = MessagePage {
        css: CSS,
        title,
        message,
        detail,
        action,
        reference,
    };
    match page.render() {
        Ok(body) => html(status, body),
        Err(_) => finish(
            with_common_headers(Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR)),
            Body::Text("Internal error".to_owned()),
        ),
    }
}

/// Renders any template that takes the shared stylesheet.
pub fn render_page<T: Template>(status: StatusCode, page: &T) -> Response<Body> {
    match page.render() {
        Ok(body) => html(status, body),
        Err(_) => Failure::Internal.into_response(false),
    }
}

/// The stylesheet, for templates outside this module.
pub fn stylesheet() -> &'static str {
    CSS
}

impl Failure {
    /// The HTTP status of this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Upstream(cause) => cause.shown.status(),
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Expired { .. } => StatusCode::GONE,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::InProgress { .. } => StatusCode::CONFLICT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ClientPolicyInvalid => StatusCode::BAD_GATEWAY,
            Self::PolicyDenied { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// A stable machine-readable code for JSON answers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Upstream(cause) => cause.shown.code(),
            Self::BadRequest { .. } => "bad_request",
            Self::Expired { .. } => "request_expired",
            Self::Forbidden { .. } => "forbidden",
            Self::InProgress { .. } => "in_progress",
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::BadGateway => "upstream_refused",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::Internal => "internal_error",
            Self::ClientPolicyInvalid => "client_policy_invalid",
            Self::PolicyDenied { .. } => "access_denied",
        }
    }

    fn texts(&self) -> (&'static str, &'static str) {
        match self {
            Self::Upstream(cause) => cause.shown.texts(),
            Self::BadRequest { title, message, .. } => (title, message),
            Self::Expired { .. } => (
                "This sign-in request has expired",
                "Sign-in requests are only valid for a few minutes. Please start again from the application.",
            ),
            Self::Forbidden { message } => ("Sign-in refused", message),
            Self::InProgress { .. } => (
                "Still signing you in",
                "This sign-in is already being completed. Wait a moment and try again.",
            ),
            Self::Unavailable { .. } => (
                "Temporarily unavailable",
                "The sign-in service did not answer in time. Nothing was lost: please try again in a moment.",
            ),
            Self::TooManyAttempts { .. } => (
                "Too many attempts",
                "Too many codes were tried from this browser or network. Wait a few minutes, then try again with the code shown on your device.",
            ),
            Self::BadGateway => (
                "Sign-in could not be completed",
                "The sign-in service refused this request. Please start again from the application; if this keeps happening, contact support.",
            ),
            Self::PayloadTooLarge => ("Request too large", "The request is larger than any valid form."),
            Self::MethodNotAllowed => ("Method not allowed", "This address does not accept this kind of request."),
            Self::NotFound => ("Not found", "There is nothing at this address."),
            Self::Internal => ("Something went wrong", "An unexpected error occurred. Please try again."),
            Self::ClientPolicyInvalid => (
                "This application cannot sign you in",
                "This application's sign-in settings are invalid. Please contact the application's support; trying again will not help.",
            ),
            Self::PolicyDenied { .. } => (
                "Sign-in refused",
                "This application does not allow this sign-in.",
            ),
        }
    }

    fn action(&self) -> Option<Action> {
        match self {
            Self::Upstream(cause) => cause.shown.action(),
            Self::BadRequest { restart, .. } | Self::Expired { restart } => restart
                .as_ref()
                .map(|url| Action::new(url.as_str(), "Start again")),
            Self::InProgress { retry } | Self::Unavailable { retry } => retry
                .as_ref()
                .map(|href| Action::new(href.clone(), "Try again")),
            _ => None,
        }
    }

    /// Renders the failure, logging an upstream failure's line first; `wants_json` picks a JSON
    /// body for API clients.
    pub fn into_response(self, wants_json: bool) -> Response<Body> {
        match self {
            Self::Upstream(cause) => {
                cause.log();
                cause.shown.render(wants_json)
            }
            shown => shown.render(wants_json),
        }
    }

    fn render(self, wants_json: bool) -> Response<Body> {
        let status = self.status();
        let (title, message) = self.texts();
        let detail = match &self {
            Self::PolicyDenied { reason } => reason.as_deref(),
            _ => None,
        };
        let mut response = if wants_json {
            json(
                status,
                &serde_json::json!({"error": self.code(), "error_description": detail.unwrap_or(message)}),
            )
        } else {
            message_page(status, title, message, detail, self.action(), None)
        };
        if matches!(self, Self::Unavailable { .. } | Self::InProgress { .. }) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if let Self::TooManyAttempts { retry_after } = self {
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if matches!(self, Self::MethodNotAllowed) {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_secure_html, body as body_text};

    #[test]
    fn every_failure_is_a_secure_page_with_its_status() {
        let failures = [
            Failure::BadRequest {
                title: "t",
                message: "m",
                restart: None,
            },
            Failure::Expired {
                restart: Url::parse("https://h/oauth2/auth?x=1").ok(),
            },
            Failure::Forbidden { message: "m" },
            Failure::InProgress {
                retry: Some("/login/return?t=x".to_owned()),
            },
            Failure::Unavailable { retry: None },
            Failure::BadGateway,
            Failure::PayloadTooLarge,
            Failure::MethodNotAllowed,
            Failure::NotFound,
            Failure::Internal,
            Failure::ClientPolicyInvalid,
            Failure::PolicyDenied {
                reason: Some("<b>not today</b>".to_owned()),
            },
        ];
        for failure in failures {
            let status = failure.status();
            let response = failure.into_response(false);
            assert_eq!(response.status(), status);
            assert_secure_html(&response);
        }
    }

    #[test]
    fn json_for_api_clients() {
        let response = Failure::Unavailable { retry: None }.into_response(true);
        assert_eq!(response.status(), 503);
        assert!(body_text(&response).contains("temporarily_unavailable"));
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn pages_escape_what_they_show() {
        let response = message_page(
            StatusCode::BAD_REQUEST,
            "<script>t</script>",
            "m & <b>",
            Some("\"quoted\""),
            Some(Action::new("https://x/?a=1&b=\"2\"", "go")),
            None,
        );
        let body = body_text(&response);
        assert!(!body.contains("<script>t"), "{body}");
        assert!(
            body.contains("&lt;script&gt;") || body.contains("&#60;script&#62;"),
            "{body}"
        );
        assert!(!body.contains("\"quoted\""));
    }

    #[test]
    fn redirect_is_303_without_caching() {
        let url = Url::parse("https://hydra.example.com/next").expect("url");
        let response = see_other(&url, &["a=b; Path=/".to_owned()]);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://hydra.example.com/next"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::SET_COOKIE], "a=b; Path=/");
    }
}
