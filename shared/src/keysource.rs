//! Where the key set JSON comes from: inline in the environment for local runs, or AWS Secrets
//! Manager in deployments.
//!
//! Secrets Manager is called through the AWS SDK's client, built like the DynamoDB one (see
//! [`crate::aws_http`]): the functions' reqwest client, credentials from the Lambda environment,
//! the region of the secret's ARN, the standard retry strategy with two attempts. The call is
//! `GetSecretValue`, once per cold start.

use std::fmt;

use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{
    BehaviorVersion, IdentityCache, Region, StalledStreamProtectionConfig,
};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::aws_http::{
    self, LambdaAwsEnvironment, LambdaEnvironmentError, ReqwestHttpClient, TokioSleep,
};
use crate::keyset::{KeySet, KeySetError};

/// Env var holding the key set JSON itself (local runs; see `docs/design.md`).
pub const KEYSET_JSON_VAR: &str = "BRIDGE_KEYSET_JSON";
/// Env var holding the ARN (or name) of the Secrets Manager secret whose string is the key set.
pub const KEYSET_SECRET_ARN_VAR: &str = "BRIDGE_KEYSET_SECRET_ARN";

const SERVICE_NAME: &str = "secretsmanager";
/// The standard variable that points the SDK's Secrets Manager client elsewhere (an emulator).
const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_SECRETSMANAGER";

/// Why the key set could not be located or loaded.
///
/// Messages name variables, ARNs and AWS error types, never secret values or credentials.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    /// Neither source variable is set, so the functions would have no keys.
    #[error("set one of {KEYSET_JSON_VAR} or {KEYSET_SECRET_ARN_VAR}")]
    NotConfigured,
    /// Both source variables are set; refusing to guess which one the operator meant.
    #[error("set only one of {KEYSET_JSON_VAR} and {KEYSET_SECRET_ARN_VAR}, not both")]
    BothConfigured,
    /// A variable Lambda normally provides (credentials, region) is missing.
    #[error("environment variable {variable} is not set")]
    MissingEnvironment {
        /// The missing variable.
        variable: &'static str,
    },
    /// The Secrets Manager endpoint override or the region is unusable.
    #[error("Secrets Manager endpoint is invalid: {reason}")]
    InvalidEndpoint {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request could not be built or signed (bad credentials in the environment or a bug).
    #[error("signing the Secrets Manager request failed")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request did not complete (connection, TLS, timeout), retries included.
    #[error("calling Secrets Manager failed")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Secrets Manager answered with an error, e.g. `AccessDeniedException`.
    #[error("Secrets Manager refused GetSecretValue for {secret_id}: HTTP {status}, {error_type}")]
    Refused {
        /// The secret that was asked for.
        secret_id: String,
        /// HTTP status code.
        status: u16,
        /// The AWS error type, without its message.
        error_type: String,
    },
    /// The answer was not the expected JSON; its content is not echoed as it may hold the secret.
    #[error("Secrets Manager returned an unexpected response for {secret_id}")]
    UnexpectedResponse {
        /// The secret that was asked for.
        secret_id: String,
    },
    /// The secret is stored as binary; the key set must be a string secret.
    #[error("secret {secret_id} has no SecretString (binary secrets are not supported)")]
    NotAStringSecret {
        /// The secret that was asked for.
        secret_id: String,
    },
    /// The JSON was loaded but is not a valid key set.
    #[error("key set is invalid")]
    KeySet(#[from] KeySetError),
}

/// Where to load the key set from, decided once at cold start from the environment.
pub struct KeySource {
    origin: Origin,
}

enum Origin {
    Inline(String),
    SecretsManager(Box<SecretsManagerSecret>),
}

/// Everything needed to fetch one secret: its id, where to ask, and as whom.
struct SecretsManagerSecret {
    secret_id: String,
    region: String,
    credentials: Credentials,
    /// `None`: the SDK's regional endpoint.
    endpoint: Option<String>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Inline(_) => f.write_str("KeySource::Inline([redacted])"),
            Origin::SecretsManager(secret) => f
                .debug_struct("KeySource::SecretsManager")
                .field("secret_id", &secret.secret_id)
                .field("region", &secret.region)
                .field("endpoint", &secret.endpoint)
                .finish_non_exhaustive(),
        }
    }
}

