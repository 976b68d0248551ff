//! Consent (Hydra `urls.consent`): `GET /consent?consent_challenge=...` shows or skips the
//! screen, `POST /consent` takes the user's answer.
//!
//! First-party clients (Hydra's `skip_consent`, or the configured allow-list) and consents Hydra
//! remembers (`skip`) pass without a screen. Everyone else sees what the client asks for and
//! decides. ID token claims come from the login `context` the return function prepared, filtered
//! by the scopes actually granted, so consent never calls Kratos.

use std::sync::Arc;

use askama::Template;
use lambda_http::{Body, Request, Response};

use super::{
    ask_policy_hook, checked_form, form_guard, hydra_redirect, respond, CheckedForm, FailurePolicy,
};
use crate::claims::LoginContext;
use crate::config::Config;
use crate::hook::{HookClient, HookRequest, PolicyHook, Stage};
use crate::hydra::{AcceptConsent, ConsentRequest, ConsentSession, HydraAdmin, RejectRequest};
use crate::keyset::KeySet;
use crate::logging::flow_id;
use crate::policy::{log_decision, ClientPolicy, Rule};
use crate::request;
use crate::response::{render_page, see_other, stylesheet, Failure};

/// What the consent function needs, built once at cold start.
pub struct ConsentDeps {
    /// Validated settings.
    pub config: Config,
    /// Hydra's admin API.
    pub hydra: Arc<dyn HydraAdmin>,
    /// Keys for the CSRF tokens.
    pub keys: KeySet,
    /// The policy hook, built at cold start when `BRIDGE_POLICY_HOOK_URL` is set; asked only
    /// for clients whose policy says `hook`.
    pub policy_hook: Option<Arc<dyn PolicyHook>>,
}

/// Handles `GET` and `POST /consent`.
pub async fn handle(request: Request, deps: &ConsentDeps) -> Response<Body> {
    let outcome = match *request.method() {
        http::Method::GET => show(&request, deps).await,
        http::Method::POST => decide(&request, deps).await,
        _ => Err(Failure::MethodNotAllowed),
    };
    respond(&request, outcome)
}

/// Scopes a user cannot untick: without `openid` there is no OpenID Connect login at all.
const REQUIRED_SCOPES: &[&str] = &["openid"];

/// A readable sentence per well-known scope; other scopes are shown by name.
fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Sign you in with your account".to_owned(),
        "offline_access" => "Stay signed in when you are not using it (refresh tokens)".to_owned(),
        "email" => "See your email address".to_owned(),
        "phone" => "See your phone number".to_owned(),
        "profile" => "See your name".to_owned(),
        "address" => "See your postal address".to_owned(),
        other => format!("Access: {other}"),
    }
}

struct ScopeLine {
    name: String,
    description: String,
    required: bool,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    css: &'a str,
    client_name: String,
    logo_uri: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
    challenge: &'a str,
    csrf_token: String,
    form_action: String,
    scopes: Vec<ScopeLine>,
}

async fn show(request: &Request, deps: &ConsentDeps) -> Result<Response<Body>, Failure> {
    let params = request::query(request)?;
    let challenge = request::challenge(&params, "consent_challenge")?;
    let flow = flow_id(&challenge);
    let consent = deps
        .hydra
        .consent_request(&challenge)
        .await
        .map_err(|e| consent_failure(request).failure(Some(&flow), e))?;
    let policy = allowed_grant(&deps.config, &consent)?;

    let first_party = consent.client.skip_consent == Some(true)
        || deps
            .config
            .trusted_clients
            .contains(&consent.client.client_id);
    if consent.skip || first_party {
        tracing::info!(flow = %flow, event = "consent_skipped", client_id = %consent.client.client_id, remembered = consent.skip, first_party, "consent granted without a screen");
        let grant = consent.requested_scope.clone();
        // A remembered consent stays remembered; a first-party grant is remembered per settings.
        let remember = !consent.skip && deps.config.remember;
        return accept(
            deps, &challenge, &consent, &policy, grant, remember, request,
        )
        .await;
    }

    let guard = form_guard(request, &deps.config, &deps.keys, "consent", &challenge)?;
    let client = &consent.client;
    let page = ConsentPage {
        css: stylesheet(),
        client_name: client
            .client_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| client.client_id.clone()),
        logo_uri: client.logo_uri.clone().filter(|u| is_web_url(u)),
        policy_uri: client.policy_uri.clone().filter(|u| is_web_url(u)),
        tos_uri: client.tos_uri.clone().filter(|u| is_web_url(u)),
        challenge: &challenge,
        csrf_token: guard.token,
        form_action: deps.config.endpoint("consent").path().to_owned(),
        scopes: consent
            .requested_scope
            .iter()
            .map(|scope| ScopeLine {
                name: scope.clone(),
                description: describe(scope),
                required: REQUIRED_SCOPES.contains(&scope.as_str()),
            })
            .collect(),
    };
    tracing::info!(flow = %flow, event = "consent_screen", client_id = %client.client_id, "asking the user");
    Ok(crate::response::with_cookies(
        render_page(http::StatusCode::OK, &page),
        &[guard.set_cookie],
    ))
}

