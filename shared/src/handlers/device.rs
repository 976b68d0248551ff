//! Device verification (OAuth2 device authorization grant, RFC 8628; Hydra v26+):
//! `GET /device?device_challenge=...` (Hydra `urls.device.verification`) asks for the code shown
//! on the device, `POST /device` hands it to Hydra, and `GET /device/done?client_id=...` (Hydra
//! `urls.device.success`) tells the user to go back to the device.
//!
//! Ory ships no page for this. Once Hydra has the code, the browser goes through the ordinary
//! login (login entry, Kratos, return function with its sealed token and replay record) and
//! consent, so a device sign-in gets every protection a browser sign-in has. What is special here
//! is guessing: a code is short, so each browser and each address may only try a few per window
//! ([`crate::attempts`]), and nothing reaches Hydra without a valid CSRF token.

use std::sync::Arc;

use askama::Template;
use lambda_http::{Body, Request, Response};
use url::Url;

use super::{
    checked_form, form_guard, hydra_redirect, require_method, respond, CheckedForm, FailurePolicy,
};
use crate::attempts::{AttemptCounter, AttemptVerdict};
use crate::clock::{epoch_seconds, Clock};
use crate::config::{Config, UserCodeCase};
use crate::hydra::{AcceptDevice, HydraAdmin};
use crate::keyset::KeySet;
use crate::logging::flow_id;
use crate::request;
use crate::response::{render_page, see_other, stylesheet, Failure};
use crate::upstream::UpstreamError;

/// What the device function needs, built once at cold start.
pub struct DeviceDeps {
    /// Validated settings.
    pub config: Config,
    /// Hydra's admin API.
    pub hydra: Arc<dyn HydraAdmin>,
    /// Keys for the CSRF tokens.
    pub keys: KeySet,
    /// Where tried codes are counted.
    pub attempts: Arc<dyn AttemptCounter>,
    /// The clock, for attempt windows.
    pub clock: Clock,
}

/// Longest code accepted from the form; Hydra's are 8 or 9 characters.
const MAX_USER_CODE_CHARS: usize = 32;

/// Handles `GET`/`POST /device` and `GET /device/done`.
pub async fn handle(request: Request, deps: &DeviceDeps) -> Response<Body> {
    let done = request
        .uri()
        .path()
        .trim_end_matches('/')
        .ends_with("/device/done");
    let outcome = if done {
        match require_method(&request, &[http::Method::GET]) {
            Ok(()) => finished(&request, deps).await,
            Err(failure) => Err(failure),
        }
    } else {
        match *request.method() {
            http::Method::GET => show(&request, deps),
            http::Method::POST => submit(&request, deps).await,
            _ => Err(Failure::MethodNotAllowed),
        }
    };
    respond(&request, outcome)
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    css: &'a str,
    challenge: &'a str,
    csrf_token: String,
    form_action: String,
    user_code: String,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "device_done.html")]
struct DonePage<'a> {
    css: &'a str,
    client_name: Option<String>,
}

fn show(request: &Request, deps: &DeviceDeps) -> Result<Response<Body>, Failure> {
    let params = request::query(request)?;
    let typed = params
        .single("user_code", 4 * MAX_USER_CODE_CHARS)
        .ok()
        .flatten()
        .and_then(|code| normalise_user_code(code, deps.config.device_code_case));
    if params.all("device_challenge").next().is_none() {
        // Someone typed our address instead of the one the device showed: Hydra's verification
        // endpoint hands out a challenge and sends the browser back here.
        return Ok(see_other(
            &start_over_url(&deps.config, typed.as_deref()),
            &[],
        ));
    }
    let challenge = request::challenge(&params, "device_challenge")?;
    tracing::info!(flow = %flow_id(&challenge), event = "device_code_form", "asking for the device code");
    Ok(form_page(
        request,
        deps,
        &challenge,
        typed.unwrap_or_default(),
        None,
        http::StatusCode::OK,
    ))
}

