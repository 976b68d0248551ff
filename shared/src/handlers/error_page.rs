//! Errors (Hydra `urls.error`, Kratos `selfservice.flows.error.ui_url`): `GET /error`.
//!
//! Hydra sends `?error=&error_description=&error_hint=`; Kratos sends `?id=` of an error it
//! keeps. Both become one friendly page. Everything shown is escaped by the template, and the
//! texts are bounded, so the page can never be turned into a phishing or script vehicle.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use serde_json::Value;

use super::{respond, FailurePolicy};
use crate::kratos::KratosApi;
use crate::request;
use crate::response::{message_page, Failure};

/// What the error function needs, built once at cold start.
pub struct ErrorDeps {
    /// Kratos, to look errors up by id.
    pub kratos: Arc<dyn KratosApi>,
}

/// Longest text shown from a query parameter or a Kratos error.
const MAX_TEXT: usize = 500;

/// Handles `GET /error`.
pub async fn handle(request: Request, deps: &ErrorDeps) -> Response<Body> {
    let outcome = run(&request, deps).await;
    respond(&request, outcome)
}

async fn run(request: &Request, deps: &ErrorDeps) -> Result<Response<Body>, Failure> {
    super::require_method(request, &[http::Method::GET])?;
    let params = request::query(request)?;

    if let Some(id) = params.single("id", 128)? {
        let error = if id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            deps.kratos.flow_error(id).await.map_err(|e| {
                FailurePolicy::always(
                    "kratos_error_lookup_failed",
                    "cannot read the Kratos error",
                    Failure::Unavailable {
                        retry: Some(request::same_link(request)),
                    },
                )
                .failure(None, e)
            })?
        } else {
            None
        };
        let (message, reason) = error.as_ref().map(kratos_texts).unwrap_or_default();
        tracing::info!(
            event = "error_page_kratos",
            known = error.is_some(),
            "showing a Kratos error"
        );
        return Ok(message_page(
            http::StatusCode::OK,
            "Sign-in problem",
            message.as_deref().unwrap_or("Something went wrong while signing you in. Please start again from the application."),
            reason.as_deref(),
            None,
            Some(id),
        ));
    }

    let error = bounded(params.single("error", 128)?);
    let description = bounded(params.single("error_description", MAX_TEXT)?);
    let hint = bounded(params.single("error_hint", MAX_TEXT)?);
    tracing::info!(
        event = "error_page_hydra",
        error = error.as_deref().unwrap_or(""),
        "showing a Hydra error"
    );
    let message = description.unwrap_or_else(|| {
        "Something went wrong while signing you in. Please start again from the application."
            .to_owned()
    });
    Ok(message_page(
        http::StatusCode::OK,
        "Sign-in problem",
        &message,
        hint.as_deref(),
        None,
        error.as_deref(),
    ))
}

fn bounded(value: Option<&str>) -> Option<String> {
    value
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(MAX_TEXT)
                .collect::<String>()
        })
        .filter(|v| !v.trim().is_empty())
}

/// The message and reason of a Kratos error object (`{"error": {"message", "reason"}}`).
fn kratos_texts(error: &Value) -> (Option<String>, Option<String>) {
    let inner = error.get("error").unwrap_or(error);
    let text = |key: &str| bounded(inner.get(key).and_then(Value::as_str));
    (text("message"), text("reason"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn deps(kit: &Kit) -> ErrorDeps {
        kit.error_deps()
    }

    #[tokio::test]
    async fn hydra_error_is_shown_escaped() {
        let kit = Kit::new();
        let response = handle(
            get("/error?error=invalid_request&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&error_hint=hint", None),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_secure_html(&response);
        let page = body(&response);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("invalid_request"));
    }

    #[tokio::test]
    async fn kratos_error_by_id() {
        let kit = Kit::new();
        kit.kratos.add_error(
            "e-1",
            serde_json::json!({"id": "e-1", "error": {"message": "<img src=x onerror=alert(1)>", "reason": "because"}}),
        );
        let response = handle(get("/error?id=e-1", None), &deps(&kit)).await;
        assert_eq!(response.status(), 200);
        let page = body(&response);
        assert!(!page.contains("<img src=x"));
        assert!(page.contains("because"));
        let unknown = handle(get("/error?id=%22%3E%3Cx", None), &deps(&kit)).await;
        assert_eq!(unknown.status(), 200);
        assert!(!body(&unknown).contains("\"><x"));
    }

    #[tokio::test]
    async fn bare_error_page() {
        let kit = Kit::new();
        let response = handle(get("/error", None), &deps(&kit)).await;
        assert_eq!(response.status(), 200);
        assert_secure_html(&response);
    }
}