async fn decide(request: &Request, deps: &ConsentDeps) -> Result<Response<Body>, Failure> {
    let CheckedForm {
        form, challenge, ..
    } = checked_form(
        request,
        &deps.config,
        &deps.keys,
        "consent",
        "consent_challenge",
    )?;
    let flow = flow_id(&challenge);

    let consent = deps
        .hydra
        .consent_request(&challenge)
        .await
        .map_err(|e| consent_failure(request).failure(Some(&flow), e))?;
    // Denying is always possible, whatever the client's policy says.
    if form.single("action", 16)? != Some("allow") {
        let reject = RejectRequest {
            error: "access_denied".to_owned(),
            error_description: "The resource owner denied the request".to_owned(),
        };
        let answer = deps
            .hydra
            .reject_consent(&challenge, &reject)
            .await
            .map_err(|e| consent_failure(request).failure(Some(&flow), e))?;
        tracing::info!(flow = %flow, event = "consent_denied", device = consent.is_device_flow(), "user denied consent");
        if consent.is_device_flow() {
            // Hydra v26 answers the browser's return from a denied device consent with a bare
            // error document and leaves the device polling until its code expires; the person
            // deserves a page that says what happened.
            return Ok(device_denied_page(&consent));
        }
        return Ok(see_other(&hydra_redirect(&deps.config, &answer)?, &[]));
    }

    let policy = allowed_grant(&deps.config, &consent)?;
    // Only scopes Hydra says were requested can be granted, whatever the form claims; required
    // scopes stay granted even if a forged form leaves them out.
    let chosen: Vec<&str> = form.all("grant_scope").collect();
    let grant = consent
        .requested_scope
        .iter()
        .filter(|scope| {
            chosen.contains(&scope.as_str()) || REQUIRED_SCOPES.contains(&scope.as_str())
        })
        .cloned()
        .collect();
    let remember = form.single("remember", 8)? == Some("true");
    accept(
        deps, &challenge, &consent, &policy, grant, remember, request,
    )
    .await
}

/// The client's policy, once the request is within its allow-lists. Checked on the page, on the
/// form and before any `skip`, so a scope or audience outside the lists is never granted, not
/// even when Hydra remembers an earlier consent.
fn allowed_grant(config: &Config, consent: &ConsentRequest) -> Result<ClientPolicy, Failure> {
    let policy = super::client_policy(config, &consent.client)?;
    let client_id = consent.client.client_id.as_str();
    match policy.check_grant(
        &consent.requested_scope,
        &consent.requested_access_token_audience,
    ) {
        Ok(()) => Ok(policy),
        Err(rule) => {
            log_decision(client_id, Stage::Consent.as_str(), rule, "deny");
            Err(Failure::PolicyDenied { reason: None })
        }
    }
}

