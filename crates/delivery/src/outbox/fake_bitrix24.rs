//! A Bitrix24 portal for tests, as its REST docs (bitrix24/b24restdocs) describe it:
//! `{"result": ..., "time": {...}}` on success, `{"error": CODE, "error_description": ...}` on
//! failure; `QUERY_LIMIT_EXCEEDED` past the request bucket (a burst, then a refill rate, per
//! HTTP request: a `batch` counts once); `register` re-registration by `PHONE_NUMBER`, `TYPE`,
//! user, `LINE_NUMBER` and `EXTERNAL_CALL_ID` (same `CALL_ID` back); `attachRecord` only after
//! `finish`; `batch` with `cmd` strings and `halt`; incoming-webhook URLs or OAuth (`auth`
//! parameter, access tokens that expire after a number of requests, renewal at
//! `/oauth/token/` with the spent refresh token refused); `searchCrmEntities`; and the
//! `event.offline.get` / `event.offline.clear` queue, with Bitrix24's side of a click-to-call
//! (the call registered before `ONEXTERNALCALLSTART` is raised). It can also answer slowly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

/// The portal's state; tests read and change it through [`Fake`].
#[derive(Debug, Default)]
pub struct FakeBitrix24 {
    /// Every request answered with a 503 `INTERNAL_SERVER_ERROR`.
    pub down: bool,
    /// Requests refused with `expired_token` before answering normally again (webhook mode).
    pub expire_next: u32,
    tokens: f64,
    burst: f64,
    refill_per_second: f64,
    last_refill: Option<std::time::Instant>,
    /// Open calls: re-registration key -> CALL_ID.
    open: BTreeMap<String, String>,
    /// Every call id ever registered -> its register parameters.
    pub registered: BTreeMap<String, Value>,
    finished: BTreeSet<String>,
    /// Accepted method calls in order: (method, params).
    pub log: Vec<(String, Value)>,
    /// HTTP requests refused (rate limit, down, expired token).
    pub refused: u64,
    /// HTTP requests that were a `batch`, and the commands they carried.
    pub batches: u64,
    /// Commands that came in batches.
    pub batched_commands: u64,
    /// OAuth mode: the valid access token, the refresh token that buys the next pair, how
    /// many requests a token serves, and how many it has served.
    pub oauth: Option<OAuthState>,
    /// `searchCrmEntities` answers by phone number.
    pub crm: BTreeMap<String, Value>,
    /// Offline event queue: (ID, EVENT_DATA), and reservations by process_id.
    pub offline: Vec<(u64, Value)>,
    reserved: BTreeMap<String, Vec<u64>>,
    /// What `user.get` answers.
    pub users: Value,
    /// Requests that wait `slow` before being handled; one whose client gave up meanwhile
    /// (its timeout) is never handled.
    pub slow_next: u32,
    /// See `slow_next`.
    pub slow: Duration,
    /// Requests that were slowed down.
    pub slowed: u32,
}

/// OAuth side of the fake.
#[derive(Debug, Clone)]
pub struct OAuthState {
    /// The application's code.
    pub client_id: String,
    /// The application's key.
    pub client_secret: String,
    /// The access token that works now.
    pub access: String,
    /// The refresh token that buys the next pair.
    pub refresh: String,
    /// Requests one access token serves.
    pub lifetime: u32,
    /// Requests the current token served.
    pub used: u32,
    /// Pairs issued so far.
    pub issued: u32,
}

/// A running fake: its state and its base URL (`http://127.0.0.1:PORT`).
pub type Fake = Arc<Mutex<FakeBitrix24>>;

type Refusal = (StatusCode, Json<Value>);

fn error(status: StatusCode, code: &str, description: &str) -> Refusal {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
}

