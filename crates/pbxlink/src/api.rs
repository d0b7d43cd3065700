//! HTTP API (axum) under `/api/v1`, the live event stream, and the embedded web UI.
//!
//! `fn app(state) -> Router` is the whole HTTP surface, so tests drive it with `oneshot`
//! and no socket. Every `/api` route needs a bearer token (fail closed: no token, no access);
//! `/health` and the UI's static page are open, the page itself asks for a token.

mod admin;
mod control;
mod edge;
mod export;
mod extensions;
mod live;
mod recordings;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use calls::{CallEvent, Disposition};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use store::{CallFilter, Store};

use live::LiveHub;
use pbx::ami_client::AmiClient;
use pbx::control::{
    check_caller_name, check_variable, is_dialable, new_click_to_call_id, originate_click_to_call,
};
use web::tokens::{digest, Scope};
use web::ApiError;

use edge::ApiQuery;
pub use edge::DEFAULT_CONTROL_PER_MINUTE;

/// How many recent live events are kept for clients resuming after a reconnect (and how far
/// a connected client may lag behind before it is told to resync).
const LIVE_RING: usize = 4096;
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;
/// No API request carries more than a small JSON object; anything bigger is refused unread.
const MAX_BODY: usize = 16 * 1024;
/// A request (headers to response head; not a stream's life) that takes longer is cut off, so
/// a client sending its body a byte at a time cannot hold a task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state behind every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    store: Store,
    live: Arc<LiveHub>,
    active: Arc<Mutex<calls::ActiveCalls>>,
    /// SHA-256 of each admin token given at start (the demo's printed one); tokens made with
    /// `pbxlink token create` are looked up in the store. A state dump leaks no token.
    token_hashes: Arc<Vec<[u8; 32]>>,
    /// The AMI link of each PBX, by name, for call control.
    pbxes: Arc<HashMap<String, AmiClient>>,
    /// Renders the process's metrics in Prometheus text format.
    metrics: Option<PrometheusHandle>,
    /// Client networks served; empty: any.
    allow: Arc<Vec<ipnet::IpNet>>,
    /// Each PBX's extensions as its hint and queue events report them.
    presence: Arc<Mutex<HashMap<String, calls::Presence>>>,
    /// Whether the AMI link of each PBX this process tracks is up, for `/health`.
    links: Arc<Mutex<BTreeMap<String, bool>>>,
    /// `[extensions]`: how DND and forwarding are stored, extensions known besides hints.
    extensions: Arc<pbx::extensions::ExtensionsConfig>,
    /// Failed password sign-ins, to slow guessing down.
    throttle: Arc<session::Throttle>,
    /// The configuration as the settings page shows it (secrets masked).
    settings: Arc<serde_json::Value>,
    /// Signed recording links and the MP3s behind them; `None`: no `[recordings]`.
    recordings: Option<Arc<delivery::recordings::Recordings>>,
    /// Control requests per token (`[http] control_per_minute`).
    control_limit: Arc<edge::ControlLimit>,
}

/// Who presented the token of a request (a request extension, set by the token check).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// What the token may do.
    scope: Scope,
    /// The user of a password session.
    user: Option<String>,
    /// The hex SHA-256 of a session token (what sign-out deletes).
    session: Option<String>,
}

impl AppState {
    /// State over `store`, accepting the given plain-text tokens, controlling `pbxes`.
    pub fn new(store: Store, tokens: &[String], pbxes: HashMap<String, AmiClient>) -> Self {
        AppState {
            store,
            live: Arc::new(LiveHub::new(LIVE_RING)),
            active: Arc::default(),
            token_hashes: Arc::new(tokens.iter().map(|t| digest(t)).collect()),
            pbxes: Arc::new(pbxes),
            metrics: None,
            allow: Arc::default(),
            presence: Arc::default(),
            links: Arc::default(),
            extensions: Arc::default(),
            throttle: Arc::default(),
            settings: Arc::default(),
            recordings: None,
            control_limit: Arc::new(edge::ControlLimit::per_minute(
                edge::DEFAULT_CONTROL_PER_MINUTE,
            )),
        }
    }

    /// Lets each token make `per_minute` control requests a minute (bursts as large).
    pub fn with_control_rate(mut self, per_minute: std::num::NonZeroU32) -> Self {
        self.control_limit = Arc::new(edge::ControlLimit::per_minute(per_minute));
        self
    }

    /// Serves recordings (`/recordings/{link}`, `GET /api/v1/calls/{id}/recording`).
    pub fn with_recordings(mut self, recordings: Arc<delivery::recordings::Recordings>) -> Self {
        self.recordings = Some(recordings);
        self
    }

    /// Shows `settings` (the config, secrets already masked) on the settings page.
    pub fn with_settings(mut self, settings: serde_json::Value) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// Records whether `pbx`'s AMI link is up (tracking reports each change).
    pub fn link_changed(&self, pbx: &str, up: bool) {
        self.links
            .lock()
            .expect("links lock poisoned")
            .insert(pbx.to_owned(), up);
    }

    /// `pbx` is no longer tracked here (the process stops, or gave up the PBX's lease).
    pub fn link_untracked(&self, pbx: &str) {
        self.links.lock().expect("links lock poisoned").remove(pbx);
    }

    /// Numbers live events after `last_seq` (see [`LiveHub::numbered_after`]); before any
    /// event is published.
    pub fn with_live_numbering_after(mut self, last_seq: u64) -> Self {
        self.live = Arc::new(LiveHub::numbered_after(LIVE_RING, last_seq));
        self
    }

