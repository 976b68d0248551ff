//! What the AWS SDK clients of the functions run on: the functions' one reqwest client as the
//! SDK's HTTP client, a tokio sleep for its retries, and region and credentials from the
//! variables Lambda sets.
//!
//! The SDK's own HTTPS client is hyper with rustls on aws-lc, a second TLS stack and root store
//! next to reqwest's (aws-lc also seeds its generator from CPU jitter at the first handshake,
//! about 25 ms, docs/performance.md). Handing the SDK the reqwest client instead means one TLS
//! configuration (ring, compiled-in roots, `BRIDGE_CA_BUNDLE`), one connection pool and one
//! timeout for Kratos, Hydra and AWS alike. aws-config's provider chain is not used either: on
//! Lambda the role's credentials and the region are plain environment variables, so there is
//! nothing to discover at cold start (no profile files, no IMDS).

use std::fmt;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use crate::upstream::MAX_BODY_BYTES;

/// Headers whose values are credentials; marked sensitive so no debug output of a request shows
/// them.
const SECRET_HEADERS: [&str; 2] = ["authorization", "x-amz-security-token"];

/// The retry policy of every AWS call the functions make: two attempts, because one retry of a
/// transient failure (transport, 5xx, throttling) is what a user waiting on a redirect (or a cold
/// start) can afford, and a second failure becomes a "try again" page; the standard strategy
/// waits a random time up to 40 ms before the retry, long enough for a dropped keep-alive
/// connection or a throttling blip.
pub fn retry_config() -> aws_smithy_types::retry::RetryConfig {
    aws_smithy_types::retry::RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(40))
}

/// The SDK's HTTP client: each request goes out through the functions' shared reqwest client
/// (its TLS settings, pool and timeout), and each answer is read whole, bounded like every other
/// upstream answer.
#[derive(Clone)]
pub struct ReqwestHttpClient {
    http: reqwest::Client,
}

impl fmt::Debug for ReqwestHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReqwestHttpClient")
    }
}

impl ReqwestHttpClient {
    /// Wraps the client built by [`crate::upstream::build_http_client`].
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }
}

/// An AWS answer longer than [`MAX_BODY_BYTES`]: not read, reported as unreadable. No answer of
/// the operations the bridge calls comes close.
#[derive(Debug, thiserror::Error)]
#[error("the AWS answer is larger than {MAX_BODY_BYTES} bytes")]
pub struct AnswerTooLarge;

/// A request the client cannot send: a streaming body (the bridge's operations only have small
/// JSON bodies, held in memory) or a method, URL or header reqwest refuses.
#[derive(Debug, thiserror::Error)]
#[error("the AWS request cannot be sent: {0}")]
pub struct UnsendableRequest(&'static str);

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The SDK's connect/read timeouts are disabled in favour of the reqwest client's, which
        // apply to every upstream the same way.
        SharedHttpConnector::new(self.clone())
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("reqwest", None))
    }
}

impl HttpConnector for ReqwestHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move { send(&http, request).await })
    }
}

async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let request = to_reqwest(request)?;
    let response = http.execute(request).await.map_err(transport_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let too_large = |len: u64| len > MAX_BODY_BYTES as u64;
    if response.content_length().is_some_and(too_large) {
        return Err(ConnectorError::user(Box::new(AnswerTooLarge)));
    }
    let body = response.bytes().await.map_err(transport_error)?;
    if too_large(body.len() as u64) {
        return Err(ConnectorError::user(Box::new(AnswerTooLarge)));
    }
    let mut answer = http::Response::new(SdkBody::from(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    HttpResponse::try_from(answer).map_err(|error| ConnectorError::other(Box::new(error), None))
}

fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let unsendable = |reason| ConnectorError::user(Box::new(UnsendableRequest(reason)));
    let request = request
        .try_into_http1x()
        .map_err(|_| unsendable("not an HTTP/1.x request"))?;
    let (mut parts, body) = request.into_parts();
    let body = body
        .bytes()
        .map(Bytes::copy_from_slice)
        .ok_or_else(|| unsendable("streaming body"))?;
    for name in SECRET_HEADERS {
        if let Some(value) = parts.headers.get_mut(name) {
            value.set_sensitive(true);
        }
    }
    reqwest::Request::try_from(http::Request::from_parts(parts, body))
        .map_err(|_| unsendable("method, URL or header refused"))
}

/// Timeouts and connection failures are what the SDK's retry strategy retries; the message of a
/// reqwest error may contain the URL, which for AWS endpoints holds nothing secret.
fn transport_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(Box::new(error))
    } else {
        ConnectorError::io(Box::new(error))
    }
}

/// The SDK's retry pause on the tokio runtime the functions already run (the SDK's own tokio
/// support would bring tokio-util and file I/O along for this one function).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleep;

impl AsyncSleep for TokioSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(tokio::time::sleep(duration))
    }
}

