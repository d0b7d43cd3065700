//! DND, forwarding and queue pause through the HTTP API against the replay AMI server
//! playing a real Asterisk 22 transcript: the exact AMI actions each change sends, what the
//! live stream shows, and bad input refused with nothing sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ami::Action;
use axum::body::Body;
use axum::http::Request;
use expect_test::expect;
use pbx::ami_client::{AmiClient, ClientConfig, LinkEvent};
use pbx::testing::fields;
use tower::ServiceExt;

use crate::api::AppState;
use crate::config::Config;
use sim::replay_server::{ReplayOptions, ReplayServer, Transcript};

pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
/// Upper bound for anything a test waits for; only a hung test ever reaches it.
const HANG: Duration = Duration::from_secs(20);

/// The gateway's side: an AMI link to `server` feeding presence like `pbxlink run` does.
async fn gateway(server: &ReplayServer) -> (AppState, AmiClient, tempfile::TempDir) {
    let addr = server.local_addr();
    let text = format!(
        "[[pbx]]\nname = \"pbx\"\nhost = \"{}\"\nport = {}\nusername = \"harness\"\n\
         secret = \"harness-secret\"\nping_interval = 3600\n",
        addr.ip(),
        addr.port()
    );
    let config = ClientConfig::from_pbx(&Config::parse(&text, "test").unwrap().pbx[0]).unwrap();
    let (client, mut events) = AmiClient::start(config);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = store::Store::connect(&url).await.unwrap();
    let pbxes = HashMap::from([("pbx".to_owned(), client.clone())]);
    let state = AppState::new(store, &["secret-token".to_owned()], pbxes);
    let (feeder, link) = (state.clone(), client.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                LinkEvent::Connected { .. } => {
                    crate::tracking::resync_presence(&link, &feeder, "pbx").await
                }
                LinkEvent::Event(msg) => feeder.presence_event("pbx", &msg),
                LinkEvent::Disconnected { .. } => {}
            }
        }
    });
    (state, client, dir)
}

async fn call(state: &AppState, method: &str, uri: &str, body: Option<&str>) -> String {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("Authorization", "Bearer secret-token");
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let resp = crate::api::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    format!("{status} {}", String::from_utf8_lossy(&body))
}

