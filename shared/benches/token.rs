//! Measures sealing and opening a return_to token of realistic size, because both sit on the
//! login path of every user. Reported by `./scripts/bench` (no budget of its own any more: the
//! functions' own time per request is the budget, docs/performance.md).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bridge::keyset::KeySet;
use bridge::token::{browser_binding_hash, ReturnToPayload, TokenCodec};
use criterion::{criterion_group, criterion_main, Criterion};

/// Random base64url text, like Hydra's (encrypted, hence incompressible-ish) login challenges.
fn random_text(chars: usize) -> String {
    let mut bytes = vec![0u8; chars];
    if getrandom::fill(&mut bytes).is_err() {
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    let mut text = URL_SAFE_NO_PAD.encode(&bytes);
    text.truncate(chars);
    text
}

fn codec() -> TokenCodec {
    let secret = URL_SAFE_NO_PAD.encode([42u8; 32]);
    let json = format!(r#"{{"current":"k1","keys":[{{"kid":"k1","secret":"{secret}"}}]}}"#);
    let keys = match KeySet::from_json(&json) {
        Ok(keys) => keys,
        Err(error) => panic!("bench key set: {error}"),
    };
    match TokenCodec::new(
        keys,
        "https://auth.example.com",
        "https://auth.example.com/login/return",
        Duration::from_secs(600),
    ) {
        Ok(codec) => codec,
        Err(error) => panic!("bench codec: {error}"),
    }
}

fn payload() -> ReturnToPayload {
    let mut request_url = format!(
        "https://hydra.example.com/oauth2/auth?client_id=demo-client&response_type=code\
         &scope=openid+offline_access+email+profile\
         &redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fcallback\
         &state={}&nonce={}&code_challenge={}&code_challenge_method=S256&prompt=login&ui_locales=en",
        random_text(43),
        random_text(43),
        random_text(43),
    );
    request_url.push_str("&login_hint=");
    request_url.push_str(&random_text(600 - request_url.len().min(590)));
    ReturnToPayload {
        login_challenge: random_text(1536),
        request_url: Some(request_url),
        client_id: Some("demo-client".to_owned()),
        browser_binding: browser_binding_hash("binding-cookie-value"),
        policy: None,
    }
}

fn bench_token(criterion: &mut Criterion) {
    let codec = codec();
    let payload = payload();
    let now = SystemTime::now();
    let sealed = match codec.seal(&payload, now) {
        Ok(sealed) => sealed,
        Err(error) => panic!("seal: {error}"),
    };
    println!(
        "challenge {} B, request_url {} B -> token {} chars",
        payload.login_challenge.len(),
        payload.request_url.as_ref().map_or(0, String::len),
        sealed.token.len()
    );

    criterion.bench_function("seal", |bencher| {
        bencher.iter(|| codec.seal(black_box(&payload), black_box(now)))
    });
    criterion.bench_function("open", |bencher| {
        bencher.iter(|| codec.open(black_box(&sealed.token), black_box(now)))
    });
}

/// On-CPU nanoseconds of the calling thread (Linux). Criterion reports wall time, which on a
/// shared machine includes time spent waiting for a core; on-CPU time shows the real cost.
fn thread_cpu_nanos() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn print_cpu_time_per_op(name: &str, mut op: impl FnMut()) {
    const ITERATIONS: u32 = 20_000;
    for _ in 0..ITERATIONS / 10 {
        op();
    }
    let Some(start) = thread_cpu_nanos() else {
        return;
    };
    for _ in 0..ITERATIONS {
        op();
    }
    if let Some(end) = thread_cpu_nanos() {
        let micros = end.saturating_sub(start) as f64 / 1e3 / f64::from(ITERATIONS);
        println!("{name}: {micros:.1} µs on-CPU per operation");
    }
}

fn bench_cpu_time(_criterion: &mut Criterion) {
    let codec = codec();
    let payload = payload();
    let now = SystemTime::now();
    let token = match codec.seal(&payload, now) {
        Ok(sealed) => sealed.token,
        Err(error) => panic!("seal: {error}"),
    };
    print_cpu_time_per_op("seal", || {
        black_box(codec.seal(black_box(&payload), now).is_ok());
    });
    print_cpu_time_per_op("open", || {
        black_box(codec.open(black_box(&token), now).is_ok());
    });
}

criterion_group!(benches, bench_token, bench_cpu_time);
criterion_main!(benches);
