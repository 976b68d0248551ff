//! Replay races and injected faults against the real local stack (Hydra, Kratos, moto as
//! DynamoDB), with the handlers in-process and the real clients (`HydraClient`, `KratosClient`,
//! `DynamoReplayStore`) built from `Config::from_lookup` and `build_http_client`.
//!
//! - Replay race: one fresh token used by 16 concurrent requests, from 16 different Kratos
//!   sessions and from one session, 100 rounds each (`BRIDGE_RACE_ROUNDS`), through the real
//!   DynamoDB adapter and conditional write on moto: exactly one claim and one Hydra accept per
//!   round. moto's requests are serialised by a proxy, because moto (unlike DynamoDB) checks a
//!   condition and writes the item without a lock and can grant two claims under load.
//! - Faults: a small HTTP-aware TCP proxy sits between the handlers and each upstream. For each
//!   handler, each upstream it calls, each step (the n-th call to that upstream) and each fault
//!   (connection closed, no answer before the timeout, 500, malformed JSON, request delivered but
//!   answer lost), the handler must answer a clear 503/502 (or its documented fallback), never a
//!   500, never accept on a guess, and the user's same link must work once the proxy passes
//!   traffic again.
//!
//! Each test prints one summary line (`races: ...`, `faults: ...`), also appended to the file
//! named by `BRIDGE_SECURITY_REPORT`. All tests are `#[ignore]`d: `./scripts/test` runs them
//! with the stack up. The stack's env file is `BRIDGE_STACK_ENV` (default `<repo>/.stack/env`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bridge::clock::system_clock;
use bridge::config::{Config, Needs};
use bridge::digest::sha256_hex;
use bridge::dynamo::DynamoReplayStore;
use bridge::handlers::{consent, login, login_return, logout};
use bridge::hydra::{HydraAdmin, HydraClient};
use bridge::keyset::KeySet;
use bridge::kratos::{KratosApi, KratosClient};
use bridge::replay::{Claim, ClaimOutcome, ReplayStore};
use bridge::testkit::{
    body, codec, encode, get, key_set, location, post_form, report, return_link, FakeHydra,
    FakeKratos,
};
use bridge::token::{browser_binding_hash, ReturnToPayload};
use bridge::upstream::{build_http_client, UpstreamError};
use lambda_http::{Body, Response};
use sha2::{Digest, Sha256};

// ------------------------------------------------------------------------------------------
// The stack

/// The variables of the running stack's env file (`export NAME='value'` lines).
struct Stack(HashMap<String, String>);

impl Stack {
    fn load() -> Self {
        let path = std::env::var("BRIDGE_STACK_ENV")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.stack/env").to_owned());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the local stack is not running: cannot read its env file {path} ({e}). \
                 Run ./scripts/test, or start a stack and set BRIDGE_STACK_ENV"
            )
        });
        let mut vars = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("export ") else {
                continue;
            };
            let Some((name, quoted)) = rest.split_once('=') else {
                continue;
            };
            let value = quoted
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(quoted)
                .replace("'\\''", "'");
            vars.insert(name.to_owned(), value);
        }
        let stack = Self(vars);
        // The DynamoDB adapter reads credentials and region the way Lambda provides them.
        static AWS: Once = Once::new();
        AWS.call_once(|| {
            for name in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                std::env::set_var(name, stack.get(name));
            }
        });
        stack
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the stack's env file"))
    }

    fn addr(&self, url_name: &str) -> SocketAddr {
        let url = url::Url::parse(self.get(url_name)).expect("stack URL");
        format!(
            "{}:{}",
            url.host_str().expect("host"),
            url.port_or_known_default().expect("port")
        )
        .parse()
        .expect("socket address")
    }

    /// The stack's key set.
    fn keys(&self) -> KeySet {
        key_set(self.get("BRIDGE_KEYSET_JSON"))
    }

    /// The functions' settings, with `overrides` winning over the stack's values.
    fn config(&self, overrides: &[(&str, String)]) -> Config {
        Config::from_lookup(
            |name| {
                overrides
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| self.0.get(name).cloned())
            },
            Needs { replay_table: true },
        )
        .expect("config from the stack's env")
    }
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}",
        &sha256_hex(&format!("{n}-{nanos}-{prefix}"))[..24]
    )
}

/// A location short enough for a log line.
fn short(location: &str) -> String {
    location.chars().take(100).collect()
}

