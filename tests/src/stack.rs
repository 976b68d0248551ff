//! The running local stack: where its parts listen (from the env file `scripts/lib/stack.sh`
//! writes) and the admin calls the scenarios need (mock Google users, SMS codes, Kratos
//! identities and sessions, Hydra clients and login requests).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

/// What every failure to find or reach the stack says.
pub const NEEDS_STACK: &str = "end-to-end tests need the local stack: run ./scripts/test";

/// Env var naming the main stack's env file (default `<repo>/.stack/env`).
pub const STACK_ENV_VAR: &str = "BRIDGE_STACK_ENV";
/// Env var naming the env file of the second stack with a short Hydra login/consent TTL.
pub const SHORT_TTL_STACK_ENV_VAR: &str = "BRIDGE_STACK_ENV_SHORT_TTL";

/// How long a test waits for a page, an element, an SMS.
pub const WAIT: Duration = Duration::from_secs(30);

/// The repository root (this crate lives in `<repo>/tests`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Parses the `export NAME='value'` lines of a stack env file (POSIX single quotes, with
/// `'\''` for a quote inside a value). Comments and other lines are ignored.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("export ") else {
            continue;
        };
        let Some((name, raw)) = rest.split_once('=') else {
            continue;
        };
        vars.insert(name.trim().to_owned(), shell_unquote(raw));
    }
    vars
}

fn shell_unquote(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '\'') => quoted = false,
            (true, c) => out.push(c),
            (false, '\'') => quoted = true,
            (false, '\\') => out.extend(chars.next()),
            (false, c) => out.push(c),
        }
    }
    out
}

/// A Google account at the mock provider.
#[derive(Debug, Clone)]
pub struct GoogleUser {
    /// What is typed into the mock's authorize form.
    pub sub: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
}

impl GoogleUser {
    /// A user nobody has used yet (unique subject and e-mail).
    pub fn unique(tag: &str) -> Self {
        let id = crate::unique_id(tag);
        Self {
            email: format!("{id}@e2e.example.com"),
            sub: format!("google-{id}"),
            given_name: "Grace".to_owned(),
            family_name: format!("Hopper-{tag}"),
        }
    }
}

/// The local stack's parts and an HTTP client for their APIs.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The env file this was read from.
    pub env_file: PathBuf,
    pub kratos_public: Url,
    pub kratos_admin: Url,
    pub hydra_public: Url,
    pub hydra_admin: Url,
    pub functions: Url,
    pub login_site: Url,
    pub demo_client: Url,
    pub mock_google: Url,
    pub sms_sink: Url,
    /// Hydra's `ttl.login_consent_request` as the stack declares it.
    pub login_consent_ttl: Duration,
    /// Every variable of the env file.
    pub vars: HashMap<String, String>,
    http: reqwest::Client,
}

