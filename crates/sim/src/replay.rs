//! `pbxlink replay FILE [--events] [--pbx NAME]`: runs the call tracker over a recorded AMI
//! stream and prints one call record per line (JSON Lines), optionally with the live call
//! events; `[pbx.tracker]` of the config's PBX, if any, tells phones from trunks.
//!
//! FILE is a raw AMI transcript (wire format, `*.rx.raw`) or a JSON array of event objects
//! (`[{"Event": "Newchannel", ...}]`, what common AMI libraries dump), told apart by the
//! first non-space byte. Event times come from the [`stream_clock`](crate::stream_clock).

use std::io::Write;
use std::path::Path;

use ami::{Decoder, Frame, Message};
use anyhow::Context;
use calls::{Tracker, TrackerConfig};

/// Replays `file` and writes the JSON lines to stdout.
pub fn run(file: &Path, tracker: TrackerConfig, events: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let msgs = load(&bytes).with_context(|| format!("decoding {}", file.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in replay(&msgs, tracker, events) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// The messages of a raw transcript or a JSON event array.
pub fn load(bytes: &[u8]) -> anyhow::Result<Vec<Message>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return load_json(bytes);
    }
    let mut buf = bytes::BytesMut::from(bytes);
    // Transcripts start with the banner; dumps of a proxy or AJAM body may not.
    let mut dec = if bytes.starts_with(b"Asterisk Call Manager/") {
        Decoder::new()
    } else {
        Decoder::without_banner()
    };
    let mut msgs = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(Frame::Message(m))) => msgs.push(m),
            Ok(Some(Frame::Banner(_))) => {}
            Ok(None) => break,
            // The decoder skipped one over-long message and carries on; so do we.
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    // A last message without its blank line still counts: the recording just stopped.
    buf.extend_from_slice(b"\r\n\r\n");
    if let Ok(Some(Frame::Message(m))) = dec.decode(&mut buf) {
        msgs.push(m);
    }
    Ok(msgs)
}

fn load_json(bytes: &[u8]) -> anyhow::Result<Vec<Message>> {
    let events: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(bytes).context("expected a JSON array of event objects")?;
    let mut msgs = Vec::with_capacity(events.len());
    for obj in &events {
        msgs.push(message_from_json(obj));
    }
    Ok(msgs)
}

/// A message from its JSON object form (`ami::Message::to_json`; the raw event log).
pub fn message_from_json(obj: &serde_json::Map<String, serde_json::Value>) -> Message {
    let mut m = Message::new();
    // The message kind goes first, as on the wire (that is where `Message` looks).
    let kind = ["Event", "Response", "Action"]
        .into_iter()
        .find(|k| obj.contains_key(*k));
    for (key, value) in kind
        .and_then(|k| obj.get_key_value(k))
        .into_iter()
        .chain(obj.iter().filter(|(k, _)| Some(k.as_str()) != kind))
    {
        push_json(&mut m, key, value);
    }
    m
}

fn push_json(m: &mut Message, key: &str, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => m.push(key, s),
        Value::Null => m.push(key, ""),
        // Repeated keys (`ChanVariable`, `Output`) come as arrays.
        Value::Array(items) => items.iter().for_each(|v| push_json(m, key, v)),
        other => m.push(key, &other.to_string()),
    }
}

/// Runs the tracker over `msgs`; returns the JSON lines (records, and events if asked).
pub fn replay(msgs: &[Message], config: TrackerConfig, events: bool) -> Vec<String> {
    let times = crate::stream_clock::reconstruct(msgs);
    let mut tracker = Tracker::new(config);
    let mut lines = Vec::new();
    let drain = |tracker: &mut Tracker, lines: &mut Vec<String>| {
        while let Some(ev) = tracker.poll_event() {
            if events {
                lines.push(to_json(&ev));
            }
        }
        while let Some(rec) = tracker.poll_record() {
            lines.push(to_json(&rec));
        }
    };
    for (msg, now) in msgs.iter().zip(&times) {
        tracker.handle(*now, msg);
        drain(&mut tracker, &mut lines);
    }
    if let Some(end) = times.last() {
        tracker.flush(*end);
        drain(&mut tracker, &mut lines);
    }
    lines
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Our own plain data types always serialize.
    serde_json::to_string(value).unwrap_or_default()
}
