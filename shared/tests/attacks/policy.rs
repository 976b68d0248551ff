//! Attacks on the per-client policy: forged client metadata, assurance downgrades (an aal1
//! session on an aal2 client, a tampered sealed policy), first-factor bypass and grants outside
//! the scope and audience allow-lists, including Hydra's `skip`.

use bridge::hydra::{ConsentRequest, OidcContext};

use crate::common::segments;
use crate::common::*;
use crate::tokens::signed_with_our_key;

const REQUEST_URL: &str = "https://oauth.example.com/oauth2/auth?client_id=app";

/// A login of client `app` whose Hydra metadata is `metadata`.
fn login_with(metadata: Value) -> bridge::hydra::LoginRequest {
    let mut login = login_request(false, "", REQUEST_URL);
    login.client.metadata = Some(metadata);
    login
}

/// A real token and binding issued by login entry for a client with `metadata`.
async fn issue_with(kit: &Kit, challenge: &str, metadata: Value) -> (String, String) {
    issue_for(kit, challenge, login_with(metadata)).await
}

/// Sends `request` to the consent handler and records whether it was refused with `status`
/// and nothing was granted.
async fn attack_consent(kit: &Kit, tally: &mut Tally, what: &str, request: Request, status: u16) {
    let response = consent::handle(request, &kit.consent_deps()).await;
    let mut problems = violations(&response);
    if response.status() != status {
        problems.push(format!("status {}", response.status()));
    }
    if !kit.hydra.accepted_consents().is_empty() {
        problems.push("consent granted".to_owned());
    }
    tally.record(what, problems);
}

/// Sends `token` to the return handler from a browser holding Kratos cookie `session_cookie`
/// and records whether the login stayed unaccepted and unclaimed; a redirect may only lead back
/// to Kratos' login flow with the parameters in `kratos_must_ask`.
async fn attack_return_as(
    kit: &Kit,
    tally: &mut Tally,
    what: &str,
    token: &str,
    cookies: &str,
    kratos_must_ask: &[(&str, &str)],
) {
    let before = kit.hydra.accept_count();
    let response =
        login_return::handle(get(&return_link(token), Some(cookies)), &kit.return_deps()).await;
    let mut problems = violations(&response);
    if kit.hydra.accept_count() != before {
        problems.push("Hydra accept_login was called".to_owned());
    }
    if !kit.replay.is_empty() {
        problems.push("a claim was written".to_owned());
    }
    if response.status() == 303 {
        let location = location(&response);
        let url = Url::parse(&location).expect("location");
        if !url.path().ends_with("/self-service/login/browser") {
            problems.push(format!(
                "redirect outside Kratos' login flow: {}",
                url.path()
            ));
        }
        for (name, value) in kratos_must_ask {
            if !url.query_pairs().any(|(k, v)| k == *name && v == *value) {
                problems.push(format!("Kratos not asked for {name}={value}"));
            }
        }
    } else if response.status() != 400 {
        problems.push(format!("status {}", response.status()));
    }
    tally.record(what, problems);
}