// ------------------------------------------------------------------------------------------
// Replay race

/// The replay store with a count of the claims it granted, per token: the bridge may tell Hydra
/// to accept only after a granted claim.
struct CountingStore {
    inner: DynamoReplayStore,
    granted: Mutex<HashMap<String, usize>>,
}

#[async_trait]
impl ReplayStore for CountingStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, UpstreamError> {
        let outcome = self.inner.claim(claim).await?;
        if outcome == ClaimOutcome::Claimed {
            *self
                .granted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(claim.key.clone())
                .or_default() += 1;
        }
        Ok(outcome)
    }
    async fn complete(&self, claim: &Claim, redirect_to: &str) -> Result<(), UpstreamError> {
        self.inner.complete(claim, redirect_to).await
    }
    async fn release(&self, claim: &Claim) -> Result<(), UpstreamError> {
        self.inner.release(claim).await
    }
}

const RACERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn replay_race_on_moto_has_one_winner_per_round() {
    let stack = Stack::load();
    // Rounds per mode: 2 x 100 = 200 rounds by default (about a minute on 2 cores).
    let rounds: usize = std::env::var("BRIDGE_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // moto through a proxy that serialises its requests: DynamoDB's atomic conditional write.
    let moto = Proxy::serialized(stack.addr("MOTO_URL"));
    let config = stack.config(&[("BRIDGE_DYNAMODB_ENDPOINT", moto.url.clone())]);
    let store = Arc::new(CountingStore {
        inner: DynamoReplayStore::from_config(
            &config,
            build_http_client(&config).expect("http client"),
        )
        .expect("replay store"),
        granted: Mutex::new(HashMap::new()),
    });
    // A Hydra that only accepts logins, slowly enough that racing requests overlap, each login
    // to its own destination.
    let hydra = Arc::new(FakeHydra::default());
    hydra.set_accept_delay(Duration::from_millis(15));
    hydra.set_redirect(&format!(
        "{}/oauth2/auth?login_verifier={{challenge}}",
        config.hydra_public_url.as_str().trim_end_matches('/')
    ));
    let deps = Arc::new(login_return::ReturnDeps {
        policy_hook: None,
        tokens: codec(&config, stack.keys()),
        hydra: hydra.clone(),
        kratos: Arc::new(FakeKratos::numbered()),
        replay: store.clone(),
        clock: system_clock(),
        config,
    });
    let binding = "racebindingracebindingracebindingracebindi";
    let started = Instant::now();
    for same_session in [false, true] {
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        let mut won = 0;
        for round in 0..rounds {
            let challenge = unique("race");
            let payload = ReturnToPayload {
                login_challenge: challenge.clone(),
                request_url: None,
                client_id: Some("race".to_owned()),
                browser_binding: browser_binding_hash(binding),
                policy: None,
            };
            let token = deps
                .tokens
                .seal(&payload, SystemTime::now())
                .expect("seal")
                .token;
            let link = return_link(&token);
            let mut racers = tokio::task::JoinSet::new();
            for racer in 0..RACERS {
                let deps = deps.clone();
                let session = if same_session { 1 } else { racer + 1 };
                let request = get(
                    &link,
                    Some(&format!(
                        "bridge_binding={binding}; ory_kratos_session=s{session}"
                    )),
                );
                racers.spawn(async move { login_return::handle(request, &deps).await });
            }
            let mut winners = 0;
            let mut destinations = Vec::new();
            while let Some(result) = racers.join_next().await {
                let response = result.expect("no panic in the handler");
                let status = response.status().as_u16();
                *statuses.entry(status).or_default() += 1;
                match (same_session, status) {
                    (_, 303) => {
                        winners += 1;
                        destinations.push(location(&response));
                    }
                    (false, 403) | (true, 409) => {}
                    (_, other) => panic!(
                        "round {round} (same session: {same_session}): a racer got {other}: {}",
                        body(&response)
                    ),
                }
            }
            let accepts = hydra.accepts_of(&challenge);
            let opened = deps.tokens.open(&token, SystemTime::now()).expect("open");
            let granted = store
                .granted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&sha256_hex(&opened.jti))
                .copied()
                .unwrap_or(0);
            assert!(
                accepts <= granted,
                "round {round}: {accepts} Hydra accepts for {granted} granted claims"
            );
            assert_eq!(
                granted, 1,
                "round {round}: the store granted {granted} claims for one token"
            );
            assert_eq!(
                accepts, 1,
                "round {round}: Hydra was told to accept {accepts} times"
            );
            if same_session {
                // Refreshes of the winner's browser are sent to the same place.
                destinations.dedup();
                assert_eq!(destinations.len(), 1, "round {round}: {destinations:?}");
            } else {
                assert_eq!(winners, 1, "round {round}: {winners} sessions got through");
            }
            won += 1;
        }
        let mut by_status: Vec<_> = statuses.into_iter().collect();
        by_status.sort();
        report(&format!(
            "races: {} {rounds} rounds x {RACERS} concurrent uses of one token through the real DynamoDB adapter on moto (requests serialised, as DynamoDB applies conditional writes atomically), {won} rounds with exactly 1 claim and 1 Hydra accept, responses {:?}",
            if same_session { "same session" } else { "different sessions" },
            by_status
        ));
    }
    report(&format!(
        "races: {} rounds in {:.1} s",
        2 * rounds,
        started.elapsed().as_secs_f64()
    ));
}

