//! One headless Chromium per browser, driven through its own chromedriver.
//!
//! Chrome's performance log is switched on, so every document the browser requested (redirects
//! included, which WebDriver itself never shows) is known with its status and headers: that is
//! how the scenarios prove where a browser went, capture the bridge's return URL, and check the
//! headers of every page the functions served.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use url::Url;

use crate::stack::{GoogleUser, Stack, WAIT};

/// The browser and driver binaries (Debian's `chromium` and `chromium-driver`).
fn chromium_binary() -> String {
    std::env::var("E2E_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}
fn chromedriver_binary() -> String {
    std::env::var("E2E_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

/// `<target>/test-results`, where screenshots, page sources and driver logs go.
pub fn results_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::stack::repo_root().join("target"))
        .join("test-results")
}

/// A running chromedriver (own process group, so Chromium goes with it) and the browser's
/// profile directory; both are cleaned up on drop.
#[derive(Debug)]
pub(crate) struct Driver {
    child: Child,
    pub(crate) port: u16,
    profile: PathBuf,
}

impl Driver {
    fn start(label: &str) -> Self {
        let logs = results_dir().join("logs");
        std::fs::create_dir_all(&logs).expect("create test-results/logs");
        let profile = results_dir()
            .join("profiles")
            .join(format!("{label}-{}", std::process::id()));
        let mut last_error = String::new();
        // A port found free can be taken before chromedriver binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = File::create(logs.join(format!("{label}-chromedriver.log")))
                .expect("chromedriver log file");
            let err = log.try_clone().expect("log handle");
            let child = Command::new(chromedriver_binary())
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} ({e}); scripts/lib/install.sh installs chromium-driver",
                        chromedriver_binary()
                    )
                });
            let _ = std::fs::remove_dir_all(&profile);
            std::fs::create_dir_all(&profile).expect("create browser profile dir");
            let mut driver = Self {
                child,
                port,
                profile: profile.clone(),
            };
            match driver.wait_listening() {
                Ok(()) => return driver,
                Err(e) => last_error = e,
            }
        }
        panic!("chromedriver did not start: {last_error}");
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err("chromedriver did not listen within 15 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Chromedriver's log endpoint (`POST /session/{id}/se/log`), which fantoccini has no call for.
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(&self, base_url: &Url, session_id: Option<&str>) -> Result<Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": self.0 }).to_string()),
        )
    }
}

/// One HTTP response to a top-level document request (a page or a redirect).
#[derive(Debug, Clone)]
pub struct Document {
    pub url: Url,
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
}

impl Document {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The `Location` of a redirect, resolved against the document's URL.
    pub fn location(&self) -> Option<Url> {
        self.header("location").and_then(|l| self.url.join(l).ok())
    }
}

/// What the browser requested and received, in order.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Every top-level document URL requested (each hop of a redirect chain).
    pub requests: Vec<Url>,
    /// Every response to those requests.
    pub responses: Vec<Document>,
}

/// A position in a browser's history, to look at what happened after it.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    requests: usize,
    responses: usize,
}

/// One browser.
#[derive(Clone)]
pub struct Browser {
    pub client: Client,
    pub label: String,
    stack: Stack,
    history: Arc<Mutex<History>>,
    pub(crate) _driver: Arc<Driver>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("label", &self.label)
            .finish()
    }
}