/// Starts a fake portal with a request bucket of `burst`, refilled at `refill_per_second`.
/// Webhook URL: `{base}/rest/1/code`; OAuth REST: `{base}/rest`; renewal: `{base}/oauth/token/`.
pub async fn start(burst: f64, refill_per_second: f64) -> (Fake, String) {
    let fake = Arc::new(Mutex::new(FakeBitrix24 {
        tokens: burst,
        burst,
        refill_per_second,
        users: json!([
            {"ID": "11", "NAME": "Alice", "UF_PHONE_INNER": "201"},
            {"ID": "16", "NAME": "Frank", "UF_PHONE_INNER": "206"},
            {"ID": "17", "NAME": "Grace", "UF_PHONE_INNER": null},
        ]),
        ..FakeBitrix24::default()
    }));
    let app = axum::Router::new()
        .route("/rest/1/code/{method}", post(webhook_rest))
        .route("/rest/{method}", post(oauth_rest))
        .route("/oauth/token/", get(renew))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

/// Waits before a request is handled, in slow mode.
async fn slow_down(fake: &Fake) {
    let delay = {
        let mut fake = fake.lock().unwrap();
        (fake.slow_next > 0).then(|| {
            fake.slow_next -= 1;
            fake.slowed += 1;
            fake.slow
        })
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

async fn webhook_rest(
    State(fake): State<Fake>,
    UrlPath(method): UrlPath<String>,
    Json(params): Json<Value>,
) -> Refusal {
    slow_down(&fake).await;
    let mut fake = fake.lock().unwrap();
    if let Err(refusal) = fake.admit() {
        return refusal;
    }
    if fake.expire_next > 0 {
        fake.expire_next -= 1;
        fake.refused += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "expired_token",
            "The access token provided has expired.",
        );
    }
    fake.answer(method.trim_end_matches(".json"), params)
}

async fn oauth_rest(
    State(fake): State<Fake>,
    UrlPath(method): UrlPath<String>,
    Json(mut params): Json<Value>,
) -> Refusal {
    slow_down(&fake).await;
    let mut fake = fake.lock().unwrap();
    if let Err(refusal) = fake.admit() {
        return refusal;
    }
    let given = params
        .as_object_mut()
        .and_then(|p| p.remove("auth"))
        .unwrap_or_default();
    let Some(oauth) = fake.oauth.as_mut() else {
        return error(
            StatusCode::UNAUTHORIZED,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        );
    };
    if given != json!(oauth.access) {
        return error(
            StatusCode::UNAUTHORIZED,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        );
    }
    let expired = oauth.used >= oauth.lifetime;
    oauth.used += 1;
    if expired {
        fake.refused += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "expired_token",
            "The access token provided has expired.",
        );
    }
    fake.answer(method.trim_end_matches(".json"), params)
}

/// `GET /oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token`.
async fn renew(State(fake): State<Fake>, Query(q): Query<BTreeMap<String, String>>) -> Refusal {
    let mut fake = fake.lock().unwrap();
    let Some(oauth) = fake.oauth.as_mut() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "no such application",
        );
    };
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if arg("grant_type") != "refresh_token"
        || arg("client_id") != oauth.client_id
        || arg("client_secret") != oauth.client_secret
    {
        return error(StatusCode::BAD_REQUEST, "invalid_client", "Invalid client");
    }
    if arg("refresh_token") != oauth.refresh {
        return error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant");
    }
    oauth.issued += 1;
    oauth.access = format!("access-{}", oauth.issued);
    oauth.refresh = format!("refresh-{}", oauth.issued);
    oauth.used = 0;
    (
        StatusCode::OK,
        Json(json!({
            "access_token": oauth.access,
            "client_endpoint": "http://portal/rest/",
            "domain": "oauth.bitrix.info",
            "expires_in": 3600,
            "member_id": "a223c6b3710f85df22e9377d6c4f7553",
            "refresh_token": oauth.refresh,
            "scope": "telephony,crm,user",
            "server_endpoint": "https://oauth.bitrix.info/rest/",
            "status": "L",
        })),
    )
}

impl FakeBitrix24 {
    /// User `user` clicks `phone` in the CRM: Bitrix24 registers the call itself and raises
    /// `ONEXTERNALCALLSTART`; returns the event's `data`.
    pub fn click_to_call(&mut self, user: u64, phone: &str) -> Value {
        let call_id = format!("externalCall.{}", self.registered.len() + 1);
        let register = json!({"USER_ID": user, "PHONE_NUMBER": phone, "TYPE": 1});
        self.registered.insert(call_id.clone(), register);
        json!({
            "PHONE_NUMBER": phone, "PHONE_NUMBER_INTERNATIONAL": phone, "EXTENSION": "",
            "USER_ID": user.to_string(), "CALL_LIST_ID": "0", "LINE_NUMBER": "", "IS_MOBILE": "0",
            "CALL_ID": call_id, "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": "797",
        })
    }

