//! The `device` Lambda: builds its dependencies once at cold start, then hands every request to
//! [`bridge::handlers::device::handle`].

use std::convert::Infallible;

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridge::logging::init();
    let deps = bridge::bootstrap::device().await.map_err(|e| {
        tracing::error!(event = "startup_failed", error = %e, "cannot start");
        e
    })?;
    let deps = &deps;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(bridge::handlers::device::handle(request, deps).await)
    }))
    .await
}
