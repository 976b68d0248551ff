//! The DynamoDB adapter of the replay store (and of the attempt counter).
//!
//! Claims are one conditional `PutItem` that returns the old item when the condition fails, so
//! a race between two browsers (or a double click) has exactly one winner and the loser learns
//! why without a second read. Expiry is checked in the condition itself: DynamoDB's TTL sweep
//! runs late (moto's never runs), so the code must not rely on it.
//!
//! Calls go through the AWS SDK's DynamoDB client, built lean (see [`crate::aws_http`]): the
//! functions' reqwest client as its HTTP client, credentials and region from the Lambda
//! environment, the standard retry strategy with two attempts. Every write here may be sent
//! twice: the claim and the completion carry the attempt id, so a retry after a lost answer
//! recognises its own earlier write.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, IdentityCache, Region, StalledStreamProtectionConfig,
};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeyType, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TimeToLiveStatus,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::attempts::AttemptCounter;
use crate::aws_http::{
    self, LambdaAwsEnvironment, LambdaEnvironmentError, ReqwestHttpClient, TokioSleep,
};
use crate::config::{Config, ConfigError};
use crate::replay::{Claim, ClaimOutcome, ReplayStore};
use crate::upstream::{Upstream, UpstreamError};

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
/// The standard variable that points the SDK's DynamoDB client elsewhere (a local emulator).
const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_DYNAMODB";

/// [`ReplayStore`] and [`AttemptCounter`] on a DynamoDB table with partition key `pk` and TTL
/// attribute `expires_at`.
#[derive(Debug, Clone)]
pub struct DynamoReplayStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoReplayStore {
    /// Builds the store from the Lambda environment: credentials and region come from the
    /// variables Lambda sets, so there is no provider chain, profile file or IMDS lookup at
    /// cold start. `http` is the functions' shared client (timeouts, TLS roots).
    pub fn from_config(config: &Config, http: reqwest::Client) -> Result<Self, ConfigError> {
        Self::from_lookup(config, http, |name| std::env::var(name).ok())
    }

    /// Like [`from_config`](Self::from_config) with the AWS variables read through `vars`, so
    /// tests need not touch the process environment. The endpoint is
    /// `BRIDGE_DYNAMODB_ENDPOINT` when set, else `AWS_ENDPOINT_URL_DYNAMODB` or
    /// `AWS_ENDPOINT_URL` as aws-config reads them, else the SDK's regional endpoint.
    pub fn from_lookup(
        config: &Config,
        http: reqwest::Client,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let table = config.replay_table.clone().ok_or(ConfigError::Missing {
            name: "BRIDGE_REPLAY_TABLE",
            hint: "the DynamoDB replay table name",
        })?;
        let environment = LambdaAwsEnvironment::from_lookup(&vars).map_err(config_error)?;
        let endpoint = match &config.dynamodb_endpoint {
            Some(endpoint) => Some(endpoint.to_string()),
            None => {
                aws_http::configured_endpoint(&vars, ENDPOINT_VARIABLE).map_err(config_error)?
            }
        };
        let mut sdk_config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(environment.region))
            .credentials_provider(environment.credentials)
            // Static credentials: nothing to cache or refresh.
            .identity_cache(IdentityCache::no_cache())
            .http_client(ReqwestHttpClient::new(http))
            .sleep_impl(TokioSleep)
            .retry_config(crate::aws_http::retry_config())
            // The reqwest client's timeout (BRIDGE_UPSTREAM_TIMEOUT_MS) bounds every attempt.
            .timeout_config(TimeoutConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        sdk_config.set_endpoint_url(endpoint);
        Ok(Self {
            client: aws_sdk_dynamodb::Client::from_conf(sdk_config.build()),
            table,
        })
    }

    /// Adds one to the counter `key` and returns the new count; the item expires (TTL) at
    /// `expires_at`. One `UpdateItem` with `ADD`, so concurrent attempts from several Lambda
    /// instances are all counted. The caller builds `key` (a hash plus its time window), so
    /// nothing identifying is stored. A retried write whose first answer was lost counts twice,
    /// which errs on the side of the limit.
    pub async fn count_attempt(&self, key: &str, expires_at: u64) -> Result<u64, UpstreamError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", string(key))
            .update_expression("ADD attempts :one SET expires_at = :expires_at")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":expires_at", number(expires_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(upstream_error)?;
        output
            .attributes()
            .and_then(|attributes| attributes.get("attempts"))
            .and_then(|count| count.as_n().ok())
            .and_then(|count| count.parse().ok())
            .ok_or(UpstreamError::Malformed {
                upstream: Upstream::ReplayStore,
            })
    }

