//! Reference custom login site for Ory Kratos.
//!
//! This is the kind of site a team writes to own the look of its sign-in: it draws Kratos'
//! self-service flows (Google via OIDC, phone number plus SMS code) as plain HTML forms that post
//! straight to Kratos. It knows nothing about Hydra: the bridge functions turn a Kratos session
//! into an OAuth2 login, so this site stays a pure Kratos UI.
//!
//! Environment:
//! - `LOGIN_SITE_ADDR` (default `127.0.0.1:4455`): listen address.
//! - `KRATOS_PUBLIC_URL` (default `http://127.0.0.1:4433`): Kratos' public URL as the browser
//!   sees it; the server reads flows from the same URL.

mod app;
mod kratos;
mod ui;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use url::Url;

/// Startup failures; each names the variable to fix.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("LOGIN_SITE_ADDR is not a socket address ({0})")]
    Addr(#[from] std::net::AddrParseError),
    #[error("KRATOS_PUBLIC_URL is not an absolute http(s) URL: {0}")]
    KratosUrl(String),
    #[error(transparent)]
    Kratos(#[from] kratos::KratosError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn kratos_url(raw: &str) -> Result<Url, StartError> {
    let url = Url::parse(raw.trim()).map_err(|e| StartError::KratosUrl(format!("{raw}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(StartError::KratosUrl(raw.to_owned()));
    }
    Ok(url)
}

async fn run() -> Result<(), StartError> {
    let addr: SocketAddr = env_or("LOGIN_SITE_ADDR", "127.0.0.1:4455").parse()?;
    let kratos = kratos::Kratos::new(kratos_url(&env_or(
        "KRATOS_PUBLIC_URL",
        "http://127.0.0.1:4433",
    ))?)?;
    let router = app::router(Arc::new(app::AppState { kratos }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("login-site: listening on http://{addr}");
    axum::serve(listener, router).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login-site: {e}");
            ExitCode::FAILURE
        }
    }
}
