//! Cold-start wiring: each function's `main` calls one of these once, and a failure here names
//! the setting at fault before the first request arrives.

use std::sync::Arc;

use thiserror::Error;

use crate::clock::system_clock;
use crate::config::{Config, ConfigError, Needs};
use crate::handlers::consent::ConsentDeps;
use crate::handlers::device::DeviceDeps;
use crate::handlers::error_page::ErrorDeps;
use crate::handlers::login::LoginDeps;
use crate::handlers::logout::LogoutDeps;
use crate::hook::{HttpPolicyHook, PolicyHook};
use crate::hydra::HydraClient;
use crate::keyset::KeySet;
use crate::keysource::{KeySource, KeySourceError};
use crate::kratos::KratosClient;
use crate::token::{TokenCodec, TokenError};

/// Why a function cannot start.
#[derive(Debug, Error)]
pub enum StartupError {
    /// A setting is missing or invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The key set cannot be loaded.
    #[error("key set: {0}")]
    Keys(#[from] KeySourceError),
    /// The token codec refused its settings.
    #[error("token settings: {0}")]
    Token(#[from] TokenError),
}

/// The configuration and the one HTTP client every function shares.
struct Common {
    config: Config,
    http: reqwest::Client,
}

fn common(needs: Needs) -> Result<Common, StartupError> {
    let config = Config::from_env(needs)?;
    let http = crate::upstream::build_http_client(&config)?;
    Ok(Common { config, http })
}

async fn keys(http: &reqwest::Client) -> Result<KeySet, StartupError> {
    Ok(KeySource::from_env()?.load(http).await?)
}

fn codec(config: &Config, keys: KeySet) -> Result<TokenCodec, StartupError> {
    let issuer = config.token_issuer();
    Ok(TokenCodec::new(
        keys,
        issuer.clone(),
        issuer,
        config.token_ttl,
    )?)
}

/// The policy hook, once per cold start, when `BRIDGE_POLICY_HOOK_URL` is set; signed with the
/// current key set entry's hook subkey.
fn policy_hook(
    config: &Config,
    http: &reqwest::Client,
    keys: &KeySet,
) -> Option<Arc<dyn PolicyHook>> {
    config.policy_hook.as_ref().map(|settings| {
        Arc::new(HttpPolicyHook::new(
            http.clone(),
            settings,
            keys.current().policy_hook_key().clone(),
        )) as Arc<dyn PolicyHook>
    })
}

/// Dependencies of the login entry function.
pub async fn login() -> Result<LoginDeps, StartupError> {
    let Common { config, http } = common(Needs::default())?;
    let keys = keys(&http).await?;
    Ok(LoginDeps {
        hydra: Arc::new(HydraClient::new(http.clone(), &config)),
        kratos: Arc::new(KratosClient::new(http, &config)),
        tokens: codec(&config, keys)?,
        clock: system_clock(),
        config,
    })
}

/// Dependencies of the return function.
pub async fn login_return() -> Result<crate::handlers::login_return::ReturnDeps, StartupError> {
    let Common { config, http } = common(Needs { replay_table: true })?;
    let keys = keys(&http).await?;
    let replay = crate::dynamo::DynamoReplayStore::from_config(&config, http.clone())?;
    let policy_hook = policy_hook(&config, &http, &keys);
    Ok(crate::handlers::login_return::ReturnDeps {
        policy_hook,
        hydra: Arc::new(HydraClient::new(http.clone(), &config)),
        kratos: Arc::new(KratosClient::new(http, &config)),
        tokens: codec(&config, keys)?,
        replay: Arc::new(replay),
        clock: system_clock(),
        config,
    })
}

/// Dependencies of the consent function.
pub async fn consent() -> Result<ConsentDeps, StartupError> {
    let Common { config, http } = common(Needs::default())?;
    let keys = keys(&http).await?;
    Ok(ConsentDeps {
        policy_hook: policy_hook(&config, &http, &keys),
        hydra: Arc::new(HydraClient::new(http, &config)),
        keys,
        config,
    })
}

/// Dependencies of the device verification function: Hydra for the codes, the key set for the
/// form's CSRF token, and the replay table for counting tried codes.
pub async fn device() -> Result<DeviceDeps, StartupError> {
    let Common { config, http } = common(Needs { replay_table: true })?;
    let keys = keys(&http).await?;
    let attempts = crate::dynamo::DynamoReplayStore::from_config(&config, http.clone())?;
    Ok(DeviceDeps {
        hydra: Arc::new(HydraClient::new(http, &config)),
        keys,
        attempts: Arc::new(attempts),
        clock: system_clock(),
        config,
    })
}

/// Dependencies of the logout function.
pub fn logout() -> Result<LogoutDeps, StartupError> {
    let Common { config, http } = common(Needs::default())?;
    Ok(LogoutDeps {
        hydra: Arc::new(HydraClient::new(http.clone(), &config)),
        kratos: Arc::new(KratosClient::new(http, &config)),
        config,
    })
}

/// Dependencies of the error function.
pub fn error_page() -> Result<ErrorDeps, StartupError> {
    let Common { config, http } = common(Needs::default())?;
    Ok(ErrorDeps {
        kratos: Arc::new(KratosClient::new(http, &config)),
    })
}
