//! Login entry (Hydra `urls.login`): `GET /login?login_challenge=...`.
//!
//! Hydra asks who the user is. Either Hydra already knows (`skip`, accepted here), or the browser
//! carries a sealed return_to token to the return function: through Kratos' login flow, or
//! straight there when it already has a good Kratos session (single sign-on across clients).
//! Only the return function accepts a login from a Kratos session, so single sign-on gets the
//! same one-time token, replay record and claims as a fresh login. The login site never sees the
//! challenge.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use super::{
    binding_cookie_name, hydra_redirect, respond, reusable_cookie_value, set_cookie, FailurePolicy,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::hydra::{AcceptLogin, HydraAdmin, LoginRequest};
use crate::kratos::{kratos_cookie_header, kratos_login_url, KratosApi};
use crate::logging::flow_id;
use crate::policy::{Aal, ClientPolicy};
use crate::random::random_token;
use crate::request;
use crate::response::{see_other, Failure};
use crate::token::{browser_binding_hash, ReturnToPayload, SealedPolicy, TokenCodec};
use url::Url;

/// What login entry needs, built once at cold start.
pub struct LoginDeps {
    /// Validated settings.
    pub config: Config,
    /// Hydra's admin API.
    pub hydra: Arc<dyn HydraAdmin>,
    /// Kratos, for the existing-session check.
    pub kratos: Arc<dyn KratosApi>,
    /// Seals the return_to token.
    pub tokens: TokenCodec,
    /// Current time.
    pub clock: Clock,
}

/// Handles `GET /login`.
pub async fn handle(request: Request, deps: &LoginDeps) -> Response<Body> {
    let outcome = run(&request, deps).await;
    respond(&request, outcome)
}

async fn run(request: &Request, deps: &LoginDeps) -> Result<Response<Body>, Failure> {
    super::require_method(request, &[http::Method::GET])?;
    let params = request::query(request)?;
    let challenge = request::challenge(&params, "login_challenge")?;
    let flow = flow_id(&challenge);

    let login = deps
        .hydra
        .login_request(&challenge)
        .await
        .map_err(|e| login_request_failure(request).failure(Some(&flow), e))?;

    let policy = super::client_policy(&deps.config, &login.client)?;
    let sealed_policy = sealed_policy(&policy, &login);

    // A client with a policy never takes Hydra's shortcut: Hydra remembers a login made for
    // another client, perhaps at a lower level or with another method, so the login goes
    // through the return function, which checks the Kratos session against the policy.
    if login.skip && sealed_policy.is_none() {
        tracing::info!(flow = %flow, event = "login_skipped", client_id = %login.client.client_id, "Hydra remembers the user");
        let accept = AcceptLogin {
            subject: login.subject.clone(),
            ..AcceptLogin::default()
        };
        return accept_and_redirect(deps, &challenge, &flow, &accept, request).await;
    }

    let single_sign_on = has_reusable_session(request, deps, &login, &flow).await;

    let binding =
        match reusable_cookie_value(request::cookie(request, binding_cookie_name(&deps.config))) {
            Some(value) => value,
            None => random_token().map_err(|_| Failure::Internal)?,
        };
    let payload = ReturnToPayload {
        login_challenge: challenge.clone(),
        request_url: Some(login.request_url.clone()).filter(|u| !u.is_empty()),
        client_id: Some(login.client.client_id.clone()).filter(|c| !c.is_empty()),
        browser_binding: browser_binding_hash(&binding),
        policy: sealed_policy,
    };
    let sealed = deps.tokens.seal(&payload, (deps.clock)()).map_err(|e| {
        tracing::error!(flow = %flow, event = "token_seal_failed", error = %e, "cannot seal the return_to token");
        Failure::Internal
    })?;
    let mut return_to = deps.config.return_url();
    return_to.query_pairs_mut().append_pair("t", &sealed.token);
    if let Some(methods) = &policy.allowed_methods {
        append_methods_hint(&mut return_to, methods.iter().map(String::as_str));
    }
    let next = if single_sign_on {
        tracing::info!(
            flow = %flow,
            event = "login_sso",
            client_id = %login.client.client_id,
            "existing Kratos session: straight to the return function"
        );
        return_to
    } else {
        tracing::info!(
            flow = %flow,
            event = "login_redirected_to_kratos",
            client_id = %login.client.client_id,
            refresh = login.forces_login(),
            return_to_bytes = return_to.as_str().len(),
            "sending the browser to the Kratos login flow"
        );
        kratos_login_url(&deps.config, &return_to, login.forces_login(), None)
    };
    let cookie = set_cookie(
        &deps.config,
        binding_cookie_name(&deps.config),
        &binding,
        deps.config.token_ttl.as_secs(),
    );
    Ok(see_other(&next, &[cookie]))
}

