//! The DynamoDB adapter of the replay store.
//!
//! Claims are one conditional `PutItem` that returns the old item when the condition fails, so
//! a race between two browsers (or a double click) has exactly one winner and the loser learns
//! why without a second read. Expiry is checked in the condition itself: DynamoDB's TTL sweep
//! runs late (moto's never runs), so the code must not rely on it.
//!
//! Calls are hand-signed AWS JSON requests over the functions' shared HTTP client (see
//! [`crate::aws_json`] for why not the SDK). Every write here may be sent twice: the claim and
//! the completion carry the attempt id, so a retry after a lost answer recognises its own
//! earlier write.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::attempts::AttemptCounter;
use crate::aws_json::{self, AwsCallError, AwsJsonEndpoint, DYNAMODB};
use crate::config::{Config, ConfigError};
use crate::replay::{Claim, ClaimOutcome, ReplayStore};
use crate::upstream::{Upstream, UpstreamError};

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
/// Pause before the one retry of a transient failure: long enough for a dropped keep-alive
/// connection or a throttling blip, short next to the user's wait.
const RETRY_PAUSE: Duration = Duration::from_millis(40);

/// [`ReplayStore`] on a DynamoDB table with partition key `pk` and TTL attribute `expires_at`.
#[derive(Debug, Clone)]
pub struct DynamoReplayStore {
    http: reqwest::Client,
    endpoint: AwsJsonEndpoint,
    table: String,
}

/// How DynamoDB answered a call that reached it.
enum Answer {
    /// 2xx, with its body.
    Done(Bytes),
    /// A 4xx refusal that retrying will not change, with its error type and body.
    Refused { error_type: String, body: Bytes },
}

impl DynamoReplayStore {
    /// Builds the store from the Lambda environment: credentials and region come from the
    /// variables Lambda sets, so there is no provider chain, profile file or IMDS lookup at
    /// cold start. `http` is the functions' shared client (timeouts, TLS roots).
    pub fn from_config(config: &Config, http: reqwest::Client) -> Result<Self, ConfigError> {
        Self::from_lookup(config, http, |name| std::env::var(name).ok())
    }

