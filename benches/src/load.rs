//! `bridge-bench load`: whole Google-style logins (the scripted browser of `scenarios.rs`) at a
//! steady open-loop rate against warm function processes, to find the highest rate with zero
//! errors and whose CPU runs out first (docs/performance.md, "Load").
//!
//! - The functions' URL is served by a pool front: per function up to `--instances` warm
//!   processes (each with its own Runtime API emulator, one invocation at a time, like Lambda
//!   instances); a request waits for a free instance. The first requests spawn them (a warm-up
//!   before the measured window absorbs those cold starts).
//! - Their Kratos, Hydra and DynamoDB URLs point at the recording proxies, so every upstream call
//!   is timed.
//! - A tokio interval starts one login every `1/rate` s for `--duration` s (bounded total count);
//!   at most `--concurrency` logins are in flight, a tick finding the bound reached is counted as
//!   dropped (an open-loop driver does not wait).
//! - CPU time (`utime + stime` from `/proc/<pid>/stat`) over the measured window: the function
//!   processes, the harness itself (browser, front, proxies), and each stack part by the process
//!   group recorded in `<stack state>/pids/<part>`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::apigw::{self, HttpRequest};
use crate::browser::{query_param, Browser};
use crate::emulator::Outcome;
use crate::process::{self, Launch, Running};
use crate::proxy::{self, Recorder, Upstream};
use crate::scenarios::{self, Urls};
use crate::stack::Stack;
use crate::FUNCTIONS;

/// Options of the load mode.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    env: PathBuf,
    bin_dir: PathBuf,
    out_dir: PathBuf,
    rate: f64,
    duration_s: f64,
    concurrency: usize,
    instances: usize,
    warmup: usize,
}

impl LoadArgs {
    /// Parses the arguments after `load`.
    pub fn parse(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut out = Self {
            env: PathBuf::from(".stack-load/env"),
            bin_dir: PathBuf::from("target/release"),
            out_dir: PathBuf::from("target/bench"),
            rate: 5.0,
            duration_s: 60.0,
            concurrency: 32,
            instances: 2,
            warmup: 0,
        };
        let mut it = args;
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            let num = |name: &str, text: String| -> Result<f64, String> {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or(format!("{name}: not a positive number: {text}"))
            };
            match arg.as_str() {
                "--env" => out.env = value("--env")?.into(),
                "--bin-dir" => out.bin_dir = value("--bin-dir")?.into(),
                "--out" => out.out_dir = value("--out")?.into(),
                "--rate" => out.rate = num("--rate", value("--rate")?)?,
                "--duration" => out.duration_s = num("--duration", value("--duration")?)?,
                "--concurrency" => {
                    out.concurrency = num("--concurrency", value("--concurrency")?)? as usize
                }
                "--instances" => {
                    out.instances = num("--instances", value("--instances")?)? as usize
                }
                "--warmup" => out.warmup = num("--warmup", value("--warmup")?)? as usize,
                "-h" | "--help" => {
                    println!("usage: bridge-bench load [--env FILE] [--bin-dir DIR] [--out DIR] [--rate N] [--duration S] [--concurrency C] [--instances K] [--warmup N]");
                    std::process::exit(0);
                }
                other => return Err(format!("load: unknown argument {other}")),
            }
        }
        out.concurrency = out.concurrency.max(1);
        out.instances = out.instances.max(1);
        if out.warmup == 0 {
            out.warmup = 2 * out.instances;
        }
        Ok(out)
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!("[load] {}", message.as_ref());
}

/// One invocation seen by the pool front.
#[derive(Debug, Clone)]
struct Inv {
    function: String,
    /// Runtime API: event handed out to result.
    latency_ms: f64,
    /// Front: request in to answer out, including the wait for a free instance.
    front_ms: f64,
    cold: bool,
    status: u16,
}

/// Up to `instances` warm processes of one function.
struct Pool {
    launch: Launch,
    permits: tokio::sync::Semaphore,
    idle: Mutex<Vec<Running>>,
    pids: Mutex<Vec<u32>>,
}

