//! What every response any attack produces must satisfy, and the self-checks of the checker.

use crate::common::*;
use crate::redirects::absolute_links_off_hydra;

// ------------------------------------------------------------------------------------------
// What every response must satisfy

pub const ALLOWED_HEADERS: &[&str] = &[
    "cache-control",
    "pragma",
    "referrer-policy",
    "x-content-type-options",
    "content-type",
    "content-security-policy",
    "x-frame-options",
    "location",
    "set-cookie",
    "retry-after",
    "allow",
];

pub const ALLOWED_TAGS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "style", "body", "main", "h1", "p", "a", "code",
    "img", "form", "input", "fieldset", "legend", "label", "button", "span",
];

pub const ALLOWED_ATTRIBUTES: &[&str] = &[
    "lang",
    "charset",
    "name",
    "content",
    "class",
    "data-testid",
    "href",
    "src",
    "alt",
    "width",
    "height",
    "method",
    "action",
    "type",
    "value",
    "checked",
    "disabled",
    "rel",
    "target",
];

pub fn cookie_problem(value: &str) -> Option<String> {
    let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
    let (name, cookie_value) = pair.split_once('=').unwrap_or((pair, ""));
    let known_name = matches!(name, "__Host-bridge_binding" | "__Host-bridge_csrf");
    let well_formed = cookie_value.len() == 43
        && cookie_value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let attributes_ok = attributes.starts_with(" Path=/; Max-Age=")
        && attributes.ends_with("; HttpOnly; SameSite=Lax; Secure")
        && !attributes.to_ascii_lowercase().contains("domain");
    (!(known_name && well_formed && attributes_ok))
        .then(|| format!("unexpected Set-Cookie {value:?}"))
}

/// Decodes the few entities the templates produce, so a link's real target can be checked.
pub fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&amp;", "&")
}

pub fn link_problem(attribute: &str, raw: &str) -> Option<String> {
    let value = unescape(raw);
    if let Some(rest) = value.strip_prefix('/') {
        return (rest.starts_with('/') || rest.starts_with('\\'))
            .then(|| format!("{attribute}={raw:?} is protocol-relative"));
    }
    match Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => None,
        _ => Some(format!("{attribute}={raw:?} is not a web link")),
    }
}

/// Lists every tag and attribute of a page and checks them against the templates' own.
pub fn html_problems(page: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let bytes = page.as_bytes();
    let mut at = 0;
    while let Some(offset) = page[at..].find('<') {
        let start = at + offset + 1;
        let mut end = start;
        let mut quote = None;
        while end < bytes.len() {
            match (quote, bytes[end]) {
                (Some(q), b) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(bytes[end]),
                (None, b'>') => break,
                _ => {}
            }
            end += 1;
        }
        let tag = &page[start..end.min(page.len())];
        at = (end + 1).min(page.len());
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let name_len = tag
            .find(|c: char| c.is_ascii_whitespace() || c == '/')
            .unwrap_or(tag.len());
        let name = tag[..name_len].to_ascii_lowercase();
        if !ALLOWED_TAGS.contains(&name.as_str()) {
            problems.push(format!("unexpected tag <{}>", &tag[..tag.len().min(60)]));
            continue;
        }
        if name == "!doctype" {
            continue;
        }
        let mut rest = &tag[name_len..];
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
            if rest.is_empty() {
                break;
            }
            let attribute_len = rest
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '/')
                .unwrap_or(rest.len());
            let attribute = rest[..attribute_len].to_ascii_lowercase();
            rest = &rest[attribute_len..];
            let mut value = None;
            if let Some(after) = rest.strip_prefix('=') {
                if let Some(quoted) = after.strip_prefix('"') {
                    let close = quoted.find('"').unwrap_or(quoted.len());
                    value = Some(&quoted[..close]);
                    rest = quoted.get(close + 1..).unwrap_or("");
                } else {
                    problems.push(format!("unquoted attribute {attribute} in <{name}>"));
                    let close = after.find(char::is_whitespace).unwrap_or(after.len());
                    rest = &after[close..];
                }
            }
            if !ALLOWED_ATTRIBUTES.contains(&attribute.as_str()) {
                problems.push(format!("unexpected attribute {attribute:?} in <{name}>"));
            }
            if let (Some(value), "href" | "src" | "action") = (value, attribute.as_str()) {
                problems.extend(link_problem(&attribute, value));
            }
        }
    }
    problems
}

