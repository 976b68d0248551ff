//! Everything a handler test needs in one value.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::crypto::install_attacker_toolkit;
use super::hook::FakePolicyHook;
use super::hydra::FakeHydra;
use super::kratos::{session, FakeKratos};
use super::setup::{self, SESSION_COOKIE};
use crate::attempts::MemoryAttemptCounter;
use crate::clock::Clock;
use crate::config::{Config, PolicyHookSettings};
use crate::digest::sha256_hex;
use crate::handlers::{consent, device, error_page, login, login_return, logout};
use crate::hook::PolicyHook;
use crate::keyset::KeySet;
use crate::replay::{Claim, MemoryReplayStore};
use crate::token::{browser_binding_hash, ReturnToPayload, SealedPolicy, TokenCodec};

/// The test deployment with fresh fakes and a clock that only moves when told to.
pub struct Kit {
    /// The settings of the test deployment.
    pub config: Config,
    /// The Hydra every handler of this kit talks to.
    pub hydra: Arc<FakeHydra>,
    /// The Kratos every handler of this kit talks to.
    pub kratos: Arc<FakeKratos>,
    /// The replay store of the return handler.
    pub replay: Arc<MemoryReplayStore>,
    /// The policy hook the return and consent handlers ask, when `config.policy_hook` is set
    /// (as cold start builds one only then).
    pub hook: Arc<FakePolicyHook>,
    now: Arc<Mutex<SystemTime>>,
}

impl Default for Kit {
    fn default() -> Self {
        Self::new()
    }
}

