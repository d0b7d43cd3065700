//! Decoder properties on every real transcript (`*/ami/*.rx.raw` of all fixture sets) and on
//! generated input: no decode errors, the same messages however the bytes are split into
//! reads, the same messages with LF-only line ends, no panic and a bounded buffer on any bytes.

mod common;

use std::path::PathBuf;
use std::sync::LazyLock;

use ami::{Credentials, DecodeError, Decoder, Frame, Session};
use bytes::BytesMut;
use proptest::prelude::*;

static TRANSCRIPTS: LazyLock<Vec<(PathBuf, Vec<u8>)>> = LazyLock::new(|| {
    common::all_rx_raw()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
});

type Decoded = Vec<Result<Frame, DecodeError>>;

/// Feeds `input` to a decoder in reads of the given sizes (cycled), collecting every frame
/// and error; checks the buffer bound whenever the decoder asks for more input.
fn decode_in_chunks(mut dec: Decoder, bound: usize, input: &[u8], sizes: &[usize]) -> Decoded {
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
        assert!(buf.len() <= bound, "buffer {} > bound {bound}", buf.len());
        if rest.is_empty() {
            return out;
        }
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn decode_whole(input: &[u8]) -> Decoded {
    decode_in_chunks(Decoder::new(), usize::MAX, input, &[usize::MAX])
}

#[test]
fn every_transcript_decodes_without_errors() {
    for (path, bytes) in TRANSCRIPTS.iter() {
        let frames = decode_whole(bytes);
        assert!(
            matches!(frames.first(), Some(Ok(Frame::Banner(_)))),
            "{}: no banner",
            path.display()
        );
        for f in &frames {
            if let Err(e) = f {
                panic!("{}: {e}", path.display());
            }
        }
        // These transcripts have no old-style command output, so every message ends with
        // the one blank line: a decoder merging or splitting messages gets another count.
        let blank_lines = bytes.windows(4).filter(|w| w == b"\r\n\r\n").count();
        assert_eq!(frames.len() - 1, blank_lines, "{}", path.display());
    }
}

#[test]
fn every_two_chunk_split_of_small_transcripts_gives_the_same_messages() {
    for name in [
        "00a_login_plain",
        "00b_login_md5",
        "00c_login_failed",
        "00d_unauth_action",
        "01_inbound_answered.snapshot",
    ] {
        let bytes = common::read(&format!("asterisk-22/ami/{name}.rx.raw"));
        let whole = decode_whole(&bytes);
        for split in 1..bytes.len() {
            let sizes = [split, bytes.len()];
            let split_up = decode_in_chunks(Decoder::new(), usize::MAX, &bytes, &sizes);
            assert_eq!(split_up, whole, "{name} split at {split}");
        }
    }
}

#[test]
fn lf_only_transcripts_give_the_same_messages() {
    for (path, bytes) in TRANSCRIPTS.iter() {
        let lf: Vec<u8> = String::from_utf8_lossy(bytes).replace("\r\n", "\n").into();
        assert_eq!(decode_whole(&lf), decode_whole(bytes), "{}", path.display());
    }
}

/// Text made of AMI's building blocks, so generated input hits the interesting states
/// (terminators split across reads, stray CRs, old command output).
fn ami_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just(": ".to_owned()),
        Just("Asterisk Call Manager/11.0.0\r\n".to_owned()),
        Just("Response: Follows\r\n".to_owned()),
        Just("--END COMMAND--".to_owned()),
        Just("Response: Success\r\nActionID: t-1\r\n".to_owned()),
        Just("EventList: start\r\n".to_owned()),
        Just("Event: StatusComplete\r\nActionID: t-2\r\n".to_owned()),
        "[A-Za-z:é -]{1,6}",
    ];
    prop::collection::vec(piece, 0..120).prop_map(|p| p.concat().into_bytes())
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..8, 1usize..4096], 1..32)
}

fn session() -> Session {
    Session::with_id_prefix(
        Credentials {
            username: "u".into(),
            secret: "s".into(),
            auth: ami::AuthMethod::Md5,
            events: "on".into(),
        },
        "t",
    )
}

fn session_events(input: &[u8], sizes: &[usize]) -> Vec<ami::SessionEvent> {
    let mut s = session();
    s.send_action(ami::Action::status());
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
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_split_of_any_transcript_gives_the_same_messages(
        index in 0..TRANSCRIPTS.len(),
        sizes in chunk_sizes(),
    ) {
        let (path, bytes) = &TRANSCRIPTS[index];
        let split_up = decode_in_chunks(Decoder::new(), usize::MAX, bytes, &sizes);
        prop_assert_eq!(split_up, decode_whole(bytes), "{}", path.display());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ami_like_input_decodes_the_same_however_split(input in ami_like(), sizes in chunk_sizes()) {
        let split_up = decode_in_chunks(Decoder::new(), usize::MAX, &input, &sizes);
        prop_assert_eq!(split_up, decode_whole(&input));
    }

    #[test]
    fn session_reports_the_same_however_split(input in ami_like(), sizes in chunk_sizes()) {
        prop_assert_eq!(session_events(&input, &sizes), session_events(&input, &[usize::MAX]));
    }

    #[test]
    fn any_bytes_never_panic_and_the_buffer_stays_bounded(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in chunk_sizes(),
        bound in 16usize..512,
    ) {
        decode_in_chunks(Decoder::with_max_message_len(bound), bound, &input, &sizes);
        decode_in_chunks(Decoder::without_banner(), usize::MAX, &input, &sizes);
        session_events(&input, &sizes);
    }
}
