//! The device grant against a fake Hydra: a small axum server on an ephemeral port that answers
//! the device authorization endpoint with one canned answer and the token endpoint with a queue
//! of canned answers, and records what it was sent and when.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use url::Url;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

type Form = HashMap<String, String>;

#[derive(Default)]
struct FakeHydraState {
    /// Answer of `/oauth2/device/auth`.
    device_answer: Option<(u16, Value)>,
    /// Answers of `/oauth2/token`, in order; `authorization_pending` once they run out.
    token_answers: VecDeque<(u16, Value)>,
    device_requests: Vec<Form>,
    /// Form and arrival time of every token request.
    token_requests: Vec<(Form, Instant)>,
}

#[derive(Clone, Default)]
struct FakeHydra(Arc<Mutex<FakeHydraState>>);

impl FakeHydra {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeHydraState> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn parse_form(body: &str) -> Form {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn json_answer((status, body): (u16, Value)) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn fake_device_auth(State(fake): State<FakeHydra>, body: String) -> Response {
    let mut state = fake.state();
    state.device_requests.push(parse_form(&body));
    json_answer(
        state
            .device_answer
            .clone()
            .unwrap_or((500, json!({"error": "server_error"}))),
    )
}

async fn fake_token(State(fake): State<FakeHydra>, body: String) -> Response {
    let mut state = fake.state();
    let answer = state
        .token_answers
        .pop_front()
        .unwrap_or_else(|| refusal("authorization_pending"));
    state
        .token_requests
        .push((parse_form(&body), Instant::now()));
    json_answer(answer)
}

async fn fake_hydra() -> Result<(Hydra, FakeHydra), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = Url::parse(&format!("http://{}", listener.local_addr()?))?;
    let fake = FakeHydra::default();
    let app = Router::new()
        .route("/oauth2/device/auth", post(fake_device_auth))
        .route("/oauth2/token", post(fake_token))
        .with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((Hydra::new(base)?, fake))
}

fn refusal(error: &str) -> (u16, Value) {
    (
        400,
        json!({"error": error, "error_description": format!("canned {error}")}),
    )
}

fn granted() -> (u16, Value) {
    (
        200,
        json!({
            "access_token": "at",
            "id_token": "e30.eyJzdWIiOiJ1MSJ9.sig",
            "refresh_token": "rt",
            "scope": "openid offline_access",
            "expires_in": 3600,
            "token_type": "bearer"
        }),
    )
}

/// Milliseconds instead of seconds, so the loop's logic runs in a fraction of a second.
const FAST: PollTiming = PollTiming {
    interval: Duration::from_millis(20),
    slow_down_step: Duration::from_millis(300),
};

#[tokio::test]
async fn start_sends_client_and_scope_and_reads_the_answer() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().device_answer = Some((
        200,
        json!({
            "device_code": "dc-secret",
            "user_code": "BCDFGHJK",
            "verification_uri": "http://127.0.0.1:4444/oauth2/device/verify",
            "verification_uri_complete": "http://127.0.0.1:4444/oauth2/device/verify?user_code=BCDFGHJK",
            "expires_in": 600,
            "interval": 2
        }),
    ));
    let authorization = hydra
        .start_device_authorization("demo-device", "openid email")
        .await?;
    assert_eq!(authorization.device_code, "dc-secret");
    assert_eq!(authorization.user_code, "BCDFGHJK");
    assert_eq!(
        authorization.verification_uri,
        "http://127.0.0.1:4444/oauth2/device/verify"
    );
    assert_eq!(
        authorization.verification_uri_complete.as_deref(),
        Some("http://127.0.0.1:4444/oauth2/device/verify?user_code=BCDFGHJK")
    );
    assert_eq!(authorization.expires_in, 600);
    assert_eq!(authorization.interval, 2);

    let state = fake.state();
    let [form] = state.device_requests.as_slice() else {
        return Err(format!("one device request expected: {:?}", state.device_requests).into());
    };
    assert_eq!(
        form.get("client_id").map(String::as_str),
        Some("demo-device")
    );
    assert_eq!(form.get("scope").map(String::as_str), Some("openid email"));
    Ok(())
}

#[tokio::test]
async fn start_defaults_the_interval_and_the_complete_uri() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().device_answer = Some((
        200,
        json!({
            "device_code": "dc",
            "user_code": "BCDFGHJK",
            "verification_uri": "http://h/verify",
            "expires_in": 600
        }),
    ));
    let authorization = hydra.start_device_authorization("c", "openid").await?;
    assert_eq!(authorization.interval, 5, "RFC 8628 section 3.2 default");
    assert_eq!(authorization.verification_uri_complete, None);
    Ok(())
}

#[tokio::test]
async fn start_refusal_keeps_the_error_code() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().device_answer = Some(refusal("invalid_client"));
    match hydra.start_device_authorization("nobody", "openid").await {
        Err(error @ TokenError::Rejected { status: 400, .. }) => {
            assert_eq!(error.error_code(), Some("invalid_client"));
            Ok(())
        }
        other => Err(format!("expected a refusal, got {other:?}").into()),
    }
}

