//! The DynamoDB adapter of the replay store.
//!
//! Claims are one conditional `PutItem` that returns the old item when the condition fails, so
//! a race between two browsers (or a double click) has exactly one winner and the loser learns
//! why without a second read. Expiry is checked in the condition itself: DynamoDB's TTL sweep
//! runs late (moto's never runs), so the code must not rely on it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use crate::config::{Config, ConfigError};
use crate::replay::{Claim, ClaimOutcome, ReplayStore};
use crate::upstream::{Upstream, UpstreamError};

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

/// [`ReplayStore`] on a DynamoDB table with partition key `pk` and TTL attribute `expires_at`.
#[derive(Debug, Clone)]
pub struct DynamoReplayStore {
    client: Client,
    table: String,
}

impl DynamoReplayStore {
    /// Builds the client from the Lambda environment without the full `aws-config` provider
    /// chain: Lambda hands credentials and region in environment variables, and skipping profile
    /// files and IMDS keeps cold starts short.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let table = config.replay_table.clone().ok_or(ConfigError::Missing {
            name: "BRIDGE_REPLAY_TABLE",
            hint: "the DynamoDB replay table name",
        })?;
        let env = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError::Missing {
                name: "AWS_REGION",
                hint: "the AWS region of the replay table (Lambda sets it)",
            })?;
        let access_key = env("AWS_ACCESS_KEY_ID").ok_or(ConfigError::Missing {
            name: "AWS_ACCESS_KEY_ID",
            hint: "AWS credentials (Lambda sets them from the execution role)",
        })?;
        let secret_key = env("AWS_SECRET_ACCESS_KEY").ok_or(ConfigError::Missing {
            name: "AWS_SECRET_ACCESS_KEY",
            hint: "AWS credentials (Lambda sets them from the execution role)",
        })?;
        let credentials = aws_credential_types::Credentials::new(
            access_key,
            secret_key,
            env("AWS_SESSION_TOKEN"),
            None,
            "lambda-environment",
        );
        let timeouts = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(config.upstream_timeout)
            .connect_timeout(config.upstream_timeout)
            .build();
        let mut builder = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new(region))
            .credentials_provider(credentials)
            .timeout_config(timeouts)
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(2),
            );
        if let Some(endpoint) = &config.dynamodb_endpoint {
            builder = builder.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            table,
        })
    }

    /// Checks that the table exists with the key schema the code uses and TTL enabled on
    /// `expires_at`, for the configuration doctor. The error says what to fix.
    pub async fn verify_table(&self) -> Result<(), String> {
        let table = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(s) if s.err().is_resource_not_found_exception() => {
                    format!("table {} does not exist", self.table)
                }
                other => format!("cannot describe table {}: {}", self.table, transient(other)),
            })?;
        let description = table.table().ok_or("DescribeTable returned no table")?;
        let key_ok = description.key_schema().len() == 1
            && description.key_schema().iter().any(|k| {
                k.attribute_name() == "pk"
                    && *k.key_type() == aws_sdk_dynamodb::types::KeyType::Hash
            });
        let pk_is_string = description.attribute_definitions().iter().any(|a| {
            a.attribute_name() == "pk"
                && *a.attribute_type() == aws_sdk_dynamodb::types::ScalarAttributeType::S
        });
        if !key_ok || !pk_is_string {
            return Err(format!(
                "table {} must have exactly one key: pk (S, HASH)",
                self.table
            ));
        }
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| format!("cannot read the TTL setting: {}", transient(&e)))?;
        let enabled = ttl.time_to_live_description().is_some_and(|d| {
            d.attribute_name() == Some("expires_at")
                && matches!(
                    d.time_to_live_status(),
                    Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
                        | Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabling)
                )
        });
        if !enabled {
            return Err(format!(
                "TTL is not enabled on attribute expires_at of table {}",
                self.table
            ));
        }
        Ok(())
    }

    /// Wraps an existing client, for tests and tools.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn transient<E, R>(error: &SdkError<E, R>) -> UpstreamError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    let detail = match error {
        SdkError::TimeoutError(_) => "timeout".to_owned(),
        SdkError::DispatchFailure(_) => "connection failed".to_owned(),
        SdkError::ServiceError(e) => e.err().code().unwrap_or("service error").to_owned(),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        _ => "request failed".to_owned(),
    };
    UpstreamError::Transient {
        upstream: Upstream::ReplayStore,
        detail,
    }
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[async_trait]
impl ReplayStore for DynamoReplayStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(claim.key.clone()))
            .item("state", AttributeValue::S(IN_PROGRESS.to_owned()))
            .item(
                "session_hash",
                AttributeValue::S(claim.session_hash.clone()),
            )
            .item("attempt", AttributeValue::S(claim.attempt.clone()))
            .item("expires_at", number(claim.token_expires_at))
            .item("claim_expires_at", number(claim.in_progress_until))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now \
                 OR (#state = :in_progress AND claim_expires_at < :now) \
                 OR (#state = :in_progress AND attempt = :attempt)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", number(claim.now))
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.to_owned()))
            .expression_attribute_values(":attempt", AttributeValue::S(claim.attempt.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(ClaimOutcome::Claimed),
            Err(error) => error,
        };
        if let SdkError::ServiceError(service) = &error {
            if let PutItemError::ConditionalCheckFailedException(failed) = service.err() {
                let old = failed.item().cloned().unwrap_or_default();
                let session_hash = string(&old, "session_hash").unwrap_or_default();
                return Ok(
                    match (
                        string(&old, "state").as_deref(),
                        string(&old, "redirect_to"),
                    ) {
                        (Some(COMPLETED), Some(redirect_to)) => ClaimOutcome::Completed {
                            redirect_to,
                            session_hash,
                        },
                        _ => ClaimOutcome::InProgress { session_hash },
                    },
                );
            }
        }
        Err(transient(&error))
    }

    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(claim.key.clone()))
            .update_expression("SET #state = :completed, redirect_to = :redirect_to")
            .condition_expression("#state = :in_progress AND attempt = :attempt")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":completed", AttributeValue::S(COMPLETED.to_owned()))
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.to_owned()))
            .expression_attribute_values(":attempt", AttributeValue::S(claim.attempt.clone()))
            .expression_attribute_values(":redirect_to", AttributeValue::S(redirect_to.to_owned()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| transient(&e))
    }

    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(claim.key.clone()))
            .condition_expression("#state = :in_progress AND attempt = :attempt")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.to_owned()))
            .expression_attribute_values(":attempt", AttributeValue::S(claim.attempt.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's claim (or a completed one) is not ours to release.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(transient(&e)),
        }
    }
}