/// Why the Lambda environment does not say where and as whom to call AWS.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LambdaEnvironmentError {
    /// A variable Lambda sets is missing or empty.
    #[error("environment variable {variable} is not set ({hint})")]
    Missing {
        /// The variable.
        variable: &'static str,
        /// What it is.
        hint: &'static str,
    },
    /// The region cannot be part of a host name.
    #[error("AWS_REGION is not a region name")]
    InvalidRegion,
    /// An endpoint override is not an absolute http(s) URL without query or fragment.
    #[error("{variable} is not a usable endpoint URL: {reason}")]
    InvalidEndpoint {
        /// The variable holding it.
        variable: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Region and credentials as Lambda provides them to a function: `AWS_REGION` (or
/// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for a role's
/// temporary credentials, `AWS_SESSION_TOKEN`.
#[derive(Clone)]
pub struct LambdaAwsEnvironment {
    /// The region the function runs in.
    pub region: String,
    /// The execution role's credentials.
    pub credentials: Credentials,
}

impl fmt::Debug for LambdaAwsEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaAwsEnvironment")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl LambdaAwsEnvironment {
    /// Reads the variables through `vars`, so tests need not touch the process environment.
    /// Empty values count as missing.
    pub fn from_lookup(
        vars: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LambdaEnvironmentError> {
        let env = |name: &str| vars(name).filter(|value| !value.trim().is_empty());
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or(LambdaEnvironmentError::Missing {
                variable: "AWS_REGION",
                hint: "the AWS region; Lambda sets it",
            })?;
        if !is_region_name(&region) {
            return Err(LambdaEnvironmentError::InvalidRegion);
        }
        let required = |variable: &'static str| {
            env(variable).ok_or(LambdaEnvironmentError::Missing {
                variable,
                hint: "AWS credentials; Lambda sets them from the execution role",
            })
        };
        let credentials = Credentials::new(
            required("AWS_ACCESS_KEY_ID")?,
            required("AWS_SECRET_ACCESS_KEY")?,
            env("AWS_SESSION_TOKEN"),
            None,
            "lambda-environment",
        );
        Ok(Self {
            region,
            credentials,
        })
    }
}

/// The endpoint of one AWS service from the standard variables the SDK's `aws-config` would
/// read: `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`), then `AWS_ENDPOINT_URL`,
/// both ignored when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`. `None` means the SDK resolves
/// the regional endpoint itself.
pub fn configured_endpoint(
    vars: &impl Fn(&str) -> Option<String>,
    service_variable: &'static str,
) -> Result<Option<String>, LambdaEnvironmentError> {
    let env = |name: &str| vars(name).filter(|value| !value.trim().is_empty());
    if env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    for variable in [service_variable, "AWS_ENDPOINT_URL"] {
        if let Some(value) = env(variable) {
            let value = value.trim();
            check_endpoint(value)
                .map_err(|reason| LambdaEnvironmentError::InvalidEndpoint { variable, reason })?;
            return Ok(Some(value.to_owned()));
        }
    }
    Ok(None)
}

/// Checks that an endpoint override is an absolute http(s) URL with a host and no query or
/// fragment, so a typo fails at cold start instead of on the first call.
pub fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(endpoint).map_err(|_| "not an absolute URL")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("scheme is not http or https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("query or fragment present");
    }
    Ok(())
}

/// Whether `region` looks like an AWS region name (lowercase letters, digits, `-`), so it can
/// go into a host name without changing which host it names.
pub fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// The [`AnswerTooLarge`] behind an SDK dispatch failure, if that is what it was.
pub fn is_answer_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<AnswerTooLarge>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn lambda_variables_are_required_and_named() {
        assert_eq!(
            LambdaAwsEnvironment::from_lookup(&lookup(&[])).map(|_| ()),
            Err(LambdaEnvironmentError::Missing {
                variable: "AWS_REGION",
                hint: "the AWS region; Lambda sets it"
            })
        );
        let error = LambdaAwsEnvironment::from_lookup(&lookup(&[("AWS_REGION", "eu-west-1")]))
            .expect_err("no credentials");
        assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
        assert_eq!(
            LambdaAwsEnvironment::from_lookup(&lookup(&[("AWS_REGION", "evil.com/")])).map(|_| ()),
            Err(LambdaEnvironmentError::InvalidRegion)
        );
        let environment = LambdaAwsEnvironment::from_lookup(&lookup(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]))
        .expect("environment");
        assert_eq!(environment.region, "eu-west-1");
        assert!(!format!("{environment:?}").contains("very-secret"));
    }

    #[test]
    fn endpoint_variables_follow_aws_config() {
        let service = "AWS_ENDPOINT_URL_DYNAMODB";
        assert_eq!(configured_endpoint(&lookup(&[]), service), Ok(None));
        assert_eq!(
            configured_endpoint(
                &lookup(&[
                    ("AWS_ENDPOINT_URL", "http://general:1"),
                    (service, "http://dynamo:2")
                ]),
                service
            ),
            Ok(Some("http://dynamo:2".to_owned()))
        );
        assert_eq!(
            configured_endpoint(
                &lookup(&[("AWS_ENDPOINT_URL", "http://general:1")]),
                service
            ),
            Ok(Some("http://general:1".to_owned()))
        );
        assert_eq!(
            configured_endpoint(
                &lookup(&[
                    (service, "http://dynamo:2"),
                    ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
                ]),
                service
            ),
            Ok(None)
        );
        for bad in ["not a url", "ftp://host/", "http://host/?q=1"] {
            assert!(
                configured_endpoint(&lookup(&[(service, bad)]), service).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn oversized_answers_are_recognised_through_the_sdk_error_chain() {
        let wrapped = ConnectorError::user(Box::new(AnswerTooLarge));
        assert!(is_answer_too_large(&wrapped));
        assert!(!is_answer_too_large(&UnsendableRequest("x")));
    }
}
