//! `pbxlink simulate --listen`: the simulated Asterisk's AMI server, checked against what real
//! Asterisk 22 answers (login, errors, channel lists) in the recorded transcripts.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ami::{Decoder, Frame, Message};
use bytes::BytesMut;
use expect_test::expect;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const SECRET: &str = "s3cret";

/// A `pbxlink simulate --listen 127.0.0.1:0 --fast` process, killed on drop.
struct Server {
    child: Child,
    addr: String,
    /// What its banner says: Asterisk 22's AMI, or Asterisk 18's for a bare PBX (chan_sip).
    ami_version: &'static str,
}

impl Server {
    fn start() -> Server {
        Server::start_with("freepbx", &[])
    }

    /// A PBX of `style` (`--style`), with more `pbxlink simulate` arguments.
    fn start_with(style: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbxlink"))
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--fast",
                "--calls-per-second",
                "5",
            ])
            .args(["--username", "admin", "--secret", SECRET, "--seed", "9"])
            .args(["--style", style])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
        let ami_version = if style == "bare" { "7.0.3" } else { "11.0.0" };
        Server {
            child,
            addr,
            ami_version,
        }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(&self.addr).unwrap();
        // Only a guard against hanging forever if the server broke; nothing asserts on time.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
            dec: Decoder::new(),
            events: Vec::new(),
        };
        assert!(matches!(c.frame(), Some(Frame::Banner(b)) if b.ami_version == self.ami_version));
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    dec: Decoder,
    /// Events received while waiting for responses, in order.
    events: Vec<Message>,
}

impl Client {
    fn send(&mut self, fields: &[(&str, &str)]) {
        let mut out = Vec::new();
        Message::from_pairs(fields.iter().copied()).encode(&mut out);
        self.stream.write_all(&out).unwrap();
    }

    /// The next frame; None when the server closed the socket.
    fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).unwrap();
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn message(&mut self) -> Option<Message> {
        match self.frame()? {
            Frame::Message(m) => Some(m),
            Frame::Banner(_) => self.message(),
        }
    }

    /// Sends an action and returns its response; events that arrive meanwhile are kept.
    fn action(&mut self, fields: &[(&str, &str)]) -> Message {
        self.send(fields);
        let id = fields
            .iter()
            .find(|(k, _)| *k == "ActionID")
            .map(|(_, v)| *v)
            .unwrap();
        loop {
            let m = self.message().expect("server closed the connection");
            if m.response().is_some() && m.action_id() == Some(id) {
                return m;
            }
            self.events.push(m);
        }
    }

    /// The list items and the *Complete event that follow a list response.
    fn list(&mut self, id: &str, complete: &str) -> (Vec<Message>, Message) {
        let mut items = Vec::new();
        loop {
            let m = self.message().expect("server closed the connection");
            if m.action_id() != Some(id) {
                self.events.push(m);
            } else if m.event() == Some(complete) {
                return (items, m);
            } else {
                items.push(m);
            }
        }
    }

    fn login(&mut self, events: &str) {
        let r = self.action(&[
            ("Action", "Login"),
            ("ActionID", "login"),
            ("Username", "admin"),
            ("Secret", SECRET),
            ("Events", events),
        ]);
        assert_eq!(r.get("Message"), Some("Authentication accepted"));
    }
}

fn text(m: &Message) -> String {
    let mut out = Vec::new();
    m.encode(&mut out);
    String::from_utf8(out).unwrap().replace("\r\n", "\n")
}

/// The messages of a recorded transcript (banner skipped).
fn recorded(rel: &str) -> Vec<Message> {
    let mut dec = Decoder::new();
    let mut raw = BytesMut::from(&fixture(rel)[..]);
    std::iter::from_fn(|| dec.decode(&mut raw).unwrap())
        .filter_map(|f| match f {
            Frame::Message(m) => Some(m),
            Frame::Banner(_) => None,
        })
        .collect()
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()))
}

fn header_names(m: &Message) -> Vec<&str> {
    m.iter().map(|(k, _)| k).collect()
}

