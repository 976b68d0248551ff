//! Return (Kratos `return_to`): `GET /login/return?t=<token>`.
//!
//! Kratos sends the browser here after Google or SMS code login (registering first-time users on
//! the way). The token says which Hydra login request this is; the Kratos session says who the
//! user is; the replay store makes sure the token is used once. Only then is Hydra told to accept.
//!
//! Order matters: nothing is claimed before the token, the browser binding and the session are
//! checked, and a claim is given back whenever the accept did not happen, so a transient failure
//! never burns the user's link.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use url::Url;

use super::login::append_methods_hint;
use super::{
    accept_from_session, ask_policy_hook, binding_cookie_name, hook_traits, hydra_redirect,
    on_hydra_origin, respond, with_hook_traits, FailurePolicy,
};
use std::time::SystemTime;

use crate::clock::{epoch_seconds, Clock};
use crate::config::Config;
use crate::digest::sha256_hex;
use crate::hook::{HookClient, HookRequest, PolicyHook, Stage};
use crate::hydra::{AcceptLogin, HydraAdmin};
use crate::identity::KratosSession;
use crate::kratos::{kratos_cookie_header, kratos_login_url, KratosApi};
use crate::logging::flow_id;
use crate::policy::{
    log_decision, Aal, ClientPolicy, LoginDecision, RequestedAssurance, Rule, SessionFacts,
};
use crate::random::random_token;
use crate::replay::{Claim, ClaimOutcome, ReplayStore};
use crate::request;
use crate::response::{see_other, Failure};
use crate::token::{
    browser_binding_matches, OpenedToken, SealedPolicy, TokenCodec, TokenError, MAX_TOKEN_CHARS,
};
use crate::upstream::UpstreamError;

/// What the return function needs, built once at cold start.
pub struct ReturnDeps {
    /// Validated settings.
    pub config: Config,
    /// Hydra's admin API.
    pub hydra: Arc<dyn HydraAdmin>,
    /// Kratos, for the session.
    pub kratos: Arc<dyn KratosApi>,
    /// Opens the return_to token.
    pub tokens: TokenCodec,
    /// One use per token.
    pub replay: Arc<dyn ReplayStore>,
    /// Current time.
    pub clock: Clock,
    /// The policy hook, built at cold start when `BRIDGE_POLICY_HOOK_URL` is set; asked only
    /// for clients whose policy says `hook`.
    pub policy_hook: Option<Arc<dyn PolicyHook>>,
}

/// Handles `GET /login/return`.
pub async fn handle(request: Request, deps: &ReturnDeps) -> Response<Body> {
    let outcome = run(&request, deps).await;
    respond(&request, outcome)
}

