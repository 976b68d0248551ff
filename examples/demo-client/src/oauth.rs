//! The OAuth2/OIDC pieces of a public client: PKCE, the authorization URL, the code exchange at
//! Hydra's token endpoint and reading (not verifying) the ID token.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

/// Random, URL-safe text of `bytes` bytes of entropy. Used for `state`, `nonce`, the PKCE
/// verifier and the browser cookie, all of which must be unguessable.
pub fn random_token(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// PKCE S256: `BASE64URL(SHA256(ascii(verifier)))` (RFC 7636, section 4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What goes into one authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    pub prompt: Option<&'a str>,
    pub max_age: Option<u64>,
    /// OIDC `acr_values`, e.g. `aal2` to ask the bridge for a second factor.
    pub acr_values: Option<&'a str>,
}

/// `<hydra>/oauth2/auth?...` for the authorization code flow with PKCE.
pub fn authorization_url(hydra: &Url, request: &AuthorizationRequest<'_>) -> Url {
    let mut url = endpoint(hydra, "/oauth2/auth");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", request.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", request.scope)
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(prompt) = request.prompt {
            q.append_pair("prompt", prompt);
        }
        if let Some(max_age) = request.max_age {
            q.append_pair("max_age", &max_age.to_string());
        }
        if let Some(acr_values) = request.acr_values {
            q.append_pair("acr_values", acr_values);
        }
    }
    url
}

/// `<hydra><path>`, keeping any path prefix of the configured URL.
pub fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Why a call to Hydra's token endpoint (code exchange, device polling) or device authorization
/// endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("could not reach Hydra: {0}")]
    Transport(#[from] reqwest::Error),
    /// Hydra's RFC 6749 error answer (`invalid_grant`, `access_denied`, `expired_token`, ...).
    #[error("Hydra refused the request ({status}): {error}: {description}")]
    Rejected {
        status: u16,
        error: String,
        description: String,
    },
    #[error("unreadable token response: {0}")]
    Decode(#[from] serde_json::Error),
}

impl TokenError {
    /// The RFC 6749 `error` code of a refusal (`None` for transport or decoding failures), so
    /// callers can tell `access_denied` from `expired_token` without matching on the variant.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Rejected { error, .. } => Some(error),
            Self::Transport(_) | Self::Decode(_) => None,
        }
    }
}

/// Token endpoint answer (RFC 6749 section 5.1 plus OIDC's `id_token`).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub token_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The client side of Hydra's public API.
#[derive(Debug, Clone)]
pub struct Hydra {
    pub public: Url,
    http: reqwest::Client,
}

impl Hydra {
    /// Every call is a single fast round trip; a timeout keeps a stuck Hydra from holding the
    /// browser's callback request open, or a device poll from running past its `max_wait`.
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A client for Hydra's public API at `public` (any path prefix is kept). Redirects are not
    /// followed: every endpoint used here answers directly, and a redirect would mean a wrong URL.
    pub fn new(public: Url) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Self::TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { public, http })
    }

    /// Redeems an authorization code. A public client authenticates with nothing but its
    /// `client_id` and proves possession of the PKCE verifier (`token_endpoint_auth_method:
    /// none`).
    pub async fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenResponse, TokenError> {
        self.post_form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", client_id),
                ("code_verifier", code_verifier),
            ],
        )
        .await
    }

    /// One form POST to a Hydra endpoint that answers JSON on 200 and an RFC 6749 section 5.2
    /// error object otherwise. The token endpoint (every grant) and the device authorization
    /// endpoint share this shape, so they share this code: one place decides what a refusal is.
    pub(crate) async fn post_form<T: DeserializeOwned>(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Result<T, TokenError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .http
            .post(endpoint(&self.public, path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        if status != 200 {
            let parsed: ErrorResponse = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(TokenError::Rejected {
                status,
                error: parsed.error,
                description: parsed.error_description,
            });
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// Why an ID token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a three-part JWS")]
    Shape,
    #[error("the ID token payload is not base64url: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("the ID token payload is not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads the claims of a compact JWS **without checking its signature**. Acceptable only
/// because this demo got the token straight from Hydra over a back channel it chose itself;
/// a real relying party verifies the signature against Hydra's JWKS.
pub fn id_token_claims(token: &str) -> Result<Map<String, Value>, IdTokenError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenError::Shape);
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// `aud` may be one string or an array of strings (OIDC Core, section 2).
pub fn audience_contains(claims: &Map<String, Value>, client_id: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_long_and_distinct() -> Result<(), getrandom::Error> {
        let a = random_token(32)?;
        let b = random_token(32)?;
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn id_token_payload_is_read() -> Result<(), Box<dyn std::error::Error>> {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"u1","aud":["c1"],"nonce":"n"}"#);
        let claims = id_token_claims(&format!("e30.{payload}.sig"))?;
        assert_eq!(claims.get("sub"), Some(&Value::String("u1".into())));
        assert!(audience_contains(&claims, "c1"));
        assert!(!audience_contains(&claims, "c2"));
        assert!(id_token_claims("a.b").is_err());
        assert!(id_token_claims("a.!!!.c").is_err());
        Ok(())
    }
}