    /// Checks that the table exists with the key schema the code uses and TTL enabled on
    /// `expires_at`, for the configuration doctor. The error says what to fix.
    pub async fn verify_table(&self) -> Result<(), String> {
        let table = &self.table;
        let described = match self.client.describe_table().table_name(table).send().await {
            Ok(described) => described,
            Err(error) => {
                return Err(match error.as_service_error() {
                    Some(DescribeTableError::ResourceNotFoundException(_)) => {
                        format!("table {table} does not exist")
                    }
                    _ => format!("cannot describe table {table}: {}", upstream_error(error)),
                })
            }
        };
        let description = described
            .table()
            .ok_or_else(|| "DescribeTable returned no table".to_owned())?;
        let keys = description.key_schema();
        let key_ok = keys.len() == 1
            && keys[0].attribute_name() == "pk"
            && *keys[0].key_type() == KeyType::Hash;
        let pk_is_string = description
            .attribute_definitions()
            .iter()
            .any(|d| d.attribute_name() == "pk" && *d.attribute_type() == ScalarAttributeType::S);
        if !key_ok || !pk_is_string {
            return Err(format!(
                "table {table} must have exactly one key: pk (S, HASH)"
            ));
        }
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|error| format!("cannot read the TTL setting: {}", upstream_error(error)))?;
        let enabled = ttl.time_to_live_description().is_some_and(|ttl| {
            ttl.attribute_name() == Some("expires_at")
                && matches!(
                    ttl.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if !enabled {
            return Err(format!(
                "TTL is not enabled on attribute expires_at of table {table}"
            ));
        }
        Ok(())
    }
}

fn config_error(error: LambdaEnvironmentError) -> ConfigError {
    match error {
        LambdaEnvironmentError::Missing { variable, hint } => ConfigError::Missing {
            name: variable,
            hint,
        },
        LambdaEnvironmentError::InvalidRegion => ConfigError::Invalid {
            name: "AWS_REGION",
            reason: "not usable in a host name".to_owned(),
        },
        LambdaEnvironmentError::InvalidEndpoint { variable, reason } => ConfigError::Invalid {
            name: variable,
            reason: reason.to_owned(),
        },
    }
}

/// Classifies what is left of a call after the SDK's retries. Refusals the caller did not
/// expect (the table or the role is misconfigured, or the state changed under us) are "try
/// again" so the user keeps a way forward; their error code (never the message, which may echo
/// input) goes to the log.
fn upstream_error<E: ProvideErrorMetadata>(error: SdkError<E, HttpResponse>) -> UpstreamError {
    let upstream = Upstream::ReplayStore;
    let transient = |detail: &str| UpstreamError::Transient {
        upstream,
        detail: detail.to_owned(),
    };
    match &error {
        // The request could not be built or signed: our bug or bad credentials, not the user's.
        SdkError::ConstructionFailure(_) => UpstreamError::Rejected {
            upstream,
            status: 0,
        },
        SdkError::TimeoutError(_) => transient("timeout"),
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(connector) if aws_http::is_answer_too_large(connector) => {
                UpstreamError::Malformed { upstream }
            }
            Some(connector) if connector.is_timeout() => transient("timeout"),
            Some(connector) if connector.is_io() => transient("connection failed"),
            _ => transient("transport error"),
        },
        SdkError::ResponseError(_) => UpstreamError::Malformed { upstream },
        SdkError::ServiceError(service) => {
            transient(service.err().code().unwrap_or("unknown error"))
        }
        _ => transient("unknown error"),
    }
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn attribute<'a>(item: Option<&'a Item>, name: &str) -> Option<&'a str> {
    item?.get(name)?.as_s().ok().map(String::as_str)
}

#[async_trait]
impl ReplayStore for DynamoReplayStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", string(&claim.key))
            .item("state", string(IN_PROGRESS))
            .item("session_hash", string(&claim.session_hash))
            .item("attempt", string(&claim.attempt))
            .item("expires_at", number(claim.token_expires_at))
            .item("claim_expires_at", number(claim.in_progress_until))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now \
                 OR (#state = :in_progress AND claim_expires_at < :now) \
                 OR (#state = :in_progress AND attempt = :attempt)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", number(claim.now))
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .expression_attribute_values(":attempt", string(&claim.attempt))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(ClaimOutcome::Claimed),
            Err(error) => error,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = error.as_service_error()
        else {
            return Err(upstream_error(error));
        };
        let old = failed.item();
        let session_hash = attribute(old, "session_hash")
            .unwrap_or_default()
            .to_owned();
        Ok(
            match (attribute(old, "state"), attribute(old, "redirect_to")) {
                (Some(COMPLETED), Some(redirect_to)) => ClaimOutcome::Completed {
                    redirect_to: redirect_to.to_owned(),
                    session_hash,
                },
                _ => ClaimOutcome::InProgress { session_hash },
            },
        )
    }

    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", string(&claim.key))
            .update_expression("SET #state = :completed, redirect_to = :redirect_to")
            .condition_expression("#state = :in_progress AND attempt = :attempt")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":completed", string(COMPLETED))
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .expression_attribute_values(":attempt", string(&claim.attempt))
            .expression_attribute_values(":redirect_to", string(redirect_to))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        if let Some(UpdateItemError::ConditionalCheckFailedException(failed)) =
            error.as_service_error()
        {
            // Our own earlier write whose answer was lost: already completed by us.
            let old = failed.item();
            if attribute(old, "state") == Some(COMPLETED)
                && attribute(old, "attempt") == Some(claim.attempt.as_str())
            {
                return Ok(());
            }
        }
        Err(upstream_error(error))
    }

    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", string(&claim.key))
            .condition_expression("#state = :in_progress AND attempt = :attempt")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .expression_attribute_values(":attempt", string(&claim.attempt))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's claim (or a completed one) is not ours to release.
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(upstream_error(error)),
        }
    }
}

