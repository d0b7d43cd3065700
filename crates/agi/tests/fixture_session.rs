//! The recorded Asterisk 22 FastAGI session, replayed through the sans-IO [`Session`]: the
//! environment matches `env.txt`, and the fixture's script produces `tx.raw` byte for byte.

use std::path::PathBuf;

use agi::{Command, Reply, Session, SessionEvent};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(FIXTURES)
        .join("asterisk-22/fastagi")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is required: {e}", path.display()))
}

fn next_event(session: &mut Session, rx: &mut &[u8]) -> SessionEvent {
    loop {
        if let Some(event) = session.poll_event() {
            return event;
        }
        assert!(!rx.is_empty(), "the recording ended early");
        // One byte at a time: the decoder must not care how the stream is split.
        session.handle_input(&rx[..1]);
        *rx = &rx[1..];
    }
}

#[test]
fn session_001_byte_for_byte() {
    let rx = fixture("session_001.rx.raw");
    let mut rx = &rx[..];
    let mut session = Session::new();
    let SessionEvent::Ready(env) = next_event(&mut session, &mut rx) else {
        panic!("no environment")
    };
    let env_txt = String::from_utf8(fixture("session_001.env.txt")).unwrap();
    let parsed: String = env.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    assert_eq!(parsed, env_txt);
    assert_eq!(env.script_path(), "route");
    assert_eq!(env.script_params().collect::<Vec<_>>(), [("x", "1")]);

    // The reference server's script (tools/fastagi_server.py), step by step.
    let mut tx = Vec::new();
    let mut run = |command: Command<'_>, rx: &mut &[u8]| -> Reply {
        session.send(&command, &mut tx).unwrap();
        match next_event(&mut session, rx) {
            SessionEvent::Reply(reply) => reply,
            other => panic!("{other:?}"),
        }
    };
    let hello = format!(
        "FastAGI {}: routing call {}",
        env.network_script().unwrap(),
        env.unique_id().unwrap()
    );
    run(
        Command::Verbose {
            message: &hello,
            level: 1,
        },
        &mut rx,
    );
    let caller = run(
        Command::GetVariable {
            name: "CALLERID(num)",
        },
        &mut rx,
    );
    let did = run(Command::GetVariable { name: "DID" }, &mut rx);
    assert_eq!(
        caller.success().unwrap().data.as_deref(),
        Some("15551234567")
    );
    assert_eq!(did.success().unwrap().data.as_deref(), Some("15550001000"));
    run(
        Command::SetVariable {
            name: "TARGET",
            value: "202",
        },
        &mut rx,
    );
    run(
        Command::Verbose {
            message: "FastAGI: TARGET set to 202",
            level: 1,
        },
        &mut rx,
    );

    assert!(rx.is_empty(), "unread: {:?}", String::from_utf8_lossy(rx));
    assert_eq!(
        String::from_utf8(tx).unwrap(),
        String::from_utf8(fixture("session_001.tx.raw")).unwrap()
    );
}