// ------------------------------------------------------------------------------------------
// Fault-injecting proxy

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Pass,
    /// The connection is closed without an answer.
    Close,
    /// The connection stays open and silent past the client's timeout.
    Stall,
    /// `500 Internal Server Error`.
    Http500,
    /// `200 OK` with malformed JSON.
    Garbage,
    /// The request reaches the upstream, its answer never comes back.
    LoseAnswer,
}

const FAULTS: [Fault; 5] = [
    Fault::Close,
    Fault::Stall,
    Fault::Http500,
    Fault::Garbage,
    Fault::LoseAnswer,
];

/// How long a stalled or lost answer keeps the client waiting: well past the 500 ms timeout.
const STALL: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct ProxyState {
    /// Forward one request at a time (see [`Proxy::serialized`]).
    serialize: bool,
    /// Requests still passed before the fault applies.
    passes_left: usize,
    fault: Option<Fault>,
    requests: usize,
    faulted: usize,
}

/// An HTTP/1.1 proxy (one request per connection, `Connection: close` towards the upstream) that
/// can fail every request from the n-th on.
struct Proxy {
    url: String,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(client, upstream, &state));
            }
        });
        Self { url, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A proxy that hands the upstream one request at a time. moto evaluates a condition
    /// expression and writes the item without a lock (`Table.put_item` in
    /// moto/dynamodb/models/table.py), so under load two concurrent conditional writes can both
    /// succeed; DynamoDB itself applies conditional writes to an item atomically. Serialising the
    /// requests gives moto DynamoDB's semantics while the handlers still race each other.
    fn serialized(upstream: SocketAddr) -> Self {
        let proxy = Self::start(upstream);
        proxy.lock().serialize = true;
        proxy
    }

    /// Passes `passes` requests, then applies `fault` to every request until [`Proxy::heal`].
    fn arm(&self, passes: usize, fault: Fault) {
        let mut state = self.lock();
        *state = ProxyState {
            serialize: state.serialize,
            passes_left: passes,
            fault: Some(fault),
            ..ProxyState::default()
        };
    }

    fn heal(&self) {
        let mut state = self.lock();
        *state = ProxyState {
            serialize: state.serialize,
            ..ProxyState::default()
        };
    }

    fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.requests, state.faulted)
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, state: &Mutex<ProxyState>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = read_request(&mut client) else {
        return;
    };
    let (fault, serialize) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.requests += 1;
        let serialize = state.serialize;
        let fault = match state.fault {
            Some(fault) if state.passes_left == 0 => {
                state.faulted += 1;
                fault
            }
            _ => {
                state.passes_left = state.passes_left.saturating_sub(1);
                Fault::Pass
            }
        };
        (fault, serialize)
    };
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = serialize.then(|| ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()));
    match fault {
        Fault::Close => {}
        Fault::Stall => std::thread::sleep(STALL),
        Fault::Http500 => {
            let _ = client.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        Fault::Garbage => {
            let _ = client.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"redirect_",
            );
        }
        Fault::Pass | Fault::LoseAnswer => {
            let Ok(mut server) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = server.set_read_timeout(Some(Duration::from_secs(10)));
            if server.write_all(&request).is_err() {
                return;
            }
            let mut answer = Vec::new();
            let _ = server.read_to_end(&mut answer);
            if fault == Fault::LoseAnswer {
                std::thread::sleep(STALL);
            } else {
                let _ = client.write_all(&answer);
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body) and rewrites it to close the upstream
/// connection after the answer.
fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = client.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = client.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let mut rewritten: String = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut out = rewritten.into_bytes();
    out.extend_from_slice(&data[head_end..head_end + length]);
    Some(out)
}

// ------------------------------------------------------------------------------------------
// Driving Hydra like a browser, to get real challenges

struct Browser {
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .tls_backend_preconfigured(bridge::upstream::tls_client_config(None).expect("tls"))
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    /// GET `url` with the cookies so far; keeps new cookies; returns the redirect target.
    async fn visit(&mut self, url: &str) -> String {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = self.http.get(url);
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("Hydra answers");
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap_or("").split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.retain(|(k, _)| k != name);
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        assert!(
            response.status().is_redirection(),
            "{url} answered {}",
            response.status()
        );
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_owned()
    }

    async fn admin_put(&self, url: String, body: serde_json::Value) -> String {
        let answer: serde_json::Value = self
            .http
            .put(url)
            .json(&body)
            .send()
            .await
            .expect("Hydra admin answers")
            .json()
            .await
            .expect("JSON");
        answer["redirect_to"]
            .as_str()
            .unwrap_or_else(|| panic!("no redirect_to in {answer}"))
            .to_owned()
    }
}

fn param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url} has no {name}"))
}

