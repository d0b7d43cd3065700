//! Fuzzes the AGI decoder and session (environment block, reply lines, usage blocks) with
//! arbitrary bytes in arbitrary reads: no panic, the line bound holds, and the split never
//! changes what comes out. Also checks that every encodable argument reads back unchanged
//! through a port of Asterisk's `parse_args`.

#![no_main]

use agi::{Command, Decoder, Frame, DecodeError, Session, SessionEvent};
use libfuzzer_sys::fuzz_target;

/// A small bound, so over-long lines are exercised too.
const SMALL_BOUND: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the read sizes, the rest is the stream.
    let (size_bytes, stream) = data.split_at(data.len().min(4));
    let sizes: Vec<usize> = size_bytes.iter().map(|&b| usize::from(b % 32) + 1).collect();
    let sizes = if sizes.is_empty() { vec![usize::MAX] } else { sizes };

    let whole = decode(Decoder::new(), usize::MAX, stream, &[usize::MAX]);
    assert_eq!(decode(Decoder::new(), usize::MAX, stream, &sizes), whole);
    decode(Decoder::with_max_line_len(SMALL_BOUND), SMALL_BOUND, stream, &sizes);
    assert_eq!(session(stream, &sizes), session(stream, &[usize::MAX]));

    // The same bytes as one argument: encoded, it must parse back to itself.
    if let Ok(text) = std::str::from_utf8(stream) {
        if let Ok(line) = (Command::SetVariable { name: "X", value: text }).to_line() {
            assert_eq!(parse_args(&line), ["SET", "VARIABLE", "X", text]);
        }
    }
});

fn decode(
    mut dec: Decoder,
    bound: usize,
    input: &[u8],
    sizes: &[usize],
) -> Vec<Result<Frame, DecodeError>> {
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    loop {
        out.extend(std::iter::from_fn(|| dec.next_frame()));
        assert!(dec.buffered() <= bound, "{} bytes held over the bound {bound}", dec.buffered());
        if rest.is_empty() {
            return out;
        }
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        dec.feed(&rest[..n]);
        rest = &rest[n..];
    }
}

/// Drives a session that sends a command whenever it may; returns events and bytes sent.
fn session(input: &[u8], sizes: &[usize]) -> (Vec<SessionEvent>, Vec<u8>) {
    let mut s = Session::new();
    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    loop {
        while let Some(event) = s.poll_event() {
            if matches!(event, SessionEvent::Ready(_) | SessionEvent::Reply(_)) {
                s.send(&Command::Noop, &mut sent).unwrap();
            }
            if let SessionEvent::Ready(env) = &event {
                let _ = (env.script_path(), env.args(), env.caller_id());
                let _ = env.script_params().count();
            }
            events.push(event);
        }
        if rest.is_empty() {
            return (events, sent);
        }
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        s.handle_input(&rest[..n]);
        rest = &rest[n..];
    }
}

/// Asterisk's `parse_args` (res_agi.c): whitespace splits, double quotes group, a backslash
/// takes the next character literally; a quote right after whitespace starts a word.
fn parse_args(line: &str) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let (mut quoted, mut escaped, mut whitespace) = (false, false, true);
    for c in line.chars() {
        match c {
            '"' if !escaped => {
                quoted = !quoted;
                if quoted && whitespace {
                    args.push(String::new());
                    whitespace = false;
                }
            }
            ' ' | '\t' if !quoted && !escaped => whitespace = true,
            '\\' if !escaped => {
                escaped = true;
                continue;
            }
            _ => {
                if whitespace {
                    args.push(String::new());
                    whitespace = false;
                }
                args.last_mut().unwrap().push(c);
            }
        }
        escaped = false;
    }
    args
}
