//! SigV4-signed requests to AWS services that speak the AWS JSON protocol (Secrets Manager,
//! DynamoDB), sent with the one HTTP client the functions already have.
//!
//! The AWS SDK would bring its own HTTP stack, TLS set-up, endpoint resolver and retry machinery
//! into every cold start (about 7 ms and 0.6 MB of zip for the return function, see
//! docs/performance.md) for the handful of calls the bridge makes. One signed POST per call is
//! all these APIs need: the operation goes in `x-amz-target`, its input is the JSON body.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::upstream::MAX_BODY_BYTES;

const TARGET_HEADER: &str = "x-amz-target";

/// An AWS API spoken over the JSON protocol: its signing name, content type and the prefix of
/// its `x-amz-target` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsJsonApi {
    /// SigV4 service name, also the first label of its regional host name.
    pub signing_name: &'static str,
    /// `application/x-amz-json-1.0` or `-1.1`, as the API defines.
    pub content_type: &'static str,
    /// Prefix of the `x-amz-target` header, e.g. `DynamoDB_20120810`.
    pub target_prefix: &'static str,
}

/// AWS Secrets Manager.
pub const SECRETS_MANAGER: AwsJsonApi = AwsJsonApi {
    signing_name: "secretsmanager",
    content_type: "application/x-amz-json-1.1",
    target_prefix: "secretsmanager",
};

/// Amazon DynamoDB.
pub const DYNAMODB: AwsJsonApi = AwsJsonApi {
    signing_name: "dynamodb",
    content_type: "application/x-amz-json-1.0",
    target_prefix: "DynamoDB_20120810",
};

