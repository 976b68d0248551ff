//! Consent POST over arbitrary form, cookie and Origin, and requested scopes: no panic, no 500,
//! only redirects to Hydra; a decision reaches Hydra only with the genuine CSRF token and cookie,
//! and the grant never exceeds the requested scopes or audience.
//!
//! Input: `form NUL cookie NUL origin NUL requested scopes (space separated)`.
#![no_main]

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use bridge::handlers::consent::{handle, ConsentDeps};
use bridge_fuzz::*;
use libfuzzer_sys::fuzz_target;

/// A fixed, well-formed CSRF cookie value, so the genuine token is the same in every run.
const CSRF_COOKIE: &str = "Y3NyZi1jb29raWUtY3NyZi1jb29raWUtY3NyZi1jb28";

/// Built once: key derivation and configuration parsing are not what is being fuzzed.
fn deps() -> &'static (ConsentDeps, FakeHydra) {
    static DEPS: OnceLock<(ConsentDeps, FakeHydra)> = OnceLock::new();
    DEPS.get_or_init(|| {
        let hydra = FakeHydra::default();
        let deps = ConsentDeps {
            policy_hook: None,
            config: config(),
            hydra: Arc::new(hydra.clone()),
            keys: keys(),
        };
        (deps, hydra)
    })
}

/// The CSRF token the consent screen puts in the form for challenge `c1` and [`CSRF_COOKIE`].
fn genuine_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let (deps, hydra) = deps();
        hydra.add_consent("c1", consent_request(&["openid", "email", "profile"]));
        let cookie = format!("__Host-bridge_csrf={CSRF_COOKIE}");
        let request = get("/consent", b"consent_challenge=c1", cookie.as_bytes()).expect("request");
        let response = block_on(handle(request, deps));
        let page = match response.body() {
            lambda_http::Body::Text(text) => text.clone(),
            _ => String::new(),
        };
        let token = page
            .split("name=\"csrf_token\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("csrf token on the screen")
            .to_owned();
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        for (name, form) in [
            ("allow", format!("consent_challenge=c1&csrf_token={encoded}&grant_scope=openid&grant_scope=email&action=allow&remember=true")),
            ("allow-forged-scopes", format!("consent_challenge=c1&csrf_token={encoded}&grant_scope=admin&grant_scope=profile&action=allow")),
            ("deny", format!("consent_challenge=c1&csrf_token={encoded}&action=deny")),
        ] {
            let mut seed = form.into_bytes();
            seed.push(0);
            seed.extend_from_slice(cookie.as_bytes());
            seed.push(0);
            seed.extend_from_slice(b"https://auth.example.com");
            seed.push(0);
            seed.extend_from_slice(b"openid email profile");
            write_seed(name, &seed);
        }
        token
    })
}

fn run(data: &[u8]) {
    let p = parts(data, 4);
    let requested_text = String::from_utf8_lossy(p[3]).into_owned();
    let requested: Vec<&str> = requested_text.split(' ').take(16).collect();
    let Some(request) = post(p[0], p[1], p[2]) else {
        return;
    };
    let (deps, hydra) = deps();
    hydra.reset();
    hydra.add_consent("c1", consent_request(&requested));
    let response = block_on(handle(request, deps));
    check(&response);
    if hydra.decisions() > 0 {
        let form = String::from_utf8_lossy(p[0]);
        let token_present = url::form_urlencoded::parse(form.as_bytes())
            .any(|(k, v)| k == "csrf_token" && v == genuine_token());
        assert!(token_present, "a decision without the genuine CSRF token");
        assert!(
            String::from_utf8_lossy(p[1]).contains(CSRF_COOKIE),
            "a decision without the CSRF cookie"
        );
    }
    let wanted: BTreeSet<&str> = requested.iter().copied().collect();
    for accepted in hydra.accepted_consents() {
        for scope in &accepted.grant_scope {
            assert!(
                wanted.contains(scope.as_str()),
                "granted {scope} that was not requested"
            );
        }
        assert_eq!(accepted.grant_access_token_audience, vec!["api".to_owned()]);
    }
}

fuzz_target!(init: { genuine_token(); }, |data: &[u8]| run(data));