impl KeySource {
    /// Reads the process environment; see [`KeySource::from_vars`].
    pub fn from_env() -> Result<Self, KeySourceError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Decides the source from variables looked up through `vars`, so tests need not touch the
    /// process environment. Exactly one of [`KEYSET_JSON_VAR`] and [`KEYSET_SECRET_ARN_VAR`] must
    /// be non-empty; for Secrets Manager the Lambda credentials (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`), `AWS_REGION` (unless the ARN
    /// names one) and `AWS_ENDPOINT_URL_SECRETSMANAGER` / `AWS_ENDPOINT_URL` are read now too,
    /// so a misconfigured function fails at cold start.
    pub fn from_vars(vars: impl Fn(&str) -> Option<String>) -> Result<Self, KeySourceError> {
        let non_empty = |name: &str| vars(name).filter(|value| !value.trim().is_empty());
        let inline = non_empty(KEYSET_JSON_VAR);
        let secret_id = non_empty(KEYSET_SECRET_ARN_VAR);
        let origin = match (inline, secret_id) {
            (Some(_), Some(_)) => return Err(KeySourceError::BothConfigured),
            (None, None) => return Err(KeySourceError::NotConfigured),
            (Some(json), None) => Origin::Inline(json),
            (None, Some(secret_id)) => {
                let secret_id = secret_id.trim().to_owned();
                // The ARN's region wins, so a secret in another region is fetched from there;
                // the function's own region is then not needed.
                let arn_region = arn_region(&secret_id).map(str::to_owned);
                let lookup = |name: &str| match (name, &arn_region) {
                    ("AWS_REGION", Some(region)) => Some(region.clone()),
                    _ => vars(name),
                };
                let environment =
                    LambdaAwsEnvironment::from_lookup(&lookup).map_err(source_error)?;
                let endpoint = aws_http::configured_endpoint(&vars, ENDPOINT_VARIABLE)
                    .map_err(source_error)?;
                Origin::SecretsManager(Box::new(SecretsManagerSecret {
                    secret_id,
                    region: environment.region,
                    credentials: environment.credentials,
                    endpoint,
                }))
            }
        };
        Ok(Self { origin })
    }

    /// Sends Secrets Manager requests to `endpoint` instead of the regional AWS endpoint, for
    /// tests and local emulators. Has no effect on an inline source.
    pub fn with_secrets_manager_endpoint(mut self, endpoint: &str) -> Result<Self, KeySourceError> {
        aws_http::check_endpoint(endpoint)
            .map_err(|reason| KeySourceError::InvalidEndpoint { reason })?;
        if let Origin::SecretsManager(secret) = &mut self.origin {
            secret.endpoint = Some(endpoint.to_owned());
        }
        Ok(self)
    }

    /// Loads and validates the key set. `http` is the caller's shared client, whose timeouts and
    /// TLS roots apply to the Secrets Manager call.
    pub async fn load(&self, http: &reqwest::Client) -> Result<KeySet, KeySourceError> {
        match &self.origin {
            Origin::Inline(json) => Ok(KeySet::from_json(json)?),
            Origin::SecretsManager(secret) => {
                let json = secret.fetch(http).await?;
                Ok(KeySet::from_json(&json)?)
            }
        }
    }
}

fn source_error(error: LambdaEnvironmentError) -> KeySourceError {
    match error {
        LambdaEnvironmentError::Missing { variable, .. } => {
            KeySourceError::MissingEnvironment { variable }
        }
        LambdaEnvironmentError::InvalidRegion => KeySourceError::InvalidEndpoint {
            reason: "the region is not usable in a host name",
        },
        LambdaEnvironmentError::InvalidEndpoint { reason, .. } => {
            KeySourceError::InvalidEndpoint { reason }
        }
    }
}

/// The region of a Secrets Manager ARN, so a secret in another region is fetched from that
/// region. `None` for plain secret names.
fn arn_region(secret_id: &str) -> Option<&str> {
    let mut parts = secret_id.trim().splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(SERVICE_NAME), Some(region)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    aws_http::is_region_name(region).then_some(region)
}

