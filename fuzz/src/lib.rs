//! What the fuzz targets share beyond `bridge::testkit` (the fakes, the test deployment's
//! settings and clock, and [`check`], the invariants every response must pass): the fuzzing
//! deployment's own key set, one runtime per process, request builders that accept any bytes,
//! and the seed corpus.
//!
//! The oracles are deliberately strict: a panic, a 500, a `Location` outside Hydra's public
//! origin, Kratos' login flow and the return function (single sign-on), a CR/LF in a header, or
//! an accept that no genuine seed explains is a crash.

use std::sync::OnceLock;

use bridge::config::Config;
use bridge::hydra::{ConsentRequest, LoginRequest};
use bridge::keyset::KeySet;
use bridge::testkit::{google_session, session, third_party_consent};
use bridge::token::TokenCodec;
use lambda_http::{Body, Request};

pub use bridge::testkit::{
    check, config, fixed_clock as clock, now, token_and_binding, FakeHydra, FakeKratos,
    ResettableStore, SESSION_COOKIE,
};

/// The fuzzing deployment's key set (not a secret: it exists only here). The committed corpus'
/// genuine tokens are sealed under it.
pub const KEYSET: &str = r#"{"current":"f2","keys":[{"kid":"f2","secret":"ZnV6ei1rZXktZnV6ei1rZXktZnV6ei1rZXktZnV6ei0y"},{"kid":"f1","secret":"ZnV6ei1rZXktZnV6ei1rZXktZnV6ei1rZXktZnV6ei0x"}]}"#;

/// The fuzzing deployment's keys, [`KEYSET`].
pub fn keys() -> KeySet {
    bridge::testkit::key_set(KEYSET)
}

/// The token codec of the fuzzing deployment.
pub fn codec(config: &Config) -> TokenCodec {
    bridge::testkit::codec(config, keys())
}

/// One current-thread runtime per process: the handlers never spawn.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        })
        .block_on(future)
}

/// A Kratos that knows exactly one session (`sess-1` of `ident-1`, signed in with Google),
/// behind [`SESSION_COOKIE`].
pub fn kratos() -> FakeKratos {
    let kratos = FakeKratos::default();
    kratos.add_session(
        SESSION_COOKIE,
        google_session(session("sess-1", "ident-1", &[])),
    );
    kratos
}

/// Percent-encodes the bytes a request target cannot carry, so any input becomes a request
/// (API Gateway hands the functions what the browser sent, encoded the same way).
pub fn as_query(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits fuzz input into `n` parts at NUL bytes (missing parts are empty).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, &[]);
    out
}

/// A GET request; `None` when the bytes make no valid header value (a browser cannot send it).
pub fn get(path: &str, query: &[u8], cookie: &[u8]) -> Option<Request> {
    let mut builder = http::Request::builder()
        .method("GET")
        .uri(format!("{path}?{}", as_query(query)));
    if !cookie.is_empty() {
        builder = builder.header("cookie", http::HeaderValue::from_bytes(cookie).ok()?);
    }
    builder.body(Body::Empty).ok()
}

/// A form POST to `/consent`.
pub fn post(form: &[u8], cookie: &[u8], origin: &[u8]) -> Option<Request> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/consent")
        .header("content-type", "application/x-www-form-urlencoded");
    if !cookie.is_empty() {
        builder = builder.header("cookie", http::HeaderValue::from_bytes(cookie).ok()?);
    }
    if !origin.is_empty() {
        builder = builder.header("origin", http::HeaderValue::from_bytes(origin).ok()?);
    }
    builder.body(Body::Binary(form.to_vec())).ok()
}

/// Seeds are written by the targets' `init` when `BRIDGE_FUZZ_WRITE_SEEDS` names a directory, so
/// the committed corpus can be regenerated: `BRIDGE_FUZZ_WRITE_SEEDS=fuzz/corpus/<target>
/// cargo +nightly fuzz run <target> -- -runs=0`.
pub fn write_seed(name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("BRIDGE_FUZZ_WRITE_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(name), bytes);
    }
}

/// A login request of client `app` for `openid` as Hydra would describe it; with `skip`, of
/// the session's identity.
pub fn login_request(request_url: &str, skip: bool) -> LoginRequest {
    let subject = if skip { "ident-1" } else { "" };
    LoginRequest {
        requested_scope: vec!["openid".to_owned()],
        ..bridge::testkit::login_request(skip, subject, request_url)
    }
}

/// A third-party consent request for `scopes`.
pub fn consent_request(scopes: &[&str]) -> ConsentRequest {
    third_party_consent(false, scopes)
}

/// Every file in the corpus directories libFuzzer was started with, read once at start-up: the
/// genuine seeds a target may legitimately accept (mutations of them must not be).
pub fn startup_corpus() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        let Ok(entries) = std::fs::read_dir(&arg) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                files.push(bytes);
            }
        }
    }
    files
}
