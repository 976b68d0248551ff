//! Injection: untrusted texts on pages and in headers.

use crate::common::*;
use bridge::hydra::ConsentRequest;

// ------------------------------------------------------------------------------------------
// Injection

const HTML_PAYLOADS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><svg onload=alert(1)>",
    "'><img src=x onerror=alert(1)>",
    "</title><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "\" autofocus onfocus=\"alert(1)",
    "' onmouseover='alert(1)",
    "<!--",
    "<![CDATA[",
    "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">",
    "<base href=\"https://evil.example/\">",
    "<form action=\"https://evil.example\"><button>Continue</button></form>",
    "{{7*7}}{% raw %}",
    "&lt;script&gt;",
    "\u{202e}gnp.exe",
];

const LINK_PAYLOADS: &[&str] = &[
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:image/svg+xml,<svg onload=alert(1)>",
    "vbscript:msgbox(1)",
    "//evil.example/logo.png",
    "https://cdn.example.com/logo.png\" onerror=\"alert(1)",
    "https://cdn.example.com/\"><script>alert(1)</script>",
    "file:///etc/passwd",
];

fn raw_payload_problems(page: &str, payload: &str) -> Vec<String> {
    let dangerous = payload.contains(['<', '>', '"', '\'']);
    if dangerous && page.contains(payload) {
        vec![format!("payload {payload:?} appears unescaped")]
    } else {
        Vec::new()
    }
}

/// What is wrong with `response`, or with how `payload` stands on its page.
fn page_problems(response: &Response<Body>, payload: &str) -> Vec<String> {
    let mut problems = violations(response);
    problems.extend(raw_payload_problems(&body(response), payload));
    problems
}

/// The consent screen a fresh kit shows for `consent`.
async fn consent_page(consent: ConsentRequest) -> Response<Body> {
    let kit = Kit::new();
    kit.hydra.add_consent("inj", consent);
    consent::handle(
        get("/consent?consent_challenge=inj", None),
        &kit.consent_deps(),
    )
    .await
}

#[tokio::test]
async fn untrusted_texts_are_escaped() {
    let mut tally = Tally::new("HTML injection");
    for payload in HTML_PAYLOADS {
        // Client name, client id (shown when the name is empty) and scope names on the consent
        // screen.
        for (name, id, scope) in [
            (
                Some(payload.to_string()),
                "third".to_owned(),
                "email".to_owned(),
            ),
            (Some(String::new()), payload.to_string(), "email".to_owned()),
            (None, "third".to_owned(), payload.to_string()),
        ] {
            let mut consent = third_party_consent(false, &["openid", &scope]);
            consent.client.client_name = name;
            consent.client.client_id = id;
            let response = consent_page(consent).await;
            let mut problems = page_problems(&response, payload);
            if response.status() != 200 {
                problems.push(format!("status {}", response.status()));
            }
            tally.record(&format!("consent screen with {payload:?}"), problems);
        }
        // Kratos error message and reason, and the id itself.
        let kit = Kit::new();
        kit.kratos.add_error(
            "e-1",
            json!({"error": {"message": payload, "reason": payload, "code": 500}}),
        );
        for uri in [
            "/error?id=e-1".to_owned(),
            format!("/error?id={}", encode(payload)),
        ] {
            let response = error_page::handle(get(&uri, None), &kit.error_deps()).await;
            tally.record(
                &format!("Kratos error page {uri}"),
                page_problems(&response, payload),
            );
        }
        // Hydra's error parameters.
        for name in ["error", "error_description", "error_hint"] {
            let uri = format!("/error?{name}={}", encode(payload));
            let response = error_page::handle(get(&uri, None), &kit.error_deps()).await;
            tally.record(
                &format!("Hydra error page {name}"),
                page_problems(&response, payload),
            );
        }
    }
    for payload in LINK_PAYLOADS {
        for field in ["logo_uri", "policy_uri", "tos_uri"] {
            let mut consent = third_party_consent(false, &["openid"]);
            match field {
                "logo_uri" => consent.client.logo_uri = Some(payload.to_string()),
                "policy_uri" => consent.client.policy_uri = Some(payload.to_string()),
                _ => consent.client.tos_uri = Some(payload.to_string()),
            }
            let response = consent_page(consent).await;
            tally.record(
                &format!("consent {field} {payload:?}"),
                page_problems(&response, payload),
            );
        }
    }
    tally.finish();
}