#[test]
fn plain_and_md5_logins_are_accepted() {
    let server = Server::start();
    let mut plain = server.connect();
    let r = plain.action(&[
        ("Action", "Login"),
        ("ActionID", "p1"),
        ("Username", "admin"),
        ("Secret", SECRET),
        ("Events", "off"),
    ]);
    let pong = plain.action(&[("Action", "Ping"), ("ActionID", "p2")]);

    let mut md5 = server.connect();
    let challenge = md5.action(&[
        ("Action", "Challenge"),
        ("ActionID", "m1"),
        ("AuthType", "MD5"),
    ]);
    let key = ami::session::md5_key(challenge.get("Challenge").unwrap(), SECRET);
    let accepted = md5.action(&[
        ("Action", "Login"),
        ("ActionID", "m2"),
        ("Username", "admin"),
        ("AuthType", "MD5"),
        ("Key", &key),
        ("Events", "off"),
    ]);
    let settings = md5.action(&[("Action", "CoreSettings"), ("ActionID", "m3")]);
    expect![[r#"
        Response: Success
        ActionID: p1
        Message: Authentication accepted

        Response: Success
        ActionID: m2
        Message: Authentication accepted

    "#]]
    .assert_eq(&(text(&r) + &text(&accepted)));
    assert_eq!(pong.get("Ping"), Some("Pong"));
    assert_eq!(challenge.get("Challenge").map(|c| c.len()), Some(9));
    assert_eq!(settings.get("AsteriskVersion"), Some("22.10.1"));
}

#[test]
fn wrong_secret_gets_the_real_error_and_a_closed_socket() {
    let server = Server::start();
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // The same Login as the real 00c transcript, so the bytes must match it exactly.
    stream.write_all(b"Action: Login\r\nActionID: 00c-1\r\nUsername: admin\r\nSecret: wrong-secret\r\nEvents: off\r\n\r\n").unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&fixture("asterisk-22/ami/00c_login_failed.rx.raw"))
    );
}

