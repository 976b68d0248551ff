//! Function processes: spawned like Lambda starts a custom runtime (`bootstrap` with the Runtime
//! API address and the function's environment), measured from spawn to first answer.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::process::{Child, Command};

use crate::emulator::{Invocation, RuntimeApi};

/// How long any invocation may take before the harness gives up.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(20);

/// What to start and with which environment.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary (target/release/<name>).
    pub binary: PathBuf,
    /// Function name for `AWS_LAMBDA_FUNCTION_NAME` and logs.
    pub name: String,
    /// The function's own environment (BRIDGE_*, AWS_*), on top of the Lambda variables.
    pub env: Vec<(String, String)>,
    /// Where stdout/stderr go (JSON logs).
    pub log: PathBuf,
    /// Pin to this CPU with `taskset`.
    pub cpu: Option<usize>,
}

/// A running function process with its own Runtime API emulator.
pub struct Running {
    /// The emulator it polls.
    pub runtime: RuntimeApi,
    child: Child,
    /// Its process id.
    pub pid: u32,
}

impl Running {
    /// Invokes it with an event and waits for the answer.
    pub async fn invoke(&self, event: Bytes) -> Result<Invocation, String> {
        self.runtime.invoke(event, INVOKE_TIMEOUT).await
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid)
    }

    /// Kills it (Lambda freezes and later kills instances; nothing to flush here).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `VmHWM` of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A cold start: the process was spawned with `event` already queued.
pub struct ColdStart {
    /// The process, still running (warm from now on).
    pub running: Running,
    /// Its first invocation.
    pub invocation: Invocation,
    /// When the process was spawned.
    pub spawned: Instant,
}

impl ColdStart {
    /// Spawn to first answer, in milliseconds.
    pub fn cold_ms(&self) -> f64 {
        self.invocation
            .done
            .duration_since(self.spawned)
            .as_secs_f64()
            * 1e3
    }
}

fn command(launch: &Launch, runtime_api: &str) -> std::io::Result<Command> {
    let mut command = match launch.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&launch.binary);
            c
        }
        None => Command::new(&launch.binary),
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)?;
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", &launch.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", launch.name),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("LAMBDA_TASK_ROOT", "/var/task")
        .env("_HANDLER", "bootstrap")
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    Ok(command)
}

/// Spawns the function with `event` queued and waits for its first answer.
pub async fn cold_start(launch: &Launch, event: Bytes) -> Result<ColdStart, String> {
    let runtime = RuntimeApi::start(&launch.name)
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let receiver = runtime.enqueue(event);
    let mut command =
        command(launch, &runtime.address()).map_err(|e| format!("{}: {e}", launch.name))?;
    let spawned = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", launch.binary.display()))?;
    let pid = child.id().unwrap_or(0);
    let invocation = runtime
        .wait(receiver, INVOKE_TIMEOUT)
        .await
        .map_err(|e| format!("{}: {e} (log {})", launch.name, launch.log.display()))?;
    Ok(ColdStart {
        running: Running {
            runtime,
            child,
            pid,
        },
        invocation,
        spawned,
    })
}
