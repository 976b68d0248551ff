//! Requests as a browser sends them, and what Hydra says about them.

use lambda_http::{Body, Request};

use crate::hydra::{ConsentRequest, LoginRequest, OAuth2Client};

/// A GET of `uri` with the cookie header `cookie`.
pub fn get(uri: &str, cookie: Option<&str>) -> Request {
    let mut builder = http::Request::builder().method("GET").uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder.body(Body::Empty).expect("request")
}

/// A form POST as a browser sends it.
pub fn post_form(uri: &str, body: &str, cookie: Option<&str>, origin: Option<&str>) -> Request {
    let origin: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    post_form_with(uri, body, cookie, &origin)
}

/// A form POST with any extra `headers` (forged origins, fetch metadata, ...).
pub fn post_form_with(
    uri: &str,
    body: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Request {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::Text(body.to_owned())).expect("request")
}

/// `value` form-encoded, for a query or form parameter.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The return function's link for `token`.
pub fn return_link(token: &str) -> String {
    format!("/login/return?t={}", encode(token))
}

/// A login request of client `app` for `openid email`, as Hydra would describe it.
pub fn login_request(skip: bool, subject: &str, request_url: &str) -> LoginRequest {
    LoginRequest {
        client: OAuth2Client {
            client_id: "app".to_owned(),
            ..OAuth2Client::default()
        },
        request_url: request_url.to_owned(),
        requested_scope: vec!["openid".to_owned(), "email".to_owned()],
        skip,
        subject: subject.to_owned(),
        ..LoginRequest::default()
    }
}

/// A consent request of the third-party client `third` for `scopes` and audience `api`, with
/// `ident-1`'s claims in the login context.
pub fn third_party_consent(skip: bool, scopes: &[&str]) -> ConsentRequest {
    ConsentRequest {
        client: OAuth2Client {
            client_id: "third".to_owned(),
            client_name: Some("Third".to_owned()),
            skip_consent: Some(false),
            ..OAuth2Client::default()
        },
        context: Some(serde_json::json!({
            "identity_id": "ident-1",
            "claims_by_scope": {
                "email": {"email": "ann@example.com", "email_verified": true},
                "phone": {"phone_number": "+15550001", "phone_number_verified": true},
                "profile": {"name": "Ann Lee", "given_name": "Ann", "family_name": "Lee"}
            }
        })),
        requested_scope: scopes.iter().map(|s| (*s).to_owned()).collect(),
        requested_access_token_audience: vec!["api".to_owned()],
        skip,
        request_url: String::new(),
        subject: "ident-1".to_owned(),
        ..ConsentRequest::default()
    }
}
