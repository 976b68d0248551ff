//! Creates the replay table of docs/design.md, idempotently: partition key `pk` (S), no sort key,
//! on-demand billing, TTL on `expires_at`.

use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

/// Partition key name.
pub const PK: &str = "pk";
/// TTL attribute name.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Where and what to create.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DynamoDB endpoint, e.g. `http://127.0.0.1:5005` (moto).
    pub endpoint: String,
    /// Table name.
    pub table: String,
    /// Region (any for moto).
    pub region: String,
    /// Access key id (any for moto).
    pub access_key_id: String,
    /// Secret access key (any for moto).
    pub secret_access_key: String,
}

/// Error with a message fit for a terminal.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(context: &str, e: impl std::fmt::Debug) -> Error {
    Error(format!("{context}: {e:?}"))
}

/// A client for `settings`, with static credentials.
pub fn client(settings: &Settings) -> Client {
    let creds = Credentials::new(
        settings.access_key_id.clone(),
        settings.secret_access_key.clone(),
        None,
        None,
        "devstack",
    );
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .credentials_provider(creds)
        .endpoint_url(settings.endpoint.clone())
        .build();
    Client::from_conf(conf)
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The table was created (and TTL enabled).
    Created,
    /// The table existed with the right key; TTL was enabled now.
    TtlEnabled,
    /// Everything was already in place.
    Unchanged,
}

/// Creates the table if missing, checks its key, enables TTL if off.
pub async fn ensure(settings: &Settings) -> Result<Outcome, Error> {
    let c = client(settings);
    let table = settings.table.as_str();
    let mut created = false;
    match c.describe_table().table_name(table).send().await {
        Ok(out) => {
            let desc = out
                .table
                .ok_or_else(|| Error(format!("DescribeTable {table}: no table in answer")))?;
            let key = desc.key_schema();
            let ok = key.len() == 1
                && key[0].attribute_name() == PK
                && key[0].key_type() == &KeyType::Hash;
            if !ok {
                return Err(Error(format!(
                    "table {table} exists with a different key schema ({key:?}); expected only `{PK}` (S) as hash key"
                )));
            }
        }
        Err(e) => {
            let not_found = e
                .as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception());
            if !not_found {
                return Err(err(&format!("DescribeTable {table}"), e));
            }
            c.create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(PK)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| err("attribute definition", e))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(PK)
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(|e| err("key schema", e))?,
                )
                .send()
                .await
                .map_err(|e| err(&format!("CreateTable {table}"), e))?;
            created = true;
        }
    }

    // Wait until ACTIVE (moto is immediate; real DynamoDB takes seconds).
    let mut active = false;
    for _ in 0..60 {
        let out = c
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| err(&format!("DescribeTable {table}"), e))?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !active {
        return Err(Error(format!(
            "table {table} did not become ACTIVE in 30 s"
        )));
    }

    let ttl = c
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| err(&format!("DescribeTimeToLive {table}"), e))?;
    let ttl_ok = ttl.time_to_live_description().is_some_and(|d| {
        matches!(
            d.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) && d.attribute_name() == Some(TTL_ATTRIBUTE)
    });
    if ttl_ok {
        return Ok(if created {
            Outcome::Created
        } else {
            Outcome::Unchanged
        });
    }
    c.update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(|e| err("TTL specification", e))?,
        )
        .send()
        .await
        .map_err(|e| err(&format!("UpdateTimeToLive {table}"), e))?;
    Ok(if created {
        Outcome::Created
    } else {
        Outcome::TtlEnabled
    })
}
