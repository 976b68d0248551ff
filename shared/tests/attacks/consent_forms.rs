//! Forged consent posts and forms that try to widen the grant.

use crate::common::*;

// ------------------------------------------------------------------------------------------
// Consent

fn consent_decisions(kit: &Kit) -> usize {
    kit.hydra
        .calls()
        .iter()
        .filter(|c| c.starts_with("accept_consent") || c.starts_with("reject_consent"))
        .count()
}

/// What a forged consent POST is: (description, form body, cookie header, extra headers).
type CsrfCase<'a> = (String, String, Option<String>, Vec<(&'a str, &'a str)>);

#[tokio::test]
async fn forged_consent_posts_are_refused() {
    let kit = Kit::new();
    kit.hydra
        .add_consent("c1", third_party_consent(false, &["openid", "email"]));
    kit.hydra
        .add_consent("c2", third_party_consent(false, &["openid", "email"]));
    let (cookie, token) = consent_screen(&kit, "c1").await;
    let (cookie2, token2) = consent_screen(&kit, "c2").await;
    let mut tally = Tally::new("consent CSRF");
    let same_origin = ("origin", "https://auth.example.com");
    let other_kit_keys = KeySet::from_json(
        r#"{"current":"k2","keys":[{"kid":"k2","secret":"YW5vdGhlci1rZXktYW5vdGhlci1rZXktYW5vdGhlci1rZXk"}]}"#,
    )
    .expect("keys");
    let foreign_token = other_kit_keys.csrf_key().token_for("anything");
    let wrong_kid = token.replacen("k2.", "k1.", 1);
    let mut cases: Vec<CsrfCase<'_>> = Vec::new();
    for action in ["allow", "deny"] {
        let form = |t: &str| {
            format!(
                "consent_challenge=c1&csrf_token={}&grant_scope=email&action={action}",
                encode(t)
            )
        };
        let bare = format!("consent_challenge=c1&grant_scope=email&action={action}");
        let c = Some(cookie.clone());
        cases.extend([
            (
                format!("{action}: no token"),
                bare.clone(),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: empty token"),
                form(""),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: other challenge's token"),
                form(&token2),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: other challenge's token and cookie"),
                form(&token2),
                Some(cookie2.clone()),
                vec![same_origin],
            ),
            (
                format!("{action}: token without cookie"),
                form(&token),
                None,
                vec![same_origin],
            ),
            (
                format!("{action}: token with another cookie"),
                form(&token),
                Some(format!("__Host-bridge_csrf={}", "B".repeat(43))),
                vec![same_origin],
            ),
            (
                format!("{action}: token with the cookie twice"),
                form(&token),
                Some(format!("{cookie}; __Host-bridge_csrf={}", "B".repeat(43))),
                vec![same_origin],
            ),
            (
                format!("{action}: token under another key set"),
                form(&foreign_token),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: token with the other kid"),
                form(&wrong_kid),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: truncated token"),
                form(&token[..token.len() - 2]),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: token as challenge-less MAC"),
                form(&kit.keys().csrf_key().token_for("")),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: token given twice"),
                format!("{}&csrf_token=x", form(&token)),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: challenge given twice"),
                format!("{}&consent_challenge=c2", form(&token)),
                c.clone(),
                vec![same_origin],
            ),
        ]);
        for origin in [
            "https://evil.example",
            "null",
            "https://auth.example.com.evil.example",
            "http://auth.example.com",
            "https://auth.example.com:8443",
            "https://login.example.com",
            "https://auth.example.com/",
            "HTTPS://AUTH.EXAMPLE.COM",
            "",
        ] {
            cases.push((
                format!("{action}: Origin {origin:?} with a valid token"),
                form(&token),
                c.clone(),
                vec![("origin", origin)],
            ));
        }
        for site in [
            "cross-site",
            "same-site",
            "CROSS-SITE",
            "cross-site, same-origin",
            "unknown",
            "",
        ] {
            cases.push((
                format!("{action}: Sec-Fetch-Site {site:?} with a valid token"),
                form(&token),
                c.clone(),
                vec![("sec-fetch-site", site)],
            ));
            cases.push((
                format!("{action}: Sec-Fetch-Site {site:?} and our Origin"),
                form(&token),
                c.clone(),
                vec![("sec-fetch-site", site), same_origin],
            ));
        }
    }
    for (what, form, cookie, headers) in &cases {
        let response = consent::handle(
            post_form_with("/consent", form, cookie.as_deref(), headers),
            &kit.consent_deps(),
        )
        .await;
        let mut problems = violations(&response);
        if !matches!(response.status().as_u16(), 403 | 400) {
            problems.push(format!("status {}", response.status()));
        }
        if consent_decisions(&kit) != 0 {
            problems.push("Hydra was told a decision".to_owned());
        }
        tally.record(what, problems);
    }
    // Methods other than GET and POST.
    for method in ["PUT", "DELETE", "PATCH"] {
        let mut request = post_form_with(
            "/consent",
            &format!(
                "consent_challenge=c1&csrf_token={}&action=allow",
                encode(&token)
            ),
            Some(&cookie),
            &[same_origin],
        );
        *request.method_mut() = http::Method::from_bytes(method.as_bytes()).expect("method");
        let response = consent::handle(request, &kit.consent_deps()).await;
        let mut problems = violations(&response);
        if response.status() != 405 || consent_decisions(&kit) != 0 {
            problems.push(format!("status {}", response.status()));
        }
        tally.record(&format!("{method} /consent"), problems);
    }
    // Sanity: the genuine form from the right browser works.
    let genuine = format!(
        "consent_challenge=c1&csrf_token={}&grant_scope=email&action=allow",
        encode(&token)
    );
    let response = consent::handle(
        post_form_with(
            "/consent",
            &genuine,
            Some(&cookie),
            &[same_origin, ("sec-fetch-site", "same-origin")],
        ),
        &kit.consent_deps(),
    )
    .await;
    assert_eq!(response.status(), 303, "genuine consent works");
    tally.finish();
}

