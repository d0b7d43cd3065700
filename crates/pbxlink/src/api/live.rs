//! The live event stream (call events, extension presence and forwarding changes): a bounded
//! ring of recent, seq-numbered events, so a client that reconnects with `Last-Event-ID` gets
//! exactly the events it missed, fanned out over SSE and WebSocket and filtered by extension
//! or by a web UI user's extension.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use calls::{CallEvent, CallEventKind, ExtensionState};
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{ApiError, AppState};

/// An event as it goes out on the live stream, numbered so a client can resume.
#[derive(Clone, Debug, Serialize)]
pub struct LiveEvent {
    /// Position in this process's stream (SSE `id`), counted across all PBXes.
    pub seq: u64,
    /// The PBX the call or extension is on.
    pub pbx: String,
    /// The event.
    #[serde(flatten)]
    pub event: Live,
    /// Every number the event concerns (for a call: every one it has involved so far, so an
    /// `Ended` event still reaches the panel of the extension that answered it).
    #[serde(skip)]
    pub parties: Vec<String>,
}

/// What a live event is about; its JSON `type` says which.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Live {
    /// `call.*`.
    Call(CallEvent),
    /// `extension.*`.
    Extension(ExtensionEvent),
}

/// A change of an extension's presence or forwarding.
#[derive(Clone, Debug, Serialize)]
pub struct ExtensionEvent {
    /// When pbxlink saw it.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: ExtensionChange,
}

/// `extension.state` (presence) or `extension.forwarding` (DND/forwarding set here).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type")]
pub enum ExtensionChange {
    #[serde(rename = "extension.state")]
    State(ExtensionState),
    #[serde(rename = "extension.forwarding")]
    Forwarding(pbx::extensions::Forwarding),
}

impl Live {
    /// The SSE event name (also the `type` field of its JSON).
    pub fn name(&self) -> &'static str {
        match self {
            Live::Call(c) => event_name(&c.kind),
            Live::Extension(e) => match e.change {
                ExtensionChange::State(_) => "extension.state",
                ExtensionChange::Forwarding(_) => "extension.forwarding",
            },
        }
    }
}

/// What a subscriber receives: an event, or notice that it cannot be given what it missed.
#[derive(Clone, Debug)]
pub enum StreamItem {
    /// The next event.
    Event(Arc<LiveEvent>),
    /// Events were lost to this client (it fell out of the ring, or its id is from an
    /// earlier run): it must reload `/api/v1/live` rather than trust the stream.
    Resync,
}

/// The ring and the fan-out. Publishing and subscribing take the same lock, so a subscriber's
/// backlog and its live receiver meet exactly: nothing twice, nothing missing.
#[derive(Debug)]
pub struct LiveHub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

#[derive(Debug)]
struct Ring {
    last_seq: u64,
    events: VecDeque<Arc<LiveEvent>>,
    capacity: usize,
}

impl LiveHub {
    /// A hub remembering the last `capacity` events (also how far a live client may lag),
    /// numbering them from 1.
    pub fn new(capacity: usize) -> Self {
        Self::numbered_after(capacity, 0)
    }

