//! One use per return_to token.
//!
//! Hydra accepts the same login challenge twice, so a token that leaks (a shared screenshot, a
//! proxy log, a browser history sync) could log someone else in. The return function therefore
//! claims each token id once, in a store with a conditional write, before it accepts anything.
//!
//! A token's life in the store:
//! - absent (or expired) -> `claim` writes `in_progress` with the Kratos session's hash;
//! - `in_progress` -> `complete` records Hydra's `redirect_to`, so the same browser refreshing
//!   the page is sent on to the same place;
//! - `in_progress` -> `release` deletes the claim after a transient failure, so the user can retry
//!   the same link;
//! - `in_progress` past its short expiry counts as absent, so a Lambda killed mid-request does not
//!   lock the user out.
//!
//! Only hashes of token ids and session ids are stored, never the tokens themselves.

use async_trait::async_trait;

use crate::upstream::UpstreamError;

/// What the store knew when a claim was attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This attempt owns the token now.
    Claimed,
    /// The token was already used to completion.
    Completed {
        /// Where the first use was sent.
        redirect_to: String,
        /// Hash of the Kratos session that used it.
        session_hash: String,
    },
    /// Another attempt holds the token and has not finished yet.
    InProgress {
        /// Hash of the Kratos session holding it.
        session_hash: String,
    },
}

/// A claim on a token id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `sha256(jti)`, hex.
    pub key: String,
    /// `sha256(kratos session id)`, hex.
    pub session_hash: String,
    /// Random id of this attempt, so a retried write can recognise itself.
    pub attempt: String,
    /// Token expiry (epoch seconds); also the item's TTL.
    pub token_expires_at: u64,
    /// Until when (epoch seconds) this claim blocks other attempts if it never completes.
    pub in_progress_until: u64,
    /// The current time (epoch seconds), for expiry checks done by the store itself.
    pub now: u64,
}

/// The replay store port; the DynamoDB adapter is [`crate::dynamo::DynamoReplayStore`].
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Atomically claims `claim.key` unless a live item exists, reporting that item otherwise.
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError>;
    /// Marks a claimed token as used, remembering where it led.
    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError>;
    /// Gives a claimed token back after a failure, so the same link can be retried.
    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError>;
}

/// An in-memory store for tests and single-process runs; it follows the same rules as the
/// DynamoDB adapter.
#[derive(Debug, Default)]
pub struct MemoryReplayStore {
    items: std::sync::Mutex<std::collections::HashMap<String, MemoryItem>>,
}

#[derive(Debug, Clone)]
struct MemoryItem {
    session_hash: String,
    attempt: String,
    expires_at: u64,
    claim_expires_at: u64,
    redirect_to: Option<String>,
}

impl MemoryReplayStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, MemoryItem>> {
        // A poisoned lock only means another test thread panicked; the map is still usable.
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of live items, for tests.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store is empty, for tests.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        let mut items = self.lock();
        if let Some(item) = items.get(&claim.key) {
            let expired = item.expires_at < claim.now;
            let stale_claim = item.redirect_to.is_none() && item.claim_expires_at < claim.now;
            if !expired && !stale_claim {
                return Ok(match &item.redirect_to {
                    Some(redirect_to) => ClaimOutcome::Completed {
                        redirect_to: redirect_to.clone(),
                        session_hash: item.session_hash.clone(),
                    },
                    None if item.attempt == claim.attempt => ClaimOutcome::Claimed,
                    None => ClaimOutcome::InProgress {
                        session_hash: item.session_hash.clone(),
                    },
                });
            }
        }
        items.insert(
            claim.key.clone(),
            MemoryItem {
                session_hash: claim.session_hash.clone(),
                attempt: claim.attempt.clone(),
                expires_at: claim.token_expires_at,
                claim_expires_at: claim.in_progress_until,
                redirect_to: None,
            },
        );
        Ok(ClaimOutcome::Claimed)
    }

    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        let mut items = self.lock();
        match items.get_mut(&claim.key) {
            Some(item) if item.attempt == claim.attempt => {
                item.redirect_to = Some(redirect_to.to_owned());
                Ok(())
            }
            _ => Err(UpstreamError::Rejected {
                upstream: crate::upstream::Upstream::ReplayStore,
                status: 409,
            }),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        let mut items = self.lock();
        if items
            .get(&claim.key)
            .is_some_and(|item| item.attempt == claim.attempt && item.redirect_to.is_none())
        {
            items.remove(&claim.key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;

    fn claim(session: &str, attempt: &str, now: u64) -> Claim {
        Claim {
            key: sha256_hex("jti-1"),
            session_hash: sha256_hex(session),
            attempt: attempt.to_owned(),
            token_expires_at: 1_000,
            in_progress_until: now + 30,
            now,
        }
    }

    #[tokio::test]
    async fn lifecycle() {
        let store = MemoryReplayStore::default();
        let first = claim("s1", "a1", 100);
        assert_eq!(
            store.claim(&first).await.expect("claim"),
            ClaimOutcome::Claimed
        );
        assert_eq!(
            store.claim(&first).await.expect("own retry"),
            ClaimOutcome::Claimed
        );
        assert!(matches!(
            store.claim(&claim("s2", "a2", 101)).await.expect("claim"),
            ClaimOutcome::InProgress { .. }
        ));
        store
            .complete(&first, "https://hydra/next")
            .await
            .expect("complete");
        assert_eq!(
            store.claim(&claim("s1", "a3", 102)).await.expect("claim"),
            ClaimOutcome::Completed {
                redirect_to: "https://hydra/next".to_owned(),
                session_hash: sha256_hex("s1"),
            }
        );
    }

    #[tokio::test]
    async fn release_and_stale_claims_free_the_token() {
        let store = MemoryReplayStore::default();
        let first = claim("s1", "a1", 100);
        store.claim(&first).await.expect("claim");
        store.release(&first).await.expect("release");
        assert!(store.is_empty());
        store.claim(&first).await.expect("claim again");
        // The holder died: after its in-progress expiry another attempt may take over.
        assert_eq!(
            store.claim(&claim("s1", "a2", 200)).await.expect("claim"),
            ClaimOutcome::Claimed
        );
        // Expired tokens count as absent even though no TTL sweep happened.
        let mut late = claim("s3", "a3", 2_000);
        late.token_expires_at = 3_000;
        assert_eq!(
            store.claim(&late).await.expect("claim"),
            ClaimOutcome::Claimed
        );
    }
}
