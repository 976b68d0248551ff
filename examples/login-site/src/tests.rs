//! In-process tests: the site's router is driven with `oneshot`, and Kratos is a small axum
//! server on an ephemeral port that serves flows shaped after the Kratos v26.2.0 OpenAPI schema
//! (`loginFlow`, `registrationFlow`, `uiContainer`, `uiNode`).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use url::Url;

use crate::app::{router, AppState};
use crate::kratos::Kratos;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FLOW_ID: &str = "9f0a5e2c-3f6b-4c1d-9c55-0d7c4f1b2a11";
const RETURN_TO: &str = "http://127.0.0.1:9000/login/return?token=abc&x=1";
const CSRF: &str = "Cm9vdC1jc3JmLXRva2VuLXZhbHVl";

fn csrf_node() -> Value {
    json!({
        "type": "input", "group": "default",
        "attributes": {"name": "csrf_token", "type": "hidden", "value": CSRF, "required": true,
                        "disabled": false, "node_type": "input"},
        "messages": [], "meta": {}
    })
}

fn google_node() -> Value {
    json!({
        "type": "input", "group": "oidc",
        "attributes": {"name": "provider", "type": "submit", "value": "google",
                        "disabled": false, "node_type": "input"},
        "messages": [],
        "meta": {"label": {"id": 1010002, "text": "Sign in with google", "type": "info",
                            "context": {"provider": "google"}}}
    })
}

fn flow(base: &str, kind: &str, state: &str, nodes: Vec<Value>, messages: Value) -> Value {
    json!({
        "id": FLOW_ID,
        "type": "browser",
        "state": state,
        "expires_at": "2030-01-01T00:10:00Z",
        "issued_at": "2030-01-01T00:00:00Z",
        "created_at": "2030-01-01T00:00:00Z",
        "updated_at": "2030-01-01T00:00:00Z",
        "request_url": format!("{base}/self-service/{kind}/browser?return_to=x"),
        "return_to": RETURN_TO,
        "refresh": false,
        "requested_aal": "aal1",
        "ui": {
            "action": format!("{base}/self-service/{kind}?flow={FLOW_ID}"),
            "method": "POST",
            "nodes": nodes,
            "messages": messages,
        }
    })
}

/// Login, first screen: Google button plus the code method asking for the phone number.
fn login_choose_method(base: &str) -> Value {
    flow(
        base,
        "login",
        "choose_method",
        vec![
            csrf_node(),
            google_node(),
            json!({
                "type": "input", "group": "default",
                "attributes": {"name": "identifier", "type": "text", "value": "", "required": true,
                                "autocomplete": "tel", "disabled": false, "node_type": "input"},
                "messages": [],
                "meta": {"label": {"id": 1070004, "text": "Phone number", "type": "info"}}
            }),
            json!({
                "type": "input", "group": "code",
                "attributes": {"name": "method", "type": "submit", "value": "code",
                                "disabled": false, "node_type": "input"},
                "messages": [],
                "meta": {"label": {"id": 1010015, "text": "Send sign in code", "type": "info"}}
            }),
        ],
        json!([]),
    )
}

/// Login after Kratos sent the SMS: identifier now hidden, code input, submit and resend.
fn login_code_sent(base: &str) -> Value {
    flow(
        base,
        "login",
        "sent_email",
        vec![
            json!({
                "type": "input", "group": "default",
                "attributes": {"name": "identifier", "type": "hidden", "value": "+15555550100",
                                "disabled": false, "node_type": "input"},
                "messages": [], "meta": {}
            }),
            json!({
                "type": "input", "group": "code",
                "attributes": {"name": "method", "type": "hidden", "value": "code",
                                "disabled": false, "node_type": "input"},
                "messages": [], "meta": {}
            }),
            json!({
                "type": "input", "group": "code",
                "attributes": {"name": "code", "type": "text", "required": true,
                                "pattern": "[0-9]+", "maxlength": 6,
                                "disabled": false, "node_type": "input"},
                "messages": [{"id": 4010008, "text": "The login code is invalid or has already been used. Please try again.", "type": "error"}],
                "meta": {"label": {"id": 1010017, "text": "Login code", "type": "info"}}
            }),
            json!({
                "type": "input", "group": "code",
                "attributes": {"name": "method", "type": "submit", "value": "code",
                                "disabled": false, "node_type": "input"},
                "messages": [],
                "meta": {"label": {"id": 1070009, "text": "Continue", "type": "info"}}
            }),
            json!({
                "type": "input", "group": "code",
                "attributes": {"name": "resend", "type": "submit", "value": "code",
                                "disabled": false, "node_type": "input"},
                "messages": [],
                "meta": {"label": {"id": 1070008, "text": "Resend code", "type": "info"}}
            }),
            csrf_node(),
        ],
        json!([{"id": 1010014, "text": "A code has been sent to the address <b>you</b> provided & \"more\".", "type": "info"}]),
    )
}

