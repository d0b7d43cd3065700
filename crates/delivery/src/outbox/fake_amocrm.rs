//! An amoCRM account for tests, as its API v4 docs describe it: `Authorization: Bearer` with a
//! long-lived token (else 401 with a problem+json body); `POST /api/v4/calls` adding a call
//! only to a card whose phone has the same last 10 digits (else an `errors` entry and no
//! call), `POST /api/v4/leads/unsorted/sip`, `POST /api/v2/events` (incoming-call
//! notifications), `GET /api/v4/account`; 400 with `validation-errors` for a malformed call;
//! and, on request, 429 or 5xx answers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

const ACCOUNT_ID: u64 = 28_805_383;

/// The account's state; tests read and change it through [`Fake`].
#[derive(Debug, Default)]
pub struct FakeAmoCrm {
    /// The long-lived token that works.
    pub token: String,
    /// Contacts by the last 10 digits of their phone: contact id.
    pub contacts: BTreeMap<String, u64>,
    /// Statuses to answer the next requests with instead (429, 502...), in order.
    pub fail_next: VecDeque<u16>,
    /// Requests refused (bad token, `fail_next`, validation).
    pub refused: u64,
    /// Accepted requests in order: (idempotency key pbxlink sent, path, body).
    pub log: Vec<(String, String, Value)>,
}

/// A running fake: its state and its base URL (`http://127.0.0.1:PORT`).
pub type Fake = Arc<Mutex<FakeAmoCrm>>;

type Answer = (StatusCode, Json<Value>);

/// amoCRM's errors are RFC 7807 problem documents.
fn problem(status: StatusCode, detail: &str) -> Answer {
    let body = json!({
        "title": status.canonical_reason().unwrap_or_default(),
        "type": format!("https://httpstatus.es/{}", status.as_u16()),
        "status": status.as_u16(),
        "detail": detail,
    });
    (status, Json(body))
}

/// Starts a fake account that accepts `token`.
pub async fn start(token: &str) -> (Fake, String) {
    let fake = Arc::new(Mutex::new(FakeAmoCrm {
        token: token.to_owned(),
        ..FakeAmoCrm::default()
    }));
    let app = axum::Router::new()
        .route("/api/v4/account", get(serve))
        .route("/api/v4/calls", post(serve))
        .route("/api/v4/leads/unsorted/sip", post(serve))
        .route("/api/v2/events", post(serve))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

async fn serve(State(fake): State<Fake>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut fake = fake.lock().unwrap();
    if header("authorization") != format!("Bearer {}", fake.token) {
        fake.refused += 1;
        return problem(StatusCode::UNAUTHORIZED, "Invalid token");
    }
    if let Some(status) = fake.fail_next.pop_front() {
        fake.refused += 1;
        let status = StatusCode::from_u16(status).unwrap();
        return problem(status, "Try again later");
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let answer = match path.as_str() {
        "/api/v4/account" => Ok(json!({
            "id": ACCOUNT_ID, "name": "Acme", "subdomain": "acme", "created_at": 1_585_840_134,
            "current_user_id": 501, "country": "RU", "currency": "RUB",
        })),
        "/api/v4/calls" => fake.add_calls(&body),
        "/api/v4/leads/unsorted/sip" => fake.add_unsorted(&body),
        _ => Ok(json!({"_embedded": {"items": [
            {"element_id": 0, "element_type": 1, "uid": format!("event-{}", fake.log.len())}
        ]}})),
    };
    match answer {
        Ok(answer) => {
            fake.log.push((header("idempotency-key"), path, body));
            (StatusCode::OK, Json(answer))
        }
        Err(errors) => {
            fake.refused += 1;
            let (status, Json(mut problem)) =
                problem(StatusCode::BAD_REQUEST, "Request validation failed");
            problem["validation-errors"] = errors;
            (status, Json(problem))
        }
    }
}

/// The last 10 digits of a number: how amoCRM matches phones.
fn last_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].iter().collect()
}

/// `[{"request_id": ..., "errors": [...]}]` for the fields of `item` that are missing.
fn missing(item: &Value, fields: &[&str]) -> Option<Value> {
    let errors: Vec<Value> = fields
        .iter()
        .filter(|f| item.pointer(&format!("/{}", f.replace('.', "/"))).is_none())
        .map(|f| json!({"code": "NotBlank", "path": f, "detail": "This field is missing."}))
        .collect();
    (!errors.is_empty()).then(|| json!([{"request_id": item["request_id"], "errors": errors}]))
}

impl FakeAmoCrm {
    fn add_calls(&mut self, body: &Value) -> Result<Value, Value> {
        let mut calls = Vec::new();
        let mut errors = Vec::new();
        for call in body.as_array().into_iter().flatten() {
            let fields = ["direction", "uniq", "duration", "source", "phone"];
            if let Some(invalid) = missing(call, &fields) {
                return Err(invalid);
            }
            if !matches!(call["direction"].as_str(), Some("inbound" | "outbound")) {
                return Err(json!([{"request_id": call["request_id"], "errors": [
                    {"code": "NotSupportedChoice", "path": "direction", "detail": "The value you selected is not a valid choice."}
                ]}]));
            }
            let phone = call["phone"].as_str().unwrap_or_default();
            match self.contacts.get(&last_digits(phone)) {
                Some(contact) => calls.push(json!({
                    "id": 18_000 + self.log.len(), "entity_id": contact, "entity_type": "contacts",
                    "account_id": ACCOUNT_ID, "request_id": call["request_id"],
                })),
                None => errors
                    .push(json!({"request_id": call["request_id"], "title": "Entity not found"})),
            }
        }
        Ok(json!({"_total_items": calls.len(), "_embedded": {"calls": calls}, "errors": errors}))
    }

    fn add_unsorted(&mut self, body: &Value) -> Result<Value, Value> {
        let mut added = Vec::new();
        for lead in body.as_array().into_iter().flatten() {
            let fields = [
                "source_uid",
                "source_name",
                "metadata.uniq",
                "metadata.duration",
                "metadata.service_code",
                "metadata.phone",
                "metadata.called_at",
                "metadata.from",
            ];
            if let Some(invalid) = missing(lead, &fields) {
                return Err(invalid);
            }
            let n = self.log.len();
            added.push(json!({
                "uid": format!("{n:032x}"), "account_id": ACCOUNT_ID, "request_id": lead["request_id"],
                "_embedded": {"leads": [{"id": 7_000 + n}], "contacts": [{"id": 8_000 + n}]},
            }));
        }
        Ok(json!({"_total_items": added.len(), "_embedded": {"unsorted": added}}))
    }
}
