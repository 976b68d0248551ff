//! Replay stores for tests.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::replay::{Claim, ClaimOutcome, MemoryReplayStore, ReplayStore};
use crate::upstream::UpstreamError;

/// A replay store that starts empty again on [`ResettableStore::reset`], so handler deps can be
/// built once per process (the fuzz targets) while every input sees a fresh store.
#[derive(Default)]
pub struct ResettableStore(Mutex<Arc<MemoryReplayStore>>);

impl ResettableStore {
    /// Forgets every claim.
    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Arc::default();
    }
    fn current(&self) -> Arc<MemoryReplayStore> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ReplayStore for ResettableStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        self.current().claim(claim).await
    }
    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        self.current().complete(claim, redirect_to).await
    }
    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        self.current().release(claim).await
    }
}
