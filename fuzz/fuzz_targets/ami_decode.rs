//! Fuzzes the AMI decoder and session with arbitrary bytes in arbitrary reads: no panic, the
//! buffer bound holds, and splitting the input into reads never changes what comes out.

#![no_main]

use ami::{Action, AuthMethod, Credentials, DecodeError, Decoder, Frame, Session, SessionEvent};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// A small bound, so over-long messages and resynchronisation are exercised too.
const SMALL_BOUND: usize = 512;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the read sizes, the rest is the stream.
    let (size_bytes, stream) = data.split_at(data.len().min(8));
    let sizes: Vec<usize> = size_bytes
        .iter()
        .map(|&b| {
            if b < 128 {
                usize::from(b) + 1
            } else {
                usize::from(b - 127) * 64
            }
        })
        .collect();
    let sizes = if sizes.is_empty() {
        vec![usize::MAX]
    } else {
        sizes
    };

    // Without over-long messages the split must not matter.
    let whole = decode(Decoder::new(), usize::MAX, stream, &[usize::MAX]);
    assert_eq!(decode(Decoder::new(), usize::MAX, stream, &sizes), whole);
    decode(
        Decoder::with_max_message_len(SMALL_BOUND),
        SMALL_BOUND,
        stream,
        &sizes,
    );
    decode(Decoder::without_banner(), usize::MAX, stream, &sizes);

    assert_eq!(session(stream, &sizes), session(stream, &[usize::MAX]));

    let _ = ami::ajam::parse_mxml(stream);
    let _ = ami::ajam::parse_rawman(stream);
});

fn decode(
    mut dec: Decoder,
    bound: usize,
    input: &[u8],
    sizes: &[usize],
) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        }
        assert!(
            buf.len() <= bound,
            "buffer {} over the bound {bound}",
            buf.len()
        );
        if rest.is_empty() {
            return out;
        }
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn session(input: &[u8], sizes: &[usize]) -> Vec<SessionEvent> {
    let mut s = Session::with_id_prefix(
        Credentials {
            username: "u".into(),
            secret: "s".into(),
            auth: AuthMethod::Md5,
            events: "on".into(),
        },
        "t",
    );
    s.send_action(Action::status());
    s.send_action(Action::command("core show channels"));
    let mut events = Vec::new();
    let mut rest = input;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = n.clamp(1, rest.len());
        s.handle_input(&rest[..n]);
        rest = &rest[n..];
        events.extend(std::iter::from_fn(|| s.poll_event()));
        while s.poll_transmit().is_some() {}
    }
    s.connection_lost();
    events
}