fn registration_choose_method(base: &str) -> Value {
    flow(
        base,
        "registration",
        "choose_method",
        vec![
            csrf_node(),
            json!({
                "type": "input", "group": "default",
                "attributes": {"name": "traits.phone", "type": "tel", "required": true,
                                "autocomplete": "tel", "disabled": false, "node_type": "input"},
                "messages": [],
                "meta": {"label": {"id": 1070002, "text": "Phone number", "type": "info"}}
            }),
            {
                let mut node = google_node();
                node["meta"]["label"]["text"] = json!("Sign up with google");
                node
            },
            json!({
                "type": "input", "group": "code",
                "attributes": {"name": "method", "type": "submit", "value": "code",
                                "disabled": false, "node_type": "input"},
                "messages": [],
                "meta": {"label": {"id": 1040006, "text": "Sign up with code", "type": "info"}}
            }),
        ],
        json!([{"id": 4000007, "text": "<script>alert(1)</script>", "type": "error"}]),
    )
}

/// A JSON answer (axum's `json` feature is off in this crate to keep it lean).
fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What the fake Kratos saw, for assertions.
#[derive(Default)]
struct Seen {
    cookies: Vec<Option<String>>,
}

#[derive(Clone)]
struct FakeKratos {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

#[derive(serde::Deserialize)]
struct IdQuery {
    id: String,
}

async fn fake_flow(
    State(fake): State<FakeKratos>,
    kind: &'static str,
    Query(query): Query<IdQuery>,
    headers: HeaderMap,
) -> Response {
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Ok(mut seen) = fake.seen.lock() {
        seen.cookies.push(cookie.clone());
    }
    let error = |code: u16, status: &str| {
        let status_code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(
            status_code,
            &json!({"error": {"code": code, "status": status, "message": "nope"}}),
        )
    };
    match (kind, query.id.as_str()) {
        (_, "gone") => error(410, "Gone"),
        (_, "unknown") => error(404, "Not Found"),
        (_, "broken") => error(500, "Internal Server Error"),
        (_, "csrf") if cookie.as_deref() != Some("csrf_token_82b119=abc; other=1") => {
            error(403, "Forbidden")
        }
        ("settings", _) => error(401, "Unauthorized"),
        ("login", "sent") => json_response(StatusCode::OK, &login_code_sent(&fake.base)),
        ("login", _) => json_response(StatusCode::OK, &login_choose_method(&fake.base)),
        ("registration", _) => {
            json_response(StatusCode::OK, &registration_choose_method(&fake.base))
        }
        _ => error(404, "Not Found"),
    }
}

async fn fake_error(Query(query): Query<IdQuery>) -> Response {
    if query.id == "known" {
        json_response(
            StatusCode::OK,
            &json!({
            "id": "known",
            "error": {"code": 500, "status": "Internal Server Error",
                      "message": "The <i>provider</i> failed", "reason": "upstream said \"no\""}
            }),
        )
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Starts the fake Kratos and returns the site's router pointed at it.
async fn setup() -> Result<(Router, FakeKratos), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let fake = FakeKratos {
        base: base.clone(),
        seen: Arc::default(),
    };
    let kratos_app = Router::new()
        .route(
            "/self-service/login/flows",
            get(|s, q, h| fake_flow(s, "login", q, h)),
        )
        .route(
            "/self-service/registration/flows",
            get(|s, q, h| fake_flow(s, "registration", q, h)),
        )
        .route(
            "/self-service/settings/flows",
            get(|s, q, h| fake_flow(s, "settings", q, h)),
        )
        .route("/self-service/errors", get(fake_error))
        .with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, kratos_app).await;
    });
    let kratos = Kratos::new(Url::parse(&base)?)?;
    Ok((router(Arc::new(AppState { kratos })), fake))
}

