//! Times the pieces of a function's cold start that the functions cannot show by themselves,
//! each in a fresh process (the harness runs it repeatedly): building the shared HTTP client with
//! the functions' TLS settings (`bridge::upstream::tls_client_config`: rustls on ring, compiled-in
//! roots), a second build, the first and second use of the random source the functions use
//! (`getrandom`), and for reference the first use of aws-lc's generator, which the functions no
//! longer link (it seeds with CPU jitter entropy unless aws-lc-sys was built with
//! AWS_LC_SYS_NO_JITTER_ENTROPY=1). Prints one JSON line.

use std::time::{Duration, Instant};

fn client() -> Result<reqwest::Client, String> {
    let tls = bridge::upstream::tls_client_config(None).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .timeout(Duration::from_millis(2500))
        .connect_timeout(Duration::from_millis(1500))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("hydra-kratos-bridge/probe")
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
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
    let rng_first = getrandom::fill(&mut bytes);
    let rng_first_ms = ms(t);
    let t = Instant::now();
    let rng_second = getrandom::fill(&mut bytes);
    let rng_second_ms = ms(t);
    let t = Instant::now();
    let aws_lc_rng_first = aws_lc_rs::rand::fill(&mut bytes);
    let aws_lc_rng_first_ms = ms(t);
    println!(
        "{}",
        serde_json::json!({
            "client_first_ms": client_first_ms,
            "client_second_ms": client_second_ms,
            "rng_first_ms": rng_first_ms,
            "rng_second_ms": rng_second_ms,
            "aws_lc_rng_first_ms": aws_lc_rng_first_ms,
            "ok": first.is_ok() && second.is_ok() && rng_first.is_ok() && rng_second.is_ok()
                && aws_lc_rng_first.is_ok(),
        })
    );
}
