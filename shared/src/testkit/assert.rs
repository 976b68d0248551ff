//! Reading responses, and what every response must satisfy.

use http::header;
use lambda_http::{Body, Response};
use url::Url;

use super::setup::{HYDRA_ORIGIN, KRATOS_LOGIN, RETURN_URL};

/// The `Location` header (empty when there is none).
pub fn location(response: &Response<Body>) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Every `Set-Cookie` header.
pub fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// The body as text.
pub fn body(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// The CSRF cookie (`name=value`) a form page set and the token its form carries.
pub fn form_csrf(response: &Response<Body>) -> (String, String) {
    let cookie = set_cookies(response)[0]
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let token = body(response)
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf token in form")
        .to_owned();
    (cookie, token)
}

/// The `t=` token of a login entry redirect to Kratos and the value of the binding cookie set
/// with it.
pub fn token_and_binding(response: &Response<Body>) -> Option<(String, String)> {
    let location = Url::parse(response.headers().get("location")?.to_str().ok()?).ok()?;
    let return_to = location
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())?;
    let token = Url::parse(&return_to)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())?;
    let cookie = response.headers().get("set-cookie")?.to_str().ok()?;
    let binding = cookie.split(';').next()?.split_once('=')?.1.to_owned();
    Some((token, binding))
}

/// Asserts the headers every HTML page must carry.
pub fn assert_secure_html(response: &Response<Body>) {
    let h = response.headers();
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(csp.contains("frame-ancestors 'none'"), "CSP: {csp}");
    assert_eq!(
        h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
    assert_eq!(
        h.get(header::REFERRER_POLICY).map(|v| v.as_bytes()),
        Some(&b"no-referrer"[..])
    );
    assert_eq!(
        h.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    assert!(h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
}

/// Where a redirect of the test deployment may lead, as a problem when it leads elsewhere:
/// Hydra's public origin (which covers a sealed `request_url` on it), Kratos' browser login flow
/// returning to our own return URL, or our own return URL (single sign-on) with nothing but the
/// token. Also refuses control characters, spaces, non-ASCII and backslashes anywhere.
pub fn location_problem(location: &str) -> Option<String> {
    if location
        .bytes()
        .any(|b| !(0x21..0x7f).contains(&b) || b == b'\\')
    {
        return Some(format!(
            "Location with control, space, non-ASCII or backslash: {location:?}"
        ));
    }
    destination_problem(location)
}

/// [`location_problem`] without the check of the characters: only where the redirect leads.
pub fn destination_problem(location: &str) -> Option<String> {
    let Ok(parsed) = Url::parse(location) else {
        return Some(format!("Location is not an absolute URL: {location:?}"));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(format!("Location with user info: {location:?}"));
    }
    if location.starts_with(&format!("{HYDRA_ORIGIN}/")) {
        return (parsed.origin().ascii_serialization() != HYDRA_ORIGIN)
            .then(|| format!("Location looks like Hydra but is not: {location:?}"));
    }
    if location.starts_with(KRATOS_LOGIN) {
        let return_to = parsed
            .query_pairs()
            .filter(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
            .collect::<Vec<_>>();
        let ok = parsed.origin().ascii_serialization() == "https://id.example.com"
            && return_to.len() == 1
            && return_to[0].starts_with(RETURN_URL)
            && Url::parse(&return_to[0]).is_ok_and(|u| {
                u.origin().ascii_serialization() == "https://auth.example.com"
                    && u.path() == "/login/return"
            });
        return (!ok).then(|| format!("Kratos login URL with a foreign return_to: {location:?}"));
    }
    if location.starts_with(RETURN_URL) {
        // Single sign-on: straight to our own return function, with nothing but the token.
        let ok = parsed.origin().ascii_serialization() == "https://auth.example.com"
            && parsed.path() == "/login/return"
            && parsed.query_pairs().all(|(k, _)| k == "t")
            && parsed.fragment().is_none();
        return (!ok).then(|| format!("return URL with something else in it: {location:?}"));
    }
    Some(format!(
        "Location outside Hydra, Kratos and the return function: {location:?}"
    ))
}

/// The invariants the fuzz targets hold every response to; panics (a crash for libFuzzer) when
/// one fails: no 500, no CR/LF/NUL in a header, a visible-ASCII `Location` that
/// [`destination_problem`] accepts.
pub fn check(response: &Response<Body>) {
    let status = response.status().as_u16();
    assert!(status != 500, "500 Internal Server Error");
    for (name, value) in response.headers() {
        assert!(
            !value
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "CR/LF/NUL in header {name}"
        );
    }
    if let Some(location) = response.headers().get("location") {
        let location = location.to_str().expect("Location is visible ASCII");
        if let Some(problem) = destination_problem(location) {
            panic!("{problem}");
        }
    }
}
