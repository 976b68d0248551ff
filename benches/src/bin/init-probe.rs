//! Times the pieces of a function's cold start that the functions cannot show by themselves,
//! each in a fresh process (the harness runs it repeatedly): building the shared HTTP client as
//! `bridge::upstream::build_http_client` does (rustls config, platform root certificates), a
//! second build, and the first and second use of aws-lc's random generator (the first one seeds
//! it: with CPU jitter entropy unless aws-lc-sys was built with AWS_LC_SYS_NO_JITTER_ENTROPY=1).
//! Prints one JSON line.

use std::time::{Duration, Instant};

fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(2500))
        .connect_timeout(Duration::from_millis(1500))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("hydra-kratos-bridge/probe")
        .build()
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let t = Instant::now();
    let first = client();
    let client_first_ms = ms(t);
    let t = Instant::now();
    let second = client();
    let client_second_ms = ms(t);
    let mut bytes = [0u8; 32];
    let t = Instant::now();
    let rng_first = aws_lc_rs::rand::fill(&mut bytes);
    let rng_first_ms = ms(t);
    let t = Instant::now();
    let rng_second = aws_lc_rs::rand::fill(&mut bytes);
    let rng_second_ms = ms(t);
    println!(
        "{}",
        serde_json::json!({
            "client_first_ms": client_first_ms,
            "client_second_ms": client_second_ms,
            "rng_first_ms": rng_first_ms,
            "rng_second_ms": rng_second_ms,
            "ok": first.is_ok() && second.is_ok() && rng_first.is_ok() && rng_second.is_ok(),
        })
    );
}
