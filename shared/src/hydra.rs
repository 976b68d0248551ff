//! Hydra's admin API for login, consent and logout requests, behind a trait so handlers test
//! without Hydra.

use async_trait::async_trait;
use reqwest::Client;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::config::{AdminHeader, Config};
use crate::upstream::{self, Upstream, UpstreamError};

/// The OAuth2 client behind a request, as far as the pages and decisions need it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OAuth2Client {
    /// The client id.
    #[serde(default)]
    pub client_id: String,
    /// Human-readable name for the consent page.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Logo for the consent page.
    #[serde(default)]
    pub logo_uri: Option<String>,
    /// Privacy policy link.
    #[serde(default)]
    pub policy_uri: Option<String>,
    /// Terms of service link.
    #[serde(default)]
    pub tos_uri: Option<String>,
    /// The client's home page.
    #[serde(default)]
    pub client_uri: Option<String>,
    /// Hydra only stores this; the consent app must act on it (first-party clients).
    #[serde(default)]
    pub skip_consent: Option<bool>,
    /// Free-form client metadata; the bridge reads its per-client policy from `bridge` inside
    /// it (see [`crate::policy`]), so the policy is managed with the client itself.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// The OpenID Connect parameters of the authorization request, as far as the policy needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OidcContext {
    /// `acr_values` the client asked for (`aal2` raises the required assurance level).
    #[serde(default)]
    pub acr_values: Vec<String>,
}

/// A login request (`GET /admin/oauth2/auth/requests/login`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LoginRequest {
    /// The client asking.
    #[serde(default)]
    pub client: OAuth2Client,
    /// The original authorization URL, for restarting an expired flow.
    #[serde(default)]
    pub request_url: String,
    /// Scopes asked for.
    #[serde(default)]
    pub requested_scope: Vec<String>,
    /// Hydra already knows the user and nothing forces a new login.
    #[serde(default)]
    pub skip: bool,
    /// The subject Hydra remembers when `skip` is true.
    #[serde(default)]
    pub subject: String,
    /// The OpenID Connect parameters (`acr_values`); Hydra omits it for plain OAuth2.
    #[serde(default)]
    pub oidc_context: Option<OidcContext>,
}

impl LoginRequest {
    /// What the authorization request asked for in assurance: `acr_values` and `max_age`, for
    /// the per-client policy.
    pub fn requested_assurance(&self) -> crate::policy::RequestedAssurance {
        crate::policy::RequestedAssurance {
            acr_values: self
                .oidc_context
                .as_ref()
                .map(|c| c.acr_values.clone())
                .unwrap_or_default(),
            max_age: self.max_age(),
        }
    }

    /// A parameter of the original authorization request (`prompt`, `max_age`).
    pub fn authorization_parameter(&self, name: &str) -> Option<String> {
        let url = Url::parse(&self.request_url)
            .or_else(|_| {
                Url::parse("http://hydra.invalid/").and_then(|b| b.join(&self.request_url))
            })
            .ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether the client demands a fresh authentication (`prompt=login`).
    pub fn forces_login(&self) -> bool {
        self.authorization_parameter("prompt")
            .is_some_and(|p| p.split(' ').any(|v| v == "login"))
    }

    /// The client's `max_age` in seconds, if it sent a valid one.
    pub fn max_age(&self) -> Option<u64> {
        self.authorization_parameter("max_age")?.parse().ok()
    }
}

/// The body of a login accept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AcceptLogin {
    /// The Kratos identity id.
    pub subject: String,
    /// Remember the login in Hydra's session cookie.
    pub remember: bool,
    /// Seconds to remember (0: Hydra's default).
    pub remember_for: u64,
    /// Authentication context class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication method references.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Facts consent needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// The Kratos session id, so Hydra can end it at logout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_provider_session_id: Option<String>,
}