async fn get_page(
    app: &Router,
    uri: &str,
    cookie: Option<&str>,
) -> Result<(StatusCode, HeaderMap, String), Box<dyn std::error::Error>> {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((status, headers, String::from_utf8(body.to_vec())?))
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The forms of the page, split on `<form`, keyed by their `data-group`.
fn form_of<'a>(body: &'a str, group: &str) -> Option<&'a str> {
    body.split("<form")
        .skip(1)
        .find(|f| f.contains(&format!("data-group=\"{group}\"")))
        .map(|f| f.split("</form>").next().unwrap_or(f))
}

#[tokio::test]
async fn login_renders_google_button_and_phone_form() -> TestResult {
    let (app, fake) = setup().await?;
    let (status, _, body) = get_page(&app, &format!("/login?flow={FLOW_ID}"), None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    let action = format!("action=\"{}/self-service/login?flow={FLOW_ID}\"", fake.base);
    let oidc = form_of(&body, "oidc").ok_or("no oidc form")?;
    assert!(oidc.contains(&action), "{oidc}");
    assert!(oidc.contains("method=\"post\""), "{oidc}");
    assert!(oidc.contains(&format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{CSRF}\">"
    )));
    assert!(oidc.contains(
        "<button type=\"submit\" name=\"provider\" value=\"google\" data-testid=\"provider-google\">Sign in with Google</button>"
    ), "{oidc}");
    assert!(
        !oidc.contains("name=\"identifier\""),
        "the Google form must not carry the required phone field"
    );

    let code = form_of(&body, "code").ok_or("no code form")?;
    assert!(code.contains(&action));
    assert!(code.contains("name=\"csrf_token\""));
    assert!(code.contains(
        "<input type=\"text\" name=\"identifier\" value=\"\" required autocomplete=\"tel\" data-testid=\"phone-input\">"
    ), "{code}");
    assert!(code.contains("Phone number"));
    assert!(code.contains(
        "<button type=\"submit\" name=\"method\" value=\"code\" data-testid=\"submit-identifier\">Send sign in code</button>"
    ), "{code}");
    assert!(!body.contains("data-testid=\"messages\""));

    let registration = format!(
        "href=\"{}/self-service/registration/browser?return_to=http%3A%2F%2F127.0.0.1%3A9000%2Flogin%2Freturn%3Ftoken%3Dabc%26x%3D1\" data-testid=\"registration-link\"",
        fake.base
    );
    assert!(
        body.contains(&registration.replace('&', "&amp;")) || body.contains(&registration),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn login_after_code_sent_renders_code_form_and_escaped_messages() -> TestResult {
    let (app, _) = setup().await?;
    let (status, _, body) = get_page(&app, "/login?flow=sent", None).await?;
    assert_eq!(status, StatusCode::OK);
    let code = form_of(&body, "code").ok_or("no code form")?;
    assert!(code.contains("<input type=\"hidden\" name=\"identifier\" value=\"+15555550100\">"));
    assert!(code.contains("<input type=\"hidden\" name=\"method\" value=\"code\">"));
    assert!(code.contains(
        "<input type=\"text\" name=\"code\" required pattern=\"[0-9]+\" maxlength=\"6\" data-testid=\"code-input\">"
    ), "{code}");
    assert!(code.contains("data-testid=\"submit-code\">Continue</button>"));
    assert!(code.contains(
        "<button type=\"submit\" name=\"resend\" value=\"code\" formnovalidate data-testid=\"resend-code\">Resend code</button>"
    ), "{code}");
    assert!(!code.contains("data-testid=\"phone-input\""));
    assert!(!body.contains("data-group=\"oidc\""));

    let messages = body
        .split("data-testid=\"messages\"")
        .nth(1)
        .ok_or("no messages block")?;
    assert!(messages.contains(
        "A code has been sent to the address &#60;b&#62;you&#60;/b&#62; provided &#38; &#34;more&#34;."
    ) || messages.contains(
        "A code has been sent to the address &lt;b&gt;you&lt;/b&gt; provided &amp; &quot;more&quot;."
    ), "{messages}");
    assert!(!body.contains("<b>you</b>"));
    assert!(body.contains("data-message-id=\"1010014\""));
    assert!(body.contains(
        "data-testid=\"node-message\" data-message-id=\"4010008\" data-message-type=\"error\""
    ));
    Ok(())
}

#[tokio::test]
async fn registration_renders_phone_trait_google_and_login_link() -> TestResult {
    let (app, fake) = setup().await?;
    let (status, _, body) = get_page(&app, "/registration?flow=any", None).await?;
    assert_eq!(status, StatusCode::OK);
    let oidc = form_of(&body, "oidc").ok_or("no oidc form")?;
    assert!(oidc.contains("data-testid=\"provider-google\">Sign up with Google</button>"));
    assert!(!oidc.contains("traits.phone"));
    let code = form_of(&body, "code").ok_or("no code form")?;
    assert!(code.contains(
        "<input type=\"tel\" name=\"traits.phone\" required autocomplete=\"tel\" data-testid=\"phone-input\">"
    ), "{code}");
    assert!(code.contains("data-testid=\"submit-identifier\">Sign up with code</button>"));
    assert!(
        body.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || body.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(!body.contains("<script>"));
    assert!(body.contains(&format!(
        "href=\"{}/self-service/login/browser?return_to=http%3A%2F%2F127.0.0.1%3A9000%2Flogin%2Freturn%3Ftoken%3Dabc%26x%3D1\" data-testid=\"login-link\"",
        fake.base
    )));
    Ok(())
}

#[tokio::test]
async fn missing_flow_redirects_to_kratos_keeping_return_to() -> TestResult {
    let (app, fake) = setup().await?;
    let (status, headers, _) = get_page(&app, "/login", None).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&headers),
        format!("{}/self-service/login/browser", fake.base)
    );

    let (status, headers, _) = get_page(
        &app,
        "/login?return_to=http%3A%2F%2F127.0.0.1%3A9000%2Fx%3Fa%3Db",
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&headers),
        format!(
            "{}/self-service/login/browser?return_to=http%3A%2F%2F127.0.0.1%3A9000%2Fx%3Fa%3Db",
            fake.base
        )
    );
    Ok(())
}

