//! One module per route, each a plain async function from a request and its dependencies to a
//! response, readable top to bottom. What two routes share (accepting a login from a Kratos
//! session, checking where Hydra sends the browser, the browser-binding cookie) lives here.

pub mod consent;
pub mod device;
pub mod error_page;
pub mod login;
pub mod login_return;
pub mod logout;

use lambda_http::{Body, Request, Response};
use url::Url;

use crate::claims::{authentication_references, LoginContext};
use crate::config::Config;
use crate::hook::{selected_traits, HookDecision, HookRequest, PolicyHook};
use crate::hydra::{AcceptLogin, OAuth2Client, RedirectTo};
use crate::identity::KratosSession;
use crate::policy::{self, ClientPolicy, Rule};
use crate::response::{Failure, UpstreamFailure};
use crate::upstream::UpstreamError;
use serde_json::{Map, Value};

/// Turns a handler's outcome into the response, in the one place where failures are rendered.
pub(crate) fn respond(
    request: &Request,
    outcome: Result<Response<Body>, Failure>,
) -> Response<Body> {
    outcome.unwrap_or_else(|failure| failure.into_response(crate::request::wants_json(request)))
}

/// Refuses anything but the allowed methods before any parsing happens.
pub(crate) fn require_method(request: &Request, allowed: &[http::Method]) -> Result<(), Failure> {
    if allowed.contains(request.method()) {
        Ok(())
    } else {
        Err(Failure::MethodNotAllowed)
    }
}

/// What one call site shows for each kind of upstream failure, and the log line (`event`,
/// `message`) that records it: the one mapping from an [`UpstreamError`] to a [`Failure`]. Routes
/// differ only in this data; the line is written once, when the failure is rendered.
pub(crate) struct FailurePolicy {
    /// The log line's `event`, which is also the metric it counts into.
    pub event: &'static str,
    /// The log line's message.
    pub message: &'static str,
    /// Shown when the upstream does not know the request (404).
    pub unknown: Failure,
    /// Shown when the request expired or was already used.
    pub expired: Failure,
    /// Shown when the failure may pass (timeout, 5xx, unreadable answer).
    pub transient: Failure,
    /// Shown for any other refusal, most likely a configuration problem.
    pub refused: Failure,
}

impl FailurePolicy {
    /// Around one Hydra challenge: an unknown challenge is `unknown` (a 400 in the route's words),
    /// an expired or used one 410, a passing failure 503 offering `retry`, any other refusal 502.
    pub fn challenge(
        event: &'static str,
        message: &'static str,
        unknown: Failure,
        retry: Option<String>,
    ) -> Self {
        Self {
            event,
            message,
            unknown,
            expired: Failure::Expired { restart: None },
            transient: Failure::Unavailable { retry },
            refused: Failure::BadGateway,
        }
    }

    /// Around a call whose "unknown" or "expired" answer means nothing to the user (the Kratos
    /// session check, the replay store): a passing failure is 503 offering `retry`, anything
    /// else 502.
    pub fn dependency(event: &'static str, message: &'static str, retry: Option<String>) -> Self {
        Self {
            event,
            message,
            unknown: Failure::BadGateway,
            expired: Failure::BadGateway,
            transient: Failure::Unavailable { retry },
            refused: Failure::BadGateway,
        }
    }

    /// Whatever the upstream says, `shown` (the error page: any failure to look an error up is
    /// worth another try).
    pub fn always(event: &'static str, message: &'static str, shown: Failure) -> Self {
        Self {
            event,
            message,
            unknown: shown.clone(),
            expired: shown.clone(),
            transient: shown.clone(),
            refused: shown,
        }
    }

    /// The failure `error` becomes under this policy, carrying its log line for `flow`.
    pub fn failure(self, flow: Option<&str>, error: UpstreamError) -> Failure {
        self.classify(flow, &error).into()
    }

    /// Like [`failure`](Self::failure), for a caller that may answer with something else and
    /// still has to log it.
    pub fn classify(self, flow: Option<&str>, error: &UpstreamError) -> UpstreamFailure {
        let shown = match error {
            UpstreamError::NotFound { .. } => self.unknown,
            UpstreamError::Expired { .. } => self.expired,
            e if e.is_transient() => self.transient,
            _ => self.refused,
        };
        UpstreamFailure::new(shown, self.event, self.message, flow, error)
    }
}