#[async_trait]
impl AttemptCounter for DynamoReplayStore {
    async fn count_attempt(&self, key: &str, expires_at: u64) -> Result<u64, UpstreamError> {
        DynamoReplayStore::count_attempt(self, key, expires_at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::base_env;
    use crate::upstream::MAX_BODY_BYTES;
    use serde_json::{json, Value};
    use wiremock::matchers::{header, method};
    use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

    fn lambda_vars(name: &str) -> Option<String> {
        match name {
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            _ => None,
        }
    }

    fn store_at(server: &MockServer) -> DynamoReplayStore {
        let mut vars = base_env();
        vars.insert("BRIDGE_DYNAMODB_ENDPOINT", server.uri());
        let config = Config::from_lookup(
            |name| vars.get(name).cloned(),
            crate::config::Needs { replay_table: true },
        )
        .expect("config");
        DynamoReplayStore::from_lookup(&config, crate::upstream::test_client(), lambda_vars)
            .expect("store")
    }

    fn claim() -> Claim {
        Claim {
            key: "k".into(),
            session_hash: "s".into(),
            attempt: "a1".into(),
            token_expires_at: 2_000,
            in_progress_until: 1_030,
            now: 1_000,
        }
    }

    fn condition_failed(old: Value) -> ResponseTemplate {
        ResponseTemplate::new(400).set_body_json(json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message": "The conditional request failed",
            "Item": old,
        }))
    }

    #[test]
    fn missing_lambda_variables_are_named() {
        let vars = base_env();
        let config = Config::from_lookup(
            |name| vars.get(name).cloned(),
            crate::config::Needs { replay_table: true },
        )
        .expect("config");
        let error =
            DynamoReplayStore::from_lookup(&config, crate::upstream::test_client(), |_| None)
                .expect_err("no region");
        assert!(error.to_string().contains("AWS_REGION"), "{error}");
        let error =
            DynamoReplayStore::from_lookup(&config, crate::upstream::test_client(), |name| {
                (name == "AWS_REGION").then(|| "eu-west-1".to_owned())
            })
            .expect_err("no credentials");
        assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
    }