    /// Rate limit and outage, per HTTP request.
    fn admit(&mut self) -> Result<(), Refusal> {
        let now = std::time::Instant::now();
        let elapsed = self.last_refill.map_or(0.0, |at| (now - at).as_secs_f64());
        self.tokens = (self.tokens + elapsed * self.refill_per_second).min(self.burst);
        self.last_refill = Some(now);
        if self.down {
            self.refused += 1;
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL_SERVER_ERROR",
                "Service unavailable",
            ));
        }
        if self.tokens < 1.0 {
            self.refused += 1;
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "QUERY_LIMIT_EXCEEDED",
                "Too many requests",
            ));
        }
        self.tokens -= 1.0;
        Ok(())
    }

    fn answer(&mut self, method: &str, params: Value) -> Refusal {
        if method == "batch" {
            return (
                StatusCode::OK,
                Json(json!({"result": self.batch(&params), "time": {}})),
            );
        }
        match self.call(method, params) {
            Ok(result) => (StatusCode::OK, Json(json!({"result": result, "time": {}}))),
            Err((status, code, description)) => error(status, code, &description),
        }
    }

    /// `batch`: each `cmd` is `method?query`, run in key order; `halt=0` runs them all.
    fn batch(&mut self, params: &Value) -> Value {
        self.batches += 1;
        let mut result = serde_json::Map::new();
        let mut errors = serde_json::Map::new();
        let halt = matches!(params["halt"].as_u64(), Some(1)) || params["halt"] == json!(true);
        for (key, command) in params["cmd"].as_object().into_iter().flatten() {
            self.batched_commands += 1;
            let command = command.as_str().unwrap_or_default();
            let (method, query) = command.split_once('?').unwrap_or((command, ""));
            match self.call(method, php_query(query)) {
                Ok(answer) => {
                    result.insert(key.clone(), answer);
                }
                Err((_, code, description)) => {
                    errors.insert(
                        key.clone(),
                        json!({"error": code, "error_description": description}),
                    );
                    if halt {
                        break;
                    }
                }
            }
        }
        json!({
            "result": result,
            "result_error": if errors.is_empty() { json!([]) } else { Value::Object(errors) },
            "result_total": [], "result_next": [], "result_time": [],
        })
    }

    fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Value, (StatusCode, &'static str, String)> {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let call_id = text(&params["CALL_ID"]);
        let not_found = || {
            Err((
                StatusCode::BAD_REQUEST,
                "ERROR_CORE",
                "Call is not found or finished".to_owned(),
            ))
        };
        let result = match method {
            // 50 a page from `start`, as Bitrix24 lists answer (a non-list answers whole).
            "user.get" => match self.users.as_array() {
                Some(users) => {
                    let start = params["start"].as_u64().unwrap_or(0) as usize;
                    json!(users.iter().skip(start).take(50).collect::<Vec<_>>())
                }
                None => self.users.clone(),
            },
            "telephony.externalcall.register" => {
                let user = match &params["USER_ID"] {
                    Value::Null => text(&params["USER_PHONE_INNER"]),
                    id => text(id),
                };
                if user.is_empty() {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "ERROR_CORE",
                        "USER_ID or USER_PHONE_INNER should be set.".into(),
                    ));
                }
                let key = [
                    text(&params["PHONE_NUMBER"]),
                    text(&params["TYPE"]),
                    user,
                    text(&params["LINE_NUMBER"]),
                    text(&params["EXTERNAL_CALL_ID"]),
                ]
                .join("|");
                let next = format!("externalCall.{}", self.registered.len() + 1);
                let id = self.open.entry(key).or_insert(next).clone();
                self.registered.entry(id.clone()).or_insert(params.clone());
                json!({"CALL_ID": id, "CRM_CREATED_LEAD": null, "CRM_CREATED_ENTITIES": [], "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 1})
            }
            "telephony.externalcall.show" | "telephony.externalcall.hide" => {
                json!(self.registered.contains_key(&call_id) && !self.finished.contains(&call_id))
            }
            "telephony.externalcall.finish" if self.registered.contains_key(&call_id) => {
                self.open.retain(|_, id| *id != call_id);
                self.finished.insert(call_id.clone());
                json!({"CALL_ID": call_id, "CALL_DURATION": params["DURATION"], "CALL_FAILED_CODE": params["STATUS_CODE"]})
            }
            "telephony.externalcall.attachRecord" if !self.finished.contains(&call_id) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "ERROR_CORE",
                    "Call is not found in the statistic table. It looks like it is not finished yet.".into(),
                ));
            }
            "telephony.externalcall.attachRecord" => json!({"FILE_ID": self.log.len()}),
            "telephony.externalcall.finish" => return not_found(),
            "telephony.externalCall.searchCrmEntities" => self
                .crm
                .get(&text(&params["PHONE_NUMBER"]))
                .cloned()
                .unwrap_or(json!([])),
            "event.offline.get" => {
                let limit = params["limit"].as_u64().unwrap_or(50) as usize;
                let taken: BTreeSet<u64> = self.reserved.values().flatten().copied().collect();
                let events: Vec<(u64, Value)> = self
                    .offline
                    .iter()
                    .filter(|(id, _)| !taken.contains(id))
                    .take(limit)
                    .cloned()
                    .collect();
                if events.is_empty() {
                    json!({"process_id": null, "events": []})
                } else {
                    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
                    let process_id = format!("p{}", self.reserved.len() + 1);
                    if params["clear"] == json!(0) {
                        self.reserved.insert(process_id.clone(), ids);
                    } else {
                        self.offline.retain(|(id, _)| !ids.contains(id));
                    }
                    let events: Vec<Value> = events
                        .into_iter()
                        .map(|(id, data)| {
                            json!({
                                "ID": id.to_string(), "TIMESTAMP_X": "2026-11-22T12:32:31+03:00",
                                "EVENT_NAME": "ONEXTERNALCALLSTART", "EVENT_DATA": data,
                                "EVENT_ADDITIONAL": false, "MESSAGE_ID": id.to_string(),
                            })
                        })
                        .collect();
                    json!({"process_id": process_id, "events": events})
                }
            }
            "event.offline.clear" => {
                let process = text(&params["process_id"]);
                let Some(reserved) = self.reserved.remove(&process) else {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "ERROR_PROCESS_NOT_FOUND",
                        "Process not found".into(),
                    ));
                };
                let ids: Vec<u64> = match params["id"].as_array() {
                    Some(ids) => ids.iter().filter_map(|v| text(v).parse().ok()).collect(),
                    None => reserved,
                };
                self.offline.retain(|(id, _)| !ids.contains(id));
                json!(true)
            }
            _ if method.starts_with("telephony.externalcall.") => return not_found(),
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "ERROR_METHOD_NOT_FOUND",
                    "Method not found".into(),
                ))
            }
        };
        // show/hide of an unknown call answer `false` (documented): not an accepted step.
        if result != json!(false) {
            self.log.push((method.to_owned(), params));
        }
        Ok(result)
    }
}