    /// Answers only clients from these networks (none: any).
    pub fn with_allow_list(mut self, networks: Vec<ipnet::IpNet>) -> Self {
        self.allow = Arc::new(networks);
        self
    }

    /// Stores DND and forwarding this way and accepts these extensions (`[extensions]`).
    pub fn with_extensions(mut self, config: pbx::extensions::ExtensionsConfig) -> Self {
        self.extensions = Arc::new(config);
        self
    }

    /// The PBX named, or the only one when none is named, and its AMI link.
    fn pick_pbx(&self, name: Option<&str>) -> Result<(String, AmiClient), ApiError> {
        let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
        let (pbx, client) = match name {
            Some(name) => self
                .pbxes
                .get_key_value(name)
                .ok_or_else(|| bad(format!("no PBX named {name:?}")))?,
            None if self.pbxes.len() == 1 => self.pbxes.iter().next().expect("one PBX"),
            None if self.pbxes.is_empty() => return Err(bad("no PBX is configured".into())),
            None => return Err(bad("several PBXes: name one in \"pbx\"".into())),
        };
        Ok((pbx.clone(), client.clone()))
    }

    /// Serves `/metrics` from this recorder.
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Publishes a tracker event: updates the live-calls view and fans it out to streams.
    pub fn publish(&self, pbx: &str, event: CallEvent) {
        let parties = self
            .active
            .lock()
            .expect("active-calls lock poisoned")
            .apply(pbx, &event);
        self.live.publish(pbx, live::Live::Call(event), parties);
    }

    /// Who a presented token stands for: an admin token given at start, a stored API token
    /// or a password session; `None` when it is unknown, revoked, expired or unreadable.
    async fn caller(&self, presented: &str) -> Result<Option<Caller>, ApiError> {
        let h = digest(presented);
        if self.token_hashes.iter().any(|t| constant_time_eq(t, &h)) {
            return Ok(Some(Caller {
                scope: Scope::Admin,
                user: None,
                session: None,
            }));
        }
        // Lookups by hash: the database compares digests, never secrets.
        let h = hex::encode(h);
        if let Some(t) = self.store.token_by_hash(&h).await? {
            return Ok(Scope::from_stored(&t.scope).map(|scope| Caller {
                scope,
                user: None,
                session: None,
            }));
        }
        let Some(s) = self.store.session_by_hash(&h, Utc::now()).await? else {
            return Ok(None);
        };
        Ok(Scope::from_stored(&s.scope).map(|scope| Caller {
            scope,
            user: Some(s.user),
            session: Some(h),
        }))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HTTP surface.
pub fn app(state: AppState) -> Router {
    let guard =
        |needs: Scope| middleware::from_fn_with_state((state.clone(), needs), require_token);
    let read = Router::new()
        .route("/calls", get(list_calls))
        .route("/calls/{id}", get(get_call))
        .route("/calls/{id}/recording", get(recordings::call_recording))
        .route("/live", get(live_calls))
        .route("/events", get(live::events))
        .route("/openapi.json", get(openapi))
        .route("/extensions", get(extensions::list))
        .route("/extensions/{ext}", get(extensions::get))
        .route("/extensions/{ext}/forwarding", get(extensions::forwarding))
        .route("/me", get(session::me))
        .route("/releases", get(admin::releases))
        .route("/logout", post(session::logout))
        .route_layer(guard(Scope::Read));
    let control = Router::new()
        .route("/calls", post(click_to_call))
        .route("/calls/{id}/hangup", post(control::hangup))
        .route("/calls/{id}/transfer", post(control::transfer))
        .route("/calls/{id}/redirect", post(control::redirect))
        .route(
            "/extensions/{ext}/dnd",
            put(extensions::dnd_on).delete(extensions::dnd_off),
        )
        .route(
            "/extensions/{ext}/forwarding/{kind}",
            put(extensions::forward_on).delete(extensions::forward_off),
        )
        .route(
            "/queues/{queue}/members/{member}/pause",
            post(extensions::pause),
        )
        .route(
            "/queues/{queue}/members/{member}/unpause",
            post(extensions::unpause),
        )
        // Inside the token check (the last layer added runs first): counted per token.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            edge::control_rate,
        ))
        .route_layer(guard(Scope::Control));
    let admin = Router::new()
        .route("/outbox", get(admin::outbox))
        .route("/outbox/{id}/retry", post(admin::retry))
        .route("/settings", get(admin::settings))
        .route_layer(guard(Scope::Admin));
    // Scrapers send the token too (Prometheus `authorization` / `bearer_token`).
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(guard(Scope::Read));
    let allow_listed = Router::new()
        .route("/", get(ui))
        .route("/health", get(health))
        .route("/api/v1/login", post(session::login))
        .nest("/api/v1", read.merge(control).merge(admin))
        .merge(metrics)
        .layer(middleware::from_fn_with_state(state.clone(), allow_listed));
    Router::new()
        // The signed link is the credential: CRMs (a cloud Bitrix24 fetching attachRecord's
        // URL) and players fetch it without a token, from anywhere, so the allow-list, which
        // is for API and UI clients, does not apply.
        .route("/recordings/{link}", get(recordings::download))
        .merge(allow_listed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Refuses clients outside the allow-list before anything else runs. With a list, a request
/// whose peer address is unknown is refused too (fail closed).
async fn allow_listed(
    State(state): State<AppState>,
    peer: Result<ConnectInfo<SocketAddr>, axum::extract::rejection::ExtensionRejection>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.allow.is_empty() {
        return Ok(next.run(req).await);
    }
    // A v4 client of a dual-stack listener shows up as ::ffff:a.b.c.d.
    let ip = peer.ok().map(|ConnectInfo(addr)| addr.ip().to_canonical());
    match ip {
        Some(ip) if state.allow.iter().any(|net| net.contains(&ip)) => Ok(next.run(req).await),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this address may not use the API",
        )),
    }
}

