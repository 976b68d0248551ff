//! Structured JSON logs with a per-flow correlation id.
//!
//! Logs must let an operator follow one sign-in across the functions without ever containing a
//! challenge, token, cookie or code. The correlation id is therefore a short hash of the login
//! challenge: every function that sees the challenge (or the token carrying it) derives the same
//! id, and the id reveals nothing about the challenge.

use crate::replay::sha256_hex;

/// Installs the JSON log subscriber once per cold start; `RUST_LOG` sets the level (default
/// `info`). Safe to call twice (tests); the second call does nothing.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// A correlation id for the flow a challenge belongs to: the first 16 hex digits of its SHA-256.
pub fn flow_id(challenge: &str) -> String {
    let mut hash = sha256_hex(challenge);
    hash.truncate(16);
    hash
}

#[cfg(test)]
mod tests {
    #[test]
    fn flow_id_is_short_and_stable() {
        let id = super::flow_id("some-challenge");
        assert_eq!(id.len(), 16);
        assert_eq!(id, super::flow_id("some-challenge"));
        assert!(!id.contains("challenge"));
    }
}