async fn run(request: &Request, deps: &ReturnDeps) -> Result<Response<Body>, Failure> {
    super::require_method(request, &[http::Method::GET])?;
    let params = request::query(request)?;
    let raw_token = params
        .single("t", MAX_TOKEN_CHARS)?
        .ok_or(Failure::BadRequest {
            title: "Invalid sign-in link",
            message: "This sign-in link is incomplete. Please start again from the application.",
            restart: None,
        })?;
    let now = (deps.clock)();
    let token = match deps.tokens.open(raw_token, now) {
        Ok(token) => token,
        Err(TokenError::Expired) => return Err(expired_token(deps, raw_token, now)),
        Err(error) => return Err(token_failure(error)),
    };
    let flow = flow_id(&token.payload.login_challenge);
    let restart = restart_url(&deps.config, &token);

    let binding = request::cookie(request, binding_cookie_name(&deps.config));
    if !binding.is_some_and(|value| browser_binding_matches(&token.payload.browser_binding, &value))
    {
        tracing::warn!(flow = %flow, event = "binding_mismatch", "return link opened in a browser that did not start this sign-in");
        return Err(Failure::Forbidden {
            message: "This sign-in link was started in another browser. Please start again from the application in this browser.",
        });
    }

    let cookies = kratos_cookie_header(
        &request::cookie_header(request),
        &deps.config.kratos_session_cookie,
    );
    let session = deps.kratos.whoami(&cookies).await.map_err(|e| {
        FailurePolicy::dependency(
            "kratos_whoami_failed",
            "cannot check the Kratos session",
            Some(request::same_link(request)),
        )
        .failure(Some(&flow), e)
    })?;
    let Some(session) = session else {
        // Kratos has no session for this browser (the login was abandoned, or the cookie did not
        // reach us): send the browser through the login flow again with the same return link.
        tracing::info!(flow = %flow, event = "no_kratos_session", "restarting the Kratos login flow");
        let return_to = return_link(&deps.config, raw_token, token.payload.policy.as_ref());
        return Ok(see_other(
            &kratos_login_url(&deps.config, &return_to, false, None),
            &[],
        ));
    };

    // The token opened, so the clock is after 1970.
    let now_seconds = epoch_seconds(now).unwrap_or(0);

    // The policy is enforced before the claim: the token is single-use, and a login sent back
    // to Kratos (or refused) must still be able to come back with the same link.
    let mut accept = accept_from_session(&deps.config, &session);
    if let Some(policy) = &token.payload.policy {
        let client_id = token.payload.client_id.as_deref().unwrap_or("");
        let checked = session_meets_policy(
            &deps.config,
            &flow,
            raw_token,
            policy,
            client_id,
            &session,
            now,
        );
        match checked {
            Ok(acr) => accept.acr = Some(acr.as_str().to_owned()),
            Err(sign_in_again) => return Ok(see_other(&sign_in_again, &[])),
        }
        if policy.hook {
            ask_hook_at_login(deps, request, &flow, client_id, &session, &mut accept).await?;
        }
    }

    let claim = Claim {
        key: sha256_hex(&token.jti),
        session_hash: sha256_hex(&session.id),
        attempt: random_token().map_err(|_| Failure::Internal)?,
        token_expires_at: token.expires_at,
        in_progress_until: now_seconds + deps.config.in_progress_ttl.as_secs(),
        now: now_seconds,
    };
    let outcome = deps.replay.claim(&claim).await.map_err(|e| {
        FailurePolicy::dependency(
            "replay_store_failed",
            "cannot claim the token",
            Some(request::same_link(request)),
        )
        .failure(Some(&flow), e)
    })?;
    match outcome {
        ClaimOutcome::Claimed => {}
        ClaimOutcome::Completed {
            redirect_to,
            session_hash,
        } if session_hash == claim.session_hash => {
            tracing::info!(flow = %flow, event = "return_repeated", "same session used the link again; same destination");
            let next = on_hydra_origin(&deps.config, &redirect_to).ok_or(Failure::BadGateway)?;
            return Ok(see_other(&next, &[]));
        }
        ClaimOutcome::InProgress { session_hash } if session_hash == claim.session_hash => {
            return Err(Failure::InProgress {
                retry: Some(request::same_link(request)),
            });
        }
        ClaimOutcome::Completed { .. } | ClaimOutcome::InProgress { .. } => {
            tracing::warn!(flow = %flow, event = "replay_rejected", "token used by another session");
            return Err(Failure::Forbidden {
                message: "This sign-in link has already been used. Please start again from the application.",
            });
        }
    }

    let answer = match deps
        .hydra
        .accept_login(&token.payload.login_challenge, &accept)
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            release(deps, &claim, &flow).await;
            let challenge_dead = matches!(
                error,
                UpstreamError::Expired { .. } | UpstreamError::NotFound { .. }
            );
            let failure = accept_failure(request).classify(Some(&flow), &error);
            return match restart {
                // The challenge is dead (expired, already used, unknown): Hydra's original
                // authorization URL starts a fresh one, and the Kratos session makes it quick.
                Some(url) if challenge_dead => {
                    failure.log();
                    tracing::info!(flow = %flow, event = "login_restarted", "restarting through Hydra's request_url");
                    Ok(see_other(&url, &[]))
                }
                _ => Err(failure.into()),
            };
        }
    };
    let next = match hydra_redirect(&deps.config, &answer) {
        Ok(next) => next,
        Err(failure) => {
            release(deps, &claim, &flow).await;
            return Err(failure);
        }
    };
    if let Err(e) = deps.replay.complete(&claim, next.as_str()).await {
        // The login is accepted; the user may go on. A refresh will find the claim in progress
        // until it expires, then accept again (Hydra allows that for the same challenge).
        tracing::warn!(flow = %flow, event = "replay_complete_failed", upstream = e.upstream().log_name(), failure = e.failure(), error = %e, "could not record completion");
    }
    tracing::info!(
        flow = %flow,
        event = "login_accepted",
        client_id = token.payload.client_id.as_deref().unwrap_or(""),
        amr = ?accept.amr,
        method = %login_method(&accept.amr),
        "login accepted after Kratos"
    );
    Ok(see_other(&next, &[]))
}

