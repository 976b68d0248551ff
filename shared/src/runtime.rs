//! The Lambda runtime loop every function runs, with the per-invocation bookkeeping in one place.
//!
//! `lambda_http::run` already opens a `Lambda runtime invoke` span with the request id around
//! each invocation (see [`crate::logging`]); this adds the one thing only the first invocation
//! knows: that it is the first, which becomes the `cold_start` log line and the `ColdStart`
//! metric ([`crate::metrics`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use lambda_http::{run, service_fn, Body, Error, Request, Response};

static COLD: AtomicBool = AtomicBool::new(true);

/// Serves every invocation with `handler` until Lambda stops the environment.
pub async fn serve<'a, H, F>(handler: H) -> Result<(), Error>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>> + Send + 'a,
{
    run(service_fn(move |request: Request| {
        let response = handler(request);
        async move {
            note_cold_start();
            Ok::<_, Infallible>(response.await)
        }
    }))
    .await
}

/// Logs `cold_start` on the first invocation of this execution environment, inside its span so
/// the line carries the request id. The cold start's own work (settings, key set) is `init_ms`.
fn note_cold_start() {
    if COLD.swap(false, Ordering::Relaxed) {
        tracing::info!(
            event = "cold_start",
            init_ms = crate::logging::millis_since_start(),
            "first invocation of this execution environment"
        );
    }
}
