//! Demo OAuth2/OpenID Connect relying party for trying the bridge end to end.
//!
//! It has two modes.
//!
//! **Web app** (`demo-client`, no arguments): it plays the application a user signs in to: public
//! clients (`token_endpoint_auth_method: none`) using the authorization code flow with PKCE S256,
//! then shows the ID token's claims and offers RP-initiated logout. Everything a browser test needs
//! to assert on carries a `data-testid`.
//!
//! **Device** (`demo-client device [--client-id ID] [--scope "openid email ..."] [--max-wait
//! SECONDS]`): it plays a TV or a command-line tool using the OAuth2 device authorization grant
//! (RFC 8628, Hydra v26+). It asks Hydra for a user code, prints the code and the verification
//! URLs for a person to open on another device, polls Hydra until that person has signed in and
//! consented, then prints the granted scope and the ID token's claims as JSON. Defaults: client
//! `demo-device` (registered by the local stack on Hydra v26+), scope `openid offline_access email
//! phone profile`, waiting as long as the code lives. It exits with status 1 and a message on
//! stderr when the person refuses (`access_denied`), the code expires (`expired_token`) or the wait
//! times out, and with status 2 on a usage error.
//!
//! Environment:
//! - `DEMO_CLIENT_ADDR` (default `127.0.0.1:5555`, web app only): listen address.
//! - `DEMO_CLIENT_BASE_URL` (default `http://127.0.0.1:5555`, web app only): this app's URL as the
//!   browser sees it; the redirect URI is `<base>/callback`, the post-logout URI `<base>/logged-out`.
//! - `HYDRA_PUBLIC_URL` (default `http://127.0.0.1:4444`, both modes): Hydra's public URL, for the
//!   browser redirects and the server's token and device calls alike.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_client::device::{self, DeviceError};
use demo_client::{app, oauth};
use url::Url;

/// The client the local stack registers for the device grant (public, device grant only).
const DEVICE_CLIENT_ID: &str = "demo-device";

const DEVICE_USAGE: &str = "usage: demo-client device [--client-id ID] [--scope \"openid email ...\"] [--max-wait SECONDS]";

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