/// Accepts with `grant` (already a subset of the requested scopes) and the matching claims.
async fn accept(
    deps: &ConsentDeps,
    challenge: &str,
    consent: &ConsentRequest,
    policy: &ClientPolicy,
    grant: Vec<String>,
    remember: bool,
    request: &Request,
) -> Result<Response<Body>, Failure> {
    let context: LoginContext = consent
        .context
        .clone()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let flow = &flow_id(challenge);
    let mut id_token = context.id_token_claims(grant.iter().map(String::as_str));
    if policy.hook {
        let hook_request = HookRequest {
            stage: Stage::Consent,
            subject: consent.subject.clone(),
            client: HookClient {
                client_id: consent.client.client_id.clone(),
                client_name: consent.client.client_name.clone(),
            },
            amr: consent.amr.clone(),
            acr: consent.acr.clone(),
            requested_scope: consent.requested_scope.clone(),
            requested_audience: consent.requested_access_token_audience.clone(),
            traits: context.hook_traits.clone(),
            request_id: flow.to_owned(),
        };
        // Retried through the page: a form cannot be re-sent by a link.
        let mut retry = deps.config.endpoint("consent");
        retry
            .query_pairs_mut()
            .append_pair("consent_challenge", challenge);
        let claims = ask_policy_hook(
            deps.policy_hook.as_deref(),
            &hook_request,
            flow,
            retry.to_string(),
        )
        .await?;
        // Every name is inside the configured namespace (checked by the hook client), so the
        // hook cannot replace a claim the scopes released.
        id_token.extend(claims);
    } else if *policy != ClientPolicy::default() {
        log_decision(
            &consent.client.client_id,
            Stage::Consent.as_str(),
            Rule::Satisfied,
            "accept",
        );
    }
    let body = AcceptConsent {
        session: ConsentSession {
            id_token,
            access_token: serde_json::Map::new(),
        },
        grant_access_token_audience: consent.requested_access_token_audience.clone(),
        grant_scope: grant,
        remember,
        remember_for: if remember {
            deps.config.remember_for.as_secs()
        } else {
            0
        },
    };
    let answer = deps
        .hydra
        .accept_consent(challenge, &body)
        .await
        .map_err(|e| consent_failure(request).failure(Some(flow), e))?;
    tracing::info!(flow = %flow, event = "consent_accepted", granted = ?body.grant_scope, "consent accepted");
    Ok(see_other(&hydra_redirect(&deps.config, &answer)?, &[]))
}

/// The page after a denied device sign-in, naming the client.
fn device_denied_page(consent: &ConsentRequest) -> Response<Body> {
    let client = &consent.client;
    let name = client
        .client_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| client.client_id.clone());
    crate::response::message_page(
        http::StatusCode::OK,
        "Device not signed in",
        &format!("You did not allow {name}. Nothing was shared with it, and the device will not be signed in."),
        Some("You can close this page. To sign the device in after all, start again on the device."),
        None,
        None,
    )
}

/// Client-supplied links shown on the page must be http(s), never `javascript:` or `data:`.
fn is_web_url(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
}

