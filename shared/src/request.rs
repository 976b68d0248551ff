//! Reading what the browser sent, with limits, so that no input can make a handler allocate
//! without bound, panic, or see an ambiguous value (a parameter given twice).

use lambda_http::{Body, Request};

use crate::response::Failure;

/// Longest query string accepted; a return URL with a 2 KB challenge is about 3 KB.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Longest challenge accepted (Hydra's are 1-2 KB).
pub const MAX_CHALLENGE_BYTES: usize = 8 * 1024;
/// Longest `Cookie` header considered; browsers cap cookies near this.
pub const MAX_COOKIE_BYTES: usize = 16 * 1024;
/// Longest form body accepted (the consent form is well under 10 KB).
pub const MAX_FORM_BYTES: usize = 32 * 1024;

/// Parsed query or form parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text.
    pub fn parse(encoded: &str) -> Self {
        Self(
            url::form_urlencoded::parse(encoded.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The one value of `name`: absent is `Ok(None)`; given twice or longer than `max_len` is a
    /// bad request, because two values would let different layers read different ones.
    pub fn single(&self, name: &str, max_len: usize) -> Result<Option<&str>, Failure> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(Failure::BadRequest {
                title: "Invalid request",
                message: "A parameter was given more than once.",
                restart: None,
            });
        }
        match first {
            Some(v) if v.len() > max_len => Err(Failure::BadRequest {
                title: "Invalid request",
                message: "A parameter is longer than any valid value.",
                restart: None,
            }),
            other => Ok(other),
        }
    }

    /// Every value of `name` (for multi-valued fields such as `grant_scope`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The query parameters, refusing oversized query strings.
pub fn query(request: &Request) -> Result<Params, Failure> {
    let raw = request.uri().query().unwrap_or("");
    if raw.len() > MAX_QUERY_BYTES {
        return Err(Failure::BadRequest {
            title: "Invalid request",
            message: "The address is longer than any valid sign-in link.",
            restart: None,
        });
    }
    Ok(Params::parse(raw))
}

/// A challenge parameter, required, bounded and restricted to the characters Hydra uses.
pub fn challenge(params: &Params, name: &str) -> Result<String, Failure> {
    let missing = Failure::BadRequest {
        title: "Invalid sign-in link",
        message: "This sign-in link is incomplete. Please start again from the application.",
        restart: None,
    };
    let value = params
        .single(name, MAX_CHALLENGE_BYTES)
        .map_err(|_| Failure::BadRequest {
            title: "Invalid sign-in link",
            message: "This sign-in link is malformed. Please start again from the application.",
            restart: None,
        })?
        .ok_or(missing.clone())?;
    let well_formed = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~=+/".contains(&b));
    if !well_formed {
        return Err(Failure::BadRequest {
            title: "Invalid sign-in link",
            message: "This sign-in link is malformed. Please start again from the application.",
            restart: None,
        });
    }
    Ok(value.to_owned())
}

/// The browser's `Cookie` header (API Gateway v2 folds its `cookies` array into it), or empty
/// when absent or oversized.
pub fn cookie_header(request: &Request) -> String {
    let joined = request
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.len() > MAX_COOKIE_BYTES {
        String::new()
    } else {
        joined
    }
}

/// The value of one cookie, if the browser sent it exactly once.
pub fn cookie(request: &Request, name: &str) -> Option<String> {
    let header = cookie_header(request);
    let mut values = cookie::Cookie::split_parse(header.as_str())
        .filter_map(Result::ok)
        .filter(|c| c.name() == name)
        .map(|c| c.value().to_owned());
    let first = values.next();
    if values.next().is_some() {
        return None;
    }
    first
}

/// The form body of a POST; API Gateway and cargo lambda hand it over as text or as binary.
pub fn form(request: &Request) -> Result<Params, Failure> {
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(Failure::BadRequest {
            title: "Invalid request",
            message: "The form was not sent as a form.",
            restart: None,
        });
    }
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > MAX_FORM_BYTES {
        return Err(Failure::PayloadTooLarge);
    }
    // lambda_http has already decoded a base64-encoded event body into `Body::Binary`.
    let text = std::str::from_utf8(bytes).map_err(|_| Failure::BadRequest {
        title: "Invalid request",
        message: "The form could not be read.",
        restart: None,
    })?;
    Ok(Params::parse(text))
}