    /// Like [`from_config`](Self::from_config) with the AWS variables read through `vars`, so
    /// tests need not touch the process environment.
    pub fn from_lookup(
        config: &Config,
        http: reqwest::Client,
        vars: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let table = config.replay_table.clone().ok_or(ConfigError::Missing {
            name: "BRIDGE_REPLAY_TABLE",
            hint: "the DynamoDB replay table name",
        })?;
        let env = |name: &'static str| vars(name).filter(|v| !v.trim().is_empty());
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError::Missing {
                name: "AWS_REGION",
                hint: "the AWS region of the replay table (Lambda sets it)",
            })?;
        let credentials_hint = "AWS credentials (Lambda sets them from the execution role)";
        let access_key = env("AWS_ACCESS_KEY_ID").ok_or(ConfigError::Missing {
            name: "AWS_ACCESS_KEY_ID",
            hint: credentials_hint,
        })?;
        let secret_key = env("AWS_SECRET_ACCESS_KEY").ok_or(ConfigError::Missing {
            name: "AWS_SECRET_ACCESS_KEY",
            hint: credentials_hint,
        })?;
        let credentials = Credentials::new(
            access_key,
            secret_key,
            env("AWS_SESSION_TOKEN"),
            None,
            "lambda-environment",
        );
        let url = match &config.dynamodb_endpoint {
            Some(endpoint) => endpoint.clone(),
            None => aws_json::regional_url(DYNAMODB, &region).ok_or(ConfigError::Invalid {
                name: "AWS_REGION",
                reason: "not usable in a host name".to_owned(),
            })?,
        };
        Ok(Self {
            http,
            endpoint: AwsJsonEndpoint::new(DYNAMODB, region, url, credentials),
            table,
        })
    }

    /// Sends one operation, retrying once when the failure is transient (transport, 5xx,
    /// throttling). Refusals come back as [`Answer::Refused`] for the caller to interpret.
    async fn call(&self, operation: &str, input: &Value) -> Result<Answer, UpstreamError> {
        // Bytes: the one retry re-sends the same buffer without copying it.
        let body =
            Bytes::from(
                serde_json::to_vec(input).map_err(|_| UpstreamError::Malformed {
                    upstream: Upstream::ReplayStore,
                })?,
            );
        match self.call_once(operation, body.clone()).await {
            Err(error) if error.is_transient() => {
                tracing::debug!(operation, error = %error, "retrying a DynamoDB call once");
                tokio::time::sleep(RETRY_PAUSE).await;
                self.call_once(operation, body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, operation: &str, body: Bytes) -> Result<Answer, UpstreamError> {
        let upstream = Upstream::ReplayStore;
        let answer = self
            .endpoint
            .call(&self.http, operation, body, SystemTime::now())
            .await
            .map_err(|error| match error {
                AwsCallError::Signing(_) => UpstreamError::Rejected {
                    upstream,
                    status: 0,
                },
                AwsCallError::Transport(e) => UpstreamError::from_transport(upstream, &e),
                AwsCallError::TooLarge => UpstreamError::Malformed { upstream },
            })?;
        let (status, body) = (answer.status, answer.body);
        if status.is_success() {
            return Ok(Answer::Done(body));
        }
        let error_type = aws_json::error_type(&body).unwrap_or_else(|| "unknown error".to_owned());
        if status.is_server_error() || status.as_u16() == 429 || is_throttling(&error_type) {
            return Err(UpstreamError::Transient {
                upstream,
                detail: error_type,
            });
        }
        Ok(Answer::Refused { error_type, body })
    }

    /// Checks that the table exists with the key schema the code uses and TTL enabled on
    /// `expires_at`, for the configuration doctor. The error says what to fix.
    pub async fn verify_table(&self) -> Result<(), String> {
        let table = &self.table;
        let described = match self
            .call("DescribeTable", &json!({ "TableName": table }))
            .await
        {
            Ok(Answer::Done(body)) => body,
            Ok(Answer::Refused { error_type, .. }) if error_type == "ResourceNotFoundException" => {
                return Err(format!("table {table} does not exist"));
            }
            Ok(Answer::Refused { error_type, .. }) => {
                return Err(format!("cannot describe table {table}: {error_type}"));
            }
            Err(error) => return Err(format!("cannot describe table {table}: {error}")),
        };
        let described: Value = serde_json::from_slice(&described)
            .map_err(|_| "DescribeTable returned something unreadable".to_owned())?;
        let description = &described["Table"];
        let key_ok = description["KeySchema"].as_array().is_some_and(|keys| {
            keys.len() == 1 && keys[0]["AttributeName"] == "pk" && keys[0]["KeyType"] == "HASH"
        });
        let pk_is_string = description["AttributeDefinitions"]
            .as_array()
            .is_some_and(|defs| {
                defs.iter()
                    .any(|d| d["AttributeName"] == "pk" && d["AttributeType"] == "S")
            });
        if !key_ok || !pk_is_string {
            return Err(format!(
                "table {table} must have exactly one key: pk (S, HASH)"
            ));
        }
        let ttl = match self
            .call("DescribeTimeToLive", &json!({ "TableName": table }))
            .await
        {
            Ok(Answer::Done(body)) => serde_json::from_slice::<Value>(&body)
                .map_err(|_| "DescribeTimeToLive returned something unreadable".to_owned())?,
            Ok(Answer::Refused { error_type, .. }) => {
                return Err(format!("cannot read the TTL setting: {error_type}"))
            }
            Err(error) => return Err(format!("cannot read the TTL setting: {error}")),
        };
        let ttl = &ttl["TimeToLiveDescription"];
        let enabled = ttl["AttributeName"] == "expires_at"
            && matches!(
                ttl["TimeToLiveStatus"].as_str(),
                Some("ENABLED") | Some("ENABLING")
            );
        if !enabled {
            return Err(format!(
                "TTL is not enabled on attribute expires_at of table {table}"
            ));
        }
        Ok(())
    }
}

/// DynamoDB's refusals that mean "slow down", which a retry a moment later can pass.
fn is_throttling(error_type: &str) -> bool {
    matches!(
        error_type,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "LimitExceededException"
            | "TransactionConflictException"
    )
}

/// A refusal that the caller did not expect: the table or the role is misconfigured, or the
/// state changed under us. Treated as "try again" so the user keeps a way forward; the type
/// (never the message, which may echo input) goes to the log.
fn unexpected(error_type: String) -> UpstreamError {
    UpstreamError::Transient {
        upstream: Upstream::ReplayStore,
        detail: error_type,
    }
}

fn string(value: &str) -> Value {
    json!({ "S": value })
}

fn number(value: u64) -> Value {
    json!({ "N": value.to_string() })
}

/// The old item DynamoDB returns with a failed condition (`ReturnValuesOnConditionCheckFailure`).
fn old_item(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body)
        .map(|mut error| error["Item"].take())
        .unwrap_or(Value::Null)
}

fn attribute<'a>(item: &'a Value, name: &str) -> Option<&'a str> {
    item[name]["S"].as_str()
}

