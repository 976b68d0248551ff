//! The doctor against the real local stack: it passes on the stack as `./scripts/test` starts
//! it, and each broken setting makes the right check fail. Needs the stack (`./scripts/test`
//! runs these); without it they fail loudly.

use std::collections::HashMap;

fn stack_env() -> HashMap<String, String> {
    let path = std::env::var("BRIDGE_STACK_ENV")
        .unwrap_or_else(|_| format!("{}/../../.stack/env", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("the doctor's live tests need the local stack ({path}: {e}); run ./scripts/test")
    });
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), unquote(value)))
        .collect()
}

/// Undoes the shell quoting `.stack/env` uses: 'single quoted' runs and `'\''` for a quote.
fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '\\' if !quoted => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c => out.push(c),
        }
    }
    out
}

async fn failed_checks(overrides: &[(&str, &str)]) -> Vec<&'static str> {
    let mut env = stack_env();
    for (name, value) in overrides {
        env.insert((*name).to_owned(), (*value).to_owned());
    }
    // The key set loader and the DynamoDB client read AWS settings from the process environment.
    for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if let Some(value) = env.get(name) {
            // SAFETY: set before any thread of this test reads the environment; tests in this
            // file set the same values.
            unsafe { std::env::set_var(name, value) };
        }
    }
    let checks = doctor::run(move |name| env.get(name).cloned()).await;
    for check in &checks {
        println!("{}", check.line());
    }
    checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name)
        .collect()
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_passes_on_the_local_stack() {
    assert_eq!(failed_checks(&[]).await, Vec::<&str>::new());
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_a_missing_replay_table() {
    assert_eq!(
        failed_checks(&[("BRIDGE_REPLAY_TABLE", "no-such-table")]).await,
        vec!["replay-table"]
    );
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_a_bad_key_set() {
    assert_eq!(
        failed_checks(&[("BRIDGE_KEYSET_JSON", r#"{"current":"k1","keys":[]}"#)]).await,
        vec!["key-set"]
    );
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_an_unreachable_hydra_admin() {
    let failed = failed_checks(&[("BRIDGE_HYDRA_ADMIN_URL", "http://127.0.0.1:9")]).await;
    assert!(failed.contains(&"hydra-admin"), "{failed:?}");
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_an_unreachable_kratos() {
    assert_eq!(
        failed_checks(&[("BRIDGE_KRATOS_ADMIN_URL", "http://127.0.0.1:9")]).await,
        vec!["kratos-admin"]
    );
    assert_eq!(
        failed_checks(&[("BRIDGE_KRATOS_PUBLIC_URL", "http://127.0.0.1:9")]).await,
        vec!["kratos-public"]
    );
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_hydra_urls_and_return_to_for_a_wrong_base_url() {
    let env = stack_env();
    let moved = format!("{}/moved", env["BRIDGE_PUBLIC_BASE_URL"]);
    let failed = failed_checks(&[("BRIDGE_PUBLIC_BASE_URL", &moved)]).await;
    assert!(failed.contains(&"hydra-login-url"), "{failed:?}");
    assert!(failed.contains(&"kratos-return-to"), "{failed:?}");
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_a_cookie_that_cannot_reach_the_bridge() {
    let env = stack_env();
    let other_host = env["BRIDGE_PUBLIC_BASE_URL"].replace("127.0.0.1", "localhost");
    let failed = failed_checks(&[("BRIDGE_PUBLIC_BASE_URL", &other_host)]).await;
    assert!(failed.contains(&"session-cookie"), "{failed:?}");
}

#[tokio::test]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn doctor_names_a_token_lifetime_longer_than_hydras() {
    let failed = failed_checks(&[
        ("BRIDGE_TOKEN_TTL_SECONDS", "3000"),
        ("BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS", "1800"),
    ])
    .await;
    assert_eq!(failed, vec!["configuration"]);
}

#[test]
fn unquote_handles_shell_quoting() {
    assert_eq!(unquote("'a b'"), "a b");
    assert_eq!(unquote(r#"'it'\''s'"#), "it's");
    assert_eq!(unquote("plain"), "plain");
}
