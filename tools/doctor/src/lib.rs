//! The configuration doctor: reads the same settings the functions read and checks the live
//! setup they depend on, one line per check, each failure with its fix.
//!
//! Most deployment problems of a login bridge are invisible until a user tries to sign in: Hydra
//! pointing at the wrong URLs, Kratos refusing the return URL, the session cookie not reaching the
//! bridge's host, a missing table or key. Each check here provokes the real component the way a
//! sign-in would, without signing anyone in.

use std::time::Duration;

use bridge::config::{Config, Needs};
use bridge::dynamo::DynamoReplayStore;
use bridge::keysource::KeySource;
use url::Url;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Works; the text says what was seen.
    Pass(String),
    /// Broken; what is wrong and how to fix it.
    Fail {
        /// What was seen.
        problem: String,
        /// What the operator should change.
        fix: String,
    },
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short stable name, e.g. `hydra-urls`.
    pub name: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Pass(detail.into()),
        }
    }

    fn fail(name: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Fail {
                problem: problem.into(),
                fix: fix.into(),
            },
        }
    }

    /// Whether this check passed.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Pass(_))
    }

    /// The line printed for this check.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Pass(detail) => format!("PASS  {:<16} {detail}", self.name),
            Outcome::Fail { problem, fix } => format!(
                "FAIL  {:<16} {problem}\n      {:<16} fix: {fix}",
                self.name, ""
            ),
        }
    }
}

/// Runs every check with settings read through `lookup` (the process environment in the binary,
/// a modified copy in tests).
pub async fn run(lookup: impl Fn(&str) -> Option<String> + Clone) -> Vec<Check> {
    let config = match Config::from_lookup(lookup.clone(), Needs { replay_table: true }) {
        Ok(config) => config,
        Err(e) => {
            return vec![Check::fail(
                "configuration",
                e.to_string(),
                "set the variable as README.md's Settings table describes",
            )]
        }
    };
    let mut checks = vec![Check::pass(
        "configuration",
        format!(
            "all settings valid; token lifetime {} s <= Hydra ttl.login_consent_request {} s",
            config.token_ttl.as_secs(),
            config.hydra_login_consent_ttl.as_secs()
        ),
    )];
    let http = match probe_client(&config) {
        Ok(http) => http,
        Err(e) => {
            checks.push(Check::fail("http-client", e, "check BRIDGE_CA_BUNDLE"));
            return checks;
        }
    };
    checks.push(
        version(
            &http,
            &config,
            "hydra-admin",
            config.hydra_admin_url.clone(),
            "/version",
            "BRIDGE_HYDRA_ADMIN_URL",
            MIN_HYDRA,
        )
        .await,
    );
    checks.push(
        version(
            &http,
            &config,
            "kratos-admin",
            config.kratos_admin_url.clone(),
            "/admin/version",
            "BRIDGE_KRATOS_ADMIN_URL",
            MIN_KRATOS,
        )
        .await,
    );
    checks.push(
        health(
            &http,
            "kratos-public",
            &config.kratos_public_url,
            "BRIDGE_KRATOS_PUBLIC_URL",
        )
        .await,
    );
    checks.push(keys(&lookup, &http).await);
    checks.push(replay_table(&config, &http, &lookup).await);
    checks.extend(hydra_urls(&http, &config).await);
    checks.push(device_url(&http, &config).await);
    checks.extend(kratos_return_and_cookie(&http, &config).await);
    checks
}

/// The `HOOK_SIGNING_KEYS` line for the policy hook (docs/policy.md): every listed key's hook
/// subkey as `kid:hex`, current key first, so the hook verifies before and after a rotation.
/// The bridge never sends its key set anywhere; this is how the hook's operator gets the one
/// subkey it needs, from the same key set source the functions read.
pub async fn policy_hook_keys(lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let ca_bundle = lookup("BRIDGE_CA_BUNDLE").map(std::path::PathBuf::from);
    let source = KeySource::from_vars(&lookup).map_err(|e| e.to_string())?;
    let tls =
        bridge::upstream::tls_client_config(ca_bundle.as_deref()).map_err(|e| e.to_string())?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())?;
    let keys = source.load(&http).await.map_err(|e| e.to_string())?;
    let current = keys.current().kid().to_owned();
    let mut kids: Vec<&str> = keys.kids().collect();
    kids.sort_by_key(|kid| *kid != current);
    let entries: Vec<String> = kids
        .into_iter()
        .filter_map(|kid| keys.get(kid))
        .map(|key| format!("{}:{}", key.kid(), key.policy_hook_key().to_hex()))
        .collect();
    Ok(format!("HOOK_SIGNING_KEYS={}", entries.join(",")))
}

