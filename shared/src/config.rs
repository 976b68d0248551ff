//! Settings read once at cold start.
//!
//! A Lambda that starts with a bad setting should fail its init with a message that names the
//! setting, instead of failing the first user's login in a confusing way. Everything here is
//! therefore parsed and cross-checked up front, and handlers only ever see a valid [`Config`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::attempts::AttemptLimit;
use crate::claims::ClaimMapping;
use crate::policy::ClientPolicy;

/// Why the configuration cannot be used; always names the environment variable at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A required setting is absent or empty.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The environment variable.
        name: &'static str,
        /// What the operator should put there.
        hint: &'static str,
    },
    /// A setting is present but unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// What is wrong with it (never the value itself, which may be a secret).
        reason: String,
    },
}

/// An extra header for admin APIs that sit behind an authenticating gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminHeader {
    /// Header name, validated as an HTTP token.
    pub name: String,
    /// Header value; treated as a secret.
    pub value: String,
}

impl std::fmt::Debug for AdminHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminHeader")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// The validated settings every function shares.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public base URL of the functions (origin plus optional stage/path prefix, no trailing slash).
    pub public_base_url: Url,
    /// Hydra's admin API, reached over private networking.
    pub hydra_admin_url: Url,
    /// Hydra's public origin as browsers see it: the only place Hydra redirects may lead.
    pub hydra_public_url: Url,
    /// Kratos' public API as the functions reach it, for `/sessions/whoami`.
    pub kratos_public_url: Url,
    /// Kratos' admin API, for ending sessions at logout.
    pub kratos_admin_url: Url,
    /// Kratos' public URL as browsers see it, for starting browser flows.
    pub kratos_browser_url: Url,
    /// DynamoDB replay table (only the return function needs it).
    pub replay_table: Option<String>,
    /// DynamoDB endpoint override, for the local moto server.
    pub dynamodb_endpoint: Option<Url>,
    /// Lifetime of a return_to token.
    pub token_ttl: Duration,
    /// Hydra's `ttl.login_consent_request` as the operator declares it.
    pub hydra_login_consent_ttl: Duration,
    /// How long a claimed but unfinished token blocks other attempts.
    pub in_progress_ttl: Duration,
    /// Whether Hydra should remember the login and consent.
    pub remember: bool,
    /// How long Hydra remembers (0 = as long as Hydra's own session).
    pub remember_for: Duration,
    /// Client ids treated as first-party: no consent screen.
    pub trusted_clients: BTreeSet<String>,
    /// Identity trait -> ID token claim mapping, by scope.
    pub claim_mapping: ClaimMapping,
    /// Timeout for each upstream call.
    pub upstream_timeout: Duration,
    /// Extra header for admin API calls.
    pub admin_header: Option<AdminHeader>,
    /// Extra trusted CA certificates (PEM file) for private PKI.
    pub ca_bundle: Option<PathBuf>,
    /// Name of Kratos' session cookie.
    pub kratos_session_cookie: String,
    /// Local http runs: binding cookie without `Secure` and `__Host-`.
    pub dev_insecure_cookies: bool,
    /// How many device user codes a browser and an address may try per window.
    pub device_attempts: AttemptLimit,
    /// Whether typed user codes are upper-cased before Hydra sees them.
    pub device_code_case: UserCodeCase,
    /// The policy every client gets unless its Hydra `metadata.bridge` says otherwise.
    pub policy_defaults: ClientPolicy,
    /// The policy hook, when one is configured (docs/policy.md).
    pub policy_hook: Option<PolicyHookSettings>,
}

/// Where and how the policy hook is asked; present only when `BRIDGE_POLICY_HOOK_URL` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyHookSettings {
    /// The hook's endpoint: https, or http on a loopback address for local stacks.
    pub url: Url,
    /// One deadline for the whole exchange; the hook is on the sign-in path.
    pub timeout: Duration,
    /// Top-level identity traits sent to the hook; nothing else of the identity leaves.
    pub traits: BTreeSet<String>,
    /// The prefix every claim the hook adds must start with (an absolute URL ending in `/`),
    /// so the hook can never overwrite a claim Hydra or the bridge owns.
    pub claims_namespace: String,
}