/// Why the device mode ended without printing claims; each says what happened in words a person
/// at the terminal can act on.
#[derive(Debug, thiserror::Error)]
enum DeviceModeError {
    #[error("{0}\n{DEVICE_USAGE}")]
    Usage(String),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("Hydra did not start the device sign-in: {0}")]
    Authorization(oauth::TokenError),
    #[error("the sign-in was refused (access_denied): {0}")]
    Denied(String),
    #[error(
        "the code expired before the sign-in was finished (expired_token); run `demo-client device` again for a new code"
    )]
    Expired,
    #[error("no sign-in within {0} s; gave up (run `demo-client device` again for a new code)")]
    TimedOut(u64),
    #[error("polling Hydra's token endpoint failed: {0}")]
    Poll(oauth::TokenError),
    #[error("Hydra granted no ID token (granted scope: {0:?}); ask for the openid scope")]
    NoIdToken(Option<String>),
    #[error("cannot read the ID token: {0}")]
    IdToken(#[from] oauth::IdTokenError),
    #[error("cannot print the claims: {0}")]
    Print(#[from] serde_json::Error),
}

impl DeviceModeError {
    /// Usage errors exit with 2, like other command-line tools, so scripts can tell them apart.
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// What `demo-client device` was asked to do.
#[derive(Debug, PartialEq, Eq)]
struct DeviceArgs {
    client_id: String,
    scope: String,
    /// `None`: as long as the user code lives (`expires_in`).
    max_wait: Option<Duration>,
}

/// Reads the arguments after `device`. Both `--flag value` and `--flag=value` are accepted.
/// `Ok(None)` means help was asked for.
fn parse_device_args(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<DeviceArgs>, DeviceModeError> {
    let mut parsed = DeviceArgs {
        client_id: DEVICE_CLIENT_ID.to_owned(),
        scope: app::DEFAULT_SCOPE.to_owned(),
        max_wait: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if !matches!(flag.as_str(), "--client-id" | "--scope" | "--max-wait") {
            return Err(DeviceModeError::Usage(format!("unknown argument {flag:?}")));
        }
        let value = inline_value
            .or_else(|| args.next())
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| DeviceModeError::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--client-id" => parsed.client_id = value,
            "--scope" => parsed.scope = value,
            _ => {
                let seconds: u64 = value.trim().parse().map_err(|_| {
                    DeviceModeError::Usage(format!("--max-wait takes whole seconds, not {value:?}"))
                })?;
                parsed.max_wait = Some(Duration::from_secs(seconds));
            }
        }
    }
    Ok(Some(parsed))
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

fn hydra_from_env() -> Result<oauth::Hydra, StartError> {
    let public = http_url("HYDRA_PUBLIC_URL", "http://127.0.0.1:4444")?;
    Ok(oauth::Hydra::new(public)?)
}

async fn run_web_app() -> Result<(), StartError> {
    let addr: SocketAddr = env_or("DEMO_CLIENT_ADDR", "127.0.0.1:5555").parse()?;
    let base = http_url("DEMO_CLIENT_BASE_URL", "http://127.0.0.1:5555")?;
    let state = app::AppState {
        config: app::Config::new(&base),
        hydra: hydra_from_env()?,
        store: Mutex::default(),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("demo-client: listening on http://{addr} (base URL {base})");
    axum::serve(listener, app::router(Arc::new(state))).await?;
    Ok(())
}

/// The device grant from start to claims; the lines on stdout are meant for a person.
async fn run_device(args: DeviceArgs) -> Result<(), DeviceModeError> {
    let hydra = hydra_from_env()?;
    let authorization = hydra
        .start_device_authorization(&args.client_id, &args.scope)
        .await
        .map_err(DeviceModeError::Authorization)?;
    let code = device::readable_user_code(&authorization.user_code);
    println!(
        "Device sign-in for client {} (scope: {}).",
        args.client_id, args.scope
    );
    println!(
        "Open {} and type the code: {code}",
        authorization.verification_uri
    );
    if let Some(complete) = &authorization.verification_uri_complete {
        println!("Or open {complete} (the code is filled in).");
    }
    let max_wait = args
        .max_wait
        .unwrap_or(Duration::from_secs(authorization.expires_in));
    println!(
        "The code is valid for {} s. Waiting for the sign-in (checking every {} s)...",
        authorization.expires_in, authorization.interval
    );

    let tokens = hydra
        .wait_for_device_tokens(&args.client_id, &authorization, max_wait)
        .await
        .map_err(|e| match e {
            DeviceError::TimedOut => DeviceModeError::TimedOut(max_wait.as_secs()),
            DeviceError::Token(refusal) => match refusal.error_code() {
                Some("access_denied") => DeviceModeError::Denied(match &refusal {
                    oauth::TokenError::Rejected { description, .. } if !description.is_empty() => {
                        description.clone()
                    }
                    _ => "the person declined at the login or consent page".to_owned(),
                }),
                Some("expired_token") => DeviceModeError::Expired,
                _ => DeviceModeError::Poll(refusal),
            },
        })?;

    println!(
        "Signed in. Granted scope: {}",
        tokens.scope.as_deref().unwrap_or("(none stated)")
    );
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or_else(|| DeviceModeError::NoIdToken(tokens.scope.clone()))?;
    let claims = oauth::id_token_claims(id_token)?;
    println!("ID token claims:");
    println!("{}", serde_json::to_string_pretty(&claims)?);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("device") {
        return match run_web_app().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo-client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome = match parse_device_args(args) {
        Ok(Some(device_args)) => run_device(device_args).await,
        Ok(None) => {
            println!("{DEVICE_USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-client: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn device_args_default_to_the_stack_client() -> Result<(), DeviceModeError> {
        let parsed = parse_device_args(args(&[]))?;
        assert_eq!(
            parsed,
            Some(DeviceArgs {
                client_id: "demo-device".into(),
                scope: "openid offline_access email phone profile".into(),
                max_wait: None,
            })
        );
        Ok(())
    }

    #[test]
    fn device_args_take_both_spellings() -> Result<(), DeviceModeError> {
        let parsed = parse_device_args(args(&[
            "--client-id",
            "tv",
            "--scope=openid email",
            "--max-wait",
            "30",
        ]))?;
        assert_eq!(
            parsed,
            Some(DeviceArgs {
                client_id: "tv".into(),
                scope: "openid email".into(),
                max_wait: Some(Duration::from_secs(30)),
            })
        );
        assert_eq!(parse_device_args(args(&["--help"]))?, None);
        Ok(())
    }

    #[test]
    fn device_args_refuse_nonsense() {
        for bad in [
            &["--client"][..],
            &["--client-id"],
            &["--scope="],
            &["--max-wait", "soon"],
        ] {
            assert!(
                matches!(parse_device_args(args(bad)), Err(DeviceModeError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