/// What the return function must enforce, or `None` when there is nothing to enforce (no
/// policy, no `acr_values` above aal1, no `max_age`): such logins work exactly as before.
fn sealed_policy(policy: &ClientPolicy, login: &LoginRequest) -> Option<SealedPolicy> {
    let requested = login.requested_assurance();
    let required_aal = policy.needed_aal(&requested);
    let enforce = required_aal > Aal::Aal1
        || policy.allowed_methods.is_some()
        || policy.hook
        || requested.max_age.is_some();
    enforce.then(|| SealedPolicy {
        required_aal,
        allowed_methods: policy
            .allowed_methods
            .as_ref()
            .map(|methods| methods.iter().cloned().collect()),
        max_age: requested.max_age,
        hook: policy.hook,
    })
}

/// Adds `bridge_methods=oidc,code` to the return URL: the login site reads the Kratos flow's
/// `return_to` and shows only these first factors. A hint only; the return function enforces.
pub(crate) fn append_methods_hint<'a>(return_to: &mut Url, methods: impl Iterator<Item = &'a str>) {
    let joined = methods.collect::<Vec<_>>().join(",");
    return_to
        .query_pairs_mut()
        .append_pair(METHODS_HINT_PARAMETER, &joined);
}

/// The return URL's query parameter that carries the allowed first factors to the login site.
pub const METHODS_HINT_PARAMETER: &str = "bridge_methods";

/// Whether the browser has a Kratos session single sign-on may use: the client did not ask for
/// a fresh login and the authentication is recent enough for its `max_age`. A Kratos failure
/// here is not fatal: the browser simply goes through the login flow. The return function checks
/// the session again; this check only saves the trip through Kratos.
async fn has_reusable_session(
    request: &Request,
    deps: &LoginDeps,
    login: &LoginRequest,
    flow: &str,
) -> bool {
    if login.forces_login() {
        return false;
    }
    let cookies = kratos_cookie_header(
        &request::cookie_header(request),
        &deps.config.kratos_session_cookie,
    );
    if cookies.is_empty() {
        return false;
    }
    let session = match deps.kratos.whoami(&cookies).await {
        Ok(Some(session)) => session,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(flow = %flow, event = "sso_check_failed", upstream = e.upstream().log_name(), failure = e.failure(), error = %e, "going through the login flow instead");
            return false;
        }
    };
    match login.max_age() {
        None => true,
        Some(max_age) => session
            .seconds_since_authentication((deps.clock)())
            .is_some_and(|age| age <= max_age),
    }
}

async fn accept_and_redirect(
    deps: &LoginDeps,
    challenge: &str,
    flow: &str,
    body: &AcceptLogin,
    request: &Request,
) -> Result<Response<Body>, Failure> {
    let answer = deps
        .hydra
        .accept_login(challenge, body)
        .await
        .map_err(|e| login_request_failure(request).failure(Some(flow), e))?;
    let next = hydra_redirect(&deps.config, &answer)?;
    tracing::info!(flow = %flow, event = "login_accepted", method = "remembered", "login accepted at entry");
    Ok(see_other(&next, &[]))
}

