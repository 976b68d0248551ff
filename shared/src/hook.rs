//! The policy hook: an operator's HTTPS endpoint asked before a login or a consent is accepted,
//! for rules the per-client policy ([`crate::policy`]) cannot express (a blocked account, a
//! tenant's own allow-list, claims from another system).
//!
//! The contract (version 1, docs/policy.md) is a signed JSON `POST` and a small JSON answer:
//! allow, deny with a reason shown to the user, or allow with extra claims inside one namespace.
//! The hook sits on the sign-in path, so it gets a short timeout, a bounded answer, and every
//! failure (unreachable, slow, non-2xx, unreadable, unknown version, claims outside the
//! namespace) becomes a [`HookError`] that the handlers turn into a 503 page with a retry link:
//! the bridge fails closed, because an unanswered policy must never read as "allowed".
//!
//! Nothing here logs or keeps the request body, the subject or the traits: errors carry only a
//! status, a timeout or a fixed description of what was wrong.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::{Client, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::config::PolicyHookSettings;
use crate::keyset::{lower_hex, PolicyHookKey};
use crate::upstream::{Upstream, UpstreamError};

/// The contract version the bridge sends and the only one it reads back; a hook written for
/// another version is refused rather than half understood.
pub const HOOK_CONTRACT_VERSION: u64 = 1;

/// The request header carrying the signature, `t=<unix seconds>,kid=<kid>,v1=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "Bridge-Signature";

/// Largest answer read; a policy answer is a few hundred bytes, so anything near this is a
/// misbehaving hook, and reading it would only spend the sign-in's time budget.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest deny reason shown to the user (characters); longer reasons are cut, not refused, so
/// a wordy hook still denies.
pub const MAX_REASON_CHARS: usize = 200;

/// Most claims one answer may add: the ID token travels in URLs and headers.
pub const MAX_ADDED_CLAIMS: usize = 32;

/// Which acceptance the hook is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Before Hydra's login is accepted (the session is known, no scopes granted yet).
    Login,
    /// Before Hydra's consent is accepted (the scopes and audiences are known).
    Consent,
}

impl Stage {
    /// The `stage` of the contract and of the `policy_decision` log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Login => "login",
            Stage::Consent => "consent",
        }
    }
}

/// The client as the hook sees it: enough to pick a rule set, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookClient {
    /// Hydra's client id.
    pub client_id: String,
    /// Hydra's client name, when the client has one.
    pub client_name: Option<String>,
}

/// What the bridge tells the hook (contract v1, without `version`, which [`HttpPolicyHook`]
/// adds). Its `Debug` shows only the stage and client: the rest is personal data.
#[derive(Clone, Serialize)]
pub struct HookRequest {
    /// Which acceptance is being decided.
    pub stage: Stage,
    /// The Kratos identity id.
    pub subject: String,
    /// The OAuth2 client asking.
    pub client: HookClient,
    /// Authentication method references of the session (README: "What Hydra learns").
    pub amr: Vec<String>,
    /// The session's assurance level (`aal1`, `aal2`), when known.
    pub acr: Option<String>,
    /// Scopes the client asked for.
    pub requested_scope: Vec<String>,
    /// Access token audiences the client asked for.
    pub requested_audience: Vec<String>,
    /// Only the identity traits named in `BRIDGE_POLICY_HOOK_TRAITS` ([`selected_traits`]).
    pub traits: Map<String, Value>,
    /// The bridge's correlation id for this sign-in (the `flow` field of its logs), so the
    /// hook's logs and the bridge's can be joined without personal data.
    pub request_id: String,
}

impl fmt::Debug for HookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookRequest")
            .field("stage", &self.stage)
            .field("client_id", &self.client.client_id)
            .field("personal_data", &"[redacted]")
            .finish()
    }
}

/// The top-level traits named in `names`, and only those: the hook learns what the operator
/// chose to send, never the whole identity.
pub fn selected_traits(traits: &Value, names: &BTreeSet<String>) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|name| Some((name.clone(), traits.get(name)?.clone())))
        .collect()
}