/// Starts an authorization request of the third-party demo client: (login challenge, request_url).
async fn start_login(stack: &Stack, browser: &mut Browser) -> (String, String) {
    let verifier = unique("verifier-verifier-verifier-");
    let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = unique("state");
    let auth = format!(
        "{}/oauth2/auth?client_id=demo-third-party&response_type=code&scope=openid%20email&redirect_uri={}&state={state}&nonce={state}&code_challenge={code_challenge}&code_challenge_method=S256",
        stack.get("HYDRA_PUBLIC_URL"),
        encode(&format!("{}/callback", stack.get("DEMO_CLIENT_URL")))
    );
    let to_login = browser.visit(&auth).await;
    (param(&to_login, "login_challenge"), auth)
}

async fn start_consent(stack: &Stack, browser: &mut Browser) -> String {
    let (challenge, _) = start_login(stack, browser).await;
    let next = browser
        .admin_put(
            format!(
                "{}/admin/oauth2/auth/requests/login/accept?login_challenge={challenge}",
                stack.get("HYDRA_ADMIN_URL")
            ),
            serde_json::json!({
                // A subject of its own, so Hydra never remembers an earlier consent (skip).
                "subject": unique("ident-"),
                "remember": true,
                "context": {"identity_id": "ident-1", "claims_by_scope": {"email": {"email": "user1@example.com"}}}
            }),
        )
        .await;
    let to_consent = browser.visit(&next).await;
    param(&to_consent, "consent_challenge")
}

async fn start_logout(stack: &Stack, browser: &mut Browser) -> String {
    let challenge = start_consent(stack, browser).await;
    let next = browser
        .admin_put(
            format!(
                "{}/admin/oauth2/auth/requests/consent/accept?consent_challenge={challenge}",
                stack.get("HYDRA_ADMIN_URL")
            ),
            serde_json::json!({"grant_scope": ["openid", "email"], "remember": true, "remember_for": 0}),
        )
        .await;
    let _to_client = browser.visit(&next).await;
    let to_logout = browser
        .visit(&format!(
            "{}/oauth2/sessions/logout",
            stack.get("HYDRA_PUBLIC_URL")
        ))
        .await;
    param(&to_logout, "logout_challenge")
}

// ------------------------------------------------------------------------------------------
// Fault runs

struct Rig {
    stack: Stack,
    hydra: Proxy,
    kratos_public: Proxy,
    kratos_admin: Proxy,
    dynamo: Proxy,
}

const IN_PROGRESS_SECONDS: u64 = 2;
const TIMEOUT_MS: u64 = 500;

