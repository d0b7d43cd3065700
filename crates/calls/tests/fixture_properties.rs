//! Properties of the tracker on every real AMI transcript in ../shared/fixtures: a stream
//! cut short at the front never invents or distorts a call (a call whose start was cut is
//! taken in only from the PBX's own channel list, and says so), and the byte chunking of the
//! stream never changes the records.

use std::path::PathBuf;

use ami::{Decoder, Frame, Message};
use bytes::BytesMut;
use calls::{CallRecord, Tracker, TrackerConfig};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");

/// Every `ami/*.rx.raw` of every fixture set. Panics (fails the test) when none is there.
fn transcripts() -> Vec<(PathBuf, Vec<u8>)> {
    let sets = std::fs::read_dir(FIXTURES)
        .unwrap_or_else(|e| panic!("fixture directory {FIXTURES} is missing: {e}"));
    let mut files = Vec::new();
    for set in sets.flatten() {
        let Ok(ami) = std::fs::read_dir(set.path().join("ami")) else {
            continue;
        };
        for f in ami.flatten() {
            let path = f.path();
            if path.to_string_lossy().ends_with(".rx.raw") {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the fixture transcripts under {FIXTURES}"
    );
    files
}

fn decode_chunks(chunks: &[&[u8]]) -> Vec<Message> {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = dec.decode(&mut buf).unwrap() {
            if let Frame::Message(m) = frame {
                msgs.push(m);
            }
        }
    }
    msgs
}

/// The stream position as the clock: the tracker must not care where `now` comes from.
fn at(index: usize) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + index as i64, 0).unwrap()
}

/// Records of `msgs[skip..]`, each message keeping the time it has in the whole stream.
fn records(msgs: &[Message], skip: usize) -> Vec<CallRecord> {
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate().skip(skip) {
        tracker.handle(at(i), m);
        while tracker.poll_event().is_some() {}
        out.extend(std::iter::from_fn(|| tracker.poll_record()));
    }
    tracker.flush(at(msgs.len()));
    out.extend(std::iter::from_fn(|| tracker.poll_record()));
    out
}

fn linkedids(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m.get("Linkedid")).collect()
}

/// Whether `msgs[at]` lies inside a list answer (after its `EventList: start` response,
/// up to its `Complete` event).
fn inside_list(msgs: &[Message], at: usize) -> bool {
    let mut open = false;
    for m in &msgs[..at] {
        match m.get("EventList") {
            Some("start") => open = true,
            Some("Complete") => open = false,
            _ => {}
        }
    }
    open
}

/// Calls still going when the transcript ends, by its own account: a channel list
/// (`CoreShowChannels`) names them and no Hangup of their listed channels follows (a
/// client that read the lists and logged off mid-call).
fn open_at_end(msgs: &[Message]) -> Vec<String> {
    let mut open: Vec<(String, String)> = Vec::new();
    for m in msgs {
        match m.event() {
            Some("CoreShowChannel") => {
                if let (Some(c), Some(l)) = (m.get("Channel"), m.get("Linkedid")) {
                    open.push((c.to_owned(), l.to_owned()));
                }
            }
            Some("Hangup") => open.retain(|(c, _)| Some(c.as_str()) != m.get("Channel")),
            _ => {}
        }
    }
    let mut ids: Vec<String> = open.into_iter().map(|(_, l)| l).collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn every_transcript_ends_with_no_call_left_open() {
    for (path, bytes) in transcripts() {
        let msgs = decode_chunks(&[&bytes]);
        let mut tracker = Tracker::new(TrackerConfig::default());
        for (i, m) in msgs.iter().enumerate() {
            tracker.handle(at(i), m);
        }
        let open = open_at_end(&msgs).len();
        assert_eq!(tracker.calls_in_progress(), open, "{}", path.display());
    }
}

#[test]
fn every_call_is_started_once_ended_once_and_recorded_once() {
    use calls::CallEventKind::{Ended, Started};
    for (path, bytes) in transcripts() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut story: Vec<(String, &'static str)> = Vec::new();
        let mut recorded = Vec::new();
        let msgs = decode_chunks(&[&bytes]);
        let open = open_at_end(&msgs);
        for (i, m) in msgs.iter().enumerate() {
            tracker.handle(at(i), m);
            while let Some(ev) = tracker.poll_event() {
                let kind = match ev.kind {
                    Started { .. } => "started",
                    Ended { .. } => "ended",
                    _ => "other",
                };
                story.push((ev.call_id, kind));
            }
            recorded.extend(std::iter::from_fn(|| tracker.poll_record()).map(|r| r.id));
        }
        let mut ids: Vec<&String> = story.iter().map(|(id, _)| id).collect();
        ids.sort();
        ids.dedup();
        ids.retain(|id| !open.contains(id));
        assert_eq!(ids.len(), recorded.len(), "{}", path.display());
        for id in ids {
            let kinds: Vec<&str> = story
                .iter()
                .filter(|(c, _)| c == id)
                .map(|(_, k)| *k)
                .collect();
            assert_eq!(kinds.first(), Some(&"started"), "{}: {id}", path.display());
            assert_eq!(kinds.last(), Some(&"ended"), "{}: {id}", path.display());
            assert_eq!(
                kinds.iter().filter(|k| **k != "other").count(),
                2,
                "{}: {id}",
                path.display()
            );
            assert!(
                recorded.contains(id),
                "{}: {id} has no record",
                path.display()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn dropping_the_start_never_invents_or_distorts_a_call(file in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let files = transcripts();
        let (path, bytes) = &files[file.index(files.len())];
        let msgs = decode_chunks(&[bytes]);
        let full = records(&msgs, 0);
        let skip = cut.index(msgs.len() + 1);
        // The link hands over a list answer whole: a stream never starts inside one.
        prop_assume!(!inside_list(&msgs, skip));
        let ids = linkedids(&msgs);
        for rec in records(&msgs, skip) {
            prop_assert!(ids.contains(&rec.id.as_str()), "{}: invented call {}", path.display(), rec.id);
            let same = full.iter().find(|f| f.id == rec.id);
            if rec.provenance.started_in_gap.is_some() {
                // Found in progress in the PBX's list: who called whom and how it ended
                // are the same; the story before the listing is not there.
                let same = same.map(|f| (f.direction, &f.from, &f.to, f.disposition, &f.answered_by));
                let got = (rec.direction, &rec.from, &rec.to, rec.disposition, &rec.answered_by);
                prop_assert_eq!(Some(got), same, "{}: call {} taken from the list after dropping {} events", path.display(), &rec.id, skip);
            } else {
                prop_assert_eq!(Some(&rec), same, "{}: call {} differs after dropping {} events", path.display(), &rec.id, skip);
            }
        }
    }

    #[test]
    fn splitting_the_bytes_anywhere_gives_the_same_records(file in any::<prop::sample::Index>(), split in any::<prop::sample::Index>()) {
        let files = transcripts();
        let (_, bytes) = &files[file.index(files.len())];
        let whole = records(&decode_chunks(&[bytes]), 0);
        let (a, b) = bytes.split_at(split.index(bytes.len() + 1));
        prop_assert_eq!(records(&decode_chunks(&[a, b]), 0), whole);
    }
}