fn probe_client(config: &Config) -> Result<reqwest::Client, String> {
    // The functions' own trust settings, so a certificate the doctor accepts is one they accept.
    let tls = bridge::upstream::tls_client_config(config.ca_bundle.as_deref())
        .map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .timeout(config.upstream_timeout.max(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}

fn join(base: &Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

fn admin(request: reqwest::RequestBuilder, config: &Config) -> reqwest::RequestBuilder {
    match &config.admin_header {
        Some(h) => request.header(h.name.as_str(), h.value.as_str()),
        None => request,
    }
}

/// The oldest Hydra the bridge is tested with (`STACK_ORY=v1`); the device grant needs v26.
pub const MIN_HYDRA: (u64, u64, u64) = (2, 3, 0);
/// The oldest Kratos the bridge is tested with (`STACK_ORY=v1`).
pub const MIN_KRATOS: (u64, u64, u64) = (1, 3, 1);

/// `v26.2.0` (or `26.2.0`, with any `-suffix`) as numbers; `None` for `master` and other builds
/// that do not say which release they are.
pub fn release(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

async fn version(
    http: &reqwest::Client,
    config: &Config,
    name: &'static str,
    base: Url,
    path: &str,
    variable: &str,
    minimum: (u64, u64, u64),
) -> Check {
    let fix = format!("check {variable} and that the functions' network reaches it (security group, BRIDGE_ADMIN_HEADER)");
    match admin(http.get(join(&base, path)), config).send().await {
        Ok(response) if response.status().is_success() => {
            let version = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            let (major, minor, patch) = minimum;
            match release(&version) {
                Some(found) if found < minimum => Check::fail(
                    name,
                    format!("{base} runs {version}, older than the oldest supported v{major}.{minor}.{patch}"),
                    format!("upgrade to v{major}.{minor}.{patch} or newer (tested: Kratos v26.2.0 / Hydra v26.2.0, and Kratos v1.3.1 / Hydra v2.3.0)"),
                ),
                Some(_) => Check::pass(
                    name,
                    format!("reachable at {base}, version {version} (supported from v{major}.{minor}.{patch})"),
                ),
                None => Check::pass(
                    name,
                    format!("reachable at {base}, version {version} (not a release number; supported from v{major}.{minor}.{patch})"),
                ),
            }
        }
        Ok(response) => Check::fail(name, format!("{base} answered {}", response.status()), fix),
        Err(e) => Check::fail(
            name,
            format!("{base} unreachable ({})", error_kind(&e)),
            fix,
        ),
    }
}

/// Hydra's device verification endpoint must send browsers to the bridge's `/device` page.
/// Before Hydra v26 there is no such endpoint, and the device page simply stays unused.
async fn device_url(http: &reqwest::Client, config: &Config) -> Check {
    let url = join(&config.hydra_public_url, "/oauth2/device/verify");
    let expected = config.endpoint("device");
    match http.get(&url).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => Check::pass(
            "device-url",
            "Hydra has no device authorization grant (before v26); the /device page is unused",
        ),
        Ok(response) if response.status().is_redirection() => {
            let location = location(&response);
            if points_at(&location, &expected) {
                Check::pass(
                    "device-url",
                    format!("Hydra sends device sign-ins to {expected}"),
                )
            } else {
                Check::fail(
                    "device-url",
                    format!("Hydra sends device sign-ins to {}", without_query(&location)),
                    format!("set Hydra's urls.device.verification to {expected} and urls.device.success to {expected}/done"),
                )
            }
        }
        Ok(response) => Check::fail(
            "device-url",
            format!("{url} answered {}", response.status()),
            "check BRIDGE_HYDRA_PUBLIC_URL",
        ),
        Err(e) => Check::fail(
            "device-url",
            format!("{url} unreachable ({})", error_kind(&e)),
            "check BRIDGE_HYDRA_PUBLIC_URL",
        ),
    }
}

async fn health(http: &reqwest::Client, name: &'static str, base: &Url, variable: &str) -> Check {
    let fix = format!("check {variable} and that the functions' network reaches it");
    match http.get(join(base, "/health/ready")).send().await {
        Ok(response) if response.status().is_success() => {
            Check::pass(name, format!("reachable at {base}, ready"))
        }
        Ok(response) => Check::fail(
            name,
            format!("{base}/health/ready answered {}", response.status()),
            fix,
        ),
        Err(e) => Check::fail(
            name,
            format!("{base} unreachable ({})", error_kind(&e)),
            fix,
        ),
    }
}

fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection refused or no route"
    } else {
        "request failed"
    }
}

async fn keys(lookup: impl Fn(&str) -> Option<String>, http: &reqwest::Client) -> Check {
    let fix = "set BRIDGE_KEYSET_SECRET_ARN (or BRIDGE_KEYSET_JSON locally) to a key set as README.md describes, and allow secretsmanager:GetSecretValue";
    let source = match KeySource::from_vars(lookup) {
        Ok(source) => source,
        Err(e) => return Check::fail("key-set", e.to_string(), fix),
    };
    match source.load(http).await {
        Ok(keys) => Check::pass(
            "key-set",
            format!(
                "loads: {} key(s), current {}",
                keys.kids().count(),
                keys.current().kid()
            ),
        ),
        Err(e) => Check::fail("key-set", e.to_string(), fix),
    }
}

async fn replay_table(
    config: &Config,
    http: &reqwest::Client,
    lookup: impl Fn(&str) -> Option<String>,
) -> Check {
    let fix = "deploy infra/template.yaml's table (pk S HASH, TTL on expires_at) and check BRIDGE_REPLAY_TABLE / BRIDGE_DYNAMODB_ENDPOINT";
    let store = match DynamoReplayStore::from_lookup(config, http.clone(), lookup) {
        Ok(store) => store,
        Err(e) => return Check::fail("replay-table", e.to_string(), fix),
    };
    match store.verify_table().await {
        Ok(()) => Check::pass(
            "replay-table",
            format!(
                "{} exists, key pk, TTL on expires_at",
                config.replay_table.as_deref().unwrap_or("")
            ),
        ),
        Err(problem) => Check::fail("replay-table", problem, fix),
    }
}

/// Whether `location` is the endpoint `expected` (same origin and path; the query is Hydra's).
pub fn points_at(location: &str, expected: &Url) -> bool {
    Url::parse(location).is_ok_and(|url| {
        url.scheme() == expected.scheme()
            && url.host() == expected.host()
            && url.port_or_known_default() == expected.port_or_known_default()
            && url.path().trim_end_matches('/') == expected.path().trim_end_matches('/')
    })
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Where a Location without its query points, for messages (the query may hold a challenge).
fn without_query(location: &str) -> String {
    Url::parse(location)
        .map(|mut u| {
            u.set_query(None);
            u.to_string()
        })
        .unwrap_or_else(|_| "(no redirect)".to_owned())
}

/// Registers a throw-away public client, starts an authorization request and follows Hydra to
/// see which URLs it uses for login, consent, logout and errors; then cleans up.
async fn hydra_urls(http: &reqwest::Client, config: &Config) -> Vec<Check> {
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        return vec![Check::fail(
            "hydra-urls",
            "no randomness for a probe client id",
            "retry",
        )];
    }
    let client_id = format!(
        "bridge-doctor-{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let redirect_uri = "https://doctor.invalid/callback";
    let body = serde_json::json!({
        "client_id": client_id,
        "client_name": "bridge doctor probe (safe to delete)",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "scope": "openid",
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "none",
        "skip_consent": false
    });
    let created = admin(
        http.post(join(&config.hydra_admin_url, "/admin/clients"))
            .json(&body),
        config,
    )
    .send()
    .await;
    if !created.as_ref().is_ok_and(|r| r.status().is_success()) {
        return vec![Check::fail(
            "hydra-urls",
            "cannot register a probe client through Hydra's admin API",
            "check BRIDGE_HYDRA_ADMIN_URL and BRIDGE_ADMIN_HEADER",
        )];
    }
    let checks = follow_hydra(http, config, &client_id, redirect_uri).await;
    let _ = admin(
        http.delete(join(
            &config.hydra_admin_url,
            &format!("/admin/clients/{client_id}"),
        )),
        config,
    )
    .send()
    .await;
    checks
}

async fn follow_hydra(
    http: &reqwest::Client,
    config: &Config,
    client_id: &str,
    redirect_uri: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let set = |url: &str| {
        format!(
            "set Hydra's {url} to {}",
            config.endpoint(url.trim_start_matches("urls."))
        )
    };
    let mut auth = config.hydra_public_url.clone();
    auth.set_path(&format!(
        "{}/oauth2/auth",
        auth.path().trim_end_matches('/')
    ));
    auth.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "doctor-probe-state");
    let login_location = match http.get(auth.as_str()).send().await {
        Ok(response) => location(&response),
        Err(e) => {
            checks.push(Check::fail(
                "hydra-public",
                format!(
                    "{} unreachable ({})",
                    config.hydra_public_url,
                    error_kind(&e)
                ),
                "check BRIDGE_HYDRA_PUBLIC_URL",
            ));
            return checks;
        }
    };
    let expected_login = config.endpoint("login");
    if !points_at(&login_location, &expected_login) {
        checks.push(Check::fail(
            "hydra-login-url",
            format!(
                "Hydra sends logins to {}, not {expected_login}",
                without_query(&login_location)
            ),
            set("urls.login"),
        ));
        return checks;
    }
    checks.push(Check::pass(
        "hydra-login-url",
        format!("Hydra sends logins to {expected_login}"),
    ));

    // Accept the probe login (the subject is a throw-away name), follow to the consent URL, then
    // reject the consent so nothing is granted.
    let challenge = Url::parse(&login_location)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "login_challenge")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let accept = admin(
        http.put(join(&config.hydra_admin_url, "/admin/oauth2/auth/requests/login/accept"))
            .query(&[("login_challenge", challenge.as_str())])
            // remember=true gives the probe browser a Hydra session, so the logout probe below
            // reaches the logout URL (without a session Hydra skips it); the probe logs out again.
            .json(&serde_json::json!({"subject": "bridge-doctor-probe", "remember": true, "remember_for": 60})),
        config,
    )
    .send()
    .await;
    let next = match accept {
        Ok(r) if r.status().is_success() => {
            r.json::<serde_json::Value>().await.ok().and_then(|v| {
                v.get("redirect_to")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
        }
        _ => None,
    };
    let consent_location = match next {
        Some(next) => match http.get(&next).send().await {
            Ok(response) => location(&response),
            Err(_) => String::new(),
        },
        None => String::new(),
    };
    let expected_consent = config.endpoint("consent");
    if points_at(&consent_location, &expected_consent) {
        checks.push(Check::pass(
            "hydra-consent-url",
            format!("Hydra sends consent to {expected_consent}"),
        ));
        if let Some(consent_challenge) = Url::parse(&consent_location).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "consent_challenge")
                .map(|(_, v)| v.into_owned())
        }) {
            let _ = admin(
                http.put(join(&config.hydra_admin_url, "/admin/oauth2/auth/requests/consent/reject"))
                    .query(&[("consent_challenge", consent_challenge.as_str())])
                    .json(&serde_json::json!({"error": "access_denied", "error_description": "doctor probe"})),
                config,
            )
            .send()
            .await;
        }
    } else {
        checks.push(Check::fail(
            "hydra-consent-url",
            format!(
                "Hydra sends consent to {}, not {expected_consent}",
                without_query(&consent_location)
            ),
            set("urls.consent"),
        ));
    }

    // An unknown client makes Hydra show its error URL.
    let mut bad = config.hydra_public_url.clone();
    bad.set_path(&format!("{}/oauth2/auth", bad.path().trim_end_matches('/')));
    bad.query_pairs_mut()
        .append_pair("client_id", "bridge-doctor-no-such-client")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "doctor-probe-state");
    let error_location = match http.get(bad.as_str()).send().await {
        Ok(response) => location(&response),
        Err(_) => String::new(),
    };
    let expected_error = config.endpoint("error");
    checks.push(if points_at(&error_location, &expected_error) {
        Check::pass(
            "hydra-error-url",
            format!("Hydra shows errors at {expected_error}"),
        )
    } else {
        Check::fail(
            "hydra-error-url",
            format!(
                "Hydra shows errors at {}, not {expected_error}",
                without_query(&error_location)
            ),
            set("urls.error"),
        )
    });

    // A browser-initiated logout goes to the logout URL.
    let mut logout = config.hydra_public_url.clone();
    logout.set_path(&format!(
        "{}/oauth2/sessions/logout",
        logout.path().trim_end_matches('/')
    ));
    let logout_location = match http.get(logout.as_str()).send().await {
        Ok(response) => location(&response),
        Err(_) => String::new(),
    };
    let expected_logout = config.endpoint("logout");
    checks.push(if points_at(&logout_location, &expected_logout) {
        if let Some(logout_challenge) = Url::parse(&logout_location).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "logout_challenge")
                .map(|(_, v)| v.into_owned())
        }) {
            let _ = admin(
                http.put(join(
                    &config.hydra_admin_url,
                    "/admin/oauth2/auth/requests/logout/accept",
                ))
                .query(&[("logout_challenge", logout_challenge.as_str())]),
                config,
            )
            .send()
            .await;
        }
        Check::pass(
            "hydra-logout-url",
            format!("Hydra sends logouts to {expected_logout}"),
        )
    } else {
        Check::fail(
            "hydra-logout-url",
            format!(
                "Hydra sends logouts to {}, not {expected_logout}",
                without_query(&logout_location)
            ),
            set("urls.logout"),
        )
    });
    checks
}