async fn require_token(
    State((state, needs)): State<(AppState, Scope)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Browsers' EventSource cannot set headers, so the stream also takes `?access_token=`.
    let presented = bearer.or(q.access_token.as_deref());
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token>",
        ));
    };
    match state.caller(presented).await? {
        Some(caller) if caller.scope >= needs => {
            req.extensions_mut().insert(caller);
            Ok(next.run(req).await)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token may not do this: it needs the {} scope",
                needs.as_str()
            ),
        )),
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid token")),
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// The OpenAPI document; a test holds it and the router to the same routes.
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("api/openapi.json"),
    )
}

async fn ui() -> Html<&'static str> {
    Html(include_str!("../web/index.html"))
}

/// `GET /health` (open): `ok`, or `degraded` while the AMI link of a PBX this process tracks
/// is down (200 either way: the process serves; a monitor alerts on `degraded`).
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let active = state
        .active
        .lock()
        .expect("active-calls lock poisoned")
        .len();
    let links = state.links.lock().expect("links lock poisoned").clone();
    let status = if links.values().all(|up| *up) {
        "ok"
    } else {
        "degraded"
    };
    Json(serde_json::json!({ "status": status, "active_calls": active, "ami_connected": links }))
}

async fn metrics(State(state): State<AppState>) -> Result<String, ApiError> {
    state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "metrics are not enabled"))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    number: Option<String>,
    extension: Option<String>,
    disposition: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    /// `csv` for a CSV export (as `Accept: text/csv`).
    format: Option<String>,
}

async fn list_calls(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let as_csv = export::wanted(q.format.as_deref(), &headers);
    let disposition = q
        .disposition
        .as_deref()
        .map(|s| {
            parse_name::<Disposition>(
                "disposition",
                s,
                "answered, no_answer, busy, failed or cancelled",
            )
        })
        .transpose()?;
    let filter = CallFilter {
        since: q.since,
        until: q.until,
        // An unescaped `+` arrives as a space (form encoding); no number starts with one.
        number: q.number.map(|n| match n.strip_prefix(' ') {
            Some(rest) => format!("+{rest}"),
            None => n,
        }),
        extension: q.extension,
        disposition,
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page = state
        .store
        .list_calls(&filter, limit, q.cursor.as_deref())
        .await?;
    if as_csv {
        return export::csv_page(&page.calls, page.next_cursor.as_deref());
    }
    let calls: Vec<_> = page
        .calls
        .into_iter()
        .map(|c| call_json(&c.pbx, c.record))
        .collect();
    Ok(
        Json(serde_json::json!({ "calls": calls, "next_cursor": page.next_cursor }))
            .into_response(),
    )
}

/// A snake_case enum value from a query parameter; a 400 naming the choices otherwise.
fn parse_name<T: serde::de::DeserializeOwned>(
    what: &str,
    s: &str,
    choices: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown {what} {s:?}: expected {choices}"),
        )
    })
}

fn call_json(pbx: &str, record: calls::CallRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(record).expect("a call record always serializes");
    v["pbx"] = pbx.into();
    v
}

/// `?pbx=` of a call's routes: which PBX's call, for an id that several PBXes have.
#[derive(Debug, Deserialize)]
pub(crate) struct CallQuery {
    pbx: Option<String>,
}

async fn get_call(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<CallQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.store.get_call(&id, q.pbx.as_deref()).await? {
        Some(c) => Ok(Json(call_json(&c.pbx, c.record))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no call {id:?}"),
        )),
    }
}

/// `POST /api/v1/calls`: click-to-call. The agent's phone rings first; when it answers, the
/// PBX dials the number (AMI Originate into `from-internal`, as FreePBX's own click-to-call).
#[derive(Debug, Deserialize)]
struct ClickToCall {
    /// The agent's extension (rings first).
    extension: String,
    /// The number to call once the agent answers.
    number: String,
    /// Which PBX; optional when there is one.
    pbx: Option<String>,
    /// Caller ID name shown on the agent's phone.
    caller_name: Option<String>,
    /// Channel variables to set (`{"CRM_DEAL": "42"}`).
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

async fn click_to_call(
    State(state): State<AppState>,
    edge::ApiJson(req): edge::ApiJson<ClickToCall>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    if !is_dialable(&req.extension) {
        return Err(bad(format!(
            "extension {:?} is not a number",
            req.extension
        )));
    }
    let number = req.number.trim_start_matches('+');
    if !is_dialable(number) {
        return Err(bad(format!(
            "number {:?} is not a phone number",
            req.number
        )));
    }
    if let Some(name) = &req.caller_name {
        check_caller_name(name).map_err(bad)?;
    }
    for (name, value) in &req.variables {
        check_variable(name, value).map_err(bad)?;
    }
    let (pbx, client) = state.pick_pbx(req.pbx.as_deref())?;
    let call_id = new_click_to_call_id();
    let caller_name = req.caller_name.as_deref().unwrap_or(number);
    originate_click_to_call(
        &client,
        &req.extension,
        number,
        caller_name,
        &call_id,
        req.variables.into_iter().collect(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "call_id": call_id, "pbx": pbx })),
    ))
}

