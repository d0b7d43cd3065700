//! The sans-IO cost of one 3-command FastAGI session (the recorded Asterisk 22 environment,
//! three SET VARIABLE, their replies): decoding plus encoding, no sockets.

use agi::{Command, Session, SessionEvent};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

fn one_session(env: &[u8], out: &mut Vec<u8>) -> usize {
    let mut session = Session::new();
    session.handle_input(env);
    let mut replies = 0;
    out.clear();
    while let Some(event) = session.poll_event() {
        if matches!(event, SessionEvent::Reply(_)) {
            replies += 1;
        }
        if replies < 3 {
            let name = ["PBXLINK_A", "PBXLINK_B", "PBXLINK_C"][replies];
            session
                .send(&Command::SetVariable { name, value: "202" }, out)
                .unwrap();
            session.handle_input(b"200 result=1\n");
        }
    }
    replies
}

fn bench(c: &mut Criterion) {
    let rx = std::fs::read(format!("{FIXTURES}/asterisk-22/fastagi/session_001.rx.raw"))
        .expect("fixture asterisk-22/fastagi/session_001.rx.raw is required");
    let env_end = rx.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let env = &rx[..env_end];
    let mut out = Vec::new();
    assert_eq!(one_session(env, &mut out), 3);
    let mut group = c.benchmark_group("agi");
    group.throughput(Throughput::Elements(1));
    group.bench_function("session_3_commands", |b| {
        b.iter(|| one_session(std::hint::black_box(env), &mut out))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