#[async_trait]
impl ReplayStore for DynamoReplayStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        let input = json!({
            "TableName": self.table,
            "Item": {
                "pk": string(&claim.key),
                "state": string(IN_PROGRESS),
                "session_hash": string(&claim.session_hash),
                "attempt": string(&claim.attempt),
                "expires_at": number(claim.token_expires_at),
                "claim_expires_at": number(claim.in_progress_until),
            },
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now \
                 OR (#state = :in_progress AND claim_expires_at < :now) \
                 OR (#state = :in_progress AND attempt = :attempt)",
            "ExpressionAttributeNames": { "#state": "state" },
            "ExpressionAttributeValues": {
                ":now": number(claim.now),
                ":in_progress": string(IN_PROGRESS),
                ":attempt": string(&claim.attempt),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        });
        match self.call("PutItem", &input).await? {
            Answer::Done(_) => Ok(ClaimOutcome::Claimed),
            Answer::Refused { error_type, body } if error_type == CONDITION_FAILED => {
                let old = old_item(&body);
                let session_hash = attribute(&old, "session_hash")
                    .unwrap_or_default()
                    .to_owned();
                Ok(
                    match (attribute(&old, "state"), attribute(&old, "redirect_to")) {
                        (Some(COMPLETED), Some(redirect_to)) => ClaimOutcome::Completed {
                            redirect_to: redirect_to.to_owned(),
                            session_hash,
                        },
                        _ => ClaimOutcome::InProgress { session_hash },
                    },
                )
            }
            Answer::Refused { error_type, .. } => Err(unexpected(error_type)),
        }
    }

    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        let input = json!({
            "TableName": self.table,
            "Key": { "pk": string(&claim.key) },
            "UpdateExpression": "SET #state = :completed, redirect_to = :redirect_to",
            "ConditionExpression": "#state = :in_progress AND attempt = :attempt",
            "ExpressionAttributeNames": { "#state": "state" },
            "ExpressionAttributeValues": {
                ":completed": string(COMPLETED),
                ":in_progress": string(IN_PROGRESS),
                ":attempt": string(&claim.attempt),
                ":redirect_to": string(redirect_to),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        });
        match self.call("UpdateItem", &input).await? {
            Answer::Done(_) => Ok(()),
            Answer::Refused { error_type, body } if error_type == CONDITION_FAILED => {
                // Our own earlier write whose answer was lost: already completed by us.
                let old = old_item(&body);
                let ours = attribute(&old, "state") == Some(COMPLETED)
                    && attribute(&old, "attempt") == Some(claim.attempt.as_str());
                if ours {
                    Ok(())
                } else {
                    Err(unexpected(error_type))
                }
            }
            Answer::Refused { error_type, .. } => Err(unexpected(error_type)),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        let input = json!({
            "TableName": self.table,
            "Key": { "pk": string(&claim.key) },
            "ConditionExpression": "#state = :in_progress AND attempt = :attempt",
            "ExpressionAttributeNames": { "#state": "state" },
            "ExpressionAttributeValues": {
                ":in_progress": string(IN_PROGRESS),
                ":attempt": string(&claim.attempt),
            },
        });
        match self.call("DeleteItem", &input).await? {
            Answer::Done(_) => Ok(()),
            // Someone else's claim (or a completed one) is not ours to release.
            Answer::Refused { error_type, .. } if error_type == CONDITION_FAILED => Ok(()),
            Answer::Refused { error_type, .. } => Err(unexpected(error_type)),
        }
    }
}

#[async_trait]
impl AttemptCounter for DynamoReplayStore {
    async fn count_attempt(&self, key: &str, expires_at: u64) -> Result<u64, UpstreamError> {
        let input = json!({
            "TableName": self.table,
            "Key": { "pk": string(key) },
            "UpdateExpression": "ADD attempts :one SET expires_at = :expires_at",
            "ExpressionAttributeValues": {
                ":one": number(1),
                ":expires_at": number(expires_at),
            },
            "ReturnValues": "UPDATED_NEW",
        });
        match self.call("UpdateItem", &input).await? {
            Answer::Done(body) => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|answer| answer["Attributes"]["attempts"]["N"].as_str()?.parse().ok())
                .ok_or(UpstreamError::Malformed {
                    upstream: Upstream::ReplayStore,
                }),
            Answer::Refused { error_type, .. } => Err(unexpected(error_type)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::base_env;
    use crate::upstream::MAX_BODY_BYTES;
    use wiremock::matchers::{header, method};
    use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

    fn store_at(server: &MockServer) -> DynamoReplayStore {
        let mut vars = base_env();
        vars.insert("BRIDGE_DYNAMODB_ENDPOINT", server.uri());
        let config = Config::from_lookup(
            |name| vars.get(name).cloned(),
            crate::config::Needs { replay_table: true },
        )
        .expect("config");
        let aws = |name: &str| match name {
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            _ => None,
        };
        DynamoReplayStore::from_lookup(&config, crate::upstream::test_client(), aws).expect("store")
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
    async fn an_attempt_is_one_update_that_returns_the_new_count() {
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
            .count_attempt("attempts#device#browser#h#1", 1_800)
            .await
            .expect("count");
        assert_eq!(count, 3);
        let sent: Value =
            serde_json::from_slice(&server.received_requests().await.expect("requests")[0].body)
                .expect("json");
        assert_eq!(
            sent["UpdateExpression"],
            "ADD attempts :one SET expires_at = :expires_at"
        );
        assert_eq!(
            sent["ExpressionAttributeValues"][":expires_at"],
            json!({ "N": "1800" })
        );
        assert_eq!(sent["ReturnValues"], "UPDATED_NEW");
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
}
