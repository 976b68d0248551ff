//! `create-replay-table`: creates the replay table of docs/design.md if it is missing and enables
//! TTL on `expires_at`. Idempotent.
//!
//! Environment: `BRIDGE_DYNAMODB_ENDPOINT` (required, e.g. `http://127.0.0.1:5005`),
//! `BRIDGE_REPLAY_TABLE` (required), `AWS_REGION` (default `us-east-1`), `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (default `testing`). `--endpoint URL` and `--table NAME` override.

use std::process::ExitCode;

use devstack::table::{ensure, Outcome, Settings};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut endpoint = std::env::var("BRIDGE_DYNAMODB_ENDPOINT").ok();
    let mut table = std::env::var("BRIDGE_REPLAY_TABLE").ok();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--endpoint" => endpoint = args.next(),
            "--table" => table = args.next(),
            _ => {
                eprintln!("usage: create-replay-table [--endpoint URL] [--table NAME]");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(endpoint), Some(table)) = (
        endpoint.filter(|v| !v.is_empty()),
        table.filter(|v| !v.is_empty()),
    ) else {
        eprintln!("create-replay-table: set BRIDGE_DYNAMODB_ENDPOINT and BRIDGE_REPLAY_TABLE (or --endpoint/--table)");
        return ExitCode::from(2);
    };
    let settings = Settings {
        endpoint,
        table,
        region: env_or("AWS_REGION", "us-east-1"),
        access_key_id: env_or("AWS_ACCESS_KEY_ID", "testing"),
        secret_access_key: env_or("AWS_SECRET_ACCESS_KEY", "testing"),
    };
    match ensure(&settings).await {
        Ok(o) => {
            let what = match o {
                Outcome::Created => "created (TTL on expires_at)",
                Outcome::TtlEnabled => "existed; TTL on expires_at enabled",
                Outcome::Unchanged => "already in place",
            };
            eprintln!("create-replay-table: {} {what}", settings.table);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("create-replay-table: {e}");
            ExitCode::FAILURE
        }
    }
}