impl Rig {
    fn new() -> Self {
        let stack = Stack::load();
        Self {
            hydra: Proxy::start(stack.addr("HYDRA_ADMIN_URL")),
            kratos_public: Proxy::start(stack.addr("KRATOS_PUBLIC_URL")),
            kratos_admin: Proxy::start(stack.addr("KRATOS_ADMIN_URL")),
            dynamo: Proxy::start(stack.addr("MOTO_URL")),
            stack,
        }
    }

    fn proxy(&self, upstream: Up) -> &Proxy {
        match upstream {
            Up::Hydra => &self.hydra,
            Up::Kratos => &self.kratos_public,
            Up::Dynamo => &self.dynamo,
        }
    }

    fn heal_all(&self) {
        for proxy in [
            &self.hydra,
            &self.kratos_public,
            &self.kratos_admin,
            &self.dynamo,
        ] {
            proxy.heal();
        }
    }

    /// Settings pointing every upstream at its proxy: like a cold start, per request.
    fn config(&self) -> Config {
        self.stack.config(&[
            ("BRIDGE_HYDRA_ADMIN_URL", self.hydra.url.clone()),
            ("BRIDGE_KRATOS_PUBLIC_URL", self.kratos_public.url.clone()),
            ("BRIDGE_KRATOS_ADMIN_URL", self.kratos_admin.url.clone()),
            ("BRIDGE_DYNAMODB_ENDPOINT", self.dynamo.url.clone()),
            ("BRIDGE_UPSTREAM_TIMEOUT_MS", TIMEOUT_MS.to_string()),
            (
                "BRIDGE_IN_PROGRESS_SECONDS",
                IN_PROGRESS_SECONDS.to_string(),
            ),
        ])
    }

    fn kratos(&self, config: &Config, real: bool) -> Arc<dyn KratosApi> {
        if real {
            let http = build_http_client(config).expect("http client");
            Arc::new(KratosClient::new(http, config))
        } else {
            Arc::new(FakeKratos::numbered())
        }
    }

    async fn run(&self, call: &Call) -> Response<Body> {
        let config = self.config();
        let http = build_http_client(&config).expect("http client");
        let hydra: Arc<dyn HydraAdmin> = Arc::new(HydraClient::new(http, &config));
        match call {
            Call::Login {
                query,
                cookie,
                real_kratos,
            } => {
                let deps = login::LoginDeps {
                    kratos: self.kratos(&config, *real_kratos),
                    tokens: codec(&config, self.stack.keys()),
                    clock: system_clock(),
                    hydra,
                    config,
                };
                login::handle(get(&format!("/login?{query}"), cookie.as_deref()), &deps).await
            }
            Call::Return {
                link,
                cookie,
                real_kratos,
            } => {
                let deps = login_return::ReturnDeps {
                    policy_hook: None,
                    kratos: self.kratos(&config, *real_kratos),
                    tokens: codec(&config, self.stack.keys()),
                    replay: Arc::new(
                        DynamoReplayStore::from_config(
                            &config,
                            build_http_client(&config).expect("http client"),
                        )
                        .expect("store"),
                    ),
                    clock: system_clock(),
                    hydra,
                    config,
                };
                login_return::handle(get(link, Some(cookie)), &deps).await
            }
            Call::ConsentGet { challenge } => {
                let deps = consent::ConsentDeps {
                    policy_hook: None,
                    keys: self.stack.keys(),
                    hydra,
                    config,
                };
                consent::handle(
                    get(&format!("/consent?consent_challenge={challenge}"), None),
                    &deps,
                )
                .await
            }
            Call::ConsentPost { form, cookie } => {
                let deps = consent::ConsentDeps {
                    policy_hook: None,
                    keys: self.stack.keys(),
                    hydra,
                    config,
                };
                let request = post_form("/consent", form, Some(cookie), None);
                consent::handle(request, &deps).await
            }
            Call::Logout {
                challenge,
                cookie,
                real_kratos,
            } => {
                let deps = logout::LogoutDeps {
                    kratos: self.kratos(&config, *real_kratos),
                    hydra,
                    config,
                };
                logout::handle(
                    get(
                        &format!("/logout?logout_challenge={challenge}"),
                        cookie.as_deref(),
                    ),
                    &deps,
                )
                .await
            }
        }
    }