    /// A hub whose first event gets `last_seq + 1`. `pbxlink run` starts from the clock (in
    /// microseconds), so the ids of an earlier run are all smaller than this run's: a client
    /// resuming with one across a restart gets `resync`, never another run's events under the
    /// ids it missed.
    pub fn numbered_after(capacity: usize, last_seq: u64) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        LiveHub {
            ring: Mutex::new(Ring {
                last_seq,
                events: VecDeque::with_capacity(capacity),
                capacity,
            }),
            tx,
        }
    }

    /// Numbers the event, keeps it in the ring and fans it out.
    pub fn publish(&self, pbx: &str, event: Live, parties: Vec<String>) {
        let mut ring = self.ring.lock().expect("live ring lock poisoned");
        ring.last_seq += 1;
        let live = Arc::new(LiveEvent {
            seq: ring.last_seq,
            pbx: pbx.to_owned(),
            event,
            parties,
        });
        if ring.events.len() == ring.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::clone(&live));
        // Sent under the lock so the channel's order is the ring's order. No subscriber is
        // not an error: nobody is watching.
        let _ = self.tx.send(live);
    }

    /// The events after `last_seen` still in the ring (or a resync if some are gone), and a
    /// receiver for everything published after them.
    pub fn subscribe(
        &self,
        last_seen: Option<u64>,
    ) -> (Vec<StreamItem>, broadcast::Receiver<Arc<LiveEvent>>) {
        let ring = self.ring.lock().expect("live ring lock poisoned");
        let rx = self.tx.subscribe();
        let Some(last_seen) = last_seen else {
            return (Vec::new(), rx);
        };
        let oldest_kept = ring.events.front().map_or(ring.last_seq + 1, |e| e.seq);
        let mut backlog = Vec::new();
        if last_seen > ring.last_seq || last_seen + 1 < oldest_kept {
            backlog.push(StreamItem::Resync);
        }
        backlog.extend(
            ring.events
                .iter()
                .filter(|e| e.seq > last_seen)
                .cloned()
                .map(StreamItem::Event),
        );
        (backlog, rx)
    }

    /// The subscriber's whole stream: backlog, then live events, `Resync` when it lags.
    pub fn stream(&self, last_seen: Option<u64>) -> BoxStream<'static, StreamItem> {
        let (backlog, rx) = self.subscribe(last_seen);
        let live = stream::unfold(rx, |mut rx| async move {
            let item = match rx.recv().await {
                Ok(ev) => StreamItem::Event(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => StreamItem::Resync,
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((item, rx))
        });
        stream::iter(backlog).chain(live).boxed()
    }
}

/// `GET /api/v1/events` parameters.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Only events of calls involving this extension.
    extension: Option<String>,
    /// Only events of calls involving this web UI user's extension.
    user: Option<String>,
    /// Resume after this event (for clients that cannot send the `Last-Event-ID` header).
    last_event_id: Option<u64>,
}

/// `GET /api/v1/events`: Server-Sent Events, or a WebSocket when the client asks to upgrade.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let header_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "Last-Event-ID is not a number")
                })?,
        ),
        None => None,
    };
    let extension = match (q.extension, q.user) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give extension or user, not both",
            ))
        }
        (None, Some(user)) => Some(user_extension(&state, &user).await?),
        (extension, None) => extension,
    };
    let items = state
        .live
        .stream(header_id.or(q.last_event_id))
        .filter(move |item| std::future::ready(wanted(item, extension.as_deref())))
        .boxed();
    Ok(match ws {
        Ok(upgrade) => upgrade
            .on_upgrade(move |socket| send_over_websocket(socket, items))
            .into_response(),
        Err(_) => {
            let sse = items.map(|item| Ok::<_, Infallible>(sse_event(&item)));
            Sse::new(sse)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
    })
}

/// The extension of web UI user `name` (`pbxlink user add --extension`), read when the
/// stream opens.
async fn user_extension(state: &AppState, name: &str) -> Result<String, ApiError> {
    let user = state
        .store
        .user(name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no user {name:?}")))?;
    user.extension.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("user {name:?} has no extension (pbxlink user add --extension)"),
        )
    })
}

fn wanted(item: &StreamItem, extension: Option<&str>) -> bool {
    match (item, extension) {
        (StreamItem::Event(ev), Some(ext)) => ev.parties.iter().any(|p| p == ext),
        _ => true,
    }
}

fn sse_event(item: &StreamItem) -> Event {
    match item {
        StreamItem::Event(ev) => Event::default()
            .id(ev.seq.to_string())
            .event(ev.event.name())
            .json_data(ev)
            .expect("a live event always serializes"),
        StreamItem::Resync => Event::default().event("resync").data("{}"),
    }
}

