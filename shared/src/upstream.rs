//! What can go wrong when talking to Kratos, Hydra or DynamoDB, and the one HTTP client the Ory
//! APIs share.
//!
//! Handlers must tell "try again later" (timeouts, 5xx, garbage) from "this request is dead"
//! (expired or unknown challenge) from "we are misconfigured" (other 4xx), because each leads the
//! user somewhere else. [`UpstreamError`] carries exactly that distinction and nothing that could
//! leak a secret (no URLs with challenges, no bodies).
//!
//! Every Kratos and Hydra call also leaves here with a W3C `traceparent` derived from the
//! invocation's X-Ray trace header, so Ory's own traces join the function's X-Ray trace
//! (docs/operations.md explains the choice).

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::config::Config;

/// Which upstream failed, for messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Ory Hydra's admin API.
    Hydra,
    /// Ory Kratos' public or admin API.
    Kratos,
    /// The DynamoDB replay table.
    ReplayStore,
    /// AWS Secrets Manager (key set).
    SecretsManager,
    /// The operator's policy hook (docs/policy.md); every failure of it is transient, because
    /// the bridge fails closed and the user can only try again.
    PolicyHook,
}

impl Upstream {
    /// The `upstream` log field and the `Upstream` metric dimension: a fixed lower-case word per
    /// service, named after what operators see in AWS (`dynamodb`, not "replay store").
    pub fn log_name(self) -> &'static str {
        match self {
            Self::Hydra => "hydra",
            Self::Kratos => "kratos",
            Self::ReplayStore => "dynamodb",
            Self::SecretsManager => "secretsmanager",
            Self::PolicyHook => "policy_hook",
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hydra => "Hydra",
            Self::Kratos => "Kratos",
            Self::ReplayStore => "replay store",
            Self::SecretsManager => "Secrets Manager",
            Self::PolicyHook => "policy hook",
        })
    }
}

/// A failed upstream call, classified by what the user can do about it.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// Timed out, refused, reset, 5xx or 429: the same request may work in a moment.
    #[error("{upstream} is unavailable ({detail})")]
    Transient {
        /// Who failed.
        upstream: Upstream,
        /// Status or transport error kind; never a URL or body.
        detail: String,
    },
    /// The thing asked about does not exist (or can no longer be decoded): 404.
    #[error("{upstream} does not know this request")]
    NotFound {
        /// Who answered.
        upstream: Upstream,
    },
    /// The thing asked about has expired or was already used: Hydra's 401/409/410.
    #[error("{upstream} says the request expired or was already handled")]
    Expired {
        /// Who answered.
        upstream: Upstream,
    },
    /// Any other refusal: most likely our configuration or a bug, not the user's doing.
    #[error("{upstream} refused the call with status {status}")]
    Rejected {
        /// Who answered.
        upstream: Upstream,
        /// The HTTP status.
        status: u16,
    },
    /// A 2xx answer that is not what the API promises.
    #[error("{upstream} sent an answer we could not read")]
    Malformed {
        /// Who answered.
        upstream: Upstream,
    },
}

impl UpstreamError {
    /// Whether retrying the same user action may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Malformed { .. })
    }

    /// Which upstream failed (the `upstream` log field is its [`Upstream::log_name`]).
    pub fn upstream(&self) -> Upstream {
        match self {
            Self::Transient { upstream, .. }
            | Self::NotFound { upstream }
            | Self::Expired { upstream }
            | Self::Rejected { upstream, .. }
            | Self::Malformed { upstream } => *upstream,
        }
    }

    /// The `failure` log field: the class in one word. `unavailable`, `refused` and `malformed`
    /// are the upstream's fault and count as `UpstreamFailures` ([`crate::metrics`]);
    /// `unknown_request` and `expired` are a stale link and do not.
    pub fn failure(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "unavailable",
            Self::NotFound { .. } => "unknown_request",
            Self::Expired { .. } => "expired",
            Self::Rejected { .. } => "refused",
            Self::Malformed { .. } => "malformed",
        }
    }

    /// Maps an unexpected status into the right class.
    pub fn from_status(upstream: Upstream, status: StatusCode) -> Self {
        match status.as_u16() {
            404 => Self::NotFound { upstream },
            401 | 409 | 410 => Self::Expired { upstream },
            408 | 425 | 429 => Self::Transient {
                upstream,
                detail: format!("status {}", status.as_u16()),
            },
            s if s >= 500 => Self::Transient {
                upstream,
                detail: format!("status {s}"),
            },
            s => Self::Rejected {
                upstream,
                status: s,
            },
        }
    }

    /// Classifies a transport error without keeping its message, which may contain the URL.
    pub fn from_transport(upstream: Upstream, error: &reqwest::Error) -> Self {
        let detail = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connection failed"
        } else if error.is_decode() || error.is_body() {
            "unreadable body"
        } else {
            "transport error"
        };
        if error.is_decode() {
            return Self::Malformed { upstream };
        }
        Self::Transient {
            upstream,
            detail: detail.to_owned(),
        }
    }
}

