//! The baseline of the cold start ratio: the smallest useful lambda_http function (same runtime
//! flavour as the bridge's functions, same release profile), answering every request with a
//! fixed 200.

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_request: Request| async {
        Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Body::from("hello"))
            .map_err(Error::from)
    }))
    .await
}