impl SecretsManagerSecret {
    fn client(&self, http: &reqwest::Client) -> aws_sdk_secretsmanager::Client {
        let mut config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials.clone())
            .identity_cache(IdentityCache::no_cache())
            .http_client(ReqwestHttpClient::new(http.clone()))
            .sleep_impl(TokioSleep)
            .retry_config(crate::aws_http::retry_config())
            .timeout_config(TimeoutConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        config.set_endpoint_url(self.endpoint.clone());
        aws_sdk_secretsmanager::Client::from_conf(config.build())
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<String, KeySourceError> {
        tracing::debug!(secret_id = %self.secret_id, "loading key set from Secrets Manager");
        let unexpected = || KeySourceError::UnexpectedResponse {
            secret_id: self.secret_id.clone(),
        };
        let output = self
            .client(http)
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|error| match error {
                SdkError::ConstructionFailure(_) => KeySourceError::Signing(error.into()),
                // A 200 whose body is not GetSecretValue's answer.
                SdkError::ServiceError(ref service) if service.raw().status().is_success() => {
                    unexpected()
                }
                SdkError::ServiceError(ref service) => KeySourceError::Refused {
                    secret_id: self.secret_id.clone(),
                    status: service.raw().status().as_u16(),
                    error_type: service.err().code().unwrap_or("unknown error").to_owned(),
                },
                SdkError::DispatchFailure(ref failure)
                    if failure
                        .as_connector_error()
                        .is_some_and(|e| aws_http::is_answer_too_large(e)) =>
                {
                    unexpected()
                }
                SdkError::ResponseError(_) => unexpected(),
                _ => KeySourceError::Transport(error.into()),
            })?;
        output
            .secret_string
            .ok_or_else(|| KeySourceError::NotAStringSecret {
                secret_id: self.secret_id.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::tests::test_secret;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bridge-keyset-AbCdEf";
    const ACCESS_KEY: &str = "AKIDEXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION_TOKEN: &str = "session-token-example";

    fn lambda_vars(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut vars: HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        for (name, value) in extra {
            vars.insert((*name).to_owned(), (*value).to_owned());
        }
        move |name| vars.get(name).cloned()
    }

    fn keyset_json() -> String {
        format!(
            r#"{{"current":"k1","keys":[{{"kid":"k1","secret":"{}"}}]}}"#,
            test_secret(1)
        )
    }

    #[test]
    fn exactly_one_source_must_be_configured() {
        assert!(matches!(
            KeySource::from_vars(lambda_vars(&[])),
            Err(KeySourceError::NotConfigured)
        ));
        assert!(matches!(
            KeySource::from_vars(lambda_vars(&[(KEYSET_JSON_VAR, " ")])),
            Err(KeySourceError::NotConfigured)
        ));
        assert!(matches!(
            KeySource::from_vars(lambda_vars(&[
                (KEYSET_JSON_VAR, "{}"),
                (KEYSET_SECRET_ARN_VAR, ARN)
            ])),
            Err(KeySourceError::BothConfigured)
        ));
    }

    #[test]
    fn secrets_manager_needs_lambda_credentials() {
        let vars = |name: &str| (name == KEYSET_SECRET_ARN_VAR).then(|| ARN.to_owned());
        assert!(matches!(
            KeySource::from_vars(vars),
            Err(KeySourceError::MissingEnvironment {
                variable: "AWS_ACCESS_KEY_ID"
            })
        ));
    }

    #[test]
    fn region_and_endpoint_follow_the_arn() {
        let source = KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, ARN)])).unwrap();
        let Origin::SecretsManager(secret) = &source.origin else {
            panic!("expected Secrets Manager");
        };
        assert_eq!(secret.region, "eu-west-1");
        assert_eq!(secret.endpoint, None);

