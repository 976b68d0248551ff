//! Open redirects: a hostile Hydra, sealed request URLs and shaped retry links must never send a browser off our site, Hydra or Kratos.

use crate::common::*;

// ------------------------------------------------------------------------------------------
// Open redirect

/// URLs a hostile or broken Hydra (or a crafted `request_url`) could hand the bridge.
fn redirect_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "//evil.example/x",
        "///evil.example/x",
        "////evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "https:/evil.example",
        "https:\\\\evil.example",
        "https:///evil.example",
        "http://oauth.example.com/oauth2/auth",
        "https://evil.example/",
        "https://evil.example/https://oauth.example.com/",
        "https://evil.example#https://oauth.example.com/",
        "https://evil.example?https://oauth.example.com/",
        "https://oauth.example.com@evil.example/",
        "https://oauth.example.com:443@evil.example/",
        "https://oauth.example.com%40evil.example/",
        "https://oauth.example.com%2f@evil.example/",
        "https://oauth.example.com\\@evil.example/",
        "https://oauth.example.com\\.evil.example/",
        "https://evil.example\\oauth.example.com/",
        "https://evil.example\\@oauth.example.com/",
        "https://user:pass@oauth.example.com/oauth2/auth",
        "https://user@oauth.example.com/oauth2/auth",
        "https://oauth.example.com.evil.example/",
        "https://oauth.example.com./oauth2/auth",
        "https://oauth.example.co/",
        "https://oauth-example.com/",
        "https://oauth.example.com:444/oauth2/auth",
        "https://oauth.example.com:80/oauth2/auth",
        "https://oauth.example.com:8443/oauth2/auth",
        "https://oauth.example.com:65536/",
        "https://oauth.example.com:-1/",
        "https://oauth.example.com%00.evil.example/",
        "https://oauth.example.com%0d%0a.evil.example/",
        "https://evil%2eexample/",
        "https://%65vil.example/",
        "https://xn--oauth-9ya.example.com/",
        "https://оauth.example.com/",
        "https://oauth.exаmple.com/",
        "https://oauth。example。com.evil.example/",
        "https://127.0.0.1/",
        "https://0x7f.1/",
        "https://2130706433/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://localhost/",
        "https://169.254.169.254/latest/meta-data/",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(document.domain)",
        "javascript://oauth.example.com/%0aalert(1)",
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://oauth.example.com/",
        "wss://oauth.example.com/",
        "blob:https://oauth.example.com/uuid",
        "about:blank",
        "/relative/path",
        "relative",
        "?login_verifier=x",
        "#fragment",
        "",
        " ",
        "https://",
        "https://oauth.example.com\r\nSet-Cookie: evil=1",
        "https://oauth.example.com/\r\nSet-Cookie: evil=1",
        "https://evil.example\r\n.oauth.example.com/",
        "https://oauth.example.com/%0d%0aSet-Cookie:%20evil=1",
        "https://oauth.example.com/\u{560a}\u{560d}Set-Cookie:evil=1",
        "https://oauth.example.com/\u{2028}x",
        "https://oauth.example.com\t.evil.example/",
        "https://oauth.example.com\n.evil.example/",
        "https://evil.example/\u{0}https://oauth.example.com/",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Variants that stay on Hydra's origin after normalisation: allowed, but the Location must
    // then be the normalised Hydra URL.
    corpus.extend(
        [
            "HTTPS://OAUTH.EXAMPLE.COM/oauth2/auth?login_verifier=x",
            "https://OAuth.Example.Com/oauth2/auth",
            "https://oauth.example.com:443/oauth2/auth",
            "https://oauth.example.com:0443/oauth2/auth",
            "https://oauth%2eexample%2ecom/oauth2/auth",
            "https://ｏａｕｔｈ.example.com/oauth2/auth",
            "https://oauth.example.com/oauth2/auth?next=https://evil.example",
            "https://oauth.example.com/..%2f..%2fevil.example",
            "https://oauth.example.com/\\\\evil.example",
            "https://oauth.example.com/oauth2/auth#@evil.example",
            "https://oauth.example.com?@evil.example",
            "https://oauth.example.com/oauth2/auth?x=\"><script>alert(1)</script>",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    corpus
}

/// Every handler step that sends the browser where Hydra says, with Hydra answering `target`.
async fn responses_with_hydra_redirect(target: &str) -> Vec<(&'static str, Response<Body>)> {
    let kit = Kit::with_sessions();
    let mut out = Vec::new();

    kit.hydra
        .add_login("skip", login_request(true, "ident-1", ""));
    kit.hydra.add_login("sso", login_request(false, "", ""));
    // Tokens are issued before Hydra turns hostile (the login entry's own redirect goes to
    // Kratos, not to Hydra's answer).
    let (token, binding) = issue(&kit, "ret", "").await;
    let (token2, binding2) = issue(&kit, "ret2", "").await;
    kit.hydra
        .add_consent("cskip", third_party_consent(true, &["openid", "email"]));
    kit.hydra
        .add_consent("cform", third_party_consent(false, &["openid", "email"]));
    kit.hydra.add_logout(
        "lo",
        LogoutRequest {
            subject: "ident-1".to_owned(),
            sid: "sid".to_owned(),
            rp_initiated: true,
        },
    );
    let (csrf_cookie, csrf_token) = consent_screen(&kit, "cform").await;
    kit.hydra.set_redirect(target);

    out.push((
        "login skip",
        dispatch(&kit, "login", get("/login?login_challenge=skip", None)).await,
    ));
    out.push((
        "login sso",
        dispatch(
            &kit,
            "login",
            get("/login?login_challenge=sso", Some(SESSION_COOKIE)),
        )
        .await,
    ));
    let response = send_return(&kit, &token, &return_cookies(&binding)).await;
    if response.status() == 502 {
        assert!(
            kit.replay.is_empty(),
            "a refused redirect gives the claim back"
        );
    }
    out.push(("return accept", response));
    // A completed claim whose stored destination was tampered with in the table.
    let claim = kit.earlier_claim(&token2, "sess-1", "earlier");
    kit.replay.claim(&claim).await.expect("claim");
    kit.replay.complete(&claim, target).await.expect("complete");
    out.push((
        "return repeated",
        send_return(&kit, &token2, &return_cookies(&binding2)).await,
    ));
    out.push((
        "consent skip",
        consent::handle(
            get("/consent?consent_challenge=cskip", None),
            &kit.consent_deps(),
        )
        .await,
    ));
    for action in ["allow", "deny"] {
        let form = format!(
            "consent_challenge=cform&csrf_token={}&grant_scope=email&action={action}",
            encode(&csrf_token)
        );
        out.push((
            if action == "allow" {
                "consent allow"
            } else {
                "consent deny"
            },
            consent::handle(
                post_form_with(
                    "/consent",
                    &form,
                    Some(&csrf_cookie),
                    &[("origin", "https://auth.example.com")],
                ),
                &kit.consent_deps(),
            )
            .await,
        ));
    }
    out.push((
        "logout",
        dispatch(
            &kit,
            "logout",
            get("/logout?logout_challenge=lo", Some(SESSION_COOKIE)),
        )
        .await,
    ));
    out
}

#[tokio::test]
async fn hydra_redirects_never_leave_hydra() {
    let mut tally = Tally::new("open redirect (Hydra redirect_to)");
    for target in redirect_corpus() {
        for (step, response) in responses_with_hydra_redirect(&target).await {
            let mut problems = violations(&response);
            if !matches!(response.status().as_u16(), 303 | 502) {
                problems.push(format!("status {}", response.status()));
            }
            tally.record(&format!("{step} with redirect_to {target:?}"), problems);
        }
    }
    tally.finish();
}

#[tokio::test]
async fn sealed_request_urls_never_leave_hydra() {
    let mut tally = Tally::new("open redirect (sealed request_url)");
    for target in redirect_corpus() {
        let kit = Kit::with_sessions();
        // Hydra's login request carries the crafted request_url; login entry seals it.
        let (token, binding) = issue(&kit, "sealed", &target).await;
        // The challenge is dead by the time the user comes back: the bridge restarts through
        // the sealed request_url, but only on Hydra's origin.
        kit.hydra.fail_accept("sealed", UpstreamKind::Expired);
        let response = send_return(&kit, &token, &return_cookies(&binding)).await;
        let mut problems = violations(&response);
        if !matches!(response.status().as_u16(), 303 | 410) {
            problems.push(format!("status {}", response.status()));
        }
        tally.record(&format!("restart with request_url {target:?}"), problems);
        // No Kratos session: the browser goes through Kratos again with the same token.
        let response = send_return(&kit, &token, &format!("__Host-bridge_binding={binding}")).await;
        tally.record(
            &format!("no session with request_url {target:?}"),
            violations(&response),
        );
        // prompt/max_age come from the same URL; login entry must still only go to Kratos.
        kit.hydra
            .add_login("sso2", login_request(false, "", &target));
        let response = login::handle(
            get("/login?login_challenge=sso2", Some(SESSION_COOKIE)),
            &kit.login_deps(),
        )
        .await;
        tally.record(
            &format!("login entry with request_url {target:?}"),
            violations(&response),
        );
        // The token expired: the 410 page may offer "Start again" through the sealed
        // request_url, but only on Hydra's public origin.
        kit.advance(kit.config.token_ttl + Duration::from_secs(1));
        let response = send_return(&kit, &token, &return_cookies(&binding)).await;
        let mut problems = violations(&response);
        if response.status() != 410 {
            problems.push(format!("status {}", response.status()));
        }
        problems.extend(absolute_links_off_hydra(&body(&response)));
        tally.record(
            &format!("expired token with request_url {target:?}"),
            problems,
        );
    }
    tally.finish();
}

/// Absolute links on a page that do not lead to Hydra's public origin.
pub fn absolute_links_off_hydra(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(unescape)
        .filter(|href| !href.starts_with('/') || href.starts_with("//"))
        .filter(|href| {
            !href.starts_with(&format!("{HYDRA_ORIGIN}/")) || location_problem(href).is_some()
        })
        .map(|href| format!("page links to {href:?}"))
        .collect()
}

#[tokio::test]
async fn retry_links_stay_on_our_site() {
    // The "Try again" link of a 503/409 page repeats the request's own path and query; a path an
    // attacker shapes (API Gateway hands over `rawPath` as sent) must not turn it into a link to
    // another site.
    let mut tally = Tally::new("retry links");
    let kit = Kit::with_sessions();
    kit.hydra.fail_challenge("down", UpstreamKind::Transient);
    kit.kratos.fail_whoami(true);
    let (token, binding) = issue(&kit, "retry", "").await;
    for path in [
        "//evil.example",
        "//evil.example/login",
        "///evil.example/login",
        "/%2fevil.example/login",
        "/%5cevil.example/login",
        "/login",
    ] {
        for (handler, query) in [
            ("login", "login_challenge=down".to_owned()),
            ("return", format!("t={}", encode(&token))),
            ("consent", "consent_challenge=down".to_owned()),
            ("logout", "logout_challenge=down".to_owned()),
        ] {
            let uri = format!("{path}?{query}");
            let Ok(request) = http::Request::builder()
                .uri(uri.as_str())
                .header("cookie", return_cookies(&binding))
                .body(Body::Empty)
            else {
                continue;
            };
            let request = Request::from(request);
            let response = dispatch(&kit, handler, request).await;
            let mut problems = violations(&response);
            if response.status() != 503 {
                problems.push(format!("status {}", response.status()));
            }
            tally.record(&format!("{handler} at {uri}"), problems);
        }
    }
    tally.finish();
}
