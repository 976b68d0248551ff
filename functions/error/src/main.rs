//! The `error` Lambda: builds its dependencies once at cold start, then hands every request
//! (through [`bridge::runtime::serve`], which logs the cold start) to
//! [`bridge::handlers::error_page::handle`].

use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridge::logging::init();
    let deps = bridge::bootstrap::error_page().map_err(|e| {
        tracing::error!(event = "startup_failed", error = %e, "cannot start");
        e
    })?;
    let deps = &deps;
    bridge::runtime::serve(|request| bridge::handlers::error_page::handle(request, deps)).await
}
