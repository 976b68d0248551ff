//! Counting attempts per key and time window, for rate limits that must hold across Lambda
//! instances (a device-code verification page counting guesses, for example).
//!
//! The caller builds the key: a hash of what is limited plus the window it falls in, so the store
//! never sees an identifier and a new window starts a new count without any reset. The count's
//! item expires (TTL) at the end of its window.

use async_trait::async_trait;

use crate::upstream::UpstreamError;

/// The attempt counter port; the DynamoDB adapter is [`crate::dynamo::DynamoReplayStore`].
#[async_trait]
pub trait AttemptCounter: Send + Sync {
    /// Adds one to the count of `key` and returns the new count (1 for the first attempt);
    /// `expires_at` (epoch seconds) is when the count may be forgotten.
    async fn count_attempt(&self, key: &str, expires_at: u64) -> Result<u64, UpstreamError>;
}

/// An in-memory counter for tests and single-process runs; it follows the same rules as the
/// DynamoDB adapter (no reset on expiry: expiry only lets the store forget).
#[derive(Debug, Default)]
pub struct MemoryAttemptCounter {
    counts: std::sync::Mutex<std::collections::HashMap<String, MemoryCount>>,
}

#[derive(Debug, Clone, Copy)]
struct MemoryCount {
    attempts: u64,
    expires_at: u64,
}

impl MemoryAttemptCounter {
    /// When the count of `key` expires, for tests.
    pub fn expires_at(&self, key: &str) -> Option<u64> {
        self.lock().get(key).map(|count| count.expires_at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, MemoryCount>> {
        // A poisoned lock only means another test thread panicked; the map is still usable.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl AttemptCounter for MemoryAttemptCounter {
    async fn count_attempt(&self, key: &str, expires_at: u64) -> Result<u64, UpstreamError> {
        let mut counts = self.lock();
        let count = counts.entry(key.to_owned()).or_insert(MemoryCount {
            attempts: 0,
            expires_at,
        });
        count.attempts = count.attempts.saturating_add(1);
        count.expires_at = expires_at;
        Ok(count.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_key_and_moves_the_expiry() {
        let counter = MemoryAttemptCounter::default();
        assert_eq!(counter.count_attempt("a:1", 100).await.expect("count"), 1);
        assert_eq!(counter.count_attempt("a:1", 160).await.expect("count"), 2);
        assert_eq!(counter.count_attempt("b:1", 100).await.expect("count"), 1);
        assert_eq!(counter.expires_at("a:1"), Some(160));
        assert_eq!(counter.expires_at("c:1"), None);
    }
}