/// Everything that must hold for every response of every handler, whatever the input.
pub fn violations(response: &Response<Body>) -> Vec<String> {
    let mut problems = Vec::new();
    if response.status().is_server_error() && response.status() != 502 && response.status() != 503 {
        problems.push(format!("status {}", response.status()));
    }
    for (name, value) in response.headers() {
        if !ALLOWED_HEADERS.contains(&name.as_str()) {
            problems.push(format!("unexpected header {name}"));
        }
        if value
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b'\r' | b'\n' | 0))
        {
            problems.push(format!("CR/LF/NUL in header {name}"));
        }
        let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
        // A cookie's value is a random 256-bit token of ours (43 base64url characters), which
        // spells "evil" by chance about once in 25,000 cookies: only the name and attributes,
        // where attacker text could land, are searched.
        let searched = match name.as_str() {
            "set-cookie" => cookie_without_value(&text),
            _ => text.clone(),
        };
        if searched.contains("evil") && name != "location" {
            problems.push(format!("attacker text in header {name}: {text:?}"));
        }
    }
    let locations: Vec<_> = response.headers().get_all("location").iter().collect();
    if locations.len() > 1 {
        problems.push("two Location headers".to_owned());
    }
    for location in locations {
        match location.to_str() {
            Ok(location) => problems.extend(location_problem(location)),
            Err(_) => problems.push("Location is not visible ASCII".to_owned()),
        }
    }
    for cookie in response.headers().get_all("set-cookie") {
        match cookie.to_str() {
            Ok(cookie) => problems.extend(cookie_problem(cookie)),
            Err(_) => problems.push("Set-Cookie is not visible ASCII".to_owned()),
        }
    }
    let is_html = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        problems.extend(html_problems(&body(response)));
    }
    problems
}

/// `name=value; attributes` with the value left out.
fn cookie_without_value(set_cookie: &str) -> String {
    let (pair, attributes) = set_cookie.split_once(';').unwrap_or((set_cookie, ""));
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    format!("{name}=;{attributes}")
}

// ------------------------------------------------------------------------------------------
// Self-checks of the checker: it must see what it is meant to catch.

#[test]
fn the_checker_catches_what_it_should() {
    assert!(location_problem("https://evil.example/").is_some());
    assert!(location_problem("https://oauth.example.com@evil.example/").is_some());
    assert!(location_problem("https://oauth.example.com.evil.example/").is_some());
    assert!(location_problem("//evil.example").is_some());
    assert!(location_problem(
        "https://id.example.com/self-service/login/browser?return_to=https://evil.example/"
    )
    .is_some());
    assert!(location_problem("https://oauth.example.com/oauth2/auth?x=1").is_none());
    assert!(location_problem(&format!(
        "{KRATOS_LOGIN}return_to={}",
        encode("https://auth.example.com/login/return?t=x")
    ))
    .is_none());
    assert!(!html_problems("<p>hi</p><script>x</script>").is_empty());
    assert!(!html_problems("<img src=\"x\" onerror=\"alert(1)\">").is_empty());
    assert!(!html_problems("<a href=\"javascript:alert(1)\">x</a>").is_empty());
    assert!(!html_problems("<a href=\"//evil.example\">x</a>").is_empty());
    assert!(!html_problems("<a href=\"/\\evil.example\">x</a>").is_empty());
    assert!(html_problems("<a class=\"button\" href=\"/login?x=1&amp;y=2\">x</a>").is_empty());
    assert!(!absolute_links_off_hydra("<a href=\"https://evil.example/\">x</a>").is_empty());
    assert!(!absolute_links_off_hydra("<a href=\"//evil.example/\">x</a>").is_empty());
    assert!(absolute_links_off_hydra("<a href=\"https://oauth.example.com/oauth2/auth?a=1&amp;b=2\">x</a><a href=\"/login\">y</a>").is_empty());
    assert!(cookie_problem("__Host-bridge_binding=abc; Path=/").is_some());
    assert!(cookie_problem(&format!(
        "__Host-bridge_binding={}; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure",
        "a".repeat(43)
    ))
    .is_none());
}