#[tokio::test]
async fn forged_forms_never_widen_the_grant() {
    let pool = [
        "openid",
        "offline_access",
        "email",
        "phone",
        "profile",
        "custom:read",
    ];
    // What a forged form may ask for: the requestable scopes and lookalikes of them.
    let forged_pool: Vec<&str> = pool
        .into_iter()
        .chain([
            "admin",
            "OPENID",
            "Email",
            "email ",
            " email",
            "email\u{0}",
            "email admin",
            "email+phone",
            "openid,admin",
            "*",
            "",
            "custom",
            "custom:write",
            "profile\u{200b}",
            "offline",
            "phone_number",
        ])
        .collect();
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut tally = Tally::new("consent forged scopes");
    let kit = Kit::new();
    for set in 0..16 {
        // A requested subset of the pool (bit mask), always with openid half of the time.
        let mask = (rng.next() as usize % 63) + 1;
        let requested: Vec<&str> = pool
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0 || (*i == 0 && set % 2 == 0))
            .map(|(_, s)| *s)
            .collect();
        let challenge = format!("scopes{set}");
        kit.hydra
            .add_consent(&challenge, third_party_consent(false, &requested));
        let (cookie, token) = consent_screen(&kit, &challenge).await;
        for _ in 0..40 {
            let mut form = format!(
                "consent_challenge={challenge}&csrf_token={}&action=allow",
                encode(&token)
            );
            let count = rng.below(8);
            for _ in 0..count {
                let scope = forged_pool[rng.below(forged_pool.len())];
                let field = [
                    "grant_scope",
                    "grant_scope",
                    "grant_scope",
                    "grant_scope[]",
                    "Grant_Scope",
                    "scope",
                ][rng.below(6)];
                form.push_str(&format!("&{field}={}", encode(scope)));
            }
            if rng.below(3) == 0 {
                form.push_str("&grant_access_token_audience=evil-api&audience=evil-api");
            }
            if rng.below(4) == 0 {
                form.push_str("&remember=true");
            }
            let response = consent::handle(
                post_form_with(
                    "/consent",
                    &form,
                    Some(&cookie),
                    &[("origin", "https://auth.example.com")],
                ),
                &kit.consent_deps(),
            )
            .await;
            let mut problems = violations(&response);
            match kit.hydra.accepted_consent(&challenge) {
                Some(accepted) if response.status() == 303 => {
                    let granted: BTreeSet<&str> =
                        accepted.grant_scope.iter().map(String::as_str).collect();
                    let wanted: BTreeSet<&str> = requested.iter().copied().collect();
                    if granted.len() != accepted.grant_scope.len() {
                        problems.push(format!("duplicate scopes {:?}", accepted.grant_scope));
                    }
                    if !granted.is_subset(&wanted) {
                        problems.push(format!("granted {granted:?} beyond requested {wanted:?}"));
                    }
                    if wanted.contains("openid") != granted.contains("openid") {
                        problems.push("openid dropped or added".to_owned());
                    }
                    if accepted.grant_access_token_audience != vec!["api".to_owned()] {
                        problems.push(format!(
                            "audience {:?}",
                            accepted.grant_access_token_audience
                        ));
                    }
                    for claim in accepted.session.id_token.keys() {
                        let scope = match claim.as_str() {
                            "email" | "email_verified" => "email",
                            "phone_number" | "phone_number_verified" => "phone",
                            _ => "profile",
                        };
                        if !granted.contains(scope) {
                            problems.push(format!("claim {claim} without scope {scope}"));
                        }
                    }
                }
                _ => problems.push(format!("status {} without an accept", response.status())),
            }
            tally.record(&form, problems);
        }
    }
    tally.finish();
}