async fn submit(request: &Request, deps: &DeviceDeps) -> Result<Response<Body>, Failure> {
    let CheckedForm {
        form,
        challenge,
        browser,
    } = checked_form(
        request,
        &deps.config,
        &deps.keys,
        "device",
        "device_challenge",
    )?;
    let flow = flow_id(&challenge);
    let typed = form.single("user_code", 4 * MAX_USER_CODE_CHARS)?;
    let Some(user_code) = typed.and_then(|c| normalise_user_code(c, deps.config.device_code_case))
    else {
        // Not a code at all: nothing to count, nothing to ask Hydra.
        return Ok(form_page(
            request,
            deps,
            &challenge,
            String::new(),
            Some("Type the code exactly as your device shows it (letters and digits)."),
            http::StatusCode::BAD_REQUEST,
        ));
    };

    let now = epoch_seconds((deps.clock)()).unwrap_or(0);
    let verdict = deps
        .config
        .device_attempts
        .check(
            deps.attempts.as_ref(),
            "device",
            &browser,
            &request::source_address(request),
            now,
        )
        .await
        .map_err(|e| device_failure(&deps.config, &challenge).failure(Some(&flow), e))?;
    if let AttemptVerdict::Refused { retry_after } = verdict {
        tracing::warn!(flow = %flow, event = "device_attempts_exceeded", retry_after, "too many device codes tried");
        return Err(Failure::TooManyAttempts { retry_after });
    }

    match deps
        .hydra
        .accept_device(&challenge, &AcceptDevice { user_code })
        .await
    {
        Ok(answer) => {
            tracing::info!(flow = %flow, event = "device_code_accepted", "device code accepted; signing in");
            Ok(see_other(&hydra_redirect(&deps.config, &answer)?, &[]))
        }
        Err(UpstreamError::Rejected { status: 400, .. }) => {
            tracing::info!(flow = %flow, event = "device_code_refused", "Hydra refused the device code");
            Ok(form_page(
                request,
                deps,
                &challenge,
                String::new(),
                Some("That code did not work: it may be mistyped, expired or already used. Check the code on your device and try again, or start again on the device to get a new code."),
                http::StatusCode::BAD_REQUEST,
            ))
        }
        Err(error) => Err(device_failure(&deps.config, &challenge).failure(Some(&flow), error)),
    }
}

async fn finished(request: &Request, deps: &DeviceDeps) -> Result<Response<Body>, Failure> {
    let params = request::query(request)?;
    // The client only names the page; an unknown or missing one still gets the message.
    let client_name = match params.single("client_id", 256)? {
        Some(id) if !id.is_empty() => match deps.hydra.client(id).await {
            Ok(client) => Some(
                client
                    .client_name
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or(client.client_id),
            ),
            Err(error) => {
                tracing::warn!(event = "device_client_unknown", error = %error, "cannot name the device's client");
                None
            }
        },
        _ => None,
    };
    tracing::info!(event = "device_done", "device sign-in finished");
    Ok(render_page(
        http::StatusCode::OK,
        &DonePage {
            css: stylesheet(),
            client_name,
        },
    ))
}

/// The code form, with this browser's CSRF cookie (reused when it has one).
fn form_page(
    request: &Request,
    deps: &DeviceDeps,
    challenge: &str,
    user_code: String,
    error: Option<&str>,
    status: http::StatusCode,
) -> Response<Body> {
    let guard = match form_guard(request, &deps.config, &deps.keys, "device", challenge) {
        Ok(guard) => guard,
        Err(failure) => return failure.into_response(request::wants_json(request)),
    };
    let page = DevicePage {
        css: stylesheet(),
        challenge,
        csrf_token: guard.token,
        form_action: deps.config.endpoint("device").path().to_owned(),
        user_code,
        error,
    };
    crate::response::with_cookies(render_page(status, &page), &[guard.set_cookie])
}

/// The user code as Hydra stores it: without the spaces and dashes people type for readability,
/// upper-cased when the configured alphabet allows. `None` when what is left cannot be a code.
pub fn normalise_user_code(typed: &str, case: UserCodeCase) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '\u{2010}'..='\u{2015}'))
        .map(|c| match case {
            UserCodeCase::Upper => c.to_ascii_uppercase(),
            UserCodeCase::Exact => c,
        })
        .collect();
    let plausible = !code.is_empty()
        && code.chars().count() <= MAX_USER_CODE_CHARS
        && code.chars().all(|c| c.is_ascii_alphanumeric());
    plausible.then_some(code)
}

/// Hydra's own verification endpoint, which issues a fresh challenge.
fn start_over_url(config: &Config, user_code: Option<&str>) -> Url {
    let mut url = config.hydra_public_url.clone();
    url.set_path(&format!(
        "{}/oauth2/device/verify",
        url.path().trim_end_matches('/')
    ));
    url.set_query(None);
    if let Some(code) = user_code {
        url.query_pairs_mut().append_pair("user_code", code);
    }
    url
}