struct Front {
    pools: HashMap<String, Pool>,
    host: String,
    counter: AtomicUsize,
    records: Mutex<Vec<Inv>>,
}

impl Front {
    async fn invoke(&self, request: &HttpRequest) -> Result<apigw::HttpResponse, String> {
        let started = Instant::now();
        let function = apigw::function_for(&request.path)
            .ok_or_else(|| format!("no function serves {}", request.path))?;
        let pool = self
            .pools
            .get(function)
            .ok_or_else(|| format!("{function} is not configured"))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let event = Bytes::from(apigw::event(request, &format!("load-{n}"), &self.host));
        let _permit = pool.permits.acquire().await.map_err(|e| e.to_string())?;
        let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (running, invocation, cold) = match idle {
            Some(running) => {
                let result = running.invoke(event).await;
                (running, result, false)
            }
            None => {
                let c = process::cold_start(&pool.launch, event).await?;
                pool.pids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(c.running.pid);
                (c.running, Ok(c.invocation), true)
            }
        };
        pool.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(running);
        let invocation = invocation?;
        let response = match invocation.outcome {
            Outcome::Response => apigw::response(&invocation.body)?,
            Outcome::Error => apigw::HttpResponse::default(),
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Inv {
                function: function.to_owned(),
                latency_ms: invocation.latency_ms(),
                front_ms: started.elapsed().as_secs_f64() * 1e3,
                cold,
                status: response.status,
            });
        if response.status == 0 {
            return Err(format!(
                "{function} reported an error: {}",
                String::from_utf8_lossy(&invocation.body)
            ));
        }
        Ok(response)
    }

    fn take(&self) -> Vec<Inv> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn pids(&self) -> Vec<u32> {
        self.pools
            .values()
            .flat_map(|p| p.pids.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    async fn stop(&self) {
        for pool in self.pools.values() {
            let idle = std::mem::take(&mut *pool.idle.lock().unwrap_or_else(|e| e.into_inner()));
            for running in idle {
                running.stop().await;
            }
        }
    }
}

async fn serve(front: Arc<Front>, addr: SocketAddr) -> std::io::Result<()> {
    crate::front::serve_http(addr, move |request| {
        let front = front.clone();
        async move { handle(request, &front).await }
    })
    .await
}

async fn handle(request: Request<Incoming>, front: &Front) -> Response<Full<Bytes>> {
    let request = crate::front::read_request(request).await;
    match front.invoke(&request).await {
        Ok(answer) => crate::front::to_hyper(answer),
        Err(error) => {
            eprintln!("[load] front: {} {}: {error}", request.method, request.path);
            crate::front::bad_gateway(error)
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// n, p50, p90, p99, max of `values`.
fn percentiles(values: &[f64]) -> Value {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return json!({"n": 0});
    }
    json!({
        "n": sorted.len(),
        "p50": round(pct(&sorted, 0.50)),
        "p90": round(pct(&sorted, 0.90)),
        "p99": round(pct(&sorted, 0.99)),
        "max": round(sorted[sorted.len() - 1]),
    })
}

/// `(pid, pgid, utime + stime ticks)` from `/proc/<pid>/stat`.
fn stat(pid: &str) -> Option<(u32, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): pgid is field 5, utime 14, stime 15.
    let pgid = f.get(2)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((pid.parse().ok()?, pgid, ticks))
}

/// Every process: pid -> (pgid, ticks).
fn all_processes() -> HashMap<u32, (u32, u64)> {
    let mut out = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.bytes().all(|b| b.is_ascii_digit()) {
                if let Some((pid, pgid, ticks)) = stat(&name) {
                    out.insert(pid, (pgid, ticks));
                }
            }
        }
    }
    out
}

/// Stack parts by process group: `<state>/pids/<part>` holds the group id.
fn stack_groups(env: &Path) -> BTreeMap<String, u32> {
    let dir = env.parent().unwrap_or(Path::new(".")).join("pids");
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Some(pgid) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                out.insert(entry.file_name().to_string_lossy().into_owned(), pgid);
            }
        }
    }
    out
}