        let by_name =
            KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, "bridge-keyset")])).unwrap();
        let Origin::SecretsManager(secret) = &by_name.origin else {
            panic!("expected Secrets Manager");
        };
        assert_eq!(secret.region, "us-east-1");

        let china = KeySource::from_vars(lambda_vars(&[(
            KEYSET_SECRET_ARN_VAR,
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:k",
        )]))
        .unwrap();
        let Origin::SecretsManager(secret) = &china.origin else {
            panic!("expected Secrets Manager");
        };
        assert_eq!(secret.region, "cn-north-1");

        let emulated = KeySource::from_vars(lambda_vars(&[
            (KEYSET_SECRET_ARN_VAR, ARN),
            ("AWS_ENDPOINT_URL_SECRETSMANAGER", "http://127.0.0.1:4566"),
        ]))
        .unwrap();
        let Origin::SecretsManager(secret) = &emulated.origin else {
            panic!("expected Secrets Manager");
        };
        assert_eq!(secret.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn debug_hides_inline_json_and_credentials() {
        let inline =
            KeySource::from_vars(lambda_vars(&[(KEYSET_JSON_VAR, &keyset_json())])).unwrap();
        let remote = KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, ARN)])).unwrap();
        let debug = format!("{inline:?} {remote:?}");
        assert!(!debug.contains(&test_secret(1)));
        assert!(!debug.contains(SECRET_KEY));
        assert!(!debug.contains(SESSION_TOKEN));
        assert!(debug.contains(ARN));
    }

    #[test]
    fn endpoint_override_is_validated() {
        let source = || KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, ARN)])).unwrap();
        for bad in ["not a url", "ftp://host/", "http://host/?q=1", "/relative"] {
            assert!(
                matches!(
                    source().with_secrets_manager_endpoint(bad),
                    Err(KeySourceError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
        assert!(source()
            .with_secrets_manager_endpoint("http://127.0.0.1:1234")
            .is_ok());
    }

    #[tokio::test]
    async fn inline_source_parses_the_json() {
        let source =
            KeySource::from_vars(lambda_vars(&[(KEYSET_JSON_VAR, &keyset_json())])).unwrap();
        let keys = source.load(&crate::upstream::test_client()).await.unwrap();
        assert_eq!(keys.current().kid(), "k1");

        let broken = KeySource::from_vars(lambda_vars(&[(KEYSET_JSON_VAR, "{")])).unwrap();
        assert!(matches!(
            broken.load(&crate::upstream::test_client()).await,
            Err(KeySourceError::KeySet(KeySetError::InvalidJson { .. }))
        ));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Recomputes the SigV4 signature of a received request from scratch (independently of
    /// aws-sigv4), which proves the headers and body reqwest sent are the ones that were signed.
    fn assert_valid_sigv4(request: &wiremock::Request, region: &str) {
        let header_text = |name: &str| {
            request
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("missing header {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let authorization = header_text("authorization");
        let amz_date = header_text("x-amz-date");
        let date = &amz_date[..8];
        let scope = format!("{date}/{region}/secretsmanager/aws4_request");
        let (credential_part, rest) = authorization
            .strip_prefix("AWS4-HMAC-SHA256 Credential=")
            .unwrap()
            .split_once(", SignedHeaders=")
            .unwrap();
        assert_eq!(credential_part, format!("{ACCESS_KEY}/{scope}"));
        let (signed_headers, signature) = rest.split_once(", Signature=").unwrap();
        for required in [
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-target",
        ] {
            assert!(
                signed_headers.split(';').any(|name| name == required),
                "{required} not signed: {signed_headers}"
            );
        }
        let canonical_headers: String = signed_headers
            .split(';')
            .map(|name| format!("{name}:{}\n", header_text(name).trim()))
            .collect();
        let canonical_request = format!(
            "POST\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
            request.url.path(),
            hex(&Sha256::digest(&request.body))
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date);
        for part in [region, "secretsmanager", "aws4_request"] {
            key = hmac(&key, part);
        }
        assert_eq!(signature, hex(&hmac(&key, &string_to_sign)));
    }

    #[tokio::test]
    async fn fetches_the_secret_with_a_sigv4_signed_request() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/"))
            .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
            .and(header("content-type", "application/x-amz-json-1.1"))
            .and(header("x-amz-security-token", SESSION_TOKEN))
            .and(body_json(serde_json::json!({ "SecretId": ARN })))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "ARN": ARN,
                "Name": "bridge-keyset",
                "SecretString": keyset_json(),
                "VersionId": "v1",
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1.7e9
            })))
            .expect(1)
            .mount(&server)
            .await;

        let source = KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, ARN)]))
            .unwrap()
            .with_secrets_manager_endpoint(&server.uri())
            .unwrap();
        let keys = source.load(&crate::upstream::test_client()).await.unwrap();
        assert_eq!(keys.current().kid(), "k1");

        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1);
        assert_valid_sigv4(&received[0], "eu-west-1");
        let amz_date = received[0]
            .headers
            .get("x-amz-date")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(amz_date.len(), 16, "{amz_date}");
    }

    #[tokio::test]
    async fn aws_errors_are_reported_by_type_only() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "__type": "ResourceNotFoundException",
                "message": "Secrets Manager can't find the specified secret."
            })))
            .mount(&server)
            .await;
        let source = KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, ARN)]))
            .unwrap()
            .with_secrets_manager_endpoint(&server.uri())
            .unwrap();
        let error = source
            .load(&crate::upstream::test_client())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, KeySourceError::Refused { status: 400, error_type, .. } if error_type == "ResourceNotFoundException"),
            "{error:?}"
        );
        assert!(error.to_string().contains(ARN));
    }

    #[tokio::test]
    async fn binary_secrets_and_garbage_are_refused() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"ARN": ARN, "SecretBinary": "AAAA"})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(format!("oops {}", test_secret(1))),
            )
            .mount(&server)
            .await;
        let source = KeySource::from_vars(lambda_vars(&[(KEYSET_SECRET_ARN_VAR, ARN)]))
            .unwrap()
            .with_secrets_manager_endpoint(&server.uri())
            .unwrap();
        let http = crate::upstream::test_client();
        assert!(matches!(
            source.load(&http).await,
            Err(KeySourceError::NotAStringSecret { .. })
        ));
        let error = source.load(&http).await.unwrap_err();
        assert!(matches!(error, KeySourceError::UnexpectedResponse { .. }));
        assert!(!error.to_string().contains(&test_secret(1)));
    }
}