impl Browser {
    /// A fresh browser (new profile, no cookies) with its own chromedriver.
    pub(crate) async fn launch(label: &str, stack: Stack) -> Self {
        let driver = Arc::new(Driver::start(label));
        let profile = driver.profile.display().to_string();
        let capabilities: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:loggingPrefs": { "performance": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--window-size=1100,900",
                    format!("--user-data-dir={profile}"),
                ],
                "perfLoggingPrefs": { "enableNetwork": true, "enablePage": false },
            },
        }))
        .expect("capabilities");
        let webdriver = format!("http://127.0.0.1:{}/", driver.port);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("new Chromium session via {webdriver}: {e}"));
        Self {
            client,
            label: label.to_owned(),
            stack,
            history: Arc::default(),
            _driver: driver,
        }
    }

    /// The stack this browser talks to.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    // --- navigation and elements ---------------------------------------------------------

    /// Opens `url` (waits for the load to finish, not for any particular page).
    pub async fn goto(&self, url: &Url) {
        self.client
            .goto(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("[{}] goto {url}: {e}", self.label));
    }

    /// The URL shown now.
    pub async fn url(&self) -> Url {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("[{}] current URL: {e}", self.label))
    }

    /// The page's visible text (for failure messages and assertions).
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until an element with `data-testid` = `testid` is present.
    pub async fn wait_for(&self, testid: &str) -> Element {
        self.wait_for_css(&testid_css(testid)).await
    }

    /// Waits until an element matching the CSS selector is present: for what Kratos names
    /// (`input[name="totp_code"]`) and the login site passes through without a testid.
    pub async fn wait_for_css(&self, css: &str) -> Element {
        match self.find_css_within_wait(css).await {
            Some(element) => element,
            None => {
                self.fail(&format!("no element {css} within {WAIT:?}"))
                    .await
            }
        }
    }

    /// Like [`wait_for_css`](Self::wait_for_css) on a page that shows a secret (a TOTP key): a
    /// failure names the page's path only, never its text or query.
    pub async fn wait_for_css_on_secret_page(&self, css: &str) -> Element {
        match self.find_css_within_wait(css).await {
            Some(element) => element,
            None => {
                let path = self.url().await.path().to_owned();
                panic!(
                    "[{}] no element {css} within {WAIT:?} on {path} (page text withheld: it shows a secret)",
                    self.label
                )
            }
        }
    }

    async fn find_css_within_wait(&self, css: &str) -> Option<Element> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return Some(element);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until one of the `testids` is present and says which.
    pub async fn wait_for_any(&self, testids: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            for testid in testids {
                if self.exists(testid).await {
                    return (*testid).to_owned();
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("none of {testids:?} appeared within {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether an element with that testid is present right now.
    pub async fn exists(&self, testid: &str) -> bool {
        self.client
            .find(Locator::Css(&testid_css(testid)))
            .await
            .is_ok()
    }

    /// Waits for the element, then clicks it.
    pub async fn click(&self, testid: &str) {
        let element = self.wait_for(testid).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("[{}] click {testid}: {e}", self.label));
    }

    /// Waits for the input, clears it and types `text`.
    pub async fn type_into(&self, testid: &str, text: &str) {
        let element = self.wait_for(testid).await;
        let _ = element.clear().await;
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("[{}] type into {testid}: {e}", self.label));
    }

    /// Waits for the element and returns its text.
    pub async fn text(&self, testid: &str) -> String {
        self.wait_for(testid)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("[{}] text of {testid}: {e}", self.label))
    }

    /// Waits until the current URL satisfies `accept`; `what` names it in the failure.
    pub async fn wait_for_url(&self, what: &str, accept: impl Fn(&Url) -> bool) -> Url {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if accept(&url) {
                return url;
            }
            if Instant::now() > deadline {
                self.fail(&format!("URL never became {what} within {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Panics with the current URL and page text.
    pub async fn fail(&self, why: &str) -> ! {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = self.body_text().await;
        panic!(
            "[{}] {why}\n  current URL: {url}\n  page text: {}",
            self.label,
            text.chars().take(1500).collect::<String>()
        );
    }

    /// A cookie's value (127.0.0.1 cookies are shared by every port).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_all_cookies()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// The browser's Kratos cookies as a `Cookie` header (empty when none).
    pub async fn kratos_cookie_header(&self) -> String {
        self.client
            .get_all_cookies()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.name().starts_with("ory_kratos_"))
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sets a host-only cookie for the host of the page shown now.
    pub async fn set_cookie(&self, name: &str, value: &str) {
        let host = self
            .url()
            .await
            .host_str()
            .unwrap_or("127.0.0.1")
            .to_owned();
        let cookie = fantoccini::cookies::Cookie::build((name.to_owned(), value.to_owned()))
            .domain(host)
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .build();
        self.client
            .add_cookie(cookie)
            .await
            .unwrap_or_else(|e| panic!("[{}] add cookie {name}: {e}", self.label));
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Option<Vec<u8>> {
        self.client.screenshot().await.ok()
    }

    /// The page source.
    pub async fn source(&self) -> Option<String> {
        self.client.source().await.ok()
    }

    // --- history (Chrome performance log) ------------------------------------------------

    /// Everything seen so far.
    pub async fn history(&self) -> History {
        self.drain_log().await;
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The current end of the history.
    pub async fn mark(&self) -> Mark {
        let history = self.history().await;
        Mark {
            requests: history.requests.len(),
            responses: history.responses.len(),
        }
    }

    /// What happened after `mark`.
    pub async fn since(&self, mark: Mark) -> History {
        let history = self.history().await;
        History {
            requests: history
                .requests
                .get(mark.requests..)
                .unwrap_or(&[])
                .to_vec(),
            responses: history
                .responses
                .get(mark.responses..)
                .unwrap_or(&[])
                .to_vec(),
        }
    }

    async fn drain_log(&self) {
        let Ok(entries) = self.client.issue_cmd(GetLog("performance")).await else {
            return;
        };
        let Ok(mut history) = self.history.lock() else {
            return;
        };
        for entry in entries.as_array().into_iter().flatten() {
            let Some(message) = entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            else {
                continue;
            };
            let message = &message["message"];
            let params = &message["params"];
            if params["type"].as_str() != Some("Document") {
                continue;
            }
            match message["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    if let Some(document) = document(&params["redirectResponse"]) {
                        history.responses.push(document);
                    }
                    if let Some(url) = params["request"]["url"]
                        .as_str()
                        .and_then(|u| Url::parse(u).ok())
                    {
                        history.requests.push(url);
                    }
                }
                Some("Network.responseReceived") => {
                    if let Some(document) = document(&params["response"]) {
                        history.responses.push(document);
                    }
                }
                _ => {}
            }
        }
    }

    // --- journeys ------------------------------------------------------------------------

    /// Starts a login at the demo client.
    pub async fn start(&self, client_id: &str, scope: Option<&str>, prompt: Option<&str>) {
        let params: Vec<(&str, &str)> = [("scope", scope), ("prompt", prompt)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        self.start_with(client_id, &params).await;
    }

    /// Starts a login at the demo client with more of its `/start` parameters (`scope`,
    /// `prompt`, `max_age`, `acr_values`).
    pub async fn start_with(&self, client_id: &str, params: &[(&str, &str)]) {
        let mut url = self.stack.demo("start");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .extend_pairs(params);
        self.goto(&url).await;
    }

    /// A Kratos session without any OAuth2 client: the login site's own sign-in with Google
    /// (registering the account on the way), back on the login site's start page.
    pub async fn sign_in_at_login_site(&self, user: &GoogleUser) {
        let site = self.stack.login_site.clone();
        self.goto(&site.join("login").expect("login site URL"))
            .await;
        self.wait_for_login_site().await;
        self.sign_in_with_google(user).await;
        self.wait_for_url("the login site's start page", |u| {
            same_origin(u, &site) && u.path() == "/"
        })
        .await;
    }

    /// Waits for the reference login site's sign-in page.
    pub async fn wait_for_login_site(&self) {
        let site = self.stack.login_site.clone();
        self.wait_for_url("the login site", |u| same_origin(u, &site))
            .await;
        self.wait_for("provider-google").await;
    }

    /// From the login site: "Continue with Google", then the mock's authorize form.
    pub async fn sign_in_with_google(&self, user: &GoogleUser) {
        self.click("provider-google").await;
        let mock = self.stack.mock_google.clone();
        self.wait_for_url("the mock Google authorize page", |u| same_origin(u, &mock))
            .await;
        let deadline = Instant::now() + WAIT;
        let field = loop {
            if let Ok(field) = self.client.find(Locator::Css("input[name=\"sub\"]")).await {
                break field;
            }
            if Instant::now() > deadline {
                self.fail("the mock Google page has no `sub` field").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = field.clear().await;
        field
            .send_keys(&user.sub)
            .await
            .unwrap_or_else(|e| panic!("[{}] type the Google subject: {e}", self.label));
        let form = self
            .client
            .form(Locator::Css("form"))
            .await
            .unwrap_or_else(|e| panic!("[{}] mock Google form: {e}", self.label));
        // The mock's first submit button authorizes (a second one, `action=deny`, refuses).
        let button = form
            .submit_with(Locator::Css(
                "button[type=\"submit\"]:not([value=\"deny\"]), input[type=\"submit\"]:not([value=\"deny\"])",
            ))
            .await;
        if button.is_err() {
            form.submit()
                .await
                .unwrap_or_else(|e| panic!("[{}] submit the mock form: {e}", self.label));
        }
        self.wait_for_url("back from the mock Google", |u| !same_origin(u, &mock))
            .await;
    }

    /// From the login site: registration link, phone number, SMS code.
    pub async fn sign_up_with_sms(&self, phone: &str) {
        self.click("registration-link").await;
        let site = self.stack.login_site.clone();
        self.wait_for_url("the registration page", |u| {
            same_origin(u, &site) && u.path() == "/registration"
        })
        .await;
        self.enter_phone_and_code(phone).await;
    }

    /// From the login site: phone number, SMS code.
    pub async fn sign_in_with_sms(&self, phone: &str) {
        self.enter_phone_and_code(phone).await;
    }

    async fn enter_phone_and_code(&self, phone: &str) {
        let before = self.stack.last_sms_id(phone).await;
        self.type_into("phone-input", phone).await;
        self.click("submit-identifier").await;
        // Kratos' registration may first ask which credential to use ("Send sign up code",
        // with the phone now a hidden field): press that once, then expect the code field.
        let deadline = Instant::now() + WAIT;
        let mut chose_method = false;
        while !self.exists("code-input").await {
            if !chose_method && !self.exists("phone-input").await {
                if let Ok(button) = self
                    .client
                    .find(Locator::Css(&testid_css("submit-identifier")))
                    .await
                {
                    chose_method = button.click().await.is_ok();
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("no code field for {phone} within {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let code = self.stack.wait_for_sms_code(phone, before).await;
        self.type_into("code-input", &code).await;
        self.click("submit-code").await;
    }

    /// Waits for the demo client's claims page and returns the ID token claims.
    pub async fn wait_for_claims(&self) -> Value {
        let text = self.text("claims-json").await;
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("[{}] claims-json is not JSON ({e}): {text}", self.label))
    }

    /// The granted scope shown on the claims page.
    pub async fn granted_scope(&self) -> Vec<String> {
        self.text("granted-scope")
            .await
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

fn testid_css(testid: &str) -> String {
    format!("[data-testid=\"{testid}\"]")
}

/// Same scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn document(response: &Value) -> Option<Document> {
    let url = Url::parse(response["url"].as_str()?).ok()?;
    let status = u16::try_from(response["status"].as_u64()?).ok()?;
    let headers = response["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Document {
        url,
        status,
        headers,
    })
}

impl History {
    /// Whether any document was requested from `origin`.
    pub fn visited(&self, origin: &Url) -> bool {
        self.requests.iter().any(|u| same_origin(u, origin))
    }

    /// Requested URLs on `origin` with exactly `path`.
    pub fn requests_to(&self, origin: &Url, path: &str) -> Vec<Url> {
        self.requests
            .iter()
            .filter(|u| same_origin(u, origin) && u.path() == path)
            .cloned()
            .collect()
    }

    /// Responses from `origin` with exactly `path`.
    pub fn responses_from(&self, origin: &Url, path: &str) -> Vec<Document> {
        self.responses
            .iter()
            .filter(|d| same_origin(&d.url, origin) && d.url.path() == path)
            .cloned()
            .collect()
    }

    /// The value of query parameter `name` of the first request to `origin` + `path`.
    pub fn first_param(&self, origin: &Url, path: &str, name: &str) -> Option<String> {
        self.requests_to(origin, path).iter().find_map(|u| {
            u.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    }
}