/// What a Hydra failure on the device challenge (or the attempt counter) becomes: a dead
/// challenge offers Hydra's verification endpoint, which issues a fresh one.
fn device_failure(config: &Config, challenge: &str) -> FailurePolicy {
    let restart = Some(start_over_url(config, None));
    // The form cannot be re-sent by a link; the same page asks for the code again.
    let mut retry = config.endpoint("device");
    retry
        .query_pairs_mut()
        .append_pair("device_challenge", challenge);
    FailurePolicy {
        event: "hydra_device_failed",
        message: "cannot use the device challenge",
        unknown: Failure::BadRequest {
            title: "Unknown device sign-in",
            message:
                "This device sign-in is not known. Open the address shown on your device again.",
            restart: restart.clone(),
        },
        expired: Failure::Expired { restart },
        transient: Failure::Unavailable {
            retry: Some(retry.to_string()),
        },
        refused: Failure::BadGateway,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hydra::OAuth2Client;
    use crate::testkit::*;

    const ORIGIN: Option<&str> = Some("https://auth.example.com");

    fn deps(kit: &Kit) -> DeviceDeps {
        kit.device_deps()
    }

    fn submit_body(challenge: &str, token: &str, code: &str) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("device_challenge", challenge)
            .append_pair("csrf_token", token)
            .append_pair("user_code", code)
            .finish()
    }

    /// Posts the code form with this browser's cookie from our own origin.
    async fn submit(
        deps: &DeviceDeps,
        cookie: &str,
        challenge: &str,
        token: &str,
        code: &str,
    ) -> Response<Body> {
        let body = submit_body(challenge, token, code);
        handle(post_form("/device", &body, Some(cookie), ORIGIN), deps).await
    }

    async fn form(deps: &DeviceDeps, challenge: &str) -> (String, String) {
        let response = handle(
            get(&format!("/device?device_challenge={challenge}"), None),
            deps,
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_secure_html(&response);
        form_csrf(&response)
    }

    #[test]
    fn codes_are_normalised_as_people_type_them() {
        let upper = UserCodeCase::Upper;
        assert_eq!(
            normalise_user_code(" abcd-efgh ", upper).as_deref(),
            Some("ABCDEFGH")
        );
        assert_eq!(
            normalise_user_code("AbCd EfGh", upper).as_deref(),
            Some("ABCDEFGH")
        );
        assert_eq!(
            normalise_user_code("aBc4\u{2013}d7", UserCodeCase::Exact).as_deref(),
            Some("aBc4d7")
        );
        assert_eq!(normalise_user_code(" - ", upper), None);
        assert_eq!(normalise_user_code("<script>", upper), None);
        assert_eq!(normalise_user_code(&"A".repeat(33), upper), None);
    }

    #[tokio::test]
    async fn the_form_prefills_the_code_and_a_right_code_goes_on_to_hydra() {
        let kit = Kit::new();
        kit.hydra.add_device("d1", "BCDFGHJK");
        let deps = deps(&kit);
        let response = handle(
            get("/device?device_challenge=d1&user_code=bcdf-ghjk", None),
            &deps,
        )
        .await;
        assert_eq!(response.status(), 200);
        assert!(body(&response).contains("value=\"BCDFGHJK\""));
        let (cookie, token) = form_csrf(&response);
        let response = submit(&deps, &cookie, "d1", &token, "bcdf ghjk").await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), HYDRA_NEXT);
        assert_eq!(kit.hydra.accepted_devices(), vec!["BCDFGHJK"]);
    }

    #[tokio::test]
    async fn wrong_and_used_codes_get_the_form_again_with_a_message() {
        let kit = Kit::new();
        kit.hydra.add_device("d1", "BCDFGHJK");
        let deps = deps(&kit);
        let (cookie, token) = form(&deps, "d1").await;
        let wrong = submit(&deps, &cookie, "d1", &token, "ZZZZZZZZ").await;
        assert_eq!(wrong.status(), 400);
        assert_secure_html(&wrong);
        assert!(body(&wrong).contains("data-testid=\"device-error\""));
        assert!(
            body(&wrong).contains("name=\"user_code\""),
            "the form is offered again"
        );
        let right = submit(&deps, &cookie, "d1", &token, "BCDFGHJK").await;
        assert_eq!(right.status(), 303);
        let reused = submit(&deps, &cookie, "d1", &token, "BCDFGHJK").await;
        assert_eq!(reused.status(), 400);
        assert_eq!(kit.hydra.accepted_devices().len(), 1);
    }

    #[tokio::test]
    async fn a_browser_that_keeps_guessing_is_refused_even_with_the_right_code() {
        let kit = Kit::new();
        kit.hydra.add_device("d1", "BCDFGHJK");
        let deps = deps(&kit);
        let (cookie, token) = form(&deps, "d1").await;
        let limit = deps.config.device_attempts.per_browser;
        for i in 0..limit {
            let response = submit(&deps, &cookie, "d1", &token, &format!("WRONG{i}")).await;
            assert_eq!(response.status(), 400, "attempt {i}");
        }
        let refused = submit(&deps, &cookie, "d1", &token, "BCDFGHJK").await;
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
        assert!(
            kit.hydra.accepted_devices().is_empty(),
            "nothing accepted after the limit"
        );
        // A new window counts afresh.
        kit.advance(std::time::Duration::from_secs(
            deps.config.device_attempts.window_seconds,
        ));
        let later = submit(&deps, &cookie, "d1", &token, "BCDFGHJK").await;
        assert_eq!(later.status(), 303);
    }

    #[tokio::test]
    async fn forged_or_cross_site_posts_never_reach_hydra() {
        let kit = Kit::new();
        kit.hydra.add_device("d1", "BCDFGHJK");
        let deps = deps(&kit);
        let (cookie, token) = form(&deps, "d1").await;
        let cases = [
            (
                submit_body("d1", "forged", "BCDFGHJK"),
                Some(cookie.as_str()),
                ORIGIN,
            ),
            (submit_body("d1", &token, "BCDFGHJK"), None, ORIGIN),
            (
                submit_body("d1", &token, "BCDFGHJK"),
                Some(cookie.as_str()),
                Some("https://evil.example"),
            ),
            (
                submit_body("d2", &token, "BCDFGHJK"),
                Some(cookie.as_str()),
                ORIGIN,
            ),
        ];
        for (body, cookie, origin) in cases {
            let response = handle(post_form("/device", &body, cookie, origin), &deps).await;
            assert_eq!(response.status(), 403, "{body}");
        }
        assert!(kit.hydra.accepted_devices().is_empty());
    }

    #[tokio::test]
    async fn without_a_challenge_hydra_issues_one() {
        let kit = Kit::new();
        let response = handle(get("/device?user_code=abcd-efgh", None), &deps(&kit)).await;
        assert_eq!(response.status(), 303);
        let next = location(&response);
        assert!(
            next.starts_with(&format!(
                "{}oauth2/device/verify?",
                kit.config.hydra_public_url
            )),
            "{next}"
        );
        assert!(next.ends_with("user_code=ABCDEFGH"), "{next}");
    }

    #[tokio::test]
    async fn upstream_failures_keep_a_way_forward() {
        let kit = Kit::new();
        let deps = deps(&kit);
        for (challenge, kind, status) in [
            ("gone", UpstreamKind::Expired, 410),
            ("unknown", UpstreamKind::NotFound, 400),
            ("down", UpstreamKind::Transient, 503),
        ] {
            let (cookie, token) = form(&deps, challenge).await;
            kit.hydra.fail_challenge(challenge, kind);
            let response = submit(&deps, &cookie, challenge, &token, "BCDFGHJK").await;
            assert_eq!(response.status(), status, "{challenge}");
            assert!(
                body(&response).contains("data-testid=\"page-action\""),
                "{challenge}: a link onwards"
            );
        }
    }

    #[tokio::test]
    async fn the_done_page_names_the_client_and_survives_an_unknown_one() {
        let kit = Kit::new();
        kit.hydra.add_client(OAuth2Client {
            client_id: "tv".to_owned(),
            client_name: Some("Living-room <TV>".to_owned()),
            ..OAuth2Client::default()
        });
        let deps = deps(&kit);
        let named = handle(get("/device/done?client_id=tv", None), &deps).await;
        assert_eq!(named.status(), 200);
        assert_secure_html(&named);
        assert!(body(&named).contains("Living-room"));
        assert!(!body(&named).contains("<TV>"), "client name escaped");
        assert!(body(&named).contains("return to your device"));
        let unknown = handle(get("/device/done?client_id=nope", None), &deps).await;
        assert_eq!(unknown.status(), 200);
        assert!(body(&unknown).contains("Your device is now signed in"));
        let post = handle(post_form("/device/done", "", None, ORIGIN), &deps).await;
        assert_eq!(post.status(), 405);
    }
}