/// Busy ticks of the whole machine (`/proc/stat` cpu line, without idle and iowait).
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle.min(total), total)
}

/// CPU seconds per owner between two snapshots.
fn cpu_split(
    before: &HashMap<u32, (u32, u64)>,
    after: &HashMap<u32, (u32, u64)>,
    functions: &[u32],
    groups: &BTreeMap<String, u32>,
) -> BTreeMap<String, f64> {
    const TICKS_PER_S: f64 = 100.0; // USER_HZ on Linux
    let me = std::process::id();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for (pid, (pgid, ticks)) in after {
        let was = before.get(pid).map(|(_, t)| *t).unwrap_or(0);
        let delta = ticks.saturating_sub(was) as f64 / TICKS_PER_S;
        let owner = if functions.contains(pid) {
            Some("functions".to_owned())
        } else if *pid == me {
            Some("harness (browser, front, proxies)".to_owned())
        } else {
            groups
                .iter()
                .find(|(_, g)| *g == pgid)
                .map(|(name, _)| name.clone())
        };
        if let Some(owner) = owner {
            *out.entry(owner).or_default() += delta;
        }
    }
    out.values_mut().for_each(|v| *v = round(*v));
    out
}

fn launch(args: &LoadArgs, name: &str, env: Vec<(String, String)>) -> Launch {
    Launch {
        binary: args.bin_dir.join(name),
        name: name.to_owned(),
        env,
        log: args.out_dir.join("logs").join(format!("{name}-load.log")),
        cpu: None,
    }
}

