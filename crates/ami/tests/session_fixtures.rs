//! Drives [`Session`] with real Asterisk 22 transcripts: what it transmits must be byte-exact
//! with what the recording client sent, and what it reports is pinned with expect-test.

mod common;

use ami::{Action, AuthMethod, Credentials, Originate, Session, SessionEvent};
use expect_test::{expect, Expect};

fn creds(auth: AuthMethod, secret: &str, events: &str) -> Credentials {
    Credentials {
        username: "harness".into(),
        secret: secret.into(),
        auth,
        events: events.into(),
    }
}

/// How a scenario's transmitted bytes compare with its `tx.raw`.
enum Tx {
    /// Byte-exact.
    Same,
    /// The first `n` messages are byte-exact; the recording client sent more (it kept going
    /// after a failed login, which a session does not).
    Prefix(usize),
    /// Not comparable: the recording client sent actions before logging in, which a session
    /// never does.
    Unrelated,
}

/// Feeds `<name>.rx.raw` message by message (as a socket would deliver it) into a session,
/// sends `actions` once logged in, and renders the reported events, one line each; runs of
/// unsolicited events are folded into `event <Name> xN`.
fn drive(
    name: &str,
    session: &mut Session,
    actions: Vec<Action>,
    tx: Tx,
    expect: Expect,
) -> String {
    let rx = common::read(&format!("asterisk-22/ami/{name}.rx.raw"));
    let mut actions = Some(actions);
    let mut sent = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut run: Option<(String, usize)> = None;
    for chunk in rx.split_inclusive(|&b| b == b'\n') {
        session.handle_input(chunk);
        while let Some(ev) = session.poll_event() {
            if let SessionEvent::Event(m) = &ev {
                let name = m.event().unwrap_or("?").to_owned();
                match &mut run {
                    Some((n, count)) if *n == name => *count += 1,
                    _ => {
                        flush(&mut run, &mut lines);
                        run = Some((name, 1));
                    }
                }
                continue;
            }
            flush(&mut run, &mut lines);
            if ev == SessionEvent::LoggedIn {
                for a in actions.take().into_iter().flatten() {
                    session.send_action(a);
                }
            }
            lines.push(render(&ev));
        }
        while let Some(bytes) = session.poll_transmit() {
            sent.extend_from_slice(&bytes);
        }
    }
    flush(&mut run, &mut lines);
    let recorded = common::read(&format!("asterisk-22/ami/{name}.tx.raw"));
    let sent_text = String::from_utf8(sent).unwrap();
    let recorded_text = String::from_utf8(recorded).unwrap();
    match tx {
        Tx::Same => assert_eq!(sent_text, recorded_text),
        Tx::Prefix(n) => {
            assert_eq!(sent_text.matches("\r\n\r\n").count(), n);
            assert!(recorded_text.starts_with(&sent_text), "{sent_text}");
        }
        Tx::Unrelated => {}
    }
    expect.assert_eq(&(lines.join("\n") + "\n"));
    sent_text
}

fn flush(run: &mut Option<(String, usize)>, lines: &mut Vec<String>) {
    match run.take() {
        Some((name, 1)) => lines.push(format!("event {name}")),
        Some((name, n)) => lines.push(format!("event {name} x{n}")),
        None => {}
    }
}

fn render(ev: &SessionEvent) -> String {
    match ev {
        SessionEvent::Greeting(b) => format!("greeting {} {}", b.product, b.ami_version),
        SessionEvent::LoggedIn => "logged in".into(),
        SessionEvent::LoginFailed { message } => format!("login failed: {message}"),
        SessionEvent::Event(m) => format!("event {m:?}"),
        SessionEvent::ActionDone { id, result } => {
            let mut s = format!(
                "done {id}: {} {:?}",
                result.response.response().unwrap_or("?"),
                result.message().unwrap_or_default()
            );
            if result.is_success() {
                s.push_str(" ok");
            }
            for line in result.output() {
                s.push_str(&format!("\n  output {line:?}"));
            }
            for item in &result.items {
                s.push_str(&format!(
                    "\n  item {} {}",
                    item.event().unwrap_or("?"),
                    item.get("Channel").unwrap_or_default()
                ));
            }
            if let Some(c) = &result.complete {
                s.push_str(&format!(
                    "\n  complete {} ListItems={}",
                    c.event().unwrap_or("?"),
                    c.get("ListItems").unwrap_or("?")
                ));
            }
            s
        }
        SessionEvent::UnmatchedResponse(m) => format!("unmatched {m:?}"),
        SessionEvent::Malformed(e) => format!("malformed: {e}"),
    }
}