/// The hook's verdict, once it has passed every check of the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum HookDecision {
    /// Go on; `claims` (possibly empty) are added to the ID token, every name inside the
    /// configured namespace.
    Allow {
        /// Claims to add, keyed by their full (namespaced) names.
        claims: Map<String, Value>,
    },
    /// Stop; `reason` is shown to the user (the page template escapes it).
    Deny {
        /// The hook's words, cut to [`MAX_REASON_CHARS`] without control characters; `None`
        /// when the hook gave none, and the page says something generic.
        reason: Option<String>,
    },
}

impl HookDecision {
    /// The `outcome` of the `policy_decision` log line.
    pub fn outcome(&self) -> &'static str {
        match self {
            HookDecision::Allow { .. } => "allow",
            HookDecision::Deny { .. } => "deny",
        }
    }
}

/// Why the hook gave no usable answer. Every variant fails the sign-in closed with a 503 and a
/// retry link ([`From<HookError> for UpstreamError`]). Messages name the problem, never the
/// body, a claim name or anything else the hook sent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HookError {
    /// No complete answer within the configured timeout.
    #[error("the policy hook did not answer within {timeout_ms} ms")]
    Timeout {
        /// The configured timeout.
        timeout_ms: u64,
    },
    /// Connection refused, reset, TLS failure and the like.
    #[error("the policy hook cannot be reached ({detail})")]
    Unreachable {
        /// A fixed description of the transport failure (never reqwest's message, which holds
        /// the URL).
        detail: &'static str,
    },
    /// The hook answered with a status other than 2xx.
    #[error("the policy hook answered with status {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The answer is longer than [`MAX_ANSWER_BYTES`].
    #[error("the policy hook's answer is longer than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// The answer names a contract version this bridge does not read.
    #[error("the policy hook answered contract version {version}; this bridge reads version {HOOK_CONTRACT_VERSION}")]
    Version {
        /// The version the hook named.
        version: u64,
    },
    /// The answer is not a contract v1 answer.
    #[error("the policy hook's answer is not a valid contract answer ({problem})")]
    Malformed {
        /// What is wrong, in fixed words.
        problem: &'static str,
    },
    /// The answer adds claims outside the configured namespace (or too many); they are never
    /// partly applied.
    #[error("the policy hook added {count} claim(s) outside the namespace {namespace} or beyond {MAX_ADDED_CLAIMS}")]
    ClaimsOutsideNamespace {
        /// How many claims were refused.
        count: usize,
        /// The configured namespace (configuration, not personal data).
        namespace: String,
    },
    /// The request could not be encoded; impossible for JSON values, but not papered over.
    #[error("the policy hook request could not be encoded")]
    Encoding,
}

impl HookError {
    /// The `failure` log field, in the words [`UpstreamError::failure`] uses for the other
    /// upstreams: `unavailable` (slow, unreachable, 5xx), `refused` (other statuses) or
    /// `malformed` (an answer outside the contract).
    pub fn failure(&self) -> &'static str {
        match self {
            HookError::Timeout { .. } | HookError::Unreachable { .. } => "unavailable",
            HookError::Status { status } if *status >= 500 || *status == 429 => "unavailable",
            HookError::Status { .. } => "refused",
            HookError::TooLarge
            | HookError::Version { .. }
            | HookError::Malformed { .. }
            | HookError::ClaimsOutsideNamespace { .. }
            | HookError::Encoding => "malformed",
        }
    }

    fn from_transport(error: &reqwest::Error, timeout: Duration) -> Self {
        if error.is_timeout() {
            return HookError::Timeout {
                timeout_ms: millis(timeout),
            };
        }
        let detail = if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "unreadable body"
        } else {
            "transport error"
        };
        HookError::Unreachable { detail }
    }
}

/// Every hook failure is a "try again" for the user: the handlers' existing 503 page with its
/// retry link, under the `policy_hook` upstream.
impl From<HookError> for UpstreamError {
    fn from(error: HookError) -> Self {
        UpstreamError::Transient {
            upstream: Upstream::PolicyHook,
            detail: error.to_string(),
        }
    }
}