/// Checks the session against the sealed policy: the level reached (the `acr`), or where to send
/// the browser instead: Kratos' login flow (`refresh=true` for another first factor or a fresher one,
/// `aal=aal2` for the second factor) with the same return link, nothing claimed.
fn session_meets_policy(
    config: &Config,
    flow: &str,
    raw_token: &str,
    policy: &SealedPolicy,
    client_id: &str,
    session: &KratosSession,
    now: SystemTime,
) -> Result<Aal, Url> {
    // The token opened, so the clock is after 1970.
    let now_seconds = epoch_seconds(now).unwrap_or(0);
    let facts = SessionFacts {
        aal: Aal::from_kratos(session.authenticator_assurance_level.as_deref()),
        methods: session
            .authentication_methods
            .iter()
            .map(|m| m.method.as_str())
            .collect(),
        authenticated_at: session
            .seconds_since_authentication(now)
            .map(|age| now_seconds.saturating_sub(age)),
    };
    match policy_decision(policy).decide_login(&facts, &requested_assurance(policy), now_seconds) {
        LoginDecision::Accept { acr } => {
            log_decision(client_id, Stage::Login.as_str(), Rule::Satisfied, "accept");
            Ok(acr)
        }
        LoginDecision::SignInAgain { refresh, aal, rule } => {
            log_decision(client_id, Stage::Login.as_str(), rule, "sign_in_again");
            tracing::info!(
                flow,
                event = "policy_sign_in_again",
                client_id,
                refresh,
                aal = aal.map(Aal::as_str),
                "sending the browser back to Kratos"
            );
            let return_to = return_link(config, raw_token, Some(policy));
            Err(kratos_login_url(config, &return_to, refresh, aal))
        }
    }
}

/// Asks the policy hook (`stage=login`) before the claim; on allow, keeps the traits it was sent
/// in the login `context` for consent, which asks again. A login answer's claims are checked by
/// the hook client and not used: the ID token is made at consent.
async fn ask_hook_at_login(
    deps: &ReturnDeps,
    request: &Request,
    flow: &str,
    client_id: &str,
    session: &KratosSession,
    accept: &mut AcceptLogin,
) -> Result<(), Failure> {
    let hook_request = HookRequest {
        stage: Stage::Login,
        subject: session.identity.id.clone(),
        client: HookClient {
            client_id: client_id.to_owned(),
            client_name: None,
        },
        amr: accept.amr.clone(),
        acr: accept.acr.clone(),
        requested_scope: Vec::new(),
        requested_audience: Vec::new(),
        traits: hook_traits(&deps.config, session),
        request_id: flow.to_owned(),
    };
    ask_policy_hook(
        deps.policy_hook.as_deref(),
        &hook_request,
        flow,
        request::same_link(request),
    )
    .await?;
    with_hook_traits(accept, &hook_request.traits);
    Ok(())
}

/// This function's own link for `raw_token`, with the login site's methods hint when the policy
/// restricts first factors: what Kratos returns to after another round.
fn return_link(config: &Config, raw_token: &str, policy: Option<&SealedPolicy>) -> Url {
    let mut return_to = config.return_url();
    return_to.query_pairs_mut().append_pair("t", raw_token);
    if let Some(methods) = policy.and_then(|p| p.allowed_methods.as_ref()) {
        append_methods_hint(&mut return_to, methods.iter().map(String::as_str));
    }
    return_to
}

/// The sealed policy as a [`ClientPolicy`] for [`ClientPolicy::decide_login`]: the level it
/// holds is already the higher of the client's and the request's.
fn policy_decision(sealed: &SealedPolicy) -> ClientPolicy {
    ClientPolicy {
        required_aal: Some(sealed.required_aal),
        allowed_methods: sealed
            .allowed_methods
            .as_ref()
            .map(|methods| methods.iter().cloned().collect()),
        hook: sealed.hook,
        ..ClientPolicy::default()
    }
}

/// The request's assurance as sealed at login entry (`acr_values` are already folded into the
/// sealed level).
fn requested_assurance(sealed: &SealedPolicy) -> RequestedAssurance {
    RequestedAssurance {
        acr_values: Vec::new(),
        max_age: sealed.max_age,
    }
}