/// Whether a cookie set by `cookie_host` with `domain` (None: host-only) is sent to `target_host`.
pub fn cookie_reaches(cookie_host: &str, domain: Option<&str>, target_host: &str) -> bool {
    let target = target_host.to_ascii_lowercase();
    match domain.map(|d| d.trim_start_matches('.').to_ascii_lowercase()) {
        None => cookie_host.eq_ignore_ascii_case(&target),
        Some(domain) => target == domain || target.ends_with(&format!(".{domain}")),
    }
}

/// Asks Kratos for a browser login flow returning to the bridge: Kratos refuses return URLs that
/// `selfservice.allowed_return_urls` does not allow, and its cookies show their `Domain`.
async fn kratos_return_and_cookie(http: &reqwest::Client, config: &Config) -> Vec<Check> {
    let mut return_to = config.return_url();
    return_to.query_pairs_mut().append_pair("t", "doctor-probe");
    let mut flow = config.kratos_browser_url.clone();
    flow.set_path(&format!(
        "{}/self-service/login/browser",
        flow.path().trim_end_matches('/')
    ));
    flow.query_pairs_mut()
        .append_pair("return_to", return_to.as_str());
    let response = match http
        .get(flow.as_str())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => {
            return vec![Check::fail(
                "kratos-return-to",
                format!(
                    "{} unreachable ({})",
                    config.kratos_browser_url,
                    error_kind(&e)
                ),
                "check BRIDGE_KRATOS_BROWSER_URL",
            )]
        }
    };
    let status = response.status();
    let cookie_domains: Vec<Option<String>> = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("csrf_token") || v.starts_with("ory_kratos"))
        .map(|v| {
            v.split(';')
                .map(str::trim)
                .find_map(|part| {
                    part.strip_prefix("Domain=")
                        .or_else(|| part.strip_prefix("domain="))
                })
                .map(str::to_owned)
        })
        .collect();
    let body = response.text().await.unwrap_or_default();
    let mut checks = Vec::new();
    if status.is_success() {
        checks.push(Check::pass(
            "kratos-return-to",
            format!("Kratos accepts {} as return_to", config.return_url()),
        ));
    } else if body.contains("self_service_flow_return_to_forbidden") {
        checks.push(Check::fail(
            "kratos-return-to",
            format!("Kratos refuses {} as return_to", config.return_url()),
            format!(
                "add {} to Kratos selfservice.allowed_return_urls",
                config.return_url()
            ),
        ));
    } else {
        checks.push(Check::fail(
            "kratos-return-to",
            format!("Kratos answered {status} when creating a login flow"),
            "check BRIDGE_KRATOS_BROWSER_URL and Kratos' logs",
        ));
    }

    let kratos_host = config.kratos_browser_url.host_str().unwrap_or("");
    let bridge_host = config.public_base_url.host_str().unwrap_or("");
    let domain = cookie_domains.into_iter().flatten().next();
    checks.push(if cookie_reaches(kratos_host, domain.as_deref(), bridge_host) {
        Check::pass(
            "session-cookie",
            format!(
                "Kratos' cookies ({}) reach {bridge_host}",
                domain.map(|d| format!("Domain={d}")).unwrap_or_else(|| format!("host-only {kratos_host}"))
            ),
        )
    } else {
        Check::fail(
            "session-cookie",
            format!(
                "Kratos' cookies ({}) are not sent to the bridge's host {bridge_host}",
                domain.map(|d| format!("Domain={d}")).unwrap_or_else(|| format!("host-only {kratos_host}"))
            ),
            "set Kratos cookies.domain / session.cookie.domain to a parent domain of both hosts (and serve both under it)",
        )
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn policy_hook_keys_list_every_kid_current_first_without_the_secrets() {
        let secret = |fill: char| fill.to_string().repeat(43);
        let keyset = format!(
            r#"{{"current":"k2","keys":[{{"kid":"k1","secret":"{}"}},{{"kid":"k2","secret":"{}"}}]}}"#,
            secret('A'),
            secret('Q')
        );
        let line = policy_hook_keys(|name| (name == "BRIDGE_KEYSET_JSON").then(|| keyset.clone()))
            .await
            .expect("keys");
        let list = line.strip_prefix("HOOK_SIGNING_KEYS=").expect("prefix");
        let entries: Vec<(&str, &str)> =
            list.split(',').filter_map(|e| e.split_once(':')).collect();
        assert_eq!(
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            ["k2", "k1"]
        );
        for (_, hex) in &entries {
            assert_eq!(hex.len(), 64);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(entries[0].1, entries[1].1);
        assert!(!line.contains(&secret('A')) && !line.contains(&secret('Q')));
        assert!(policy_hook_keys(|_| None).await.is_err());
    }

    #[test]
    fn release_numbers_are_read_and_compared() {
        assert_eq!(release("v26.2.0"), Some((26, 2, 0)));
        assert_eq!(release("2.3.0-rc.1"), Some((2, 3, 0)));
        assert_eq!(release("master"), None);
        assert!(release("v1.3.0").is_some_and(|v| v < MIN_KRATOS));
        assert!(release("v26.2.0").is_some_and(|v| v >= MIN_HYDRA));
    }

    #[test]
    fn cookie_domain_rules() {
        assert!(cookie_reaches("127.0.0.1", None, "127.0.0.1"));
        assert!(!cookie_reaches("id.example.com", None, "auth.example.com"));
        assert!(cookie_reaches(
            "id.example.com",
            Some("example.com"),
            "auth.example.com"
        ));
        assert!(cookie_reaches(
            "id.example.com",
            Some(".example.com"),
            "example.com"
        ));
        assert!(!cookie_reaches(
            "id.example.com",
            Some("example.com"),
            "auth.example.net"
        ));
        assert!(!cookie_reaches(
            "id.example.com",
            Some("example.com"),
            "badexample.com"
        ));
    }

    #[test]
    fn location_matching_ignores_the_query_only() {
        let expected = Url::parse("https://auth.example.com/prod/login").expect("url");
        assert!(points_at(
            "https://auth.example.com/prod/login?login_challenge=x",
            &expected
        ));
        assert!(!points_at(
            "https://auth.example.com/login?login_challenge=x",
            &expected
        ));
        assert!(!points_at("http://auth.example.com/prod/login", &expected));
        assert!(!points_at("", &expected));
    }

    #[test]
    fn lines_show_the_fix() {
        let line = Check::fail("x", "broken", "mend it").line();
        assert!(line.starts_with("FAIL") && line.contains("fix: mend it"));
        assert!(Check::pass("x", "fine").line().starts_with("PASS"));
    }
}
