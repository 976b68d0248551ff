//! `TokenCodec::open` on arbitrary text: never panics, and accepts nothing but genuine tokens
//! (sealed at start-up or found in the starting corpus); a mutation that opens is a forgery.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use bridge::token::{browser_binding_hash, ReturnToPayload, TokenCodec};
use bridge_fuzz::{codec, config, now, startup_corpus, write_seed};
use libfuzzer_sys::fuzz_target;

struct State {
    codec: TokenCodec,
    genuine: HashSet<String>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let codec = codec(&config());
        let mut genuine = HashSet::new();
        let payloads = [
            ReturnToPayload {
                login_challenge: "7b2e0c3f9a2d4e6f8a1b3c5d7e9f0a2b".to_owned(),
                request_url: Some(
                    "https://oauth.example.com/oauth2/auth?client_id=app&response_type=code&scope=openid+email&state=abcdefgh&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb".to_owned(),
                ),
                client_id: Some("app".to_owned()),
                browser_binding: browser_binding_hash("binding"),
                policy: None,
            },
            ReturnToPayload {
                login_challenge: "chal.lenge~with/odd+chars=".to_owned(),
                request_url: None,
                client_id: None,
                browser_binding: [0; 32],
                policy: None,
            },
        ];
        for (i, payload) in payloads.iter().enumerate() {
            let token = codec.seal(payload, now()).expect("seal").token;
            write_seed(&format!("genuine-{i}"), token.as_bytes());
            genuine.insert(token);
        }
        for bytes in startup_corpus() {
            if let Ok(text) = String::from_utf8(bytes) {
                if codec.open(&text, now()).is_ok() {
                    genuine.insert(text);
                }
            }
        }
        State { codec, genuine }
    })
}

fuzz_target!(init: { state(); }, |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let state = state();
    if let Ok(opened) = state.codec.open(text, now()) {
        assert!(state.genuine.contains(text), "a token that was never sealed opened");
        assert!(!opened.payload.login_challenge.is_empty() || opened.payload.request_url.is_none());
    }
});