/// The port the handlers ask, so they test without a hook server (like
/// [`crate::hydra::HydraAdmin`] and [`crate::kratos::KratosApi`]).
#[async_trait]
pub trait PolicyHook: Send + Sync {
    /// Asks the hook about one acceptance; `Err` means "fail closed".
    async fn decide(&self, request: &HookRequest) -> Result<HookDecision, HookError>;
}

/// [`PolicyHook`] over HTTPS with the shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpPolicyHook {
    http: Client,
    url: Url,
    timeout: Duration,
    claims_namespace: String,
    key: PolicyHookKey,
}

impl HttpPolicyHook {
    /// Wraps the shared client with the hook's settings and the current key set entry's hook
    /// subkey (so rotating the key set rotates the hook's key).
    pub fn new(http: Client, settings: &PolicyHookSettings, key: PolicyHookKey) -> Self {
        Self {
            http,
            url: settings.url.clone(),
            timeout: settings.timeout,
            claims_namespace: settings.claims_namespace.clone(),
            key,
        }
    }

    async fn exchange(&self, body: Vec<u8>) -> Result<HookDecision, HookError> {
        let signature = signature_header(&self.key, unix_now(), &body);
        let response = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| HookError::from_transport(&e, self.timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(HookError::Status {
                status: status.as_u16(),
            });
        }
        let answer = read_bounded(response, self.timeout).await?;
        parse_answer(&answer, &self.claims_namespace)
    }
}

#[async_trait]
impl PolicyHook for HttpPolicyHook {
    async fn decide(&self, request: &HookRequest) -> Result<HookDecision, HookError> {
        let body = serde_json::to_vec(&Envelope {
            version: HOOK_CONTRACT_VERSION,
            request,
        })
        .map_err(|_| HookError::Encoding)?;
        // One deadline for connecting, sending and reading the answer: the hook is on the
        // sign-in path and the client's own timeout is the (longer) upstream one.
        tokio::time::timeout(self.timeout, self.exchange(body))
            .await
            .unwrap_or(Err(HookError::Timeout {
                timeout_ms: millis(self.timeout),
            }))
    }
}

/// The request as sent: `version` first, then the fields of [`HookRequest`].
#[derive(Serialize)]
struct Envelope<'a> {
    version: u64,
    #[serde(flatten)]
    request: &'a HookRequest,
}

/// The value of [`SIGNATURE_HEADER`]: HMAC-SHA256 under the hook subkey over
/// `"<timestamp>.<body>"`, Stripe-style, so the hook can check the body and refuse old
/// timestamps (replays) with one MAC.
pub fn signature_header(key: &PolicyHookKey, timestamp: u64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mac = key.mac(&[timestamp.as_bytes(), b".", body]);
    format!("t={timestamp},kid={},v1={}", key.kid(), lower_hex(&mac))
}

/// Reads at most [`MAX_ANSWER_BYTES`], stopping as soon as the answer is known to be longer.
async fn read_bounded(mut response: Response, timeout: Duration) -> Result<Vec<u8>, HookError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(HookError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HookError::from_transport(&e, timeout))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HookError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The answer as written; unknown fields are refused so a misspelt `claim` cannot pass as
/// "no claims".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenAnswer {
    #[serde(rename = "version")]
    _version: u64,
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
}

