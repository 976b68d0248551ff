//! A Lambda Runtime API emulator: what the Lambda service offers a custom runtime on
//! `AWS_LAMBDA_RUNTIME_API`, enough for lambda_runtime:
//!
//! - `GET  /2018-06-01/runtime/invocation/next` long-polls for the next event and answers with
//!   its JSON and the `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`
//!   and `-Trace-Id` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error` take the result;
//! - `POST /2018-06-01/runtime/init/error` takes a startup failure.
//!
//! One emulator per function process, as on Lambda (one invocation at a time per instance).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `POST .../response`.
    Response,
    /// `POST .../error`.
    Error,
}

/// One finished invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Response or error.
    pub outcome: Outcome,
    /// The body the runtime posted (for HTTP events: the API Gateway response JSON).
    pub body: Bytes,
    /// When `/next` handed the event out.
    pub dispatched: Instant,
    /// When the whole result had arrived.
    pub done: Instant,
}

impl Invocation {
    /// Handler latency as Lambda bills it: from handing the event out to the result.
    pub fn latency_ms(&self) -> f64 {
        self.done.duration_since(self.dispatched).as_secs_f64() * 1e3
    }
}

struct Pending {
    event: Bytes,
    reply: oneshot::Sender<Invocation>,
}

struct InFlight {
    reply: oneshot::Sender<Invocation>,
    dispatched: Instant,
}

struct State {
    function_arn: String,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    counter: AtomicU64,
    init_error: Mutex<Option<String>>,
    init_failed: Notify,
}

/// A running emulator; dropping it does not stop the server task (it lives for the harness run).
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Pending>,
    state: Arc<State>,
}

impl RuntimeApi {
    /// Starts an emulator on a free loopback port for a function called `function_name`.
    pub async fn start(function_name: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            queue: tokio::sync::Mutex::new(receiver),
            in_flight: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            init_error: Mutex::new(None),
            init_failed: Notify::new(),
        });
        let server_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = server_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(request, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, queue, state })
    }

    /// `host:port` for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; the returned receiver yields the invocation once the runtime answered.
    /// Queue before spawning the process to measure a cold start.
    pub fn enqueue(&self, event: Bytes) -> oneshot::Receiver<Invocation> {
        let (reply, receiver) = oneshot::channel();
        let _ = self.queue.send(Pending { event, reply });
        receiver
    }

    /// Waits for a queued invocation, failing on timeout or a reported init error.
    pub async fn wait(
        &self,
        receiver: oneshot::Receiver<Invocation>,
        timeout: Duration,
    ) -> Result<Invocation, String> {
        tokio::select! {
            result = tokio::time::timeout(timeout, receiver) => match result {
                Ok(Ok(invocation)) => Ok(invocation),
                Ok(Err(_)) => Err("the emulator dropped the invocation".to_owned()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            },
            () = self.state.init_failed.notified() => Err(format!(
                "init error: {}",
                self.state.init_error.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
            )),
        }
    }

    /// Queues an event and waits for its answer.
    pub async fn invoke(&self, event: Bytes, timeout: Duration) -> Result<Invocation, String> {
        let receiver = self.enqueue(event);
        self.wait(receiver, timeout).await
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

async fn route(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return text(StatusCode::NOT_FOUND, "{\"errorMessage\":\"unknown path\"}");
    };
    match (request.method().clone(), rest) {
        (Method::GET, "invocation/next") => next(state).await,
        (Method::POST, "init/error") => {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            *state.init_error.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(String::from_utf8_lossy(&body).into_owned());
            state.init_failed.notify_one();
            text(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
        }
        (Method::POST, rest) if rest.starts_with("invocation/") => {
            let mut parts = rest["invocation/".len()..].splitn(2, '/');
            let id = parts.next().unwrap_or("").to_owned();
            let outcome = match parts.next() {
                Some("response") => Outcome::Response,
                Some("error") => Outcome::Error,
                _ => return text(StatusCode::NOT_FOUND, "{\"errorMessage\":\"unknown path\"}"),
            };
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let done = Instant::now();
            let in_flight = state
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            match in_flight {
                Some(in_flight) => {
                    let _ = in_flight.reply.send(Invocation {
                        outcome,
                        body,
                        dispatched: in_flight.dispatched,
                        done,
                    });
                    text(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
                }
                None => text(
                    StatusCode::BAD_REQUEST,
                    "{\"errorMessage\":\"unknown request id\",\"errorType\":\"InvalidRequestID\"}",
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "{\"errorMessage\":\"unknown path\"}"),
    }
}

async fn next(state: &State) -> Response<Full<Bytes>> {
    let pending = state.queue.lock().await.recv().await;
    let Some(pending) = pending else {
        return text(StatusCode::GONE, "{\"errorMessage\":\"shutting down\"}");
    };
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let request_id = format!(
        "00000000-bench-{:04x}-{:012x}",
        std::process::id() & 0xffff,
        n
    );
    let trace_root = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        (epoch_ms() / 1000) as u64,
        n,
        n
    );
    let dispatched = Instant::now();
    state
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            request_id.clone(),
            InFlight {
                reply: pending.reply,
                dispatched,
            },
        );
    let mut response = Response::new(Full::new(pending.event));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json".to_owned());
    set("lambda-runtime-aws-request-id", request_id);
    set(
        "lambda-runtime-deadline-ms",
        (epoch_ms() + 30_000).to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    set("lambda-runtime-trace-id", trace_root);
    response
}