    /// Where a successful answer may lead.
    fn allowed_redirect(&self, location: &str) -> bool {
        let hydra = format!("{}/", self.stack.get("HYDRA_PUBLIC_URL"));
        let kratos = format!(
            "{}/self-service/login/browser?",
            self.stack.get("KRATOS_PUBLIC_URL")
        );
        location.starts_with(&hydra) || location.starts_with(&kratos)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Up {
    Hydra,
    Kratos,
    Dynamo,
}

#[derive(Debug)]
enum Call {
    Login {
        query: String,
        cookie: Option<String>,
        real_kratos: bool,
    },
    Return {
        link: String,
        cookie: String,
        real_kratos: bool,
    },
    ConsentGet {
        challenge: String,
    },
    ConsentPost {
        form: String,
        cookie: String,
    },
    Logout {
        challenge: String,
        cookie: Option<String>,
        real_kratos: bool,
    },
}

impl Call {
    fn same_link(&self) -> Option<String> {
        match self {
            Call::Login { query, .. } => Some(format!("/login?{query}")),
            Call::Return { link, .. } => Some(link.clone()),
            Call::ConsentGet { challenge } => {
                Some(format!("/consent?consent_challenge={challenge}"))
            }
            Call::ConsentPost { .. } => None,
            Call::Logout { challenge, .. } => Some(format!("/logout?logout_challenge={challenge}")),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Login,
    LoginSso,
    Return,
    ConsentGet,
    ConsentPost,
    Logout,
}

/// A fresh scenario for `step`, with `upstream` as the one whose faults are studied.
async fn scenario(rig: &Rig, step: Step, upstream: Up) -> Call {
    let stack = &rig.stack;
    let mut browser = Browser::new();
    // Kratos faults need the real Kratos (with a cookie it does not know); other faults use a
    // fake Kratos that knows session 1, since Kratos v1.3 cannot mint sessions by API.
    let real_kratos = upstream == Up::Kratos;
    let kratos_cookie = if real_kratos {
        "ory_kratos_session=not-a-session-the-stack-knows"
    } else {
        "ory_kratos_session=s1"
    };
    match step {
        Step::Login | Step::LoginSso => {
            let (challenge, _) = start_login(stack, &mut browser).await;
            Call::Login {
                query: format!("login_challenge={challenge}"),
                cookie: matches!(step, Step::LoginSso).then(|| kratos_cookie.to_owned()),
                real_kratos,
            }
        }
        Step::Return => {
            let (challenge, request_url) = start_login(stack, &mut browser).await;
            let config = rig.config();
            let binding = "faultbindingfaultbindingfaultbindingfaultb";
            let token = codec(&config, stack.keys())
                .seal(
                    &ReturnToPayload {
                        login_challenge: challenge,
                        request_url: Some(request_url),
                        client_id: Some("demo-third-party".to_owned()),
                        browser_binding: browser_binding_hash(binding),
                        policy: None,
                    },
                    SystemTime::now(),
                )
                .expect("seal")
                .token;
            Call::Return {
                link: return_link(&token),
                cookie: format!("bridge_binding={binding}; {kratos_cookie}"),
                real_kratos,
            }
        }
        Step::ConsentGet => Call::ConsentGet {
            challenge: start_consent(stack, &mut browser).await,
        },
        Step::ConsentPost => {
            let challenge = start_consent(stack, &mut browser).await;
            rig.heal_all();
            let screen = rig
                .run(&Call::ConsentGet {
                    challenge: challenge.clone(),
                })
                .await;
            assert_eq!(screen.status(), 200, "consent screen: {}", body(&screen));
            let cookie = screen
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .expect("CSRF cookie")
                .to_owned();
            let page = body(&screen);
            let token = page
                .split("name=\"csrf_token\" value=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("CSRF token")
                .to_owned();
            Call::ConsentPost {
                form: format!(
                    "consent_challenge={challenge}&csrf_token={}&grant_scope=openid&grant_scope=email&action=allow",
                    encode(&token)
                ),
                cookie,
            }
        }
        Step::Logout => Call::Logout {
            challenge: start_logout(stack, &mut browser).await,
            cookie: Some(kratos_cookie.to_owned()),
            real_kratos,
        },
    }
}

/// The answer a healthy stack gives for `call`.
fn succeeded(rig: &Rig, call: &Call, response: &Response<Body>) -> bool {
    match call {
        // The screen, or (a consent Hydra remembers) straight on to Hydra.
        Call::ConsentGet { .. } => {
            response.status() == 200
                || (response.status() == 303 && rig.allowed_redirect(&location(response)))
        }
        _ => response.status() == 303 && rig.allowed_redirect(&location(response)),
    }
}

#[derive(Default)]
struct FaultTally {
    injected: usize,
    survived: usize,
    recovered: usize,
    statuses: HashMap<u16, usize>,
    longest_recovery: Duration,
    problems: Vec<String>,
}

async fn fault_matrix(steps: &[(Step, Up)], label: &str) {
    let rig = Rig::new();
    let mut tally = FaultTally::default();
    for &(step, upstream) in steps {
        for fault in FAULTS {
            for passes in 0.. {
                let call = scenario(&rig, step, upstream).await;
                rig.heal_all();
                rig.proxy(upstream).arm(passes, fault);
                let hydra_before = rig.hydra.counts().0;
                let response = rig.run(&call).await;
                let (_, faulted) = rig.proxy(upstream).counts();
                let hydra_calls = rig.hydra.counts().0 - hydra_before;
                rig.heal_all();
                let what = format!("{step:?} / {upstream:?} call #{} / {fault:?}", passes + 1);
                if faulted == 0 {
                    // The handler makes fewer calls to this upstream: the matrix row is complete.
                    if !succeeded(&rig, &call, &response) {
                        tally.problems.push(format!(
                            "{what}: no fault hit, yet status {} {}",
                            response.status(),
                            short(&location(&response))
                        ));
                    }
                    break;
                }
                tally.injected += 1;
                let status = response.status().as_u16();
                *tally.statuses.entry(status).or_default() += 1;
                let mut problems = Vec::new();
                match status {
                    502 | 409 => {}
                    503 => {
                        if !response.headers().contains_key("retry-after") {
                            problems.push("503 without Retry-After".to_owned());
                        }
                        if let Some(link) = call.same_link() {
                            let page = body(&response);
                            if !page.contains(&link.replace('&', "&amp;")) && !page.contains(&link)
                            {
                                problems.push("503 page without the same link to retry".to_owned());
                            }
                        }
                    }
                    303 if rig.allowed_redirect(&location(&response)) => {}
                    other => {
                        problems.push(format!("status {other} {}", short(&location(&response))))
                    }
                }
                // Never accept on a guess: with the session or the claim unknown, Hydra must not
                // have been told anything, unless the answer says the login went through.
                if matches!(call, Call::Return { .. })
                    && upstream != Up::Hydra
                    && status != 303
                    && hydra_calls != 0
                {
                    problems.push(format!(
                        "Hydra called {hydra_calls} times although {upstream:?} failed"
                    ));
                }
                if problems.is_empty() {
                    tally.survived += 1;
                }
                // The same link (or form) works again once the upstream is back, at the latest
                // when an unfinished claim expires.
                let healing = Instant::now();
                let deadline = Duration::from_secs(IN_PROGRESS_SECONDS + 6);
                let mut last = String::new();
                let mut recovered = false;
                while healing.elapsed() < deadline {
                    let again = rig.run(&call).await;
                    if succeeded(&rig, &call, &again) {
                        recovered = true;
                        break;
                    }
                    last = format!("{} {}", again.status(), short(&location(&again)));
                    if again.status() != 409 && again.status() != 503 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if recovered {
                    tally.recovered += 1;
                    tally.longest_recovery = tally.longest_recovery.max(healing.elapsed());
                } else {
                    problems.push(format!(
                        "the same link did not work again after healing (last: {last})"
                    ));
                }
                println!(
                    "fault: {what}: {status} -> {}",
                    if problems.is_empty() {
                        "ok".to_owned()
                    } else {
                        problems.join("; ")
                    }
                );
                for problem in problems {
                    tally.problems.push(format!("{what}: {problem}"));
                }
            }
        }
    }
    let mut statuses: Vec<_> = tally.statuses.into_iter().collect();
    statuses.sort();
    report(&format!(
        "faults: {label} {} injected, {} survived, {} links worked again after healing (longest {:.1} s), answers {statuses:?}",
        tally.injected,
        tally.survived,
        tally.recovered,
        tally.longest_recovery.as_secs_f64()
    ));
    assert!(tally.injected > 0, "no fault was injected");
    assert!(tally.problems.is_empty(), "{}", tally.problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn faults_at_login_entry_and_logout() {
    fault_matrix(
        &[
            (Step::Login, Up::Hydra),
            (Step::LoginSso, Up::Kratos),
            (Step::Logout, Up::Hydra),
            (Step::Logout, Up::Kratos),
        ],
        "login entry + logout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn faults_at_return() {
    fault_matrix(
        &[
            (Step::Return, Up::Kratos),
            (Step::Return, Up::Dynamo),
            (Step::Return, Up::Hydra),
        ],
        "return",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn faults_at_consent() {
    fault_matrix(
        &[
            (Step::ConsentGet, Up::Hydra),
            (Step::ConsentPost, Up::Hydra),
        ],
        "consent",
    )
    .await;
}

/// A Lambda killed right after its claim leaves an in-progress record; the user's same link
/// is answered 409 until that record's short expiry, then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn killed_lambda_claim_expires_and_the_link_works_again() {
    let rig = Rig::new();
    let call = scenario(&rig, Step::Return, Up::Hydra).await;
    let Call::Return { link, .. } = &call else {
        unreachable!()
    };
    let config = rig.stack.config(&[(
        "BRIDGE_IN_PROGRESS_SECONDS",
        IN_PROGRESS_SECONDS.to_string(),
    )]);
    let token = url::form_urlencoded::parse(link.split_once('?').expect("query").1.as_bytes())
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .expect("token");
    let opened = codec(&config, rig.stack.keys())
        .open(&token, SystemTime::now())
        .expect("open");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // What the return handler writes before it calls Hydra, by an invocation that then died.
    let store =
        DynamoReplayStore::from_config(&config, build_http_client(&config).expect("http client"))
            .expect("store");
    let dead = Claim {
        key: sha256_hex(&opened.jti),
        session_hash: sha256_hex("sess-1"),
        attempt: "killed-invocation".to_owned(),
        token_expires_at: opened.expires_at,
        in_progress_until: now + IN_PROGRESS_SECONDS,
        now,
    };
    assert_eq!(
        store.claim(&dead).await.expect("claim in moto"),
        ClaimOutcome::Claimed
    );
    let started = Instant::now();
    let blocked = rig.run(&call).await;
    assert_eq!(blocked.status(), 409, "{}", body(&blocked));
    assert!(body(&blocked).contains("/login/return?t="), "retry link");
    let mut answers = vec![blocked.status().as_u16()];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = rig.run(&call).await;
        answers.push(again.status().as_u16());
        if again.status() == 303 {
            assert!(
                rig.allowed_redirect(&location(&again)),
                "{}",
                location(&again)
            );
            break;
        }
        assert_eq!(again.status(), 409, "{}", body(&again));
        assert!(
            started.elapsed() < Duration::from_secs(IN_PROGRESS_SECONDS + 5),
            "the dead claim never expired: {answers:?}"
        );
    }
    report(&format!(
        "faults: Lambda killed after its claim: link refused with 409 while the claim was fresh, worked after {:.1} s (in-progress expiry {IN_PROGRESS_SECONDS} s), answers {answers:?}",
        started.elapsed().as_secs_f64()
    ));
}

/// The attempt counter on moto: concurrent `count_attempt`s on one key are all counted (each
/// sees a distinct count), another key counts from 1, and the item's TTL is the given expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local stack; run ./scripts/test"]
async fn attempts_are_counted_on_moto() {
    use bridge::attempts::AttemptCounter;

    let stack = Stack::load();
    let moto = Proxy::serialized(stack.addr("MOTO_URL"));
    let config = stack.config(&[("BRIDGE_DYNAMODB_ENDPOINT", moto.url.clone())]);
    let counter: Arc<dyn AttemptCounter> = Arc::new(
        DynamoReplayStore::from_config(&config, build_http_client(&config).expect("http client"))
            .expect("store"),
    );
    let key = format!("{}:window-1", sha256_hex(&unique("device-code")));
    let expires_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let counter = Arc::clone(&counter);
            let key = key.clone();
            tokio::spawn(async move { counter.count_attempt(&key, expires_at).await })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("task").expect("count on moto"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=8).collect::<Vec<u64>>());
    let other = format!("{}:window-1", sha256_hex(&unique("device-code")));
    assert_eq!(
        counter
            .count_attempt(&other, expires_at)
            .await
            .expect("count"),
        1
    );
    report(&format!(
        "races: attempt counter on moto: 8 concurrent attempts counted {counts:?}"
    ));
}