/// A PHP query string (`A[0]=1&B[C]=x`) as JSON, lists for `[0]`, `[1]`... keys; values stay
/// strings, as PHP has them.
fn php_query(query: &str) -> Value {
    let mut root = json!({});
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let mut path: Vec<String> = Vec::new();
        let (head, rest) = key
            .split_once('[')
            .map_or((key.as_ref(), ""), |(h, r)| (h, r));
        path.push(head.to_owned());
        for part in rest.split('[') {
            let part = part.trim_end_matches(']');
            if !part.is_empty() || !rest.is_empty() {
                path.push(part.to_owned());
            }
        }
        let mut node = &mut root;
        for (n, part) in path.iter().enumerate() {
            if n + 1 == path.len() {
                node[part.as_str()] = json!(value.as_ref());
            } else {
                node = node
                    .as_object_mut()
                    .expect("objects all the way down")
                    .entry(part.clone())
                    .or_insert_with(|| json!({}));
            }
        }
    }
    lists(root)
}

/// Objects keyed `0..n` become lists.
fn lists(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut indexes: Vec<usize> = map.keys().filter_map(|k| k.parse().ok()).collect();
            indexes.sort_unstable();
            let indexed = !map.is_empty() && indexes.iter().copied().eq(0..map.len());
            let converted = map.into_iter().map(|(k, v)| (k, lists(v)));
            if indexed {
                let mut items: Vec<(usize, Value)> = converted
                    .map(|(k, v)| (k.parse().unwrap_or(0), v))
                    .collect();
                items.sort_by_key(|(n, _)| *n);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(converted.collect())
            }
        }
        other => other,
    }
}