/// Checks an answer against contract v1: the version first (so a v2 answer is reported as
/// such), then the shape, then the claims namespace.
fn parse_answer(body: &[u8], claims_namespace: &str) -> Result<HookDecision, HookError> {
    let document: Value = serde_json::from_slice(body).map_err(|_| HookError::Malformed {
        problem: "not JSON",
    })?;
    let version = document
        .get("version")
        .ok_or(HookError::Malformed {
            problem: "no version",
        })?
        .as_u64()
        .ok_or(HookError::Malformed {
            problem: "version is not a number",
        })?;
    if version != HOOK_CONTRACT_VERSION {
        return Err(HookError::Version { version });
    }
    let answer = WrittenAnswer::deserialize(document).map_err(|_| HookError::Malformed {
        problem: "unknown field or wrong type",
    })?;
    match answer.decision.as_str() {
        "allow" if answer.reason.is_some() => Err(HookError::Malformed {
            problem: "reason on an allow",
        }),
        "allow" => {
            let claims = answer.claims.unwrap_or_default();
            check_claims(&claims, claims_namespace)?;
            Ok(HookDecision::Allow { claims })
        }
        "deny" if answer.claims.is_some() => Err(HookError::Malformed {
            problem: "claims on a deny",
        }),
        "deny" => Ok(HookDecision::Deny {
            reason: answer.reason.as_deref().and_then(shown_reason),
        }),
        _ => Err(HookError::Malformed {
            problem: "decision is neither allow nor deny",
        }),
    }
}

/// Every added claim must be `<namespace><name>` with a plain name, and there may be at most
/// [`MAX_ADDED_CLAIMS`]: the namespace keeps the hook away from the claims Hydra and the
/// bridge own (`sub`, `acr`, `email`, ...), whatever it answers.
fn check_claims(claims: &Map<String, Value>, namespace: &str) -> Result<(), HookError> {
    let outside = claims
        .keys()
        .filter(|name| !is_namespaced_claim(name, namespace))
        .count();
    let too_many = claims.len().saturating_sub(MAX_ADDED_CLAIMS);
    if outside > 0 || too_many > 0 {
        return Err(HookError::ClaimsOutsideNamespace {
            count: outside.max(too_many),
            namespace: namespace.to_owned(),
        });
    }
    Ok(())
}

fn is_namespaced_claim(name: &str, namespace: &str) -> bool {
    name.strip_prefix(namespace).is_some_and(|local| {
        !local.is_empty()
            && local.len() <= 64
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    })
}