/// How the device verification page treats letter case in a typed user code. Hydra compares
/// codes exactly; its `medium` (A-Z) and `low` (digits) presets make upper-casing safe and spare
/// users the shift key, while its default `high` preset mixes cases, so the code must stay as
/// typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCodeCase {
    /// Upper-case the code (Hydra `entropy_preset: medium` or `low`).
    Upper,
    /// Keep the case as typed (Hydra's default `high` preset).
    Exact,
}

/// Which optional parts a function needs, so that each function fails at start-up only for the
/// settings it actually uses. (The key set has its own loader, [`crate::keysource::KeySource`].)
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// The function writes to the replay table.
    pub replay_table: bool,
}

const MAX_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The hook's default deadline: long enough for a warm HTTPS call, short enough that a dead hook
/// costs a user less than two seconds before the retry page.
const DEFAULT_POLICY_HOOK_TIMEOUT_MS: u64 = 1500;

/// Above this the hook would eat the Lambda's budget for Hydra and Kratos.
const MAX_POLICY_HOOK_TIMEOUT_MS: u64 = 5000;

/// More traits than this is sending the identity, not choosing from it.
const MAX_POLICY_HOOK_TRAITS: usize = 32;

impl Config {
    /// Reads the process environment.
    pub fn from_env(needs: Needs) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok(), needs)
    }

    /// Reads settings through `lookup`, so tests can supply them without touching the process
    /// environment.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        needs: Needs,
    ) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let public_base_url = required_url(
            &get,
            "BRIDGE_PUBLIC_BASE_URL",
            "the public base URL of the functions, e.g. https://auth.example.com",
        )?;
        let hydra_admin_url = required_url(
            &get,
            "BRIDGE_HYDRA_ADMIN_URL",
            "Hydra's admin API URL, e.g. http://hydra.internal:4445",
        )?;
        let hydra_public_url = required_url(
            &get,
            "BRIDGE_HYDRA_PUBLIC_URL",
            "Hydra's public URL as browsers see it, e.g. https://oauth.example.com",
        )?;
        let kratos_public_url = required_url(
            &get,
            "BRIDGE_KRATOS_PUBLIC_URL",
            "Kratos' public API URL reachable from the functions",
        )?;
        let kratos_admin_url = required_url(
            &get,
            "BRIDGE_KRATOS_ADMIN_URL",
            "Kratos' admin API URL reachable from the functions",
        )?;
        let kratos_browser_url = required_url(
            &get,
            "BRIDGE_KRATOS_BROWSER_URL",
            "Kratos' public URL as browsers see it",
        )?;

        let replay_table = get("BRIDGE_REPLAY_TABLE");
        if needs.replay_table && replay_table.is_none() {
            return Err(ConfigError::Missing {
                name: "BRIDGE_REPLAY_TABLE",
                hint: "the DynamoDB replay table name",
            });
        }
        if let Some(table) = &replay_table {
            let valid = (3..=255).contains(&table.len())
                && table
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid {
                return Err(invalid(
                    "BRIDGE_REPLAY_TABLE",
                    "not a valid DynamoDB table name",
                ));
            }
        }
        let dynamodb_endpoint = optional_url(&get, "BRIDGE_DYNAMODB_ENDPOINT")?;

        let token_ttl = seconds(&get, "BRIDGE_TOKEN_TTL_SECONDS", 600)?;
        let hydra_login_consent_ttl =
            seconds(&get, "BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS", 1800)?;
        if token_ttl.is_zero() || token_ttl > MAX_TOKEN_TTL {
            return Err(invalid(
                "BRIDGE_TOKEN_TTL_SECONDS",
                "must be between 1 and 3600 seconds",
            ));
        }
        if token_ttl > hydra_login_consent_ttl {
            return Err(invalid(
                "BRIDGE_TOKEN_TTL_SECONDS",
                format!(
                    "{} s is longer than Hydra's ttl.login_consent_request ({} s, BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS): a token would outlive its challenge",
                    token_ttl.as_secs(),
                    hydra_login_consent_ttl.as_secs()
                ),
            ));
        }
        let in_progress_ttl = seconds(&get, "BRIDGE_IN_PROGRESS_SECONDS", 30)?;
        if in_progress_ttl.is_zero() {
            return Err(invalid(
                "BRIDGE_IN_PROGRESS_SECONDS",
                "must be at least 1 second",
            ));
        }
        let remember = boolean(&get, "BRIDGE_REMEMBER", true)?;
        let remember_for = seconds(&get, "BRIDGE_REMEMBER_FOR_SECONDS", 0)?;

        let trusted_clients = comma_list(&get, "BRIDGE_TRUSTED_CLIENTS");

        let claim_mapping = match get("BRIDGE_CLAIM_MAPPING_JSON") {
            Some(json) => ClaimMapping::from_json(&json)
                .map_err(|e| invalid("BRIDGE_CLAIM_MAPPING_JSON", e.to_string()))?,
            None => ClaimMapping::default(),
        };

        let upstream_timeout = millis(&get, "BRIDGE_UPSTREAM_TIMEOUT_MS", 2500, 60_000)?;

        let admin_header = match get("BRIDGE_ADMIN_HEADER") {
            None => None,
            Some(line) => Some(parse_admin_header(&line)?),
        };
        let ca_bundle = get("BRIDGE_CA_BUNDLE").map(PathBuf::from);
        if let Some(path) = &ca_bundle {
            if !path.is_file() {
                return Err(invalid(
                    "BRIDGE_CA_BUNDLE",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        let kratos_session_cookie =
            get("BRIDGE_KRATOS_SESSION_COOKIE").unwrap_or_else(|| "ory_kratos_session".to_owned());
        if !kratos_session_cookie
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(invalid(
                "BRIDGE_KRATOS_SESSION_COOKIE",
                "not a valid cookie name",
            ));
        }
        let dev_insecure_cookies = boolean(&get, "BRIDGE_DEV_INSECURE_COOKIES", false)?;
        if !dev_insecure_cookies && public_base_url.scheme() != "https" {
            return Err(invalid(
                "BRIDGE_PUBLIC_BASE_URL",
                "must be https (set BRIDGE_DEV_INSECURE_COOKIES=true only for local http runs)",
            ));
        }

        let device_attempts = AttemptLimit {
            per_browser: count(&get, "BRIDGE_DEVICE_MAX_ATTEMPTS", 5)?,
            per_address: count(&get, "BRIDGE_DEVICE_MAX_ATTEMPTS_PER_ADDRESS", 50)?,
            window_seconds: seconds(&get, "BRIDGE_DEVICE_ATTEMPT_WINDOW_SECONDS", 900)?.as_secs(),
        };
        if device_attempts.window_seconds == 0 {
            return Err(invalid(
                "BRIDGE_DEVICE_ATTEMPT_WINDOW_SECONDS",
                "must be at least 1 second",
            ));
        }
        let device_code_case = match get("BRIDGE_DEVICE_USER_CODE_CASE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("upper") => UserCodeCase::Upper,
            Some("exact") => UserCodeCase::Exact,
            Some(_) => {
                return Err(invalid(
                    "BRIDGE_DEVICE_USER_CODE_CASE",
                    "must be upper (Hydra user_code entropy_preset medium or low) or exact (preset high)",
                ))
            }
        };

        let policy_hook = policy_hook(&get, &public_base_url)?;
        let policy_defaults = match get("BRIDGE_POLICY_DEFAULT_JSON") {
            None => ClientPolicy::default(),
            Some(json) => ClientPolicy::defaults_from_json(&json)
                .map_err(|e| invalid("BRIDGE_POLICY_DEFAULT_JSON", e.to_string()))?,
        };
        if policy_defaults.hook && policy_hook.is_none() {
            return Err(invalid(
                "BRIDGE_POLICY_DEFAULT_JSON",
                "asks every client for the policy hook (\"hook\": true) but BRIDGE_POLICY_HOOK_URL is not set",
            ));
        }

        Ok(Self {
            public_base_url,
            hydra_admin_url,
            hydra_public_url,
            kratos_public_url,
            kratos_admin_url,
            kratos_browser_url,
            replay_table,
            dynamodb_endpoint,
            token_ttl,
            hydra_login_consent_ttl,
            in_progress_ttl,
            remember,
            remember_for,
            trusted_clients,
            claim_mapping,
            upstream_timeout,
            admin_header,
            ca_bundle,
            kratos_session_cookie,
            dev_insecure_cookies,
            device_attempts,
            device_code_case,
            policy_defaults,
            policy_hook,
        })
    }

    /// The issuer and audience of return_to tokens: the functions' own public URL, so tokens of
    /// another deployment (or another environment sharing keys by mistake) are refused.
    pub fn token_issuer(&self) -> String {
        self.public_base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// The URL Kratos sends the browser back to after login; `allowed_return_urls` must allow it.
    pub fn return_url(&self) -> Url {
        self.endpoint("login/return")
    }

    /// A path below the public base URL (which may carry an API Gateway stage prefix).
    pub fn endpoint(&self, path: &str) -> Url {
        let mut base = self.public_base_url.clone();
        let prefix = base.path().trim_end_matches('/').to_owned();
        base.set_path(&format!("{prefix}/{path}"));
        base.set_query(None);
        base
    }
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

fn parse_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| invalid(name, format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(name, "must be an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(name, "must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(name, "must not have a query or fragment"));
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

fn required_url(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    hint: &'static str,
) -> Result<Url, ConfigError> {
    let value = get(name).ok_or(ConfigError::Missing { name, hint })?;
    parse_url(name, &value)
}

fn optional_url(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Url>, ConfigError> {
    get(name).map(|v| parse_url(name, &v)).transpose()
}

/// The hook's settings, or `None` when `BRIDGE_POLICY_HOOK_URL` is unset; the other
/// `BRIDGE_POLICY_HOOK_*` settings are still checked then, so a typo is not silently ignored.
fn policy_hook(
    get: &impl Fn(&'static str) -> Option<String>,
    public_base_url: &Url,
) -> Result<Option<PolicyHookSettings>, ConfigError> {
    const TRAITS: &str = "BRIDGE_POLICY_HOOK_TRAITS";
    const NAMESPACE: &str = "BRIDGE_POLICY_HOOK_CLAIMS_NAMESPACE";
    let timeout = millis(
        get,
        "BRIDGE_POLICY_HOOK_TIMEOUT_MS",
        DEFAULT_POLICY_HOOK_TIMEOUT_MS,
        MAX_POLICY_HOOK_TIMEOUT_MS,
    )?;
    let traits = comma_list(get, TRAITS);
    let plain_name = |name: &String| {
        name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    };
    if traits.len() > MAX_POLICY_HOOK_TRAITS || !traits.iter().all(plain_name) {
        return Err(invalid(
            TRAITS,
            format!("must be at most {MAX_POLICY_HOOK_TRAITS} comma-separated top-level trait names (A-Z a-z 0-9 _ -)"),
        ));
    }
    let claims_namespace = match get(NAMESPACE) {
        None => format!("{}/claims/", public_base_url.as_str().trim_end_matches('/')),
        Some(prefix) => {
            let valid = prefix.ends_with('/')
                && Url::parse(&prefix).is_ok_and(|url| {
                    matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some()
                        && url.query().is_none()
                        && url.fragment().is_none()
                });
            if !valid {
                return Err(invalid(
                    NAMESPACE,
                    "must be an absolute http(s) URL ending in `/`, e.g. https://auth.example.com/claims/",
                ));
            }
            prefix
        }
    };
    let Some(url) = get("BRIDGE_POLICY_HOOK_URL") else {
        return Ok(None);
    };
    Ok(Some(PolicyHookSettings {
        url: policy_hook_url(&url)?,
        timeout,
        traits,
        claims_namespace,
    }))
}

/// The hook receives personal data and its answer decides sign-ins, so it must be https; plain
/// http is only accepted on a loopback address (a local stack), where nothing crosses a network.
fn policy_hook_url(value: &str) -> Result<Url, ConfigError> {
    const NAME: &str = "BRIDGE_POLICY_HOOK_URL";
    // The shared checks (absolute, host, no credentials, query or fragment); the URL itself is
    // kept as written, trailing slash included, since it names an endpoint rather than a base.
    parse_url(NAME, value)?;
    let url = Url::parse(value).map_err(|e| invalid(NAME, format!("not an absolute URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() != "https" && !loopback {
        return Err(invalid(
            NAME,
            "must be https (http only on a loopback address such as 127.0.0.1)",
        ));
    }
    Ok(url)
}

/// A comma-separated list, blanks and empty entries dropped.
fn comma_list(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> BTreeSet<String> {
    get(name)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A timeout in milliseconds, at least 50 (less is always a typo) and at most `max`.
fn millis(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    match get(name) {
        None => Ok(Duration::from_millis(default)),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if (50..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err(invalid(
                name,
                format!("must be milliseconds between 50 and {max}"),
            )),
        },
    }
}

fn seconds(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    match get(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| invalid(name, "must be a whole number of seconds")),
    }
}

/// A positive whole number (a limit of 0 would lock everyone out).
fn count(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid(name, "must be a whole number of at least 1")),
        },
    }
}

fn boolean(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

fn parse_admin_header(line: &str) -> Result<AdminHeader, ConfigError> {
    const NAME: &str = "BRIDGE_ADMIN_HEADER";
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| invalid(NAME, "must look like `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() || value.is_empty() {
        return Err(invalid(
            NAME,
            "must look like `Name: value` with a valid header name",
        ));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(invalid(
            NAME,
            "the header value has characters HTTP does not allow",
        ));
    }
    Ok(AdminHeader {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::base_env;
    use std::collections::HashMap;

    fn load(env: &HashMap<&'static str, String>, needs: Needs) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| env.get(k).cloned(), needs)
    }

    #[test]
    fn defaults_apply() {
        let config = load(&base_env(), Needs::default()).expect("valid");
        assert_eq!(config.token_ttl, Duration::from_secs(600));
        assert_eq!(
            config.return_url().as_str(),
            "https://auth.example.com/login/return"
        );
        assert_eq!(config.kratos_session_cookie, "ory_kratos_session");
        assert!(config.remember);
    }

    #[test]
    fn missing_setting_is_named() {
        let mut env = base_env();
        env.remove("BRIDGE_HYDRA_ADMIN_URL");
        let err = load(&env, Needs::default()).expect_err("missing");
        assert!(err.to_string().contains("BRIDGE_HYDRA_ADMIN_URL"), "{err}");
    }

    #[test]
    fn bad_url_is_named() {
        let mut env = base_env();
        env.insert("BRIDGE_KRATOS_BROWSER_URL", "not a url".to_owned());
        let err = load(&env, Needs::default()).expect_err("bad");
        assert!(
            err.to_string().contains("BRIDGE_KRATOS_BROWSER_URL"),
            "{err}"
        );
    }

    #[test]
    fn token_ttl_longer_than_hydra_ttl_is_refused() {
        let mut env = base_env();
        env.insert("BRIDGE_TOKEN_TTL_SECONDS", "900".to_owned());
        env.insert("BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS", "600".to_owned());
        let err = load(&env, Needs::default()).expect_err("too long");
        assert!(
            err.to_string().contains("BRIDGE_TOKEN_TTL_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn needs_are_enforced() {
        let mut env = base_env();
        env.remove("BRIDGE_REPLAY_TABLE");
        assert!(load(&env, Needs::default()).is_ok());
        let err = load(&env, Needs { replay_table: true }).expect_err("table");
        assert!(err.to_string().contains("BRIDGE_REPLAY_TABLE"));
    }

    #[test]
    fn http_base_needs_dev_flag() {
        let mut env = base_env();
        env.insert("BRIDGE_PUBLIC_BASE_URL", "http://127.0.0.1:9000".to_owned());
        assert!(load(&env, Needs::default()).is_err());
        env.insert("BRIDGE_DEV_INSECURE_COOKIES", "true".to_owned());
        assert!(load(&env, Needs::default()).is_ok());
    }

    #[test]
    fn stage_prefix_is_kept_in_endpoints() {
        let mut env = base_env();
        env.insert(
            "BRIDGE_PUBLIC_BASE_URL",
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/".to_owned(),
        );
        let config = load(&env, Needs::default()).expect("valid");
        assert_eq!(
            config.return_url().as_str(),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/login/return"
        );
    }

    #[test]
    fn the_policy_hook_is_off_unless_its_url_is_set() {
        let config = load(&base_env(), Needs::default()).expect("valid");
        assert_eq!(config.policy_hook, None);
        assert_eq!(config.policy_defaults, ClientPolicy::default());
    }

    #[test]
    fn policy_hook_settings_are_read_with_defaults() {
        let mut env = base_env();
        env.insert(
            "BRIDGE_POLICY_HOOK_URL",
            "https://policy.example.com/hook/".to_owned(),
        );
        env.insert("BRIDGE_POLICY_HOOK_TRAITS", " email, tenant ,,".to_owned());
        let hook = load(&env, Needs::default())
            .expect("valid")
            .policy_hook
            .expect("hook");
        assert_eq!(hook.url.as_str(), "https://policy.example.com/hook/");
        assert_eq!(hook.timeout, Duration::from_millis(1500));
        assert_eq!(
            hook.traits,
            BTreeSet::from(["email".to_owned(), "tenant".to_owned()])
        );
        assert_eq!(hook.claims_namespace, "https://auth.example.com/claims/");

        env.insert("BRIDGE_POLICY_HOOK_TIMEOUT_MS", "5000".to_owned());
        env.insert(
            "BRIDGE_POLICY_HOOK_CLAIMS_NAMESPACE",
            "https://id.example.org/ns/".to_owned(),
        );
        let hook = load(&env, Needs::default()).unwrap().policy_hook.unwrap();
        assert_eq!(hook.timeout, Duration::from_secs(5));
        assert_eq!(hook.claims_namespace, "https://id.example.org/ns/");
    }

    #[test]
    fn the_policy_hook_url_must_be_https_except_on_loopback() {
        let mut env = base_env();
        for local in [
            "http://127.0.0.1:9100/policy-hook",
            "http://localhost:9100/",
            "http://[::1]:9100/",
        ] {
            env.insert("BRIDGE_POLICY_HOOK_URL", local.to_owned());
            assert!(load(&env, Needs::default()).is_ok(), "{local}");
        }
        for bad in [
            "http://policy.example.com/hook",
            "http://10.0.0.5/hook",
            "ftp://127.0.0.1/",
            "https://user:pw@policy.example.com/",
            "https://policy.example.com/?token=x",
            "not a url",
        ] {
            env.insert("BRIDGE_POLICY_HOOK_URL", bad.to_owned());
            let err = load(&env, Needs::default()).expect_err(bad);
            assert!(err.to_string().contains("BRIDGE_POLICY_HOOK_URL"), "{err}");
        }
    }

    #[test]
    fn bad_policy_hook_settings_are_named() {
        let cases = [
            ("BRIDGE_POLICY_HOOK_TIMEOUT_MS", "5001"),
            ("BRIDGE_POLICY_HOOK_TIMEOUT_MS", "10"),
            ("BRIDGE_POLICY_HOOK_TIMEOUT_MS", "fast"),
            ("BRIDGE_POLICY_HOOK_TRAITS", "email,name.first"),
            ("BRIDGE_POLICY_HOOK_CLAIMS_NAMESPACE", "claims_"),
            (
                "BRIDGE_POLICY_HOOK_CLAIMS_NAMESPACE",
                "https://auth.example.com/claims",
            ),
            ("BRIDGE_POLICY_DEFAULT_JSON", r#"{"requried_aal":"aal2"}"#),
            ("BRIDGE_POLICY_DEFAULT_JSON", r#"{"version":2}"#),
            ("BRIDGE_POLICY_DEFAULT_JSON", "not json"),
        ];
        for (name, value) in cases {
            let mut env = base_env();
            env.insert(name, value.to_owned());
            let err = load(&env, Needs::default()).expect_err(value);
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn default_policy_is_read_and_its_hook_needs_a_url() {
        let mut env = base_env();
        env.insert(
            "BRIDGE_POLICY_DEFAULT_JSON",
            r#"{"required_aal":"aal2","hook":true}"#.to_owned(),
        );
        let err = load(&env, Needs::default()).expect_err("hook without URL");
        assert!(err.to_string().contains("BRIDGE_POLICY_HOOK_URL"), "{err}");
        env.insert(
            "BRIDGE_POLICY_HOOK_URL",
            "https://policy.example.com/".to_owned(),
        );
        let config = load(&env, Needs::default()).expect("valid");
        assert_eq!(
            config.policy_defaults.required_aal,
            Some(crate::policy::Aal::Aal2)
        );
        assert!(config.policy_defaults.hook);
    }

    #[test]
    fn admin_header_is_parsed_and_redacted() {
        let mut env = base_env();
        env.insert("BRIDGE_ADMIN_HEADER", "X-Api-Key: s3cr3t".to_owned());
        let config = load(&env, Needs::default()).expect("valid");
        let header = config.admin_header.expect("header");
        assert_eq!(header.name, "X-Api-Key");
        assert!(!format!("{header:?}").contains("s3cr3t"));
        env.insert("BRIDGE_ADMIN_HEADER", "no colon".to_owned());
        assert!(load(&env, Needs::default()).is_err());
    }
}