/// The client's policy, or the page that says its settings are broken. One `client_policy_invalid`
/// line names the client and the problem (field names only, never values) so the operator can
/// fix the registration; the sign-in is refused, never run under the defaults.
pub(crate) fn client_policy(
    config: &Config,
    client: &OAuth2Client,
) -> Result<ClientPolicy, Failure> {
    let policy = config
        .policy_defaults
        .for_client(client.metadata.as_ref())
        .map_err(|error| policy_refused(&client.client_id, &error.to_string()))?;
    if policy.hook && config.policy_hook.is_none() {
        return Err(policy_refused(
            &client.client_id,
            "the policy asks for the policy hook (\"hook\": true) but BRIDGE_POLICY_HOOK_URL is not set",
        ));
    }
    Ok(policy)
}

fn policy_refused(client_id: &str, problem: &str) -> Failure {
    tracing::error!(
        event = "client_policy_invalid",
        client_id,
        problem,
        "the client's sign-in policy (metadata.bridge) cannot be used; sign-in refused"
    );
    Failure::ClientPolicyInvalid
}

/// Asks the policy hook about one acceptance and turns its answer into the flow's next step: the
/// claims to add on allow, the refusal page (403, with the hook's reason) on deny, and the 503
/// with `retry` when it gave no usable answer (fail closed; the `policy_hook_failed` line counts
/// as an upstream failure). One `policy_decision` line either way.
pub(crate) async fn ask_policy_hook(
    hook: Option<&dyn PolicyHook>,
    hook_request: &HookRequest,
    flow: &str,
    retry: String,
) -> Result<Map<String, Value>, Failure> {
    let client_id = hook_request.client.client_id.as_str();
    let stage = hook_request.stage;
    let Some(hook) = hook else {
        // `client_policy` refuses `hook: true` without a hook URL, and cold start builds the hook
        // whenever the URL is set; getting here is a wiring bug, refused like a broken policy.
        return Err(policy_refused(
            client_id,
            "the policy asks for the policy hook but none was built at cold start",
        ));
    };
    match hook.decide(hook_request).await {
        Ok(decision) => {
            policy::log_decision(client_id, stage.as_str(), Rule::Hook, decision.outcome());
            match decision {
                HookDecision::Allow { claims } => Ok(claims),
                HookDecision::Deny { reason } => Err(Failure::PolicyDenied { reason }),
            }
        }
        Err(error) => {
            policy::log_decision(
                client_id,
                stage.as_str(),
                Rule::HookUnavailable,
                "unavailable",
            );
            Err(FailurePolicy::dependency(
                "policy_hook_failed",
                "the policy hook gave no usable answer; failing closed",
                Some(retry),
            )
            .failure(Some(flow), UpstreamError::from(error)))
        }
    }
}

/// Hydra's `redirect_to`, only if it points at Hydra's configured public origin: the functions
/// must never become an open redirect, even if Hydra (or something pretending to be Hydra)
/// answers with a foreign URL.
pub(crate) fn hydra_redirect(config: &Config, answer: &RedirectTo) -> Result<Url, Failure> {
    on_hydra_origin(config, &answer.redirect_to).ok_or_else(|| {
        tracing::error!(
            event = "foreign_redirect_refused",
            "Hydra answered with a redirect outside its public origin"
        );
        Failure::BadGateway
    })
}

/// Parses `raw` and keeps it only when it is on Hydra's public origin.
pub(crate) fn on_hydra_origin(config: &Config, raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    let expected = &config.hydra_public_url;
    let same_origin = url.scheme() == expected.scheme()
        && url.host() == expected.host()
        && url.port_or_known_default() == expected.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    same_origin.then_some(url)
}

/// The accept body for a login proven by a Kratos session: the subject is always the Kratos
/// identity id, never anything the request says.
pub(crate) fn accept_from_session(config: &Config, session: &KratosSession) -> AcceptLogin {
    let (amr, acr) = authentication_references(session);
    let context = LoginContext::from_identity(&session.identity, &config.claim_mapping);
    AcceptLogin {
        subject: session.identity.id.clone(),
        remember: config.remember,
        remember_for: config.remember_for.as_secs(),
        acr: Some(acr),
        amr,
        context: serde_json::to_value(context).ok(),
        identity_provider_session_id: Some(session.id.clone()),
    }
}