/// What a Hydra failure on the consent challenge becomes. A form cannot be re-sent by a link, so
/// only the page (GET) offers the same link again; after a failed POST the user goes back.
fn consent_failure(request: &Request) -> FailurePolicy {
    FailurePolicy::challenge(
        "hydra_consent_failed",
        "cannot use the consent challenge",
        Failure::BadRequest {
            title: "Unknown consent request",
            message: "This consent request is not known. Please start again from the application.",
            restart: None,
        },
        (request.method() == http::Method::GET).then(|| request::same_link(request)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hydra::OAuth2Client;
    use crate::testkit::*;

    fn deps(kit: &Kit) -> ConsentDeps {
        let mut deps = kit.consent_deps();
        deps.config.trusted_clients.insert("trusted-app".to_owned());
        deps
    }

    fn consent(client_id: &str, skip: bool, skip_consent: Option<bool>) -> ConsentRequest {
        let context = serde_json::json!({
            "identity_id": "ident-1",
            "claims_by_scope": {
                "email": {"email": "ann@example.com", "email_verified": true},
                "profile": {"name": "Ann Lee"},
                "phone": {"phone_number": "+15550001"}
            }
        });
        ConsentRequest {
            client: OAuth2Client {
                client_id: client_id.to_owned(),
                client_name: Some("<b>Evil & Co</b>".to_owned()),
                logo_uri: Some("https://cdn.example.com/logo.png".to_owned()),
                policy_uri: Some("javascript:alert(1)".to_owned()),
                tos_uri: Some("https://example.com/tos".to_owned()),
                skip_consent,
                ..OAuth2Client::default()
            },
            context: Some(context),
            requested_scope: vec![
                "openid".to_owned(),
                "email".to_owned(),
                "profile".to_owned(),
            ],
            requested_access_token_audience: vec!["api".to_owned()],
            skip,
            request_url: String::new(),
            subject: "ident-1".to_owned(),
            ..ConsentRequest::default()
        }
    }

    fn post(body: &str, cookie: Option<&str>, origin: Option<&str>) -> Request {
        post_form("/consent", body, cookie, origin)
    }

    /// Shows the screen and returns (csrf cookie header, csrf token).
    async fn screen(kit: &Kit, challenge: &str) -> (String, String) {
        let response = handle(
            get(&format!("/consent?consent_challenge={challenge}"), None),
            &deps(kit),
        )
        .await;
        assert_eq!(response.status(), 200);
        form_csrf(&response)
    }

    #[tokio::test]
    async fn skip_accepts_requested_scopes_with_claims() {
        let kit = Kit::new();
        kit.hydra.add_consent("c1", consent("third", true, None));
        let response = handle(get("/consent?consent_challenge=c1", None), &deps(&kit)).await;
        assert_eq!(response.status(), 303);
        let accepted = kit.hydra.accepted_consent("c1").expect("accepted");
        assert_eq!(accepted.grant_scope, vec!["openid", "email", "profile"]);
        assert_eq!(accepted.grant_access_token_audience, vec!["api"]);
        assert_eq!(accepted.session.id_token["email"], "ann@example.com");
        assert_eq!(accepted.session.id_token["name"], "Ann Lee");
        assert!(
            !accepted.session.id_token.contains_key("phone_number"),
            "phone not requested"
        );
    }

    #[tokio::test]
    async fn first_party_clients_skip_the_screen() {
        let kit = Kit::new();
        kit.hydra
            .add_consent("c1", consent("first", false, Some(true)));
        kit.hydra
            .add_consent("c2", consent("trusted-app", false, None));
        for challenge in ["c1", "c2"] {
            let response = handle(
                get(&format!("/consent?consent_challenge={challenge}"), None),
                &deps(&kit),
            )
            .await;
            assert_eq!(response.status(), 303, "{challenge}");
            assert!(
                kit.hydra
                    .accepted_consent(challenge)
                    .expect("accepted")
                    .remember
            );
        }
    }

    #[tokio::test]
    async fn third_party_sees_an_escaped_screen() {
        let kit = Kit::new();
        kit.hydra
            .add_consent("c1", consent("third", false, Some(false)));
        let response = handle(get("/consent?consent_challenge=c1", None), &deps(&kit)).await;
        assert_eq!(response.status(), 200);
        assert_secure_html(&response);
        let page = body(&response);
        assert!(!page.contains("<b>Evil"), "client name escaped");
        assert!(!page.contains("javascript:"), "non-web policy link dropped");
        assert!(page.contains("https://example.com/tos"));
        assert!(page.contains("See your email address"));
        assert!(kit.hydra.accepted_consent("c1").is_none());
        let cookie = &set_cookies(&response)[0];
        assert!(cookie.starts_with("__Host-bridge_csrf=") && cookie.contains("HttpOnly"));
    }

    #[tokio::test]
    async fn allow_grants_only_a_subset_of_requested_scopes() {
        let kit = Kit::new();
        kit.hydra.add_consent("c1", consent("third", false, None));
        let (cookie, token) = screen(&kit, "c1").await;
        let body = format!(
            "consent_challenge=c1&csrf_token={}&grant_scope=email&grant_scope=admin&action=allow&remember=true",
            urlencode(&token)
        );
        let response = handle(
            post(&body, Some(&cookie), Some("https://auth.example.com")),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        let accepted = kit.hydra.accepted_consent("c1").expect("accepted");
        assert_eq!(
            accepted.grant_scope,
            vec!["openid", "email"],
            "admin was never requested, profile unticked"
        );
        assert!(accepted.remember);
        assert_eq!(accepted.session.id_token["email"], "ann@example.com");
        assert!(
            !accepted.session.id_token.contains_key("name"),
            "profile not granted"
        );
    }

    #[tokio::test]
    async fn deny_rejects_with_access_denied() {
        let kit = Kit::new();
        kit.hydra.add_consent("c1", consent("third", false, None));
        let (cookie, token) = screen(&kit, "c1").await;
        let body = format!(
            "consent_challenge=c1&csrf_token={}&action=deny",
            urlencode(&token)
        );
        let response = handle(post(&body, Some(&cookie), None), &deps(&kit)).await;
        assert_eq!(response.status(), 303);
        assert_eq!(
            kit.hydra.rejected_consent("c1").expect("rejected").error,
            "access_denied"
        );
        assert!(kit.hydra.accepted_consent("c1").is_none());
    }

    #[tokio::test]
    async fn a_denied_device_sign_in_ends_on_our_page_naming_the_client() {
        let kit = Kit::new();
        let mut device = consent("tv", false, None);
        device.request_url =
            "https://oauth.example.com/oauth2/device/verify?client_id=tv&device_verifier=v"
                .to_owned();
        kit.hydra.add_consent("c1", device);
        let (cookie, token) = screen(&kit, "c1").await;
        let body = format!(
            "consent_challenge=c1&csrf_token={}&action=deny",
            urlencode(&token)
        );
        let response = handle(post(&body, Some(&cookie), None), &deps(&kit)).await;
        assert_eq!(response.status(), 200);
        assert_secure_html(&response);
        let page = crate::testkit::body(&response);
        assert!(page.contains("Device not signed in"), "{page}");
        assert!(!page.contains("<b>Evil"), "client name escaped");
        assert_eq!(
            kit.hydra.rejected_consent("c1").expect("rejected").error,
            "access_denied"
        );
    }

    #[tokio::test]
    async fn csrf_failures_are_refused() {
        let kit = Kit::new();
        kit.hydra.add_consent("c1", consent("third", false, None));
        kit.hydra.add_consent("c2", consent("third", false, None));
        let (cookie, token) = screen(&kit, "c1").await;
        let (_, other_token) = screen(&kit, "c2").await;
        let allow = |t: &str| {
            format!(
                "consent_challenge=c1&csrf_token={}&action=allow",
                urlencode(t)
            )
        };
        let cases = [
            post("consent_challenge=c1&action=allow", Some(&cookie), None),
            post(&allow(&token), None, None),
            post(&allow(&other_token), Some(&cookie), None),
            post(
                &allow(&token),
                Some("__Host-bridge_csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                None,
            ),
            post(
                &allow(&token),
                Some(&cookie),
                Some("https://evil.example.net"),
            ),
        ];
        for request in cases {
            let response = handle(request, &deps(&kit)).await;
            assert_eq!(response.status(), 403);
            assert_secure_html(&response);
        }
        let mut cross_site = post(&allow(&token), Some(&cookie), None);
        cross_site.headers_mut().insert(
            "sec-fetch-site",
            http::HeaderValue::from_static("cross-site"),
        );
        assert_eq!(handle(cross_site, &deps(&kit)).await.status(), 403);
        let opaque = post(&allow(&token), Some(&cookie), Some("null"));
        assert_eq!(handle(opaque, &deps(&kit)).await.status(), 403);
        assert!(kit.hydra.accepted_consent("c1").is_none());
    }

    /// Under our `Referrer-Policy: no-referrer`, a browser posts our own form with
    /// `Origin: null` and `Sec-Fetch-Site: same-origin` (seen with Chromium in the end-to-end
    /// tests): that is the user's answer, not a cross-site request.
    #[tokio::test]
    async fn own_form_posted_with_null_origin_is_accepted() {
        let kit = Kit::new();
        kit.hydra.add_consent("c1", consent("third", false, None));
        let (cookie, token) = screen(&kit, "c1").await;
        let mut request = post(
            &format!(
                "consent_challenge=c1&csrf_token={}&grant_scope=openid&action=allow",
                urlencode(&token)
            ),
            Some(&cookie),
            Some("null"),
        );
        request.headers_mut().insert(
            "sec-fetch-site",
            http::HeaderValue::from_static("same-origin"),
        );
        let response = handle(request, &deps(&kit)).await;
        assert_eq!(response.status(), 303);
        assert!(kit.hydra.accepted_consent("c1").is_some());
    }

    #[tokio::test]
    async fn unknown_and_unavailable_consent_requests() {
        let kit = Kit::new();
        kit.hydra.fail_challenge("down", UpstreamKind::Transient);
        assert_eq!(
            handle(get("/consent?consent_challenge=nope", None), &deps(&kit))
                .await
                .status(),
            400
        );
        assert_eq!(
            handle(get("/consent?consent_challenge=down", None), &deps(&kit))
                .await
                .status(),
            503
        );
        assert_eq!(
            handle(get("/consent", None), &deps(&kit)).await.status(),
            400
        );
    }

    fn urlencode(value: &str) -> String {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
    }

    fn with_policy(mut request: ConsentRequest, bridge: serde_json::Value) -> ConsentRequest {
        request.client.metadata = Some(serde_json::json!({ "bridge": bridge }));
        request
    }

    #[tokio::test]
    async fn a_scope_outside_the_allow_list_is_never_granted_not_even_on_skip() {
        for skip in [false, true] {
            let kit = Kit::new();
            kit.hydra.add_consent(
                "c1",
                with_policy(
                    consent("third", skip, None),
                    serde_json::json!({"version": 1, "allowed_scopes": ["openid", "email"]}),
                ),
            );
            let response = handle(get("/consent?consent_challenge=c1", None), &deps(&kit)).await;
            assert_eq!(response.status(), 403, "skip={skip}");
            assert_secure_html(&response);
            assert!(kit.hydra.accepted_consent("c1").is_none());
        }
        let kit = Kit::new();
        kit.hydra.add_consent(
            "c1",
            with_policy(
                consent("third", true, None),
                serde_json::json!({"version": 1, "allowed_audiences": ["other"]}),
            ),
        );
        let response = handle(get("/consent?consent_challenge=c1", None), &deps(&kit)).await;
        assert_eq!(response.status(), 403, "audience outside the allow-list");
    }

    #[tokio::test]
    async fn the_hook_at_consent_adds_namespaced_claims_denies_or_fails_closed() {
        let kit = Kit::with_policy_hook();
        let hooked = || {
            with_policy(
                consent("third", true, None),
                serde_json::json!({"version": 1, "hook": true}),
            )
        };
        kit.hydra.add_consent("c1", hooked());
        let mut claims = serde_json::Map::new();
        claims.insert(
            "https://auth.example.com/claims/tenant".to_owned(),
            serde_json::json!("acme"),
        );
        kit.hook.answer(HookAnswer::Allow(claims));
        let response = handle(get("/consent?consent_challenge=c1", None), &deps(&kit)).await;
        assert_eq!(response.status(), 303);
        let accepted = kit.hydra.accepted_consent("c1").expect("accepted");
        assert_eq!(
            accepted.session.id_token["https://auth.example.com/claims/tenant"],
            "acme"
        );
        assert_eq!(accepted.session.id_token["email"], "ann@example.com");
        assert_eq!(kit.hook.asked()[0].stage, crate::hook::Stage::Consent);

        kit.hydra.add_consent("c2", hooked());
        kit.hook.answer(HookAnswer::Deny(None));
        let denied = handle(get("/consent?consent_challenge=c2", None), &deps(&kit)).await;
        assert_eq!(denied.status(), 403);
        assert!(kit.hydra.accepted_consent("c2").is_none());

        kit.hydra.add_consent("c3", hooked());
        kit.hook.answer(HookAnswer::Down);
        let down = handle(get("/consent?consent_challenge=c3", None), &deps(&kit)).await;
        assert_eq!(down.status(), 503);
        assert!(body(&down).contains("consent_challenge=c3"), "retry link");
        assert!(kit.hydra.accepted_consent("c3").is_none());
    }
}
