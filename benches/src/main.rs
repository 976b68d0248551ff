//! `bridge-bench`: measures the functions against the real local stack and writes
//! `summary.json` plus a table (see docs/performance.md). `./scripts/bench` builds everything,
//! starts a stack if none is given, and runs this.
//!
//! What runs where:
//! - each function binary (x86_64 release build) runs under a Lambda Runtime API emulator;
//! - a recording proxy stands in front of Kratos public/admin, Hydra admin and DynamoDB, so every
//!   upstream call a function makes is counted and timed;
//! - an HTTP front on the stack's FUNCTIONS_URL port turns browser requests into API Gateway
//!   payload 2.0 events, so Hydra and Kratos redirect real browsers (here: a scripted HTTP client
//!   with a cookie jar) to the functions as they would to API Gateway.

mod apigw;
mod browser;
mod emulator;
mod front;
mod load;
mod process;
mod proxy;
mod report;
mod scenarios;
mod stack;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use url::Url;

use crate::apigw::HttpRequest;
use crate::browser::{query_param, same_origin, Browser, Landing};
use crate::front::{Record, Router};
use crate::process::Launch;
use crate::proxy::{Recorder, Upstream};
use crate::report::{Budget, Summary};
use crate::scenarios::Urls;
use crate::stack::Stack;
use crate::stats::Spread;

/// The functions, by binary name.
const FUNCTIONS: [&str; 5] = ["login", "login-return", "consent", "logout", "error"];

#[derive(Debug, Clone)]
struct Args {
    env: PathBuf,
    bin_dir: PathBuf,
    out_dir: PathBuf,
    criterion_dir: PathBuf,
    lambda_dir: PathBuf,
    quick: bool,
    check: bool,
    cold_samples: usize,
    warm_reps: usize,
    invocations: usize,
    rps_requests: usize,
    /// Other builds of `init-probe` to compare (`name=path`), e.g. without jitter entropy.
    probes: Vec<(String, PathBuf)>,
    /// Which phases to run (all when empty): init, proxy, cold, warm, memory, rps.
    phases: Vec<String>,
    /// Extra environment for the functions, hello-bench and init-probe (`NAME=VALUE`).
    fn_env: Vec<(String, String)>,
}

impl Args {
    fn runs(&self, phase: &str) -> bool {
        self.phases.is_empty() || self.phases.iter().any(|p| p == phase)
    }

