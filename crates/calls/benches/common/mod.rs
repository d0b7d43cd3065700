//! Synthetic load for the tracker benches: the real PJSIP transcripts (Asterisk 18 and 22)
//! copied many times with fresh ids and interleaved, so thousands of calls run at once.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use ami::{Decoder, Frame, Message};
use bytes::BytesMut;
use calls::Tracker;
use chrono::{DateTime, TimeDelta, Utc};

/// Fixture sets with real phones and trunks (FreePBX-shaped dialplan).
const SETS: [&str; 2] = ["asterisk-22-pjsip", "asterisk-18-pjsip"];

/// Copies are told apart by a fixed-width suffix: 5 decimal digits on ids.
pub const MAX_COPIES: usize = 100_000;

/// Every PJSIP transcript's events (responses dropped: the tracker gets events).
///
/// Panics (the bench must fail, not measure nothing) when a fixture set is missing.
pub fn transcripts() -> Vec<Vec<Message>> {
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ));
    let mut out = Vec::new();
    for set in SETS {
        for path in rx_files(&root.join(set).join("ami")) {
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let events = MessageBatches::new(file, usize::MAX)
                .flatten()
                .filter(|m| m.event().is_some())
                .collect();
            out.push(events);
        }
    }
    out
}

fn rx_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fixture directory {} is missing: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".rx.raw"))
        .collect();
    assert!(!paths.is_empty(), "no *.rx.raw in {}", dir.display());
    paths.sort();
    paths
}

/// `copies` copies of the transcripts (copy `c` is transcript `c % len`), all starting
/// together and advancing one event per round, so about `copies` calls are in progress at
/// the peak. Each copy gets its own Uniqueids, Linkedids and channel names.
pub fn merged(transcripts: &[Vec<Message>], copies: usize) -> impl Iterator<Item = Message> + '_ {
    assert!(copies <= MAX_COPIES, "at most {MAX_COPIES} copies");
    let longest = transcripts.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest).flat_map(move |round| {
        (0..copies).filter_map(move |copy| {
            transcripts[copy % transcripts.len()]
                .get(round)
                .map(|msg| with_fresh_ids(msg, copy))
        })
    })
}

/// Rewrites what identifies a channel or call so copies never collide: `*Uniqueid` and
/// `*Linkedid` values (any key, including bridge ids) and every value shaped like a channel
/// name (`PJSIP/201-0000000a`, `Local/201#@from-internal-00000000;1`, also inside `VarSet`).
fn with_fresh_ids(msg: &Message, copy: usize) -> Message {
    let mut out = Message::new();
    let mut value = String::new();
    for (key, v) in msg.iter() {
        value.clear();
        let key_lower = key.to_ascii_lowercase();
        if !v.is_empty() && (key_lower.ends_with("uniqueid") || key_lower.ends_with("linkedid")) {
            write!(value, "{v}{copy:05}").unwrap();
        } else if let Some((head, seq, half)) = channel_name(v) {
            write!(value, "{head}-{seq}{copy:05x}{half}").unwrap();
        } else {
            value.push_str(v);
        }
        out.push(key, &value);
    }
    out
}

/// Splits `Tech/resource-0000000a;1` into (`Tech/resource`, `0000000a`, `;1`).
fn channel_name(v: &str) -> Option<(&str, &str, &str)> {
    let (name, half) = match v.rfind(';') {
        Some(i) if matches!(&v[i..], ";1" | ";2") => (&v[..i], &v[i..]),
        _ => (v, ""),
    };
    let (head, seq) = name.rsplit_once('-')?;
    let is_seq = seq.len() == 8 && seq.bytes().all(|b| b.is_ascii_hexdigit());
    (is_seq && head.contains('/')).then_some((head, seq, half))
}

/// The event clock of the synthetic stream: one millisecond per event.
pub fn event_time(index: usize) -> DateTime<Utc> {
    let start = DateTime::from_timestamp(1_767_225_600, 0).unwrap(); // 2026-01-01
    start + TimeDelta::milliseconds(index as i64)
}

/// Reads an AMI byte stream (no banner) and yields its messages in batches, so a huge
/// file can be pre-decoded a batch at a time and only the tracking be timed.
#[derive(Debug)]
pub struct MessageBatches<R> {
    reader: R,
    decoder: Decoder,
    buf: BytesMut,
    batch: usize,
    eof: bool,
}

impl<R: Read> MessageBatches<R> {
    /// Batches of at most `batch` messages.
    pub fn new(reader: R, batch: usize) -> Self {
        MessageBatches {
            reader,
            decoder: Decoder::new(),
            buf: BytesMut::new(),
            batch,
            eof: false,
        }
    }
}

impl<R: Read> Iterator for MessageBatches<R> {
    type Item = Vec<Message>;

    fn next(&mut self) -> Option<Vec<Message>> {
        const READ: usize = 1 << 20;
        let mut out = Vec::new();
        while out.len() < self.batch {
            match self
                .decoder
                .decode(&mut self.buf)
                .expect("bench input decodes")
            {
                Some(Frame::Message(msg)) => out.push(msg),
                Some(Frame::Banner(_)) => {}
                None if self.eof => break,
                None => {
                    let filled = self.buf.len();
                    self.buf.resize(filled + READ, 0);
                    let n = self
                        .reader
                        .read(&mut self.buf[filled..])
                        .expect("read input");
                    self.buf.truncate(filled + n);
                    self.eof = n == 0;
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Feeds `batch` (message `i` at [`event_time`]`(first_index + i)`) and drains what the
/// tracker emits, as the pipeline does after every message. Returns the calls that ended.
pub fn track(tracker: &mut Tracker, batch: &[Message], first_index: usize) -> usize {
    let mut ended = 0;
    for (i, msg) in batch.iter().enumerate() {
        tracker.handle(event_time(first_index + i), msg);
        while let Some(event) = tracker.poll_event() {
            std::hint::black_box(event);
        }
        while let Some(record) = tracker.poll_record() {
            std::hint::black_box(record);
            ended += 1;
        }
    }
    ended
}