/// The `method` of a `login_accepted` line and the `Method` dimension of the `LoginAccepted`
/// metric: the session's `amr` values joined by `+` (`fed`, `sms+otp`, `fed+otp+mfa`), a small
/// fixed vocabulary (README, "What Hydra learns at login accept").
fn login_method(amr: &[String]) -> String {
    if amr.is_empty() {
        "unknown".to_owned()
    } else {
        amr.join("+")
    }
}

/// Hydra's original authorization URL, when it is on Hydra's public origin: the only safe way
/// to start a dead flow again.
fn restart_url(config: &Config, token: &OpenedToken) -> Option<Url> {
    token
        .payload
        .request_url
        .as_deref()
        .and_then(|raw| on_hydra_origin(config, raw))
}

async fn release(deps: &ReturnDeps, claim: &Claim, flow: &str) {
    if let Err(e) = deps.replay.release(claim).await {
        // The in-progress expiry frees the token soon anyway.
        tracing::warn!(flow = %flow, event = "replay_release_failed", upstream = e.upstream().log_name(), failure = e.failure(), error = %e, "claim left to expire");
    }
}

/// What a failed login accept becomes when the flow cannot restart: a dead challenge (expired,
/// used or unknown) is 410, a passing failure 503 offering the same link, any other refusal 502.
fn accept_failure(request: &Request) -> FailurePolicy {
    FailurePolicy::challenge(
        "hydra_accept_failed",
        "login not accepted",
        Failure::Expired { restart: None },
        Some(request::same_link(request)),
    )
}

/// The sign-in took longer than the token lives (and so, since the token never outlives it,
/// longer than Hydra's challenge): nothing can be accepted any more, but the token is genuine,
/// so its `request_url` is offered to start the same authorization request afresh. With the
/// Kratos session just made, that usually ends at the application without another prompt.
fn expired_token(deps: &ReturnDeps, raw_token: &str, now: std::time::SystemTime) -> Failure {
    let restart = deps
        .tokens
        .open_ignoring_expiry(raw_token, now)
        .ok()
        .and_then(|token| restart_url(&deps.config, &token));
    tracing::warn!(event = "token_refused", reason = %TokenError::Expired, restart = restart.is_some(), "return_to token refused");
    Failure::Expired { restart }
}

