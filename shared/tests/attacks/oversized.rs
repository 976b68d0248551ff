//! Oversized input is refused quickly.

use crate::common::*;

// ------------------------------------------------------------------------------------------
// Oversized input

#[tokio::test]
async fn oversized_input_is_refused_quickly() {
    use bridge::request::{MAX_CHALLENGE_BYTES, MAX_COOKIE_BYTES, MAX_FORM_BYTES, MAX_QUERY_BYTES};
    use bridge::token::MAX_TOKEN_CHARS;
    let kit = Kit::with_sessions();
    let (token, binding) = issue(&kit, "big", "").await;
    let (csrf_cookie, csrf_token) = {
        kit.hydra
            .add_consent("c1", third_party_consent(false, &["openid", "email"]));
        consent_screen(&kit, "c1").await
    };
    let mut tally = Tally::new("oversized input");
    let mut slowest = Duration::ZERO;
    let a = |n: usize| "a".repeat(n);
    let huge_cookie = format!(
        "__Host-bridge_binding={binding}; ory_kratos_session=s1; pad={}",
        a(MAX_COOKIE_BYTES)
    );
    let many_cookies = (0..3000)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut cases: Vec<(String, Request, &str, &[u16])> = vec![
        (
            "login_challenge over the limit".into(),
            get(
                &format!("/login?login_challenge={}", a(MAX_CHALLENGE_BYTES + 1)),
                None,
            ),
            "login",
            &[400],
        ),
        (
            "query over the limit".into(),
            get(
                &format!("/login?login_challenge=c&x={}", a(MAX_QUERY_BYTES)),
                None,
            ),
            "login",
            &[400],
        ),
        (
            "query of 900 repeated parameters".into(),
            get(
                &format!("/login?{}", "login_challenge=c&".repeat(900)),
                None,
            ),
            "login",
            &[400],
        ),
        (
            "token over the limit".into(),
            get(
                &format!("/login/return?t={}", a(MAX_TOKEN_CHARS + 1)),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "token at the limit, random".into(),
            get(
                &format!("/login/return?t={}", a(MAX_TOKEN_CHARS)),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "token with a huge header".into(),
            get(
                &format!(
                    "/login/return?t={}.{}.x",
                    URL_SAFE_NO_PAD
                        .encode(format!("{{\"alg\":\"HS256\",\"kid\":\"{}\"}}", a(5000))),
                    "e30"
                ),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "token of deeply nested JSON".into(),
            get(
                &format!(
                    "/login/return?t={}.e30.x",
                    URL_SAFE_NO_PAD.encode(format!("{}{}", "[".repeat(3000), "]".repeat(3000)))
                ),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "cookie header over the limit".into(),
            get(&return_link(&token), Some(&huge_cookie)),
            "return",
            &[403],
        ),
        (
            "3000 cookies".into(),
            get(&return_link(&token), Some(&many_cookies)),
            "return",
            &[403],
        ),
        (
            "consent_challenge over the limit".into(),
            get(
                &format!("/consent?consent_challenge={}", a(MAX_CHALLENGE_BYTES + 1)),
                None,
            ),
            "consent",
            &[400],
        ),
        (
            "logout_challenge over the limit".into(),
            get(
                &format!("/logout?logout_challenge={}", a(MAX_CHALLENGE_BYTES + 1)),
                None,
            ),
            "logout",
            &[400],
        ),
        (
            "error description over the limit".into(),
            get(
                &format!("/error?error_description={}", a(MAX_QUERY_BYTES)),
                None,
            ),
            "error",
            &[400],
        ),
        (
            "Kratos error id over the limit".into(),
            get(&format!("/error?id={}", a(129)), None),
            "error",
            &[400],
        ),
        (
            "form over the limit".into(),
            post_form_with(
                "/consent",
                &format!(
                    "consent_challenge=c1&csrf_token={}&x={}",
                    encode(&csrf_token),
                    a(MAX_FORM_BYTES)
                ),
                Some(&csrf_cookie),
                &[],
            ),
            "consent",
            &[413],
        ),
        (
            "binary form over the limit".into(),
            {
                let mut r = post_form_with("/consent", "", Some(&csrf_cookie), &[]);
                *r.body_mut() = Body::Binary(vec![b'a'; 4 * MAX_FORM_BYTES]);
                r
            },
            "consent",
            &[413],
        ),
        (
            "csrf_token over the limit".into(),
            post_form_with(
                "/consent",
                &format!("consent_challenge=c1&csrf_token={}&action=allow", a(257)),
                Some(&csrf_cookie),
                &[],
            ),
            "consent",
            &[400],
        ),
        (
            "form of 8000 grant_scope fields, no token".into(),
            post_form_with(
                "/consent",
                &format!(
                    "consent_challenge=c1&action=allow{}",
                    "&grant_scope=x".repeat(2000)
                ),
                Some(&csrf_cookie),
                &[],
            ),
            "consent",
            &[403],
        ),
        (
            "form that is not UTF-8".into(),
            {
                let mut r = post_form_with("/consent", "", Some(&csrf_cookie), &[]);
                *r.body_mut() = Body::Binary(vec![0xff, 0xfe, b'=', 0x80]);
                r
            },
            "consent",
            &[400],
        ),
        (
            "form with another content type".into(),
            {
                let mut r = post_form_with(
                    "/consent",
                    &format!(
                        "consent_challenge=c1&csrf_token={}&action=allow",
                        encode(&csrf_token)
                    ),
                    Some(&csrf_cookie),
                    &[],
                );
                r.headers_mut()
                    .insert("content-type", http::HeaderValue::from_static("text/plain"));
                r
            },
            "consent",
            &[400],
        ),
    ];
    // A genuine form that carries 2000 grant_scope fields stays within the limit and must still
    // be answered quickly with a grant inside the request.
    let padded = format!(
        "consent_challenge=c1&csrf_token={}&action=allow{}",
        encode(&csrf_token),
        "&grant_scope=email".repeat(1500)
    );
    cases.push((
        "genuine form with 1500 grant_scope fields".into(),
        post_form_with("/consent", &padded, Some(&csrf_cookie), &[]),
        "consent",
        &[303],
    ));
    for (what, request, handler, statuses) in cases {
        let started = Instant::now();
        let response = dispatch(&kit, handler, request).await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        let mut problems = violations(&response);
        if !statuses.contains(&response.status().as_u16()) {
            problems.push(format!(
                "status {} (expected {statuses:?})",
                response.status()
            ));
        }
        if took > Duration::from_millis(500) {
            problems.push(format!("took {took:?}"));
        }
        if kit.hydra.accept_count() != 0 {
            problems.push("Hydra accept_login was called".to_owned());
        }
        if kit
            .kratos
            .last_cookie()
            .is_some_and(|c| c.len() > MAX_COOKIE_BYTES)
        {
            problems.push("an oversized cookie reached Kratos".to_owned());
        }
        tally.record(&what, problems);
    }
    report(&format!(
        "attacks: oversized input slowest answer {} ms",
        slowest.as_millis()
    ));
    tally.finish();
}
