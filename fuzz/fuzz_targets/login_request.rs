//! Login entry over arbitrary query, cookies and Hydra `request_url`: no panic, no 500, only
//! redirects to Hydra or Kratos; an accept only for Hydra's `skip` or the one known Kratos
//! session; every issued token opens to the challenge asked about and the cookie set with it.
//!
//! Input: `query NUL cookie NUL request_url NUL flags` (flags bit 0: Hydra says skip).
#![no_main]

use std::sync::{Arc, OnceLock};

use bridge::handlers::login::{handle, LoginDeps};
use bridge::kratos::kratos_cookie_header;
use bridge::request::{challenge, Params};
use bridge::token::browser_binding_hash;
use bridge_fuzz::*;
use libfuzzer_sys::fuzz_target;

/// Built once: key derivation and configuration parsing are not what is being fuzzed.
fn deps() -> &'static (LoginDeps, FakeHydra) {
    static DEPS: OnceLock<(LoginDeps, FakeHydra)> = OnceLock::new();
    DEPS.get_or_init(|| {
        let hydra = FakeHydra::default();
        let config = config();
        let deps = LoginDeps {
            tokens: codec(&config),
            config,
            hydra: Arc::new(hydra.clone()),
            kratos: Arc::new(kratos()),
            clock: clock(),
        };
        (deps, hydra)
    })
}

fn run(data: &[u8]) {
    let p = parts(data, 4);
    let (query, cookie, request_url, flags) = (p[0], p[1], p[2], p[3]);
    let skip = flags.first().is_some_and(|f| f & 1 == 1);
    let request_url = String::from_utf8_lossy(request_url).into_owned();
    let Some(request) = get("/login", query, cookie) else {
        return;
    };
    let (deps, hydra) = deps();
    hydra.reset();
    hydra.set_login(login_request(&request_url, skip));
    let raw_query = request.uri().query().unwrap_or("").to_owned();
    let cookie_header = request
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = block_on(handle(request, deps));
    check(&response);
    if hydra.decisions() > 0 {
        let sso = kratos_cookie_header(&cookie_header, "ory_kratos_session") == SESSION_COOKIE;
        assert!(skip || sso, "accepted without skip or a Kratos session");
    }
    if let Some((token, binding)) = token_and_binding(&response) {
        let opened = deps
            .tokens
            .open(&token, now())
            .expect("an issued token opens");
        let asked =
            challenge(&Params::parse(&raw_query), "login_challenge").expect("valid challenge");
        assert_eq!(
            opened.payload.login_challenge, asked,
            "token carries the challenge asked about"
        );
        assert_eq!(
            opened.payload.browser_binding,
            browser_binding_hash(&binding),
            "token bound to the cookie set"
        );
    }
}

fn seeds() {
    write_seed("new-browser", b"login_challenge=7b2e0c3f9a2d4e6f8a1b3c5d7e9f0a2b\0\0https://oauth.example.com/oauth2/auth?client_id=app&prompt=consent\0\x00");
    write_seed("sso", b"login_challenge=abc\0ory_kratos_session=s1; __Host-bridge_binding=bindingbindingbindingbindingbindingbinding1\0https://oauth.example.com/oauth2/auth?max_age=999999999\0\x00");
    write_seed("prompt-login", b"login_challenge=abc\0ory_kratos_session=s1\0https://oauth.example.com/oauth2/auth?prompt=login\0\x00");
    write_seed("skip", b"login_challenge=abc&x=1\0\0\0\x01");
}

fuzz_target!(init: { seeds(); deps(); }, |data: &[u8]| run(data));
