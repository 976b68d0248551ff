//! The functions behind one HTTP port, like the HTTP API in front of them: each request becomes a
//! payload 2.0 event for the function of its path, run by a real function process under the
//! Runtime API emulator. Processes are kept warm, or (cold mode) a fresh one is spawned for
//! every request. Every invocation is recorded with the upstream calls made meanwhile.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::apigw::{self, HttpRequest, HttpResponse};
use crate::emulator::Outcome;
use crate::process::{self, Launch, Running};
use crate::proxy::{Call, Recorder};

/// One invocation of one function.
#[derive(Debug, Clone)]
pub struct Record {
    /// Binary name.
    pub function: String,
    /// What the scenario said this request was (`normal`, `sso`, ...), or empty.
    pub label: String,
    /// Spawn to answer, when this invocation was a cold start.
    pub cold_ms: Option<f64>,
    /// `/next` to result.
    pub latency_ms: f64,
    /// Upstream calls made during the invocation.
    pub calls: Vec<Call>,
    /// The answer.
    pub response: HttpResponse,
}

impl Record {
    /// Total time spent waiting on upstreams, in milliseconds.
    pub fn upstream_ms(&self) -> f64 {
        // `+ 0.0`: an empty f64 sum is -0.0.
        self.calls.iter().map(Call::wait_ms).sum::<f64>() + 0.0
    }
}

struct State {
    cold: bool,
    warm: HashMap<String, Running>,
    labels: HashMap<String, VecDeque<String>>,
    records: Vec<Record>,
    counter: u64,
}

/// Routes requests to function processes.
pub struct Router {
    launches: HashMap<String, Launch>,
    recorder: Recorder,
    host: String,
    state: tokio::sync::Mutex<State>,
}

impl Router {
    /// A router for these functions; `host` is what the HTTP API's `Host` would be.
    pub fn new(launches: Vec<Launch>, recorder: Recorder, host: String) -> Self {
        Self {
            launches: launches.into_iter().map(|l| (l.name.clone(), l)).collect(),
            recorder,
            host,
            state: tokio::sync::Mutex::new(State {
                cold: false,
                warm: HashMap::new(),
                labels: HashMap::new(),
                records: Vec::new(),
                counter: 0,
            }),
        }
    }

    /// Cold mode: every request spawns a fresh process (stopped after its answer).
    pub async fn set_cold(&self, cold: bool) {
        self.state.lock().await.cold = cold;
    }

    /// The next invocation of `function` is recorded with `label`.
    pub async fn label(&self, function: &str, label: &str) {
        self.state
            .lock()
            .await
            .labels
            .entry(function.to_owned())
            .or_default()
            .push_back(label.to_owned());
    }

    /// Forgets pending labels.
    pub async fn clear_labels(&self) {
        self.state.lock().await.labels.clear();
    }

    /// Everything recorded so far (and forgets it).
    pub async fn take_records(&self) -> Vec<Record> {
        std::mem::take(&mut self.state.lock().await.records)
    }

    /// Stops every warm process.
    pub async fn stop_all(&self) {
        let warm = std::mem::take(&mut self.state.lock().await.warm);
        for (_, running) in warm {
            running.stop().await;
        }
    }

    /// Runs `request` through the function of its path.
    pub async fn invoke(&self, request: &HttpRequest) -> Result<HttpResponse, String> {
        let function = apigw::function_for(&request.path)
            .ok_or_else(|| format!("no function serves {}", request.path))?;
        let launch = self
            .launches
            .get(function)
            .ok_or_else(|| format!("{function} is not configured"))?;
        let mut state = self.state.lock().await;
        state.counter += 1;
        let request_id = format!("bench-{}", state.counter);
        let event = Bytes::from(apigw::event(request, &request_id, &self.host));
        let label = state
            .labels
            .get_mut(function)
            .and_then(VecDeque::pop_front)
            .unwrap_or_default();
        let (invocation, cold_ms, from) = if state.cold || !state.warm.contains_key(function) {
            let cold = process::cold_start(launch, event).await?;
            let cold_ms = cold.cold_ms();
            let from = cold.spawned;
            let invocation = cold.invocation.clone();
            if state.cold {
                cold.running.stop().await;
            } else {
                state.warm.insert(function.to_owned(), cold.running);
            }
            (invocation, Some(cold_ms), from)
        } else {
            let running = state
                .warm
                .get(function)
                .ok_or_else(|| format!("{function} is not running"))?;
            let invocation = running.invoke(event).await?;
            let from = invocation.dispatched;
            (invocation, None, from)
        };
        let calls = self.recorder.between(from, invocation.done);
        let response = match invocation.outcome {
            Outcome::Response => apigw::response(&invocation.body)?,
            Outcome::Error => HttpResponse {
                status: 0,
                body: invocation.body.to_vec(),
                ..HttpResponse::default()
            },
        };
        state.records.push(Record {
            function: function.to_owned(),
            label,
            cold_ms,
            latency_ms: invocation.latency_ms(),
            calls,
            response: response.clone(),
        });
        if response.status == 0 {
            return Err(format!(
                "{function} reported an error: {}",
                String::from_utf8_lossy(&response.body)
            ));
        }
        Ok(response)
    }
}

/// Serves `router` on `addr` (the stack's FUNCTIONS_URL port) until the harness exits.
pub async fn serve(router: Arc<Router>, addr: SocketAddr) -> std::io::Result<()> {
    serve_http(addr, move |request| {
        let router = router.clone();
        async move { handle(request, &router).await }
    })
    .await
}

/// Serves HTTP/1 on `addr` until the harness exits, handing every request to `handle`; the bench
/// front and the load front differ only in what they do with a request.
pub async fn serve_http<H, F>(addr: SocketAddr, handle: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = handle(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// The browser's request as the API Gateway front sees it (whole body read).
pub async fn read_request(request: Request<Incoming>) -> HttpRequest {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    HttpRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    }
}

async fn handle(request: Request<Incoming>, router: &Router) -> Response<Full<Bytes>> {
    let http_request = read_request(request).await;
    let started = Instant::now();
    match router.invoke(&http_request).await {
        Ok(answer) => to_hyper(answer),
        Err(error) => {
            eprintln!(
                "[bench] front: {} {} failed after {:?}: {error}",
                http_request.method,
                http_request.path,
                started.elapsed()
            );
            bad_gateway(error)
        }
    }
}

/// A function's answer as the HTTP response the browser gets (what API Gateway does with it).
pub fn to_hyper(answer: HttpResponse) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    for cookie in &answer.cookies {
        if let Ok(value) = hyper::header::HeaderValue::from_str(cookie) {
            headers.append(hyper::header::SET_COOKIE, value);
        }
    }
    response
}

/// The answer when a function could not be invoked at all.
pub fn bad_gateway(error: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(error)));
    *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    response
}