#[tokio::test]
async fn forged_client_metadata_is_refused_never_defaulted() {
    let forged = [
        json!({"bridge": {"required_aal": "aal2"}}),
        json!({"bridge": {"version": 2, "required_aal": "aal2"}}),
        json!({"bridge": {"version": "1"}}),
        json!({"bridge": {"version": 1.5}}),
        json!({"bridge": {"version": 1, "requried_aal": "aal2"}}),
        json!({"bridge": {"version": 1, "required_aal": "aal2", "extra": true}}),
        json!({"bridge": {"version": 1, "required_aal": "AAL2"}}),
        json!({"bridge": {"version": 1, "required_aal": "aal3"}}),
        json!({"bridge": {"version": 1, "allowed_methods": ["totp"]}}),
        json!({"bridge": {"version": 1, "allowed_methods": []}}),
        json!({"bridge": {"version": 1, "allowed_methods": "oidc"}}),
        json!({"bridge": {"version": 1, "allowed_scopes": []}}),
        json!({"bridge": {"version": 1, "allowed_audiences": [1]}}),
        json!({"bridge": {"version": 1, "hook": "yes"}}),
        json!({"bridge": {"version": 1, "hook": true}}),
        json!({"bridge": null}),
        json!({"bridge": "aal2"}),
        json!({"bridge": ["version", 1]}),
    ];
    let mut tally = Tally::new("policy forged metadata");
    for (n, metadata) in forged.iter().enumerate() {
        // Login entry: a page, no token, nothing accepted.
        let kit = Kit::with_sessions();
        let challenge = format!("forged-{n}");
        kit.hydra
            .add_login(&challenge, login_with(metadata.clone()));
        let response = login::handle(
            get(&format!("/login?login_challenge={challenge}"), None),
            &kit.login_deps(),
        )
        .await;
        let mut problems = violations(&response);
        if response.status() != 502 {
            problems.push(format!("login entry status {}", response.status()));
        }
        if response.headers().contains_key("location") || !set_cookies(&response).is_empty() {
            problems.push("login entry went on under some policy".to_owned());
        }
        if kit.hydra.accept_count() != 0 {
            problems.push("login accepted".to_owned());
        }
        tally.record(&format!("login with {metadata}"), problems);

        // Consent, remembered (`skip`): refused as well, never granted under the defaults.
        let mut consent = third_party_consent(true, &["openid", "email"]);
        consent.client.metadata = Some(metadata.clone());
        kit.hydra.add_consent(&challenge, consent);
        attack_consent(
            &kit,
            &mut tally,
            &format!("consent with {metadata}"),
            get(&format!("/consent?consent_challenge={challenge}"), None),
            502,
        )
        .await;
    }
    tally.finish();
}

#[tokio::test]
async fn assurance_downgrades_are_never_accepted() {
    let mut tally = Tally::new("policy downgrades");
    let aal1_browser = |binding: &str| return_cookies(binding);

    // A token sealed for an aal2 client, brought back with an aal1 session.
    let kit = Kit::with_sessions();
    let (token, binding) = issue_with(
        &kit,
        "aal2-client",
        json!({"bridge": {"version": 1, "required_aal": "aal2"}}),
    )
    .await;
    // An aal1 session, and Kratos answering an unknown or missing level (counts as aal1).
    for level in [Some("aal1"), None, Some("aal0"), Some("AAL2"), Some("")] {
        let mut odd = session("sess-1", "ident-1", &["oidc", "totp"]);
        odd.authenticator_assurance_level = level.map(str::to_owned);
        kit.kratos.add_session(SESSION_COOKIE, odd);
        attack_return_as(
            &kit,
            &mut tally,
            &format!("session level {level:?} on an aal2 client"),
            &token,
            &aal1_browser(&binding),
            &[("aal", "aal2")],
        )
        .await;
    }

    // The request's acr_values=aal2 on a client without a policy.
    let kit = Kit::with_sessions();
    let mut login = login_request(false, "", REQUEST_URL);
    login.oidc_context = Some(OidcContext {
        acr_values: vec!["aal2".to_owned()],
    });
    let (token, binding) = issue_for(&kit, "acr", login).await;
    attack_return_as(
        &kit,
        &mut tally,
        "aal1 session on acr_values=aal2",
        &token,
        &aal1_browser(&binding),
        &[("aal", "aal2")],
    )
    .await;

    // The sealed policy altered: every byte of the plaintext's end (where the policy lies,
    // before the 16-byte tag) flipped, re-signed with the real JWS key. The AEAD still refuses.
    let kit = Kit::with_sessions();
    let (token, binding) = issue_with(
        &kit,
        "tampered",
        json!({"bridge": {"version": 1, "required_aal": "aal2", "allowed_methods": ["oidc"]}}),
    )
    .await;
    let (header, claims, _) = segments(&token);
    let sealed = URL_SAFE_NO_PAD
        .decode(claims["sealed"].as_str().expect("sealed"))
        .expect("base64");
    let policy_end = sealed.len() - 16;
    for index in policy_end.saturating_sub(12)..sealed.len() {
        for flip in [0x01_u8, 0x80] {
            let mut altered = sealed.clone();
            altered[index] ^= flip;
            let mut forged_claims = claims.clone();
            forged_claims["sealed"] = json!(URL_SAFE_NO_PAD.encode(&altered));
            let forged = signed_with_our_key(&header, &forged_claims);
            attack_return(
                &kit,
                &mut tally,
                &format!("sealed byte {index} ^ {flip:#04x}"),
                &forged,
                &binding,
                &[400],
            )
            .await;
        }
    }
    tally.finish();
}

