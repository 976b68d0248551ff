//! API Gateway HTTP API (payload 2.0) events from HTTP requests, and HTTP responses from what
//! lambda_http answers: what the HTTP API does between a browser and the functions.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// An HTTP request as a browser sends it to the functions.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Header names and values (any case); `cookie` headers become the `cookies` array.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// The function that serves a path (docs/design.md).
pub fn function_for(path: &str) -> Option<&'static str> {
    match path {
        "/login" => Some("login"),
        "/login/return" => Some("login-return"),
        "/consent" => Some("consent"),
        "/logout" => Some("logout"),
        "/error" => Some("error"),
        _ => None,
    }
}

/// The payload 2.0 event for `request`, as the HTTP API would send it.
pub fn event(request: &HttpRequest, request_id: &str, host: &str) -> Vec<u8> {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &request.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_owned())),
            );
            continue;
        }
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    headers
        .entry("host")
        .or_insert_with(|| Value::String(host.to_owned()));
    headers.insert(
        "x-forwarded-proto".to_owned(),
        Value::String("http".to_owned()),
    );
    let user_agent = headers
        .get("user-agent")
        .and_then(Value::as_str)
        .unwrap_or("bridge-bench")
        .to_owned();
    let route_key = format!("{} {}", request.method, request.path);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "benchapi",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !request.query.is_empty() {
        let params: Map<String, Value> = url::form_urlencoded::parse(request.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    if !request.body.is_empty() {
        // The HTTP API base64-encodes bodies it does not know to be text; forms included.
        event["body"] = Value::String(STANDARD.encode(&request.body));
        event["isBase64Encoded"] = Value::Bool(true);
    }
    serde_json::to_vec(&event).unwrap_or_default()
}

/// What a function answered, as an HTTP response.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers (single-valued, then multi-valued), excluding cookies.
    pub headers: Vec<(String, String)>,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses lambda_http's payload 2.0 response.
pub fn response(body: &[u8]) -> Result<HttpResponse, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Lambda HTTP response: {e}"))?;
    let status = value["statusCode"].as_u64().unwrap_or(0) as u16;
    let mut headers = Vec::new();
    let mut cookies: Vec<String> = value["cookies"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(map) = value["headers"].as_object() {
        for (name, v) in map {
            if let Some(v) = v.as_str() {
                if name.eq_ignore_ascii_case("set-cookie") {
                    cookies.push(v.to_owned());
                } else {
                    headers.push((name.clone(), v.to_owned()));
                }
            }
        }
    }
    if let Some(map) = value["multiValueHeaders"].as_object() {
        for (name, values) in map {
            for v in values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if name.eq_ignore_ascii_case("set-cookie") {
                    if !cookies.iter().any(|c| c == v) {
                        cookies.push(v.to_owned());
                    }
                } else if !headers.iter().any(|(n, old)| n == name && old == v) {
                    headers.push((name.clone(), v.to_owned()));
                }
            }
        }
    }
    let body = match value["body"].as_str() {
        Some(text) if value["isBase64Encoded"].as_bool() == Some(true) => STANDARD
            .decode(text)
            .map_err(|e| format!("bad base64 body: {e}"))?,
        Some(text) => text.as_bytes().to_vec(),
        None => Vec::new(),
    };
    Ok(HttpResponse {
        status,
        headers,
        cookies,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_body_move_like_the_http_api() {
        let request = HttpRequest {
            method: "POST".to_owned(),
            path: "/consent".to_owned(),
            query: "a=1&b=x%20y".to_owned(),
            headers: vec![
                ("Cookie".to_owned(), "a=1; b=2".to_owned()),
                ("Accept".to_owned(), "text/html".to_owned()),
            ],
            body: b"x=1".to_vec(),
        };
        let event: Value =
            serde_json::from_slice(&event(&request, "id-1", "127.0.0.1:9000")).expect("json");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["headers"]["accept"], "text/html");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["queryStringParameters"]["b"], "x y");
        assert_eq!(event["body"], "eD0x");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(function_for("/login/return"), Some("login-return"));
    }

    #[test]
    fn responses_split_cookies_from_headers() {
        let body = br#"{"statusCode":303,"headers":{"location":"http://x/"},"multiValueHeaders":{"location":["http://x/"]},"cookies":["c=1; Path=/"],"body":"aGk=","isBase64Encoded":true}"#;
        let parsed = response(body).expect("response");
        assert_eq!(parsed.status, 303);
        assert_eq!(parsed.header("Location"), Some("http://x/"));
        assert_eq!(parsed.headers.len(), 1);
        assert_eq!(parsed.cookies, vec!["c=1; Path=/".to_owned()]);
        assert_eq!(parsed.body, b"hi");
    }
}
