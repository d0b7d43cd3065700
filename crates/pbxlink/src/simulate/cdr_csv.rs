//! The simulated PBX's CDR: each `Cdr` event it sends also becomes a row of a cdr_csv
//! Master.csv (`--cdr FILE`), in the format of cdr_csv with `loguniqueid`, `loguserfield`
//! and `newcdrcolumns` (21 fields, the Linkedid second to last): what `[pbx.cdr]
//! kind = "csv"` reads without `columns`.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::Path;

use ami::Message;

/// Channels whose Linkedid is remembered: a `Cdr` event comes shortly after its channel's
/// last event, so a bounded memory of the latest channels is enough.
const REMEMBERED_CHANNELS: usize = 10_000;

/// The Master.csv being written.
#[derive(Debug)]
pub struct CdrCsv {
    out: std::io::BufWriter<std::fs::File>,
    /// Uniqueid -> Linkedid, as last seen (a pickup moves a channel into another call).
    linked: HashMap<String, String>,
    order: VecDeque<String>,
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
        })
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
        row.extend(
            ["StartTime", "AnswerTime", "EndTime"]
                .iter()
                .map(|k| match field(k) {
                    "" => String::new(),
                    t => quote(t),
                }),
        );
        row.push(field("Duration").to_owned());
        row.push(field("BillableSeconds").to_owned());
        for k in ["Disposition", "AMAFlags", "UniqueID", "UserField"] {
            row.push(quote(field(k)));
        }
        // peeraccount, linkedid, sequence (cdr_csv's newcdrcolumns).
        row.extend([quote(""), quote(linkedid), "0".into()]);
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
