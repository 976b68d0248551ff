//! A scripted browser: an HTTP client with a cookie jar that follows redirects one hop at a
//! time, so a scenario can stop at (or act on) any hop. Cookies ignore ports, so one jar serves
//! Hydra, Kratos, the mock Google and the functions on 127.0.0.1 alike.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::LOCATION;
use reqwest::{Client, Method};
use url::Url;

/// One answer.
#[derive(Debug, Clone)]
pub struct Page {
    /// The URL asked for.
    pub url: Url,
    /// Status code.
    pub status: u16,
    /// Resolved `Location`, for redirects.
    pub location: Option<Url>,
    /// Body text.
    pub body: String,
}

impl Page {
    /// Whether the answer is a redirect with a location.
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status) && self.location.is_some()
    }
}

/// Where following redirects ended.
#[derive(Debug, Clone)]
pub enum Landing {
    /// The next hop matched the stop condition; it was not requested.
    Stopped(Url),
    /// A non-redirect answer.
    Page(Page),
}

/// A browser with its own cookie jar.
#[derive(Clone)]
pub struct Browser {
    client: Client,
    jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A fresh browser (no cookies).
    pub fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let client = Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .user_agent("Mozilla/5.0 (bridge-bench)")
            .build()
            .unwrap_or_default();
        Self { client, jar }
    }

    /// The cookies this browser would send to `url`, as a `Cookie` header value.
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        self.jar
            .cookies(url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// Adds `name=value` for every path of `url`'s host.
    pub fn add_cookie(&self, name_value: &str, url: &Url) {
        self.jar
            .add_cookie_str(&format!("{name_value}; Path=/"), url);
    }

    /// One request, no redirect followed.
    pub async fn request(
        &self,
        method: Method,
        url: &Url,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Result<Page, String> {
        let mut request = self.client.request(method, url.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{} {}: {e}", url.host_str().unwrap_or(""), url.path()))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url.join(l).ok());
        let body = response.text().await.unwrap_or_default();
        Ok(Page {
            url: url.clone(),
            status,
            location,
            body,
        })
    }

    /// `GET`.
    pub async fn get(&self, url: &Url) -> Result<Page, String> {
        self.request(Method::GET, url, None, &[]).await
    }

    /// `GET` with `Accept: application/json`, parsed.
    pub async fn get_json(&self, url: &Url) -> Result<serde_json::Value, String> {
        let page = self
            .request(Method::GET, url, None, &[("accept", "application/json")])
            .await?;
        serde_json::from_str(&page.body)
            .map_err(|e| format!("{} answered {} without JSON: {e}", url.path(), page.status))
    }

    /// Follows redirects from `page` (already fetched) until a non-redirect or a hop that
    /// `stop` matches.
    pub async fn follow_from(
        &self,
        mut page: Page,
        stop: impl Fn(&Url) -> bool,
    ) -> Result<Landing, String> {
        for _ in 0..25 {
            let Some(next) = page.location.clone().filter(|_| page.is_redirect()) else {
                return Ok(Landing::Page(page));
            };
            if stop(&next) {
                return Ok(Landing::Stopped(next));
            }
            page = self.get(&next).await?;
        }
        Err(format!("too many redirects after {}", page.url.path()))
    }

    /// `GET url` and follow redirects as [`Browser::follow_from`].
    pub async fn follow(&self, url: &Url, stop: impl Fn(&Url) -> bool) -> Result<Landing, String> {
        if stop(url) {
            return Ok(Landing::Stopped(url.clone()));
        }
        let page = self.get(url).await?;
        self.follow_from(page, stop).await
    }
}

/// Whether `url` is on the origin of `base`.
pub fn same_origin(url: &Url, base: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
}

/// The value of a query parameter.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The `value` of `<input ... name="NAME" value="...">` in an HTML page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let at = html.find(&marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value_at = tag.find("value=\"")? + "value=\"".len();
    let value_end = value_at + tag[value_at..].find('"')?;
    Some(
        tag[value_at..value_end]
            .replace("&amp;", "&")
            .replace("&#x2B;", "+")
            .replace("&#43;", "+")
            .replace("&#x3D;", "=")
            .replace("&#61;", "="),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hidden_inputs() {
        let html = r#"<form><input type="hidden" name="consent_challenge" value="abc&amp;d"><input type="hidden" name="csrf_token" value="k2.xyz"></form>"#;
        assert_eq!(input_value(html, "csrf_token").as_deref(), Some("k2.xyz"));
        assert_eq!(
            input_value(html, "consent_challenge").as_deref(),
            Some("abc&d")
        );
        assert_eq!(input_value(html, "missing"), None);
    }

    #[test]
    fn origins_and_params() {
        let a = Url::parse("http://127.0.0.1:9000/login?login_challenge=x").expect("url");
        let b = Url::parse("http://127.0.0.1:9000/").expect("url");
        let c = Url::parse("http://127.0.0.1:9001/").expect("url");
        assert!(same_origin(&a, &b));
        assert!(!same_origin(&a, &c));
        assert_eq!(query_param(&a, "login_challenge").as_deref(), Some("x"));
    }
}
