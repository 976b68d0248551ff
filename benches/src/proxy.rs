//! A recording TCP proxy in front of each upstream (Kratos public and admin, Hydra admin,
//! DynamoDB). It does not parse HTTP beyond the request line: on a keep-alive connection a call
//! is a burst of client bytes followed by a burst of upstream bytes, so a call starts with the
//! first client byte after the upstream last spoke and ends with the last upstream byte relayed
//! before the client speaks again. That gives, per call, which upstream, the request line and
//! how long the function waited (as seen one loopback hop from the function).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which upstream a proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    /// Kratos public API (`/sessions/whoami`).
    KratosPublic,
    /// Kratos admin API (session revocation, errors are public but counted here too).
    KratosAdmin,
    /// Hydra admin API.
    HydraAdmin,
    /// DynamoDB (moto locally).
    DynamoDb,
}

impl Upstream {
    /// The service, for counting: `kratos`, `hydra` or `dynamodb`.
    pub fn service(self) -> &'static str {
        match self {
            Upstream::KratosPublic | Upstream::KratosAdmin => "kratos",
            Upstream::HydraAdmin => "hydra",
            Upstream::DynamoDb => "dynamodb",
        }
    }
}

/// One request/response exchange seen by a proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// Where it went.
    pub upstream: Upstream,
    /// `METHOD /path` without the query (which may hold a challenge).
    pub request_line: String,
    /// First request byte relayed.
    pub start: Instant,
    /// Last response byte relayed (equal to `start` if no answer came).
    pub end: Instant,
}

impl Call {
    /// How long the function waited on this call, in milliseconds.
    pub fn wait_ms(&self) -> f64 {
        self.end.duration_since(self.start).as_secs_f64() * 1e3
    }
}

/// Whether a path segment is an identifier (a UUID or a long random token), shown as `{id}`.
fn looks_like_id(segment: &str) -> bool {
    segment.len() >= 20
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Shared log of every call every proxy saw.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Call>>>);

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, upstream: Upstream, bytes: &[u8], at: Instant) -> usize {
        let line = bytes
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("");
        let path: Vec<&str> = parts
            .next()
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .split('/')
            .map(|segment| {
                if looks_like_id(segment) {
                    "{id}"
                } else {
                    segment
                }
            })
            .collect();
        let path = path.join("/");
        let mut calls = self.lock();
        calls.push(Call {
            upstream,
            request_line: format!("{method} {path}"),
            start: at,
            end: at,
        });
        calls.len() - 1
    }

    fn end(&self, index: usize, at: Instant) {
        if let Some(call) = self.lock().get_mut(index) {
            call.end = at;
        }
    }

    /// Calls that started within `[from, to]`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<Call> {
        self.lock()
            .iter()
            .filter(|c| c.start >= from && c.start <= to)
            .cloned()
            .collect()
    }
}

/// Starts a proxy on a free loopback port in front of `target`; returns the port's address.
pub async fn start(
    upstream: Upstream,
    target: SocketAddr,
    recorder: Recorder,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let _ = relay(client, target, upstream, recorder).await;
            });
        }
    });
    Ok(addr)
}

async fn relay(
    client: TcpStream,
    target: SocketAddr,
    upstream: Upstream,
    recorder: Recorder,
) -> std::io::Result<()> {
    let server = TcpStream::connect(target).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut client_buf = vec![0u8; 32 * 1024];
    let mut server_buf = vec![0u8; 32 * 1024];
    let (mut client_open, mut server_open) = (true, true);
    let mut current: Option<usize> = None;
    let mut in_request = false;
    while client_open || server_open {
        tokio::select! {
            read = client_read.read(&mut client_buf), if client_open => {
                let n = read?;
                if n == 0 {
                    client_open = false;
                    let _ = server_write.shutdown().await;
                    continue;
                }
                let now = Instant::now();
                if !in_request {
                    current = Some(recorder.begin(upstream, &client_buf[..n], now));
                }
                in_request = true;
                server_write.write_all(&client_buf[..n]).await?;
            }
            read = server_read.read(&mut server_buf), if server_open => {
                let n = read?;
                if n == 0 {
                    server_open = false;
                    let _ = client_write.shutdown().await;
                    continue;
                }
                client_write.write_all(&server_buf[..n]).await?;
                in_request = false;
                if let Some(index) = current {
                    recorder.end(index, Instant::now());
                }
            }
        }
    }
    Ok(())
}
