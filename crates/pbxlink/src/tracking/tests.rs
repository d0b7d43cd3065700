//! The tracking loop over a link that reconnects mid-call: the state lists read at a login
//! are applied in order with the events.

use std::time::Duration;

use bytes::BytesMut;
use sim::replay_server::Transcript;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::config::Config;
use pbx::ami_client::ClientConfig;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/asterisk-22/ami/01_inbound_answered.rx.raw"
);

/// Answers actions on `sock` (every list empty) until `last` is answered or the client
/// leaves.
async fn answer_actions(sock: &mut TcpStream, last: &str) {
    let mut decoder = ami::Decoder::without_banner();
    let mut buf = BytesMut::new();
    while sock.read_buf(&mut buf).await.unwrap_or(0) > 0 {
        while let Ok(Some(ami::Frame::Message(action))) = decoder.decode(&mut buf) {
            let id = action.action_id().unwrap_or_default().to_owned();
            let name = action.action().unwrap_or_default().to_owned();
            let mut out = format!("Response: Success\r\nActionID: {id}\r\n");
            if name == "Login" {
                out.push_str("Message: Authentication accepted\r\n\r\n");
            } else if name != "Ping" {
                out.push_str(&format!(
                    "EventList: start\r\n\r\nEvent: {name}Complete\r\nActionID: {id}\r\n\
                     EventList: Complete\r\nListItems: 0\r\n\r\n"
                ));
            } else {
                out.push_str("\r\n");
            }
            sock.write_all(out.as_bytes()).await.unwrap();
            if name == last {
                return;
            }
        }
    }
}

/// The link drops before the call is answered; at the next login Asterisk sends the rest
/// of the call (answer, hang-up) before its answer to `CoreShowChannels`, which lists no
/// channel any more. The list holds after those events: applied before them, it would end
/// the call unanswered and drop the answer that follows.
#[tokio::test]
async fn a_channel_list_read_at_login_applies_after_the_events_sent_before_it() {
    let transcript = Transcript::load(std::path::Path::new(FIXTURE)).unwrap();
    let events = transcript.events().to_vec();
    // Cut while the agent's phone rings: just after the last dial before the bridge.
    let bridged = events
        .iter()
        .position(|e| e.starts_with(b"Event: BridgeEnter"))
        .expect("the fixture call is bridged");
    let cut = 1 + events[..bridged]
        .iter()
        .rposition(|e| e.starts_with(b"Event: DialBegin"))
        .expect("the agent is dialed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first, rest) = (events[..cut].to_vec(), events[cut..].to_vec());
    tokio::spawn(async move {
        // Connection 1: the login's lists, then the call up to the answer; then it drops.
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        answer_actions(&mut sock, "QueueStatus").await;
        for e in &first {
            sock.write_all(e).await.unwrap();
        }
        drop(sock);
        // Connection 2: the rest of the call right after the login, before any answer.
        let (mut sock, _) = listener.accept().await.unwrap();
        sock.write_all(b"Asterisk Call Manager/11.0.0\r\n")
            .await
            .unwrap();
        answer_actions(&mut sock, "Login").await;
        for e in &rest {
            sock.write_all(e).await.unwrap();
        }
        answer_actions(&mut sock, "").await;
    });

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    let text = format!(
        "[[pbx]]\nname = \"pbx\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"u\"\n\
         secret = \"s\"\nauth = \"plain\"\nping_interval = 3600\nreconnect_min = 0.01\n",
        addr.port()
    );
    let pbx = &Config::parse(&text, "test").unwrap().pbx[0];
    let (client, link) = AmiClient::start(ClientConfig::from_pbx(pbx).unwrap());
    let state = AppState::new(store.clone(), &["t".to_owned()], HashMap::new());
    let pipeline = Pipeline {
        store: store.clone(),
        live: crate::live::Live::local(state.clone()),
        state,
        crms: Arc::from(Vec::new()),
        raw_events: RawEvents::default(),
        resume: false,
        cdr: Default::default(),
        trackers: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tracking = tokio::spawn(track("pbx".into(), client, link, pipeline, async {
        let _ = stopped.await;
    }));

    let mut whole = Tracker::new(TrackerConfig::default());
    let at = Utc::now();
    for raw in &events {
        let mut buf = BytesMut::from(&raw[..]);
        let Ok(Some(ami::Frame::Message(msg))) = ami::Decoder::without_banner().decode(&mut buf)
        else {
            panic!("fixture event does not decode");
        };
        whole.handle(at, &msg);
    }
    let want = whole.poll_record().expect("the fixture has one call");

    let journaled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let page = store
                .list_calls(&Default::default(), 10, None)
                .await
                .unwrap();
            if let Some(call) = page.calls.into_iter().next() {
                return call.record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call was never journaled");
    let _ = stop.send(());
    tracking.await.unwrap();
    assert_eq!(
        (
            &journaled.id,
            journaled.disposition,
            &journaled.answered_by,
            &journaled.rang
        ),
        (&want.id, want.disposition, &want.answered_by, &want.rang)
    );
}