#[tokio::test]
async fn changes_send_exactly_freepbx_actions_and_bad_input_sends_nothing() {
    let path = Path::new(FIXTURES).join("asterisk-22-pjsip/ami/04_ivr_queue.rx.raw");
    let transcript = Transcript::load(&path).unwrap();
    let total = transcript.events().len();
    let server = ReplayServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        transcript,
        ReplayOptions::new("harness", "harness-secret"),
    )
    .await
    .unwrap();
    let (state, client, _dir) = gateway(&server).await;
    // The whole call plays out first: presence then knows the hints and queues, as the
    // transcript's own ExtensionStatus / DeviceStateChange / QueueMemberStatus left them.
    let played = wait_for(&state, "/api/v1/extensions", |body| {
        server.events_sent() == total && body.matches("NOT_INUSE").count() == 2
    })
    .await;
    expect![[r#"200 [{"context":"ext-local","devices":{"PJSIP/201":"NOT_INUSE"},"extension":"201","hint":"PJSIP/201&Custom:DND201","pbx":"pbx","queues":[{"in_call":false,"interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":false,"paused_reason":"","queue":"600"},{"in_call":false,"interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":false,"paused_reason":"","queue":"601"}],"state":"idle"},{"context":"ext-local","devices":{"PJSIP/203":"NOT_INUSE"},"extension":"203","hint":"PJSIP/203&Custom:DND203","pbx":"pbx","queues":[{"in_call":false,"interface":"Local/203@from-queue/n","name":"Carol Chen","paused":false,"paused_reason":"","queue":"600"}],"state":"idle"}]"#]]
    .assert_eq(&played);
    let mark = state.live_backlog().last().map_or(0, |e| e.seq);
    // FreePBX knows 201's devices; the replay server starts with an empty AstDB.
    client
        .send(Action::db_put("AMPUSER", "201/device", "201"))
        .await
        .unwrap();
    let before = server.actions().len();
    let mut replies = Vec::new();
    for (method, uri, body) in [
        ("GET", "/api/v1/extensions", None),
        ("PUT", "/api/v1/extensions/201/dnd", None),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/unconditional",
            Some(r#"{"to":"+15557654321"}"#),
        ),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/busy",
            Some(r#"{"to":"202"}"#),
        ),
        (
            "DELETE",
            "/api/v1/extensions/201/forwarding/unconditional",
            None,
        ),
        ("DELETE", "/api/v1/extensions/201/dnd", None),
        ("DELETE", "/api/v1/extensions/201/forwarding/noanswer", None),
        ("GET", "/api/v1/extensions/201/forwarding", None),
        (
            "POST",
            "/api/v1/queues/600/members/201/pause",
            Some(r#"{"reason":"lunch"}"#),
        ),
        (
            "POST",
            "/api/v1/queues/601/members/Local%2F201%40from-queue%2Fn/unpause",
            None,
        ),
    ] {
        replies.push(format!(
            "{method} {uri}: {}",
            call(&state, method, uri, body).await
        ));
    }
    let sent_by_good = server.actions().len() - before;
    for (method, uri, body) in [
        ("PUT", "/api/v1/extensions/299/dnd", None),
        ("PUT", "/api/v1/extensions/2x1/dnd", None),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/unconditional",
            Some(r#"{"to":"201"}"#),
        ),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/busy",
            Some(r#"{"to":"+201"}"#),
        ),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/busy",
            Some(r#"{"to":"12ab"}"#),
        ),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/noanswer",
            Some(r#"{"to":"202\r\nAction: Originate"}"#),
        ),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/sideways",
            Some(r#"{"to":"202"}"#),
        ),
        (
            "PUT",
            "/api/v1/extensions/201/forwarding/busy",
            Some(r#"{"number":"202"}"#),
        ),
        ("GET", "/api/v1/extensions/299/forwarding", None),
        ("POST", "/api/v1/queues/600/members/202/pause", None),
        (
            "POST",
            "/api/v1/queues/600/members/201/pause",
            Some(r#"{"why":"x"}"#),
        ),
        (
            "POST",
            "/api/v1/queues/600/members/201/pause",
            Some(r#"{"reason":"a\nb"}"#),
        ),
        ("GET", "/api/v1/extensions/201/forwarding?pbx=other", None),
    ] {
        replies.push(format!(
            "{method} {uri}: {}",
            call(&state, method, uri, body).await
        ));
    }
    expect![[r#"
        GET /api/v1/extensions: 200 [{"context":"ext-local","devices":{"PJSIP/201":"NOT_INUSE"},"extension":"201","hint":"PJSIP/201&Custom:DND201","pbx":"pbx","queues":[{"in_call":false,"interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":false,"paused_reason":"","queue":"600"},{"in_call":false,"interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":false,"paused_reason":"","queue":"601"}],"state":"idle"},{"context":"ext-local","devices":{"PJSIP/203":"NOT_INUSE"},"extension":"203","hint":"PJSIP/203&Custom:DND203","pbx":"pbx","queues":[{"in_call":false,"interface":"Local/203@from-queue/n","name":"Carol Chen","paused":false,"paused_reason":"","queue":"600"}],"state":"idle"}]
        PUT /api/v1/extensions/201/dnd: 200 {"extension":"201","dnd":true,"unconditional":null,"busy":null,"noanswer":null}
        PUT /api/v1/extensions/201/forwarding/unconditional: 200 {"extension":"201","dnd":true,"unconditional":"+15557654321","busy":null,"noanswer":null}
        PUT /api/v1/extensions/201/forwarding/busy: 200 {"extension":"201","dnd":true,"unconditional":"+15557654321","busy":"202","noanswer":null}
        DELETE /api/v1/extensions/201/forwarding/unconditional: 200 {"extension":"201","dnd":true,"unconditional":null,"busy":"202","noanswer":null}
        DELETE /api/v1/extensions/201/dnd: 200 {"extension":"201","dnd":false,"unconditional":null,"busy":"202","noanswer":null}
        DELETE /api/v1/extensions/201/forwarding/noanswer: 200 {"extension":"201","dnd":false,"unconditional":null,"busy":"202","noanswer":null}
        GET /api/v1/extensions/201/forwarding: 200 {"extension":"201","dnd":false,"unconditional":null,"busy":"202","noanswer":null}
        POST /api/v1/queues/600/members/201/pause: 200 {"interface":"Local/201@from-queue/n","paused":true,"pbx":"pbx","queue":"600","reason":"lunch"}
        POST /api/v1/queues/601/members/Local%2F201%40from-queue%2Fn/unpause: 200 {"interface":"Local/201@from-queue/n","paused":false,"pbx":"pbx","queue":"601","reason":""}
        PUT /api/v1/extensions/299/dnd: 404 {"error":"no extension 299 on PBX \"pbx\""}
        PUT /api/v1/extensions/2x1/dnd: 422 {"error":"\"2x1\" is not an extension number"}
        PUT /api/v1/extensions/201/forwarding/unconditional: 422 {"error":"extension 201 cannot forward to itself: every call would loop"}
        PUT /api/v1/extensions/201/forwarding/busy: 422 {"error":"extension 201 cannot forward to itself: every call would loop"}
        PUT /api/v1/extensions/201/forwarding/busy: 422 {"error":"\"12ab\" is not an extension or phone number (digits, optionally a leading +)"}
        PUT /api/v1/extensions/201/forwarding/noanswer: 422 {"error":"\"202\\r\\nAction: Originate\" is not an extension or phone number (digits, optionally a leading +)"}
        PUT /api/v1/extensions/201/forwarding/sideways: 404 {"error":"no forwarding \"sideways\": unconditional, busy or noanswer"}
        PUT /api/v1/extensions/201/forwarding/busy: 422 {"error":"Failed to deserialize the JSON body into the target type: number: unknown field `number`, expected `to` at line 1 column 9"}
        GET /api/v1/extensions/299/forwarding: 404 {"error":"no extension 299 on PBX \"pbx\""}
        POST /api/v1/queues/600/members/202/pause: 404 {"error":"no member \"202\" in queue \"600\" on PBX \"pbx\""}
        POST /api/v1/queues/600/members/201/pause: 422 {"error":"body: unknown field `why`, expected `reason` at line 1 column 6"}
        POST /api/v1/queues/600/members/201/pause: 422 {"error":"reason: at most 80 characters, no control characters"}
        GET /api/v1/extensions/201/forwarding?pbx=other: 422 {"error":"no PBX named \"other\""}"#]]
    .assert_eq(&replies.join("\n"));
    let sent = server.actions();
    assert_eq!(
        sent.len() - before,
        sent_by_good,
        "bad input reached the PBX"
    );
    let sent: Vec<String> = sent[before..].iter().map(fields).collect();
    expect![[r#"
        Action=DBGet Family=AMPUSER Key=201/device
        Action=DBPut Family=DND Key=201 Val=YES
        Action=Setvar Variable=DEVICE_STATE(Custom:DEVDND201) Value=BUSY
        Action=Setvar Variable=DEVICE_STATE(Custom:DND201) Value=BUSY
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=DBGet Family=AMPUSER Key=201/device
        Action=DBPut Family=CF Key=201 Val=+15557654321
        Action=Setvar Variable=DEVICE_STATE(Custom:DEVCF201) Value=BUSY
        Action=Setvar Variable=DEVICE_STATE(Custom:CF201) Value=BUSY
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=DBPut Family=CFB Key=201 Val=202
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=DBGet Family=AMPUSER Key=201/device
        Action=DBDel Family=CF Key=201
        Action=Setvar Variable=DEVICE_STATE(Custom:DEVCF201) Value=NOT_INUSE
        Action=Setvar Variable=DEVICE_STATE(Custom:CF201) Value=NOT_INUSE
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=DBGet Family=AMPUSER Key=201/device
        Action=DBDel Family=DND Key=201
        Action=Setvar Variable=DEVICE_STATE(Custom:DEVDND201) Value=UNAVAILABLE
        Action=Setvar Variable=DEVICE_STATE(Custom:DND201) Value=UNAVAILABLE
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=DBDel Family=CFU Key=201
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=DBGet Family=DND Key=201
        Action=DBGet Family=CF Key=201
        Action=DBGet Family=CFB Key=201
        Action=DBGet Family=CFU Key=201
        Action=QueuePause Interface=Local/201@from-queue/n Queue=600 Paused=true Reason=lunch
        Action=QueuePause Interface=Local/201@from-queue/n Queue=601 Paused=false"#]]
    .assert_eq(&sent.join("\n"));
    // The pause comes back as Asterisk's QueueMemberPause event, the DND device state as a
    // DeviceStateChange: presence shows both.
    let after = wait_for(&state, "/api/v1/extensions/201", |body| {
        body.contains(r#""paused":true"#)
    })
    .await;
    expect![[r#"200 {"context":"ext-local","devices":{"Custom:DND201":"UNAVAILABLE","PJSIP/201":"NOT_INUSE"},"extension":"201","hint":"PJSIP/201&Custom:DND201","pbx":"pbx","queues":[{"in_call":false,"interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":true,"paused_reason":"lunch","queue":"600"},{"in_call":false,"interface":"Local/201@from-queue/n","name":"Alice Anderson","paused":false,"paused_reason":"","queue":"601"}],"state":"idle"}"#]]
    .assert_eq(&after);
    // What a panel subscribed to 201 saw of the changes (in the order they were made).
    let shown: Vec<String> = state
        .live_backlog()
        .iter()
        .filter(|e| e.seq > mark && e.parties.iter().any(|p| p == "201"))
        .map(|e| {
            let json = serde_json::to_value(e).unwrap();
            let kind = json["type"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "extension.forwarding" => format!(
                    "{kind} dnd={} unconditional={} busy={} noanswer={}",
                    json["dnd"], json["unconditional"], json["busy"], json["noanswer"]
                ),
                _ => kind,
            }
        })
        .filter(|line| line != "extension.state")
        .collect();
    expect![[r#"
        extension.forwarding dnd=true unconditional=null busy=null noanswer=null
        extension.forwarding dnd=true unconditional="+15557654321" busy=null noanswer=null
        extension.forwarding dnd=true unconditional="+15557654321" busy="202" noanswer=null
        extension.forwarding dnd=true unconditional=null busy="202" noanswer=null
        extension.forwarding dnd=false unconditional=null busy="202" noanswer=null
        extension.forwarding dnd=false unconditional=null busy="202" noanswer=null"#]]
    .assert_eq(&shown.join("\n"));
    let states = state.live_backlog().iter().filter(|e| e.seq > mark).count() - shown.len();
    assert_eq!(
        states, 3,
        "DND on, DND off, pause: one extension.state each"
    );
}

/// GETs `uri` until `done` holds for its body (upper bound: [`HANG`]); the last body.
async fn wait_for(state: &AppState, uri: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let body = call(state, "GET", uri, None).await;
        if done(&body) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