#[test]
fn actions_before_login_and_unknown_actions_get_real_errors() {
    let server = Server::start();
    let mut c = server.connect();
    let denied = c.action(&[("Action", "Ping"), ("ActionID", "00d-1")]);
    c.login("off");
    let unknown = c.action(&[("Action", "NoSuchThing"), ("ActionID", "u1")]);
    let no_channel = c.action(&[
        ("Action", "Hangup"),
        ("ActionID", "h1"),
        ("Channel", "PJSIP/999-00000000"),
    ]);
    let real_denied = &recorded("asterisk-22/ami/00d_unauth_action.rx.raw")[0];
    assert_eq!(
        &denied, real_denied,
        "Permission denied differs from the real one"
    );
    expect![[r#"
        Response: Error
        ActionID: u1
        Message: Invalid/unknown command

        Response: Error
        ActionID: h1
        Message: No such channel

    "#]]
    .assert_eq(&(text(&unknown) + &text(&no_channel)));
}

#[test]
fn core_show_channels_and_status_list_the_live_calls() {
    let server = Server::start();
    let mut c = server.connect();
    c.login("on");
    // Wait for some call to be up on the wire.
    while !c.events.iter().any(|m| m.event() == Some("Newchannel")) {
        let m = c.message().unwrap();
        c.events.push(m);
    }
    let r = c.action(&[("Action", "CoreShowChannels"), ("ActionID", "csc")]);
    assert_eq!(r.get("EventList"), Some("start"));
    let (items, done) = c.list("csc", "CoreShowChannelsComplete");
    let hung_up_before: BTreeSet<String> = c
        .events
        .iter()
        .filter(|m| m.event() == Some("Hangup"))
        .filter_map(|m| m.get("Channel").map(str::to_owned))
        .collect();
    let listed: BTreeSet<String> = items
        .iter()
        .map(|m| m.get("Channel").unwrap().to_owned())
        .collect();
    assert!(
        !listed.is_empty(),
        "calls are up but CoreShowChannels lists none"
    );
    assert_eq!(
        done.get("ListItems"),
        Some(listed.len().to_string().as_str())
    );
    assert!(
        listed.is_disjoint(&hung_up_before),
        "lists channels already hung up: {:?}",
        listed.intersection(&hung_up_before).collect::<Vec<_>>()
    );
    // Every listed channel is a real one of the stream: its Newchannel arrives (maybe later,
    // the stream is buffered) with the same Uniqueid.
    let wanted: BTreeSet<(String, String)> = items
        .iter()
        .map(|m| {
            (
                m.get("Channel").unwrap().to_owned(),
                m.get("Uniqueid").unwrap().to_owned(),
            )
        })
        .collect();
    let mut announced: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen = std::mem::take(&mut c.events);
    while !wanted.is_subset(&announced) {
        for m in seen.drain(..) {
            if m.event() == Some("Newchannel") {
                announced.insert((
                    m.get("Channel").unwrap().to_owned(),
                    m.get("Uniqueid").unwrap().to_owned(),
                ));
            }
        }
        seen.push(c.message().unwrap());
    }
    let recorded = recorded("asterisk-22/ami/01_inbound_answered.rx.raw");
    let real_item = recorded
        .iter()
        .find(|m| m.event() == Some("CoreShowChannel"))
        .unwrap();
    assert_eq!(header_names(&items[0]), header_names(real_item));

    let r = c.action(&[("Action", "Status"), ("ActionID", "st")]);
    assert_eq!(r.get("Message"), Some("Channel status will follow"));
    let (status, done) = c.list("st", "StatusComplete");
    let real_status = recorded
        .iter()
        .find(|m| m.event() == Some("Status") && m.get("Variable").is_none())
        .unwrap();
    assert!(status
        .iter()
        .all(|m| header_names(m) == header_names(real_status)));
    let real_done = recorded
        .iter()
        .find(|m| m.event() == Some("StatusComplete"))
        .unwrap();
    assert_eq!(header_names(&done), header_names(real_done));
}

#[test]
fn originate_plays_a_click_to_call_and_astdb_round_trips() {
    let server = Server::start();
    let mut c = server.connect();
    c.login("on");
    let queued = c.action(&[
        ("Action", "Originate"),
        ("ActionID", "o1"),
        ("Channel", "PJSIP/201"),
        ("Context", "from-internal"),
        ("Exten", "15557654321"),
        ("Priority", "1"),
        ("CallerID", "\"Alice Anderson\" <201>"),
        ("Async", "yes"),
        ("ChannelId", "c2c-0001"),
    ]);
    assert_eq!(queued.get("Message"), Some("Originate successfully queued"));
    let response = loop {
        let m = c.message().unwrap();
        if m.event() == Some("OriginateResponse") {
            break m;
        }
        c.events.push(m);
    };
    assert_eq!(response.action_id(), Some("o1"));
    assert_eq!(response.get("Response"), Some("Success"));
    let agent = response.get("Channel").unwrap().to_owned();
    assert!(agent.starts_with("PJSIP/201-"), "{agent}");
    // ChannelId names the agent's channel, hence the call (its Linkedid).
    assert_eq!(response.get("Uniqueid"), Some("c2c-0001"));
    // The originate dials the agent's phone first: DialBegin with no Channel, DestChannel it.
    assert!(c.events.iter().any(|m| m.event() == Some("DialBegin")
        && m.get("Channel").is_none()
        && m.get("DestChannel") == Some(agent.as_str())));

    let put = c.action(&[
        ("Action", "DBPut"),
        ("ActionID", "d1"),
        ("Family", "DND"),
        ("Key", "202"),
        ("Val", "YES"),
    ]);
    let get = c.action(&[
        ("Action", "DBGet"),
        ("ActionID", "d2"),
        ("Family", "DND"),
        ("Key", "202"),
    ]);
    let (items, _) = c.list("d2", "DBGetComplete");
    let del = c.action(&[
        ("Action", "DBDel"),
        ("ActionID", "d3"),
        ("Family", "DND"),
        ("Key", "202"),
    ]);
    let gone = c.action(&[
        ("Action", "DBGet"),
        ("ActionID", "d4"),
        ("Family", "DND"),
        ("Key", "202"),
    ]);
    expect![[r#"
        Response: Success
        ActionID: d1
        Message: Updated database successfully

        Response: Success
        ActionID: d2
        EventList: start
        Message: Result will follow

        Event: DBGetResponse
        Family: DND
        Key: 202
        Val: YES
        ActionID: d2

        Response: Success
        ActionID: d3
        Message: Key deleted successfully

        Response: Error
        ActionID: d4
        Message: Database entry not found

    "#]]
    .assert_eq(&[&put, &get, &items[0], &del, &gone].map(text).concat());
}

#[test]
fn queue_status_lists_members_as_real_asterisk_with_their_pause() {
    let server = Server::start();
    let mut c = server.connect();
    c.login("off");
    let r = c.action(&[
        ("Action", "QueuePause"),
        ("ActionID", "p"),
        ("Queue", "600"),
        ("Interface", "Local/201@from-queue/n"),
        ("Paused", "true"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", text(&r));
    let r = c.action(&[
        ("Action", "QueueStatus"),
        ("ActionID", "qs"),
        ("Queue", "600"),
    ]);
    assert_eq!(r.get("Message"), Some("Queue status will follow"));
    let (items, done) = c.list("qs", "QueueStatusComplete");
    let members: Vec<String> = items
        .iter()
        .filter(|m| m.event() == Some("QueueMember"))
        .map(|m| {
            format!(
                "{} {} paused={}",
                m.get("Queue").unwrap(),
                m.get("Location").unwrap(),
                m.get("Paused").unwrap()
            )
        })
        .collect();
    assert!(
        members.contains(&"600 Local/201@from-queue/n paused=1".to_owned()),
        "{members:?}"
    );
    assert!(members.iter().all(|m| m.starts_with("600 ")), "{members:?}");
    assert_eq!(
        done.get("ListItems"),
        Some(items.len().to_string().as_str())
    );
    // Each item has the header order of the real app_queue answer.
    let recorded = recorded("asterisk-22/ami/05_inbound_queue.rx.raw");
    for event in ["QueueParams", "QueueMember", "QueueStatusComplete"] {
        let real = recorded
            .iter()
            .find(|m| m.event() == Some(event) && m.action_id().is_some())
            .unwrap();
        let ours = items
            .iter()
            .chain([&done])
            .find(|m| m.event() == Some(event))
            .unwrap();
        assert_eq!(header_names(ours), header_names(real), "{event}");
    }
}

/// The endpoint actions `pbxlink run` sends at login: a FreePBX answers the PJSIP ones, a bare
/// Asterisk the chan_sip ones, each as Asterisk formats them (res_pjsip's EndpointList and
/// EndpointDetail, chan_sip's PeerEntry and SIPshowpeer), and the other driver's with an error.
#[test]
fn endpoint_actions_answer_for_the_pbxs_own_channel_driver() {
    let mut out = String::new();
    for (style, list, complete, detail, key) in [
        (
            "freepbx",
            "PJSIPShowEndpoints",
            "EndpointListComplete",
            "PJSIPShowEndpoint",
            "Endpoint",
        ),
        (
            "bare",
            "SIPpeers",
            "PeerlistComplete",
            "SIPshowpeer",
            "Peer",
        ),
    ] {
        let server = Server::start_with(style, &["--extensions", "201-202"]);
        let mut c = server.connect();
        c.login("off");
        let r = c.action(&[("Action", list), ("ActionID", "l")]);
        assert_eq!(r.get("EventList"), Some("start"), "{}", text(&r));
        let (items, done) = c.list("l", complete);
        let names: Vec<&str> = items.iter().filter_map(|m| m.get("ObjectName")).collect();
        out += &format!(
            "{style} {list}: {names:?}, {} {}\n",
            done.get("ListItems").unwrap(),
            r.get("Message").unwrap()
        );
        for name in &names {
            let r = c.action(&[("Action", detail), ("ActionID", "d"), (key, name)]);
            // PJSIPShowEndpoint answers a list; SIPshowpeer the fields themselves.
            let fields = match r.get("EventList") {
                Some(_) => c.list("d", "EndpointDetailComplete").0.remove(0),
                None => r,
            };
            out += &format!(
                "{style} {detail} {name}: Context {:?}, Callerid {:?}\n",
                fields.get("Context").unwrap(),
                fields.get("Callerid").unwrap()
            );
        }
        let other = if style == "bare" {
            ["PJSIPShowEndpoints", "PJSIPShowEndpoint"]
        } else {
            ["SIPpeers", "SIPshowpeer"]
        };
        for action in other {
            let r = c.action(&[("Action", action), ("ActionID", "x")]);
            out += &format!(
                "{style} {action}: {} {}\n",
                r.get("Response").unwrap(),
                r.get("Message").unwrap()
            );
        }
        let r = c.action(&[("Action", detail), ("ActionID", "n"), (key, "nobody")]);
        out += &format!(
            "{style} {detail} nobody: {} {}\n",
            r.get("Response").unwrap(),
            r.get("Message").unwrap()
        );
    }
    expect![[r#"
        freepbx PJSIPShowEndpoints: ["201", "202", "carrier"], 3 A listing of Endpoints follows, presented as EndpointList events
        freepbx PJSIPShowEndpoint 201: Context "from-internal", Callerid "\"Alice Anderson\" <201>"
        freepbx PJSIPShowEndpoint 202: Context "from-internal", Callerid "\"Bob Brown\" <202>"
        freepbx PJSIPShowEndpoint carrier: Context "from-pstn", Callerid ""
        freepbx SIPpeers: Error Invalid/unknown command
        freepbx SIPshowpeer: Error Invalid/unknown command
        freepbx PJSIPShowEndpoint nobody: Error Unable to retrieve endpoint nobody
        bare SIPpeers: ["7001234201", "7001234202", "city"], 3 Peer status list will follow
        bare SIPshowpeer 7001234201: Context "office", Callerid "\"Alice Anderson\" <201>"
        bare SIPshowpeer 7001234202: Context "office", Callerid "\"Bob Brown\" <202>"
        bare SIPshowpeer city: Context "city-in", Callerid ""
        bare PJSIPShowEndpoints: Error Invalid/unknown command
        bare PJSIPShowEndpoint: Error Invalid/unknown command
        bare SIPshowpeer nobody: Error Peer nobody not found.
    "#]].assert_eq(&out);
}