/// The reason as the page shows it: control characters dropped, whitespace trimmed, cut to
/// [`MAX_REASON_CHARS`]; HTML escaping is the template's job.
fn shown_reason(reason: &str) -> Option<String> {
    let cleaned: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// The signature's timestamp: the crate's one epoch-seconds reading (0 before 1970).
fn unix_now() -> u64 {
    crate::clock::epoch_seconds(SystemTime::now()).unwrap_or_default()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use hkdf::Hkdf;
    use hmac::{Hmac, Mac};
    use serde_json::json;
    use sha2::Sha256;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use super::*;
    use crate::keyset::tests::test_key_set;
    use crate::keyset::HKDF_INFO_POLICY_HOOK;

    const NAMESPACE: &str = "https://auth.example.com/claims/";

    fn hook(server: &MockServer, timeout_ms: u64) -> HttpPolicyHook {
        hook_at(&server.uri(), timeout_ms)
    }

    fn hook_at(base: &str, timeout_ms: u64) -> HttpPolicyHook {
        let keys = test_key_set("k2", &[("k2", 2), ("k1", 1)]);
        let settings = PolicyHookSettings {
            url: Url::parse(&format!("{base}/policy")).unwrap(),
            timeout: Duration::from_millis(timeout_ms),
            traits: BTreeSet::new(),
            claims_namespace: NAMESPACE.to_owned(),
        };
        HttpPolicyHook::new(
            crate::upstream::test_client(),
            &settings,
            keys.current().policy_hook_key().clone(),
        )
    }

    fn request() -> HookRequest {
        HookRequest {
            stage: Stage::Consent,
            subject: "9f1c0a4e-identity".to_owned(),
            client: HookClient {
                client_id: "web".to_owned(),
                client_name: Some("Web app".to_owned()),
            },
            amr: vec!["fed".to_owned()],
            acr: Some("aal1".to_owned()),
            requested_scope: vec!["openid".to_owned(), "email".to_owned()],
            requested_audience: Vec::new(),
            traits: selected_traits(
                &json!({"email": "a@example.com", "phone": "+15550100"}),
                &BTreeSet::from(["email".to_owned(), "tenant".to_owned()]),
            ),
            request_id: "0123456789abcdef".to_owned(),
        }
    }

    async fn answering(template: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(template)
            .mount(&server)
            .await;
        server
    }

    async fn decide_with(template: ResponseTemplate) -> Result<HookDecision, HookError> {
        let server = answering(template).await;
        hook(&server, 1500).decide(&request()).await
    }

    /// What a hook does (docs/policy.md), written independently of the bridge's signing code:
    /// derive the key from the raw secret with the documented HKDF parameters, split the header,
    /// recompute the MAC over `"<t>.<body>"`.
    fn verify_like_a_hook(secret: &[u8], header: &str, body: &[u8]) -> Option<(u64, String)> {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, secret)
            .expand(HKDF_INFO_POLICY_HOOK, &mut key)
            .ok()?;
        let mut fields = header.split(',').filter_map(|part| part.split_once('='));
        let (t, kid, v1) = (fields.next()?, fields.next()?, fields.next()?);
        if (t.0, kid.0, v1.0) != ("t", "kid", "v1") {
            return None;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
        mac.update(t.1.as_bytes());
        mac.update(b".");
        mac.update(body);
        if lower_hex(&mac.finalize().into_bytes()) != v1.1 {
            return None;
        }
        Some((t.1.parse().ok()?, kid.1.to_owned()))
    }

    #[tokio::test]
    async fn the_request_is_signed_verifiably_and_carries_only_chosen_traits() {
        let server = answering(
            ResponseTemplate::new(200).set_body_json(json!({"version": 1, "decision": "allow"})),
        )
        .await;
        let decision = hook(&server, 1500).decide(&request()).await;
        assert_eq!(decision, Ok(HookDecision::Allow { claims: Map::new() }));
        let received: Vec<Request> = server.received_requests().await.unwrap();
        let sent = &received[0];
        let header = sent
            .headers
            .get(SIGNATURE_HEADER)
            .unwrap()
            .to_str()
            .unwrap();
        let (timestamp, kid) = verify_like_a_hook(&[2u8; 32], header, &sent.body).unwrap();
        assert_eq!(kid, "k2");
        assert!(unix_now().abs_diff(timestamp) < 5);
        assert!(verify_like_a_hook(&[1u8; 32], header, &sent.body).is_none());
        let mut tampered = sent.body.clone();
        tampered.push(b' ');
        assert!(verify_like_a_hook(&[2u8; 32], header, &tampered).is_none());

        let body: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(
            body,
            json!({
                "version": 1,
                "stage": "consent",
                "subject": "9f1c0a4e-identity",
                "client": {"client_id": "web", "client_name": "Web app"},
                "amr": ["fed"],
                "acr": "aal1",
                "requested_scope": ["openid", "email"],
                "requested_audience": [],
                "traits": {"email": "a@example.com"},
                "request_id": "0123456789abcdef"
            })
        );
    }

    #[tokio::test]
    async fn a_slow_hook_is_a_timeout() {
        let server = answering(
            ResponseTemplate::new(200)
                .set_body_json(json!({"version": 1, "decision": "allow"}))
                .set_delay(Duration::from_millis(600)),
        )
        .await;
        let error = hook(&server, 100).decide(&request()).await.unwrap_err();
        assert_eq!(error, HookError::Timeout { timeout_ms: 100 });
        assert_eq!(error.failure(), "unavailable");
    }

    #[tokio::test]
    async fn statuses_other_than_2xx_are_errors() {
        assert_eq!(
            decide_with(ResponseTemplate::new(500)).await,
            Err(HookError::Status { status: 500 })
        );
        let refused = decide_with(ResponseTemplate::new(403)).await.unwrap_err();
        assert_eq!(refused.failure(), "refused");
        // A port nobody listens on (wiremock keeps its servers alive in a pool).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        assert!(matches!(
            hook_at(&format!("http://{address}"), 1500)
                .decide(&request())
                .await,
            Err(HookError::Unreachable { .. })
        ));
    }

    #[tokio::test]
    async fn answers_outside_the_contract_are_errors() {
        let malformed = |body: &str| ResponseTemplate::new(200).set_body_string(body.to_owned());
        for body in [
            "not json",
            "{}",
            r#"{"version": "1", "decision": "allow"}"#,
            r#"{"version": 1, "decision": "maybe"}"#,
            r#"{"version": 1, "decision": "allow", "claim": {}}"#,
            r#"{"version": 1, "decision": "deny", "claims": {}}"#,
            r#"{"version": 1, "decision": "allow", "reason": "why"}"#,
            r#"{"version": 1, "decision": "allow", "claims": []}"#,
        ] {
            let result = decide_with(malformed(body)).await;
            assert!(
                matches!(result, Err(HookError::Malformed { .. })),
                "{body}: {result:?}"
            );
        }
        assert_eq!(
            decide_with(malformed(r#"{"version": 2, "decision": "allow"}"#)).await,
            Err(HookError::Version { version: 2 })
        );
        let huge = format!(
            r#"{{"version": 1, "decision": "deny", "reason": "{}"}}"#,
            "x".repeat(MAX_ANSWER_BYTES)
        );
        assert_eq!(
            decide_with(malformed(&huge)).await,
            Err(HookError::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_deny_carries_a_cleaned_capped_reason() {
        let deny = |reason: Value| {
            ResponseTemplate::new(200)
                .set_body_json(json!({"version": 1, "decision": "deny", "reason": reason}))
        };
        assert_eq!(
            decide_with(deny(json!("  Your account is suspended.\n"))).await,
            Ok(HookDecision::Deny {
                reason: Some("Your account is suspended.".to_owned())
            })
        );
        let long = decide_with(deny(json!("é".repeat(500)))).await;
        assert_eq!(
            long,
            Ok(HookDecision::Deny {
                reason: Some("é".repeat(MAX_REASON_CHARS))
            })
        );
        assert_eq!(
            decide_with(deny(json!(" \u{7} "))).await,
            Ok(HookDecision::Deny { reason: None })
        );
        assert_eq!(
            decide_with(
                ResponseTemplate::new(200).set_body_json(json!({"version": 1, "decision": "deny"}))
            )
            .await
            .map(|d| d.outcome()),
            Ok("deny")
        );
    }

    #[tokio::test]
    async fn claims_must_sit_inside_the_namespace() {
        let allow = |claims: Value| {
            ResponseTemplate::new(200)
                .set_body_json(json!({"version": 1, "decision": "allow", "claims": claims}))
        };
        let inside = json!({
            "https://auth.example.com/claims/tenant": "acme",
            "https://auth.example.com/claims/roles": ["admin"]
        });
        assert_eq!(
            decide_with(allow(inside.clone())).await,
            Ok(HookDecision::Allow {
                claims: inside.as_object().unwrap().clone()
            })
        );
        for outside in [
            json!({"email": "someone@else.example"}),
            json!({"https://auth.example.com/claims/tenant": "acme", "sub": "admin"}),
            json!({"https://auth.example.com/claims/": 1}),
            json!({"https://auth.example.com/claims/a/b": 1}),
            json!({"https://auth.example.com/claimsx": 1}),
        ] {
            let result = decide_with(allow(outside.clone())).await;
            assert!(
                matches!(result, Err(HookError::ClaimsOutsideNamespace { .. })),
                "{outside}: {result:?}"
            );
        }
        let many: Map<String, Value> = (0..=MAX_ADDED_CLAIMS)
            .map(|i| (format!("{NAMESPACE}c{i}"), json!(i)))
            .collect();
        assert!(matches!(
            decide_with(allow(Value::Object(many))).await,
            Err(HookError::ClaimsOutsideNamespace { count: 1, .. })
        ));
    }

    #[test]
    fn failures_become_a_retryable_upstream_error_without_personal_data() {
        let error = UpstreamError::from(HookError::Status { status: 502 });
        assert!(error.is_transient());
        assert_eq!(error.upstream().log_name(), "policy_hook");
        let debug = format!("{:?}", request());
        assert!(debug.contains("web"));
        assert!(!debug.contains("a@example.com"), "{debug}");
        assert!(!debug.contains("9f1c0a4e"), "{debug}");
    }
}
