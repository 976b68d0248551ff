//! A policy hook for tests: answers what it is told and remembers what it was asked.

use std::sync::Mutex;
use std::sync::PoisonError;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::hook::{HookDecision, HookError, HookRequest, PolicyHook, Stage};

/// What [`FakePolicyHook`] answers next.
#[derive(Debug, Clone, PartialEq)]
pub enum HookAnswer {
    /// Allow, adding these claims.
    Allow(Map<String, Value>),
    /// Deny with this reason.
    Deny(Option<String>),
    /// No usable answer (as if it timed out).
    Down,
}

/// One question the fake was asked, without the personal data a test does not look at.
#[derive(Debug, Clone, PartialEq)]
pub struct AskedHook {
    /// Login or consent.
    pub stage: Stage,
    /// The client the question was about.
    pub client_id: String,
    /// The traits sent.
    pub traits: Map<String, Value>,
}

/// [`PolicyHook`] with a scripted answer; allows without claims until told otherwise.
#[derive(Debug)]
pub struct FakePolicyHook(Mutex<Script>);

#[derive(Debug)]
struct Script {
    answer: HookAnswer,
    asked: Vec<AskedHook>,
}

impl Default for FakePolicyHook {
    fn default() -> Self {
        Self(Mutex::new(Script {
            answer: HookAnswer::Allow(Map::new()),
            asked: Vec::new(),
        }))
    }
}

impl FakePolicyHook {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// Sets the answer to every following question.
    pub fn answer(&self, answer: HookAnswer) {
        self.script().answer = answer;
    }
    /// Every question so far.
    pub fn asked(&self) -> Vec<AskedHook> {
        self.script().asked.clone()
    }
}

#[async_trait]
impl PolicyHook for FakePolicyHook {
    async fn decide(&self, request: &HookRequest) -> Result<HookDecision, HookError> {
        let mut script = self.script();
        script.asked.push(AskedHook {
            stage: request.stage,
            client_id: request.client.client_id.clone(),
            traits: request.traits.clone(),
        });
        match script.answer.clone() {
            HookAnswer::Allow(claims) => Ok(HookDecision::Allow { claims }),
            HookAnswer::Deny(reason) => Ok(HookDecision::Deny { reason }),
            HookAnswer::Down => Err(HookError::Timeout { timeout_ms: 1500 }),
        }
    }
}