#[tokio::test]
async fn gone_or_foreign_flows_restart() -> TestResult {
    let (app, fake) = setup().await?;
    for (uri, start) in [
        ("/login?flow=gone", "login"),
        ("/login?flow=unknown&return_to=http://a/b", "login"),
        ("/registration?flow=gone", "registration"),
        ("/login?flow=csrf", "login"),
    ] {
        let (status, headers, _) = get_page(&app, uri, None).await?;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert!(
            location(&headers).starts_with(&format!("{}/self-service/{start}/browser", fake.base)),
            "{uri}: {}",
            location(&headers)
        );
    }
    let (_, headers, _) = get_page(&app, "/login?flow=unknown&return_to=http://a/b", None).await?;
    assert!(location(&headers).ends_with("?return_to=http%3A%2F%2Fa%2Fb"));
    Ok(())
}

#[tokio::test]
async fn browser_cookie_is_forwarded_to_kratos() -> TestResult {
    let (app, fake) = setup().await?;
    let cookie = "csrf_token_82b119=abc; other=1";
    let (status, _, body) = get_page(&app, "/login?flow=csrf", Some(cookie)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = fake.seen.lock().map_err(|_| "poisoned")?;
    assert_eq!(seen.cookies.last(), Some(&Some(cookie.to_owned())));
    Ok(())
}

#[tokio::test]
async fn settings_without_session_goes_to_login() -> TestResult {
    let (app, fake) = setup().await?;
    let (status, headers, _) = get_page(&app, "/settings?flow=x", None).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&headers),
        format!("{}/self-service/login/browser", fake.base)
    );
    let (_, headers, _) = get_page(&app, "/verification", None).await?;
    assert_eq!(
        location(&headers),
        format!("{}/self-service/verification/browser", fake.base)
    );
    Ok(())
}

