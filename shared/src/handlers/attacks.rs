//! Attacks on every handler, in-process, with the testkit fakes.
//!
//! Each test plays one category of attack (tampered tokens, open redirects, CSRF, forged scopes,
//! injection, oversized input) and ends with one line
//! `attacks: <category> <n> tried, <n> refused, <n> accepted`, printed and, when
//! `BRIDGE_SECURITY_REPORT` names a file, appended to it so `./scripts/test` can summarise. A
//! test fails, listing what got through, as soon as one attempt is accepted.
//!
//! Every response any attack produces also goes through [`violations`], which checks what must
//! hold for all responses of all handlers: no 500, only known headers, no CR/LF in a header, a
//! `Location` only on Hydra's public origin or Kratos' login flow, only our own well-formed
//! cookies, and pages whose tags, attributes and links are the templates' own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use url::Url;

use super::testkit::*;
use super::{consent, error_page, login, login_return, logout};
use crate::digest::sha256_hex;
use crate::hydra::{ConsentRequest, LogoutRequest, OAuth2Client};
use crate::keyset::KeySet;
use crate::replay::{Claim, ReplayStore};
use crate::token::TokenCodec;

// ------------------------------------------------------------------------------------------
// Bookkeeping

/// Appends `line` to the report file (if any) and prints it.
fn report(line: &str) {
    println!("{line}");
    if let Some(path) = std::env::var_os("BRIDGE_SECURITY_REPORT") {
        use std::io::Write as _;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Counts one category of attempts; `finish` prints the line and fails on any acceptance.
struct Tally {
    category: &'static str,
    tried: usize,
    refused: usize,
    accepted: Vec<String>,
}

impl Tally {
    fn new(category: &'static str) -> Self {
        Self {
            category,
            tried: 0,
            refused: 0,
            accepted: Vec::new(),
        }
    }

    /// Records one attempt: `problems` empty means it was refused as it should be.
    fn record(&mut self, what: &str, problems: Vec<String>) {
        self.tried += 1;
        if problems.is_empty() {
            self.refused += 1;
        } else {
            self.accepted
                .push(format!("{what}: {}", problems.join("; ")));
        }
    }

    fn finish(self) {
        report(&format!(
            "attacks: {} {} tried, {} refused, {} accepted",
            self.category,
            self.tried,
            self.refused,
            self.accepted.len()
        ));
        assert!(self.tried > 0, "{}: nothing was tried", self.category);
        assert!(
            self.accepted.is_empty(),
            "{}: {} of {} attempts got through:\n{}",
            self.category,
            self.accepted.len(),
            self.tried,
            self.accepted.join("\n")
        );
    }
}

/// A small deterministic generator, so every run tries the same combinations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ------------------------------------------------------------------------------------------
// What every response must satisfy

const HYDRA_ORIGIN: &str = "https://oauth.example.com";
const KRATOS_LOGIN: &str = "https://id.example.com/self-service/login/browser?";
const RETURN_URL: &str = "https://auth.example.com/login/return?t=";

const ALLOWED_HEADERS: &[&str] = &[
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

const ALLOWED_TAGS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "style", "body", "main", "h1", "p", "a", "code",
    "img", "form", "input", "fieldset", "legend", "label", "button", "span",
];

const ALLOWED_ATTRIBUTES: &[&str] = &[
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

/// Where a redirect may lead: Hydra's public origin (which covers a sealed `request_url` on it)
/// or Kratos' browser login flow returning to our own return URL.
fn location_problem(location: &str) -> Option<String> {
    if location
        .bytes()
        .any(|b| !(0x21..0x7f).contains(&b) || b == b'\\')
    {
        return Some(format!(
            "Location with control, space, non-ASCII or backslash: {location:?}"
        ));
    }
    let Ok(parsed) = Url::parse(location) else {
        return Some(format!("Location is not an absolute URL: {location:?}"));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(format!("Location with user info: {location:?}"));
    }
    if location.starts_with(&format!("{HYDRA_ORIGIN}/")) {
        return (parsed.origin().ascii_serialization() != HYDRA_ORIGIN)
            .then(|| format!("Location looks like Hydra but is not: {location:?}"));
    }
    if location.starts_with(KRATOS_LOGIN) {
        let return_to = parsed
            .query_pairs()
            .filter(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
            .collect::<Vec<_>>();
        let ok = parsed.origin().ascii_serialization() == "https://id.example.com"
            && return_to.len() == 1
            && return_to[0].starts_with(RETURN_URL)
            && Url::parse(&return_to[0]).is_ok_and(|u| {
                u.origin().ascii_serialization() == "https://auth.example.com"
                    && u.path() == "/login/return"
            });
        return (!ok).then(|| format!("Kratos login URL with a foreign return_to: {location:?}"));
    }
    if location.starts_with(RETURN_URL) {
        // Single sign-on: straight to our own return function, with nothing but the token.
        let ok = parsed.origin().ascii_serialization() == "https://auth.example.com"
            && parsed.path() == "/login/return"
            && parsed.query_pairs().all(|(k, _)| k == "t")
            && parsed.fragment().is_none();
        return (!ok).then(|| format!("return URL with something else in it: {location:?}"));
    }
    Some(format!(
        "Location outside Hydra, Kratos and the return function: {location:?}"
    ))
}

fn cookie_problem(value: &str) -> Option<String> {
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
fn unescape(value: &str) -> String {
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

fn link_problem(attribute: &str, raw: &str) -> Option<String> {
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
fn html_problems(page: &str) -> Vec<String> {
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
fn violations(response: &Response<Body>) -> Vec<String> {
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
        if text.contains("evil") && name != "location" {
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

// ------------------------------------------------------------------------------------------
// Set-up

const SESSION_COOKIE: &str = "ory_kratos_session=s1";

fn login_deps(kit: &Kit) -> login::LoginDeps {
    login::LoginDeps {
        config: kit.config.clone(),
        hydra: kit.hydra.clone(),
        kratos: kit.kratos.clone(),
        tokens: kit.codec(),
        clock: kit.clock(),
    }
}

fn return_deps(kit: &Kit) -> login_return::ReturnDeps {
    login_return::ReturnDeps {
        config: kit.config.clone(),
        hydra: kit.hydra.clone(),
        kratos: kit.kratos.clone(),
        tokens: kit.codec(),
        replay: kit.replay.clone(),
        clock: kit.clock(),
    }
}

fn consent_deps(kit: &Kit) -> consent::ConsentDeps {
    consent::ConsentDeps {
        config: kit.config.clone(),
        hydra: kit.hydra.clone(),
        keys: kit.keys(),
    }
}

fn logout_deps(kit: &Kit) -> logout::LogoutDeps {
    logout::LogoutDeps {
        config: kit.config.clone(),
        hydra: kit.hydra.clone(),
        kratos: kit.kratos.clone(),
    }
}

fn error_deps(kit: &Kit) -> error_page::ErrorDeps {
    error_page::ErrorDeps {
        kratos: kit.kratos.clone(),
    }
}

fn kit_with_session() -> Kit {
    let kit = Kit::new();
    kit.kratos
        .add_session(SESSION_COOKIE, session("sess-1", "ident-1", &["oidc"]));
    kit.kratos.add_session(
        "ory_kratos_session=s2",
        session("sess-2", "ident-2", &["code"]),
    );
    kit
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn return_link(token: &str) -> String {
    format!("/login/return?t={}", encode(token))
}

/// A real token and its binding cookie, issued by the login entry handler for `challenge`.
async fn issue(kit: &Kit, challenge: &str, request_url: &str) -> (String, String) {
    kit.hydra
        .add_login(challenge, login_request(false, "", request_url));
    let response = login::handle(
        get(&format!("/login?login_challenge={challenge}"), None),
        &login_deps(kit),
    )
    .await;
    assert_eq!(response.status(), 303, "login entry issues a token");
    let kratos = Url::parse(&location(&response)).expect("kratos url");
    let return_to = kratos
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .expect("return_to");
    let token = Url::parse(&return_to)
        .expect("return url")
        .query_pairs()
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .expect("token");
    let binding = set_cookies(&response)[0]
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("binding cookie");
    (token, binding)
}

fn return_cookies(binding: &str) -> String {
    format!("__Host-bridge_binding={binding}; {SESSION_COOKIE}")
}

/// Sends `token` to the return handler with the right cookies and records whether it was
/// refused with one of `statuses` without any accept or claim.
async fn attack_return(
    kit: &Kit,
    tally: &mut Tally,
    what: &str,
    token: &str,
    binding: &str,
    statuses: &[u16],
) {
    let before = kit.hydra.accept_count();
    let response = login_return::handle(
        get(&return_link(token), Some(&return_cookies(binding))),
        &return_deps(kit),
    )
    .await;
    let mut problems = violations(&response);
    if !statuses.contains(&response.status().as_u16()) {
        problems.push(format!(
            "status {} (expected {statuses:?})",
            response.status()
        ));
    }
    if kit.hydra.accept_count() != before {
        problems.push("Hydra accept_login was called".to_owned());
    }
    if !kit.replay.is_empty() {
        problems.push("a claim was written".to_owned());
    }
    tally.record(what, problems);
}

/// Proves the set-up was sound: the untouched token is accepted.
async fn genuine_is_accepted(kit: &Kit, token: &str, binding: &str) {
    let response = login_return::handle(
        get(&return_link(token), Some(&return_cookies(binding))),
        &return_deps(kit),
    )
    .await;
    assert_eq!(response.status(), 303, "the genuine token must work");
    assert_eq!(kit.hydra.accept_count(), 1);
}

fn segments(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64")).expect("json")
    };
    (decode(parts[0]), decode(parts[1]), parts[2].to_owned())
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn unsigned_raw(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Signs `message` the way the codec does, with the real HMAC subkey of `kid`.
fn hmac_with_our_key(keys: &KeySet, kid: &str, message: &str, algorithm: Algorithm) -> String {
    let key = keys.get(kid).expect("kid");
    let secret = EncodingKey::from_secret(key.jws_secret());
    jsonwebtoken::crypto::sign(message.as_bytes(), &secret, algorithm).expect("sign")
}

fn signed_with_our_key(keys: &KeySet, header: &Value, claims: &Value) -> String {
    let message = unsigned(header, claims);
    let kid = header["kid"].as_str().unwrap_or("k2");
    let signature = hmac_with_our_key(keys, kid, &message, Algorithm::HS256);
    format!("{message}.{signature}")
}

// Throwaway keys generated with openssl for these tests only (PKCS#1 RSA, PKCS#8 P-256 and
// Ed25519, DER, base64): the "attacker's own real key" of the algorithm-confusion attacks.
const RSA_DER: &str = "MIIEogIBAAKCAQEAsCfS+XzBCDoU1i+2C0X+9PW395J4qhwspkr8m2/brMKEZ5hNQEKEfoigaWURLFBueSB7JIvl1q19wSgZL8/LgzoFA/H4zldW2FUIHZEENcBJCDVEFH0zMXuMSJCHaK6xeyAl4ru0L5IDdfCcV8UeR9lo/kS5etxyhbG/hwa+7um6N5DlCK3UJ4JIUMl3Pl6xaBhh0Q06fAbCza8qgq9IKAFsGUTjl6QKIzhz3+y6adu2ywUHSPh7mvYJcGHwZ7qUaAR3Fuw+Su1grbVKMTZ67hDMJOk0IcimG5WS7mQGD6NrQyjeGNi9onxTBUaDIlRXCbrIkfe2LALXpemkhCk2lwIDAQABAoIBAAJFaqe/oGO5gVB0TcNyQsUca4vmRBFWSuppqRdc/JSZRD8pFwOEav74uEeOQc7LpHUjMKnHJgxHot7EX5VHCm4WeqxMDWa4sWfNhGlX1+Vis7kEVQRNIPA2T8wL3EAcv+TnBGRAfakgPaBd8lHvrE8pSJQmX2zwr9yRkB0LQ16kSPWzFUMkrro0kqQIJjYK219NEmi1rE/n2vwUnbOSSvB4y5vnZxPuEpi/4xHoLpwgvZQj2CoIkCX2X1Q+msv/jZ+Hx6wYX5b2c+yK5od9VV9tpOvHBTcozQ883Rqj5GsP3Tglnk1P8nqQtFHDk8FWL32flKXKzqKb/q/dwQIQPkECgYEA2VI7gguXKfoibL/5irIBB19jZT/mTxTSFI+m7i5DIEpeQtfKYoUGbjUJUP+e1eAmPUjuTkm6nkbP8a3hjCwcxm/kQQUUNyeymt2ttRGUjAcphmd/ECdNRu6AaOls0dIo3cvCJBt6EIgZ4cYTH5NXqxA1jmJXsKymEF6sVh4RigcCgYEAz4H33qUQWk4gvYL+xwLxIXgiJPCNVCJ1fmRlGdLujFU+6LlfkVI6Ulb0o4iIze8wJMpwLO0oPg2cn6QRO7LnWcVii6hlVKcWh2m8Ai/9XxW/JuCZfB9Zh5sBlKLh5lhp7Wd11DCTO28x4N4w+eRxacKjcT9jQLKcAoA4wT8uCvECgYBm6LPZPxfT/ujySm4mqWgnT5pHxdyPsjJRHj1UKIAM+GpuiLUDti53XZIN0x4p9TzmZHTEidFfRfUOYuKdd/4gUbfqujb6b0f6YeLyDWMkc/fL95KJ2bKUVjhkdbTcHwLPFL/YTVKeJXTsHtnLaABptwFFbXhM51S0B8Df/tkbXQKBgGveUA+5Fqsa+gIJ2o9xhA+192nkclNOJm2xmqy17bOdjLpFwtw0NoUfFsT78MG8mPZHFdEE52p6gPSrwRmbgpAz/2pB+4rp4Ng7qrQoZjnLgDahgqf3U/8eINA3a97mDwqOQb4wEhlPUEpotmTwz9P+jiAMp3e2YUsbhGVQhorBAoGAWrq/uQHh4Xx+voZr9x5FsJAHVModLaXwpndOGZgyoLeQ+9vwvu7A+1/1ltNu7aRC3ZBnrZp6tn3vfj1Yz6nnbVFiNxnkgTI5cwMEu8ksgu93OEOSCgntHvUY1rLu7si2oEWytE6Po68N0S5Dw2ErH+00wUwdRySIgpRjwDkWUkw=";
const RSA_PUBLIC_DER: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsCfS+XzBCDoU1i+2C0X+9PW395J4qhwspkr8m2/brMKEZ5hNQEKEfoigaWURLFBueSB7JIvl1q19wSgZL8/LgzoFA/H4zldW2FUIHZEENcBJCDVEFH0zMXuMSJCHaK6xeyAl4ru0L5IDdfCcV8UeR9lo/kS5etxyhbG/hwa+7um6N5DlCK3UJ4JIUMl3Pl6xaBhh0Q06fAbCza8qgq9IKAFsGUTjl6QKIzhz3+y6adu2ywUHSPh7mvYJcGHwZ7qUaAR3Fuw+Su1grbVKMTZ67hDMJOk0IcimG5WS7mQGD6NrQyjeGNi9onxTBUaDIlRXCbrIkfe2LALXpemkhCk2lwIDAQAB";
const EC_DER: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoHc1OlnUQn9VwK7v+7zSAjgOCe5WGBl7d4lSpx7hvzChRANCAARtIGpSZSFgzcKfst7WaGicLNgY7crv7pT0I8+558V0diG44hlHxo54jbKn3CAPM3Fxe8D9kT5p/hYzBHgpRXWX";
const ED_DER: &str = "MC4CAQAwBQYDK2VwBCIEIF3GeNPdjQz6tofljdpH83q3OH2s1sVGSSueec+/hWgj";

fn der(base64: &str) -> Vec<u8> {
    STANDARD.decode(base64).expect("test key")
}

// ------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn token_byte_flips_are_refused() {
    let kit = kit_with_session();
    let (token, binding) = issue(
        &kit,
        "flip-challenge",
        "https://oauth.example.com/oauth2/auth?client_id=app",
    )
    .await;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut tally = Tally::new("token byte flips");
    for index in 0..token.len() {
        let original = token.as_bytes()[index];
        // Two alterations per position: one bit flipped (often leaving the alphabet), and the
        // next character of the base64url alphabet (always valid base64url, so it must be the
        // signature that catches it).
        let next = alphabet
            .iter()
            .position(|&c| c == original)
            .map(|i| alphabet[(i + 1) % alphabet.len()])
            .unwrap_or(b'A');
        for replacement in [original ^ 0x01, next] {
            if replacement == original {
                continue;
            }
            let mut bytes = token.clone().into_bytes();
            bytes[index] = replacement;
            let altered = String::from_utf8_lossy(&bytes).into_owned();
            attack_return(
                &kit,
                &mut tally,
                &format!(
                    "byte {index} {:?} -> {:?}",
                    original as char, replacement as char
                ),
                &altered,
                &binding,
                &[400],
            )
            .await;
        }
    }
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn truncated_and_extended_tokens_are_refused() {
    let kit = kit_with_session();
    let (token, binding) = issue(
        &kit,
        "cut-challenge",
        "https://oauth.example.com/oauth2/auth",
    )
    .await;
    let mut tally = Tally::new("token truncated/extended");
    for length in 0..token.len() {
        attack_return(
            &kit,
            &mut tally,
            &format!("first {length} characters"),
            &token[..length],
            &binding,
            &[400],
        )
        .await;
    }
    for skip in 1..40 {
        attack_return(
            &kit,
            &mut tally,
            &format!("without the first {skip} characters"),
            &token[skip..],
            &binding,
            &[400],
        )
        .await;
    }
    let signature = token.rsplit('.').next().unwrap_or_default();
    for suffix in [
        "A", "AA", "AAA", "AAAA", "=", "==", ".", "..", ".A", ".e30", " ", "\t", "\0", "%00", "~",
        "é", signature,
    ] {
        attack_return(
            &kit,
            &mut tally,
            &format!("with {suffix:?} appended"),
            &format!("{token}{suffix}"),
            &binding,
            &[400],
        )
        .await;
    }
    let parts: Vec<&str> = token.split('.').collect();
    for (what, altered) in [
        ("header doubled", format!("{}.{}", parts[0], token)),
        (
            "claims doubled",
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[1], parts[2]),
        ),
        ("signature doubled", format!("{token}.{}", parts[2])),
        (
            "padding added",
            format!("{}=.{}=.{}=", parts[0], parts[1], parts[2]),
        ),
        ("standard base64", token.replace('-', "+").replace('_', "/")),
        ("signature dropped", format!("{}.{}.", parts[0], parts[1])),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        (
            "JWS JSON serialisation",
            json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string(),
        ),
        (
            "whitespace inside",
            format!("{}. {}.{}", parts[0], parts[1], parts[2]),
        ),
        ("lower-cased", token.to_ascii_lowercase()),
        ("upper-cased", token.to_ascii_uppercase()),
    ] {
        // Header and claims are base64url of ASCII JSON, which rarely needs `-` or `_`: a
        // variant that happens to equal the genuine token is not an attack.
        if altered == token {
            continue;
        }
        attack_return(&kit, &mut tally, what, &altered, &binding, &[400]).await;
    }
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn alg_none_is_refused() {
    let kit = kit_with_session();
    let (token, binding) = issue(&kit, "none-challenge", "").await;
    let (header, claims, signature) = segments(&token);
    let mut tally = Tally::new("token alg none");
    for alg in ["none", "None", "NONE", "nOnE", "", "null"] {
        for kid in [Some("k2"), None] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            for tail in ["", signature.as_str(), "AAAA"] {
                let forged = format!("{}.{tail}", unsigned(&header, &claims));
                attack_return(
                    &kit,
                    &mut tally,
                    &format!("alg {alg:?} kid {kid:?} sig {} chars", tail.len()),
                    &forged,
                    &binding,
                    &[400],
                )
                .await;
            }
        }
    }
    for raw_header in [
        r#"{"alg":null,"kid":"k2"}"#,
        r#"{"kid":"k2"}"#,
        r#"{"alg":["HS256"],"kid":"k2"}"#,
        r#"{"alg":"HS256","alg":"none","kid":"k2"}"#,
        r#"{"alg":"none","alg":"HS256","kid":"k2"}"#,
    ] {
        let forged = format!("{}.", unsigned_raw(raw_header, &claims));
        attack_return(&kit, &mut tally, raw_header, &forged, &binding, &[400]).await;
    }
    // A header that says HS256 but carries no signature at all.
    let forged = format!("{}.", unsigned(&header, &claims));
    attack_return(
        &kit,
        &mut tally,
        "HS256 without signature",
        &forged,
        &binding,
        &[400],
    )
    .await;
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let kit = kit_with_session();
    let keys = kit.keys();
    let (token, binding) = issue(&kit, "confusion-challenge", "").await;
    let (_, claims, _) = segments(&token);
    let mut tally = Tally::new("token algorithm confusion");
    let asymmetric: [(Algorithm, EncodingKey); 10] = [
        (Algorithm::RS256, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::RS384, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::RS512, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::PS256, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::PS512, EncodingKey::from_rsa_der(&der(RSA_DER))),
        (Algorithm::ES256, EncodingKey::from_ec_der(&der(EC_DER))),
        (Algorithm::EdDSA, EncodingKey::from_ed_der(&der(ED_DER))),
        // HMAC with the attacker's own secret, and with our RSA public key as the secret (the
        // classic confusion where a verifier feeds its public key to HMAC).
        (
            Algorithm::HS256,
            EncodingKey::from_secret(b"attacker-secret-attacker-secret!"),
        ),
        (
            Algorithm::HS256,
            EncodingKey::from_secret(&der(RSA_PUBLIC_DER)),
        ),
        (
            Algorithm::HS512,
            EncodingKey::from_secret(&der(RSA_PUBLIC_DER)),
        ),
    ];
    for (algorithm, key) in &asymmetric {
        for kid in ["k2", "k1"] {
            let mut header = Header::new(*algorithm);
            header.kid = Some(kid.to_owned());
            let forged = jsonwebtoken::encode(&header, &claims, key).expect("sign with a real key");
            attack_return(
                &kit,
                &mut tally,
                &format!("{algorithm:?} signed with an attacker key, kid {kid}"),
                &forged,
                &binding,
                &[400],
            )
            .await;
        }
    }
    // Foreign algorithm names over a MAC made with our own HMAC subkey (what a confused
    // verifier would accept).
    for alg in [
        "RS256", "RS512", "ES256", "ES384", "EdDSA", "PS256", "HS384", "HS512", "hs256", "HS256 ",
        "A256GCM",
    ] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k2"});
        let message = unsigned(&header, &claims);
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let signature = hmac_with_our_key(&keys, "k2", &message, algorithm);
            attack_return(
                &kit,
                &mut tally,
                &format!("alg {alg:?} with our {algorithm:?} MAC"),
                &format!("{message}.{signature}"),
                &binding,
                &[400],
            )
            .await;
        }
    }
    // Keys the attacker offers in the header itself.
    let mut with_jwk = Header::new(Algorithm::RS256);
    with_jwk.kid = Some("k2".to_owned());
    with_jwk.jwk = Some(
        jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_rsa_der(&der(RSA_DER)),
            Algorithm::RS256,
        )
        .expect("jwk"),
    );
    with_jwk.jku = Some("https://evil.example/jwks.json".to_owned());
    with_jwk.x5u = Some("https://evil.example/cert.pem".to_owned());
    let forged = jsonwebtoken::encode(
        &with_jwk,
        &claims,
        &EncodingKey::from_rsa_der(&der(RSA_DER)),
    )
    .expect("sign");
    attack_return(
        &kit,
        &mut tally,
        "RS256 with embedded jwk/jku/x5u",
        &forged,
        &binding,
        &[400],
    )
    .await;
    let mut hs_with_jwk = with_jwk.clone();
    hs_with_jwk.alg = Algorithm::HS256;
    let forged = jsonwebtoken::encode(
        &hs_with_jwk,
        &claims,
        &EncodingKey::from_secret(b"attacker-secret-attacker-secret!"),
    )
    .expect("sign");
    attack_return(
        &kit,
        &mut tally,
        "HS256 with embedded jwk and attacker secret",
        &forged,
        &binding,
        &[400],
    )
    .await;
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn unknown_or_mistyped_kid_is_refused() {
    let kit = kit_with_session();
    let keys = kit.keys();
    let (token, binding) = issue(&kit, "kid-challenge", "").await;
    let (_, claims, signature) = segments(&token);
    let mut tally = Tally::new("token unknown kid");
    let long_kid = "k".repeat(5000);
    for kid in [
        json!("k9"),
        json!("K2"),
        json!("k2 "),
        json!(" k2"),
        json!("k2\u{0}"),
        json!("k"),
        json!(""),
        json!("../k2"),
        json!("k2/../k1"),
        json!("k1' OR '1'='1"),
        json!("*"),
        json!(long_kid),
        json!(2),
        json!(null),
        json!(["k2"]),
        json!({"kid": "k2"}),
        json!(true),
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let message = unsigned(&header, &claims);
        // The genuine signature, and a MAC under the current key over the altered header.
        let ours = hmac_with_our_key(&keys, "k2", &message, Algorithm::HS256);
        for tail in [signature.as_str(), ours.as_str()] {
            attack_return(
                &kit,
                &mut tally,
                &format!("kid {kid}"),
                &format!("{message}.{tail}"),
                &binding,
                &[400],
            )
            .await;
        }
    }
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let message = unsigned(&header, &claims);
    let ours = hmac_with_our_key(&keys, "k2", &message, Algorithm::HS256);
    attack_return(
        &kit,
        &mut tally,
        "no kid, current key's MAC",
        &format!("{message}.{ours}"),
        &binding,
        &[400],
    )
    .await;
    let forged = format!(
        "{}.{ours}",
        unsigned_raw(r#"{"alg":"HS256","kid":"k9","kid":"k2"}"#, &claims)
    );
    attack_return(&kit, &mut tally, "duplicate kid", &forged, &binding, &[400]).await;
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn mistyped_claims_are_refused_even_when_signed() {
    let kit = kit_with_session();
    let keys = kit.keys();
    let (token, binding) = issue(&kit, "claims-challenge", "").await;
    let (header, claims, _) = segments(&token);
    let mut tally = Tally::new("token claim types");
    let exp = claims["exp"].as_u64().expect("exp");
    let iat = claims["iat"].as_u64().expect("iat");
    let wrong_values = |n: u64| {
        vec![
            json!(n.to_string()),
            json!(n as f64 + 0.5),
            json!(format!("{n}.0")),
            json!(true),
            json!(null),
            json!([n]),
            json!({"value": n}),
            json!(-1),
            json!(-(n as i64)),
            serde_json::from_str::<Value>("18446744073709551616").expect("big"),
            serde_json::from_str::<Value>("1e400").unwrap_or(json!("1e400")),
            json!(""),
        ]
    };
    for (claim, value) in [("exp", exp), ("iat", iat)] {
        for wrong in wrong_values(value) {
            let mut altered = claims.clone();
            altered[claim] = wrong.clone();
            let forged = signed_with_our_key(&keys, &header, &altered);
            attack_return(
                &kit,
                &mut tally,
                &format!("{claim} = {wrong}"),
                &forged,
                &binding,
                &[400],
            )
            .await;
        }
    }
    for claim in ["iss", "aud", "jti", "sealed"] {
        for wrong in [
            json!(5),
            json!(null),
            json!([claims[claim].clone()]),
            json!({"v": claims[claim].clone()}),
            json!(true),
        ] {
            let mut altered = claims.clone();
            altered[claim] = wrong.clone();
            let forged = signed_with_our_key(&keys, &header, &altered);
            attack_return(
                &kit,
                &mut tally,
                &format!("{claim} = {wrong}"),
                &forged,
                &binding,
                &[400],
            )
            .await;
        }
        let mut altered = claims.clone();
        altered.as_object_mut().expect("object").remove(claim);
        let forged = signed_with_our_key(&keys, &header, &altered);
        attack_return(
            &kit,
            &mut tally,
            &format!("{claim} missing"),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    for claim in ["exp", "iat"] {
        let mut altered = claims.clone();
        altered.as_object_mut().expect("object").remove(claim);
        let forged = signed_with_our_key(&keys, &header, &altered);
        attack_return(
            &kit,
            &mut tally,
            &format!("{claim} missing"),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    for (extra, value) in [
        ("sub", json!("admin")),
        ("nbf", json!(0)),
        ("login_challenge", json!("other")),
        ("exp2", json!(exp)),
    ] {
        let mut altered = claims.clone();
        altered[extra] = value;
        let forged = signed_with_our_key(&keys, &header, &altered);
        attack_return(
            &kit,
            &mut tally,
            &format!("extra claim {extra}"),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    // Duplicate claims: a lenient parser might read the first and a checker the second.
    let body = claims.to_string();
    for duplicate in [
        format!(r#"{{"exp":"{exp}",{}"#, &body[1..]),
        format!(r#"{},"exp":{}}}"#, &body[..body.len() - 1], exp + 100_000),
        format!(
            r#"{},"aud":"https://evil.example"}}"#,
            &body[..body.len() - 1]
        ),
    ] {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(&duplicate)
        );
        let signature = hmac_with_our_key(&keys, "k2", &message, Algorithm::HS256);
        attack_return(
            &kit,
            &mut tally,
            "duplicate claim",
            &format!("{message}.{signature}"),
            &binding,
            &[400],
        )
        .await;
    }
    // exp not after iat.
    let mut altered = claims.clone();
    altered["iat"] = json!(exp);
    let forged = signed_with_our_key(&keys, &header, &altered);
    attack_return(&kit, &mut tally, "iat = exp", &forged, &binding, &[400]).await;
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn expired_tokens_are_gone() {
    let mut tally = Tally::new("token expiry");
    let ttl = Kit::new().config.token_ttl;
    for (advance, expected) in [
        (ttl + Duration::from_secs(1), 410),
        (ttl, 410),
        (ttl + Duration::from_secs(3600 * 24 * 365), 410),
    ] {
        let kit = kit_with_session();
        let (token, binding) = issue(&kit, "expiry-challenge", "").await;
        kit.advance(advance);
        attack_return(
            &kit,
            &mut tally,
            &format!("{} s after issue", advance.as_secs()),
            &token,
            &binding,
            &[expected],
        )
        .await;
    }
    // Issued in the future (a clock rolled back, or a forged iat): refused as invalid.
    let kit = kit_with_session();
    let keys = kit.keys();
    let (token, binding) = issue(&kit, "future-challenge", "").await;
    let (header, claims, _) = segments(&token);
    for ahead in [6u64, 600, 86_400] {
        let mut altered = claims.clone();
        altered["iat"] = json!(claims["iat"].as_u64().expect("iat") + ahead);
        altered["exp"] = json!(claims["exp"].as_u64().expect("exp") + ahead);
        let forged = signed_with_our_key(&keys, &header, &altered);
        attack_return(
            &kit,
            &mut tally,
            &format!("iat {ahead} s ahead"),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    // One second before expiry it still works: the boundary is exact.
    let kit = kit_with_session();
    let (token, binding) = issue(&kit, "edge-challenge", "").await;
    kit.advance(ttl - Duration::from_secs(1));
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn other_audience_issuer_or_retired_key_is_refused() {
    let kit = kit_with_session();
    let keys = kit.keys();
    let (token, binding) = issue(&kit, "aud-challenge", "").await;
    let (header, claims, _) = segments(&token);
    let mut tally = Tally::new("token audience/issuer/retired key");
    let others = [
        "https://other.example.com",
        "https://auth.example.com/",
        "http://auth.example.com",
        "https://AUTH.example.com",
        "https://auth.example.com.evil.example",
        "https://auth.example.com/login/return",
        "",
    ];
    for other in others {
        for claim in ["aud", "iss"] {
            let mut altered = claims.clone();
            altered[claim] = json!(other);
            let forged = signed_with_our_key(&keys, &header, &altered);
            attack_return(
                &kit,
                &mut tally,
                &format!("{claim} = {other:?}, signed"),
                &forged,
                &binding,
                &[400],
            )
            .await;
        }
    }
    // Sealed by another deployment's codec under the same key set.
    for (issuer, audience) in [
        ("https://other.example.com", "https://auth.example.com"),
        ("https://auth.example.com", "https://other.example.com"),
    ] {
        let codec =
            TokenCodec::new(kit.keys(), issuer, audience, kit.config.token_ttl).expect("codec");
        let opened = kit.codec().open(&token, kit.now()).expect("open");
        let forged = codec.seal(&opened.payload, kit.now()).expect("seal").token;
        attack_return(
            &kit,
            &mut tally,
            &format!("sealed for iss {issuer} aud {audience}"),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    // Keys that are not (or no longer) in the set: a retired kid, and a listed kid whose secret
    // was replaced.
    for keyset in [
        r#"{"current":"k0","keys":[{"kid":"k0","secret":"cmV0aXJlZC1rZXktcmV0aXJlZC1rZXktcmV0aXJlZC1rZXk"}]}"#,
        r#"{"current":"k1","keys":[{"kid":"k1","secret":"cmVwbGFjZWQtc2VjcmV0LXJlcGxhY2VkLXNlY3JldC14eHg"}]}"#,
        r#"{"current":"k2","keys":[{"kid":"k2","secret":"cmVwbGFjZWQtc2VjcmV0LXJlcGxhY2VkLXNlY3JldC14eHg"}]}"#,
    ] {
        let retired = KeySet::from_json(keyset).expect("keys");
        let issuer = kit.config.token_issuer();
        let codec =
            TokenCodec::new(retired, issuer.clone(), issuer, kit.config.token_ttl).expect("codec");
        let opened = kit.codec().open(&token, kit.now()).expect("open");
        let forged = codec.seal(&opened.payload, kit.now()).expect("seal").token;
        attack_return(
            &kit,
            &mut tally,
            &format!("minted under {}", &keyset[..20]),
            &forged,
            &binding,
            &[400],
        )
        .await;
    }
    genuine_is_accepted(&kit, &token, &binding).await;
    tally.finish();
}

#[tokio::test]
async fn tokens_only_work_in_their_browser_and_once() {
    let kit = kit_with_session();
    let (token, binding) = issue(&kit, "bind-challenge", "").await;
    let mut tally = Tally::new("token browser binding/replay");
    let other = "A".repeat(43);
    for cookies in [
        SESSION_COOKIE.to_owned(),
        format!("__Host-bridge_binding={other}; {SESSION_COOKIE}"),
        format!("bridge_binding={binding}; {SESSION_COOKIE}"),
        format!("__host-bridge_binding={binding}; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding={binding}x; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding={}; {SESSION_COOKIE}", &binding[..42]),
        format!("__Host-bridge_binding={binding}; __Host-bridge_binding={other}; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding=\"{binding}\"; {SESSION_COOKIE}"),
        format!("__Host-bridge_binding= {binding}x; {SESSION_COOKIE}"),
    ] {
        let response = login_return::handle(
            get(&return_link(&token), Some(&cookies)),
            &return_deps(&kit),
        )
        .await;
        let mut problems = violations(&response);
        if response.status() != 403 && response.status() != 400 {
            problems.push(format!("status {}", response.status()));
        }
        if kit.hydra.accept_count() != 0 {
            problems.push("accepted".to_owned());
        }
        tally.record(&format!("cookies {cookies:?}"), problems);
    }
    genuine_is_accepted(&kit, &token, &binding).await;
    // The same link again from another Kratos session (someone who copied the URL and the
    // binding cookie): refused, still one accept.
    for session_cookie in [
        "ory_kratos_session=s2",
        "ory_kratos_session=s2; ory_kratos_session=s1",
    ] {
        let cookies = format!("__Host-bridge_binding={binding}; {session_cookie}");
        let response = login_return::handle(
            get(&return_link(&token), Some(&cookies)),
            &return_deps(&kit),
        )
        .await;
        let mut problems = violations(&response);
        // Refused, or (a cookie Kratos does not recognise) sent to log in again: never on to
        // Hydra.
        if location(&response).starts_with(HYDRA_ORIGIN) {
            problems.push(format!("redirected to {}", location(&response)));
        }
        if kit.hydra.accept_count() != 1 {
            problems.push("accepted a second time".to_owned());
        }
        tally.record(&format!("replay with {session_cookie}"), problems);
    }
    tally.finish();
}

// ------------------------------------------------------------------------------------------
// Open redirect

/// URLs a hostile or broken Hydra (or a crafted `request_url`) could hand the bridge.
fn redirect_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "//evil.example/x",
        "///evil.example/x",
        "////evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "https:/evil.example",
        "https:\\\\evil.example",
        "https:///evil.example",
        "http://oauth.example.com/oauth2/auth",
        "https://evil.example/",
        "https://evil.example/https://oauth.example.com/",
        "https://evil.example#https://oauth.example.com/",
        "https://evil.example?https://oauth.example.com/",
        "https://oauth.example.com@evil.example/",
        "https://oauth.example.com:443@evil.example/",
        "https://oauth.example.com%40evil.example/",
        "https://oauth.example.com%2f@evil.example/",
        "https://oauth.example.com\\@evil.example/",
        "https://oauth.example.com\\.evil.example/",
        "https://evil.example\\oauth.example.com/",
        "https://evil.example\\@oauth.example.com/",
        "https://user:pass@oauth.example.com/oauth2/auth",
        "https://user@oauth.example.com/oauth2/auth",
        "https://oauth.example.com.evil.example/",
        "https://oauth.example.com./oauth2/auth",
        "https://oauth.example.co/",
        "https://oauth-example.com/",
        "https://oauth.example.com:444/oauth2/auth",
        "https://oauth.example.com:80/oauth2/auth",
        "https://oauth.example.com:8443/oauth2/auth",
        "https://oauth.example.com:65536/",
        "https://oauth.example.com:-1/",
        "https://oauth.example.com%00.evil.example/",
        "https://oauth.example.com%0d%0a.evil.example/",
        "https://evil%2eexample/",
        "https://%65vil.example/",
        "https://xn--oauth-9ya.example.com/",
        "https://оauth.example.com/",
        "https://oauth.exаmple.com/",
        "https://oauth。example。com.evil.example/",
        "https://127.0.0.1/",
        "https://0x7f.1/",
        "https://2130706433/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://localhost/",
        "https://169.254.169.254/latest/meta-data/",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(document.domain)",
        "javascript://oauth.example.com/%0aalert(1)",
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://oauth.example.com/",
        "wss://oauth.example.com/",
        "blob:https://oauth.example.com/uuid",
        "about:blank",
        "/relative/path",
        "relative",
        "?login_verifier=x",
        "#fragment",
        "",
        " ",
        "https://",
        "https://oauth.example.com\r\nSet-Cookie: evil=1",
        "https://oauth.example.com/\r\nSet-Cookie: evil=1",
        "https://evil.example\r\n.oauth.example.com/",
        "https://oauth.example.com/%0d%0aSet-Cookie:%20evil=1",
        "https://oauth.example.com/\u{560a}\u{560d}Set-Cookie:evil=1",
        "https://oauth.example.com/\u{2028}x",
        "https://oauth.example.com\t.evil.example/",
        "https://oauth.example.com\n.evil.example/",
        "https://evil.example/\u{0}https://oauth.example.com/",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Variants that stay on Hydra's origin after normalisation: allowed, but the Location must
    // then be the normalised Hydra URL.
    corpus.extend(
        [
            "HTTPS://OAUTH.EXAMPLE.COM/oauth2/auth?login_verifier=x",
            "https://OAuth.Example.Com/oauth2/auth",
            "https://oauth.example.com:443/oauth2/auth",
            "https://oauth.example.com:0443/oauth2/auth",
            "https://oauth%2eexample%2ecom/oauth2/auth",
            "https://ｏａｕｔｈ.example.com/oauth2/auth",
            "https://oauth.example.com/oauth2/auth?next=https://evil.example",
            "https://oauth.example.com/..%2f..%2fevil.example",
            "https://oauth.example.com/\\\\evil.example",
            "https://oauth.example.com/oauth2/auth#@evil.example",
            "https://oauth.example.com?@evil.example",
            "https://oauth.example.com/oauth2/auth?x=\"><script>alert(1)</script>",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    corpus
}

fn third_party_consent(skip: bool, scopes: &[&str]) -> ConsentRequest {
    ConsentRequest {
        client: OAuth2Client {
            client_id: "third".to_owned(),
            client_name: Some("Third".to_owned()),
            skip_consent: Some(false),
            ..OAuth2Client::default()
        },
        context: Some(json!({
            "identity_id": "ident-1",
            "claims_by_scope": {
                "email": {"email": "ann@example.com", "email_verified": true},
                "phone": {"phone_number": "+15550001", "phone_number_verified": true},
                "profile": {"name": "Ann Lee", "given_name": "Ann", "family_name": "Lee"}
            }
        })),
        requested_scope: scopes.iter().map(|s| (*s).to_owned()).collect(),
        requested_access_token_audience: vec!["api".to_owned()],
        skip,
        request_url: String::new(),
        subject: "ident-1".to_owned(),
    }
}

fn form_post(body: &str, cookie: Option<&str>, headers: &[(&str, &str)]) -> Request {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/consent")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::Text(body.to_owned())).expect("request")
}

/// Shows the consent screen for `challenge` and returns (cookie pair, CSRF token).
async fn consent_screen(kit: &Kit, challenge: &str) -> (String, String) {
    let response = consent::handle(
        get(&format!("/consent?consent_challenge={challenge}"), None),
        &consent_deps(kit),
    )
    .await;
    assert_eq!(response.status(), 200, "consent screen");
    assert!(
        violations(&response).is_empty(),
        "{:?}",
        violations(&response)
    );
    let cookie = set_cookies(&response)[0]
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let page = body(&response);
    let token = page
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf token")
        .to_owned();
    (cookie, token)
}

/// Every handler step that sends the browser where Hydra says, with Hydra answering `target`.
async fn responses_with_hydra_redirect(target: &str) -> Vec<(&'static str, Response<Body>)> {
    let kit = kit_with_session();
    let mut out = Vec::new();

    kit.hydra
        .add_login("skip", login_request(true, "ident-1", ""));
    kit.hydra.add_login("sso", login_request(false, "", ""));
    // Tokens are issued before Hydra turns hostile (the login entry's own redirect goes to
    // Kratos, not to Hydra's answer).
    let (token, binding) = issue(&kit, "ret", "").await;
    let (token2, binding2) = issue(&kit, "ret2", "").await;
    kit.hydra
        .add_consent("cskip", third_party_consent(true, &["openid", "email"]));
    kit.hydra
        .add_consent("cform", third_party_consent(false, &["openid", "email"]));
    kit.hydra.add_logout(
        "lo",
        LogoutRequest {
            subject: "ident-1".to_owned(),
            sid: "sid".to_owned(),
            rp_initiated: true,
        },
    );
    let (csrf_cookie, csrf_token) = consent_screen(&kit, "cform").await;
    kit.hydra.set_redirect(target);

    out.push((
        "login skip",
        login::handle(get("/login?login_challenge=skip", None), &login_deps(&kit)).await,
    ));
    out.push((
        "login sso",
        login::handle(
            get("/login?login_challenge=sso", Some(SESSION_COOKIE)),
            &login_deps(&kit),
        )
        .await,
    ));
    let response = login_return::handle(
        get(&return_link(&token), Some(&return_cookies(&binding))),
        &return_deps(&kit),
    )
    .await;
    if response.status() == 502 {
        assert!(
            kit.replay.is_empty(),
            "a refused redirect gives the claim back"
        );
    }
    out.push(("return accept", response));
    // A completed claim whose stored destination was tampered with in the table.
    let opened = kit.codec().open(&token2, kit.now()).expect("open");
    let now = crate::clock::epoch_seconds(kit.now()).unwrap_or(0);
    let claim = Claim {
        key: sha256_hex(&opened.jti),
        session_hash: sha256_hex("sess-1"),
        attempt: "earlier".to_owned(),
        token_expires_at: opened.expires_at,
        in_progress_until: now + 30,
        now,
    };
    kit.replay.claim(&claim).await.expect("claim");
    kit.replay.complete(&claim, target).await.expect("complete");
    out.push((
        "return repeated",
        login_return::handle(
            get(&return_link(&token2), Some(&return_cookies(&binding2))),
            &return_deps(&kit),
        )
        .await,
    ));
    out.push((
        "consent skip",
        consent::handle(
            get("/consent?consent_challenge=cskip", None),
            &consent_deps(&kit),
        )
        .await,
    ));
    for action in ["allow", "deny"] {
        let form = format!(
            "consent_challenge=cform&csrf_token={}&grant_scope=email&action={action}",
            encode(&csrf_token)
        );
        out.push((
            if action == "allow" {
                "consent allow"
            } else {
                "consent deny"
            },
            consent::handle(
                form_post(
                    &form,
                    Some(&csrf_cookie),
                    &[("origin", "https://auth.example.com")],
                ),
                &consent_deps(&kit),
            )
            .await,
        ));
    }
    out.push((
        "logout",
        logout::handle(
            get("/logout?logout_challenge=lo", Some(SESSION_COOKIE)),
            &logout_deps(&kit),
        )
        .await,
    ));
    out
}

#[tokio::test]
async fn hydra_redirects_never_leave_hydra() {
    let mut tally = Tally::new("open redirect (Hydra redirect_to)");
    for target in redirect_corpus() {
        for (step, response) in responses_with_hydra_redirect(&target).await {
            let mut problems = violations(&response);
            if !matches!(response.status().as_u16(), 303 | 502) {
                problems.push(format!("status {}", response.status()));
            }
            tally.record(&format!("{step} with redirect_to {target:?}"), problems);
        }
    }
    tally.finish();
}

#[tokio::test]
async fn sealed_request_urls_never_leave_hydra() {
    let mut tally = Tally::new("open redirect (sealed request_url)");
    for target in redirect_corpus() {
        let kit = kit_with_session();
        // Hydra's login request carries the crafted request_url; login entry seals it.
        let (token, binding) = issue(&kit, "sealed", &target).await;
        // The challenge is dead by the time the user comes back: the bridge restarts through
        // the sealed request_url, but only on Hydra's origin.
        kit.hydra.fail_accept("sealed", UpstreamKind::Expired);
        let response = login_return::handle(
            get(&return_link(&token), Some(&return_cookies(&binding))),
            &return_deps(&kit),
        )
        .await;
        let mut problems = violations(&response);
        if !matches!(response.status().as_u16(), 303 | 410) {
            problems.push(format!("status {}", response.status()));
        }
        tally.record(&format!("restart with request_url {target:?}"), problems);
        // No Kratos session: the browser goes through Kratos again with the same token.
        let response = login_return::handle(
            get(
                &return_link(&token),
                Some(&format!("__Host-bridge_binding={binding}")),
            ),
            &return_deps(&kit),
        )
        .await;
        tally.record(
            &format!("no session with request_url {target:?}"),
            violations(&response),
        );
        // prompt/max_age come from the same URL; login entry must still only go to Kratos.
        kit.hydra
            .add_login("sso2", login_request(false, "", &target));
        let response = login::handle(
            get("/login?login_challenge=sso2", Some(SESSION_COOKIE)),
            &login_deps(&kit),
        )
        .await;
        tally.record(
            &format!("login entry with request_url {target:?}"),
            violations(&response),
        );
        // The token expired: the 410 page may offer "Start again" through the sealed
        // request_url, but only on Hydra's public origin.
        kit.advance(kit.config.token_ttl + Duration::from_secs(1));
        let response = login_return::handle(
            get(&return_link(&token), Some(&return_cookies(&binding))),
            &return_deps(&kit),
        )
        .await;
        let mut problems = violations(&response);
        if response.status() != 410 {
            problems.push(format!("status {}", response.status()));
        }
        problems.extend(absolute_links_off_hydra(&body(&response)));
        tally.record(
            &format!("expired token with request_url {target:?}"),
            problems,
        );
    }
    tally.finish();
}

/// Absolute links on a page that do not lead to Hydra's public origin.
fn absolute_links_off_hydra(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(unescape)
        .filter(|href| !href.starts_with('/') || href.starts_with("//"))
        .filter(|href| {
            !href.starts_with(&format!("{HYDRA_ORIGIN}/")) || location_problem(href).is_some()
        })
        .map(|href| format!("page links to {href:?}"))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Consent

fn consent_decisions(kit: &Kit) -> usize {
    kit.hydra
        .calls()
        .iter()
        .filter(|c| c.starts_with("accept_consent") || c.starts_with("reject_consent"))
        .count()
}

/// What a forged consent POST is: (description, form body, cookie header, extra headers).
type CsrfCase<'a> = (String, String, Option<String>, Vec<(&'a str, &'a str)>);

#[tokio::test]
async fn forged_consent_posts_are_refused() {
    let kit = Kit::new();
    kit.hydra
        .add_consent("c1", third_party_consent(false, &["openid", "email"]));
    kit.hydra
        .add_consent("c2", third_party_consent(false, &["openid", "email"]));
    let (cookie, token) = consent_screen(&kit, "c1").await;
    let (cookie2, token2) = consent_screen(&kit, "c2").await;
    let mut tally = Tally::new("consent CSRF");
    let same_origin = ("origin", "https://auth.example.com");
    let other_kit_keys = KeySet::from_json(
        r#"{"current":"k2","keys":[{"kid":"k2","secret":"YW5vdGhlci1rZXktYW5vdGhlci1rZXktYW5vdGhlci1rZXk"}]}"#,
    )
    .expect("keys");
    let foreign_token = other_kit_keys.csrf_key().token_for("anything");
    let wrong_kid = token.replacen("k2.", "k1.", 1);
    let mut cases: Vec<CsrfCase<'_>> = Vec::new();
    for action in ["allow", "deny"] {
        let form = |t: &str| {
            format!(
                "consent_challenge=c1&csrf_token={}&grant_scope=email&action={action}",
                encode(t)
            )
        };
        let bare = format!("consent_challenge=c1&grant_scope=email&action={action}");
        let c = Some(cookie.clone());
        cases.extend([
            (
                format!("{action}: no token"),
                bare.clone(),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: empty token"),
                form(""),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: other challenge's token"),
                form(&token2),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: other challenge's token and cookie"),
                form(&token2),
                Some(cookie2.clone()),
                vec![same_origin],
            ),
            (
                format!("{action}: token without cookie"),
                form(&token),
                None,
                vec![same_origin],
            ),
            (
                format!("{action}: token with another cookie"),
                form(&token),
                Some(format!("__Host-bridge_csrf={}", "B".repeat(43))),
                vec![same_origin],
            ),
            (
                format!("{action}: token with the cookie twice"),
                form(&token),
                Some(format!("{cookie}; __Host-bridge_csrf={}", "B".repeat(43))),
                vec![same_origin],
            ),
            (
                format!("{action}: token under another key set"),
                form(&foreign_token),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: token with the other kid"),
                form(&wrong_kid),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: truncated token"),
                form(&token[..token.len() - 2]),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: token as challenge-less MAC"),
                form(&kit.keys().csrf_key().token_for("")),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: token given twice"),
                format!("{}&csrf_token=x", form(&token)),
                c.clone(),
                vec![same_origin],
            ),
            (
                format!("{action}: challenge given twice"),
                format!("{}&consent_challenge=c2", form(&token)),
                c.clone(),
                vec![same_origin],
            ),
        ]);
        for origin in [
            "https://evil.example",
            "null",
            "https://auth.example.com.evil.example",
            "http://auth.example.com",
            "https://auth.example.com:8443",
            "https://login.example.com",
            "https://auth.example.com/",
            "HTTPS://AUTH.EXAMPLE.COM",
            "",
        ] {
            cases.push((
                format!("{action}: Origin {origin:?} with a valid token"),
                form(&token),
                c.clone(),
                vec![("origin", origin)],
            ));
        }
        for site in [
            "cross-site",
            "same-site",
            "CROSS-SITE",
            "cross-site, same-origin",
            "unknown",
            "",
        ] {
            cases.push((
                format!("{action}: Sec-Fetch-Site {site:?} with a valid token"),
                form(&token),
                c.clone(),
                vec![("sec-fetch-site", site)],
            ));
            cases.push((
                format!("{action}: Sec-Fetch-Site {site:?} and our Origin"),
                form(&token),
                c.clone(),
                vec![("sec-fetch-site", site), same_origin],
            ));
        }
    }
    for (what, form, cookie, headers) in &cases {
        let response = consent::handle(
            form_post(form, cookie.as_deref(), headers),
            &consent_deps(&kit),
        )
        .await;
        let mut problems = violations(&response);
        if !matches!(response.status().as_u16(), 403 | 400) {
            problems.push(format!("status {}", response.status()));
        }
        if consent_decisions(&kit) != 0 {
            problems.push("Hydra was told a decision".to_owned());
        }
        tally.record(what, problems);
    }
    // Methods other than GET and POST.
    for method in ["PUT", "DELETE", "PATCH"] {
        let mut request = form_post(
            &format!(
                "consent_challenge=c1&csrf_token={}&action=allow",
                encode(&token)
            ),
            Some(&cookie),
            &[same_origin],
        );
        *request.method_mut() = http::Method::from_bytes(method.as_bytes()).expect("method");
        let response = consent::handle(request, &consent_deps(&kit)).await;
        let mut problems = violations(&response);
        if response.status() != 405 || consent_decisions(&kit) != 0 {
            problems.push(format!("status {}", response.status()));
        }
        tally.record(&format!("{method} /consent"), problems);
    }
    // Sanity: the genuine form from the right browser works.
    let genuine = format!(
        "consent_challenge=c1&csrf_token={}&grant_scope=email&action=allow",
        encode(&token)
    );
    let response = consent::handle(
        form_post(
            &genuine,
            Some(&cookie),
            &[same_origin, ("sec-fetch-site", "same-origin")],
        ),
        &consent_deps(&kit),
    )
    .await;
    assert_eq!(response.status(), 303, "genuine consent works");
    tally.finish();
}

#[tokio::test]
async fn forged_forms_never_widen_the_grant() {
    let pool = [
        "openid",
        "offline_access",
        "email",
        "phone",
        "profile",
        "custom:read",
    ];
    let forged_pool = [
        "openid",
        "offline_access",
        "email",
        "phone",
        "profile",
        "custom:read",
        "admin",
        "OPENID",
        "Email",
        "email ",
        " email",
        "email\u{0}",
        "email admin",
        "email+phone",
        "openid,admin",
        "*",
        "",
        "custom",
        "custom:write",
        "profile\u{200b}",
        "offline",
        "phone_number",
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut tally = Tally::new("consent forged scopes");
    let kit = Kit::new();
    for set in 0..16 {
        // A requested subset of the pool (bit mask), always with openid half of the time.
        let mask = (rng.next() as usize % 63) + 1;
        let requested: Vec<&str> = pool
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0 || (*i == 0 && set % 2 == 0))
            .map(|(_, s)| *s)
            .collect();
        let challenge = format!("scopes{set}");
        kit.hydra
            .add_consent(&challenge, third_party_consent(false, &requested));
        let (cookie, token) = consent_screen(&kit, &challenge).await;
        for _ in 0..40 {
            let mut form = format!(
                "consent_challenge={challenge}&csrf_token={}&action=allow",
                encode(&token)
            );
            let count = rng.below(8);
            for _ in 0..count {
                let scope = forged_pool[rng.below(forged_pool.len())];
                let field = [
                    "grant_scope",
                    "grant_scope",
                    "grant_scope",
                    "grant_scope[]",
                    "Grant_Scope",
                    "scope",
                ][rng.below(6)];
                form.push_str(&format!("&{field}={}", encode(scope)));
            }
            if rng.below(3) == 0 {
                form.push_str("&grant_access_token_audience=evil-api&audience=evil-api");
            }
            if rng.below(4) == 0 {
                form.push_str("&remember=true");
            }
            let response = consent::handle(
                form_post(
                    &form,
                    Some(&cookie),
                    &[("origin", "https://auth.example.com")],
                ),
                &consent_deps(&kit),
            )
            .await;
            let mut problems = violations(&response);
            match kit.hydra.accepted_consent(&challenge) {
                Some(accepted) if response.status() == 303 => {
                    let granted: BTreeSet<&str> =
                        accepted.grant_scope.iter().map(String::as_str).collect();
                    let wanted: BTreeSet<&str> = requested.iter().copied().collect();
                    if granted.len() != accepted.grant_scope.len() {
                        problems.push(format!("duplicate scopes {:?}", accepted.grant_scope));
                    }
                    if !granted.is_subset(&wanted) {
                        problems.push(format!("granted {granted:?} beyond requested {wanted:?}"));
                    }
                    if wanted.contains("openid") != granted.contains("openid") {
                        problems.push("openid dropped or added".to_owned());
                    }
                    if accepted.grant_access_token_audience != vec!["api".to_owned()] {
                        problems.push(format!(
                            "audience {:?}",
                            accepted.grant_access_token_audience
                        ));
                    }
                    for claim in accepted.session.id_token.keys() {
                        let scope = match claim.as_str() {
                            "email" | "email_verified" => "email",
                            "phone_number" | "phone_number_verified" => "phone",
                            _ => "profile",
                        };
                        if !granted.contains(scope) {
                            problems.push(format!("claim {claim} without scope {scope}"));
                        }
                    }
                }
                _ => problems.push(format!("status {} without an accept", response.status())),
            }
            tally.record(&form, problems);
        }
    }
    tally.finish();
}

// ------------------------------------------------------------------------------------------
// Injection

const HTML_PAYLOADS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><svg onload=alert(1)>",
    "'><img src=x onerror=alert(1)>",
    "</title><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "\" autofocus onfocus=\"alert(1)",
    "' onmouseover='alert(1)",
    "<!--",
    "<![CDATA[",
    "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">",
    "<base href=\"https://evil.example/\">",
    "<form action=\"https://evil.example\"><button>Continue</button></form>",
    "{{7*7}}{% raw %}",
    "&lt;script&gt;",
    "\u{202e}gnp.exe",
];

const LINK_PAYLOADS: &[&str] = &[
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:image/svg+xml,<svg onload=alert(1)>",
    "vbscript:msgbox(1)",
    "//evil.example/logo.png",
    "https://cdn.example.com/logo.png\" onerror=\"alert(1)",
    "https://cdn.example.com/\"><script>alert(1)</script>",
    "file:///etc/passwd",
];

fn raw_payload_problems(page: &str, payload: &str) -> Vec<String> {
    let dangerous = payload.contains(['<', '>', '"', '\'']);
    if dangerous && page.contains(payload) {
        vec![format!("payload {payload:?} appears unescaped")]
    } else {
        Vec::new()
    }
}

#[tokio::test]
async fn untrusted_texts_are_escaped() {
    let mut tally = Tally::new("HTML injection");
    for payload in HTML_PAYLOADS {
        // Client name, client id (shown when the name is empty) and scope names on the consent
        // screen.
        for (name, id, scope) in [
            (
                Some(payload.to_string()),
                "third".to_owned(),
                "email".to_owned(),
            ),
            (Some(String::new()), payload.to_string(), "email".to_owned()),
            (None, "third".to_owned(), payload.to_string()),
        ] {
            let kit = Kit::new();
            let mut consent = third_party_consent(false, &["openid", &scope]);
            consent.client.client_name = name;
            consent.client.client_id = id;
            kit.hydra.add_consent("inj", consent);
            let response = consent::handle(
                get("/consent?consent_challenge=inj", None),
                &consent_deps(&kit),
            )
            .await;
            let mut problems = violations(&response);
            problems.extend(raw_payload_problems(&body(&response), payload));
            if response.status() != 200 {
                problems.push(format!("status {}", response.status()));
            }
            tally.record(&format!("consent screen with {payload:?}"), problems);
        }
        // Kratos error message and reason, and the id itself.
        let kit = Kit::new();
        kit.kratos.add_error(
            "e-1",
            json!({"error": {"message": payload, "reason": payload, "code": 500}}),
        );
        for uri in [
            "/error?id=e-1".to_owned(),
            format!("/error?id={}", encode(payload)),
        ] {
            let response = error_page::handle(get(&uri, None), &error_deps(&kit)).await;
            let mut problems = violations(&response);
            problems.extend(raw_payload_problems(&body(&response), payload));
            tally.record(&format!("Kratos error page {uri}"), problems);
        }
        // Hydra's error parameters.
        for name in ["error", "error_description", "error_hint"] {
            let uri = format!("/error?{name}={}", encode(payload));
            let response = error_page::handle(get(&uri, None), &error_deps(&kit)).await;
            let mut problems = violations(&response);
            problems.extend(raw_payload_problems(&body(&response), payload));
            tally.record(&format!("Hydra error page {name}"), problems);
        }
    }
    for payload in LINK_PAYLOADS {
        for field in ["logo_uri", "policy_uri", "tos_uri"] {
            let kit = Kit::new();
            let mut consent = third_party_consent(false, &["openid"]);
            match field {
                "logo_uri" => consent.client.logo_uri = Some(payload.to_string()),
                "policy_uri" => consent.client.policy_uri = Some(payload.to_string()),
                _ => consent.client.tos_uri = Some(payload.to_string()),
            }
            kit.hydra.add_consent("inj", consent);
            let response = consent::handle(
                get("/consent?consent_challenge=inj", None),
                &consent_deps(&kit),
            )
            .await;
            let mut problems = violations(&response);
            problems.extend(raw_payload_problems(&body(&response), payload));
            tally.record(&format!("consent {field} {payload:?}"), problems);
        }
    }
    tally.finish();
}

/// What an attacker puts in a parameter to try to split a header.
const HEADER_PAYLOADS: &[&str] = &[
    "%0d%0aSet-Cookie:%20evil=1",
    "%0d%0aLocation:%20https://evil.example",
    "%0aSet-Cookie:evil=1",
    "%0dSet-Cookie:evil=1",
    "%0d%0a%0d%0a%3Chtml%3Eevil%3C/html%3E",
    "%E5%98%8A%E5%98%8DSet-Cookie:evil=1",
    "%C4%8D%C4%8ASet-Cookie:evil=1",
    "%E2%80%A8Set-Cookie:evil=1",
    "%C2%85Set-Cookie:evil=1",
    "%00Set-Cookie:evil=1",
    "%250d%250aSet-Cookie:evil=1",
    "%5Cr%5CnSet-Cookie:evil=1",
];

#[tokio::test]
async fn no_header_injection_through_any_parameter() {
    let mut tally = Tally::new("header injection");
    let kit = kit_with_session();
    let (token, binding) = issue(&kit, "hdr", "https://oauth.example.com/oauth2/auth").await;
    kit.hydra.add_login(
        "c1",
        login_request(false, "", "https://oauth.example.com/oauth2/auth"),
    );
    kit.hydra
        .add_consent("c1", third_party_consent(false, &["openid", "email"]));
    kit.hydra.add_logout(
        "c1",
        LogoutRequest {
            subject: "ident-1".to_owned(),
            ..LogoutRequest::default()
        },
    );
    let (csrf_cookie, csrf_token) = consent_screen(&kit, "c1").await;
    let token_param = encode(&token);
    let csrf_param = encode(&csrf_token);
    for payload in HEADER_PAYLOADS {
        let p = payload;
        let mut requests: Vec<(String, Request, &str)> = vec![
            (
                format!("login_challenge=c1{p}"),
                get(&format!("/login?login_challenge=c1{p}"), None),
                "login",
            ),
            (
                format!("login extra param {p}"),
                get(&format!("/login?login_challenge=c1&x={p}"), None),
                "login",
            ),
            (
                format!("login cookie {p}"),
                get(
                    "/login?login_challenge=c1",
                    Some(&format!(
                        "__Host-bridge_binding={p}; ory_kratos_session={p}"
                    )),
                ),
                "login",
            ),
            (
                format!("t={p}"),
                get(
                    &format!("/login/return?t={p}"),
                    Some(&return_cookies(&binding)),
                ),
                "return",
            ),
            (
                format!("t=<token>{p}"),
                get(
                    &format!("/login/return?t={token_param}{p}"),
                    Some(&return_cookies(&binding)),
                ),
                "return",
            ),
            (
                format!("return extra param {p}"),
                get(
                    &format!("/login/return?t={token_param}&x={p}"),
                    Some(&format!(
                        "__Host-bridge_binding={binding}; ory_kratos_session=unknown{p}"
                    )),
                ),
                "return",
            ),
            (
                format!("consent_challenge=c1{p}"),
                get(&format!("/consent?consent_challenge=c1{p}"), None),
                "consent",
            ),
            (
                format!("consent cookie {p}"),
                get(
                    "/consent?consent_challenge=c1",
                    Some(&format!("__Host-bridge_csrf={p}")),
                ),
                "consent",
            ),
            (
                format!("logout_challenge=c1{p}"),
                get(&format!("/logout?logout_challenge=c1{p}"), None),
                "logout",
            ),
            (
                format!("error={p}"),
                get(
                    &format!("/error?error={p}&error_description={p}&error_hint={p}"),
                    None,
                ),
                "error",
            ),
            (
                format!("id={p}"),
                get(&format!("/error?id={p}"), None),
                "error",
            ),
        ];
        for field in [
            "consent_challenge",
            "csrf_token",
            "grant_scope",
            "action",
            "remember",
        ] {
            let mut form = vec![
                ("consent_challenge", "c1".to_owned()),
                ("csrf_token", csrf_param.clone()),
                ("grant_scope", "email".to_owned()),
                ("action", "allow".to_owned()),
                ("remember", "true".to_owned()),
            ];
            for (name, value) in &mut form {
                if *name == field {
                    value.push_str(p);
                }
            }
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            requests.push((
                format!("consent form {field}{p}"),
                form_post(
                    &body,
                    Some(&csrf_cookie),
                    &[("origin", "https://auth.example.com")],
                ),
                "consent",
            ));
        }
        for (what, request, handler) in requests {
            let response = match handler {
                "login" => login::handle(request, &login_deps(&kit)).await,
                "return" => login_return::handle(request, &return_deps(&kit)).await,
                "consent" => consent::handle(request, &consent_deps(&kit)).await,
                "logout" => logout::handle(request, &logout_deps(&kit)).await,
                _ => error_page::handle(request, &error_deps(&kit)).await,
            };
            let mut problems = violations(&response);
            if response.headers().get_all("set-cookie").iter().count() > 1 {
                problems.push("more than one Set-Cookie".to_owned());
            }
            let location = location(&response).to_ascii_lowercase();
            if location.contains("set-cookie")
                && !location.contains("set-cookie%3a")
                && !location.contains("set-cookie:")
            {
                problems.push(format!("suspicious Location {location}"));
            }
            tally.record(&what, problems);
        }
    }
    tally.finish();
}

// ------------------------------------------------------------------------------------------
// Oversized input

#[tokio::test]
async fn oversized_input_is_refused_quickly() {
    use crate::request::{MAX_CHALLENGE_BYTES, MAX_COOKIE_BYTES, MAX_FORM_BYTES, MAX_QUERY_BYTES};
    use crate::token::MAX_TOKEN_CHARS;
    let kit = kit_with_session();
    let (token, binding) = issue(&kit, "big", "").await;
    let (csrf_cookie, csrf_token) = {
        kit.hydra
            .add_consent("c1", third_party_consent(false, &["openid", "email"]));
        consent_screen(&kit, "c1").await
    };
    let mut tally = Tally::new("oversized input");
    let mut slowest = Duration::ZERO;
    let a = |n: usize| "a".repeat(n);
    let huge_cookie = format!(
        "__Host-bridge_binding={binding}; ory_kratos_session=s1; pad={}",
        a(MAX_COOKIE_BYTES)
    );
    let many_cookies = (0..3000)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut cases: Vec<(String, Request, &str, &[u16])> = vec![
        (
            "login_challenge over the limit".into(),
            get(
                &format!("/login?login_challenge={}", a(MAX_CHALLENGE_BYTES + 1)),
                None,
            ),
            "login",
            &[400],
        ),
        (
            "query over the limit".into(),
            get(
                &format!("/login?login_challenge=c&x={}", a(MAX_QUERY_BYTES)),
                None,
            ),
            "login",
            &[400],
        ),
        (
            "query of 900 repeated parameters".into(),
            get(
                &format!("/login?{}", "login_challenge=c&".repeat(900)),
                None,
            ),
            "login",
            &[400],
        ),
        (
            "token over the limit".into(),
            get(
                &format!("/login/return?t={}", a(MAX_TOKEN_CHARS + 1)),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "token at the limit, random".into(),
            get(
                &format!("/login/return?t={}", a(MAX_TOKEN_CHARS)),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "token with a huge header".into(),
            get(
                &format!(
                    "/login/return?t={}.{}.x",
                    URL_SAFE_NO_PAD
                        .encode(format!("{{\"alg\":\"HS256\",\"kid\":\"{}\"}}", a(5000))),
                    "e30"
                ),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "token of deeply nested JSON".into(),
            get(
                &format!(
                    "/login/return?t={}.e30.x",
                    URL_SAFE_NO_PAD.encode(format!("{}{}", "[".repeat(3000), "]".repeat(3000)))
                ),
                Some(&return_cookies(&binding)),
            ),
            "return",
            &[400],
        ),
        (
            "cookie header over the limit".into(),
            get(&return_link(&token), Some(&huge_cookie)),
            "return",
            &[403],
        ),
        (
            "3000 cookies".into(),
            get(&return_link(&token), Some(&many_cookies)),
            "return",
            &[403],
        ),
        (
            "consent_challenge over the limit".into(),
            get(
                &format!("/consent?consent_challenge={}", a(MAX_CHALLENGE_BYTES + 1)),
                None,
            ),
            "consent",
            &[400],
        ),
        (
            "logout_challenge over the limit".into(),
            get(
                &format!("/logout?logout_challenge={}", a(MAX_CHALLENGE_BYTES + 1)),
                None,
            ),
            "logout",
            &[400],
        ),
        (
            "error description over the limit".into(),
            get(
                &format!("/error?error_description={}", a(MAX_QUERY_BYTES)),
                None,
            ),
            "error",
            &[400],
        ),
        (
            "Kratos error id over the limit".into(),
            get(&format!("/error?id={}", a(129)), None),
            "error",
            &[400],
        ),
        (
            "form over the limit".into(),
            form_post(
                &format!(
                    "consent_challenge=c1&csrf_token={}&x={}",
                    encode(&csrf_token),
                    a(MAX_FORM_BYTES)
                ),
                Some(&csrf_cookie),
                &[],
            ),
            "consent",
            &[413],
        ),
        (
            "binary form over the limit".into(),
            {
                let mut r = form_post("", Some(&csrf_cookie), &[]);
                *r.body_mut() = Body::Binary(vec![b'a'; 4 * MAX_FORM_BYTES]);
                r
            },
            "consent",
            &[413],
        ),
        (
            "csrf_token over the limit".into(),
            form_post(
                &format!("consent_challenge=c1&csrf_token={}&action=allow", a(257)),
                Some(&csrf_cookie),
                &[],
            ),
            "consent",
            &[400],
        ),
        (
            "form of 8000 grant_scope fields, no token".into(),
            form_post(
                &format!(
                    "consent_challenge=c1&action=allow{}",
                    "&grant_scope=x".repeat(2000)
                ),
                Some(&csrf_cookie),
                &[],
            ),
            "consent",
            &[403],
        ),
        (
            "form that is not UTF-8".into(),
            {
                let mut r = form_post("", Some(&csrf_cookie), &[]);
                *r.body_mut() = Body::Binary(vec![0xff, 0xfe, b'=', 0x80]);
                r
            },
            "consent",
            &[400],
        ),
        (
            "form with another content type".into(),
            {
                let mut r = form_post(
                    &format!(
                        "consent_challenge=c1&csrf_token={}&action=allow",
                        encode(&csrf_token)
                    ),
                    Some(&csrf_cookie),
                    &[],
                );
                r.headers_mut()
                    .insert("content-type", http::HeaderValue::from_static("text/plain"));
                r
            },
            "consent",
            &[400],
        ),
    ];
    // A genuine form that carries 2000 grant_scope fields stays within the limit and must still
    // be answered quickly with a grant inside the request.
    let padded = format!(
        "consent_challenge=c1&csrf_token={}&action=allow{}",
        encode(&csrf_token),
        "&grant_scope=email".repeat(1500)
    );
    cases.push((
        "genuine form with 1500 grant_scope fields".into(),
        form_post(&padded, Some(&csrf_cookie), &[]),
        "consent",
        &[303],
    ));
    for (what, request, handler, statuses) in cases {
        let started = Instant::now();
        let response = match handler {
            "login" => login::handle(request, &login_deps(&kit)).await,
            "return" => login_return::handle(request, &return_deps(&kit)).await,
            "consent" => consent::handle(request, &consent_deps(&kit)).await,
            "logout" => logout::handle(request, &logout_deps(&kit)).await,
            _ => error_page::handle(request, &error_deps(&kit)).await,
        };
        let took = started.elapsed();
        slowest = slowest.max(took);
        let mut problems = violations(&response);
        if !statuses.contains(&response.status().as_u16()) {
            problems.push(format!(
                "status {} (expected {statuses:?})",
                response.status()
            ));
        }
        if took > Duration::from_millis(500) {
            problems.push(format!("took {took:?}"));
        }
        if kit.hydra.accept_count() != 0 {
            problems.push("Hydra accept_login was called".to_owned());
        }
        if kit
            .kratos
            .last_cookie()
            .is_some_and(|c| c.len() > MAX_COOKIE_BYTES)
        {
            problems.push("an oversized cookie reached Kratos".to_owned());
        }
        tally.record(&what, problems);
    }
    report(&format!(
        "attacks: oversized input slowest answer {} ms",
        slowest.as_millis()
    ));
    tally.finish();
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

#[tokio::test]
async fn retry_links_stay_on_our_site() {
    // The "Try again" link of a 503/409 page repeats the request's own path and query; a path an
    // attacker shapes (API Gateway hands over `rawPath` as sent) must not turn it into a link to
    // another site.
    let mut tally = Tally::new("retry links");
    let kit = kit_with_session();
    kit.hydra.fail_challenge("down", UpstreamKind::Transient);
    kit.kratos.fail_whoami(true);
    let (token, binding) = issue(&kit, "retry", "").await;
    for path in [
        "//evil.example",
        "//evil.example/login",
        "///evil.example/login",
        "/%2fevil.example/login",
        "/%5cevil.example/login",
        "/login",
    ] {
        for (handler, query) in [
            ("login", "login_challenge=down".to_owned()),
            ("return", format!("t={}", encode(&token))),
            ("consent", "consent_challenge=down".to_owned()),
            ("logout", "logout_challenge=down".to_owned()),
        ] {
            let uri = format!("{path}?{query}");
            let Ok(request) = http::Request::builder()
                .uri(uri.as_str())
                .header("cookie", return_cookies(&binding))
                .body(Body::Empty)
            else {
                continue;
            };
            let request = Request::from(request);
            let response = match handler {
                "login" => login::handle(request, &login_deps(&kit)).await,
                "return" => login_return::handle(request, &return_deps(&kit)).await,
                "consent" => consent::handle(request, &consent_deps(&kit)).await,
                _ => logout::handle(request, &logout_deps(&kit)).await,
            };
            let mut problems = violations(&response);
            if response.status() != 503 {
                problems.push(format!("status {}", response.status()));
            }
            tally.record(&format!("{handler} at {uri}"), problems);
        }
    }
    tally.finish();
}
