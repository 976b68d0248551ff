//! The few Kratos public endpoints a login UI needs, and the flow shapes it reads.
//!
//! The site never submits a flow itself: the browser posts every form straight to Kratos
//! (`ui.action`), so Kratos sees its own CSRF cookie and sets its own session cookie. The server
//! only *reads* flows to draw them.

use std::time::Duration;

use axum::http::HeaderValue;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// Why Kratos could not give us what we asked for.
#[derive(Debug, thiserror::Error)]
pub enum KratosError {
    /// Kratos did not answer (down, wrong URL, timeout).
    #[error("could not reach Kratos: {0}")]
    Transport(#[from] reqwest::Error),
    /// Kratos answered with a status this UI has no sensible reaction to.
    #[error("Kratos answered with HTTP status {0}")]
    Status(u16),
    /// Kratos answered 200 with a body that is not the documented flow shape.
    #[error("Kratos sent a body this site cannot read: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The self-service flows the site draws. Each has the same pair of endpoints in Kratos:
/// `/self-service/<name>/browser` to start one and `/self-service/<name>/flows?id=` to read one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    Login,
    Registration,
    Settings,
    Verification,
    Recovery,
}

impl FlowKind {
    /// The path segment Kratos uses for this flow.
    pub fn segment(self) -> &'static str {
        match self {
            FlowKind::Login => "login",
            FlowKind::Registration => "registration",
            FlowKind::Settings => "settings",
            FlowKind::Verification => "verification",
            FlowKind::Recovery => "recovery",
        }
    }
}

/// What reading a flow can lead to, besides failing.
#[derive(Debug)]
pub enum FlowLookup {
    /// The flow exists and belongs to this browser.
    Found(Box<Flow>),
    /// Kratos no longer serves this flow to this browser (404 unknown, 410 expired, 403 the CSRF
    /// cookie or session does not match): the only way on is a fresh flow.
    Gone,
    /// The flow needs a session the browser does not have (settings without login).
    NeedsLogin,
}

/// A self-service flow as far as a UI needs it (`loginFlow`, `registrationFlow`, ... in the
/// Kratos OpenAPI spec all share these fields).
#[derive(Debug, Clone, Deserialize)]
pub struct Flow {
    /// Where Kratos sends the browser when the flow succeeds; carried over to the sibling flow
    /// (login <-> registration) so switching pages does not lose the caller's destination.
    #[serde(default)]
    pub return_to: Option<String>,
    pub ui: UiContainer,
}

/// `uiContainer`: one HTML form description.
#[derive(Debug, Clone, Deserialize)]
pub struct UiContainer {
    pub action: String,
    pub method: String,
    #[serde(default)]
    pub messages: Vec<UiText>,
    #[serde(default)]
    pub nodes: Vec<UiNode>,
}

/// `uiText`: a message or label. `id` is Kratos' stable message number, useful to tests and
/// translators; `type` is `info`, `error` or `success`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UiText {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub text: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// `uiNode`: one element of the form.
#[derive(Debug, Clone, Deserialize)]
pub struct UiNode {
    /// `input`, `text`, `img`, `a`, `script` or `div`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The method the node belongs to (`default`, `oidc`, `code`, ...).
    pub group: String,
    #[serde(default)]
    pub attributes: UiNodeAttributes,
    #[serde(default)]
    pub messages: Vec<UiText>,
    #[serde(default)]
    pub meta: UiNodeMeta,
}

/// `uiNodeMeta`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UiNodeMeta {
    #[serde(default)]
    pub label: Option<UiText>,
}

/// The union of the attribute shapes of all node types (`uiNodeInputAttributes`,
/// `uiNodeTextAttributes`, ...). One flat struct keeps the renderer simple: each node type reads
/// the fields it has and the others stay `None`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UiNodeAttributes {
    #[serde(default)]
    pub name: Option<String>,
    /// Input type (`text`, `hidden`, `submit`, ...) for inputs, MIME type for scripts.
    #[serde(default, rename = "type")]
    pub input_type: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub required: Option<bool>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub autocomplete: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub maxlength: Option<i64>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub href: Option<String>,
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub width: Option<i64>,
    #[serde(default)]
    pub height: Option<i64>,
    #[serde(default)]
    pub title: Option<UiText>,
    #[serde(default)]
    pub text: Option<UiText>,
}

