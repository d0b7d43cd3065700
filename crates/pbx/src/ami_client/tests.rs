//! The AMI link against the replay server over loopback: logins, actions, reconnects,
//! keepalive, TLS and the overflow policies.
//!
//! In-crate rather than in `tests/`: `pbxlink` is a binary crate, so an integration test
//! could not reach these modules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use expect_test::expect;
use sim::replay_server::{decode_event as decode, Fault, ReplayOptions, ReplayServer, Transcript};

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const USER: &str = "harness";
const SECRET: &str = "harness-secret";
/// Upper bound for anything a test waits for; only a hung test ever reaches it.
const HANG: Duration = Duration::from_secs(20);

fn fixture(rel: &str) -> PathBuf {
    let path = Path::new(FIXTURES).join(rel);
    assert!(path.exists(), "fixture missing: {}", path.display());
    path
}

fn transcript(name: &str) -> Transcript {
    Transcript::load(&fixture(&format!("asterisk-22/ami/{name}.rx.raw"))).unwrap()
}

async fn serve(name: &str, options: ReplayOptions) -> ReplayServer {
    ReplayServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        transcript(name),
        options,
    )
    .await
    .unwrap()
}

/// One `[[pbx]]` table's body.
fn parse(text: &str) -> PbxConfig {
    toml::from_str(text).unwrap()
}

fn client_config(addr: SocketAddr, auth: &str, secret: &str) -> ClientConfig {
    let text = format!(
        "host = \"{}\"\nport = {}\nusername = \"{USER}\"\nsecret = \"{secret}\"\n\
         auth = \"{auth}\"\nping_interval = 3600\nreconnect_min = 0.01\nreconnect_max = 3600\n",
        addr.ip(),
        addr.port()
    );
    ClientConfig::from_pbx(&parse(&text)).unwrap()
}

async fn next(rx: &mut mpsc::Receiver<LinkEvent>) -> LinkEvent {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("no link event before the hang bound")
        .expect("link ended")
}