fn ws_text(item: &StreamItem) -> String {
    match item {
        StreamItem::Event(ev) => serde_json::to_string(ev).expect("a live event always serializes"),
        StreamItem::Resync => r#"{"type":"resync"}"#.to_owned(),
    }
}

async fn send_over_websocket(mut socket: WebSocket, mut items: BoxStream<'static, StreamItem>) {
    loop {
        tokio::select! {
            item = items.next() => {
                let Some(item) = item else { return };
                if socket.send(Message::Text(ws_text(&item).into())).await.is_err() {
                    return;
                }
            }
            // The client only ever closes; anything else from it is ignored.
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// The SSE event name of each kind (also the `type` field of its JSON).
pub fn event_name(kind: &CallEventKind) -> &'static str {
    match kind {
        CallEventKind::Started { .. } => "call.started",
        CallEventKind::Ringing { .. } => "call.ringing",
        CallEventKind::Answered { .. } => "call.answered",
        CallEventKind::Transferred { .. } => "call.transferred",
        CallEventKind::Ended { .. } => "call.ended",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use chrono::DateTime;
    use expect_test::{expect, Expect};
    use std::collections::HashMap;
    use tower::ServiceExt;

    fn ringing(call_id: &str, extension: &str) -> CallEvent {
        CallEvent {
            call_id: call_id.into(),
            at: DateTime::from_timestamp(1_795_388_070, 0).unwrap(),
            kind: CallEventKind::Ringing {
                extensions: vec![extension.into()],
            },
        }
    }

    fn hub_with(capacity: usize, events: u64) -> LiveHub {
        let hub = LiveHub::new(capacity);
        for n in 1..=events {
            hub.publish(
                "pbx",
                Live::Call(ringing(&n.to_string(), "101")),
                vec!["101".into()],
            );
        }
        hub
    }

    fn check_backlog(hub: &LiveHub, last_seen: Option<u64>, expect: Expect) {
        let (backlog, _rx) = hub.subscribe(last_seen);
        let shown: Vec<String> = backlog
            .iter()
            .map(|item| match item {
                StreamItem::Event(ev) => ev.seq.to_string(),
                StreamItem::Resync => "resync".to_owned(),
            })
            .collect();
        expect.assert_eq(&shown.join(" "));
    }

    #[test]
    fn resume_replays_exactly_the_missed_events_or_says_resync() {
        let hub = hub_with(4, 6); // the ring holds 3..=6
        check_backlog(&hub, None, expect![[""]]);
        check_backlog(&hub, Some(6), expect![[""]]);
        check_backlog(&hub, Some(4), expect![["5 6"]]);
        check_backlog(&hub, Some(2), expect![["3 4 5 6"]]);
        check_backlog(&hub, Some(1), expect![["resync 3 4 5 6"]]);
        // An id from an earlier run of the process: its numbering means nothing now.
        check_backlog(&hub, Some(7), expect![["resync"]]);
        check_backlog(&LiveHub::new(4), Some(1), expect![["resync"]]);
        // A restarted process numbered from a later base: any id of the earlier run resyncs.
        let restarted = LiveHub::numbered_after(4, 1_000);
        restarted.publish("pbx", Live::Call(ringing("1", "101")), vec!["101".into()]);
        check_backlog(&restarted, Some(6), expect![["resync 1001"]]);
        check_backlog(&restarted, Some(1_000), expect![["1001"]]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_to_resync() {
        let hub = LiveHub::new(2);
        let mut stream = hub.stream(None);
        for n in 1..=5 {
            hub.publish(
                "pbx",
                Live::Call(ringing(&n.to_string(), "101")),
                Vec::new(),
            );
        }
        assert!(matches!(stream.next().await, Some(StreamItem::Resync)));
        assert!(matches!(stream.next().await, Some(StreamItem::Event(ev)) if ev.seq == 4));
    }

    async fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let store = store::Store::connect(&url).await.unwrap();
        let state = AppState::new(store, &["secret-token".to_owned()], HashMap::new());
        (state, dir)
    }

    /// Opens `/api/v1/events` and reads `n` SSE events as `id event call_id` lines.
    async fn read_sse(state: &AppState, uri: &str, last_id: Option<&str>, n: usize) -> String {
        let mut req = Request::get(uri).header("Authorization", "Bearer secret-token");
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = crate::api::app(state.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body().into_data_stream();
        let mut text = String::new();
        let mut seen = Vec::new();
        while seen.len() < n {
            let chunk = body.next().await.expect("stream ended early").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::trim)
                        .unwrap_or("-")
                        .to_owned()
                };
                let data: serde_json::Value =
                    serde_json::from_str(&field("data:")).unwrap_or_default();
                seen.push(format!(
                    "{} {} {}",
                    field("id:"),
                    field("event:"),
                    data["call_id"].as_str().unwrap_or("-")
                ));
            }
        }
        seen.join("\n")
    }

    #[tokio::test]
    async fn sse_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
        let (state, _dir) = state().await;
        state.publish("pbx", ringing("a", "101"));
        state.publish("pbx", ringing("b", "102"));
        let first = read_sse(&state, "/api/v1/events?last_event_id=0", None, 2).await;
        expect![[r#"
            1 call.ringing a
            2 call.ringing b"#]]
        .assert_eq(&first);
        // The client is gone; these happen while it reconnects.
        state.publish("pbx", ringing("c", "101"));
        state.publish("pbx", ringing("d", "103"));
        let resumed = read_sse(&state, "/api/v1/events", Some("2"), 2).await;
        expect![[r#"
            3 call.ringing c
            4 call.ringing d"#]]
        .assert_eq(&resumed);
        let only_101 = read_sse(&state, "/api/v1/events?extension=101", Some("0"), 2).await;
        expect![[r#"
            1 call.ringing a
            3 call.ringing c"#]]
        .assert_eq(&only_101);
    }

    #[tokio::test]
    async fn a_users_stream_follows_their_extension_and_unknown_users_are_refused() {
        let (state, _dir) = state().await;
        for (name, extension) in [("olga", Some("101")), ("ivan", None)] {
            let user = store::User {
                name: name.into(),
                scope: "read".into(),
                password_hash: String::new(),
                extension: extension.map(Into::into),
                created_at: DateTime::from_timestamp(1_795_388_070, 0).unwrap(),
            };
            state.store.add_user(&user).await.unwrap();
        }
        state.publish("pbx", ringing("a", "101"));
        state.publish("pbx", ringing("b", "102"));
        state.publish("pbx", ringing("c", "101"));
        let olga = read_sse(&state, "/api/v1/events?user=olga", Some("0"), 2).await;
        expect![[r#"
            1 call.ringing a
            3 call.ringing c"#]]
        .assert_eq(&olga);
        let mut refused = Vec::new();
        for query in ["user=nobody", "user=ivan", "user=olga&extension=101"] {
            let req = Request::get(format!("/api/v1/events?{query}"))
                .header("Authorization", "Bearer secret-token")
                .body(Body::empty())
                .unwrap();
            let resp = crate::api::app(state.clone()).oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            refused.push(format!(
                "{query}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        expect![[r#"
            user=nobody: 404 {"error":"no user \"nobody\""}
            user=ivan: 422 {"error":"user \"ivan\" has no extension (pbxlink user add --extension)"}
            user=olga&extension=101: 400 {"error":"give extension or user, not both"}"#]]
        .assert_eq(&refused.join("\n"));
    }

    #[tokio::test]
    async fn a_malformed_last_event_id_is_a_400() {
        let (state, _dir) = state().await;
        let req = Request::get("/api/v1/events")
            .header("Authorization", "Bearer secret-token")
            .header("Last-Event-ID", "yesterday")
            .body(Body::empty())
            .unwrap();
        let resp = crate::api::app(state).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
