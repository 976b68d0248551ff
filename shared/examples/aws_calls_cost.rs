//! A/B probe for docs/performance.md: what the AWS side of a cold start and of a warm request
//! costs in-process, against a local server that answers every call at once, so only the
//! client's own work is measured (building it, signing, sending, parsing the answer).
//!
//! `cargo run --release -p bridge-shared --example aws_calls_cost [-- ROUNDS]`; prints one JSON
//! line. The same file runs against older trees with the same `KeySource` and
//! `DynamoReplayStore` API, which is how the hand-signed calls were compared with the SDK.

use std::collections::HashMap;
use std::time::Instant;

use bridge::config::{Config, Needs};
use bridge::dynamo::DynamoReplayStore;
use bridge::keysource::KeySource;
use bridge::replay::{Claim, ReplayStore};
use bridge::upstream::build_http_client;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET_ARN: &str =
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bridge-keyset-AbCdEf";

fn aws(name: &str) -> Option<String> {
    match name {
        "AWS_REGION" => Some("eu-west-1".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
        "AWS_SESSION_TOKEN" => Some("session-token".to_owned()),
        "BRIDGE_KEYSET_SECRET_ARN" => Some(SECRET_ARN.to_owned()),
        _ => None,
    }
}

fn claim(n: usize) -> Claim {
    Claim {
        key: format!("{n:064x}"),
        session_hash: "s".repeat(64),
        attempt: format!("attempt-{n}"),
        token_expires_at: 2_000_000_000,
        in_progress_until: 1_900_000_030,
        now: 1_900_000_000,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ARN": SECRET_ARN,
            "Name": "bridge-keyset",
            "SecretString": r#"{"current":"k1","keys":[{"kid":"k1","secret":"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio"}]}"#,
            "VersionId": "v1",
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&server)
        .await;
    let vars: HashMap<&str, String> = HashMap::from([
        (
            "BRIDGE_PUBLIC_BASE_URL",
            "https://auth.example.com".to_owned(),
        ),
        (
            "BRIDGE_HYDRA_ADMIN_URL",
            "http://hydra.internal:4445".to_owned(),
        ),
        (
            "BRIDGE_HYDRA_PUBLIC_URL",
            "https://oauth.example.com".to_owned(),
        ),
        (
            "BRIDGE_KRATOS_PUBLIC_URL",
            "http://kratos.internal:4433".to_owned(),
        ),
        (
            "BRIDGE_KRATOS_ADMIN_URL",
            "http://kratos.internal:4434".to_owned(),
        ),
        (
            "BRIDGE_KRATOS_BROWSER_URL",
            "https://id.example.com".to_owned(),
        ),
        ("BRIDGE_REPLAY_TABLE", "bridge-replay".to_owned()),
        ("BRIDGE_DYNAMODB_ENDPOINT", server.uri()),
    ]);
    let config =
        match Config::from_lookup(|name| vars.get(name).cloned(), Needs { replay_table: true }) {
            Ok(config) => config,
            Err(error) => panic!("config: {error}"),
        };
    let http = match build_http_client(&config) {
        Ok(http) => http,
        Err(error) => panic!("http client: {error}"),
    };

    // Cold: the key set from Secrets Manager, then the replay store and its first write, as the
    // return function does them at its first request.
    let started = Instant::now();
    let keys = match KeySource::from_vars(aws)
        .and_then(|s| s.with_secrets_manager_endpoint(&server.uri()))
    {
        Ok(source) => source.load(&http).await,
        Err(error) => panic!("key source: {error}"),
    };
    let keyset_load_ms = started.elapsed().as_secs_f64() * 1e3;
    if let Err(error) = keys {
        panic!("key set: {error}");
    }
    let started = Instant::now();
    let store = match DynamoReplayStore::from_lookup(&config, http.clone(), aws) {
        Ok(store) => store,
        Err(error) => panic!("store: {error}"),
    };
    let store_build_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    if let Err(error) = store.claim(&claim(0)).await {
        panic!("first claim: {error}");
    }
    let first_claim_ms = started.elapsed().as_secs_f64() * 1e3;

    // Warm: one claim and one completion per round, the return function's two writes.
    let mut warm_us = Vec::with_capacity(rounds);
    for n in 1..=rounds {
        let claim = claim(n);
        let started = Instant::now();
        let claimed = store.claim(&claim).await;
        let completed = store
            .complete(&claim, "https://oauth.example.com/next")
            .await;
        warm_us.push(started.elapsed().as_secs_f64() * 1e6);
        if claimed.is_err() || completed.is_err() {
            panic!("warm round {n} failed");
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "keyset_load_ms": keyset_load_ms,
            "store_build_ms": store_build_ms,
            "first_claim_ms": first_claim_ms,
            "warm_claim_and_complete_us_median": median(warm_us),
            "rounds": rounds,
        })
    );
}