/// The identity traits the policy hook may see (`BRIDGE_POLICY_HOOK_TRAITS`), and no others.
pub(crate) fn hook_traits(config: &Config, session: &KratosSession) -> Map<String, Value> {
    config
        .policy_hook
        .as_ref()
        .map(|hook| selected_traits(&session.identity.traits, &hook.traits))
        .unwrap_or_default()
}

/// Keeps the hook's traits in the login `context`, so consent can send them to the hook again
/// without calling Kratos.
pub(crate) fn with_hook_traits(accept: &mut AcceptLogin, traits: &Map<String, Value>) {
    if traits.is_empty() {
        return;
    }
    if let Some(Value::Object(context)) = accept.context.as_mut() {
        context.insert("hook_traits".to_owned(), Value::Object(traits.clone()));
    }
}

/// Refuses cross-site form posts: `Origin` must be our own, and `Sec-Fetch-Site` (when the
/// browser sends it) must not say another site.
pub(crate) fn check_origin(request: &Request, config: &Config) -> Result<(), Failure> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let refused = Failure::Forbidden {
        message: "This form was sent from another site and was refused.",
    };
    let fetch_site = header("sec-fetch-site");
    if let Some(site) = fetch_site {
        if !matches!(site, "same-origin" | "none") {
            return Err(refused);
        }
    }
    if let Some(origin) = header("origin") {
        let ours = config.public_base_url.origin().ascii_serialization();
        // Our pages send `Referrer-Policy: no-referrer`, under which browsers serialize the
        // Origin of our own form POST as `null` (Fetch standard). `null` passes only when
        // Sec-Fetch-Site vouches for a same-origin request; an opaque origin elsewhere (a
        // sandboxed frame, a data: URL) stays refused.
        let own_form_without_origin = origin == "null" && fetch_site == Some("same-origin");
        if origin != ours && !own_form_without_origin {
            return Err(refused);
        }
    }
    Ok(())
}

/// A form of one of our pages (consent, device code): which challenge it is for, a CSRF token
/// bound to that challenge and to this browser's CSRF cookie, and the cookie to set with the page.
pub(crate) struct FormGuard {
    /// `Set-Cookie` for the CSRF cookie (this browser's own value when it has a usable one, so two
    /// tabs do not invalidate each other).
    pub set_cookie: String,
    /// The token the form carries in `csrf_token`.
    pub token: String,
}

/// Prepares the CSRF token and cookie for a form about `challenge`; `purpose` keeps a token of one
/// kind of form useless for another.
pub(crate) fn form_guard(
    request: &Request,
    config: &Config,
    keys: &crate::keyset::KeySet,
    purpose: &str,
    challenge: &str,
) -> Result<FormGuard, Failure> {
    let name = csrf_cookie_name(config);
    let cookie = match reusable_cookie_value(crate::request::cookie(request, name)) {
        Some(value) => value,
        None => crate::random::random_token().map_err(|_| Failure::Internal)?,
    };
    Ok(FormGuard {
        set_cookie: set_cookie(config, name, &cookie, 3600),
        token: keys
            .csrf_key()
            .token_for(&csrf_binding(purpose, challenge, &cookie)),
    })
}

/// A POSTed form that passed the checks every form of ours needs: sent from our own site, naming
/// a well-formed challenge in `challenge_field`, carrying the CSRF token for that challenge and
/// this browser's CSRF cookie.
pub(crate) struct CheckedForm {
    /// The parameters.
    pub form: crate::request::Params,
    /// The challenge the form is about.
    pub challenge: String,
    /// This browser's CSRF cookie, which also tells browsers apart (device attempt limits).
    pub browser: String,
}

/// Reads and checks a form POST; refusals are 403 and logged as `csrf_refused` with the purpose.
pub(crate) fn checked_form(
    request: &Request,
    config: &Config,
    keys: &crate::keyset::KeySet,
    purpose: &str,
    challenge_field: &str,
) -> Result<CheckedForm, Failure> {
    check_origin(request, config)?;
    let form = crate::request::form(request)?;
    let challenge = crate::request::challenge(&form, challenge_field)?;
    let presented = form.single("csrf_token", 256)?.unwrap_or("");
    let browser = crate::request::cookie(request, csrf_cookie_name(config)).unwrap_or_default();
    if browser.is_empty()
        || !keys.verify_csrf_token(&csrf_binding(purpose, &challenge, &browser), presented)
    {
        tracing::warn!(flow = %crate::logging::flow_id(&challenge), event = "csrf_refused", purpose, "form without a valid CSRF token");
        return Err(Failure::Forbidden {
            message: "This form has expired or was not sent from this site. Please go back and try again.",
        });
    }
    Ok(CheckedForm {
        form,
        challenge,
        browser,
    })
}