#[tokio::test]
async fn one_poll_maps_each_answer() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().token_answers = VecDeque::from([
        refusal("authorization_pending"),
        refusal("slow_down"),
        refusal("expired_token"),
        granted(),
    ]);
    assert!(matches!(
        hydra.poll_device_token("demo-device", "dc").await?,
        DevicePoll::Pending
    ));
    assert!(matches!(
        hydra.poll_device_token("demo-device", "dc").await?,
        DevicePoll::SlowDown
    ));
    let expired = hydra.poll_device_token("demo-device", "dc").await;
    assert!(
        matches!(&expired, Err(e) if e.error_code() == Some("expired_token")),
        "{expired:?}"
    );
    match hydra.poll_device_token("demo-device", "dc").await? {
        DevicePoll::Granted(tokens) => assert_eq!(tokens.refresh_token.as_deref(), Some("rt")),
        other => return Err(format!("expected tokens, got {other:?}").into()),
    }

    let state = fake.state();
    let (form, _) = state.token_requests.first().ok_or("no token request")?;
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some(DEVICE_CODE_GRANT_TYPE)
    );
    assert_eq!(form.get("device_code").map(String::as_str), Some("dc"));
    assert_eq!(
        form.get("client_id").map(String::as_str),
        Some("demo-device")
    );
    Ok(())
}

#[tokio::test]
async fn pending_then_slow_down_then_granted() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().token_answers = VecDeque::from([
        refusal("authorization_pending"),
        refusal("slow_down"),
        refusal("authorization_pending"),
        granted(),
    ]);
    let tokens = hydra
        .poll_until_decided("demo-device", "dc", FAST, Duration::from_secs(10))
        .await?;
    assert_eq!(tokens.scope.as_deref(), Some("openid offline_access"));
    assert_eq!(tokens.id_token.as_deref(), Some("e30.eyJzdWIiOiJ1MSJ9.sig"));

    let state = fake.state();
    let times: Vec<Instant> = state.token_requests.iter().map(|(_, at)| *at).collect();
    assert_eq!(times.len(), 4, "stops polling once granted");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Before slow_down: the interval. After it, for every later poll: interval + step.
    let slowed = FAST.interval + FAST.slow_down_step;
    assert!(gaps[0] < slowed, "{gaps:?}");
    assert!(gaps[1] >= slowed, "{gaps:?}");
    assert!(gaps[2] >= slowed, "slow_down lasts: {gaps:?}");
    Ok(())
}

#[tokio::test]
async fn access_denied_ends_the_wait_with_the_refusal() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().token_answers =
        VecDeque::from([refusal("authorization_pending"), refusal("access_denied")]);
    let outcome = hydra
        .poll_until_decided("demo-device", "dc", FAST, Duration::from_secs(10))
        .await;
    match outcome {
        Err(DeviceError::Token(error)) => assert_eq!(error.error_code(), Some("access_denied")),
        other => return Err(format!("expected access_denied, got {other:?}").into()),
    }
    assert_eq!(
        fake.state().token_requests.len(),
        2,
        "no poll after a refusal"
    );
    Ok(())
}

#[tokio::test]
async fn expired_token_ends_the_wait_with_the_refusal() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    fake.state().token_answers = VecDeque::from([refusal("expired_token")]);
    let outcome = hydra
        .poll_until_decided("demo-device", "dc", FAST, Duration::from_secs(10))
        .await;
    assert!(
        matches!(&outcome, Err(DeviceError::Token(e)) if e.error_code() == Some("expired_token")),
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn pending_forever_times_out() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    let started = Instant::now();
    let outcome = hydra
        .poll_until_decided("demo-device", "dc", FAST, Duration::from_millis(200))
        .await;
    assert!(matches!(outcome, Err(DeviceError::TimedOut)), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gives up on time"
    );
    let polls = fake.state().token_requests.len();
    assert!(
        (1..=10).contains(&polls),
        "{polls} polls in 200 ms at 20 ms"
    );
    Ok(())
}

#[tokio::test]
async fn public_wait_uses_the_authorization_interval_and_max_wait() -> TestResult {
    let (hydra, fake) = fake_hydra().await?;
    let authorization = DeviceAuthorization {
        device_code: "dc".into(),
        user_code: "BCDFGHJK".into(),
        verification_uri: "http://h/verify".into(),
        verification_uri_complete: None,
        expires_in: 600,
        interval: 1,
    };
    let started = Instant::now();
    let outcome = hydra
        .wait_for_device_tokens("demo-device", &authorization, Duration::from_millis(1500))
        .await;
    assert!(matches!(outcome, Err(DeviceError::TimedOut)), "{outcome:?}");
    // One poll after one second; a second one would come after the 1.5 s limit.
    assert_eq!(fake.state().token_requests.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1));
    Ok(())
}

#[test]
fn user_codes_are_shown_in_two_halves() {
    assert_eq!(readable_user_code("BCDFGHJK"), "BCDF-GHJK");
    assert_eq!(readable_user_code("BCDFGHJKL"), "BCDFG-HJKL");
    assert_eq!(readable_user_code("ABC12"), "ABC12");
    assert_eq!(readable_user_code("BCDF-GHJK"), "BCDF-GHJK");
}
