//! The few Kratos calls the bridge makes, behind a trait so handlers test without Kratos.

use async_trait::async_trait;
use reqwest::Client;
use serde_json::Value;
use url::Url;

use crate::config::{AdminHeader, Config};
use crate::identity::KratosSession;
use crate::policy::Aal;
use crate::upstream::{self, Upstream, UpstreamError};

/// The Kratos operations the functions need.
#[async_trait]
pub trait KratosApi: Send + Sync {
    /// The session behind the browser's Kratos cookies, or `None` when there is none (or it is
    /// not good enough: Kratos answers 401/403).
    async fn whoami(&self, kratos_cookies: &str) -> Result<Option<KratosSession>, UpstreamError>;

    /// Ends a session (admin API); an unknown session counts as ended.
    async fn revoke_session(&self, session_id: &str) -> Result<(), UpstreamError>;

    /// A self-service error by id, for the error page; `None` when Kratos does not know it.
    async fn flow_error(&self, id: &str) -> Result<Option<Value>, UpstreamError>;
}

/// [`KratosApi`] over HTTP.
#[derive(Debug, Clone)]
pub struct KratosClient {
    http: Client,
    public_url: Url,
    admin_url: Url,
    admin_header: Option<AdminHeader>,
}

impl KratosClient {
    /// Wraps the shared HTTP client with Kratos' URLs from the configuration.
    pub fn new(http: Client, config: &Config) -> Self {
        Self {
            http,
            public_url: config.kratos_public_url.clone(),
            admin_url: config.kratos_admin_url.clone(),
            admin_header: config.admin_header.clone(),
        }
    }

    fn public(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.as_str().trim_end_matches('/'))
    }

    fn admin_delete(&self, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.admin_url.as_str().trim_end_matches('/'));
        let request = self.http.delete(url);
        match &self.admin_header {
            Some(h) => request.header(h.name.as_str(), h.value.as_str()),
            None => request,
        }
    }
}

#[async_trait]
impl KratosApi for KratosClient {
    async fn whoami(&self, kratos_cookies: &str) -> Result<Option<KratosSession>, UpstreamError> {
        if kratos_cookies.is_empty() {
            return Ok(None);
        }
        upstream::with_read_retry(|| async {
            let request = self
                .http
                .get(self.public("/sessions/whoami"))
                .header(http::header::COOKIE, kratos_cookies)
                .header(http::header::ACCEPT, "application/json");
            let response = upstream::send_any_status(Upstream::Kratos, request).await?;
            match response.status().as_u16() {
                200 => {
                    let session: KratosSession =
                        upstream::read_json(Upstream::Kratos, response).await?;
                    Ok((session.active != Some(false)).then_some(session))
                }
                401 | 403 => Ok(None),
                _ => Err(UpstreamError::from_status(
                    Upstream::Kratos,
                    response.status(),
                )),
            }
        })
        .await
    }