/// What a CSRF token is bound to: the kind of form, its challenge (hashed: challenges are long and
/// secret) and the browser's CSRF cookie.
fn csrf_binding(purpose: &str, challenge: &str, cookie: &str) -> String {
    format!(
        "{purpose}:{}:{cookie}",
        crate::digest::sha256_hex(challenge)
    )
}

/// Name of the browser-binding cookie. `__Host-` pins it to our exact host over https.
pub(crate) fn binding_cookie_name(config: &Config) -> &'static str {
    if config.dev_insecure_cookies {
        "bridge_binding"
    } else {
        "__Host-bridge_binding"
    }
}

/// Name of the consent CSRF cookie.
pub(crate) fn csrf_cookie_name(config: &Config) -> &'static str {
    if config.dev_insecure_cookies {
        "bridge_csrf"
    } else {
        "__Host-bridge_csrf"
    }
}

/// A `Set-Cookie` value for one of our cookies: HttpOnly, SameSite=Lax, host-only, path `/`,
/// Secure unless the explicit local-development flag is set.
pub(crate) fn set_cookie(config: &Config, name: &str, value: &str, max_age_seconds: u64) -> String {
    let secure = if config.dev_insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    format!("{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{secure}")
}

/// A random cookie value we set earlier, reused when well-formed so that two sign-ins in two
/// tabs of the same browser do not invalidate each other.
pub(crate) fn reusable_cookie_value(value: Option<String>) -> Option<String> {
    value.filter(|v| {
        v.len() == 43
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::{in_invocation, settings, Capture};
    use crate::upstream::Upstream;
    use serde_json::Value;

    /// Runs `body` in an invocation under the functions' subscriber: the log lines it wrote, and
    /// the metric (EMF) lines.
    fn logged(body: impl FnOnce()) -> (Vec<Value>, Vec<Value>) {
        let capture = Capture::default();
        let subscriber =
            crate::logging::subscriber(&settings(&[("RUST_LOG", "info")]), capture.clone());
        tracing::subscriber::with_default(subscriber, || in_invocation("req-1", None, body));
        capture
            .json_lines()
            .into_iter()
            .partition(|line| line.get("_aws").is_none())
    }

    /// The upstream failure's line (and its metric) is written when the page is rendered, once,
    /// with the fields every copy of the mapping used to write.
    #[test]
    fn an_upstream_failure_is_logged_once_when_rendered() {
        let policy = FailurePolicy::challenge(
            "logout_failed",
            "logout not completed",
            Failure::NotFound,
            Some("/logout?logout_challenge=c".to_owned()),
        );
        let error = UpstreamError::from_status(Upstream::Hydra, http::StatusCode::BAD_GATEWAY);
        let mut failure = None;
        let (logs, metrics) =
            logged(|| failure = Some(policy.failure(Some("0123456789abcdef"), error)));
        assert!(
            logs.is_empty() && metrics.is_empty(),
            "nothing before rendering"
        );

        let (logs, metrics) = logged(|| {
            let response = failure.take().map(|f| f.into_response(false));
            assert_eq!(
                response.map(|r| r.status()),
                Some(http::StatusCode::SERVICE_UNAVAILABLE)
            );
        });
        assert_eq!((logs.len(), metrics.len()), (1, 1), "{logs:?} {metrics:?}");
        let line = &logs[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["flow"], "0123456789abcdef");
        assert_eq!(line["event"], "logout_failed");
        assert_eq!(line["upstream"], "hydra");
        assert_eq!(line["failure"], "unavailable");
        assert_eq!(line["message"], "logout not completed");
        assert!(line["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    #[test]
    fn a_failure_without_a_flow_has_no_flow_field() {
        let shown = Failure::Unavailable { retry: None };
        let error = UpstreamError::from_status(Upstream::Kratos, http::StatusCode::NOT_FOUND);
        let failure = FailurePolicy::always("kratos_error_lookup_failed", "m", shown.clone())
            .failure(None, error);
        assert_eq!(failure.status(), shown.status());
        let (logs, _) = logged(|| {
            failure.into_response(true);
        });
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(logs[0].get("flow").is_none(), "{logs:?}");
        assert_eq!(logs[0]["failure"], "unknown_request");
    }
}
