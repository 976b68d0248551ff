//! Counting attempts per browser and per network address, so that a device user code cannot be
//! guessed by trying many.
//!
//! A user code is short enough to type (8 letters from Hydra's `medium` preset: about 2^37
//! values), so the verification page caps how many codes one browser, and one address, may try
//! in a window. Counts live in the replay table under their own keys (`attempts#...`), expire
//! with DynamoDB's TTL, and hold only hashes: no cookie or address is stored in the clear.

use async_trait::async_trait;

use crate::digest::sha256_hex;
use crate::upstream::UpstreamError;

/// The attempt counter port; the DynamoDB adapter is [`crate::dynamo::DynamoReplayStore`].
#[async_trait]
pub trait AttemptCounter: Send + Sync {
    /// Adds one to the count of `key` and returns the new count (1 for the first attempt);
    /// `expires_at` (epoch seconds) is when the count may be forgotten.
    async fn count_attempt(&self, key: &str, expires_at: u64) -> Result<u64, UpstreamError>;
}

/// How many attempts are allowed, per what, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimit {
    /// Attempts one browser may make in a window.
    pub per_browser: u64,
    /// Attempts one network address may make in a window (several people behind one NAT).
    pub per_address: u64,
    /// Length of a window in seconds.
    pub window_seconds: u64,
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptVerdict {
    /// Under both limits.
    Allowed,
    /// Over a limit; the window ends in this many seconds.
    Refused {
        /// Seconds until the current window ends and counting starts again.
        retry_after: u64,
    },
}

impl AttemptLimit {
    /// Counts one attempt for `browser` and for `address` (both hashed here, in the window that
    /// contains `now`) and says whether it may go ahead. Fixed windows keep it to one write per
    /// counter; at a window's edge a browser may get up to twice its limit, which is still a
    /// handful of guesses against billions of codes.
    pub async fn check(
        &self,
        counter: &dyn AttemptCounter,
        purpose: &str,
        browser: &str,
        address: &str,
        now: u64,
    ) -> Result<AttemptVerdict, UpstreamError> {
        let window = self.window_seconds.max(1);
        let index = now / window;
        let window_ends = (index + 1) * window;
        let key = |kind: &str, value: &str| {
            format!(
                "attempts#{purpose}#{kind}#{}#{index}",
                sha256_hex(&format!("{purpose}:{kind}:{value}"))
            )
        };
        let by_browser = counter
            .count_attempt(&key("browser", browser), window_ends)
            .await?;
        let by_address = counter
            .count_attempt(&key("address", address), window_ends)
            .await?;
        if by_browser > self.per_browser || by_address > self.per_address {
            Ok(AttemptVerdict::Refused {
                retry_after: window_ends.saturating_sub(now).max(1),
            })
        } else {
            Ok(AttemptVerdict::Allowed)
        }
    }
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

    const LIMIT: AttemptLimit = AttemptLimit {
        per_browser: 3,
        per_address: 5,
        window_seconds: 600,
    };

    #[tokio::test]
    async fn a_browser_is_refused_after_its_limit_until_the_window_ends() {
        let counter = MemoryAttemptCounter::default();
        for _ in 0..3 {
            let verdict = LIMIT
                .check(&counter, "device", "b1", "10.0.0.1", 1_000)
                .await
                .expect("count");
            assert_eq!(verdict, AttemptVerdict::Allowed);
        }
        let verdict = LIMIT
            .check(&counter, "device", "b1", "10.0.0.1", 1_100)
            .await
            .expect("count");
        // Window [600, 1200): 100 seconds left.
        assert_eq!(verdict, AttemptVerdict::Refused { retry_after: 100 });
        let next_window = LIMIT
            .check(&counter, "device", "b1", "10.0.0.1", 1_200)
            .await
            .expect("count");
        assert_eq!(next_window, AttemptVerdict::Allowed);
    }

    #[tokio::test]
    async fn new_browsers_on_one_address_are_refused_after_the_address_limit() {
        let counter = MemoryAttemptCounter::default();
        for i in 0..5 {
            let verdict = LIMIT
                .check(&counter, "device", &format!("b{i}"), "10.0.0.1", 10)
                .await
                .expect("count");
            assert_eq!(verdict, AttemptVerdict::Allowed);
        }
        let verdict = LIMIT
            .check(&counter, "device", "fresh-cookie", "10.0.0.1", 10)
            .await
            .expect("count");
        assert!(matches!(verdict, AttemptVerdict::Refused { .. }));
        let other_address = LIMIT
            .check(&counter, "device", "fresh-cookie-2", "10.0.0.2", 10)
            .await
            .expect("count");
        assert_eq!(other_address, AttemptVerdict::Allowed);
    }

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
