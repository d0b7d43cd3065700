//! The live event stream of the running binary (demo PBX): click-to-call shows up on
//! `/api/v1/events`, and a client that was away while traffic kept flowing reconnects with
//! `Last-Event-ID` and gets exactly the events it missed, then live ones, with no gap and no
//! duplicate.

use serde_json::Value;

mod gateway;
use gateway::Gateway;

const TOKEN: &str = "stream-test-admin-token";

/// One open SSE stream, parsed event by event.
struct Sse {
    resp: reqwest::Response,
    pending: String,
}

/// An SSE event: its id (none for `resync`), name and JSON data.
#[derive(Debug)]
struct SseEvent {
    id: Option<u64>,
    name: String,
    data: Value,
}

impl Sse {
    async fn open(base: &str, query: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/api/v1/events?{query}"))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap().error_for_status().unwrap();
        Sse {
            resp,
            pending: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_owned())
                };
                // Keep-alive comments have no event.
                let Some(name) = field("event:") else {
                    continue;
                };
                return SseEvent {
                    id: field("id:").map(|id| id.parse().unwrap()),
                    name,
                    data: serde_json::from_str(&field("data:").unwrap()).unwrap(),
                };
            }
            let chunk = self.resp.chunk().await.unwrap().expect("stream ended");
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn click_to_call_appears_on_the_stream_of_the_agents_extension() {
    let gw = Gateway::start(TOKEN);
    let mut stream = Sse::open(&gw.base, "extension=201", None).await;
    let number = "15559990177";
    let placed: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/calls", gw.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "extension": "201", "number": number }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let call_id = placed["call_id"].as_str().unwrap().to_owned();
    // Other demo calls involving 201 may come first.
    let started = loop {
        let ev = stream.next().await;
        if ev.name == "call.started" && ev.data["to"] == number {
            break ev;
        }
    };
    assert_eq!(started.data["call_id"], call_id.as_str(), "{started:?}");
    assert_eq!(started.data["from"], "201", "{started:?}");
}

/// The next three events after `last_seen` off a stream that stays connected: what a client
/// that left after `last_seen` misses.
async fn missed_while_away(watcher: &mut Sse, last_seen: u64) -> Vec<SseEvent> {
    let mut missed = Vec::new();
    while missed.len() < 3 {
        let ev = watcher.next().await;
        if ev.id > Some(last_seen) {
            assert_eq!(ev.id, Some(last_seen + 1 + missed.len() as u64), "{ev:?}");
            missed.push(ev);
        }
    }
    missed
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_the_events_it_missed() {
    let gw = Gateway::start(TOKEN);
    // Connected first and throughout: sees every event the other client sees, and those it
    // misses while away.
    let mut watcher = Sse::open(&gw.base, "", None).await;
    let mut first = Sse::open(&gw.base, "", None).await;
    let mut last_seen = first.next().await.id.unwrap();
    for _ in 0..3 {
        let ev = first.next().await;
        assert_eq!(
            ev.id,
            Some(last_seen + 1),
            "a gap in one connection: {ev:?}"
        );
        last_seen += 1;
    }
    // Disconnect, and stay away until the demo PBX has made three more events.
    drop(first);
    let missed = missed_while_away(&mut watcher, last_seen).await;
    let mut resumed = Sse::open(&gw.base, "", Some(last_seen)).await;
    for missed in missed {
        let ev = resumed.next().await;
        assert_eq!(
            (ev.id, &ev.name, &ev.data),
            (missed.id, &missed.name, &missed.data),
            "not the missed one"
        );
        last_seen += 1;
    }
    // Then live events, with no gap and no repeat after the replayed ones.
    for _ in 0..3 {
        let ev = resumed.next().await;
        assert_eq!(ev.id, Some(last_seen + 1), "missed or repeated: {ev:?}");
        last_seen += 1;
    }
}

/// One WebSocket on `/api/v1/events`; browsers cannot set headers there, so the token and
/// the resume point go in the query.
async fn websocket(
    base: &str,
    last_event_id: Option<u64>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut url = format!(
        "{}/api/v1/events?access_token={TOKEN}",
        base.replacen("http", "ws", 1)
    );
    if let Some(id) = last_event_id {
        url += &format!("&last_event_id={id}");
    }
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next live event's `seq` and `type` off a WebSocket.
async fn ws_next(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u64, String) {
    use futures::StreamExt as _;
    loop {
        let message = socket.next().await.expect("socket closed").unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).unwrap();
            let seq = event["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no seq: {event}"));
            return (seq, event["type"].as_str().unwrap().to_owned());
        }
    }
}

#[tokio::test]
async fn a_websocket_client_resumes_with_exactly_the_events_it_missed() {
    let gw = Gateway::start(TOKEN);
    let mut watcher = Sse::open(&gw.base, "", None).await;
    let mut first = websocket(&gw.base, None).await;
    let (mut last_seen, _) = ws_next(&mut first).await;
    for _ in 0..3 {
        let (seq, kind) = ws_next(&mut first).await;
        assert_eq!(seq, last_seen + 1, "a gap in one connection ({kind})");
        last_seen = seq;
    }
    // Gone while the demo PBX makes three more events.
    first.close(None).await.unwrap();
    drop(first);
    let missed = missed_while_away(&mut watcher, last_seen).await;
    let mut resumed = websocket(&gw.base, Some(last_seen)).await;
    for missed in missed {
        let (seq, kind) = ws_next(&mut resumed).await;
        assert_eq!(
            (Some(seq), kind),
            (missed.id, missed.name),
            "not the missed one"
        );
        last_seen = seq;
    }
    for _ in 0..3 {
        let (seq, kind) = ws_next(&mut resumed).await;
        assert_eq!(seq, last_seen + 1, "missed or repeated ({kind})");
        last_seen = seq;
    }
}
