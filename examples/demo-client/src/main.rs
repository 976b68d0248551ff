//! Demo OAuth2/OpenID Connect relying party for trying the bridge end to end.
//!
//! It plays the application a user signs in to: public clients (`token_endpoint_auth_method:
//! none`) using the authorization code flow with PKCE S256, then shows the ID token's claims and
//! offers RP-initiated logout. Everything a browser test needs to assert on carries a
//! `data-testid`.
//!
//! Environment:
//! - `DEMO_CLIENT_ADDR` (default `127.0.0.1:5555`): listen address.
//! - `DEMO_CLIENT_BASE_URL` (default `http://127.0.0.1:5555`): this app's URL as the browser sees
//!   it; the redirect URI is `<base>/callback`, the post-logout URI `<base>/logged-out`.
//! - `HYDRA_PUBLIC_URL` (default `http://127.0.0.1:4444`): Hydra's public URL, for the browser
//!   redirects and the server's token call alike.

mod app;
mod oauth;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use url::Url;

/// Startup failures; each names the variable to fix.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("DEMO_CLIENT_ADDR is not a socket address ({0})")]
    Addr(#[from] std::net::AddrParseError),
    #[error("{0} is not an absolute http(s) URL: {1}")]
    Url(&'static str, String),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn http_url(name: &'static str, default: &str) -> Result<Url, StartError> {
    let raw = env_or(name, default);
    let url = Url::parse(raw.trim()).map_err(|e| StartError::Url(name, format!("{raw}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(StartError::Url(name, raw));
    }
    Ok(url)
}

async fn run() -> Result<(), StartError> {
    let addr: SocketAddr = env_or("DEMO_CLIENT_ADDR", "127.0.0.1:5555").parse()?;
    let base = http_url("DEMO_CLIENT_BASE_URL", "http://127.0.0.1:5555")?;
    let hydra = http_url("HYDRA_PUBLIC_URL", "http://127.0.0.1:4444")?;
    let state = app::AppState {
        config: app::Config::new(&base),
        hydra: oauth::Hydra::new(hydra)?,
        store: Mutex::default(),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("demo-client: listening on http://{addr} (base URL {base})");
    axum::serve(listener, app::router(Arc::new(state))).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-client: {e}");
            ExitCode::FAILURE
        }
    }
}