#[tokio::test]
async fn kratos_failure_is_a_bad_gateway_page() -> TestResult {
    let (app, _) = setup().await?;
    let (status, headers, body) = get_page(&app, "/login?flow=broken", None).await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("not answering"));
    assert_eq!(
        headers.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    Ok(())
}

#[tokio::test]
async fn error_page_shows_kratos_error_escaped() -> TestResult {
    let (app, _) = setup().await?;
    let (status, _, body) = get_page(&app, "/error?id=known", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("data-testid=\"error-status\">500 Internal Server Error"));
    assert!(!body.contains("<i>provider</i>"));
    assert!(body.contains("provider"));
    assert!(
        body.contains("upstream said &#34;no&#34;")
            || body.contains("upstream said &quot;no&quot;")
    );

    let (status, _, body) = get_page(&app, "/error?id=missing", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("could not be completed"));
    Ok(())
}

#[tokio::test]
async fn every_page_has_security_headers() -> TestResult {
    let (app, _) = setup().await?;
    for uri in [
        "/login?flow=x",
        "/login",
        "/error",
        "/",
        "/style.css",
        "/nope",
    ] {
        let (_, headers, _) = get_page(&app, uri, None).await?;
        let get = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            get(header::CONTENT_SECURITY_POLICY).contains("frame-ancestors 'none'"),
            "{uri}"
        );
        assert!(get(header::CONTENT_SECURITY_POLICY).contains("default-src 'none'"));
        assert_eq!(get(header::X_FRAME_OPTIONS), "DENY", "{uri}");
        assert_eq!(get(header::REFERRER_POLICY), "no-referrer", "{uri}");
        assert_eq!(get(header::CACHE_CONTROL), "no-store", "{uri}");
    }
    Ok(())
}

/// The bridge's `bridge_methods` hint in the flow's `return_to` narrows the first factors shown;
/// without it every group is shown.
#[test]
fn the_bridge_methods_hint_shows_only_the_allowed_first_factors() -> TestResult {
    use crate::ui::{allowed_first_factors, build_forms, Wording};
    let ui: crate::kratos::UiContainer =
        serde_json::from_value(login_choose_method("http://kratos")["ui"].clone())?;
    let groups = |allowed: Option<&[String]>| -> Vec<String> {
        build_forms(&ui, Wording::SignIn, allowed)
            .into_iter()
            .map(|f| f.group)
            .collect()
    };
    assert!(groups(None).contains(&"oidc".to_owned()));
    assert!(groups(None).contains(&"code".to_owned()));

    let hint = allowed_first_factors(Some(
        "https://auth.example.com/login/return?t=abc&bridge_methods=code",
    ));
    assert_eq!(hint.as_deref(), Some(&["code".to_owned()][..]));
    let shown = groups(hint.as_deref());
    assert!(shown.contains(&"code".to_owned()), "{shown:?}");
    assert!(!shown.contains(&"oidc".to_owned()), "{shown:?}");

    // Google only: the Google button alone, not the phone field that belongs to the code form.
    let google_only = allowed_first_factors(Some(
        "https://auth.example.com/login/return?t=abc&bridge_methods=oidc",
    ));
    assert_eq!(groups(google_only.as_deref()), vec!["oidc".to_owned()]);
    let forms = build_forms(&ui, Wording::SignIn, google_only.as_deref());
    assert!(
        forms
            .iter()
            .flat_map(|f| &f.nodes)
            .all(|n| n.is_hidden() || n.name == "provider"),
        "only the provider button and hidden inputs"
    );

    assert_eq!(allowed_first_factors(Some(RETURN_TO)), None);
    assert_eq!(allowed_first_factors(None), None);
    Ok(())
}
