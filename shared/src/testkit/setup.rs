//! The test deployment: its settings, key set and clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::config::{Config, Needs};
use crate::keyset::KeySet;
use crate::token::TokenCodec;

/// The test key set (not a secret: it exists only in tests); `k2` is current, `k1` retired.
pub const KEYSET: &str = r#"{"current":"k2","keys":[{"kid":"k2","secret":"c2Vjb25kLWtleS1zZWNvbmQta2V5LXNlY29uZC1rZXktc2Vjb25k"},{"kid":"k1","secret":"Zmlyc3Qta2V5LWZpcnN0LWtleS1maXJzdC1rZXktZmlyc3Q"}]}"#;
/// Hydra's public origin in the test deployment: the only place Hydra may send a browser.
pub const HYDRA_ORIGIN: &str = "https://oauth.example.com";
/// Where the fake Hydra sends the browser after an accept or reject, unless told otherwise.
pub const HYDRA_NEXT: &str = "https://oauth.example.com/oauth2/auth?login_verifier=v";
/// The start of Kratos' browser login flow in the test deployment.
pub const KRATOS_LOGIN: &str = "https://id.example.com/self-service/login/browser?";
/// The start of a link to the return function of the test deployment (single sign-on).
pub const RETURN_URL: &str = "https://auth.example.com/login/return?t=";
/// The Kratos session cookie most tests sign in with (session `sess-1` of `ident-1`).
pub const SESSION_COOKIE: &str = "ory_kratos_session=s1";
/// The instant every test clock starts at (2026-01-01), so sealed fixtures and seeds stay valid.
pub const NOW_SECONDS: u64 = 1_767_225_600;

/// The settings of the test deployment, one (variable, value) pair each.
const SETTINGS: &[(&str, &str)] = &[
    ("BRIDGE_PUBLIC_BASE_URL", "https://auth.example.com"),
    ("BRIDGE_HYDRA_ADMIN_URL", "http://hydra.internal:4445"),
    ("BRIDGE_HYDRA_PUBLIC_URL", HYDRA_ORIGIN),
    ("BRIDGE_KRATOS_PUBLIC_URL", "http://kratos.internal:4433"),
    ("BRIDGE_KRATOS_ADMIN_URL", "http://kratos.internal:4434"),
    ("BRIDGE_KRATOS_BROWSER_URL", "https://id.example.com"),
    ("BRIDGE_REPLAY_TABLE", "bridge-replay"),
];

/// The settings of the test deployment, as the environment would give them; tests add or
/// override entries before building a [`Config`].
pub fn base_env() -> HashMap<&'static str, String> {
    SETTINGS
        .iter()
        .map(|&(name, value)| (name, value.to_owned()))
        .collect()
}

/// The configuration of the test deployment, built the way the functions build theirs.
pub fn config() -> Config {
    let env = base_env();
    Config::from_lookup(|k| env.get(k).cloned(), Needs { replay_table: true }).expect("test config")
}

/// A key set from its JSON, for tests that bring their own (the fuzz targets, a real stack).
pub fn key_set(json: &str) -> KeySet {
    KeySet::from_json(json).expect("test key set")
}

/// The test key set, [`KEYSET`].
pub fn keys() -> KeySet {
    key_set(KEYSET)
}

/// The token codec the functions would build from `config` and `keys`.
pub fn codec(config: &Config, keys: KeySet) -> TokenCodec {
    let issuer = config.token_issuer();
    TokenCodec::new(keys, issuer.clone(), issuer, config.token_ttl).expect("codec")
}

/// [`NOW_SECONDS`] as a clock reading.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECONDS)
}

/// A clock that always reads [`now`], for tests that never need time to pass.
pub fn fixed_clock() -> Clock {
    Arc::new(now)
}

/// Epoch seconds of a test clock reading (test clocks never read before 1970).
pub fn seconds(at: SystemTime) -> u64 {
    crate::clock::epoch_seconds(at).expect("test clocks read after 1970")
}