/// What an attacker puts in a parameter to try to split a header.
const HEADER_PAYLOADS: &[&str] = &[
    "%0d%0aSet-Cookie:%20evil=1",
    "%0d%0aLocation:%20https://evil.example",
    "%0aSet-Cookie:evil=1",
    "%0dSet-Cookie:evil=1",
    "%0d%0a%0d%0a%3Chtml%3Eevil%3C/html%3E",
    "%E5%98%8A%E5%98%8DSet-Cookie:evil=1",
    "%C4%8D%C4%8ASet-Cookie:evil=1",
    "%E2%80%A8Set-Cookie:evil=1",
    "%C2%85Set-Cookie:evil=1",
    "%00Set-Cookie:evil=1",
    "%250d%250aSet-Cookie:evil=1",
    "%5Cr%5CnSet-Cookie:evil=1",
];

#[tokio::test]
async fn no_header_injection_through_any_parameter() {
    let mut tally = Tally::new("header injection");
    let kit = Kit::with_sessions();
    let (token, binding) = issue(&kit, "hdr", "https://oauth.example.com/oauth2/auth").await;
    kit.hydra.add_login(
        "c1",
        login_request(false, "", "https://oauth.example.com/oauth2/auth"),
    );
    kit.hydra
        .add_consent("c1", third_party_consent(false, &["openid", "email"]));
    kit.hydra.add_logout(
        "c1",
        LogoutRequest {
            subject: "ident-1".to_owned(),
            ..LogoutRequest::default()
        },
    );
    let (csrf_cookie, csrf_token) = consent_screen(&kit, "c1").await;
    let token_param = encode(&token);
    let csrf_param = encode(&csrf_token);
    for payload in HEADER_PAYLOADS {
        let p = payload;
        let mut requests: Vec<(String, Request, &str)> = vec![
            (
                format!("login_challenge=c1{p}"),
                get(&format!("/login?login_challenge=c1{p}"), None),
                "login",
            ),
            (
                format!("login extra param {p}"),
                get(&format!("/login?login_challenge=c1&x={p}"), None),
                "login",
            ),
            (
                format!("login cookie {p}"),
                get(
                    "/login?login_challenge=c1",
                    Some(&format!(
                        "__Host-bridge_binding={p}; ory_kratos_session={p}"
                    )),
                ),
                "login",
            ),
            (
                format!("t={p}"),
                get(
                    &format!("/login/return?t={p}"),
                    Some(&return_cookies(&binding)),
                ),
                "return",
            ),
            (
                format!("t=<token>{p}"),
                get(
                    &format!("/login/return?t={token_param}{p}"),
                    Some(&return_cookies(&binding)),
                ),
                "return",
            ),
            (
                format!("return extra param {p}"),
                get(
                    &format!("/login/return?t={token_param}&x={p}"),
                    Some(&format!(
                        "__Host-bridge_binding={binding}; ory_kratos_session=unknown{p}"
                    )),
                ),
                "return",
            ),
            (
                format!("consent_challenge=c1{p}"),
                get(&format!("/consent?consent_challenge=c1{p}"), None),
                "consent",
            ),
            (
                format!("consent cookie {p}"),
                get(
                    "/consent?consent_challenge=c1",
                    Some(&format!("__Host-bridge_csrf={p}")),
                ),
                "consent",
            ),
            (
                format!("logout_challenge=c1{p}"),
                get(&format!("/logout?logout_challenge=c1{p}"), None),
                "logout",
            ),
            (
                format!("error={p}"),
                get(
                    &format!("/error?error={p}&error_description={p}&error_hint={p}"),
                    None,
                ),
                "error",
            ),
            (
                format!("id={p}"),
                get(&format!("/error?id={p}"), None),
                "error",
            ),
        ];
        for field in [
            "consent_challenge",
            "csrf_token",
            "grant_scope",
            "action",
            "remember",
        ] {
            let mut form = vec![
                ("consent_challenge", "c1".to_owned()),
                ("csrf_token", csrf_param.clone()),
                ("grant_scope", "email".to_owned()),
                ("action", "allow".to_owned()),
                ("remember", "true".to_owned()),
            ];
            for (name, value) in &mut form {
                if *name == field {
                    value.push_str(p);
                }
            }
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            requests.push((
                format!("consent form {field}{p}"),
                post_form_with(
                    "/consent",
                    &body,
                    Some(&csrf_cookie),
                    &[("origin", "https://auth.example.com")],
                ),
                "consent",
            ));
        }
        for (what, request, handler) in requests {
            let response = dispatch(&kit, handler, request).await;
            let mut problems = violations(&response);
            if response.headers().get_all("set-cookie").iter().count() > 1 {
                problems.push("more than one Set-Cookie".to_owned());
            }
            let location = location(&response).to_ascii_lowercase();
            if location.contains("set-cookie")
                && !location.contains("set-cookie%3a")
                && !location.contains("set-cookie:")
            {
                problems.push(format!("suspicious Location {location}"));
            }
            tally.record(&what, problems);
        }
    }
    tally.finish();
}