fn token_failure(error: TokenError) -> Failure {
    tracing::warn!(event = "token_refused", reason = %error, "return_to token refused");
    match error {
        TokenError::Expired => Failure::Expired { restart: None },
        _ => Failure::BadRequest {
            title: "Invalid sign-in link",
            message: "This sign-in link is invalid or has been altered. Please start again from the application.",
            restart: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use crate::token::{browser_binding_hash, ReturnToPayload};
    use std::time::Duration;

    const BINDING: &str = "bindingbindingbindingbindingbindingbinding1";
    const REQUEST_URL: &str = "https://oauth.example.com/oauth2/auth?client_id=app&state=s";

    fn deps(kit: &Kit) -> ReturnDeps {
        kit.return_deps()
    }

    fn token(kit: &Kit, challenge: &str) -> String {
        kit.seal(challenge, REQUEST_URL, BINDING)
    }

    fn link(token: &str) -> String {
        let mut url = Url::parse("https://auth.example.com/login/return").expect("url");
        url.query_pairs_mut().append_pair("t", token);
        format!("/login/return?{}", url.query().unwrap_or(""))
    }

    fn cookies(session_cookie: &str) -> String {
        format!("__Host-bridge_binding={BINDING}; {session_cookie}")
    }

    #[tokio::test]
    async fn accepts_with_kratos_identity_and_records_completion() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), HYDRA_NEXT);
        let accepted = kit.hydra.accepted_login("c1").expect("accepted");
        assert_eq!(accepted.subject, "ident-1");
        assert_eq!(
            accepted.identity_provider_session_id.as_deref(),
            Some("sess-1")
        );
        assert_eq!(accepted.acr.as_deref(), Some("aal1"));
        let context = accepted.context.expect("context");
        assert_eq!(context["identity_id"], "ident-1");
        assert_eq!(
            context["claims_by_scope"]["email"]["email"],
            "ann@example.com"
        );
        assert_eq!(context["claims_by_scope"]["email"]["email_verified"], true);
        assert_eq!(kit.replay.len(), 1);
    }

    #[tokio::test]
    async fn same_session_repeat_gets_the_same_redirect_without_second_accept() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        let first = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        kit.hydra.set_redirect("https://oauth.example.com/other");
        let again = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(again.status(), 303);
        assert_eq!(location(&again), location(&first));
        assert_eq!(kit.hydra.accept_count(), 1);
    }

    #[tokio::test]
    async fn replay_from_another_session_is_refused() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        let replay = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s2"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(replay.status(), 403);
        assert_secure_html(&replay);
        assert_eq!(kit.hydra.accept_count(), 1);
        assert_eq!(
            kit.hydra.accepted_login("c1").expect("first").subject,
            "ident-1"
        );
    }

    #[tokio::test]
    async fn token_without_its_binding_cookie_is_refused() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        for cookie in [
            "ory_kratos_session=s1".to_owned(),
            "__Host-bridge_binding=someone-elses; ory_kratos_session=s1".to_owned(),
        ] {
            let response = handle(get(&link(&t), Some(&cookie)), &deps(&kit)).await;
            assert_eq!(response.status(), 403);
        }
        assert_eq!(kit.hydra.accept_count(), 0);
        assert!(kit.replay.is_empty(), "nothing claimed");
    }

    #[tokio::test]
    async fn bad_tokens_are_400_and_never_reach_hydra() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        let mut tampered = t.clone().into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        let truncated = t[..t.len() - 5].to_owned();
        let other_key = {
            let keys = crate::keyset::KeySet::from_json(
                r#"{"current":"k9","keys":[{"kid":"k9","secret":"b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXI"}]}"#,
            )
            .expect("keys");
            let issuer = kit.config.token_issuer();
            let codec = TokenCodec::new(keys, issuer.clone(), issuer, Duration::from_secs(600))
                .expect("codec");
            codec
                .seal(
                    &ReturnToPayload {
                        login_challenge: "c1".to_owned(),
                        request_url: None,
                        client_id: None,
                        browser_binding: browser_binding_hash(BINDING),
                        policy: None,
                    },
                    kit.now(),
                )
                .expect("seal")
                .token
        };
        let wrong_audience = {
            let codec = TokenCodec::new(
                kit.keys(),
                kit.config.token_issuer(),
                "https://other.example.com",
                Duration::from_secs(600),
            )
            .expect("codec");
            codec
                .seal(
                    &ReturnToPayload {
                        login_challenge: "c1".to_owned(),
                        request_url: None,
                        client_id: None,
                        browser_binding: browser_binding_hash(BINDING),
                        policy: None,
                    },
                    kit.now(),
                )
                .expect("seal")
                .token
        };
        for bad in [
            tampered,
            truncated,
            other_key,
            wrong_audience,
            "x".to_owned(),
            String::new(),
        ] {
            let response = handle(
                get(&link(&bad), Some(&cookies("ory_kratos_session=s1"))),
                &deps(&kit),
            )
            .await;
            assert_eq!(response.status(), 400);
            assert_secure_html(&response);
        }
        let missing = handle(
            get("/login/return", Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(missing.status(), 400);
        assert_eq!(kit.hydra.accept_count(), 0);
    }

    #[tokio::test]
    async fn expired_token_is_410() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        kit.advance(Duration::from_secs(601));
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 410);
        assert_eq!(kit.hydra.accept_count(), 0);
        // Not a dead end: the page offers Hydra's request_url to start again.
        let page = body(&response);
        assert!(
            page.contains(r#"data-testid="page-action" href="https://oauth.example.com/oauth2/auth?client_id=app&#38;state=s""#),
            "no restart link on the expired page: {page}"
        );
    }

    #[tokio::test]
    async fn token_under_the_previous_key_still_works() {
        let kit = Kit::with_sessions();
        let old_keys = crate::keyset::KeySet::from_json(
            r#"{"current":"k1","keys":[{"kid":"k1","secret":"Zmlyc3Qta2V5LWZpcnN0LWtleS1maXJzdC1rZXktZmlyc3Q"}]}"#,
        )
        .expect("keys");
        let issuer = kit.config.token_issuer();
        let old_codec = TokenCodec::new(old_keys, issuer.clone(), issuer, Duration::from_secs(600))
            .expect("codec");
        let t = old_codec
            .seal(
                &ReturnToPayload {
                    login_challenge: "c1".to_owned(),
                    request_url: None,
                    client_id: None,
                    browser_binding: browser_binding_hash(BINDING),
                    policy: None,
                },
                kit.now(),
            )
            .expect("seal")
            .token;
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
    }

    #[tokio::test]
    async fn no_kratos_session_restarts_the_flow_with_the_same_link() {
        let kit = Kit::new();
        let t = token(&kit, "c1");
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=unknown"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        let target = Url::parse(&location(&response)).expect("url");
        assert_eq!(target.path(), "/self-service/login/browser");
        let return_to = target
            .query_pairs()
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned());
        assert_eq!(
            return_to.as_deref(),
            Some(format!("https://auth.example.com{}", link(&t)).as_str())
        );
        assert!(kit.replay.is_empty());
    }

    #[tokio::test]
    async fn transient_hydra_failure_releases_the_claim_and_retry_succeeds() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        kit.hydra.fail_accept("c1", UpstreamKind::Transient);
        let failed = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(failed.status(), 503);
        assert_secure_html(&failed);
        assert!(
            body(&failed).contains("/login/return?t="),
            "retry link is the same link"
        );
        assert!(kit.replay.is_empty(), "claim released");
        kit.hydra.heal_accept("c1");
        let retried = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(retried.status(), 303);
    }

    #[tokio::test]
    async fn hydra_refusing_the_accept_is_502_and_releases_the_claim() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        kit.hydra.fail_accept("c1", UpstreamKind::Rejected);
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 502);
        assert!(kit.replay.is_empty());
    }

    #[tokio::test]
    async fn transient_kratos_failure_claims_nothing() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        kit.kratos.fail_whoami(true);
        let failed = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(failed.status(), 503);
        assert!(kit.replay.is_empty());
        kit.kratos.fail_whoami(false);
        let retried = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(retried.status(), 303);
    }

    #[tokio::test]
    async fn expired_challenge_restarts_through_request_url() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        kit.hydra.fail_accept("c1", UpstreamKind::Expired);
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), REQUEST_URL);
        assert!(kit.replay.is_empty());
    }

    #[tokio::test]
    async fn lambda_killed_after_claim_frees_the_token_after_in_progress_expiry() {
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        // Simulate a previous invocation that claimed and died.
        let dead = kit.earlier_claim(&t, "sess-1", "dead");
        kit.replay.claim(&dead).await.expect("claim");
        let blocked = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(blocked.status(), 409);
        kit.advance(Duration::from_secs(31));
        let freed = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(&kit),
        )
        .await;
        assert_eq!(freed.status(), 303);
    }

    #[tokio::test]
    async fn replay_store_down_is_503_and_nothing_accepted() {
        struct DownStore;
        #[async_trait::async_trait]
        impl ReplayStore for DownStore {
            async fn claim(&self, _: &Claim) -> Result<ClaimOutcome, UpstreamError> {
                Err(upstream_error(
                    UpstreamKind::Transient,
                    crate::upstream::Upstream::ReplayStore,
                ))
            }
            async fn complete(&self, _: &Claim, _: &str) -> Result<(), UpstreamError> {
                Ok(())
            }
            async fn release(&self, _: &Claim) -> Result<(), UpstreamError> {
                Ok(())
            }
        }
        let kit = Kit::with_sessions();
        let t = token(&kit, "c1");
        let mut deps = deps(&kit);
        deps.replay = Arc::new(DownStore);
        let response = handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps,
        )
        .await;
        assert_eq!(response.status(), 503);
        assert_eq!(kit.hydra.accept_count(), 0);
    }

    fn sealed(required_aal: Aal, methods: Option<&[&str]>, hook: bool) -> SealedPolicy {
        SealedPolicy {
            required_aal,
            allowed_methods: methods.map(|m| m.iter().map(|m| (*m).to_owned()).collect()),
            max_age: None,
            hook,
        }
    }

    async fn return_with(kit: &Kit, policy: SealedPolicy) -> Response<Body> {
        let t = kit.seal_with_policy("c1", REQUEST_URL, BINDING, Some(policy));
        handle(
            get(&link(&t), Some(&cookies("ory_kratos_session=s1"))),
            &deps(kit),
        )
        .await
    }

    /// The query of the Kratos login flow the response redirects to.
    fn kratos_query(response: &Response<Body>) -> Vec<(String, String)> {
        Url::parse(&location(response))
            .expect("url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The `return_to` Kratos is given.
    fn kratos_return_to(query: &[(String, String)]) -> String {
        query
            .iter()
            .find_map(|(k, v)| (k == "return_to").then(|| v.clone()))
            .expect("return_to")
    }

    #[tokio::test]
    async fn an_aal1_session_on_an_aal2_login_steps_up_without_claiming() {
        let kit = Kit::with_sessions();
        let response = return_with(&kit, sealed(Aal::Aal2, None, false)).await;
        assert_eq!(response.status(), 303);
        assert!(location(&response).contains("/self-service/login/browser"));
        let query = kratos_query(&response);
        assert!(query.contains(&("aal".to_owned(), "aal2".to_owned())));
        assert!(!query.iter().any(|(k, _)| k == "refresh"));
        let return_to = kratos_return_to(&query);
        assert!(return_to.starts_with("https://auth.example.com/login/return?t="));
        assert_eq!(kit.hydra.accept_count(), 0);
        assert_eq!(kit.replay.len(), 0, "the token is not claimed");
    }

    #[tokio::test]
    async fn an_aal2_session_on_an_aal2_login_is_accepted_with_acr_aal2() {
        let kit = Kit::with_sessions();
        let mut stepped_up = session("sess-1", "ident-1", &["oidc", "totp"]);
        stepped_up.authenticator_assurance_level = Some("aal2".to_owned());
        kit.kratos.add_session("ory_kratos_session=s1", stepped_up);
        let response = return_with(&kit, sealed(Aal::Aal2, None, false)).await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), HYDRA_NEXT);
        let accepted = kit.hydra.accepted_login("c1").expect("accepted");
        assert_eq!(accepted.acr.as_deref(), Some("aal2"));
        assert_eq!(kit.replay.len(), 1);
    }

    #[tokio::test]
    async fn a_session_from_a_disallowed_method_signs_in_again_with_the_hint() {
        let kit = Kit::with_sessions();
        // s1 was made with `oidc`; the client allows only `code`.
        let response = return_with(&kit, sealed(Aal::Aal1, Some(&["code"]), false)).await;
        assert_eq!(response.status(), 303);
        let query = kratos_query(&response);
        assert!(query.contains(&("refresh".to_owned(), "true".to_owned())));
        let return_to = kratos_return_to(&query);
        assert!(return_to.contains("bridge_methods=code"), "{return_to}");
        assert_eq!(kit.hydra.accept_count(), 0);
        assert_eq!(kit.replay.len(), 0);
    }

    #[tokio::test]
    async fn the_hook_is_asked_before_the_claim_and_its_answer_holds() {
        let kit = Kit::with_policy_hook();
        let allowed = return_with(&kit, sealed(Aal::Aal1, None, true)).await;
        assert_eq!(allowed.status(), 303);
        assert_eq!(location(&allowed), HYDRA_NEXT);
        let asked = kit.hook.asked();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].stage, crate::hook::Stage::Login);
        assert_eq!(
            asked[0].traits.keys().collect::<Vec<_>>(),
            vec!["email"],
            "only the configured traits"
        );
        let context = kit
            .hydra
            .accepted_login("c1")
            .and_then(|a| a.context)
            .expect("context");
        assert_eq!(context["hook_traits"]["email"], "ann@example.com");

        let kit = Kit::with_policy_hook();
        kit.hook
            .answer(HookAnswer::Deny(Some("<b>suspended</b>".to_owned())));
        let denied = return_with(&kit, sealed(Aal::Aal1, None, true)).await;
        assert_eq!(denied.status(), 403);
        assert_secure_html(&denied);
        let page = body(&denied);
        assert!(page.contains("suspended"), "reason shown");
        assert!(!page.contains("<b>suspended"), "reason escaped");
        assert_eq!(kit.hydra.accept_count(), 0);
        assert_eq!(kit.replay.len(), 0);

        let kit = Kit::with_policy_hook();
        kit.hook.answer(HookAnswer::Down);
        let down = return_with(&kit, sealed(Aal::Aal1, None, true)).await;
        assert_eq!(down.status(), 503);
        assert!(
            body(&down).contains("/login/return?t="),
            "retry offers the same link"
        );
        assert_eq!(kit.hydra.accept_count(), 0);
        assert_eq!(kit.replay.len(), 0, "nothing claimed: the retry works");
    }

    #[tokio::test]
    async fn a_hook_policy_without_a_hook_is_refused_not_skipped() {
        let kit = Kit::with_sessions();
        let response = return_with(&kit, sealed(Aal::Aal1, None, true)).await;
        assert_eq!(response.status(), 502);
        assert_eq!(kit.hydra.accept_count(), 0);
    }
}
