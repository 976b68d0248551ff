//! Browser journeys through the real stack: Hydra's authorization endpoint, the functions (via
//! the front), Kratos' browser login flow with the mock Google, consent, logout.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::Method;
use sha2::{Digest, Sha256};
use url::Url;

use crate::browser::{input_value, query_param, same_origin, Browser, Landing, Page};
use crate::stack::Stack;

/// The stack's URLs a journey needs.
#[derive(Debug, Clone)]
pub struct Urls {
    /// Hydra public.
    pub hydra_public: Url,
    /// Hydra admin.
    pub hydra_admin: Url,
    /// Kratos public.
    pub kratos_public: Url,
    /// Where Hydra and Kratos send browsers: the front.
    pub functions: Url,
    /// Kratos' login UI (not running: its URL only carries the flow id).
    pub login_site: Url,
    /// The demo client's redirect URIs live here (not running).
    pub demo_client: Url,
    /// The Google stand-in.
    pub mock_google: Url,
    /// The Google stand-in's predefined user.
    pub google_sub: String,
}

impl Urls {
    /// From the stack env.
    pub fn from_stack(stack: &Stack) -> Result<Self, String> {
        Ok(Self {
            hydra_public: stack.url("HYDRA_PUBLIC_URL")?,
            hydra_admin: stack.url("HYDRA_ADMIN_URL")?,
            kratos_public: stack.url("KRATOS_PUBLIC_URL")?,
            functions: stack.url("FUNCTIONS_URL")?,
            login_site: stack.url("LOGIN_SITE_URL")?,
            demo_client: stack.url("DEMO_CLIENT_URL")?,
            mock_google: stack.url("MOCK_GOOGLE_URL")?,
            google_sub: stack.var("STACK_GOOGLE_SUB")?.to_owned(),
        })
    }