    async fn revoke_session(&self, session_id: &str) -> Result<(), UpstreamError> {
        let path = format!("/admin/sessions/{}", urlencode_segment(session_id));
        match upstream::send(Upstream::Kratos, self.admin_delete(&path)).await {
            Ok(_) | Err(UpstreamError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn flow_error(&self, id: &str) -> Result<Option<Value>, UpstreamError> {
        upstream::with_read_retry(|| async {
            let request = self
                .http
                .get(self.public("/self-service/errors"))
                .query(&[("id", id)]);
            match upstream::send_json::<Value>(Upstream::Kratos, request).await {
                Ok(v) => Ok(Some(v)),
                Err(UpstreamError::NotFound { .. }) | Err(UpstreamError::Rejected { .. }) => {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
        .await
    }
}

/// Kratos' browser login flow, returning to `return_to`; `refresh=true` makes Kratos ask for
/// credentials again even when a session exists (`prompt=login`, a disallowed method, `max_age`),
/// and `aal=aal2` asks the signed-in user for the second factor (a client's policy).
pub fn kratos_login_url(config: &Config, return_to: &Url, refresh: bool, aal: Option<Aal>) -> Url {
    let mut url = config.kratos_browser_url.clone();
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}/self-service/login/browser"));
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        if refresh {
            query.append_pair("refresh", "true");
        }
        if let Some(aal) = aal {
            query.append_pair("aal", aal.as_str());
        }
        query.append_pair("return_to", return_to.as_str());
    }
    url
}

/// Percent-encodes a path segment so an id can never change the path.
pub(crate) fn urlencode_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// Keeps only Kratos' cookies from the browser's `Cookie` header: the functions' other cookies
/// (binding, CSRF) and anything else the browser holds have no business reaching Kratos.
pub fn kratos_cookie_header(cookie_header: &str, session_cookie_name: &str) -> String {
    cookie::Cookie::split_parse(cookie_header)
        .filter_map(Result::ok)
        .filter(|c| c.name().starts_with("ory_kratos_") || c.name() == session_cookie_name)
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(server: &MockServer) -> KratosClient {
        KratosClient {
            http: Client::builder()
                .timeout(std::time::Duration::from_millis(500))
                .tls_backend_preconfigured(crate::upstream::tls_client_config(None).expect("tls"))
                .build()
                .expect("client"),
            public_url: Url::parse(&server.uri()).expect("url"),
            admin_url: Url::parse(&server.uri()).expect("url"),
            admin_header: Some(AdminHeader {
                name: "X-Gateway-Key".to_owned(),
                value: "k".to_owned(),
            }),
        }
    }

    #[test]
    fn only_kratos_cookies_are_forwarded() {
        let header =
            "__Host-bridge_bind=abc; ory_kratos_session=s1; other=x; ory_kratos_continuity=c";
        assert_eq!(
            kratos_cookie_header(header, "ory_kratos_session"),
            "ory_kratos_session=s1; ory_kratos_continuity=c"
        );
        assert_eq!(
            kratos_cookie_header("my_session=s2", "my_session"),
            "my_session=s2"
        );
        assert_eq!(kratos_cookie_header("", "ory_kratos_session"), "");
    }

    #[tokio::test]
    async fn whoami_maps_statuses() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/sessions/whoami"))
            .and(header("cookie", "ory_kratos_session=good"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": "sess", "active": true, "authenticated_at": "2026-01-01T00:00:00Z",
                "authentication_methods": [{"method": "oidc", "provider": "google"}],
                "identity": {"id": "ident", "traits": {"email": "a@b.c"}}
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/sessions/whoami"))
            .and(header("cookie", "ory_kratos_session=none"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/sessions/whoami"))
            .and(header("cookie", "ory_kratos_session=broken"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/sessions/whoami"))
            .and(header("cookie", "ory_kratos_session=down"))
            .respond_with(ResponseTemplate::new(503))
            .expect(2)
            .mount(&server)
            .await;
        let kratos = client(&server);
        let session = kratos
            .whoami("ory_kratos_session=good")
            .await
            .expect("ok")
            .expect("session");
        assert_eq!(session.identity.id, "ident");
        assert!(kratos
            .whoami("ory_kratos_session=none")
            .await
            .expect("ok")
            .is_none());
        assert!(kratos.whoami("").await.expect("ok").is_none());
        assert!(matches!(
            kratos.whoami("ory_kratos_session=broken").await,
            Err(UpstreamError::Malformed { .. })
        ));
        let down = kratos
            .whoami("ory_kratos_session=down")
            .await
            .expect_err("down");
        assert!(
            down.is_transient(),
            "a read is retried once, then reported as transient"
        );
    }

    #[tokio::test]
    async fn revoke_uses_admin_header_and_tolerates_unknown_sessions() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path("/admin/sessions/s%2F1"))
            .and(header("x-gateway-key", "k"))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;
        client(&server)
            .revoke_session("s/1")
            .await
            .expect("unknown is fine");
    }

    #[tokio::test]
    async fn flow_error_by_id() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/self-service/errors"))
            .and(query_param("id", "e1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"id": "e1", "error": {"message": "m"}})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/self-service/errors"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let kratos = client(&server);
        assert!(kratos.flow_error("e1").await.expect("ok").is_some());
        assert!(kratos.flow_error("e2").await.expect("ok").is_none());
    }
}
