//! The simulated PBX's CDR: each `Cdr` event it sends also becomes a row of a cdr_csv
//! Master.csv (`--cdr FILE`), in the format of cdr_csv with `loguniqueid`, `loguserfield`
//! and `newcdrcolumns` (21 fields, the Linkedid second to last): what `[pbx.cdr]
//! kind = "csv"` reads without `columns`.
//!
//! A PBX stamps its CDR with the clock it sends its events by, and pbxlink compares the two
//! (a gap's calls are looked up by the times pbxlink was away). Served `--speed N` times
//! faster than real time, the events go out on the wall clock while their calls run on a
//! virtual one, so the rows are written on the wall clock too ([`SendClock`]): read on the
//! virtual clock, a gap's calls would be looked for minutes away from their rows.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::Path;

use ami::Message;
use chrono::{DateTime, NaiveDateTime};

/// Channels whose Linkedid is remembered: a `Cdr` event comes shortly after its channel's
/// last event, so a bounded memory of the latest channels is enough.
const REMEMBERED_CHANNELS: usize = 10_000;

/// cdr_csv's time format (whole seconds).
const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// When a served event goes out: the wall-clock moment of a virtual one.
#[derive(Debug, Clone, Copy)]
pub struct SendClock {
    /// The virtual time (ms) of the first event, sent at `wall_ms`.
    pub first_ms: u64,
    pub wall_ms: u64,
    /// Virtual ms per wall-clock ms.
    pub speed: f64,
}

impl SendClock {
    fn wall(&self, virtual_ms: u64) -> u64 {
        let elapsed = virtual_ms.saturating_sub(self.first_ms) as f64 / self.speed;
        self.wall_ms + elapsed as u64
    }
}

/// The Master.csv being written.
#[derive(Debug)]
pub struct CdrCsv {
    out: std::io::BufWriter<std::fs::File>,
    /// Uniqueid -> Linkedid, as last seen (a pickup moves a channel into another call).
    linked: HashMap<String, String>,
    order: VecDeque<String>,
    /// The clock rows are written on; `None`: the events' own (virtual) times.
    clock: Option<SendClock>,
    /// cdr_csv's `sequence`: the order Asterisk made the rows in, across calls.
    sequence: u64,
}

impl CdrCsv {
    /// Appends to `path` (created if missing), like Asterisk.
    pub fn open(path: &Path) -> std::io::Result<CdrCsv> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(CdrCsv {
            out: std::io::BufWriter::new(file),
            linked: HashMap::new(),
            order: VecDeque::new(),
            clock: None,
            sequence: 0,
        })
    }

    /// Writes the rows' times on `clock` from now on.
    pub fn send_clock(&mut self, clock: SendClock) {
        self.clock = Some(clock);
    }

    /// A `Cdr` event's time (virtual, whole seconds) as ms on the clock rows are written on.
    fn written_ms(&self, time: &str) -> Option<u64> {
        let at = NaiveDateTime::parse_from_str(time, TIME).ok()?.and_utc();
        let ms = u64::try_from(at.timestamp_millis()).ok()?;
        Some(self.clock.map_or(ms, |clock| clock.wall(ms)))
    }

    /// Learns channels' Linkedids from the stream and writes a row per `Cdr` event.
    pub fn observe(&mut self, m: &Message) -> std::io::Result<()> {
        if let (Some(uniqueid), Some(linkedid)) = (m.get("Uniqueid"), m.get("Linkedid")) {
            if self
                .linked
                .insert(uniqueid.to_owned(), linkedid.to_owned())
                .is_none()
            {
                self.order.push_back(uniqueid.to_owned());
                if self.order.len() > REMEMBERED_CHANNELS {
                    let oldest = self.order.pop_front().unwrap_or_default();
                    self.linked.remove(&oldest);
                }
            }
        }
        if m.event() != Some("Cdr") {
            return Ok(());
        }
        let field = |k: &str| m.get(k).unwrap_or_default();
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let uniqueid = field("UniqueID");
        let linkedid = self.linked.get(uniqueid).map_or(uniqueid, String::as_str);
        let mut row: Vec<String> = [
            "AccountCode",
            "Source",
            "Destination",
            "DestinationContext",
            "CallerID",
            "Channel",
            "DestinationChannel",
            "LastApplication",
            "LastData",
        ]
        .iter()
        .map(|k| quote(field(k)))
        .collect();
        // Times and numbers are unquoted; a missing answer time is an empty field.
        let time = |k: &str| {
            self.written_ms(field(k))
                .and_then(|ms| DateTime::from_timestamp_millis(ms as i64))
                .map_or(String::new(), |at| quote(&at.format(TIME).to_string()))
        };
        row.extend(["StartTime", "AnswerTime", "EndTime"].map(time));
        // Duration and billsec stay the calls' own seconds: they tell how long a leg lasted
        // (a pickup's leg bills 0 s), which --speed must not turn into 0 for a conversation.
        row.push(field("Duration").to_owned());
        row.push(field("BillableSeconds").to_owned());
        for k in ["Disposition", "AMAFlags", "UniqueID", "UserField"] {
            row.push(quote(field(k)));
        }
        // peeraccount, linkedid, sequence (cdr_csv's newcdrcolumns).
        self.sequence += 1;
        row.extend([quote(""), quote(linkedid), self.sequence.to_string()]);
        writeln!(self.out, "{}", row.join(","))?;
        // A reader may look for the row at once (Asterisk writes each row as the leg ends).
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_cdr_csv_with_their_linkedid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        let mut csv = CdrCsv::open(&path).unwrap();
        let newchannel = Message::from_pairs([
            ("Event", "Newchannel"),
            ("Uniqueid", "1700000000.2"),
            ("Linkedid", "1700000000.1"),
        ]);
        let cdr = Message::from_pairs([
            ("Event", "Cdr"),
            ("Source", "201"),
            ("Destination", "202"),
            ("CallerID", "\"Alice\" <201>"),
            ("Channel", "PJSIP/201-00000002"),
            ("DestinationChannel", "PJSIP/202-00000003"),
            ("LastApplication", "Dial"),
            ("StartTime", "2023-11-14 22:13:20"),
            ("AnswerTime", ""),
            ("EndTime", "2023-11-14 22:13:25"),
            ("Duration", "5"),
            ("BillableSeconds", "0"),
            ("Disposition", "NO ANSWER"),
            ("UniqueID", "1700000000.2"),
        ]);
        csv.observe(&newchannel).unwrap();
        csv.observe(&cdr).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<_> = calls::cdr::read_csv(
            text.as_bytes(),
            &calls::CsvLayout::CdrCsv,
            calls::CdrZone::Utc,
        )
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(
            (
                row.linkedid.as_str(),
                row.clid.as_str(),
                row.answer,
                row.duration
            ),
            ("1700000000.1", "\"Alice\" <201>", None, 5)
        );
    }
}