    #[tokio::test]
    async fn a_claim_is_one_conditional_put() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "DynamoDB_20120810.PutItem"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        let outcome = store_at(&server).claim(&claim()).await.expect("claim");
        assert_eq!(outcome, ClaimOutcome::Claimed);
        let sent: Value =
            serde_json::from_slice(&server.received_requests().await.expect("requests")[0].body)
                .expect("json");
        assert_eq!(sent["Item"]["expires_at"], json!({ "N": "2000" }));
        assert_eq!(sent["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    }

    #[tokio::test]
    async fn a_lost_race_reports_the_winner() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(condition_failed(json!({
                "state": { "S": "completed" },
                "redirect_to": { "S": "https://hydra/next" },
                "session_hash": { "S": "winner" },
            })))
            .mount(&server)
            .await;
        let outcome = store_at(&server).claim(&claim()).await.expect("claim");
        assert_eq!(
            outcome,
            ClaimOutcome::Completed {
                redirect_to: "https://hydra/next".into(),
                session_hash: "winner".into()
            }
        );
    }

    struct FailOnce(std::sync::atomic::AtomicUsize);

    impl Respond for FailOnce {
        fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
            if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                ResponseTemplate::new(400).set_body_json(json!({ "__type": "ThrottlingException" }))
            } else {
                ResponseTemplate::new(200).set_body_json(json!({}))
            }
        }
    }

    #[tokio::test]
    async fn throttling_is_retried_once() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(FailOnce(Default::default()))
            .expect(2)
            .mount(&server)
            .await;
        assert_eq!(
            store_at(&server).claim(&claim()).await.expect("claim"),
            ClaimOutcome::Claimed
        );
    }

    #[tokio::test]
    async fn outages_and_refusals_are_transient_for_the_user() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .expect(2)
            .mount(&server)
            .await;
        let error = store_at(&server).claim(&claim()).await.expect_err("down");
        assert!(error.is_transient());

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_json(json!({ "__type": "ResourceNotFoundException" })),
            )
            .expect(1)
            .mount(&server)
            .await;
        let error = store_at(&server)
            .claim(&claim())
            .await
            .expect_err("no table");
        assert!(error.to_string().contains("replay store"), "{error}");
    }

    #[tokio::test]
    async fn a_repeated_completion_of_our_own_claim_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(condition_failed(json!({
                "state": { "S": "completed" },
                "attempt": { "S": "a1" },
            })))
            .mount(&server)
            .await;
        store_at(&server)
            .complete(&claim(), "https://hydra/next")
            .await
            .expect("ours");

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(condition_failed(json!({
                "state": { "S": "in_progress" },
                "attempt": { "S": "someone-else" },
            })))
            .mount(&server)
            .await;
        assert!(store_at(&server)
            .complete(&claim(), "https://hydra/next")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn oversized_answers_are_not_read() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; MAX_BODY_BYTES + 1]))
            .mount(&server)
            .await;
        let error = store_at(&server)
            .claim(&claim())
            .await
            .expect_err("too big");
        assert!(matches!(error, UpstreamError::Malformed { .. }), "{error}");
    }

    #[tokio::test]
    async fn releasing_someone_elses_claim_is_a_no_op() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "DynamoDB_20120810.DeleteItem"))
            .respond_with(condition_failed(Value::Null))
            .mount(&server)
            .await;
        store_at(&server).release(&claim()).await.expect("no-op");
    }

    #[tokio::test]
    async fn the_standard_endpoint_variable_is_honoured() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "DynamoDB_20120810.DeleteItem"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        let vars = base_env();
        let config = Config::from_lookup(
            |name| vars.get(name).cloned(),
            crate::config::Needs { replay_table: true },
        )
        .expect("config");
        let uri = server.uri();
        let store =
            DynamoReplayStore::from_lookup(&config, crate::upstream::test_client(), |name| {
                if name == "AWS_ENDPOINT_URL_DYNAMODB" {
                    Some(uri.clone())
                } else {
                    lambda_vars(name)
                }
            })
            .expect("store");
        store.release(&claim()).await.expect("released");

        let error =
            DynamoReplayStore::from_lookup(&config, crate::upstream::test_client(), |name| {
                if name == "AWS_ENDPOINT_URL_DYNAMODB" {
                    Some("ftp://moto".to_owned())
                } else {
                    lambda_vars(name)
                }
            })
            .expect_err("bad endpoint");
        assert!(
            error.to_string().contains("AWS_ENDPOINT_URL_DYNAMODB"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_request_is_sigv4_signed_for_the_lambda_region() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
        store_at(&server).claim(&claim()).await.expect("claim");
        let request = &server.received_requests().await.expect("requests")[0];
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("authorization").starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
        assert!(header("authorization").contains("/eu-west-1/dynamodb/aws4_request"));
        assert_eq!(header("content-type"), "application/x-amz-json-1.0");
    }

    #[tokio::test]
    async fn an_attempt_is_one_unconditional_add() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header("x-amz-target", "DynamoDB_20120810.UpdateItem"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "Attributes": { "attempts": { "N": "3" } } })),
            )
            .expect(1)
            .mount(&server)
            .await;
        let count = store_at(&server)
            .count_attempt("h:window", 1_060)
            .await
            .expect("count");
        assert_eq!(count, 3);
        let sent: Value =
            serde_json::from_slice(&server.received_requests().await.expect("requests")[0].body)
                .expect("json");
        assert_eq!(sent["Key"], json!({ "pk": { "S": "h:window" } }));
        assert_eq!(
            sent["UpdateExpression"],
            "ADD attempts :one SET expires_at = :expires_at"
        );
        assert_eq!(
            sent["ExpressionAttributeValues"][":one"],
            json!({ "N": "1" })
        );
        assert_eq!(
            sent["ExpressionAttributeValues"][":expires_at"],
            json!({ "N": "1060" })
        );
        assert_eq!(sent["ReturnValues"], "UPDATED_NEW");
        assert!(sent.get("ConditionExpression").is_none());

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
        let counter: &dyn AttemptCounter = &store_at(&server);
        assert!(matches!(
            counter.count_attempt("h:window", 1_060).await,
            Err(UpstreamError::Malformed { .. })
        ));
    }
}