/// One whole login in a new browser; Ok(ms) when it ended at the client's callback with a code.
async fn one_login(urls: &Urls) -> Result<f64, String> {
    let t = Instant::now();
    let browser = Browser::new();
    let auth = scenarios::authorization_url(urls, "demo-first-party", &[])?;
    let login = scenarios::google_login(&browser, urls, &auth).await?;
    if !login.via_kratos || query_param(&login.callback, "code").is_none() {
        return Err(format!(
            "login ended without a code via Kratos (via_kratos {}): error={:?} {:?}",
            login.via_kratos,
            query_param(&login.callback, "error"),
            query_param(&login.callback, "error_description"),
        ));
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Runs the load mode and writes `<out>/load.json`; Err when setup fails, Ok(false) when the
/// rate was not sustained.
pub async fn run(args: &LoadArgs) -> Result<bool, String> {
    std::fs::create_dir_all(args.out_dir.join("logs")).map_err(|e| format!("out dir: {e}"))?;
    let stack = Stack::load(&args.env)?;
    let urls = Urls::from_stack(&stack)?;
    let recorder = Recorder::default();
    let mut env = stack.function_env();
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
        for (k, v) in env.iter_mut() {
            if k == var {
                *v = format!("http://{addr}");
            }
        }
    }
    let host = format!(
        "{}:{}",
        urls.functions.host_str().unwrap_or("127.0.0.1"),
        urls.functions.port_or_known_default().unwrap_or(80)
    );
    let front = Arc::new(Front {
        pools: FUNCTIONS
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    Pool {
                        launch: launch(args, f, env.clone()),
                        permits: tokio::sync::Semaphore::new(args.instances),
                        idle: Mutex::new(Vec::new()),
                        pids: Mutex::new(Vec::new()),
                    },
                )
            })
            .collect(),
        host,
        counter: AtomicUsize::new(0),
        records: Mutex::new(Vec::new()),
    });
    let front_addr = stack.socket("FUNCTIONS_URL")?;
    serve(front.clone(), front_addr)
        .await
        .map_err(|e| format!("cannot listen on {front_addr} (FUNCTIONS_URL): {e}"))?;

    // Warm-up, not measured: one login first (it registers the Google user in Kratos; concurrent
    // first logins of one new identity conflict), then concurrent ones so each function has its
    // instances.
    // One login first: it registers the Google user in Kratos (concurrent first logins of one
    // new identity conflict). Every login is of that one user, as the mock Google has one.
    log(format!("warm-up: 1 + {} concurrent logins", args.warmup));
    one_login(&urls)
        .await
        .map_err(|e| format!("first login failed: {e}"))?;
    let warm: Vec<_> = (0..args.warmup)
        .map(|_| {
            let urls = urls.clone();
            tokio::spawn(async move { one_login(&urls).await })
        })
        .collect();
    for task in warm {
        task.await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("warm-up login failed: {e}"))?;
    }
    front.take();

    let total = (args.rate * args.duration_s).round().max(1.0) as usize;
    log(format!(
        "{total} logins at {} /s over {} s, at most {} in flight, {} instance(s) per function",
        args.rate, args.duration_s, args.concurrency, args.instances
    ));
    let groups = stack_groups(&args.env);
    let cpu_before = all_processes();
    let machine_before = machine_ticks();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Result<f64, String>>>> = Arc::default();
    let mut dropped = 0usize;
    let mut tasks = Vec::with_capacity(total);
    let t0 = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..total {
        ticker.tick().await;
        if in_flight.load(Ordering::SeqCst) >= args.concurrency {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (urls, in_flight, results) = (urls.clone(), in_flight.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let result = one_login(&urls).await;
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(result);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    let launched_s = t0.elapsed().as_secs_f64();
    let drain = tokio::time::timeout(Duration::from_secs(30), async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    let elapsed_s = t0.elapsed().as_secs_f64();
    let cpu_after = all_processes();
    let machine_after = machine_ticks();
    let calls = recorder.between(t0, Instant::now());
    let invocations = front.take();
    let cpu = cpu_split(&cpu_before, &cpu_after, &front.pids(), &groups);
    front.stop().await;

    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let ok: Vec<f64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    let mut error_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        *error_kinds
            .entry(e.chars().take(160).collect())
            .or_default() += 1;
    }
    let unfinished = total - dropped - results.len();
    let errors = results.len() - ok.len() + dropped + unfinished;
    let achieved = ok.len() as f64 / elapsed_s;
    let sustained = errors == 0 && achieved >= 0.9 * args.rate;

    let mut by_function: BTreeMap<String, Value> = BTreeMap::new();
    for f in FUNCTIONS {
        let of: Vec<&Inv> = invocations.iter().filter(|i| i.function == f).collect();
        let lat: Vec<f64> = of.iter().map(|i| i.latency_ms).collect();
        let fr: Vec<f64> = of.iter().map(|i| i.front_ms).collect();
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for i in &of {
            *statuses.entry(i.status.to_string()).or_default() += 1;
        }
        by_function.insert(
            f.to_owned(),
            json!({
                "invocations": of.len(),
                "cold_starts": of.iter().filter(|i| i.cold).count(),
                "handler_ms": percentiles(&lat),
                "front_ms": percentiles(&fr),
                "statuses": statuses,
            }),
        );
    }
    let mut by_upstream: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_call: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in &calls {
        let name = serde_json::to_value(c.upstream)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        by_upstream
            .entry(c.upstream.service().to_owned())
            .or_default()
            .push(c.wait_ms());
        by_call
            .entry(format!("{name} {}", c.request_line))
            .or_default()
            .push(c.wait_ms());
    }
    let busy = (machine_after.0 - machine_before.0) as f64 / 100.0;
    let wall = (machine_after.1 - machine_before.1) as f64 / 100.0;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let report = json!({
        "rate_target_per_s": args.rate,
        "duration_s": args.duration_s,
        "concurrency": args.concurrency,
        "instances_per_function": args.instances,
        "logins_planned": total,
        "logins_ok": ok.len(),
        "errors": errors,
        "dropped_at_concurrency_bound": dropped,
        "unfinished": unfinished,
        "drained": drain.is_ok(),
        "error_kinds": error_kinds,
        "launch_window_s": round(launched_s),
        "elapsed_s": round(elapsed_s),
        "achieved_logins_per_s": round(achieved),
        "sustained": sustained,
        "login_ms": percentiles(&ok),
        "functions": by_function,
        "upstreams": by_upstream.iter().map(|(k, v)| (k.clone(), percentiles(v))).collect::<BTreeMap<_, _>>(),
        "upstream_calls": by_call.iter().map(|(k, v)| (k.clone(), percentiles(v))).collect::<BTreeMap<_, _>>(),
        "cpu_s": cpu,
        "machine": {
            "cores": cores,
            "busy_cpu_s": round(busy),
            "all_cores_s": round(wall),
            "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        },
    });
    let path = args.out_dir.join("load.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{}", table(&report));
    log(format!("wrote {}", path.display()));
    Ok(sustained)
}

fn row(name: &str, v: &Value) -> String {
    if v["n"].as_u64().unwrap_or(0) == 0 {
        return String::new();
    }
    let f = |k: &str| v[k].as_f64().map_or("-".to_owned(), |x| format!("{x:.1}"));
    format!(
        "  {name:<64} {:>6} {:>8} {:>8} {:>8} {:>8}\n",
        v["n"].as_u64().unwrap_or(0),
        f("p50"),
        f("p90"),
        f("p99"),
        f("max")
    )
}

fn table(r: &Value) -> String {
    let mut out = format!(
        "load: {} logins/s target, {} planned, {} ok, {} errors ({} dropped), achieved {:.2} logins/s over {:.1} s -> {}\n",
        r["rate_target_per_s"],
        r["logins_planned"],
        r["logins_ok"],
        r["errors"],
        r["dropped_at_concurrency_bound"],
        r["achieved_logins_per_s"].as_f64().unwrap_or(0.0),
        r["elapsed_s"].as_f64().unwrap_or(0.0),
        if r["sustained"] == true { "SUSTAINED" } else { "NOT sustained" }
    );
    out += &format!(
        "  {:<64} {:>6} {:>8} {:>8} {:>8} {:>8}\n",
        "ms", "n", "p50", "p90", "p99", "max"
    );
    out += &row("whole login", &r["login_ms"]);
    for f in FUNCTIONS {
        out += &row(&format!("{f} (handler)"), &r["functions"][f]["handler_ms"]);
        out += &row(
            &format!("{f} (front, incl. queue)"),
            &r["functions"][f]["front_ms"],
        );
    }
    if let Some(m) = r["upstreams"].as_object() {
        for (k, v) in m {
            out += &row(&format!("upstream {k}"), v);
        }
    }
    if let Some(m) = r["upstream_calls"].as_object() {
        for (k, v) in m {
            out += &row(&format!("  {k}"), v);
        }
    }
    out += "  CPU seconds over the window:";
    if let Some(m) = r["cpu_s"].as_object() {
        for (k, v) in m {
            out += &format!(" {k}={v}");
        }
    }
    out += &format!(
        "; machine busy {} of {} core-s\n",
        r["machine"]["busy_cpu_s"], r["machine"]["all_cores_s"]
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 50.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v, 1.0), 100.0);
        assert_eq!(pct(&[7.0], 0.9), 7.0);
        assert_eq!(percentiles(&[])["n"], 0);
    }

    #[test]
    fn reads_own_stat() {
        let (pid, _, ticks) = stat(&std::process::id().to_string()).expect("stat");
        assert!(ticks < u64::MAX);
        assert_eq!(pid, std::process::id());
    }

    #[test]
    fn parses_load_args() {
        let a = LoadArgs::parse(
            ["--rate", "10", "--duration", "5", "--instances", "3"]
                .into_iter()
                .map(String::from),
        )
        .expect("args");
        assert_eq!(
            (a.rate, a.duration_s, a.instances, a.warmup),
            (10.0, 5.0, 3, 6)
        );
        assert!(LoadArgs::parse(["--rate", "0"].into_iter().map(String::from)).is_err());
    }
}