    fn join(base: &Url, path: &str) -> Result<Url, String> {
        base.join(path).map_err(|e| format!("{path}: {e}"))
    }
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (nanos >> (i % 16)) as u8 ^ i as u8);
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// A random id like Kratos' (UUID shaped).
pub fn random_uuid() -> String {
    let mut buf = [0u8; 16];
    let _ = getrandom::fill(&mut buf);
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Hydra's authorization URL for a demo client (PKCE S256, state, nonce) plus `extra` params.
pub fn authorization_url(
    urls: &Urls,
    client_id: &str,
    extra: &[(&str, &str)],
) -> Result<Url, String> {
    let verifier = random_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut url = Urls::join(&urls.hydra_public, "/oauth2/auth")?;
    let redirect = Urls::join(&urls.demo_client, "/callback")?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid offline_access email phone profile")
            .append_pair("redirect_uri", redirect.as_str())
            .append_pair("state", &random_b64(16))
            .append_pair("nonce", &random_b64(16))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    Ok(url)
}

/// How a login journey ended.
#[derive(Debug, Clone)]
pub struct Login {
    /// The client's redirect URI with the authorization code.
    pub callback: Url,
    /// Whether the journey went through Kratos' login (false: SSO or Hydra skip).
    pub via_kratos: bool,
    /// Whether a consent screen was shown and allowed.
    pub consent_screen: bool,
}

/// Follows Hydra's authorization URL up to the first hop at the functions' `/login`.
pub async fn login_entry_url(browser: &Browser, urls: &Urls, auth: &Url) -> Result<Url, String> {
    match browser
        .follow(auth, |u| same_origin(u, &urls.functions))
        .await?
    {
        Landing::Stopped(url) if url.path() == "/login" => Ok(url),
        Landing::Stopped(url) => Err(format!("expected /login, got {}", url.path())),
        Landing::Page(page) => Err(format!(
            "Hydra answered {} at {} instead of redirecting to /login",
            page.status,
            page.url.path()
        )),
    }
}

fn is_callback(urls: &Urls, url: &Url) -> bool {
    same_origin(url, &urls.demo_client) && url.path() == "/callback"
}

/// A whole login as a browser does it: Hydra -> /login -> Kratos login flow -> "Sign in with
/// Google" -> mock Google (POST sub) -> Kratos callback -> /login/return -> Hydra -> /consent
/// (screen: allow all) -> Hydra -> client callback. Ends early when the browser already has a
/// session (SSO) or Hydra remembers it.
pub async fn google_login(browser: &Browser, urls: &Urls, auth: &Url) -> Result<Login, String> {
    let landing = browser
        .follow(auth, |u| {
            same_origin(u, &urls.login_site) || is_callback(urls, u)
        })
        .await?;
    let flow_url = match landing {
        Landing::Stopped(url) if is_callback(urls, &url) => {
            return Ok(Login {
                callback: url,
                via_kratos: false,
                consent_screen: false,
            })
        }
        Landing::Stopped(url) => url,
        Landing::Page(page) => return consent_and_finish(browser, urls, page, false).await,
    };
    let flow_id = query_param(&flow_url, "flow").ok_or("Kratos sent no flow id")?;
    let mut flow_api = Urls::join(&urls.kratos_public, "/self-service/login/flows")?;
    flow_api.query_pairs_mut().append_pair("id", &flow_id);
    let flow = browser.get_json(&flow_api).await?;
    let action = flow["ui"]["action"]
        .as_str()
        .ok_or("the Kratos flow has no ui.action")?;
    let action = Url::parse(action).map_err(|e| format!("ui.action: {e}"))?;
    let csrf = flow["ui"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["attributes"]["name"] == "csrf_token")
        .and_then(|n| n["attributes"]["value"].as_str())
        .ok_or("the Kratos flow has no csrf_token")?
        .to_owned();
    let submitted = browser
        .request(
            Method::POST,
            &action,
            Some(&[
                ("csrf_token", csrf.as_str()),
                ("method", "oidc"),
                ("provider", "google"),
            ]),
            &[],
        )
        .await?;
    let authorize = match browser
        .follow_from(submitted, |u| same_origin(u, &urls.mock_google))
        .await?
    {
        Landing::Stopped(url) => url,
        Landing::Page(page) => {
            return Err(format!(
                "Kratos did not send the browser to Google: {} at {}: {}",
                page.status,
                page.url.path(),
                page.body.chars().take(300).collect::<String>()
            ))
        }
    };
    let form = browser.get(&authorize).await?;
    if form.status != 200 {
        return Err(format!("mock Google authorize form: {}", form.status));
    }
    let authorized = browser
        .request(
            Method::POST,
            &authorize,
            Some(&[("sub", urls.google_sub.as_str())]),
            &[],
        )
        .await?;
    let landing = browser
        .follow_from(authorized, |u| is_callback(urls, u))
        .await?;
    match landing {
        Landing::Stopped(callback) => Ok(Login {
            callback,
            via_kratos: true,
            consent_screen: false,
        }),
        Landing::Page(page) => consent_and_finish(browser, urls, page, true).await,
    }
}

/// A consent page: allow everything, remember nothing, and follow on to the client.
async fn consent_and_finish(
    browser: &Browser,
    urls: &Urls,
    page: Page,
    via_kratos: bool,
) -> Result<Login, String> {
    if !(same_origin(&page.url, &urls.functions)
        && page.url.path() == "/consent"
        && page.status == 200)
    {
        return Err(format!(
            "unexpected page {} at {}: {}",
            page.status,
            page.url.path(),
            page.body.chars().take(300).collect::<String>()
        ));
    }
    let challenge = input_value(&page.body, "consent_challenge").ok_or("no consent_challenge")?;
    let csrf = input_value(&page.body, "csrf_token").ok_or("no csrf_token")?;
    let origin = urls.functions.origin().ascii_serialization();
    let decided = browser
        .request(
            Method::POST,
            &Urls::join(&urls.functions, "/consent")?,
            Some(&[
                ("consent_challenge", challenge.as_str()),
                ("csrf_token", csrf.as_str()),
                ("grant_scope", "openid"),
                ("grant_scope", "offline_access"),
                ("grant_scope", "email"),
                ("grant_scope", "phone"),
                ("grant_scope", "profile"),
                ("action", "allow"),
            ]),
            &[("origin", origin.as_str())],
        )
        .await?;
    match browser
        .follow_from(decided, |u| is_callback(urls, u))
        .await?
    {
        Landing::Stopped(callback) => Ok(Login {
            callback,
            via_kratos,
            consent_screen: true,
        }),
        Landing::Page(page) => Err(format!(
            "after consent: {} at {}",
            page.status,
            page.url.path()
        )),
    }
}

/// RP-less logout of the browser's Hydra session: Hydra -> /logout -> Hydra -> post-logout URL.
pub async fn logout(browser: &Browser, urls: &Urls) -> Result<(), String> {
    let start = Urls::join(&urls.hydra_public, "/oauth2/sessions/logout")?;
    match browser
        .follow(&start, |u| same_origin(u, &urls.demo_client))
        .await?
    {
        Landing::Stopped(_) => Ok(()),
        Landing::Page(page) => Err(format!(
            "logout ended at {} {}: {}",
            page.status,
            page.url.path(),
            page.body.chars().take(200).collect::<String>()
        )),
    }
}

/// A browser that has only the Kratos session cookie of `from` (no Hydra session): the
/// single sign-on case of a second application.
pub fn with_kratos_session_only(from: &Browser, urls: &Urls) -> Browser {
    let fresh = Browser::new();
    if let Some(cookies) = from.cookie_header(&urls.kratos_public) {
        for pair in cookies.split(';').map(str::trim) {
            if pair.starts_with("ory_kratos_session=") {
                fresh.add_cookie(pair, &urls.kratos_public);
            }
        }
    }
    fresh
}