impl Stack {
    /// The main stack: `$BRIDGE_STACK_ENV`, else `<repo>/.stack/env`. Panics loudly when it is
    /// missing or a part does not answer.
    pub async fn main() -> Self {
        let path = std::env::var_os(STACK_ENV_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".stack").join("env"));
        Self::load(&path).await
    }

    /// The second stack with a short login/consent TTL, named by `$BRIDGE_STACK_ENV_SHORT_TTL`.
    pub async fn short_ttl() -> Self {
        let Some(path) = std::env::var_os(SHORT_TTL_STACK_ENV_VAR) else {
            panic!(
                "{NEEDS_STACK}\n{SHORT_TTL_STACK_ENV_VAR} is not set: this scenario needs a second \
                 stack with a short Hydra ttl.login_consent_request (scripts/test starts it)"
            );
        };
        Self::load(Path::new(&path)).await
    }

    /// Reads the env file at `path` and checks that every part answers.
    pub async fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "\n\n*** {NEEDS_STACK} ***\ncannot read the stack env file {}: {e}\n",
                path.display()
            )
        });
        let vars = parse_env_file(&text);
        let url = |name: &str| -> Url {
            let raw = vars.get(name).unwrap_or_else(|| {
                panic!(
                    "\n\n*** {NEEDS_STACK} ***\n{} has no {name}\n",
                    path.display()
                )
            });
            Url::parse(raw)
                .unwrap_or_else(|e| panic!("{}: {name}={raw:?} is not a URL: {e}", path.display()))
        };
        let seconds = |name: &str, default: u64| -> Duration {
            Duration::from_secs(
                vars.get(name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default),
            )
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let stack = Self {
            env_file: path.to_path_buf(),
            kratos_public: url("KRATOS_PUBLIC_URL"),
            kratos_admin: url("KRATOS_ADMIN_URL"),
            hydra_public: url("HYDRA_PUBLIC_URL"),
            hydra_admin: url("HYDRA_ADMIN_URL"),
            functions: url("FUNCTIONS_URL"),
            login_site: url("LOGIN_SITE_URL"),
            demo_client: url("DEMO_CLIENT_URL"),
            mock_google: url("MOCK_GOOGLE_URL"),
            sms_sink: url("SMS_SINK_URL"),
            login_consent_ttl: seconds("BRIDGE_HYDRA_LOGIN_CONSENT_TTL_SECONDS", 1800),
            vars,
            http,
        };
        stack.check().await;
        stack
    }

    /// Panics unless every part answers. Also calls each function once, so that `cargo lambda
    /// watch` has started them before a browser waits on them (once per env file and process).
    async fn check(&self) {
        static CHECKED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
        let checked = CHECKED.get_or_init(Default::default);
        if checked
            .lock()
            .map(|set| set.contains(&self.env_file))
            .unwrap_or(false)
        {
            return;
        }
        let probes = [
            ("Kratos public", self.kratos_public.join("health/ready")),
            ("Kratos admin", self.kratos_admin.join("admin/health/ready")),
            ("Hydra public", self.hydra_public.join("health/ready")),
            ("Hydra admin", self.hydra_admin.join("health/ready")),
            (
                "mock Google",
                self.mock_google.join(".well-known/openid-configuration"),
            ),
            ("SMS sink", self.sms_sink.join("health")),
            ("login site", self.login_site.join("style.css")),
            ("demo client", self.demo_client.join("style.css")),
        ];
        for (part, url) in probes {
            let url = url.expect("probe URL");
            self.expect_answer(part, Method::GET, &url, Duration::from_secs(10), |s| {
                s.is_success()
            })
            .await;
        }
        // The functions compile on their first call under `cargo lambda watch`: be patient.
        for (route, status) in [
            ("error?error=e2e_probe", 200),
            ("login", 400),
            ("login/return", 400),
            ("consent", 400),
            ("logout", 400),
        ] {
            let url = self.functions.join(route).expect("function URL");
            self.expect_answer(
                &format!("function /{route}"),
                Method::GET,
                &url,
                Duration::from_secs(600),
                |s| s.as_u16() == status,
            )
            .await;
        }
        // The reference policy hook, where this stack's bridge asks it: started by its first
        // call too, which must not be a sign-in's (the bridge's hook timeout is seconds). An
        // unsigned POST is refused with 401.
        let hook = self.function("policy-hook");
        if self.vars.get("BRIDGE_POLICY_HOOK_URL").map(String::as_str) == Some(hook.as_str()) {
            self.expect_answer(
                "the policy hook",
                Method::POST,
                &hook,
                Duration::from_secs(600),
                |s| s == StatusCode::UNAUTHORIZED,
            )
            .await;
        }
        if let Ok(mut set) = checked.lock() {
            set.insert(self.env_file.clone());
        }
    }

    async fn expect_answer(
        &self,
        part: &str,
        method: Method,
        url: &Url,
        patience: Duration,
        ok: impl Fn(StatusCode) -> bool,
    ) {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(patience)
            .build()
            .expect("HTTP client");
        let last = loop {
            let outcome = client.request(method.clone(), url.clone()).send().await;
            let last = match outcome {
                Ok(response) if ok(response.status()) => return,
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) => format!("{e}"),
            };
            // Connection refused means the part is not running: no point waiting long.
            if started.elapsed() > Duration::from_secs(5) {
                break last;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        panic!(
            "\n\n*** {NEEDS_STACK} ***\n{part} at {url} does not answer as expected ({last}); \
             stack env file {}\n",
            self.env_file.display()
        );
    }

    /// The plain HTTP client (no redirects followed).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A URL of the demo client.
    pub fn demo(&self, path_and_query: &str) -> Url {
        self.demo_client.join(path_and_query).expect("demo URL")
    }

    /// A URL of the functions.
    pub fn function(&self, path_and_query: &str) -> Url {
        self.functions.join(path_and_query).expect("function URL")
    }

    /// Creates (or replaces) the mock Google account `user`.
    pub async fn put_google_user(&self, user: &GoogleUser) {
        let url = self
            .mock_google
            .join(&format!("users/{}", user.sub))
            .expect("mock user URL");
        let claims = json!({
            "email": user.email,
            "email_verified": true,
            "given_name": user.given_name,
            "family_name": user.family_name,
            "name": format!("{} {}", user.given_name, user.family_name),
        });
        let response = self
            .http
            .put(url)
            .json(&claims)
            .send()
            .await
            .expect("mock Google answers");
        assert!(
            response.status().is_success(),
            "PUT mock Google user {}: HTTP {}",
            user.sub,
            response.status()
        );
    }

    /// The SMS sink's messages to `to`, oldest first.
    pub async fn sms_messages(&self, to: &str) -> Vec<Value> {
        let mut url = self.sms_sink.join("messages").expect("sink URL");
        url.query_pairs_mut().append_pair("to", to);
        self.get_json(url)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The id of the newest message to `to` (0 when none), to wait for a newer one later.
    pub async fn last_sms_id(&self, to: &str) -> u64 {
        self.sms_messages(to)
            .await
            .iter()
            .filter_map(|m| m["id"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// Polls the SMS sink until a message to `to` newer than `after` carries a code.
    pub async fn wait_for_sms_code(&self, to: &str, after: u64) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let code = self
                .sms_messages(to)
                .await
                .iter()
                .filter(|m| m["id"].as_u64().unwrap_or(0) > after)
                .filter_map(|m| m["code"].as_str().map(str::to_owned))
                .next_back();
            if let Some(code) = code {
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "no SMS code for {to} reached the sink at {} within {WAIT:?}",
                self.sms_sink
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// All Kratos identities (admin API, every page).
    pub async fn identities(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut next = Some(
            self.kratos_admin
                .join("admin/identities?page_size=500")
                .expect("identities URL"),
        );
        while let Some(url) = next.take() {
            let response = self
                .http
                .get(url.clone())
                .send()
                .await
                .expect("Kratos admin answers");
            assert!(
                response.status().is_success(),
                "GET {url}: HTTP {}",
                response.status()
            );
            next = next_link(response.headers(), &url);
            let page: Value = response.json().await.expect("identities JSON");
            let items = page.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            all.extend(items);
        }
        all
    }

    /// Identities whose trait `trait_name` equals `value`.
    pub async fn identities_with_trait(&self, trait_name: &str, value: &str) -> Vec<Value> {
        self.identities()
            .await
            .into_iter()
            .filter(|i| i["traits"][trait_name].as_str() == Some(value))
            .collect()
    }

    /// One identity with its credentials, or `None` for 404.
    pub async fn identity(&self, id: &str) -> Option<Value> {
        let url = self
            .kratos_admin
            .join(&format!(
                "admin/identities/{id}?include_credential=oidc&include_credential=code"
            ))
            .expect("identity URL");
        let response = self
            .http
            .get(url)
            .send()
            .await
            .expect("Kratos admin answers");
        match response.status() {
            StatusCode::NOT_FOUND => None,
            s if s.is_success() => Some(response.json().await.expect("identity JSON")),
            s => panic!("GET identity {id}: HTTP {s}"),
        }
    }

    /// Kratos `whoami` with `cookie` as the Cookie header: the status and the body.
    pub async fn whoami(&self, cookie: &str) -> (StatusCode, Value) {
        let url = self
            .kratos_public
            .join("sessions/whoami")
            .expect("whoami URL");
        let response = self
            .http
            .get(url)
            .header(reqwest::header::COOKIE, cookie)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .expect("Kratos public answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Hydra's view of a login request: 200 while it waits for an answer, 410 once it was
    /// accepted or rejected (`redirect_to` in the body), 401/404 when expired or unknown.
    pub async fn hydra_login_request(&self, challenge: &str) -> (StatusCode, Value) {
        let mut url = self
            .hydra_admin
            .join("admin/oauth2/auth/requests/login")
            .expect("login request URL");
        url.query_pairs_mut()
            .append_pair("login_challenge", challenge);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .expect("Hydra admin answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers an extra public OAuth2 client (PKCE, redirect to the demo client) and returns
    /// its id. `extra` is merged into the registration body.
    pub async fn create_hydra_client(&self, tag: &str, extra: Value) -> String {
        let id = crate::unique_id(tag);
        let mut body = json!({
            "client_id": id,
            "client_name": format!("E2E {tag}"),
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "openid offline_access email phone profile",
            "redirect_uris": [self.demo("callback").as_str()],
            "post_logout_redirect_uris": [self.demo("logged-out").as_str()],
            "token_endpoint_auth_method": "none",
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let url = self.hydra_admin.join("admin/clients").expect("clients URL");
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("Hydra admin answers");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "POST /admin/clients: HTTP {status}: {answer}"
        );
        answer["client_id"].as_str().unwrap_or(&id).to_owned()
    }

    /// A plain GET (no redirects followed, no cookies) for header checks.
    pub async fn get(&self, url: &Url) -> reqwest::Response {
        self.http
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    async fn get_json(&self, url: Url) -> Value {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: HTTP {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }
}

/// The `rel="next"` target of a `Link` header, resolved against `base`.
fn next_link(headers: &reqwest::header::HeaderMap, base: &Url) -> Option<Url> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            base.join(part.get(start..end)?).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stack_env_lines() {
        let vars = parse_env_file(
            "# comment\nexport A='http://127.0.0.1:1'\nexport B='it'\\''s'\nexport C=''\nnoise\n",
        );
        assert_eq!(vars["A"], "http://127.0.0.1:1");
        assert_eq!(vars["B"], "it's");
        assert_eq!(vars["C"], "");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn follows_next_links() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            "</admin/identities?page_size=2&page_token=x>; rel=\"next\", </admin/identities?page_size=2>; rel=\"first\""
                .parse()
                .expect("header"),
        );
        let base = Url::parse("http://127.0.0.1:9/admin/identities").expect("url");
        assert_eq!(
            next_link(&headers, &base).map(|u| u.to_string()),
            Some("http://127.0.0.1:9/admin/identities?page_size=2&page_token=x".to_owned())
        );
    }
}
