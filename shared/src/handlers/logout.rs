//! Logout (Hydra `urls.logout`): `GET /logout?logout_challenge=...`.
//!
//! A user who logs out of an application expects to be logged out, not merely out of Hydra while
//! Kratos keeps a session that signs them straight back in. So the Kratos session in this browser
//! ends too (admin API), before Hydra's logout is accepted; if Kratos cannot be reached, nothing
//! is accepted and the same link can be retried.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use super::{hydra_redirect, respond, FailurePolicy};
use crate::config::Config;
use crate::hydra::HydraAdmin;
use crate::kratos::{kratos_cookie_header, KratosApi};
use crate::logging::flow_id;
use crate::request;
use crate::response::{see_other, Failure};
use crate::upstream::UpstreamError;

/// What the logout function needs, built once at cold start.
pub struct LogoutDeps {
    /// Validated settings.
    pub config: Config,
    /// Hydra's admin API.
    pub hydra: Arc<dyn HydraAdmin>,
    /// Kratos, to end the browser's session.
    pub kratos: Arc<dyn KratosApi>,
}

/// Handles `GET /logout`.
pub async fn handle(request: Request, deps: &LogoutDeps) -> Response<Body> {
    let outcome = run(&request, deps).await;
    respond(&request, outcome)
}

async fn run(request: &Request, deps: &LogoutDeps) -> Result<Response<Body>, Failure> {
    super::require_method(request, &[http::Method::GET])?;
    let params = request::query(request)?;
    let challenge = request::challenge(&params, "logout_challenge")?;
    let flow = flow_id(&challenge);
    let failure = |e: UpstreamError| logout_failure(request).failure(Some(&flow), e);

    let logout = deps
        .hydra
        .logout_request(&challenge)
        .await
        .map_err(failure)?;

    let cookies = kratos_cookie_header(
        &request::cookie_header(request),
        &deps.config.kratos_session_cookie,
    );
    if let Some(session) = deps.kratos.whoami(&cookies).await.map_err(failure)? {
        // Only the session of the user being logged out: a browser shared by two people keeps
        // the other person's session.
        if logout.subject.is_empty() || session.identity.id == logout.subject {
            deps.kratos
                .revoke_session(&session.id)
                .await
                .map_err(failure)?;
            tracing::info!(flow = %flow, event = "kratos_session_revoked", "Kratos session ended");
        } else {
            tracing::warn!(flow = %flow, event = "kratos_session_other_subject", "browser's Kratos session belongs to someone else; kept");
        }
    }

    let answer = deps
        .hydra
        .accept_logout(&challenge)
        .await
        .map_err(failure)?;
    tracing::info!(flow = %flow, event = "logout_accepted", rp_initiated = logout.rp_initiated, "logout accepted");
    Ok(see_other(&hydra_redirect(&deps.config, &answer)?, &[]))
}

/// What a Hydra or Kratos failure during logout becomes; nothing was accepted, so the same link
/// can be retried.
fn logout_failure(request: &Request) -> FailurePolicy {
    FailurePolicy::challenge(
        "logout_failed",
        "logout not completed",
        Failure::BadRequest {
            title: "Unknown logout request",
            message: "This logout request is not known. You may already be logged out.",
            restart: None,
        },
        Some(request::same_link(request)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hydra::LogoutRequest;
    use crate::testkit::*;

    fn deps(kit: &Kit) -> LogoutDeps {
        kit.logout_deps()
    }

    fn logout(subject: &str) -> LogoutRequest {
        LogoutRequest {
            subject: subject.to_owned(),
            sid: "hydra-sid".to_owned(),
            rp_initiated: true,
        }
    }

    #[tokio::test]
    async fn ends_both_sessions() {
        let kit = Kit::new();
        kit.hydra.add_logout("l1", logout("ident-1"));
        kit.kratos.add_session(
            "ory_kratos_session=s1",
            session("sess-1", "ident-1", &["oidc"]),
        );
        let response = handle(
            get("/logout?logout_challenge=l1", Some("ory_kratos_session=s1")),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        assert_eq!(location(&response), HYDRA_NEXT);
        assert_eq!(kit.kratos.revoked(), vec!["sess-1"]);
        assert_eq!(kit.hydra.accepted_logouts(), vec!["l1"]);
    }

    #[tokio::test]
    async fn other_subjects_session_is_kept() {
        let kit = Kit::new();
        kit.hydra.add_logout("l1", logout("ident-9"));
        kit.kratos.add_session(
            "ory_kratos_session=s1",
            session("sess-1", "ident-1", &["oidc"]),
        );
        let response = handle(
            get("/logout?logout_challenge=l1", Some("ory_kratos_session=s1")),
            &deps(&kit),
        )
        .await;
        assert_eq!(response.status(), 303);
        assert!(kit.kratos.revoked().is_empty());
    }

    #[tokio::test]
    async fn kratos_down_accepts_nothing_and_can_be_retried() {
        let kit = Kit::new();
        kit.hydra.add_logout("l1", logout("ident-1"));
        kit.kratos.add_session(
            "ory_kratos_session=s1",
            session("sess-1", "ident-1", &["oidc"]),
        );
        kit.kratos.fail_revoke(true);
        let failed = handle(
            get("/logout?logout_challenge=l1", Some("ory_kratos_session=s1")),
            &deps(&kit),
        )
        .await;
        assert_eq!(failed.status(), 503);
        assert!(kit.hydra.accepted_logouts().is_empty());
        kit.kratos.fail_revoke(false);
        let retried = handle(
            get("/logout?logout_challenge=l1", Some("ory_kratos_session=s1")),
            &deps(&kit),
        )
        .await;
        assert_eq!(retried.status(), 303);
    }

    #[tokio::test]
    async fn bad_and_unknown_challenges() {
        let kit = Kit::new();
        assert_eq!(
            handle(get("/logout", None), &deps(&kit)).await.status(),
            400
        );
        assert_eq!(
            handle(get("/logout?logout_challenge=zz", None), &deps(&kit))
                .await
                .status(),
            400
        );
    }
}