async fn expect_connected(rx: &mut mpsc::Receiver<LinkEvent>) {
    match next(rx).await {
        LinkEvent::Connected { ami_version } => assert_eq!(ami_version, "11.0.0"),
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// Polls `cond` until it holds (upper bound: [`HANG`]).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn md5_login_ping_and_core_settings() {
    let server = serve("00b_login_md5", ReplayOptions::new(USER, SECRET)).await;
    let (client, mut rx) = AmiClient::start(client_config(server.local_addr(), "md5", SECRET));
    expect_connected(&mut rx).await;
    let pong = client.send(Action::ping()).await.unwrap();
    assert_eq!(pong.response.get("Ping"), Some("Pong"));
    let settings = client.send(Action::new("CoreSettings")).await.unwrap();
    assert_eq!(settings.response.get("AsteriskVersion"), Some("22.10.1"));
    client.shutdown().await;
    assert!(matches!(
        next(&mut rx).await,
        LinkEvent::Disconnected {
            reason: LinkError::Shutdown
        }
    ));
    assert!(
        rx.recv().await.is_none(),
        "the event stream ends after shutdown"
    );
    expect![[r#"
        [
            ConnectionLog {
                logged_in: Some(
                    true,
                ),
                actions: [
                    "Challenge",
                    "Login",
                    "Ping",
                    "CoreSettings",
                    "Logoff",
                ],
                events_sent: [],
            },
        ]
    "#]]
    .assert_debug_eq(&server.connections());
}

#[tokio::test]
async fn plain_login_command_output_list_and_unknown_action() {
    let mut options = ReplayOptions::new(USER, SECRET);
    // Where the recording's own CoreShowChannels was answered: four channels up.
    options.faults = vec![Some(Fault::Hold { after: 116 })];
    let server = serve("01_inbound_answered", options).await;
    let (client, mut rx) = AmiClient::start(client_config(server.local_addr(), "plain", SECRET));
    expect_connected(&mut rx).await;
    eventually("116 events sent", || server.events_sent() == 116).await;

    let version = client
        .send(Action::command("core show version"))
        .await
        .unwrap();
    assert_eq!(
        version.output(),
        ["Asterisk 22.10.1 (pbxlink replay server)"]
    );

    let channels = client.send(Action::core_show_channels()).await.unwrap();
    let names: Vec<_> = channels
        .items
        .iter()
        .map(|m| m.get("Channel").unwrap_or_default())
        .collect();
    expect![[r#"
        [
            "Local/15550001000@from-pstn-00000000;1",
            "Local/15550001000@from-pstn-00000000;2",
            "Local/201@agents-00000001;1",
            "Local/201@agents-00000001;2",
        ]
    "#]]
    .assert_debug_eq(&names);
    let complete = channels.complete.unwrap();
    assert_eq!(complete.get("ListItems"), Some("4"));
    assert_eq!(complete.action_id(), channels.response.action_id());

    let unknown = client.send(Action::new("NoSuchAction")).await.unwrap();
    assert!(!unknown.is_success());
    assert_eq!(unknown.message(), Some("Invalid/unknown command"));
}

#[tokio::test]
async fn failed_login_is_clear_and_does_not_storm() {
    let server = serve("00c_login_failed", ReplayOptions::new(USER, SECRET)).await;
    // reconnect_min is 10 ms: without the "wait reconnect_max after a refused login" rule
    // the client would be back many times before the asserts below.
    let (client, mut rx) =
        AmiClient::start(client_config(server.local_addr(), "md5", "wrong-secret"));
    let LinkEvent::Disconnected { reason } = next(&mut rx).await else {
        panic!("expected Disconnected");
    };
    let addr = server.local_addr();
    assert_eq!(
        reason.to_string(),
        format!("authentication failed for user harness at {addr}: Authentication failed")
    );
    let err = client.send(Action::ping()).await.unwrap_err();
    assert_eq!(err, AmiError::LoginFailed(reason));
    assert_eq!(server.connections().len(), 1);
    assert_eq!(server.connections()[0].logged_in, Some(false));
}

#[tokio::test]
async fn reconnect_after_drops_loses_and_duplicates_nothing() {
    let mut options = ReplayOptions::new(USER, SECRET);
    // Connection 0 dies mid-message after 40 events; connection 1 gets garbage after 10
    // more and then runs to the end of the transcript.
    options.faults = vec![
        Some(Fault::Disconnect { after: 40 }),
        Some(Fault::Garbage { after: 10 }),
    ];
    let server = serve("01_inbound_answered", options).await;
    let total = transcript("01_inbound_answered").events().len();
    let (client, mut rx) = AmiClient::start(client_config(server.local_addr(), "md5", SECRET));

    // Events delivered, split by connection.
    let mut per_connection: Vec<Vec<Message>> = Vec::new();
    let mut delivered = 0;
    let mut reasons = Vec::new();
    while delivered < total {
        match next(&mut rx).await {
            LinkEvent::Connected { .. } => per_connection.push(Vec::new()),
            LinkEvent::Disconnected { reason } => reasons.push(reason.to_string()),
            LinkEvent::Event(m) => {
                per_connection
                    .last_mut()
                    .expect("event before Connected")
                    .push(m);
                delivered += 1;
            }
        }
    }
    let t = transcript("01_inbound_answered");
    let sent: Vec<Vec<Message>> = server
        .connections()
        .iter()
        .map(|c| {
            c.events_sent
                .iter()
                .map(|&i| decode(&t.events()[i]))
                .collect()
        })
        .collect();
    assert_eq!(per_connection, sent);
    assert_eq!(
        sent.iter().map(Vec::len).collect::<Vec<_>>(),
        [40, total - 40]
    );
    assert_eq!(reasons, ["connection closed by the PBX"]);
    assert_eq!(
        client.stats().malformed,
        1,
        "the garbage is counted, not delivered"
    );
    assert_eq!(client.stats().connects, 2);
}

#[tokio::test]
async fn missed_pong_reconnects_resends_reads_and_fails_originate() {
    let mut options = ReplayOptions::new(USER, SECRET);
    // The first connection goes silent right after login: no events, no responses; the
    // second sends no events either, so the channel list is the one before the call.
    options.faults = vec![
        Some(Fault::Stall {
            after: 0,
            pause: HANG * 2,
        }),
        Some(Fault::Hold { after: 0 }),
    ];
    let server = serve("01_inbound_answered", options).await;
    let mut config = client_config(server.local_addr(), "md5", SECRET);
    config.ping_interval = Duration::from_millis(100);
    let (client, mut rx) = AmiClient::start(config);
    expect_connected(&mut rx).await;

    let originate = client.send(Action::originate(ami::Originate::exten(
        "Local/201@agents",
        "outbound",
        "15557654321",
        1,
    )));
    let channels = client.send(Action::core_show_channels());
    let (originate, channels) = tokio::join!(originate, channels);

    assert_eq!(
        originate.unwrap_err().to_string(),
        "connection lost while Originate was in flight; not re-sent, it may have run"
    );
    let channels = channels.unwrap();
    assert_eq!(
        channels.complete.as_ref().and_then(|c| c.get("ListItems")),
        Some("0"),
        "re-sent on the new connection"
    );
    let LinkEvent::Disconnected { reason } = next(&mut rx).await else {
        panic!("expected Disconnected");
    };
    assert_eq!(
        reason,
        LinkError::KeepaliveTimeout(Duration::from_millis(100))
    );
    expect_connected(&mut rx).await;
    // The stalled connection never read what was sent to it; the new one got only the
    // re-sent read (keepalive Pings left out: how many there are depends on the clock).
    let actions: Vec<Vec<String>> = server
        .connections()
        .into_iter()
        .map(|c| c.actions.into_iter().filter(|a| a != "Ping").collect())
        .collect();
    expect![[r#"
        [
            [
                "Challenge",
                "Login",
            ],
            [
                "Challenge",
                "Login",
                "CoreShowChannels",
            ],
        ]
    "#]]
    .assert_debug_eq(&actions);
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let server_tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let mut options = ReplayOptions::new(USER, SECRET);
    options.tls = Some(Arc::new(server_tls));
    let server = serve("00b_login_md5", options).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), cert.cert.pem()).unwrap();

    let pbx = |extra: &str| {
        let text = format!(
            "host = \"localhost\"\nport = {}\nusername = \"{USER}\"\nsecret = \"{SECRET}\"\n\
             tls = true\nreconnect_min = 3600\nreconnect_max = 3600\n{extra}",
            server.local_addr().port()
        );
        ClientConfig::from_pbx(&parse(&text)).unwrap()
    };

    let (client, mut rx) =
        AmiClient::start(pbx(&format!("tls_ca_file = \"{}\"\n", ca.path().display())));
    expect_connected(&mut rx).await;
    assert!(client.send(Action::ping()).await.unwrap().is_success());

    // The same server is refused when its certificate is checked against the web PKI.
    let (_client, mut rx) = AmiClient::start(pbx(""));
    match next(&mut rx).await {
        LinkEvent::Disconnected {
            reason: LinkError::Connect { message, .. },
        } => assert!(
            message.starts_with("TLS handshake: invalid peer certificate"),
            "{message}"
        ),
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    // ...and accepted when verification is switched off.
    let (client, mut rx) = AmiClient::start(pbx("tls_insecure_skip_verify = true\n"));
    expect_connected(&mut rx).await;
    assert!(client.send(Action::ping()).await.unwrap().is_success());
}

#[tokio::test]
async fn slow_consumer_block_policy_loses_nothing() {
    let server = serve("01_inbound_answered", ReplayOptions::new(USER, SECRET)).await;
    let total = transcript("01_inbound_answered").events().len();
    let mut config = client_config(server.local_addr(), "md5", SECRET);
    config.event_queue = 4;
    let (client, mut rx) = AmiClient::start(config);
    // Nobody reads until the server has sent everything: the link stops reading the
    // socket, and the kernel buffers hold the rest.
    eventually("server sent the whole transcript", || {
        server.events_sent() == total
    })
    .await;
    expect_connected(&mut rx).await;
    for _ in 0..total {
        assert!(matches!(next(&mut rx).await, LinkEvent::Event(_)));
    }
    let stats = client.stats();
    assert_eq!(
        (stats.events_delivered, stats.events_dropped),
        (total as u64, 0)
    );
}

#[tokio::test]
async fn slow_consumer_drop_newest_policy_counts_drops() {
    let server = serve("01_inbound_answered", ReplayOptions::new(USER, SECRET)).await;
    let t = transcript("01_inbound_answered");
    let total = t.events().len() as u64;
    let mut config = client_config(server.local_addr(), "md5", SECRET);
    config.event_queue = 4;
    config.overflow = OverflowPolicy::DropNewest;
    let (client, mut rx) = AmiClient::start(config);
    eventually("every event delivered or dropped", || {
        let s = client.stats();
        s.events_delivered + s.events_dropped == total
    })
    .await;
    let stats = client.stats();
    assert!(stats.events_dropped > 0, "{stats:?}");
    // The link still answers actions although nobody reads its events.
    assert!(client.send(Action::ping()).await.unwrap().is_success());
    // What was delivered comes after Connected, in transcript order.
    expect_connected(&mut rx).await;
    let mut rest = t.events().iter().map(|raw| decode(raw));
    for _ in 0..stats.events_delivered {
        let LinkEvent::Event(m) = next(&mut rx).await else {
            panic!("expected an event");
        };
        assert!(
            rest.any(|e| e == m),
            "delivered out of order or unknown: {m:?}"
        );
    }
}

/// An answer knows its place in the event stream: the events sent before it, counted
/// whether or not the consumer has read them yet (a resync applies the channel list there).
#[tokio::test]
async fn an_answer_counts_the_events_before_it_read_or_not() {
    let mut options = ReplayOptions::new(USER, SECRET);
    options.faults = vec![Some(Fault::Hold { after: 9 })];
    let server = serve("01_inbound_answered", options).await;
    let config = client_config(server.local_addr(), "md5", SECRET);
    let (client, mut rx) = AmiClient::start(config);
    eventually("nine events sent", || server.events_sent() == 9).await;
    let answer = client
        .send_in_stream(Action::core_show_channels())
        .await
        .unwrap();
    assert!(answer.result.is_success());
    assert_eq!(answer.events_before, 9);
    expect_connected(&mut rx).await;
    for _ in 0..3 {
        assert!(matches!(next(&mut rx).await, LinkEvent::Event(_)));
    }
    let again = client.send_in_stream(Action::ping()).await.unwrap();
    assert_eq!(again.events_before, 9);
}

#[test]
fn backoff_doubles_up_to_the_max_with_jitter_in_the_upper_half() {
    let ms = Duration::from_millis;
    let mut base = ms(500);
    let mut steps = Vec::new();
    for random in [0.0, 0.999, 0.5, 0.0, 0.0, 0.0, 0.0] {
        let (delay, next) = backoff_step(base, ms(30_000), random);
        steps.push(format!("{delay:?}"));
        base = next;
    }
    expect![[r#"
        [
            "250ms",
            "999.5ms",
            "1.5s",
            "2s",
            "4s",
            "8s",
            "15s",
        ]
    "#]]
    .assert_debug_eq(&steps);
}

#[test]
fn setup_errors_name_the_pbx_and_the_file() {
    let pbx = &parse(
        "name = \"office\"\nsecret = \"x\"\ntls = true\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
    );
    expect![
        "pbx 'office': TLS CA file /nonexistent/ca.pem: No such file or directory (os error 2)"
    ]
    .assert_eq(&ClientConfig::from_pbx(pbx).unwrap_err().to_string());
    assert!(is_idempotent(&Action::core_show_channels()));
    assert!(!is_idempotent(&Action::hangup("PJSIP/201-00000001")));
}

#[tokio::test]
async fn an_action_whose_caller_gave_up_offline_is_never_sent() {
    // A free port with nobody listening yet: the link keeps failing to connect.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = client_config(addr, "md5", SECRET);
    config.action_timeout = Duration::from_millis(200);
    let (client, mut rx) = AmiClient::start(config);
    let originate = Action::originate(ami::Originate::exten(
        "Local/201@agents",
        "outbound",
        "15557654321",
        1,
    ));
    assert!(matches!(
        client.send(originate).await,
        Err(AmiError::Timeout { .. })
    ));

    let server = ReplayServer::start(
        addr,
        transcript("00b_login_md5"),
        ReplayOptions::new(USER, SECRET),
    )
    .await
    .unwrap();
    while !matches!(next(&mut rx).await, LinkEvent::Connected { .. }) {}
    assert!(client.send(Action::ping()).await.unwrap().is_success());
    assert_eq!(
        server.connections()[0].actions,
        ["Challenge", "Login", "Ping"]
    );
}

/// The replay server's AstDB, QueuePause and ExtensionStateList answers, seen by the link,
/// and the whole actions it keeps for tests to compare.
#[tokio::test]
async fn replay_server_astdb_queue_pause_and_extension_states() {
    let t = Transcript::load(&fixture("asterisk-22-pjsip/ami/04_ivr_queue.rx.raw")).unwrap();
    let mut options = ReplayOptions::new(USER, SECRET);
    options.pace = HANG; // no transcript events: the answers alone
    let server = ReplayServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), t, options)
        .await
        .unwrap();
    let (client, mut rx) = AmiClient::start(client_config(server.local_addr(), "md5", SECRET));
    expect_connected(&mut rx).await;
    let mut out = String::new();
    for action in [
        Action::db_get("CF", "201"),
        Action::db_put("CF", "201", "15557654321"),
        Action::db_get("CF", "201"),
        Action::db_del("CF", "201"),
        Action::db_del("CF", "201"),
        Action::db_get("", "201"),
        Action::queue_pause(Some("601"), "Local/201@from-queue/n", true, "lunch"),
        Action::queue_pause(None, "Local/209@from-queue/n", true, ""),
        Action::extension_state_list(),
    ] {
        let r = client.send(action).await.unwrap();
        let line = |m: &Message| {
            m.iter()
                .filter(|(k, _)| *k != "ActionID")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&line(&r.response));
        out.push('\n');
        for item in r.items.iter().chain(&r.complete) {
            out.push_str(&format!("  {}\n", line(item)));
        }
    }
    match next(&mut rx).await {
        LinkEvent::Event(e) => out.push_str(&format!(
            "event {} {} {} paused={} reason={}\n",
            e.event().unwrap(),
            e.get("Queue").unwrap(),
            e.get("Interface").unwrap(),
            e.get("Paused").unwrap(),
            e.get("PausedReason").unwrap()
        )),
        other => panic!("expected QueueMemberPause, got {other:?}"),
    }
    expect![[r#"
        Response=Error Message=Database entry not found
        Response=Success Message=Updated database successfully
        Response=Success EventList=start Message=Result will follow
          Event=DBGetResponse Family=CF Key=201 Val=15557654321
          Event=DBGetComplete EventList=Complete ListItems=1
        Response=Success Message=Key deleted successfully
        Response=Error Message=Database entry not found
        Response=Error Message=No family specified.
        Response=Success Message=Interface paused successfully
        Response=Error Message=Interface not found
        Response=Success EventList=start Message=Extension Statuses will follow
          Event=ExtensionStatus Exten=201 Context=ext-local Hint=PJSIP/201&Custom:DND201 Status=0 StatusText=Idle
          Event=ExtensionStatus Exten=203 Context=ext-local Hint=PJSIP/203&Custom:DND203 Status=0 StatusText=Idle
          Event=ExtensionStateListComplete EventList=Complete ListItems=2
        event QueueMemberPause 601 Local/201@from-queue/n paused=1 reason=lunch
    "#]]
    .assert_eq(&out);
    let sent: Vec<String> = server
        .actions_except_link()
        .iter()
        .map(|a| {
            a.iter()
                .filter(|(k, _)| *k != "ActionID")
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    expect![[r#"
        [
            "Action: DBGet, Family: CF, Key: 201",
            "Action: DBPut, Family: CF, Key: 201, Val: 15557654321",
            "Action: DBGet, Family: CF, Key: 201",
            "Action: DBDel, Family: CF, Key: 201",
            "Action: DBDel, Family: CF, Key: 201",
            "Action: DBGet, Family: , Key: 201",
            "Action: QueuePause, Interface: Local/201@from-queue/n, Queue: 601, Paused: true, Reason: lunch",
            "Action: QueuePause, Interface: Local/209@from-queue/n, Paused: true",
            "Action: ExtensionStateList",
        ]
    "#]]
    .assert_debug_eq(&sent);
    assert!(server.astdb().is_empty());
    client.shutdown().await;
}