/// Longest JSON body we read from an upstream; anything bigger is treated as garbage.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds the HTTP client once per cold start, with the timeout, connection reuse and trust
/// settings every upstream call needs.
///
/// Trust is rustls on `ring` with the Mozilla roots compiled in, plus `BRIDGE_CA_BUNDLE` when
/// set (a private CA for Kratos or Hydra). Loading the operating system's store instead reads
/// every certificate file at cold start (2.5 ms for Debian's 146 files), and aws-lc's
/// jitter-entropy seeding costs about 25 ms on the first handshake; neither buys anything for
/// calls to AWS endpoints and to Ory behind a known CA (docs/performance.md has the figures).
pub fn build_http_client(config: &Config) -> Result<Client, crate::config::ConfigError> {
    let tls = tls_client_config(config.ca_bundle.as_deref())?;
    Client::builder()
        .timeout(config.upstream_timeout)
        .connect_timeout(config.upstream_timeout.min(Duration::from_millis(1500)))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hydra-kratos-bridge/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| crate::config::ConfigError::Invalid {
            name: "BRIDGE_CA_BUNDLE",
            reason: format!("the HTTP client cannot be built: {e}"),
        })
}

/// The rustls client settings of every upstream call: compiled-in public roots, the optional
/// extra bundle, HTTP/2 and HTTP/1.1 offered by ALPN. Public so tools (the doctor) trust exactly
/// what the functions trust.
pub fn tls_client_config(
    ca_bundle: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, crate::config::ConfigError> {
    let invalid = |reason: String| crate::config::ConfigError::Invalid {
        name: "BRIDGE_CA_BUNDLE",
        reason,
    };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_bundle {
        use rustls_pki_types::pem::PemObject as _;
        let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
        let mut added = 0usize;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| invalid(format!("not a PEM certificate bundle: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("holds an unusable certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(invalid("holds no certificate".to_owned()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("no usable TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// Sends a request and reads a JSON answer of a 2xx status, classifying every failure.
pub(crate) async fn send_json<T: DeserializeOwned>(
    upstream: Upstream,
    request: RequestBuilder,
) -> Result<T, UpstreamError> {
    let response = send(upstream, request).await?;
    read_json(upstream, response).await
}

/// Sends a request; only 2xx answers come back as `Ok`.
pub(crate) async fn send(
    upstream: Upstream,
    request: RequestBuilder,
) -> Result<Response, UpstreamError> {
    let response = send_any_status(upstream, request).await?;
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else {
        Err(UpstreamError::from_status(upstream, status))
    }
}

/// Sends a request with the trace context and returns whatever status comes back (callers that
/// give meaning to some non-2xx answers, like Kratos' 401 for "no session").
pub(crate) async fn send_any_status(
    upstream: Upstream,
    request: RequestBuilder,
) -> Result<Response, UpstreamError> {
    with_trace_context(request)
        .send()
        .await
        .map_err(|e| UpstreamError::from_transport(upstream, &e))
}

/// The environment variable in which the Lambda runtime puts the invocation's X-Ray trace header
/// (`lambda_runtime` sets it before each invocation and removes it when there is none).
const XRAY_TRACE_ENV: &str = "_X_AMZN_TRACE_ID";

/// Adds `traceparent` when the invocation is traced.
fn with_trace_context(request: RequestBuilder) -> RequestBuilder {
    match std::env::var(XRAY_TRACE_ENV)
        .ok()
        .as_deref()
        .and_then(traceparent_from_xray)
    {
        Some(traceparent) => request.header("traceparent", traceparent),
        None => request,
    }
}

/// The W3C trace context (`traceparent`, version 00) of an X-Ray trace header
/// `Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`: the trace id is the root's 32
/// hex digits, the parent id X-Ray's parent segment, the sampled flag X-Ray's decision. This is
/// the mapping X-Ray itself uses for W3C trace ids, so the Ory spans land in the same trace.
/// `None` for anything malformed: a missing header is better than a wrong one.
pub fn traceparent_from_xray(header: &str) -> Option<String> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = false;
    for part in header.split(';') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Root" => root = Some(value),
            "Parent" => parent = Some(value),
            "Sampled" => sampled = value == "1",
            _ => {}
        }
    }
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut root_parts = root?.split('-');
    let (version, time, unique) = (root_parts.next()?, root_parts.next()?, root_parts.next()?);
    if version != "1" || root_parts.next().is_some() || !is_hex(time, 8) || !is_hex(unique, 24) {
        return None;
    }
    let trace_id = format!("{time}{unique}");
    let parent = parent?;
    if !is_hex(parent, 16) || !not_zero(parent) || !not_zero(&trace_id) {
        return None;
    }
    let flags = if sampled { "01" } else { "00" };
    Some(format!("00-{trace_id}-{parent}-{flags}"))
}

/// Reads a bounded JSON body.
pub(crate) async fn read_json<T: DeserializeOwned>(
    upstream: Upstream,
    response: Response,
) -> Result<T, UpstreamError> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(UpstreamError::Malformed { upstream });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| UpstreamError::from_transport(upstream, &e))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(UpstreamError::Malformed { upstream });
    }
    serde_json::from_slice(&bytes).map_err(|_| UpstreamError::Malformed { upstream })
}

/// Runs an idempotent read, retrying once on a transient failure: a single dropped connection
/// (a pooled keep-alive connection closed by the peer is the usual case) should not cost the
/// user a retry page. Writes are never retried here.
pub(crate) async fn with_read_retry<T, F, Fut>(mut call: F) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamError>>,
{
    match call().await {
        Err(UpstreamError::Transient { .. }) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            call().await
        }
        other => other,
    }
}

/// A plain client on the same TLS set-up, for unit tests against local mock servers (reqwest's
/// `Client::new()` has no crypto provider to use in this build).
#[cfg(test)]
pub(crate) fn test_client() -> Client {
    Client::builder()
        .timeout(Duration::from_millis(2000))
        .tls_backend_preconfigured(tls_client_config(None).expect("tls"))
        .build()
        .expect("client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundle_is_checked_at_start_up() {
        let dir = std::env::temp_dir().join(format!("bridge-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let error = tls_client_config(Some(&empty)).expect_err("an empty bundle is refused");
        assert!(error.to_string().contains("BRIDGE_CA_BUNDLE"), "{error}");
        let missing = dir.join("missing.pem");
        assert!(tls_client_config(Some(&missing)).is_err());
        let config = tls_client_config(None).expect("public roots alone");
        assert_eq!(config.alpn_protocols.len(), 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn traceparent_follows_the_xray_header() {
        assert_eq!(
            traceparent_from_xray(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            )
            .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
        );
        assert_eq!(
            traceparent_from_xray(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a:1"
            )
            .as_deref(),
            Some("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00")
        );
        for bad in [
            "",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000;Sampled=1",
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759E988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3f;Parent=53995c3f42cd8ad8",
            "garbage",
        ] {
            assert_eq!(traceparent_from_xray(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn ory_calls_carry_the_invocation_trace() {
        use wiremock::matchers::{header, method};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(header(
                "traceparent",
                "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
            .expect(1)
            .mount(&server)
            .await;
        // What lambda_runtime sets before each invocation. Other tests may see it too, which
        // only adds a header their mocks do not look at.
        std::env::set_var(
            XRAY_TRACE_ENV,
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        );
        let answer: Result<serde_json::Value, _> =
            send_json(Upstream::Hydra, test_client().get(server.uri())).await;
        std::env::remove_var(XRAY_TRACE_ENV);
        assert!(answer.is_ok(), "{answer:?}");
    }

    #[test]
    fn failures_name_their_upstream_and_class() {
        let error =
            UpstreamError::from_status(Upstream::ReplayStore, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.upstream().log_name(), "dynamodb");
        assert_eq!(error.failure(), "unavailable");
        let error = UpstreamError::from_status(Upstream::Hydra, StatusCode::GONE);
        assert_eq!(
            (error.upstream().log_name(), error.failure()),
            ("hydra", "expired")
        );
        let error = UpstreamError::from_status(Upstream::Kratos, StatusCode::BAD_REQUEST);
        assert_eq!(
            (error.upstream().log_name(), error.failure()),
            ("kratos", "refused")
        );
    }

    #[test]
    fn statuses_are_classified_for_the_user() {
        let class = |s: u16| {
            UpstreamError::from_status(Upstream::Hydra, StatusCode::from_u16(s).expect("status"))
        };
        assert!(matches!(class(404), UpstreamError::NotFound { .. }));
        assert!(matches!(class(401), UpstreamError::Expired { .. }));
        assert!(matches!(class(410), UpstreamError::Expired { .. }));
        assert!(class(503).is_transient());
        assert!(class(429).is_transient());
        assert!(matches!(
            class(400),
            UpstreamError::Rejected { status: 400, .. }
        ));
    }
}