/// Kratos' public API, as both the browser and this server reach it.
#[derive(Debug, Clone)]
pub struct Kratos {
    base: Url,
    http: reqwest::Client,
}

impl Kratos {
    /// Kratos answers flow reads in milliseconds; a short timeout turns a hung Kratos into an
    /// error page instead of a browser spinning forever.
    const TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(base: Url) -> Result<Self, KratosError> {
        let http = reqwest::Client::builder()
            .timeout(Self::TIMEOUT)
            // A flow read never legitimately redirects; following one would hide a misconfigured
            // URL behind a confusing decode error.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { base, http })
    }

    /// `<kratos><path>`, keeping any path prefix the public URL has (Kratos behind a gateway).
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// Where the browser goes to start a fresh flow of `kind`. `return_to` rides along so that a
    /// restarted flow still ends where the caller wanted.
    pub fn browser_start_url(&self, kind: FlowKind, return_to: Option<&str>) -> String {
        let mut url = self.url(&format!("/self-service/{}/browser", kind.segment()));
        if let Some(return_to) = return_to.filter(|r| !r.is_empty()) {
            url.query_pairs_mut().append_pair("return_to", return_to);
        }
        url.into()
    }

    /// Reads a flow on behalf of the browser. The browser's `Cookie` header must be forwarded:
    /// Kratos only returns a browser flow to the browser holding the flow's CSRF cookie.
    pub async fn flow(
        &self,
        kind: FlowKind,
        id: &str,
        cookie: Option<&HeaderValue>,
    ) -> Result<FlowLookup, KratosError> {
        let mut url = self.url(&format!("/self-service/{}/flows", kind.segment()));
        url.query_pairs_mut().append_pair("id", id);
        let mut request = self.http.get(url).header("Accept", "application/json");
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie.clone());
        }
        let response = request.send().await?;
        match response.status().as_u16() {
            200 => {
                let body = response.bytes().await?;
                Ok(FlowLookup::Found(Box::new(serde_json::from_slice(&body)?)))
            }
            403 | 404 | 410 => Ok(FlowLookup::Gone),
            401 => Ok(FlowLookup::NeedsLogin),
            other => Err(KratosError::Status(other)),
        }
    }

    /// Reads a user-facing error (`flowError`). `None` when Kratos does not know the id.
    pub async fn error(&self, id: &str) -> Result<Option<FlowErrorBody>, KratosError> {
        let mut url = self.url("/self-service/errors");
        url.query_pairs_mut().append_pair("id", id);
        let response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await?;
        match response.status().as_u16() {
            200 => {
                let body = response.bytes().await?;
                Ok(Some(serde_json::from_slice(&body)?))
            }
            403 | 404 => Ok(None),
            other => Err(KratosError::Status(other)),
        }
    }
}

/// `flowError`: the container Kratos stores when it cannot send the user back to a flow.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FlowErrorBody {
    #[serde(default)]
    pub error: Option<GenericError>,
}

/// `genericError`, the fields worth showing to a person.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenericError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_path_prefix() -> Result<(), Box<dyn std::error::Error>> {
        let kratos = Kratos::new(Url::parse("https://auth.example.com/kratos/")?)?;
        assert_eq!(
            kratos.browser_start_url(FlowKind::Login, Some("https://app.example.com/a?b=c&d")),
            "https://auth.example.com/kratos/self-service/login/browser?return_to=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3Dc%26d"
        );
        assert_eq!(
            kratos.browser_start_url(FlowKind::Registration, None),
            "https://auth.example.com/kratos/self-service/registration/browser"
        );
        Ok(())
    }
}