/// A consent request (`GET /admin/oauth2/auth/requests/consent`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ConsentRequest {
    /// The client asking.
    #[serde(default)]
    pub client: OAuth2Client,
    /// What the login accept put in `context`.
    #[serde(default)]
    pub context: Option<Value>,
    /// Scopes asked for.
    #[serde(default)]
    pub requested_scope: Vec<String>,
    /// Audiences asked for.
    #[serde(default)]
    pub requested_access_token_audience: Vec<String>,
    /// The authorization request this consent belongs to; for a device sign-in, Hydra's device
    /// verification endpoint.
    #[serde(default)]
    pub request_url: String,
    /// Hydra remembers a previous consent covering this request.
    #[serde(default)]
    pub skip: bool,
    /// The subject.
    #[serde(default)]
    pub subject: String,
    /// The `acr` the login was accepted with, for the policy hook.
    #[serde(default)]
    pub acr: Option<String>,
    /// The `amr` the login was accepted with, for the policy hook.
    #[serde(default)]
    pub amr: Vec<String>,
}

impl ConsentRequest {
    /// Whether this consent finishes a device sign-in (RFC 8628): Hydra then continues at its
    /// device verification endpoint rather than at a client's redirect URI.
    pub fn is_device_flow(&self) -> bool {
        let path = Url::parse(&self.request_url)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| self.request_url.split('?').next().unwrap_or("").to_owned());
        path.trim_end_matches('/')
            .ends_with("/oauth2/device/verify")
    }
}

/// The body of a consent accept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AcceptConsent {
    /// Scopes granted (a subset of the requested ones).
    pub grant_scope: Vec<String>,
    /// Audiences granted.
    pub grant_access_token_audience: Vec<String>,
    /// Remember this consent.
    pub remember: bool,
    /// Seconds to remember (0: forever).
    pub remember_for: u64,
    /// Claims for the tokens.
    pub session: ConsentSession,
}

/// Claims Hydra puts into the tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConsentSession {
    /// Extra ID token claims.
    pub id_token: Map<String, Value>,
    /// Extra access token claims.
    pub access_token: Map<String, Value>,
}

/// The body of a reject (login or consent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RejectRequest {
    /// OAuth2 error code, e.g. `access_denied`.
    pub error: String,
    /// Human-readable description sent to the client.
    pub error_description: String,
}

/// A logout request (`GET /admin/oauth2/auth/requests/logout`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LogoutRequest {
    /// The subject being logged out.
    #[serde(default)]
    pub subject: String,
    /// Hydra's login session id.
    #[serde(default)]
    pub sid: String,
    /// Whether a relying party started this logout.
    #[serde(default)]
    pub rp_initiated: bool,
}

/// The body of a device request accept: the code the user typed, already normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AcceptDevice {
    /// The user code shown on the device.
    pub user_code: String,
}

/// Where Hydra wants the browser next.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RedirectTo {
    /// The URL; checked against Hydra's public origin before use.
    pub redirect_to: String,
}

/// The Hydra admin operations the functions need.
#[async_trait]
pub trait HydraAdmin: Send + Sync {
    /// Reads a login request.
    async fn login_request(&self, challenge: &str) -> Result<LoginRequest, UpstreamError>;
    /// Accepts a login request.
    async fn accept_login(
        &self,
        challenge: &str,
        body: &AcceptLogin,
    ) -> Result<RedirectTo, UpstreamError>;
    /// Reads a consent request.
    async fn consent_request(&self, challenge: &str) -> Result<ConsentRequest, UpstreamError>;
    /// Accepts a consent request.
    async fn accept_consent(
        &self,
        challenge: &str,
        body: &AcceptConsent,
    ) -> Result<RedirectTo, UpstreamError>;
    /// Rejects a consent request.
    async fn reject_consent(
        &self,
        challenge: &str,
        body: &RejectRequest,
    ) -> Result<RedirectTo, UpstreamError>;
    /// Reads a logout request.
    async fn logout_request(&self, challenge: &str) -> Result<LogoutRequest, UpstreamError>;
    /// Accepts a logout request.
    async fn accept_logout(&self, challenge: &str) -> Result<RedirectTo, UpstreamError>;
    /// Accepts a device authorization request with the user code the user typed (Hydra v26+).
    /// Hydra answers 400 alike for a wrong, expired or already used code.
    async fn accept_device(
        &self,
        challenge: &str,
        body: &AcceptDevice,
    ) -> Result<RedirectTo, UpstreamError>;
    /// Reads an OAuth2 client, to name it on pages that have no request to read it from.
    async fn client(&self, client_id: &str) -> Result<OAuth2Client, UpstreamError>;
}

