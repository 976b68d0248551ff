//! The return handler over arbitrary query and cookies: no panic, no 500, only redirects to
//! Hydra or Kratos, and Hydra is told to accept only for a genuine token (issued at start-up or
//! found in the starting corpus) presented with its own binding cookie and the known session.
//!
//! Input: `query NUL cookie`.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bridge::handlers::login::{handle as login, LoginDeps};
use bridge::handlers::login_return::{handle, ReturnDeps};
use bridge::request::Params;
use bridge_fuzz::*;
use libfuzzer_sys::fuzz_target;

/// Genuine token -> its binding cookie value.
fn genuine() -> &'static HashMap<String, String> {
    static GENUINE: OnceLock<HashMap<String, String>> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let mut genuine = HashMap::new();
        for (i, request_url) in ["https://oauth.example.com/oauth2/auth?client_id=app", ""]
            .iter()
            .enumerate()
        {
            let hydra = FakeHydra::default();
            hydra.set_login(login_request(request_url, false));
            let config = config();
            let deps = LoginDeps {
                tokens: codec(&config),
                config,
                hydra: Arc::new(hydra),
                kratos: Arc::new(kratos()),
                clock: clock(),
            };
            let request = get("/login", b"login_challenge=7b2e0c3f9a2d4e6f", b"").expect("request");
            let response = block_on(login(request, &deps));
            let (token, binding) = token_and_binding(&response).expect("token");
            let mut seed = format!("t={token}").into_bytes();
            seed.push(0);
            seed.extend_from_slice(
                format!("__Host-bridge_binding={binding}; {SESSION_COOKIE}").as_bytes(),
            );
            write_seed(&format!("genuine-{i}"), &seed);
            genuine.insert(token, binding);
        }
        for file in startup_corpus() {
            let p = parts(&file, 2);
            let params = Params::parse(&String::from_utf8_lossy(p[0]));
            let cookies = String::from_utf8_lossy(p[1]).into_owned();
            if let (Ok(Some(token)), Some(binding)) = (
                params.single("t", 8192),
                cookies
                    .split("; ")
                    .find_map(|c| c.strip_prefix("__Host-bridge_binding=")),
            ) {
                genuine.insert(token.to_owned(), binding.to_owned());
            }
        }
        genuine
    })
}

/// Built once: key derivation and configuration parsing are not what is being fuzzed.
fn deps() -> &'static (ReturnDeps, FakeHydra, Arc<ResettableStore>) {
    static DEPS: OnceLock<(ReturnDeps, FakeHydra, Arc<ResettableStore>)> = OnceLock::new();
    DEPS.get_or_init(|| {
        let hydra = FakeHydra::default();
        let replay = Arc::new(ResettableStore::default());
        let config = config();
        let deps = ReturnDeps {
            policy_hook: None,
            tokens: codec(&config),
            config,
            hydra: Arc::new(hydra.clone()),
            kratos: Arc::new(kratos()),
            replay: replay.clone(),
            clock: clock(),
        };
        (deps, hydra, replay)
    })
}

fn run(data: &[u8]) {
    let p = parts(data, 2);
    let Some(request) = get("/login/return", p[0], p[1]) else {
        return;
    };
    let raw_query = request.uri().query().unwrap_or("").to_owned();
    let cookie_header = request
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (deps, hydra, replay) = deps();
    hydra.reset();
    replay.reset();
    let response = block_on(handle(request, deps));
    check(&response);
    if hydra.decisions() > 0 {
        let params = Params::parse(&raw_query);
        let token = params.single("t", 8192).ok().flatten().unwrap_or("");
        let binding = genuine()
            .get(token)
            .expect("accepted a token that was never issued");
        assert!(
            cookie_header.contains(&format!("bridge_binding={binding}")),
            "accepted without the token's binding cookie"
        );
        assert!(
            cookie_header.contains(SESSION_COOKIE),
            "accepted without the Kratos session"
        );
    }
}

fuzz_target!(init: { genuine(); deps(); }, |data: &[u8]| run(data));