#[test]
fn login_plain_then_ping_settings_status_command() {
    let mut s = Session::with_id_prefix(creds(AuthMethod::Plain, "harness-secret", "off"), "00a");
    drive(
        "00a_login_plain",
        &mut s,
        vec![
            Action::ping(),
            Action::core_settings(),
            Action::core_status(),
            Action::command("core show version"),
            Action::logoff(),
        ],
        Tx::Same,
        expect![[r#"
            greeting Asterisk Call Manager 11.0.0
            logged in
            done 00a-2: Success "" ok
            done 00a-3: Success "" ok
            done 00a-4: Success "" ok
            done 00a-5: Success "Command output follows" ok
              output "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-22 13:15:04 UTC"
            done 00a-6: Goodbye "Thanks for all the fish." ok
        "#]],
    );
    assert!(s.is_logged_in());
}

#[test]
fn login_md5_key_matches_the_real_client() {
    let rx = String::from_utf8(common::read("asterisk-22/ami/00b_login_md5.rx.raw")).unwrap();
    let challenge = rx
        .lines()
        .find_map(|l| l.strip_prefix("Challenge: "))
        .unwrap()
        .trim_end();
    let key = ami::session::md5_key(challenge, "harness-secret");
    let tx = drive(
        "00b_login_md5",
        &mut Session::with_id_prefix(creds(AuthMethod::Md5, "harness-secret", "off"), "00b"),
        vec![Action::ping(), Action::core_settings(), Action::logoff()],
        Tx::Same,
        expect![[r#"
            greeting Asterisk Call Manager 11.0.0
            logged in
            done 00b-3: Success "" ok
            done 00b-4: Success "" ok
            done 00b-5: Goodbye "Thanks for all the fish." ok
        "#]],
    );
    assert!(
        tx.contains(&format!("\r\nKey: {key}\r\n")),
        "{key} not in {tx}"
    );
    assert!(
        !tx.contains("harness-secret"),
        "MD5 login leaked the secret"
    );
}

#[test]
fn login_failed_reports_asterisks_message_and_keeps_queued_actions() {
    let mut s = Session::with_id_prefix(creds(AuthMethod::Plain, "wrong-secret", ""), "00c");
    // Queued before the banner: an explicit ID keeps `00c-1` free for the login.
    s.send_action(Action::logoff().field("ActionID", "00c-2"));
    drive(
        "00c_login_failed",
        &mut s,
        vec![],
        Tx::Prefix(1),
        expect![[r#"
            greeting Asterisk Call Manager 11.0.0
            login failed: Authentication failed
        "#]],
    );
    assert!(!s.is_logged_in());
    let lost = s.connection_lost();
    expect![[r#"
        [
            (
                ActionId(
                    "00c-2",
                ),
                [
                    "Action: Logoff",
                    "ActionID: 00c-2",
                ],
            ),
        ]
    "#]]
    .assert_debug_eq(&lost);
}

#[test]
fn refused_login_then_answers_to_actions_it_never_sent() {
    // The recording client sent Ping/Originate/Logoff without logging in; a session logs in
    // first, so Asterisk's first refusal answers its login and the rest match nothing.
    drive(
        "00d_unauth_action",
        &mut Session::with_id_prefix(creds(AuthMethod::Plain, "harness-secret", ""), "00d"),
        vec![],
        Tx::Unrelated,
        expect![[r#"
            greeting Asterisk Call Manager 11.0.0
            login failed: Permission denied
            unmatched ["Response: Error", "ActionID: 00d-2", "Message: Permission denied"]
            unmatched ["Response: Goodbye", "ActionID: 00d-3", "Message: Thanks for all the fish."]
        "#]],
    );
}

#[test]
fn inbound_call_with_lists_inline_while_events_flow() {
    let mut originate = Originate::exten("Local/15550001000@from-pstn", "pstn-caller", "s", 1);
    originate.caller_id = Some("\"Jane Caller\" <15551234567>".into());
    originate.timeout_ms = Some(30000);
    originate.variables = vec![
        ("IVR_DIGIT".into(), "1".into()),
        ("SCENARIO".into(), "01-inbound-answered".into()),
    ];
    drive(
        "01_inbound_answered",
        &mut Session::with_id_prefix(creds(AuthMethod::Plain, "harness-secret", ""), "01"),
        vec![
            Action::ping(),
            Action::core_settings(),
            Action::originate(originate).field("ActionID", "01-originate"),
            Action::core_show_channels().field("ActionID", "01-coreshowchannels"),
            Action::status().field("ActionID", "01-status"),
            Action::status_of("Local/15550001000@from-pstn-00000000;2")
                .field("ActionID", "01-status-onechannel"),
            Action::logoff(),
        ],
        Tx::Same,
        expect![[r#"
            greeting Asterisk Call Manager 11.0.0
            logged in
            event FullyBooted
            event SuccessfulAuth
            done 01-2: Success "" ok
            done 01-3: Success "" ok
            done 01-originate: Success "Originate successfully queued" ok
            event Newchannel x2
            event Newexten
            event VarSet x2
            event NewCallerid
            event NewConnectedLine
            event VarSet x2
            event NewCallerid
            event NewConnectedLine
            event LocalBridge
            event DialBegin
            event Newexten x2
            event VarSet
            event Newexten
            event VarSet
            event Newexten
            event VarSet
            event Newexten
            event VarSet
            event Newexten
            event VarSet
            event Newexten
            event VarSet
            event Newexten x2
            event HangupHandlerPush
            event Newexten
            event Newstate
            event DeviceStateChange
            event OriginateResponse
            event Newstate
            event DeviceStateChange
            event DialEnd
            event Newexten x3
            event VarSet
            event MixMonitorStart
            event Newexten
            event VarSet
            event Newexten
            event DTMFBegin
            event DTMFEnd
            event VarSet x2
            event Newexten x7
            event VarSet x11
            event Newchannel x2
            event VarSet x7
            event Newexten
            event NewCallerid
            event NewConnectedLine
            event VarSet x7
            event NewCallerid
            event NewConnectedLine
            event LocalBridge
            event DialBegin
            event Newexten x2
            event Newstate
            event Newexten
            event DeviceStateChange
            event VarSet x2
            event DialState
            event Newexten x2
            event Newstate x2
            event VarSet x3
            event DialEnd
            event BridgeCreate
            event DeviceStateChange x2
            event Newexten
            event BridgeEnter x2
            event VarSet x2
            event Newexten x2
            done 01-coreshowchannels: Success "Channels will follow" ok
              item CoreShowChannel Local/201@agents-00000001;1
              item CoreShowChannel Local/201@agents-00000001;2
              item CoreShowChannel Local/15550001000@from-pstn-00000000;2
              item CoreShowChannel Local/15550001000@from-pstn-00000000;1
              complete CoreShowChannelsComplete ListItems=4
            done 01-status: Success "Channel status will follow" ok
              item Status Local/201@agents-00000001;1
              item Status Local/201@agents-00000001;2
              item Status Local/15550001000@from-pstn-00000000;2
              item Status Local/15550001000@from-pstn-00000000;1
              complete StatusComplete ListItems=4
            done 01-status-onechannel: Success "Channel status will follow" ok
              item Status Local/15550001000@from-pstn-00000000;2
              complete StatusComplete ListItems=1
            event VarSet
            event Newexten
            event SuccessfulAuth
            event Newexten
            event SoftHangupRequest
            event HangupRequest
            event Hangup
            event Cdr x3
            event VarSet x2
            event BridgeLeave
            event Hangup
            event BridgeLeave
            event VarSet x5
            event SoftHangupRequest
            event HangupHandlerRun
            event VarSet x2
            event Newexten x2
            event UserEvent
            event Newexten
            event VarSet x4
            event HangupRequest
            event BridgeDestroy
            event SoftHangupRequest
            event Hangup x2
            event DeviceStateChange x4
            done 01-4: Goodbye "Thanks for all the fish." ok
        "#]],
    );
}

#[test]
fn snapshot_connection_lists() {
    drive(
        "01_inbound_answered.snapshot",
        &mut Session::with_id_prefix(creds(AuthMethod::Plain, "harness-secret", "off"), "snap"),
        vec![
            Action::core_show_channels(),
            Action::status(),
            Action::bridge_list(),
            Action::logoff(),
        ],
        Tx::Same,
        expect![[r#"
            greeting Asterisk Call Manager 11.0.0
            logged in
            done snap-2: Success "Channels will follow" ok
              item CoreShowChannel Local/201@agents-00000001;1
              item CoreShowChannel Local/201@agents-00000001;2
              item CoreShowChannel Local/15550001000@from-pstn-00000000;2
              item CoreShowChannel Local/15550001000@from-pstn-00000000;1
              complete CoreShowChannelsComplete ListItems=4
            done snap-3: Success "Channel status will follow" ok
              item Status Local/201@agents-00000001;1
              item Status Local/201@agents-00000001;2
              item Status Local/15550001000@from-pstn-00000000;2
              item Status Local/15550001000@from-pstn-00000000;1
              complete StatusComplete ListItems=4
            done snap-4: Success "Bridge listing will follow" ok
              item BridgeListItem 
              complete BridgeListComplete ListItems=1
            done snap-5: Goodbye "Thanks for all the fish." ok
        "#]],
    );
}