async fn live_calls(State(state): State<AppState>) -> Json<Vec<calls::ActiveCall>> {
    let active = state.active.lock().expect("active-calls lock poisoned");
    Json(active.iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        (
            AppState::new(store, &["secret-token".to_owned()], HashMap::new()),
            dir,
        )
    }

    async fn get(app: Router, uri: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn api_fails_closed_without_a_valid_token() {
        let (state, _dir) = state().await;
        let (s, _) = get(app(state.clone()), "/api/v1/calls", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = get(app(state.clone()), "/api/v1/calls", Some("wrong")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, body) = get(app(state), "/api/v1/calls", Some("secret-token")).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn health_is_open_and_counts_live_calls() {
        let (state, _dir) = state().await;
        state.publish(
            "pbx",
            CallEvent {
                call_id: "1.0".into(),
                at: DateTime::from_timestamp(1_795_388_070, 0).unwrap(),
                kind: calls::CallEventKind::Started {
                    direction: calls::Direction::Inbound,
                    from: Some("15551234567".into()),
                    to: Some("15550001000".into()),
                },
            },
        );
        let (s, body) = get(app(state.clone()), "/health", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            body,
            r#"{"active_calls":1,"ami_connected":{},"status":"ok"}"#
        );
        state.link_changed("office", true);
        state.link_changed("branch", false);
        let (s, body) = get(app(state), "/health", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            body,
            r#"{"active_calls":1,"ami_connected":{"branch":false,"office":true},"status":"degraded"}"#
        );
    }

    #[tokio::test]
    async fn bad_disposition_is_a_clear_400() {
        let (state, _dir) = state().await;
        let (s, body) = get(
            app(state),
            "/api/v1/calls?disposition=maybe",
            Some("secret-token"),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body.contains("unknown disposition"), "{body}");
    }

    /// Every route that needs a token: method, path, and the least scope it needs.
    const GUARDED: &[(&str, &str, Scope)] = &[
        ("GET", "/api/v1/calls", Scope::Read),
        ("GET", "/api/v1/calls/1.1", Scope::Read),
        ("GET", "/api/v1/calls/1.1/recording", Scope::Read),
        ("GET", "/api/v1/live", Scope::Read),
        ("GET", "/api/v1/events", Scope::Read),
        ("GET", "/api/v1/openapi.json", Scope::Read),
        ("GET", "/metrics", Scope::Read),
        ("POST", "/api/v1/calls", Scope::Control),
        ("POST", "/api/v1/calls/1.1/hangup", Scope::Control),
        ("POST", "/api/v1/calls/1.1/transfer", Scope::Control),
        ("POST", "/api/v1/calls/1.1/redirect", Scope::Control),
        ("GET", "/api/v1/me", Scope::Read),
        ("POST", "/api/v1/logout", Scope::Read),
        ("GET", "/api/v1/releases", Scope::Read),
        ("GET", "/api/v1/outbox", Scope::Admin),
        ("POST", "/api/v1/outbox/1.1/retry", Scope::Admin),
        ("GET", "/api/v1/settings", Scope::Admin),
        ("GET", "/api/v1/extensions", Scope::Read),
        ("GET", "/api/v1/extensions/201", Scope::Read),
        ("GET", "/api/v1/extensions/201/forwarding", Scope::Read),
        ("PUT", "/api/v1/extensions/201/dnd", Scope::Control),
        ("DELETE", "/api/v1/extensions/201/dnd", Scope::Control),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/busy",
            Scope::Control,
        ),
        (
            "DELETE",
            "/api/v1/extensions/201/forwarding/busy",
            Scope::Control,
        ),
        (
            "POST",
            "/api/v1/queues/600/members/201/pause",
            Scope::Control,
        ),
        (
            "POST",
            "/api/v1/queues/600/members/201/unpause",
            Scope::Control,
        ),
    ];

    async fn status_of(state: &AppState, method: &str, uri: &str, token: Option<&str>) -> u16 {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).unwrap();
        app(state.clone())
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn stored_token(state: &AppState, secret: &str, scope: Scope) {
        let token = store::ApiToken {
            id: secret.to_owned(),
            name: "test".into(),
            scope: scope.as_str().to_owned(),
            created_at: DateTime::from_timestamp(1_795_388_070, 0).unwrap(),
            revoked_at: None,
        };
        let h = hex::encode(digest(secret));
        state.store.create_token(&token, &h).await.unwrap();
    }

    #[tokio::test]
    async fn every_guarded_route_refuses_no_token_and_too_small_a_scope() {
        let (state, _dir) = state().await;
        stored_token(&state, "read-token", Scope::Read).await;
        stored_token(&state, "control-token", Scope::Control).await;
        let mut shown = Vec::new();
        for (method, uri, needs) in GUARDED {
            let mut line = format!("{method} {uri} needs {}:", needs.as_str());
            for token in [
                None,
                Some("wrong"),
                Some("read-token"),
                Some("control-token"),
            ] {
                line += &format!(" {}", status_of(&state, method, uri, token).await);
            }
            shown.push(line);
        }
        // Columns: no token, unknown token, read token, control token. Past the guard, the
        // handlers' own answers (404: no such call, no metrics here; 415: no JSON body).
        expect_test::expect![[r#"
            GET /api/v1/calls needs read: 401 401 200 200
            GET /api/v1/calls/1.1 needs read: 401 401 404 404
            GET /api/v1/calls/1.1/recording needs read: 401 401 404 404
            GET /api/v1/live needs read: 401 401 200 200
            GET /api/v1/events needs read: 401 401 200 200
            GET /api/v1/openapi.json needs read: 401 401 200 200
            GET /metrics needs read: 401 401 404 404
            POST /api/v1/calls needs control: 401 401 403 415
            POST /api/v1/calls/1.1/hangup needs control: 401 401 403 404
            POST /api/v1/calls/1.1/transfer needs control: 401 401 403 415
            POST /api/v1/calls/1.1/redirect needs control: 401 401 403 415
            GET /api/v1/me needs read: 401 401 200 200
            POST /api/v1/logout needs read: 401 401 204 204
            GET /api/v1/releases needs read: 401 401 200 200
            GET /api/v1/outbox needs admin: 401 401 403 403
            POST /api/v1/outbox/1.1/retry needs admin: 401 401 403 403
            GET /api/v1/settings needs admin: 401 401 403 403
            GET /api/v1/extensions needs read: 401 401 200 200
            GET /api/v1/extensions/201 needs read: 401 401 404 404
            GET /api/v1/extensions/201/forwarding needs read: 401 401 422 422
            PUT /api/v1/extensions/201/dnd needs control: 401 401 403 422
            DELETE /api/v1/extensions/201/dnd needs control: 401 401 403 422
            PUT /api/v1/extensions/201/forwarding/busy needs control: 401 401 403 415
            DELETE /api/v1/extensions/201/forwarding/busy needs control: 401 401 403 422
            POST /api/v1/queues/600/members/201/pause needs control: 401 401 403 422
            POST /api/v1/queues/600/members/201/unpause needs control: 401 401 403 422"#]]
        .assert_eq(&shown.join("\n"));
        state
            .store
            .revoke_token("control-token", Utc::now())
            .await
            .unwrap();
        let revoked = status_of(
            &state,
            "POST",
            "/api/v1/calls/1.1/hangup",
            Some("control-token"),
        );
        assert_eq!(revoked.await, 401);
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_unread() {
        let (state, _dir) = state().await;
        let body = format!(
            r#"{{"extension":"101","number":"1","caller_name":"{}"}}"#,
            "x".repeat(MAX_BODY)
        );
        let req = Request::post("/api/v1/calls")
            .header("Authorization", "Bearer secret-token")
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = app(state).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_body_is_cut_off() {
        let (state, _dir) = state().await;
        // Paused clock: the timeout elapses as soon as nothing else can run; no real waiting.
        tokio::time::pause();
        let never_ends = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        let req = Request::post("/api/v1/calls")
            .header("Authorization", "Bearer secret-token")
            .header("Content-Type", "application/json")
            .body(Body::from_stream(never_ends))
            .unwrap();
        let resp = app(state).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    }

    /// An inbound call answered by 201 after 5 s, 60 s of talk.
    fn answered_call(at: DateTime<Utc>) -> calls::CallRecord {
        calls::CallRecord {
            id: "1795388070.1".into(),
            direction: calls::Direction::Inbound,
            from: Some("+74951234567".into()),
            to: Some("84950000000".into()),
            caller_name: None,
            started_at: at,
            answered_at: Some(at + chrono::TimeDelta::seconds(5)),
            ended_at: at + chrono::TimeDelta::seconds(65),
            ring_seconds: 5,
            talk_seconds: 60,
            disposition: Disposition::Answered,
            answered_by: Some("201".into()),
            rang: vec!["201".into()],
            transfers: Vec::new(),
            queue: None,
            recording: None,
            legs: Vec::new(),
            provenance: Default::default(),
            timeline: Vec::new(),
        }
    }

    async fn send(app: Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let resp = app.oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn login(user: &str, password: &str) -> Request<Body> {
        let body = serde_json::json!({ "user": user, "password": password }).to_string();
        Request::post("/api/v1/login")
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_password_session_works_until_sign_out_and_guessing_is_slowed() {
        let (state, _dir) = state().await;
        let user = store::User {
            name: "olga".into(),
            scope: "control".into(),
            password_hash: crate::users::hash_password("correct horse"),
            extension: None,
            created_at: Utc::now(),
        };
        state.store.add_user(&user).await.unwrap();
        let mut shown = Vec::new();
        for (name, password) in [("olga", "wrong"), ("nobody", "correct horse")] {
            let (s, _, body) = send(app(state.clone()), login(name, password)).await;
            shown.push(format!("{name}/{password}: {} {body}", s.as_u16()));
        }
        let (s, _, body) = send(app(state.clone()), login("olga", "correct horse")).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let session: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = session["token"].as_str().unwrap().to_owned();
        shown.push(format!(
            "olga: scope {} user {}",
            session["scope"], session["user"]
        ));
        let (_, me) = get(app(state.clone()), "/api/v1/me", Some(&token)).await;
        shown.push(format!("me: {me}"));
        // The session has the user's scope: control, not admin.
        shown.push(format!(
            "hangup {} settings {}",
            status_of(&state, "POST", "/api/v1/calls/1.1/hangup", Some(&token)).await,
            status_of(&state, "GET", "/api/v1/settings", Some(&token)).await
        ));
        shown.push(format!(
            "logout {} then me {}",
            status_of(&state, "POST", "/api/v1/logout", Some(&token)).await,
            status_of(&state, "GET", "/api/v1/me", Some(&token)).await
        ));
        let bad = Request::post("/api/v1/login")
            .header("Content-Type", "application/json")
            .body(Body::from("{\"user\":\"olga\"}"))
            .unwrap();
        let (s, _, body) = send(app(state.clone()), bad).await;
        shown.push(format!("no password: {} {body}", s.as_u16()));
        // Three failures are free (typos; the sign-in above forgave the first); then each
        // attempt waits, even with the right password.
        for _ in 0..3 {
            send(app(state.clone()), login("olga", "wrong")).await;
        }
        let (s, headers, body) = send(app(state.clone()), login("olga", "correct horse")).await;
        shown.push(format!(
            "after 3 failures: {} retry-after {:?} {body}",
            s.as_u16(),
            headers.get("retry-after").unwrap()
        ));
        expect_test::expect![[r#"
            olga/wrong: 401 {"error":"wrong user name or password"}
            nobody/correct horse: 401 {"error":"wrong user name or password"}
            olga: scope "control" user "olga"
            me: {"scope":"control","user":"olga"}
            hangup 404 settings 403
            logout 204 then me 401
            no password: 422 {"error":"Failed to deserialize the JSON body into the target type: missing field `password` at line 1 column 15"}
            after 3 failures: 429 retry-after "1" {"error":"too many failed sign-ins for this user: try again in 1 s"}"#]].assert_eq(&shown.join("\n"));
    }

    #[tokio::test]
    async fn settings_show_the_config_with_secrets_masked() {
        let (state, _dir) = state().await;
        let config = crate::config::Config::parse(
            r#"
[database]
url = "postgres://pbxlink:hunter2@db/pbxlink"
[[pbx]]
name = "office"
secret = "s3cret"
[[crm]]
kind = "bitrix24"
name = "b24"
webhook_url = "https://portal.bitrix24.ru/rest/1/abcdef/"
"#,
            "pbxlink.toml",
        )
        .unwrap();
        let state = state.with_settings(config.settings_view());
        let (s, body) = get(app(state), "/api/v1/settings", Some("secret-token")).await;
        assert_eq!(s, StatusCode::OK);
        for secret in ["hunter2", "s3cret", "abcdef"] {
            assert!(!body.contains(secret), "{secret} shown: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        expect_test::expect![[r#"
            {
              "crm": [
                {
                  "kind": "bitrix24",
                  "name": "b24",
                  "webhook_url": "***"
                }
              ],
              "database": {
                "url": "postgres://pbxlink:***@db/pbxlink"
              },
              "pbx": [
                {
                  "name": "office",
                  "secret": "***"
                }
              ]
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&v["file"]).unwrap());
    }

    #[tokio::test]
    async fn a_dead_delivery_is_listed_and_retried_once() {
        let (state, _dir) = state().await;
        let at = DateTime::from_timestamp(1_795_388_070, 0).unwrap();
        let row = store::NewOutboxRow {
            connector: "b24".into(),
            kind: "call.ended".into(),
            payload: serde_json::json!({}),
            idempotency_key: "k1".into(),
        };
        let store = &state.store;
        store
            .save_call("pbx", &answered_call(at), &[row], at)
            .await
            .unwrap();
        let claimed = store
            .claim_outbox("w", 10, chrono::TimeDelta::seconds(30), at)
            .await
            .unwrap();
        store
            .mark_failed(
                claimed[0].id,
                "w",
                store::Failure::Permanent,
                "HTTP 400: bad portal",
                at,
            )
            .await
            .unwrap();
        let token = Some("secret-token");
        let (_, listed) = get(
            app(state.clone()),
            "/api/v1/outbox?state=dead&call=1795388070.1",
            token,
        )
        .await;
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let mut shown = vec![
            format!("rows {}", listed["rows"].as_array().unwrap().len()),
            format!("counts {}", listed["counts"]),
            format!("error {}", listed["rows"][0]["last_error"]),
        ];
        let retry = format!("/api/v1/outbox/{}/retry", claimed[0].id);
        for _ in 0..2 {
            let req = Request::post(&retry)
                .header("Authorization", "Bearer secret-token")
                .body(Body::empty())
                .unwrap();
            let (s, _, body) = send(app(state.clone()), req).await;
            shown.push(format!("retry: {} {body}", s.as_u16()));
        }
        let (s, body) = get(app(state), "/api/v1/outbox?state=lost", token).await;
        shown.push(format!("bad state: {} {body}", s.as_u16()));
        expect_test::expect![[r#"
            rows 1
            counts [{"crm":"b24","rows":1,"state":"dead"}]
            error "HTTP 400: bad portal"
            retry: 200 {"id":1,"state":"pending"}
            retry: 409 {"error":"no dead delivery 1: only dead ones are retried by hand"}
            bad state: 400 {"error":"unknown state \"lost\": expected pending, in_flight, delivered or dead"}"#]].assert_eq(&shown.join("\n"));
    }

    /// Four calls an hour apart on `office` (and one id on two PBXes): each journal filter
    /// picks its own calls, newest first; one call reads back whole, with its story.
    #[tokio::test]
    async fn the_journal_filters_and_one_call_with_its_timeline() {
        let (state, _dir) = state().await;
        let at = DateTime::from_timestamp(1_795_388_070, 0).unwrap(); // 2026-11-22T22:54:30Z
        let hours = |n| at + chrono::TimeDelta::hours(n);
        let step = |seconds, what: &str, detail: &str| calls::TimelineEntry {
            at: at + chrono::TimeDelta::seconds(seconds),
            what: what.into(),
            detail: detail.into(),
        };
        let answered = calls::CallRecord {
            id: "1.1".into(),
            timeline: vec![
                step(0, "started", "call from +74951234567 to 84950000000"),
                step(0, "ringing", "rang 201"),
                step(5, "answered", "answered by 201"),
                step(65, "hangup", "hung up by caller"),
            ],
            ..answered_call(at)
        };
        let missed = calls::CallRecord {
            id: "1.2".into(),
            from: Some("15551234567".into()),
            answered_at: None,
            answered_by: None,
            talk_seconds: 0,
            disposition: Disposition::NoAnswer,
            rang: vec!["202".into(), "203".into()],
            ..answered_call(hours(1))
        };
        let busy_outbound = calls::CallRecord {
            id: "1.3".into(),
            direction: calls::Direction::Outbound,
            from: Some("201".into()),
            to: Some("15557654321".into()),
            answered_at: None,
            answered_by: None,
            talk_seconds: 0,
            disposition: Disposition::Busy,
            rang: Vec::new(),
            ..answered_call(hours(2))
        };
        let internal = calls::CallRecord {
            id: "1.4".into(),
            direction: calls::Direction::Internal,
            from: Some("202".into()),
            to: Some("2010".into()),
            answered_by: Some("2010".into()),
            rang: vec!["2010".into()],
            ..answered_call(hours(3))
        };
        let twice = calls::CallRecord {
            id: "9.9".into(),
            ..answered_call(hours(-1))
        };
        for (pbx, call) in [
            ("office", &answered),
            ("office", &missed),
            ("office", &busy_outbound),
            ("office", &internal),
            ("office", &twice),
            ("branch", &twice),
        ] {
            state.store.save_call(pbx, call, &[], at).await.unwrap();
        }
        let token = Some("secret-token");
        let mut shown = Vec::new();
        for query in [
            "",
            "since=2026-11-22T23:54:30Z",
            "until=2026-11-22T23:54:30Z",
            "since=2026-11-22T23:54:30Z&until=2026-11-23T01:54:30Z",
            // Calls the extension placed, answered, or that rang it.
            "extension=201",
            "extension=2010",
            "extension=20",
            "disposition=no_answer",
            "extension=201&disposition=answered",
            "number=15551234567",
            "number=84950000000",
            "number=%2B74951234567",
            // An unescaped `+` (a space in a query string) is read as the `+` it was.
            "number=+74951234567",
            "limit=2",
        ] {
            let (s, body) = get(app(state.clone()), &format!("/api/v1/calls?{query}"), token).await;
            let page: serde_json::Value = serde_json::from_str(&body).unwrap();
            let calls: Vec<String> = page["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    format!(
                        "{}/{}",
                        c["pbx"].as_str().unwrap(),
                        c["id"].as_str().unwrap()
                    )
                })
                .collect();
            let more = if page["next_cursor"].is_null() {
                ""
            } else {
                " (more)"
            };
            shown.push(format!("{query}: {} {}{more}", s.as_u16(), calls.join(" ")));
        }
        for uri in ["/api/v1/calls/9.9", "/api/v1/calls/9.9?pbx=branch"] {
            let (s, body) = get(app(state.clone()), uri, token).await;
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            let what = body.get("error").unwrap_or(&body["pbx"]);
            shown.push(format!("{uri}: {} {what}", s.as_u16()));
        }
        expect_test::expect![[r#"
            : 200 office/1.4 office/1.3 office/1.2 office/1.1 office/9.9 branch/9.9
            since=2026-11-22T23:54:30Z: 200 office/1.4 office/1.3 office/1.2
            until=2026-11-22T23:54:30Z: 200 office/1.1 office/9.9 branch/9.9
            since=2026-11-22T23:54:30Z&until=2026-11-23T01:54:30Z: 200 office/1.3 office/1.2
            extension=201: 200 office/1.3 office/1.1 office/9.9 branch/9.9
            extension=2010: 200 office/1.4
            extension=20: 200 
            disposition=no_answer: 200 office/1.2
            extension=201&disposition=answered: 200 office/1.1 office/9.9 branch/9.9
            number=15551234567: 200 office/1.2
            number=84950000000: 200 office/1.2 office/1.1 office/9.9 branch/9.9
            number=%2B74951234567: 200 office/1.1 office/9.9 branch/9.9
            number=+74951234567: 200 office/1.1 office/9.9 branch/9.9
            limit=2: 200 office/1.4 office/1.3 (more)
            /api/v1/calls/9.9: 400 "call 9.9 exists on several PBXes (branch, office); name the PBX"
            /api/v1/calls/9.9?pbx=branch: 200 "branch""#]]
        .assert_eq(&shown.join("\n"));
        let (s, body) = get(app(state), "/api/v1/calls/1.1", token).await;
        assert_eq!(s, StatusCode::OK);
        let call: serde_json::Value = serde_json::from_str(&body).unwrap();
        expect_test::expect![[r#"
            {
              "answered_at": "2026-11-22T22:54:35Z",
              "answered_by": "201",
              "caller_name": null,
              "direction": "inbound",
              "disposition": "answered",
              "ended_at": "2026-11-22T22:55:35Z",
              "from": "+74951234567",
              "id": "1.1",
              "legs": [],
              "pbx": "office",
              "queue": null,
              "rang": [
                "201"
              ],
              "recording": null,
              "ring_seconds": 5,
              "source": "ami",
              "started_at": "2026-11-22T22:54:30Z",
              "talk_seconds": 60,
              "timeline": [
                {
                  "at": "2026-11-22T22:54:30Z",
                  "detail": "call from +74951234567 to 84950000000",
                  "what": "started"
                },
                {
                  "at": "2026-11-22T22:54:30Z",
                  "detail": "rang 201",
                  "what": "ringing"
                },
                {
                  "at": "2026-11-22T22:54:35Z",
                  "detail": "answered by 201",
                  "what": "answered"
                },
                {
                  "at": "2026-11-22T22:55:35Z",
                  "detail": "hung up by caller",
                  "what": "hangup"
                }
              ],
              "to": "84950000000",
              "transfers": []
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&call).unwrap());
    }

    #[tokio::test]
    async fn calls_export_as_csv_by_query_or_accept_header() {
        let (state, _dir) = state().await;
        let at = DateTime::from_timestamp(1_795_388_070, 0).unwrap();
        let mut record = answered_call(at);
        record.caller_name = Some("=HYPERLINK(\"evil\"), Ivan".into());
        state
            .store
            .save_call("pbx", &record, &[], at)
            .await
            .unwrap();
        let (s, by_query) = get(
            app(state.clone()),
            "/api/v1/calls?format=csv",
            Some("secret-token"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        expect_test::expect![[r#"
            id,pbx,direction,from,to,caller_name,started_at,answered_at,ended_at,ring_seconds,talk_seconds,disposition,answered_by,queue
            1795388070.1,pbx,inbound,+74951234567,84950000000,"'=HYPERLINK(""evil""), Ivan",2026-11-22T22:54:30Z,2026-11-22T22:54:35Z,2026-11-22T22:55:35Z,5,60,answered,201,
        "#]].assert_eq(&by_query);
        let req = Request::get("/api/v1/calls")
            .header("Authorization", "Bearer secret-token")
            .header("Accept", "text/csv")
            .body(Body::empty())
            .unwrap();
        let resp = app(state).oneshot(req).await.unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(body, by_query.as_bytes());
    }

    #[tokio::test]
    async fn the_openapi_document_lists_exactly_the_guarded_routes() {
        let (state, _dir) = state().await;
        let (s, body) = get(app(state), "/api/v1/openapi.json", Some("secret-token")).await;
        assert_eq!(s, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                // Path parameters get the example values the guarded-route table uses.
                let path = [
                    ("{id}", "1.1"),
                    ("{ext}", "201"),
                    ("{kind}", "busy"),
                    ("{queue}", "600"),
                    ("{member}", "201"),
                ]
                .iter()
                .fold(format!("/api/v1{path}"), |p, (param, value)| {
                    p.replace(param, value)
                });
                // Open operations (`"security": []`, the sign-in) need no token.
                let methods: Vec<String> = ops
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, op)| op.get("security") != Some(&serde_json::json!([])))
                    .map(|(method, _)| method.clone())
                    .collect();
                methods
                    .into_iter()
                    .map(move |m| format!("{} {path}", m.to_uppercase()))
            })
            .collect();
        let mut served: Vec<String> = GUARDED
            .iter()
            .filter(|(_, uri, _)| uri.starts_with("/api/v1"))
            .map(|(method, uri, _)| format!("{method} {uri}"))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    #[tokio::test]
    async fn the_allow_list_refuses_other_addresses_and_unknown_peers() {
        let (state, _dir) = state().await;
        let state = state.with_allow_list(vec!["10.0.0.0/8".parse().unwrap()]);
        let mut shown = Vec::new();
        for peer in [
            Some("10.1.2.3:5000"),
            Some("[::ffff:10.9.9.9]:5000"),
            Some("192.168.1.1:5000"),
            None,
        ] {
            let mut service = app(state.clone());
            if let Some(p) = peer {
                service = service.layer(axum::extract::connect_info::MockConnectInfo(
                    p.parse::<SocketAddr>().unwrap(),
                ));
            }
            let (s, _) = get(service.clone(), "/health", None).await;
            // A recording link is checked by its signature alone, whoever asks.
            let (link, body) = get(service, "/recordings/00.1.00.mp3", None).await;
            shown.push(format!(
                "{}: {} recording link {} {body}",
                peer.unwrap_or("unknown"),
                s.as_u16(),
                link.as_u16()
            ));
        }
        expect_test::expect![[r#"
            10.1.2.3:5000: 200 recording link 404 {"error":"recordings are not enabled: add a [recordings] section to the config"}
            [::ffff:10.9.9.9]:5000: 200 recording link 404 {"error":"recordings are not enabled: add a [recordings] section to the config"}
            192.168.1.1:5000: 403 recording link 404 {"error":"recordings are not enabled: add a [recordings] section to the config"}
            unknown: 403 recording link 404 {"error":"recordings are not enabled: add a [recordings] section to the config"}"#]].assert_eq(&shown.join("\n"));
    }
}