    fn parse() -> Result<Self, String> {
        let mut args = Self {
            env: PathBuf::from(".stack-bench/env"),
            bin_dir: PathBuf::from("target/release"),
            out_dir: PathBuf::from("target/bench"),
            criterion_dir: PathBuf::from("target/criterion"),
            lambda_dir: PathBuf::from("target/lambda"),
            quick: false,
            check: false,
            cold_samples: 0,
            warm_reps: 0,
            invocations: 0,
            rps_requests: 0,
            probes: Vec::new(),
            phases: Vec::new(),
            fn_env: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--env" => args.env = value("--env")?.into(),
                "--bin-dir" => args.bin_dir = value("--bin-dir")?.into(),
                "--out" => args.out_dir = value("--out")?.into(),
                "--criterion-dir" => args.criterion_dir = value("--criterion-dir")?.into(),
                "--lambda-dir" => args.lambda_dir = value("--lambda-dir")?.into(),
                "--quick" => args.quick = true,
                "--check" => args.check = true,
                "--cold-samples" => args.cold_samples = number(&value("--cold-samples")?)?,
                "--warm-reps" => args.warm_reps = number(&value("--warm-reps")?)?,
                "--invocations" => args.invocations = number(&value("--invocations")?)?,
                "--rps-requests" => args.rps_requests = number(&value("--rps-requests")?)?,
                "--fn-env" => {
                    let v = value("--fn-env")?;
                    let (name, val) = v.split_once('=').ok_or("--fn-env needs NAME=VALUE")?;
                    args.fn_env.push((name.to_owned(), val.to_owned()));
                }
                "--phases" => {
                    args.phases = value("--phases")?.split(',').map(str::to_owned).collect()
                }
                "--probe" => {
                    let v = value("--probe")?;
                    let (name, path) = v.split_once('=').ok_or("--probe needs NAME=PATH")?;
                    args.probes.push((name.to_owned(), PathBuf::from(path)));
                }
                "-h" | "--help" => {
                    println!("usage: bridge-bench [--env FILE] [--bin-dir DIR] [--out DIR] [--criterion-dir DIR] [--lambda-dir DIR] [--quick] [--check] [--cold-samples N] [--warm-reps N] [--invocations N] [--rps-requests N] [--probe NAME=PATH]... [--phases init,proxy,cold,warm,memory,rps] [--fn-env NAME=VALUE]...");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        let pick = |set: usize, full: usize, quick: usize| {
            if set > 0 {
                set
            } else if args.quick {
                quick
            } else {
                full
            }
        };
        args.cold_samples = pick(args.cold_samples, 11, 1);
        args.warm_reps = pick(args.warm_reps, 12, 2);
        args.invocations = pick(args.invocations, 1000, 1000);
        args.rps_requests = pick(args.rps_requests, 400, 40);
        Ok(args)
    }
}

fn number(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("load") {
        return load_main();
    }
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bridge-bench: tokio: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(summary) => {
            println!("{}", summary.table());
            let timing_too = !args.quick;
            if args.check && !summary.passed(timing_too) {
                eprintln!("bridge-bench: budgets exceeded (see above)");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `bridge-bench load ...`: steady-rate logins (load.rs); exit 1 when the rate was not sustained.
fn load_main() -> ExitCode {
    let args = match load::LoadArgs::parse(std::env::args().skip(2)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match runtime
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(load::run(&args)))
    {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bridge-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// Everything the phases share.
struct Ctx {
    args: Args,
    stack: Stack,
    urls: Urls,
    router: Arc<Router>,
    direct: BTreeMap<String, Launch>,
    hello: Launch,
    admin: reqwest::Client,
}

fn launch(ctx_args: &Args, name: &str, mut env: Vec<(String, String)>, tag: &str) -> Launch {
    env.extend(ctx_args.fn_env.iter().cloned());
    Launch {
        binary: ctx_args.bin_dir.join(name),
        name: name.to_owned(),
        env,
        log: ctx_args
            .out_dir
            .join("logs")
            .join(format!("{name}-{tag}.log")),
        cpu: None,
    }
}

async fn run(args: &Args) -> Result<Summary, String> {
    std::fs::create_dir_all(args.out_dir.join("logs")).map_err(|e| format!("out dir: {e}"))?;
    for f in FUNCTIONS.iter().chain(["hello-bench", "init-probe"].iter()) {
        let binary = args.bin_dir.join(f);
        if !binary.is_file() {
            return Err(format!(
                "{} is missing: build it first (cargo build --release --bin {f})",
                binary.display()
            ));
        }
    }
    let stack = Stack::load(&args.env)?;
    let urls = Urls::from_stack(&stack)?;
    let recorder = Recorder::default();
    let mut proxied_env = stack.function_env();
    for (var, upstream) in [
        ("BRIDGE_KRATOS_PUBLIC_URL", Upstream::KratosPublic),
        ("BRIDGE_KRATOS_ADMIN_URL", Upstream::KratosAdmin),
        ("BRIDGE_HYDRA_ADMIN_URL", Upstream::HydraAdmin),
        ("BRIDGE_DYNAMODB_ENDPOINT", Upstream::DynamoDb),
    ] {
        let target = stack.socket(var)?;
        let addr = proxy::start(upstream, target, recorder.clone())
            .await
            .map_err(|e| format!("proxy for {var}: {e}"))?;
        let proxied = format!("http://{addr}");
        for (k, v) in proxied_env.iter_mut() {
            if k == var {
                *v = proxied.clone();
            }
        }
    }
    let direct_env = stack.function_env();
    let proxied: Vec<Launch> = FUNCTIONS
        .iter()
        .map(|f| launch(args, f, proxied_env.clone(), "proxied"))
        .collect();
    let direct: BTreeMap<String, Launch> = FUNCTIONS
        .iter()
        .map(|f| (f.to_string(), launch(args, f, direct_env.clone(), "direct")))
        .collect();
    let hello = launch(args, "hello-bench", Vec::new(), "hello");
    let host = format!(
        "{}:{}",
        urls.functions.host_str().unwrap_or("127.0.0.1"),
        urls.functions.port_or_known_default().unwrap_or(80)
    );
    let router = Arc::new(Router::new(proxied, recorder.clone(), host));
    let front_addr = stack.socket("FUNCTIONS_URL")?;
    front::serve(router.clone(), front_addr)
        .await
        .map_err(|e| format!("cannot listen on {front_addr} (FUNCTIONS_URL; is another front or `cargo lambda watch` running there?): {e}"))?;
    let admin = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let ctx = Ctx {
        args: args.clone(),
        stack,
        urls,
        router,
        direct,
        hello,
        admin,
    };

    let mut summary = Summary::default();
    summary.meta.insert(
        "mode".into(),
        json!(if args.quick { "quick" } else { "full" }),
    );
    summary.meta.insert("machine".into(), machine());
    summary.meta.insert(
        "extra_function_env".into(),
        json!(args
            .fn_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()),
    );
    summary.meta.insert(
        "samples".into(),
        json!({
            "cold_starts_per_function": args.cold_samples,
            "warm_repetitions": args.warm_reps,
            "invocations_for_peak_rss": args.invocations,
            "rps_requests": args.rps_requests,
        }),
    );

    let started = Instant::now();
    if args.runs("init") {
        log("cold-start pieces (init-probe)");
        init_probe(&ctx, &mut summary).await?;
    }
    if args.runs("proxy") {
        log("proxy hop cost");
        proxy_hop(&ctx, &mut summary).await?;
    }
    if args.runs("cold") {
        log(format!("cold starts ({} per function)", args.cold_samples));
        cold_starts(&ctx, &mut summary).await?;
    }
    if args.runs("warm") {
        log(format!("warm journeys ({} repetitions)", args.warm_reps));
        warm(&ctx, &mut summary).await?;
        ctx.router.stop_all().await;
    }
    if args.runs("memory") {
        log(format!(
            "peak RSS over a cold start + {} invocations",
            args.invocations
        ));
        memory(&ctx, &mut summary).await?;
    }
    if args.runs("rps") {
        log(format!(
            "return throughput ({} requests)",
            args.rps_requests
        ));
        throughput(&ctx, &mut summary).await?;
    }
    sizes_and_token(&ctx, &mut summary);
    budgets(&mut summary);
    summary.meta.insert(
        "duration_s".into(),
        json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0),
    );
    let path = args.out_dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary.to_json()).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    log(format!("wrote {}", path.display()));
    Ok(summary)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "loadavg_at_start": load.trim(), "arch": std::env::consts::ARCH})
}

/// Runs `init-probe` (and any other builds of it) in fresh processes, interleaved.
async fn init_probe(ctx: &Ctx, summary: &mut Summary) -> Result<(), String> {
    let mut probes = vec![("default".to_owned(), ctx.args.bin_dir.join("init-probe"))];
    probes.extend(ctx.args.probes.iter().cloned());
    let runs = if ctx.args.quick { 3 } else { 15 };
    let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        for (name, path) in &probes {
            let output = tokio::process::Command::new(path)
                .env_clear()
                .envs(
                    ctx.args
                        .fn_env
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .output()
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let v: Value = serde_json::from_slice(&output.stdout)
                .map_err(|e| format!("{}: bad output: {e}", path.display()))?;
            for key in [
                "client_first_ms",
                "client_second_ms",
                "rng_first_ms",
                "rng_second_ms",
                "aws_lc_rng_first_ms",
            ] {
                if let Some(x) = v[key].as_f64() {
                    values
                        .entry((name.clone(), key.to_owned()))
                        .or_default()
                        .push(x);
                }
            }
        }
    }
    for ((name, key), xs) in values {
        let figure = if name == "default" {
            "init_ms".to_owned()
        } else {
            format!("init_ms_{name}")
        };
        summary.spread(&figure, key.trim_end_matches("_ms"), Spread::of(&xs));
    }
    Ok(())
}

/// The cost of the recording proxy itself: the same small GET to Hydra's admin health endpoint,
/// directly and through a proxy, interleaved.
async fn proxy_hop(ctx: &Ctx, summary: &mut Summary) -> Result<(), String> {
    let target = ctx.stack.socket("HYDRA_ADMIN_URL")?;
    let addr = proxy::start(Upstream::HydraAdmin, target, Recorder::default())
        .await
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    let direct_url = format!("http://{target}/health/alive");
    let proxied_url = format!("http://{addr}/health/alive");
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for i in 0..120 {
        for (url, out) in [(&direct_url, &mut direct), (&proxied_url, &mut via)] {
            let t = Instant::now();
            client
                .get(url.as_str())
                .send()
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            if i >= 20 {
                out.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let hop: Vec<f64> = via.iter().zip(&direct).map(|(v, d)| v - d).collect();
    summary.spread("proxy", "direct_get_ms", Spread::of(&direct));
    summary.spread("proxy", "proxied_get_ms", Spread::of(&via));
    summary.spread("proxy", "added_per_call_ms", Spread::of(&hop));
    Ok(())
}

fn hello_event() -> Bytes {
    Bytes::from(apigw::event(
        &HttpRequest {
            method: "GET".into(),
            path: "/hello".into(),
            headers: vec![("accept".into(), "text/html".into())],
            ..HttpRequest::default()
        },
        "hello",
        "127.0.0.1",
    ))
}

/// Per-function cold start samples: each iteration spawns the hello-world once, then runs one
/// whole first-party login, a logout and an error page with every function hop served by a
/// freshly spawned process.
async fn cold_starts(ctx: &Ctx, summary: &mut Summary) -> Result<(), String> {
    let mut hello = Vec::new();
    let mut cold: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut upstream: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut ratio: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for i in 0..ctx.args.cold_samples {
        let h = process::cold_start(&ctx.hello, hello_event()).await?;
        let hello_ms = h.cold_ms();
        h.running.stop().await;
        hello.push(hello_ms);

        ctx.router.set_cold(true).await;
        let browser = Browser::new();
        let result = async {
            let auth = scenarios::authorization_url(&ctx.urls, "demo-first-party", &[])?;
            scenarios::google_login(&browser, &ctx.urls, &auth).await?;
            scenarios::logout(&browser, &ctx.urls).await?;
            browser.get(&functions_url(ctx, "/error?error=x")?).await?;
            Ok::<_, String>(())
        }
        .await;
        ctx.router.set_cold(false).await;
        let records = ctx.router.take_records().await;
        result.map_err(|e| format!("cold iteration {i}: {e}"))?;
        for record in records {
            let Some(ms) = record.cold_ms else { continue };
            let up = record.upstream_ms();
            cold.entry(record.function.clone()).or_default().push(ms);
            upstream
                .entry(record.function.clone())
                .or_default()
                .push(up);
            ratio
                .entry(record.function.clone())
                .or_default()
                .push((ms - up) / hello_ms);
        }
    }
    summary.spread("cold_start_ms", "hello-bench", Spread::of(&hello));
    for f in FUNCTIONS {
        let c = cold.get(f).map(Vec::as_slice).unwrap_or(&[]);
        summary.spread("cold_start_ms", f, Spread::of(c));
        summary.spread(
            "cold_upstream_ms",
            f,
            Spread::of(upstream.get(f).map(Vec::as_slice).unwrap_or(&[])),
        );
        summary.spread(
            "cold_start_ratio",
            f,
            Spread::of(ratio.get(f).map(Vec::as_slice).unwrap_or(&[])),
        );
    }
    Ok(())
}

fn functions_url(ctx: &Ctx, path_and_query: &str) -> Result<Url, String> {
    ctx.urls
        .functions
        .join(path_and_query)
        .map_err(|e| e.to_string())
}

/// Calls per service of one invocation.
fn call_counts(record: &Record) -> Value {
    let mut by = BTreeMap::new();
    for service in ["kratos", "hydra", "dynamodb"] {
        by.insert(service.to_owned(), json!(0));
    }
    for call in &record.calls {
        let n = by
            .entry(call.upstream.service().to_owned())
            .or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    by.insert("total".into(), json!(record.calls.len()));
    by.insert(
        "calls".into(),
        json!(record
            .calls
            .iter()
            .map(|c| format!("{} {}", c.upstream.service(), c.request_line))
            .collect::<Vec<_>>()),
    );
    json!(by)
}

/// Warm journeys through warm processes: every path of every function, counted and timed.
async fn warm(ctx: &Ctx, summary: &mut Summary) -> Result<(), String> {
    // Warm-up: one journey so every function has a warm process (their cold starts are dropped).
    let warmup = Browser::new();
    let auth = scenarios::authorization_url(&ctx.urls, "demo-first-party", &[])?;
    scenarios::google_login(&warmup, &ctx.urls, &auth).await?;
    scenarios::logout(&warmup, &ctx.urls).await?;
    warmup.get(&functions_url(ctx, "/error?error=x")?).await?;
    ctx.router.take_records().await;

    let mut flow_ms = Vec::new();
    let mut flow_share = Vec::new();
    let mut flow_functions_ms = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for rep in 0..ctx.args.warm_reps {
        let result: Result<(), String> = async {
            // A whole Google login of a first-party client in a new browser.
            let b1 = Browser::new();
            label(
                ctx,
                &[
                    ("login", "normal"),
                    ("login-return", "normal"),
                    ("consent", "skip"),
                ],
            )
            .await;
            let auth = scenarios::authorization_url(&ctx.urls, "demo-first-party", &[])?;
            let t = Instant::now();
            let login = scenarios::google_login(&b1, &ctx.urls, &auth).await?;
            let total = t.elapsed().as_secs_f64() * 1e3;
            let flow_records = ctx.router.take_records().await;
            if !login.via_kratos || query_param(&login.callback, "code").is_none() {
                return Err("the first login did not go through Kratos to a code".into());
            }
            let inside: f64 = flow_records.iter().map(|r| r.latency_ms).sum();
            flow_ms.push(total);
            flow_functions_ms.push(inside);
            flow_share.push(inside / total);
            records.extend(flow_records);

            // Hydra remembers this browser: login skip for another client.
            label(ctx, &[("login", "skip"), ("consent", "skip")]).await;
            let auth = scenarios::authorization_url(&ctx.urls, "demo-second", &[])?;
            scenarios::google_login(&b1, &ctx.urls, &auth).await?;

            // A third-party client in a new browser: consent screen, then allow.
            let b2 = Browser::new();
            label(
                ctx,
                &[
                    ("login", "normal"),
                    ("login-return", "normal"),
                    ("consent", "screen"),
                    ("consent", "allow"),
                ],
            )
            .await;
            let auth = scenarios::authorization_url(&ctx.urls, "demo-third-party", &[])?;
            let third = scenarios::google_login(&b2, &ctx.urls, &auth).await?;
            if !third.consent_screen {
                return Err("the third-party client saw no consent screen".into());
            }

            // Single sign-on: a browser with the Kratos session but no Hydra session.
            let b3 = scenarios::with_kratos_session_only(&b1, &ctx.urls);
            label(
                ctx,
                &[
                    ("login", "sso"),
                    ("login-return", "sso"),
                    ("consent", "skip"),
                ],
            )
            .await;
            let auth = scenarios::authorization_url(&ctx.urls, "demo-first-party", &[])?;
            let sso = scenarios::google_login(&b3, &ctx.urls, &auth).await?;
            if sso.via_kratos {
                return Err("single sign-on went through Kratos".into());
            }

            // Logout (Hydra and Kratos sessions), error pages.
            label(ctx, &[("logout", "normal")]).await;
            scenarios::logout(&b1, &ctx.urls).await?;
            label(ctx, &[("error", "hydra"), ("error", "kratos")]).await;
            b1.get(&functions_url(
                ctx,
                "/error?error=x&error_description=bench",
            )?)
            .await?;
            b1.get(&functions_url(
                ctx,
                &format!("/error?id={}", scenarios::random_uuid()),
            )?)
            .await?;
            Ok(())
        }
        .await;
        ctx.router.clear_labels().await;
        records.extend(ctx.router.take_records().await);
        result.map_err(|e| format!("warm repetition {rep}: {e}"))?;
    }

    summary.spread("login_flow_ms", "total", Spread::of(&flow_ms));
    summary.spread(
        "login_flow_ms",
        "in_functions",
        Spread::of(&flow_functions_ms),
    );
    summary.spread(
        "login_flow_ms",
        "share_in_functions",
        Spread::of(&flow_share),
    );

    // Per path: latency, upstream wait, calls.
    let mut by_path: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        let key = format!(
            "{}.{}",
            r.function,
            if r.label.is_empty() {
                "unlabelled"
            } else {
                &r.label
            }
        );
        by_path.entry(key).or_default().push(r);
    }
    for (path, rs) in &by_path {
        let latency: Vec<f64> = rs.iter().map(|r| r.latency_ms).collect();
        let up: Vec<f64> = rs.iter().map(|r| r.upstream_ms()).collect();
        summary.spread("warm_latency_ms", path, Spread::of(&latency));
        summary.spread("warm_upstream_ms", path, Spread::of(&up));
        // The most common call pattern of the path (all should agree).
        let mut patterns: BTreeMap<String, (usize, Value)> = BTreeMap::new();
        for r in rs {
            let counts = call_counts(r);
            let entry = patterns.entry(counts.to_string()).or_insert((0, counts));
            entry.0 += 1;
        }
        let mut sorted: Vec<_> = patterns.into_values().collect();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.0));
        if let Some((n, counts)) = sorted.first() {
            let mut counts = counts.clone();
            counts["seen"] = json!(format!("{n} of {}", rs.len()));
            summary.put("upstream_calls", path, counts);
        }
    }
    // The Runtime API floor: a warm hello-world invocation (event in, answer out, no work), which
    // every function pays as well and which no handler change can remove.
    let hello = process::cold_start(&ctx.hello, hello_event()).await?;
    let mut floor = Vec::new();
    for _ in 0..200 {
        floor.push(hello.running.invoke(hello_event()).await?.latency_ms());
    }
    hello.running.stop().await;
    let floor_ms = Spread::of(&floor);
    let floor_median = floor_ms.as_ref().map_or(0.0, |s| s.median);
    summary.spread("warm_latency_ms", "hello-bench", floor_ms);

    // Overhead: handler latency over the time its upstream calls took, per invocation.
    for f in FUNCTIONS {
        let ratios: Vec<f64> = records
            .iter()
            .filter(|r| r.function == f && !r.calls.is_empty() && r.upstream_ms() > 0.0)
            .map(|r| r.latency_ms / r.upstream_ms())
            .collect();
        summary.spread("overhead_ratio", f, Spread::of(&ratios));
        // Own time: what the function takes beyond waiting for its upstreams (the budget).
        let bridge_ms: Vec<f64> = records
            .iter()
            .filter(|r| r.function == f)
            .map(|r| r.latency_ms - r.upstream_ms())
            .collect();
        summary.spread("warm_bridge_ms", f, Spread::of(&bridge_ms));
        // The same ratio with the hello-world's invocation taken out of the latency: what the
        // bridge's own code adds on top of the calls it waits for (reported, not a budget).
        let net: Vec<f64> = records
            .iter()
            .filter(|r| r.function == f && !r.calls.is_empty() && r.upstream_ms() > 0.0)
            .map(|r| (r.latency_ms - floor_median).max(r.upstream_ms()) / r.upstream_ms())
            .collect();
        summary.spread("overhead_ratio_above_runtime", f, Spread::of(&net));
    }
    // return_to as Kratos gets it.
    let return_to: Vec<f64> = records
        .iter()
        .filter(|r| r.function == "login" && r.label == "normal")
        .filter_map(|r| {
            let location = Url::parse(r.response.header("location")?).ok()?;
            Some(query_param(&location, "return_to")?.len() as f64)
        })
        .collect();
    summary.spread("return_to_bytes", "login", Spread::of(&return_to));
    Ok(())
}

async fn label(ctx: &Ctx, labels: &[(&str, &str)]) {
    ctx.router.clear_labels().await;
    for (function, label) in labels {
        ctx.router.label(function, label).await;
    }
}

/// A pending login challenge (not handled), as the `/login` URL Hydra sends a new browser to.
async fn pending_login(ctx: &Ctx, client: &str) -> Result<Url, String> {
    let browser = Browser::new();
    let auth = scenarios::authorization_url(&ctx.urls, client, &[])?;
    scenarios::login_entry_url(&browser, &ctx.urls, &auth).await
}

/// Accepts a login through Hydra's admin API and follows the browser to the next hop at the
/// functions (a consent challenge).
async fn admin_login(ctx: &Ctx, browser: &Browser, client: &str) -> Result<Url, String> {
    let auth = scenarios::authorization_url(&ctx.urls, client, &[])?;
    let login = scenarios::login_entry_url(browser, &ctx.urls, &auth).await?;
    let challenge = query_param(&login, "login_challenge").ok_or("no login_challenge")?;
    let mut accept = ctx
        .urls
        .hydra_admin
        .join("/admin/oauth2/auth/requests/login/accept")
        .map_err(|e| e.to_string())?;
    accept
        .query_pairs_mut()
        .append_pair("login_challenge", &challenge);
    let body = json!({
        "subject": "bench-subject",
        "remember": true,
        "context": {"identity_id": "bench-subject", "claims_by_scope": {"email": {"email": "bench@example.com", "email_verified": true}}}
    });
    let answer: Value = ctx
        .admin
        .put(accept)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let next = answer["redirect_to"].as_str().ok_or("no redirect_to")?;
    let next = Url::parse(next).map_err(|e| e.to_string())?;
    match browser
        .follow(&next, |u| same_origin(u, &ctx.urls.functions))
        .await?
    {
        Landing::Stopped(url) => Ok(url),
        Landing::Page(page) => Err(format!(
            "Hydra answered {} after the login accept",
            page.status
        )),
    }
}

fn get_event(url: &Url, cookies: Option<String>) -> Bytes {
    let mut headers = vec![("accept".to_owned(), "text/html".to_owned())];
    if let Some(c) = cookies {
        headers.push(("cookie".to_owned(), c));
    }
    Bytes::from(apigw::event(
        &HttpRequest {
            method: "GET".into(),
            path: url.path().to_owned(),
            query: url.query().unwrap_or("").to_owned(),
            headers,
            body: Vec::new(),
        },
        "rss",
        &format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port_or_known_default().unwrap_or(80)
        ),
    ))
}

/// Peak RSS of each function over a cold start plus N invocations of its main path (direct to
/// the upstreams, no proxy). login-return's is measured by the throughput run.
async fn memory(ctx: &Ctx, summary: &mut Summary) -> Result<(), String> {
    let n = ctx.args.invocations;
    // login: the same pending challenge (new browser -> token + redirect to Kratos) every time.
    let login = pending_login(ctx, "demo-third-party").await?;
    let login_events = vec![get_event(&login, None)];
    // consent: a pending third-party consent challenge (the screen) every time.
    let consent_browser = Browser::new();
    let consent = admin_login(ctx, &consent_browser, "demo-third-party").await?;
    let consent_events = vec![get_event(&consent, None)];
    // error: Hydra's error and an unknown Kratos error id, alternately.
    let error_events = vec![
        get_event(
            &functions_url(ctx, "/error?error=x&error_description=bench")?,
            None,
        ),
        get_event(
            &functions_url(ctx, &format!("/error?id={}", scenarios::random_uuid()))?,
            None,
        ),
    ];
    // logout: a live logout challenge (first invocation logs out, the rest find it handled).
    let logout_browser = Browser::new();
    let consent_url = admin_login(ctx, &logout_browser, "demo-first-party").await?;
    match logout_browser
        .follow(&consent_url, |u| same_origin(u, &ctx.urls.demo_client))
        .await
    {
        Ok(Landing::Stopped(_)) => {}
        other => {
            return Err(format!(
                "first-party consent via the front failed: {other:?}"
            ))
        }
    }
    let start = ctx
        .urls
        .hydra_public
        .join("/oauth2/sessions/logout")
        .map_err(|e| e.to_string())?;
    let logout = match logout_browser
        .follow(&start, |u| same_origin(u, &ctx.urls.functions))
        .await?
    {
        Landing::Stopped(url) => url,
        Landing::Page(p) => return Err(format!("no logout challenge: {}", p.status)),
    };
    let logout_events = vec![get_event(&logout, None)];
    ctx.router.stop_all().await;
    ctx.router.take_records().await;

    let mut statuses: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    for (f, events) in [
        ("login", login_events),
        ("consent", consent_events),
        ("logout", logout_events),
        ("error", error_events),
    ] {
        let launch = ctx.direct.get(f).ok_or("no launch")?;
        let cold = process::cold_start(launch, events[0].clone()).await?;
        let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
        let status = |body: &[u8]| apigw::response(body).map(|r| r.status).unwrap_or(0);
        *seen.entry(status(&cold.invocation.body)).or_default() += 1;
        for i in 1..=n {
            let inv = cold
                .running
                .invoke(events[i % events.len()].clone())
                .await?;
            *seen.entry(status(&inv.body)).or_default() += 1;
        }
        let peak = cold.running.peak_rss_kib().unwrap_or(0);
        cold.running.stop().await;
        summary.put("peak_rss_mb", f, json!(peak as f64 / 1024.0));
        statuses.insert(f.to_owned(), seen);
    }
    summary.put(
        "peak_rss_statuses",
        "by_function",
        json!(statuses
            .iter()
            .map(|(f, s)| (
                f.clone(),
                json!(s
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<BTreeMap<_, _>>())
            ))
            .collect::<BTreeMap<_, _>>()),
    );
    Ok(())
}

/// Sustained return throughput of one warm process pinned to one core: fresh tokens (one per
/// request, each a real Hydra login challenge sealed by the warm login function) with one Kratos
/// session, sent back to back; every answer must be the 303 to Hydra.
async fn throughput(ctx: &Ctx, summary: &mut Summary) -> Result<(), String> {
    let n = ctx.args.rps_requests.max(ctx.args.invocations);
    let browser = Browser::new();
    let auth = scenarios::authorization_url(&ctx.urls, "demo-first-party", &[])?;
    scenarios::google_login(&browser, &ctx.urls, &auth).await?;
    let mut events = Vec::with_capacity(n + 1);
    let t = Instant::now();
    for _ in 0..=n {
        let auth =
            scenarios::authorization_url(&ctx.urls, "demo-first-party", &[("prompt", "login")])?;
        let kratos = match browser
            .follow(&auth, |u| same_origin(u, &ctx.urls.kratos_public))
            .await?
        {
            Landing::Stopped(url) => url,
            Landing::Page(p) => {
                return Err(format!("login with prompt=login answered {}", p.status))
            }
        };
        let return_to = query_param(&kratos, "return_to").ok_or("no return_to")?;
        let return_to = Url::parse(&return_to).map_err(|e| e.to_string())?;
        events.push(get_event(&return_to, browser.cookie_header(&return_to)));
    }
    log(format!(
        "  {} return tokens prepared in {:.1}s",
        events.len(),
        t.elapsed().as_secs_f64()
    ));
    ctx.router.stop_all().await;
    ctx.router.take_records().await;

    let mut launch = ctx.direct.get("login-return").ok_or("no launch")?.clone();
    launch.cpu = Some(1);
    let cold = process::cold_start(&launch, events[0].clone()).await?;
    let hydra = ctx.urls.hydra_public.clone();
    let ok = |body: &[u8]| {
        apigw::response(body).ok().is_some_and(|r| {
            r.status == 303
                && r.header("location")
                    .and_then(|l| Url::parse(l).ok())
                    .is_some_and(|l| {
                        same_origin(&l, &hydra) && query_param(&l, "login_verifier").is_some()
                    })
        })
    };
    let mut errors = usize::from(!ok(&cold.invocation.body));
    let mut latencies = Vec::with_capacity(n);
    let t = Instant::now();
    for event in events.iter().skip(1) {
        let inv = cold.running.invoke(event.clone()).await?;
        if !ok(&inv.body) {
            errors += 1;
        }
        latencies.push(inv.latency_ms());
    }
    let elapsed = t.elapsed().as_secs_f64();
    let peak = cold.running.peak_rss_kib().unwrap_or(0);
    cold.running.stop().await;
    summary.put("peak_rss_mb", "login-return", json!(peak as f64 / 1024.0));
    summary.put(
        "rps",
        "return",
        json!(((n as f64 / elapsed) * 10.0).round() / 10.0),
    );
    summary.put("rps", "return_errors", json!(errors));
    summary.put("rps", "return_requests", json!(n));
    summary.spread("rps", "return_latency_ms", Spread::of(&latencies));
    if errors > 0 {
        return Err(format!("{errors} of {} return requests failed", n + 1));
    }
    Ok(())
}

fn criterion_estimate(dir: &Path, bench: &str) -> Option<Spread> {
    let text = std::fs::read_to_string(dir.join(bench).join("new").join("estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let median = &v["median"];
    let us = |x: &Value| x.as_f64().map(|ns| ns / 1000.0);
    let point = us(&median["point_estimate"])?;
    let low = us(&median["confidence_interval"]["lower_bound"]).unwrap_or(point);
    let high = us(&median["confidence_interval"]["upper_bound"]).unwrap_or(point);
    Some(Spread {
        median: point,
        p25: low,
        p75: high,
        min: low,
        max: high,
        n: 1,
    })
}

fn sizes_and_token(ctx: &Ctx, summary: &mut Summary) {
    for f in FUNCTIONS {
        let zip = ctx.args.lambda_dir.join(f).join("bootstrap.zip");
        if let Ok(meta) = std::fs::metadata(&zip) {
            summary.put("zip_bytes", f, json!(meta.len()));
        }
        if let Ok(meta) = std::fs::metadata(ctx.args.bin_dir.join(f)) {
            summary.put("x86_64_binary_bytes", f, json!(meta.len()));
        }
    }
    if let Ok(meta) = std::fs::metadata(ctx.args.bin_dir.join("hello-bench")) {
        summary.put("x86_64_binary_bytes", "hello-bench", json!(meta.len()));
    }
    // Criterion's median and its 95% confidence interval (as p25/p75 and min/max).
    summary.spread(
        "token_seal_us",
        "median",
        criterion_estimate(&ctx.args.criterion_dir, "seal"),
    );
    summary.spread(
        "token_open_us",
        "median",
        criterion_estimate(&ctx.args.criterion_dir, "open"),
    );
}

/// Largest arm64 zip of any function: what Lambda loads at every cold start.
const ZIP_BUDGET_BYTES: f64 = 2.5 * 1024.0 * 1024.0;

/// Own time budget per request (ms): one upstream call and a page or redirect for login, consent
/// and the error page; four calls for logout; four calls, two of them SigV4-signed through the
/// AWS SDK, and the token's verification for the return function.
fn own_time_budget_ms(function: &str) -> f64 {
    match function {
        "logout" => 1.5,
        "login-return" => 2.5,
        _ => 1.0,
    }
}

fn budgets(summary: &mut Summary) {
    let mut b = Vec::new();
    for f in FUNCTIONS {
        let limit = if f == "login-return" { 3.0 } else { 2.0 };
        b.push(Budget::at_most(
            &format!("cold_start_ratio.{f}"),
            summary.median("cold_start_ratio", f),
            limit,
            true,
        ));
    }
    for f in FUNCTIONS {
        b.push(Budget::at_most(
            &format!("peak_rss_mb.{f}"),
            summary.median("peak_rss_mb", f),
            16.0,
            false,
        ));
    }
    for f in FUNCTIONS {
        b.push(Budget::at_most(
            &format!("zip_bytes.{f}"),
            summary.median("zip_bytes", f),
            ZIP_BUDGET_BYTES,
            false,
        ));
    }
    // Own time per request: warm latency at the Runtime API minus the time its upstream calls
    // took, at the median. Unlike a ratio to the upstream time, it does not depend on how fast
    // a loopback Kratos or Hydra answers.
    for f in FUNCTIONS {
        b.push(Budget::at_most(
            &format!("warm_bridge_ms.{f}"),
            summary.median("warm_bridge_ms", f),
            own_time_budget_ms(f),
            true,
        ));
    }
    let calls = |path: &str, service: &str| -> Option<f64> {
        summary
            .figures
            .get("upstream_calls")?
            .get(path)?
            .get(service)?
            .as_f64()
    };
    b.push(Budget::exactly(
        "upstream_calls.login.normal",
        calls("login.normal", "total"),
        1.0,
    ));
    b.push(
        Budget::exactly("upstream_calls.login.sso", calls("login.sso", "total"), 2.0)
            .with_note("Hydra GET login request and Kratos whoami; the return function accepts"),
    );
    for path in ["login-return.normal", "login-return.sso"] {
        b.push(Budget::exactly(
            &format!("upstream_calls.{path}(kratos+hydra)"),
            calls(path, "kratos")
                .zip(calls(path, "hydra"))
                .map(|(k, h)| k + h),
            2.0,
        ));
        b.push(Budget::at_most(
            &format!("upstream_calls.{path}.dynamodb"),
            calls(path, "dynamodb"),
            2.0,
            false,
        ));
    }
    for path in ["consent.skip", "consent.screen", "consent.allow"] {
        b.push(Budget::at_most(
            &format!("upstream_calls.{path}"),
            calls(path, "total"),
            2.0,
            false,
        ));
        b.push(Budget::exactly(
            &format!("upstream_calls.{path}.kratos"),
            calls(path, "kratos"),
            0.0,
        ));
    }
    b.push(Budget::at_most(
        "return_to_bytes",
        summary
            .figures
            .get("return_to_bytes")
            .and_then(|m| m.get("login"))
            .and_then(|v| v["max"].as_f64()),
        4096.0,
        false,
    ));
    summary.budgets = b;
}