/// Whether the caller prefers JSON (an API client) over a page.
pub fn wants_json(request: &Request) -> bool {
    let accept = request
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// The path and query the browser asked for, to offer the same link again on a retry page.
///
/// Always a path on our own origin: a request path that starts with `//` (or `/\`, which
/// browsers read the same way) would otherwise make the "Try again" link protocol-relative, a
/// link to whatever host follows.
pub fn same_link(request: &Request) -> String {
    let link = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    format!("/{}", link.trim_start_matches(['/', '\\']))
}

/// The client's network address as API Gateway saw it (`requestContext.http.sourceIp`), for
/// per-address limits. API Gateway sets it from the TCP connection, so a browser cannot choose
/// it the way it could an `X-Forwarded-For` header; without a context (tests, other fronts) all
/// requests share one address, which only makes a limit stricter.
pub fn source_address(request: &Request) -> String {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        _ => None,
    }
    .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request {
        http::Request::builder()
            .uri(uri)
            .body(Body::Empty)
            .expect("request")
    }

    #[test]
    fn challenge_rules() {
        let params = |q: &str| Params::parse(q);
        assert_eq!(
            challenge(&params("login_challenge=abc-_.~"), "login_challenge").expect("ok"),
            "abc-_.~"
        );
        assert!(challenge(&params(""), "login_challenge").is_err());
        assert!(challenge(&params("login_challenge="), "login_challenge").is_err());
        assert!(challenge(&params("login_challenge=a%0Ab"), "login_challenge").is_err());
        assert!(challenge(
            &params("login_challenge=a&login_challenge=b"),
            "login_challenge"
        )
        .is_err());
        let long = format!("login_challenge={}", "a".repeat(MAX_CHALLENGE_BYTES + 1));
        assert!(challenge(&params(&long), "login_challenge").is_err());
    }

    #[test]
    fn same_link_stays_on_our_origin() {
        assert_eq!(same_link(&get("/login?a=1")), "/login?a=1");
        assert_eq!(
            same_link(&get("//evil.example/login?a=1")),
            "/evil.example/login?a=1"
        );
        assert_eq!(same_link(&get("///evil.example")), "/evil.example");
        assert_eq!(same_link(&get("/")), "/");
    }

    #[test]
    fn oversized_query_is_refused() {
        let uri = format!("/login?x={}", "a".repeat(MAX_QUERY_BYTES));
        assert!(query(&get(&uri)).is_err());
    }

    #[test]
    fn cookies_are_read_once() {
        let request = http::Request::builder()
            .uri("/")
            .header("cookie", "a=1; b=2; a=3")
            .header("cookie", "c=4")
            .body(Body::Empty)
            .expect("request");
        assert_eq!(cookie(&request, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&request, "c").as_deref(), Some("4"));
        assert_eq!(cookie(&request, "a"), None, "ambiguous cookie is ignored");
    }

    #[test]
    fn forms_as_text_or_binary() {
        let build = |body: Body| {
            http::Request::builder()
                .method("POST")
                .uri("/consent")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .expect("request")
        };
        let text = form(&build(Body::Text("a=1&b=2".to_owned()))).expect("text");
        assert_eq!(text.single("b", 10).expect("ok"), Some("2"));
        let binary = form(&build(Body::Binary(b"a=1&b=2".to_vec()))).expect("binary");
        assert_eq!(binary.single("a", 10).expect("ok"), Some("1"));
        assert_eq!(
            form(&build(Body::Binary(vec![b'a'; MAX_FORM_BYTES + 1]))),
            Err(Failure::PayloadTooLarge)
        );
    }
}