impl Kit {
    /// A kit whose Kratos knows no session, at [`setup::now`]. Installs the
    /// [`ATTACKER_TOOLKIT`](super::ATTACKER_TOOLKIT) first, so every test that uses a kit runs on the same provider.
    pub fn new() -> Self {
        install_attacker_toolkit();
        Self {
            config: setup::config(),
            hydra: Arc::new(FakeHydra::default()),
            kratos: Arc::new(FakeKratos::default()),
            replay: Arc::new(MemoryReplayStore::default()),
            hook: Arc::new(FakePolicyHook::default()),
            now: Arc::new(Mutex::new(setup::now())),
        }
    }
    /// A kit whose Kratos knows the two sessions of [`Kit::add_sessions`].
    pub fn with_sessions() -> Self {
        let kit = Self::new();
        kit.add_sessions();
        kit
    }
    /// Signs two browsers in to this kit's Kratos: [`SESSION_COOKIE`] (`sess-1` of `ident-1`, by
    /// `oidc`) and `ory_kratos_session=s2` (`sess-2` of `ident-2`, by `code`).
    pub fn add_sessions(&self) {
        self.kratos
            .add_session(SESSION_COOKIE, session("sess-1", "ident-1", &["oidc"]));
        self.kratos.add_session(
            "ory_kratos_session=s2",
            session("sess-2", "ident-2", &["code"]),
        );
    }
    /// The test key set.
    pub fn keys(&self) -> KeySet {
        setup::keys()
    }
    /// The token codec of the test deployment.
    pub fn codec(&self) -> TokenCodec {
        setup::codec(&self.config, self.keys())
    }
    /// A token of client `app` for `challenge`, sealed now, bound to the binding cookie value
    /// `binding`, as login entry would issue it.
    pub fn seal(&self, challenge: &str, request_url: &str, binding: &str) -> String {
        self.seal_with_policy(challenge, request_url, binding, None)
    }
    /// Like [`Kit::seal`], with the client policy login entry would have sealed.
    pub fn seal_with_policy(
        &self,
        challenge: &str,
        request_url: &str,
        binding: &str,
        policy: Option<SealedPolicy>,
    ) -> String {
        let payload = ReturnToPayload {
            login_challenge: challenge.to_owned(),
            request_url: Some(request_url.to_owned()),
            client_id: Some("app".to_owned()),
            browser_binding: browser_binding_hash(binding),
            policy,
        };
        self.codec().seal(&payload, self.now()).expect("seal").token
    }
    /// A kit whose configuration names a policy hook (sending the `email` trait, claims under
    /// `https://auth.example.com/claims/`), so handlers get [`Kit::hook`].
    pub fn with_policy_hook() -> Self {
        let mut kit = Self::with_sessions();
        kit.config.policy_hook = Some(PolicyHookSettings {
            url: url::Url::parse("https://policy.example.com/hook").expect("url"),
            timeout: Duration::from_millis(1500),
            traits: ["email".to_owned()].into_iter().collect(),
            claims_namespace: "https://auth.example.com/claims/".to_owned(),
        });
        kit
    }
    /// The claim an earlier invocation (`attempt`) made on `token` for Kratos session
    /// `session_id`, still in progress for 30 seconds: what a replayed or interrupted sign-in
    /// finds in the store.
    pub fn earlier_claim(&self, token: &str, session_id: &str, attempt: &str) -> Claim {
        let opened = self.codec().open(token, self.now()).expect("token opens");
        let now = self.now_seconds();
        Claim {
            key: sha256_hex(&opened.jti),
            session_hash: sha256_hex(session_id),
            attempt: attempt.to_owned(),
            token_expires_at: opened.expires_at,
            in_progress_until: now + 30,
            now,
        }
    }
    /// What the kit's clock reads.
    pub fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
    /// What the kit's clock reads, in epoch seconds.
    pub fn now_seconds(&self) -> u64 {
        setup::seconds(self.now())
    }
    /// Moves the kit's clock forward.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
    /// The kit's clock as handlers read it.
    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        Arc::new(move || *now.lock().unwrap_or_else(PoisonError::into_inner))
    }
    /// The hook handlers get: this kit's fake, when the configuration names a hook.
    pub fn policy_hook(&self) -> Option<Arc<dyn PolicyHook>> {
        self.config
            .policy_hook
            .as_ref()
            .map(|_| self.hook.clone() as Arc<dyn PolicyHook>)
    }
    /// What the login entry handler needs, on this kit.
    pub fn login_deps(&self) -> login::LoginDeps {
        login::LoginDeps {
            config: self.config.clone(),
            hydra: self.hydra.clone(),
            kratos: self.kratos.clone(),
            tokens: self.codec(),
            clock: self.clock(),
        }
    }
    /// What the return handler needs, on this kit.
    pub fn return_deps(&self) -> login_return::ReturnDeps {
        login_return::ReturnDeps {
            config: self.config.clone(),
            hydra: self.hydra.clone(),
            kratos: self.kratos.clone(),
            tokens: self.codec(),
            replay: self.replay.clone(),
            clock: self.clock(),
            policy_hook: self.policy_hook(),
        }
    }
    /// What the consent handler needs, on this kit.
    pub fn consent_deps(&self) -> consent::ConsentDeps {
        consent::ConsentDeps {
            config: self.config.clone(),
            hydra: self.hydra.clone(),
            keys: self.keys(),
            policy_hook: self.policy_hook(),
        }
    }
    /// What the logout handler needs, on this kit.
    pub fn logout_deps(&self) -> logout::LogoutDeps {
        logout::LogoutDeps {
            config: self.config.clone(),
            hydra: self.hydra.clone(),
            kratos: self.kratos.clone(),
        }
    }
    /// What the device handler needs, on this kit, with a fresh attempt counter.
    pub fn device_deps(&self) -> device::DeviceDeps {
        device::DeviceDeps {
            config: self.config.clone(),
            hydra: self.hydra.clone(),
            keys: self.keys(),
            attempts: Arc::new(MemoryAttemptCounter::default()),
            clock: self.clock(),
        }
    }
    /// What the error page handler needs, on this kit.
    pub fn error_deps(&self) -> error_page::ErrorDeps {
        error_page::ErrorDeps {
            kratos: self.kratos.clone(),
        }
    }
}