#[tokio::test]
async fn first_factor_bypass_is_never_accepted() {
    let mut tally = Tally::new("policy allowed methods");
    let kit = Kit::with_sessions();
    let (token, binding) = issue_with(
        &kit,
        "oidc-only",
        json!({"bridge": {"version": 1, "allowed_methods": ["oidc"]}}),
    )
    .await;
    let code_browser = format!("__Host-bridge_binding={binding}; ory_kratos_session=s2");
    attack_return_as(
        &kit,
        &mut tally,
        "code session on an oidc-only client",
        &token,
        &code_browser,
        &[("refresh", "true")],
    )
    .await;
    // A second factor on top, or a higher level, does not stand in for the first factor.
    for (methods, level) in [
        (&["code", "totp"][..], "aal2"),
        (&["password"][..], "aal1"),
        (&["totp"][..], "aal2"),
        (&["webauthn"][..], "aal2"),
        (&[][..], "aal1"),
    ] {
        let mut other = session("sess-2", "ident-2", methods);
        other.authenticator_assurance_level = Some(level.to_owned());
        kit.kratos.add_session("ory_kratos_session=s2", other);
        attack_return_as(
            &kit,
            &mut tally,
            &format!("{methods:?} at {level} on an oidc-only client"),
            &token,
            &code_browser,
            &[("refresh", "true")],
        )
        .await;
    }
    // The login site's hint is only a hint: a token whose link lost it is still enforced.
    let (token, binding) = issue_with(
        &kit,
        "oidc-only-2",
        json!({"bridge": {"version": 1, "allowed_methods": ["oidc"]}}),
    )
    .await;
    attack_return_as(
        &kit,
        &mut tally,
        "methods hint removed from the link",
        &token,
        &format!("__Host-bridge_binding={binding}; ory_kratos_session=s2"),
        &[("refresh", "true")],
    )
    .await;
    tally.finish();
}

#[tokio::test]
async fn grants_outside_the_allow_lists_are_never_made() {
    let mut tally = Tally::new("policy scope allow-list");
    let narrowed = |consent: ConsentRequest, bridge: Value| {
        let mut consent = consent;
        consent.client.metadata = Some(json!({ "bridge": bridge }));
        consent
    };
    let scopes_only = json!({"version": 1, "allowed_scopes": ["openid", "email"]});
    let audience_only = json!({"version": 1, "allowed_audiences": ["other-api"]});
    let mut cases: Vec<(String, ConsentRequest)> = Vec::new();
    for skip in [false, true] {
        cases.push((
            format!("scope outside, skip={skip}"),
            narrowed(
                third_party_consent(skip, &["openid", "email", "profile"]),
                scopes_only.clone(),
            ),
        ));
        cases.push((
            format!("audience outside, skip={skip}"),
            narrowed(
                third_party_consent(skip, &["openid"]),
                audience_only.clone(),
            ),
        ));
        let mut first_party = narrowed(
            third_party_consent(skip, &["openid", "offline_access"]),
            scopes_only.clone(),
        );
        first_party.client.skip_consent = Some(true);
        cases.push((format!("first-party client, skip={skip}"), first_party));
    }
    for (n, (what, consent)) in cases.into_iter().enumerate() {
        let kit = Kit::new();
        let challenge = format!("allow-list-{n}");
        kit.hydra.add_consent(&challenge, consent);
        attack_consent(
            &kit,
            &mut tally,
            &what,
            get(&format!("/consent?consent_challenge={challenge}"), None),
            403,
        )
        .await;
    }

    // A genuine screen, then the operator narrows the policy: the form's allow is refused too.
    let kit = Kit::new();
    kit.hydra.add_consent(
        "narrowed",
        third_party_consent(false, &["openid", "email", "profile"]),
    );
    let (cookie, csrf) = consent_screen(&kit, "narrowed").await;
    kit.hydra.add_consent(
        "narrowed",
        narrowed(
            third_party_consent(false, &["openid", "email", "profile"]),
            scopes_only,
        ),
    );
    let form = format!(
        "consent_challenge=narrowed&csrf_token={}&grant_scope=email&grant_scope=profile&action=allow",
        encode(&csrf)
    );
    attack_consent(
        &kit,
        &mut tally,
        "form allow after the policy narrowed",
        post_form(
            "/consent",
            &form,
            Some(&cookie),
            Some("https://auth.example.com"),
        ),
        403,
    )
    .await;
    tally.finish();
}