/// Signing a request failed: a header value the signer or `http` refuses, which points at bad
/// credentials in the environment or a bug, never at the remote service.
#[derive(Debug, thiserror::Error)]
#[error("signing the AWS request failed")]
pub struct SigningError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl SigningError {
    fn from(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

/// Why a call produced no answer to read. Messages carry no URL, body or credential.
#[derive(Debug, thiserror::Error)]
pub enum AwsCallError {
    /// The request could not be signed.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The request did not complete (connection, TLS, timeout, body).
    #[error("the AWS call did not complete")]
    Transport(#[source] reqwest::Error),
    /// The answer is larger than any answer of these APIs can be; it is not read.
    #[error("the AWS answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// An answer of any status, read whole: callers decide what a status and an error type mean.
#[derive(Debug)]
pub struct AwsAnswer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

/// Where one AWS JSON API is called and with which identity; built once at cold start.
#[derive(Clone)]
pub struct AwsJsonEndpoint {
    api: AwsJsonApi,
    region: String,
    url: Url,
    credentials: Credentials,
}

impl fmt::Debug for AwsJsonEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsJsonEndpoint")
            .field("api", &self.api.signing_name)
            .field("region", &self.region)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl AwsJsonEndpoint {
    /// `url` is the service root (the regional endpoint or an emulator such as moto).
    pub fn new(api: AwsJsonApi, region: String, url: Url, credentials: Credentials) -> Self {
        Self {
            api,
            region,
            url,
            credentials,
        }
    }

    /// The same API and identity at another URL (an emulator, a test server).
    pub fn with_url(mut self, url: Url) -> Self {
        self.url = url;
        self
    }

    /// The URL requests go to, for diagnostics.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Signs and sends `operation` with `body` as of `now`, and reads the answer (bounded).
    pub async fn call(
        &self,
        http: &reqwest::Client,
        operation: &str,
        body: Bytes,
        now: SystemTime,
    ) -> Result<AwsAnswer, AwsCallError> {
        let request = self.signed_request(http, operation, body, now)?;
        let response = http
            .execute(request)
            .await
            .map_err(AwsCallError::Transport)?;
        let status = response.status();
        let too_large = |len: u64| len > MAX_BODY_BYTES as u64;
        if response.content_length().is_some_and(too_large) {
            return Err(AwsCallError::TooLarge);
        }
        let body = response.bytes().await.map_err(AwsCallError::Transport)?;
        if too_large(body.len() as u64) {
            return Err(AwsCallError::TooLarge);
        }
        Ok(AwsAnswer { status, body })
    }

    /// Builds the signed POST of `operation` with `body`. The signer sees exactly the method,
    /// URL, headers and body bytes that reqwest then sends; `host` is derived from the URL the
    /// same way by both (default ports omitted).
    fn signed_request(
        &self,
        http: &reqwest::Client,
        operation: &str,
        body: Bytes,
        now: SystemTime,
    ) -> Result<reqwest::Request, SigningError> {
        let target = format!("{}.{operation}", self.api.target_prefix);
        let identity = self.credentials.clone().into();
        let signing_params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.api.signing_name)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(SigningError::from)?
            .into();
        let signed_headers = [
            (CONTENT_TYPE.as_str(), self.api.content_type),
            (TARGET_HEADER, target.as_str()),
        ];
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            signed_headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .map_err(SigningError::from)?;
        let (instructions, _signature) = sign(signable, &signing_params)
            .map_err(SigningError::from)?
            .into_parts();

        let mut builder = http.post(self.url.clone());
        for (name, value) in signed_headers {
            builder = builder.header(name, value);
        }
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(SigningError::from)?;
            let mut value = HeaderValue::from_str(value).map_err(SigningError::from)?;
            // Keeps the signature and session token out of any header debug output.
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        builder.body(body).build().map_err(SigningError::from)
    }
}

#[derive(Deserialize)]
struct AwsErrorBody {
    #[serde(rename = "__type")]
    error_type: Option<String>,
}

/// The error type of an AWS JSON error answer (`AccessDeniedException`, ...), without the
/// namespace some endpoints prefix (`com.amazonaws.dynamodb.v20120810#...`). The message is not
/// returned: it may echo input.
pub fn error_type(body: &[u8]) -> Option<String> {
    let error_type = serde_json::from_slice::<AwsErrorBody>(body)
        .ok()?
        .error_type?;
    Some(match error_type.rsplit_once('#') {
        Some((_, short)) => short.to_owned(),
        None => error_type,
    })
}

/// Whether `region` looks like an AWS region name (lowercase letters, digits, `-`), so it can
/// go into a host name without changing which host it names.
pub fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// The regional endpoint of `api` in `region`, in the China partition where the region says so.
/// `None` when the region is not a plain region name.
pub fn regional_url(api: AwsJsonApi, region: &str) -> Option<Url> {
    if !is_region_name(region) {
        return None;
    }
    let dns_suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Url::parse(&format!(
        "https://{}.{region}.{dns_suffix}/",
        api.signing_name
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_lose_their_namespace() {
        assert_eq!(
            error_type(br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"x"}"#)
                .as_deref(),
            Some("ConditionalCheckFailedException")
        );
        assert_eq!(
            error_type(br#"{"__type":"AccessDeniedException"}"#).as_deref(),
            Some("AccessDeniedException")
        );
        assert_eq!(error_type(b"<html>"), None);
    }

    #[test]
    fn regional_urls_follow_the_partition() {
        assert_eq!(
            regional_url(DYNAMODB, "eu-west-1")
                .map(String::from)
                .as_deref(),
            Some("https://dynamodb.eu-west-1.amazonaws.com/")
        );
        assert_eq!(
            regional_url(DYNAMODB, "cn-north-1")
                .map(String::from)
                .as_deref(),
            Some("https://dynamodb.cn-north-1.amazonaws.com.cn/")
        );
    }

    #[test]
    fn requests_carry_target_content_type_and_signature() {
        let endpoint = AwsJsonEndpoint::new(
            DYNAMODB,
            "eu-west-1".to_owned(),
            Url::parse("http://127.0.0.1:5005/").expect("url"),
            Credentials::new("AKID", "secret", Some("token".to_owned()), None, "test"),
        );
        let request = endpoint
            .signed_request(
                &crate::upstream::test_client(),
                "PutItem",
                Bytes::from_static(b"{}"),
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            )
            .expect("signed");
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("x-amz-target"), "DynamoDB_20120810.PutItem");
        assert_eq!(header("content-type"), "application/x-amz-json-1.0");
        assert!(header("authorization").contains("/eu-west-1/dynamodb/aws4_request"));
        assert_eq!(header("x-amz-security-token"), "token");
        assert!(format!("{endpoint:?}").contains("dynamodb"));
        assert!(!format!("{endpoint:?}").contains("secret"));
    }
}
