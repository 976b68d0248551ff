//! `sms-sink [ADDR]`: receives the Kratos courier's SMS requests (see `devstack::sms`).
//! The address comes from the first argument, else `SMS_SINK_ADDR`, else `127.0.0.1:4477`.

use std::net::SocketAddr;
use std::process::ExitCode;

use devstack::sms::{router, Store};

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SMS_SINK_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:4477".to_owned());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sms-sink: bad address {addr:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sms-sink: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("sms-sink: listening on http://{addr}");
    let shutdown = async {
        // If the signal handler cannot be installed, run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    match axum::serve(listener, router(Store::default()))
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sms-sink: server error: {e}");
            ExitCode::FAILURE
        }
    }
}