/// What a Hydra failure on the login challenge becomes; the same link can be retried.
fn login_request_failure(request: &Request) -> FailurePolicy {
    FailurePolicy::challenge(
        "hydra_login_request_failed",
        "cannot use the login challenge",
        Failure::BadRequest {
            title: "Unknown sign-in request",
            message: "This sign-in request is not known. Please start again from the application.",
            restart: None,
        },
        Some(request::same_link(request)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use url::Url;

    fn deps(kit: &Kit) -> LoginDeps {
        kit.login_deps()
    }

    #[tokio::test]
    async fn missing_or_malformed_challenge_is_400() {
        let kit = Kit::new();
        for uri in [
            "/login",
            "/login?login_challenge=",
            "/login?login_challenge=%3Cscript%3E",
        ] {
            let response = handle(get(uri, None), &deps(&kit)).await;
            assert_eq!(response.status(), 400, "{uri}");
            assert_secure_html(&response);
        }
        let long = format!("/login?login_challenge={}", "a".repeat(9000));
        assert_eq!(handle(get(&long, None), &deps(&kit)).await.status(), 400);
        assert!(
            kit.hydra.calls().is_empty(),
            "bad input never reaches Hydra"
        );
    }

    #[tokio::test]
    async fn unknown_expired_and_unavailable_challenges() {
        let kit = Kit::new();
        kit.hydra.fail_challenge("unknown", UpstreamKind::NotFound);
        kit.hydra.fail_challenge("expired", UpstreamKind::Expired);
        kit.hydra.fail_challenge("down", UpstreamKind::Transient);
        let status = |c: &str| {
            let deps = deps(&kit);
            let uri = format!("/login?login_challenge={c}");
            async move { handle(get(&uri, None), &deps).await }
        };
        assert_eq!(status("unknown").await.status(), 400);
        assert_eq!(status("expired").await.status(), 410);
        let down = status("down").await;
        assert_eq!(down.status(), 503);
        assert_secure_html(&down);
        assert!(
            body(&down).contains("login_challenge=down"),
            "retry offers the same link"
        );
    }

    #[tokio::test]
    async fn skip_accepts_with_hydra_subject_without_kratos() {
        let kit = Kit::new();
        kit.hydra
            .add_login("c1", login_request(true, "subject-1", ""));
        let response = handle(
            get("/login?login_challenge=c1", Some("ory_kratos_session=s")),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), HYDRA_NEXT);
        let accepted = kit.hydra.accepted_login("c1").expect("accepted");
        assert_eq!(accepted.subject, "subject-1");
        assert_eq!(kit.kratos.whoami_calls(), 0);
    }

    #[tokio::test]
    async fn existing_kratos_session_is_single_sign_on() {
        let kit = Kit::new();
        kit.hydra.add_login(
            "c1",
            login_request(
                false,
                "",
                "https://oauth.example.com/oauth2/auth?client_id=app",
            ),
        );
        kit.kratos.add_session(
            "ory_kratos_session=good",
            session("sess-1", "ident-1", &["oidc"]),
        );
        let response = handle(
            get(
                "/login?login_challenge=c1",
                Some("ory_kratos_session=good; other=x"),
            ),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        // Straight to the return function with a sealed token; Kratos' login flow is skipped and
        // the accept is left to the return function.
        let next = Url::parse(&location(&response)).expect("url");
        assert_eq!(
            next.as_str().split('?').next(),
            Some(deps(&kit).config.return_url().as_str())
        );
        let token = next
            .query_pairs()
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v.into_owned())
            .expect("token");
        let opened = deps(&kit)
            .tokens
            .open(&token, (deps(&kit).clock)())
            .expect("opens");
        assert_eq!(opened.payload.login_challenge, "c1");
        assert!(kit.hydra.accepted_login("c1").is_none());
        assert!(response.headers().get("set-cookie").is_some());
        assert_eq!(
            kit.kratos.last_cookie().as_deref(),
            Some("ory_kratos_session=good")
        );
    }

    #[tokio::test]
    async fn prompt_login_goes_to_kratos_with_refresh() {
        let kit = Kit::new();
        kit.hydra.add_login(
            "c1",
            login_request(
                false,
                "",
                "https://oauth.example.com/oauth2/auth?prompt=login",
            ),
        );
        kit.kratos.add_session(
            "ory_kratos_session=good",
            session("sess-1", "ident-1", &["oidc"]),
        );
        let response = handle(
            get("/login?login_challenge=c1", Some("ory_kratos_session=good")),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        let target = Url::parse(&location(&response)).expect("url");
        assert!(target.as_str().starts_with(
            "https://id.example.com/self-service/login/browser?refresh=true&return_to="
        ));
        assert!(kit.hydra.accepted_login("c1").is_none());
    }

    #[tokio::test]
    async fn max_age_exceeded_goes_to_kratos() {
        let kit = Kit::new();
        kit.hydra.add_login(
            "c1",
            login_request(
                false,
                "",
                "https://oauth.example.com/oauth2/auth?max_age=60",
            ),
        );
        let mut old = session("sess-1", "ident-1", &["oidc"]);
        old.authenticated_at = Some("2026-01-01T00:00:00Z".to_owned());
        kit.kratos.add_session("ory_kratos_session=old", old);
        kit.advance(std::time::Duration::from_secs(120));
        let response = handle(
            get("/login?login_challenge=c1", Some("ory_kratos_session=old")),
            &deps(&kit),
        )
        .await;
        assert!(location(&response).contains("/self-service/login/browser"));
        assert!(kit.hydra.accepted_login("c1").is_none());
    }

    #[tokio::test]
    async fn no_session_seals_challenge_and_sets_binding_cookie() {
        // Long and distinctive, so that it cannot appear in the random token by chance.
        const CHALLENGE: &str = "visible-challenge-marker-visible-challenge-marker";
        let kit = Kit::new();
        kit.hydra.add_login(
            CHALLENGE,
            login_request(
                false,
                "",
                "https://oauth.example.com/oauth2/auth?client_id=app",
            ),
        );
        let response = handle(
            get(&format!("/login?login_challenge={CHALLENGE}"), None),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        let target = Url::parse(&location(&response)).expect("url");
        assert_eq!(target.path(), "/self-service/login/browser");
        let return_to = target
            .query_pairs()
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
            .expect("return_to");
        assert!(return_to.starts_with("https://auth.example.com/login/return?t="));
        assert!(
            !return_to.contains(CHALLENGE),
            "the challenge is sealed, not visible"
        );
        let cookie = set_cookies(&response).join("\n");
        assert!(cookie.starts_with("__Host-bridge_binding="), "{cookie}");
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("Secure")
                && cookie.contains("SameSite=Lax")
        );
        let token = Url::parse(&return_to)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v.into_owned())
            .expect("token");
        let opened = kit.codec().open(&token, kit.now()).expect("opens");
        assert_eq!(opened.payload.login_challenge, CHALLENGE);
        assert_eq!(opened.payload.client_id.as_deref(), Some("app"));
    }

    #[tokio::test]
    async fn binding_cookie_is_reused_across_tabs() {
        let kit = Kit::new();
        kit.hydra.add_login("c1", login_request(false, "", ""));
        let existing = "A".repeat(43);
        let response = handle(
            get(
                "/login?login_challenge=c1",
                Some(&format!("__Host-bridge_binding={existing}")),
            ),
            &deps(&kit),
        )
        .await;
        assert!(
            set_cookies(&response)[0].starts_with(&format!("__Host-bridge_binding={existing};"))
        );
    }

    #[tokio::test]
    async fn kratos_down_during_sso_check_falls_back_to_the_flow() {
        let kit = Kit::new();
        kit.hydra.add_login("c1", login_request(false, "", ""));
        kit.kratos.fail_whoami(true);
        let response = handle(
            get("/login?login_challenge=c1", Some("ory_kratos_session=x")),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        assert!(location(&response).contains("/self-service/login/browser"));
    }

    #[tokio::test]
    async fn foreign_redirect_from_hydra_is_refused() {
        let kit = Kit::new();
        kit.hydra
            .add_login("c1", login_request(true, "subject-1", ""));
        kit.hydra.set_redirect("https://evil.example.net/next");
        let response = handle(get("/login?login_challenge=c1", None), &deps(&kit)).await;
        assert_eq!(response.status(), 502);
        assert!(response.headers().get("location").is_none());
    }

    #[tokio::test]
    async fn post_is_refused() {
        let kit = Kit::new();
        let mut request = get("/login?login_challenge=c1", None);
        *request.method_mut() = http::Method::POST;
        assert_eq!(handle(request, &deps(&kit)).await.status(), 405);
    }

    const APP_REQUEST: &str = "https://oauth.example.com/oauth2/auth?client_id=app";

    fn login_with_metadata(metadata: serde_json::Value, request_url: &str) -> LoginRequest {
        let mut login = login_request(false, "", request_url);
        login.client.metadata = Some(metadata);
        login
    }

    /// Login entry for `login` as challenge `c1` on `kit`.
    async fn enter(kit: &Kit, login: LoginRequest) -> Response<Body> {
        kit.hydra.add_login("c1", login);
        handle(get("/login?login_challenge=c1", None), &deps(kit)).await
    }

    #[tokio::test]
    async fn a_malformed_client_policy_refuses_the_sign_in() {
        for metadata in [
            serde_json::json!({"bridge": {"required_aal": "aal2"}}),
            serde_json::json!({"bridge": {"version": 2}}),
            serde_json::json!({"bridge": {"version": 1, "requried_aal": "aal2"}}),
            serde_json::json!({"bridge": {"version": 1, "hook": true}}),
        ] {
            let kit = Kit::new();
            let response = enter(&kit, login_with_metadata(metadata, APP_REQUEST)).await;
            assert_eq!(response.status(), 502);
            assert_secure_html(&response);
            assert!(body(&response).contains("sign-in settings are invalid"));
            assert_eq!(kit.hydra.accept_count(), 0);
            assert!(set_cookies(&response).is_empty(), "no token issued");
        }
    }

    #[tokio::test]
    async fn the_client_policy_is_sealed_with_the_methods_hint() {
        let kit = Kit::new();
        let mut login = login_with_metadata(
            serde_json::json!({"bridge": {"version": 1, "allowed_methods": ["oidc", "code"]}}),
            &format!("{APP_REQUEST}&max_age=300&state={}", "s".repeat(900)),
        );
        login.oidc_context = Some(crate::hydra::OidcContext {
            acr_values: vec!["aal2".to_owned()],
        });
        let response = enter(&kit, login).await;
        assert_eq!(response.status(), 303);
        let return_to = Url::parse(&location(&response))
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
            .expect("return_to");
        assert!(return_to.len() <= 4096, "{} bytes", return_to.len());
        let hint = Url::parse(&return_to)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == METHODS_HINT_PARAMETER)
            .map(|(_, v)| v.into_owned());
        assert_eq!(hint.as_deref(), Some("code,oidc"));
        let (token, _) = token_and_binding(&response).expect("token");
        let opened = deps(&kit).tokens.open(&token, kit.now()).expect("opens");
        assert_eq!(
            opened.payload.policy,
            Some(SealedPolicy {
                required_aal: Aal::Aal2,
                allowed_methods: Some(vec!["code".to_owned(), "oidc".to_owned()]),
                max_age: Some(300),
                hook: false,
            })
        );
    }

    #[tokio::test]
    async fn a_client_without_a_policy_seals_none_and_adds_no_hint() {
        let kit = Kit::new();
        let response = enter(&kit, login_request(false, "", APP_REQUEST)).await;
        let (token, _) = token_and_binding(&response).expect("token");
        assert!(!location(&response).contains(METHODS_HINT_PARAMETER));
        let opened = deps(&kit).tokens.open(&token, kit.now()).expect("opens");
        assert_eq!(opened.payload.policy, None);
    }

    #[tokio::test]
    async fn hydra_skip_is_not_taken_for_a_client_with_a_policy() {
        let kit = Kit::new();
        let mut login = login_with_metadata(
            serde_json::json!({"bridge": {"version": 1, "required_aal": "aal2"}}),
            APP_REQUEST,
        );
        login.skip = true;
        login.subject = "subject-1".to_owned();
        let response = enter(&kit, login).await;
        assert_eq!(response.status(), 303);
        assert_eq!(kit.hydra.accept_count(), 0, "left to the return function");
        assert!(location(&response).contains("/self-service/login/browser"));
    }
}