/// [`HydraAdmin`] over HTTP.
#[derive(Debug, Clone)]
pub struct HydraClient {
    http: Client,
    admin_url: Url,
    admin_header: Option<AdminHeader>,
}

/// The three kinds of Hydra requests, which share one URL scheme.
#[derive(Debug, Clone, Copy)]
enum Flow {
    Login,
    Consent,
    Logout,
    Device,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Consent => "consent",
            Self::Logout => "logout",
            Self::Device => "device",
        }
    }
}

impl HydraClient {
    /// Wraps the shared HTTP client with Hydra's admin URL from the configuration.
    pub fn new(http: Client, config: &Config) -> Self {
        Self {
            http,
            admin_url: config.hydra_admin_url.clone(),
            admin_header: config.admin_header.clone(),
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        flow: Flow,
        action: Option<&str>,
        challenge: &str,
    ) -> reqwest::RequestBuilder {
        let action = action.map(|a| format!("/{a}")).unwrap_or_default();
        let url = format!(
            "{}/admin/oauth2/auth/requests/{}{action}",
            self.admin_url.as_str().trim_end_matches('/'),
            flow.name()
        );
        self.admin_request(method, url)
            .query(&[(format!("{}_challenge", flow.name()), challenge)])
    }

    /// Any admin API request: JSON, with the gateway header when one is configured.
    fn admin_request(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .header(http::header::ACCEPT, "application/json");
        match &self.admin_header {
            Some(h) => request.header(h.name.as_str(), h.value.as_str()),
            None => request,
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        flow: Flow,
        challenge: &str,
    ) -> Result<T, UpstreamError> {
        upstream::with_read_retry(|| {
            upstream::send_json(
                Upstream::Hydra,
                self.request(reqwest::Method::GET, flow, None, challenge),
            )
        })
        .await
    }

    async fn put<B: Serialize + Sync>(
        &self,
        flow: Flow,
        action: &str,
        challenge: &str,
        body: &B,
    ) -> Result<RedirectTo, UpstreamError> {
        // Hydra's accept/reject calls are idempotent for the same challenge, but a retry here
        // would hide a slow Hydra from the replay store's in-progress window; the user's retry
        // covers it instead.
        let request = self
            .request(reqwest::Method::PUT, flow, Some(action), challenge)
            .json(body);
        upstream::send_json(Upstream::Hydra, request).await
    }
}

#[async_trait]
impl HydraAdmin for HydraClient {
    async fn login_request(&self, challenge: &str) -> Result<LoginRequest, UpstreamError> {
        self.get(Flow::Login, challenge).await
    }
    async fn accept_login(
        &self,
        challenge: &str,
        body: &AcceptLogin,
    ) -> Result<RedirectTo, UpstreamError> {
        self.put(Flow::Login, "accept", challenge, body).await
    }
    async fn consent_request(&self, challenge: &str) -> Result<ConsentRequest, UpstreamError> {
        self.get(Flow::Consent, challenge).await
    }
    async fn accept_consent(
        &self,
        challenge: &str,
        body: &AcceptConsent,
    ) -> Result<RedirectTo, UpstreamError> {
        self.put(Flow::Consent, "accept", challenge, body).await
    }
    async fn reject_consent(
        &self,
        challenge: &str,
        body: &RejectRequest,
    ) -> Result<RedirectTo, UpstreamError> {
        self.put(Flow::Consent, "reject", challenge, body).await
    }
    async fn logout_request(&self, challenge: &str) -> Result<LogoutRequest, UpstreamError> {
        self.get(Flow::Logout, challenge).await
    }
    async fn accept_logout(&self, challenge: &str) -> Result<RedirectTo, UpstreamError> {
        self.put(Flow::Logout, "accept", challenge, &Map::new())
            .await
    }
    async fn accept_device(
        &self,
        challenge: &str,
        body: &AcceptDevice,
    ) -> Result<RedirectTo, UpstreamError> {
        self.put(Flow::Device, "accept", challenge, body).await
    }
    async fn client(&self, client_id: &str) -> Result<OAuth2Client, UpstreamError> {
        let mut url = self.admin_url.clone();
        url.path_segments_mut()
            .map_err(|_| UpstreamError::Rejected {
                upstream: Upstream::Hydra,
                status: 0,
            })?
            .pop_if_empty()
            .extend(["admin", "clients", client_id]);
        upstream::with_read_retry(|| {
            upstream::send_json(
                Upstream::Hydra,
                self.admin_request(reqwest::Method::GET, url.clone()),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(server: &MockServer) -> HydraClient {
        HydraClient {
            http: crate::upstream::test_client(),
            admin_url: Url::parse(&server.uri()).expect("url"),
            admin_header: Some(AdminHeader {
                name: "X-Gateway-Key".to_owned(),
                value: "k".to_owned(),
            }),
        }
    }

    #[tokio::test]
    async fn login_request_and_accept() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/admin/oauth2/auth/requests/login"))
            .and(query_param("login_challenge", "c+/=1"))
            .and(header("x-gateway-key", "k"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "challenge": "c+/=1", "skip": false, "subject": "",
                "client": {"client_id": "app", "skip_consent": true,
                           "metadata": {"bridge": {"version": 1, "required_aal": "aal2"}}},
                "request_url": "http://hydra/oauth2/auth?prompt=login%20consent&max_age=60",
                "requested_scope": ["openid"],
                "oidc_context": {"acr_values": ["aal2"], "ui_locales": []}
            })))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path("/admin/oauth2/auth/requests/login/accept"))
            .and(query_param("login_challenge", "c+/=1"))
            .and(body_json(serde_json::json!({"subject": "u1", "remember": true, "remember_for": 0, "amr": ["fed"]})))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"redirect_to": "http://hydra/next"})))
            .mount(&server)
            .await;
        let hydra = client(&server);
        let login = hydra.login_request("c+/=1").await.expect("login");
        assert!(login.forces_login());
        assert_eq!(login.max_age(), Some(60));
        assert_eq!(login.client.skip_consent, Some(true));
        assert_eq!(
            login
                .client
                .metadata
                .as_ref()
                .and_then(|m| m.pointer("/bridge/required_aal")),
            Some(&serde_json::json!("aal2"))
        );
        let assurance = login.requested_assurance();
        assert_eq!(assurance.acr_values, vec!["aal2".to_owned()]);
        assert_eq!(assurance.max_age, Some(60));
        let accept = AcceptLogin {
            subject: "u1".to_owned(),
            remember: true,
            amr: vec!["fed".to_owned()],
            ..AcceptLogin::default()
        };
        let next = hydra.accept_login("c+/=1", &accept).await.expect("accept");
        assert_eq!(next.redirect_to, "http://hydra/next");
    }

    #[tokio::test]
    async fn hydra_errors_are_classified() {
        let server = MockServer::start().await;
        for (challenge, status) in [
            ("gone", 410),
            ("unknown", 404),
            ("expired", 401),
            ("boom", 500),
        ] {
            Mock::given(method("GET"))
                .and(query_param("consent_challenge", challenge))
                .respond_with(ResponseTemplate::new(status))
                .mount(&server)
                .await;
        }
        let hydra = client(&server);
        assert!(matches!(
            hydra.consent_request("gone").await,
            Err(UpstreamError::Expired { .. })
        ));
        assert!(matches!(
            hydra.consent_request("expired").await,
            Err(UpstreamError::Expired { .. })
        ));
        assert!(matches!(
            hydra.consent_request("unknown").await,
            Err(UpstreamError::NotFound { .. })
        ));
        assert!(hydra
            .consent_request("boom")
            .await
            .expect_err("5xx")
            .is_transient());
    }

    #[test]
    fn prompt_parsing() {
        let request = |url: &str| LoginRequest {
            request_url: url.to_owned(),
            ..LoginRequest::default()
        };
        assert!(!request("https://h/oauth2/auth?prompt=consent").forces_login());
        assert!(request("/oauth2/auth?prompt=login").forces_login());
        assert_eq!(request("https://h/oauth2/auth?max_age=abc").max_age(), None);
    }
}
