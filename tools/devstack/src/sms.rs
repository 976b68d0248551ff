//! The SMS sink: receives the Kratos courier's HTTP requests and shows them to tests and developers.
//!
//! Routes:
//! - `POST /sms` (also `POST /`): a JSON object with at least `to` (E.164) and usually `body` and
//!   `code`; other fields are kept as they are. Answers 200 `{"ok":true}`.
//! - `GET /messages?to=<E.164 or e-mail>`: JSON list of the messages to that recipient, newest
//!   last. Without `to`, all messages. `+` in the query decodes to a space; numbers are compared by
//!   their digits, so an unencoded `?to=+4915...` works as well; e-mails case-insensitively.
//! - `DELETE /messages`: forgets everything.
//! - `GET /health`: `ok`.
//!
//! Only the last [`MAX_MESSAGES`] messages are kept. Logs name a masked recipient, never a body or a
//! code.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How many messages the sink keeps (oldest are dropped first).
pub const MAX_MESSAGES: usize = 1000;

/// One received message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    /// Sequence number, starting at 1.
    pub id: u64,
    /// Recipient as sent by Kratos.
    pub to: String,
    /// Rendered text, if the courier sent one.
    pub body: Option<String>,
    /// The one-time code, if the courier body template extracted one.
    pub code: Option<String>,
    /// Kratos template type (e.g. `login_code_valid`), if sent.
    pub template_type: Option<String>,
    /// Receive time, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// The whole request body as received.
    pub raw: Value,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    messages: VecDeque<Message>,
}

/// Shared in-memory message store.
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

/// Comparison key of a recipient: e-mail addresses (the local stack sends e-mails here too)
/// lowercased, phone numbers reduced to their digits so that `+` turned into a space still matches.
fn recipient_key(to: &str) -> String {
    if to.contains('@') {
        to.trim().to_lowercase()
    } else {
        to.chars().filter(char::is_ascii_digit).collect()
    }
}

/// `+4915112345678` -> `+49*********78`: enough to tell numbers apart in a log.
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let keep_front = if chars.first() == Some(&'+') { 3 } else { 2 };
    if chars.len() <= keep_front + 2 {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_front || i >= chars.len() - 2 {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

fn string_field(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match obj.get(*n) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

impl Store {
    /// Stores one courier request body. Errors name what is missing.
    pub fn push(&self, raw: Value) -> Result<Message, &'static str> {
        let obj = raw.as_object().ok_or("body must be a JSON object")?;
        let to = string_field(obj, &["to", "recipient"]).ok_or("field `to` is missing")?;
        let body = string_field(obj, &["body", "text", "message"]);
        let code = string_field(obj, &["code"]);
        let template_type = string_field(obj, &["template_type"]);
        let received_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut inner = self.inner.lock().map_err(|_| "store poisoned")?;
        inner.next_id += 1;
        let msg = Message {
            id: inner.next_id,
            to,
            body,
            code,
            template_type,
            received_at_ms,
            raw,
        };
        inner.messages.push_back(msg.clone());
        while inner.messages.len() > MAX_MESSAGES {
            inner.messages.pop_front();
        }
        Ok(msg)
    }

    /// Messages to `to` (all if `None`), oldest first.
    pub fn list(&self, to: Option<&str>) -> Vec<Message> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let want = to.map(recipient_key).filter(|d| !d.is_empty());
        inner
            .messages
            .iter()
            .filter(|m| want.as_deref().is_none_or(|w| recipient_key(&m.to) == w))
            .cloned()
            .collect()
    }

    /// Forgets all messages.
    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.messages.clear();
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    to: Option<String>,
}

async fn receive(State(store): State<Store>, body: axum::body::Bytes) -> (StatusCode, Json<Value>) {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("sms-sink: rejected a request whose body is not JSON");
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "body must be JSON"})),
            );
        }
    };
    match store.push(raw) {
        Ok(m) => {
            eprintln!(
                "sms-sink: message #{} to {} ({})",
                m.id,
                mask(&m.to),
                m.template_type.as_deref().unwrap_or("no template type")
            );
            (
                StatusCode::OK,
                Json(serde_json::json!({"ok": true, "id": m.id})),
            )
        }
        Err(e) => {
            eprintln!("sms-sink: rejected a message: {e}");
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": e})),
            )
        }
    }
}

async fn list(State(store): State<Store>, Query(q): Query<ListQuery>) -> Json<Vec<Message>> {
    Json(store.list(q.to.as_deref()))
}

async fn clear(State(store): State<Store>) -> StatusCode {
    store.clear();
    StatusCode::NO_CONTENT
}

/// The sink's routes over `store`.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/sms", post(receive))
        .route("/messages", get(list).delete(clear))
        .route("/health", get(|| async { "ok" }))
        .with_state(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn masks_numbers() {
        assert_eq!(mask("+4915112345678"), "+49*********78");
        assert_eq!(mask("+123"), "****");
    }

    #[test]
    fn filters_by_digits_newest_last() {
        let s = Store::default();
        s.push(serde_json::json!({"to": "+15550001", "body": "a", "code": "111111"}))
            .unwrap();
        s.push(serde_json::json!({"to": "+15550002", "body": "b"}))
            .unwrap();
        s.push(serde_json::json!({"to": "+15550001", "body": "c", "code": 222222}))
            .unwrap();
        let got = s.list(Some(" 15550001"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].code.as_deref(), Some("111111"));
        assert_eq!(got[1].code.as_deref(), Some("222222"));
        assert_eq!(s.list(None).len(), 3);
        s.push(serde_json::json!({"to": "Ada@Example.com", "body": "mail"}))
            .unwrap();
        assert_eq!(s.list(Some("ada@example.com")).len(), 1);
        assert_eq!(s.list(None).len(), 4);
        assert!(s.push(serde_json::json!({"body": "x"})).is_err());
        s.clear();
        assert!(s.list(None).is_empty());
    }

    #[tokio::test]
    async fn http_round_trip() {
        let app = router(Store::default());
        let res = app
            .clone()
            .oneshot(
                Request::post("/sms")
                    .header("content-type", "application/json")
                    .body(Body::from(
                        r#"{"to":"+4915112345678","body":"code 123456","code":"123456"}"#,
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app
            .oneshot(
                Request::get("/messages?to=+4915112345678")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["code"], "123456");
        assert_eq!(v[0]["to"], "+4915112345678");
    }
}
