//! The PBX's CDR (Call Detail Records): its rows, read from cdr_csv / cdr_custom lines or
//! FreePBX's `asteriskcdrdb.cdr`, and what they tell about a call pbxlink saw only in part.
//!
//! The CDR has one row per leg (per pair of bridged channels), written when the leg ends.
//! Rows of one call share its Linkedid. FreePBX writes rows for every Local channel half,
//! each ring group member (`dst` "202#"), each queue member attempt (lastapp `Queue`, "NO
//! ANSWER" with billsec > 0 while the caller waited) and announcements (ANSWERED with no
//! `dstchannel`: the PBX answered, no person did). So "who answered" is read from the
//! answered rows whose `dstchannel` is a phone (or, for a `Dial` to a trunk, the number
//! dialed; for a conference, the room), never from the disposition of the call's first row.
//!
//! Times in the CDR are whole seconds of the PBX's clock, in its time zone ([`CdrZone`]).
//! [`repair`] anchors them on the call's start as pbxlink saw it, so a skewed PBX clock
//! shifts nothing. No clock, no I/O: rows come in as text fields or values.

use std::io::Read;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeDelta, TimeZone, Utc};

use crate::party::{Kind, TrackerConfig};
use crate::record::{CallRecord, Direction, Disposition, Gap, Provenance, Source, TimelineEntry};

/// One CDR row: the columns of FreePBX's `cdr` table (and of Asterisk's `ast_cdr`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrRow {
    /// When the leg began (`calldate` in MySQL, `start` in CSV).
    pub start: DateTime<Utc>,
    /// When the leg was answered; `None` when it never was.
    pub answer: Option<DateTime<Utc>>,
    /// When the leg ended.
    pub end: DateTime<Utc>,
    /// `"Name" <number>` of the caller.
    pub clid: String,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    /// Seconds from start to end.
    pub duration: u64,
    /// Seconds from answer to end.
    pub billsec: u64,
    /// `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`.
    pub disposition: String,
    /// A name in CSV (`DOCUMENTATION`), a number in MySQL.
    pub amaflags: String,
    pub accountcode: String,
    pub uniqueid: String,
    pub userfield: String,
    pub peeraccount: String,
    /// The call (all its legs share it).
    pub linkedid: String,
    /// Order of the rows of one Asterisk (a global counter).
    pub sequence: u64,
    /// FreePBX's CDR variables (empty when not written).
    pub did: String,
    pub recordingfile: String,
    pub cnum: String,
    pub cnam: String,
}

/// The zone the PBX writes CDR times in: cdr_csv with `usegmtime = yes` writes UTC; cdr_custom
/// and FreePBX's MySQL table write the PBX's local time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CdrZone {
    #[default]
    Utc,
    /// This host's zone (pbxlink runs on the PBX, or in the same zone).
    Local,
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
}

impl CdrZone {
    /// The instant a CDR time of this zone names (the earlier one in a DST fold).
    pub fn to_utc(self, t: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            CdrZone::Utc => Some(t.and_utc()),
            CdrZone::Local => Local.from_local_datetime(&t).earliest().map(|d| d.to_utc()),
            CdrZone::Fixed(offset) => offset
                .from_local_datetime(&t)
                .earliest()
                .map(|d| d.to_utc()),
        }
    }

    /// `at` as the PBX writes it (for queries by time).
    pub fn from_utc(self, at: DateTime<Utc>) -> NaiveDateTime {
        match self {
            CdrZone::Utc => at.naive_utc(),
            CdrZone::Local => at.with_timezone(&Local).naive_local(),
            CdrZone::Fixed(offset) => at.with_timezone(&offset).naive_local(),
        }
    }

    /// A CDR time as text: `2026-11-22 22:54:30` (cdr_csv, `CDR(start)`), or epoch seconds
    /// (`CDR(start,u)`); empty: none.
    fn parse(self, s: &str) -> Result<Option<DateTime<Utc>>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        if let Ok(epoch) = s.parse::<f64>() {
            return Ok(DateTime::from_timestamp_micros((epoch * 1e6) as i64));
        }
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .map_err(|e| format!("time '{s}': {e}"))?;
        self.to_utc(naive)
            .map(Some)
            .ok_or_else(|| format!("time '{s}' does not exist in the PBX's zone"))
    }
}

/// A CDR column, by its `CDR(...)` variable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Start,
    Answer,
    End,
    Clid,
    Src,
    Dst,
    Dcontext,
    Channel,
    Dstchannel,
    Lastapp,
    Lastdata,
    Duration,
    Billsec,
    Disposition,
    Amaflags,
    Accountcode,
    Uniqueid,
    Userfield,
    Peeraccount,
    Linkedid,
    Sequence,
    Did,
    Recordingfile,
    Cnum,
    Cnam,
}

impl Column {
    const NAMES: [(&'static str, Column); 25] = [
        ("start", Column::Start),
        ("answer", Column::Answer),
        ("end", Column::End),
        ("clid", Column::Clid),
        ("src", Column::Src),
        ("dst", Column::Dst),
        ("dcontext", Column::Dcontext),
        ("channel", Column::Channel),
        ("dstchannel", Column::Dstchannel),
        ("lastapp", Column::Lastapp),
        ("lastdata", Column::Lastdata),
        ("duration", Column::Duration),
        ("billsec", Column::Billsec),
        ("disposition", Column::Disposition),
        ("amaflags", Column::Amaflags),
        ("accountcode", Column::Accountcode),
        ("uniqueid", Column::Uniqueid),
        ("userfield", Column::Userfield),
        ("peeraccount", Column::Peeraccount),
        ("linkedid", Column::Linkedid),
        ("sequence", Column::Sequence),
        ("did", Column::Did),
        ("recordingfile", Column::Recordingfile),
        ("cnum", Column::Cnum),
        ("cnam", Column::Cnam),
    ];

    /// The column a `CDR(name)` variable is; `calldate` (MySQL's name) is `start`.
    pub fn named(name: &str) -> Option<Column> {
        let name = if name == "calldate" { "start" } else { name };
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }
}

/// cdr_csv's fixed columns (cdr/cdr_csv.c), before the optional ones.
const CDR_CSV: [Column; 16] = [
    Column::Accountcode,
    Column::Src,
    Column::Dst,
    Column::Dcontext,
    Column::Clid,
    Column::Channel,
    Column::Dstchannel,
    Column::Lastapp,
    Column::Lastdata,
    Column::Start,
    Column::Answer,
    Column::End,
    Column::Duration,
    Column::Billsec,
    Column::Disposition,
    Column::Amaflags,
];

/// How the fields of a CSV line map to columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvLayout {
    /// cdr_csv's Master.csv: the fixed columns, then `uniqueid` (`loguniqueid`), `userfield`
    /// (`loguserfield`) and `peeraccount, linkedid, sequence` (`newcdrcolumns`, required:
    /// without it the rows carry no Linkedid).
    CdrCsv,
    /// cdr_custom's mapping, one entry per field; `None` skips a field.
    Custom(Vec<Option<Column>>),
}

/// Columns a cdr_custom mapping must have for rows to be matched to calls and read.
const REQUIRED: [Column; 5] = [
    Column::Start,
    Column::Linkedid,
    Column::Channel,
    Column::Dstchannel,
    Column::Disposition,
];

impl CsvLayout {
    /// A cdr_custom layout from the `CDR(...)` names of its mapping, in order; `_` skips a
    /// field. Without `answer`/`end` they are derived from `duration` and `billsec`.
    pub fn custom<S: AsRef<str>>(names: &[S]) -> Result<CsvLayout, String> {
        let columns = names
            .iter()
            .map(|n| match n.as_ref() {
                "_" => Ok(None),
                n => Column::named(n)
                    .map(Some)
                    .ok_or_else(|| format!("unknown CDR column '{n}'")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let has = |c: Column| columns.contains(&Some(c));
        if let Some(missing) = REQUIRED.iter().find(|c| !has(**c)) {
            return Err(format!("columns lack '{}'", name_of(*missing)));
        }
        if !has(Column::End) && !has(Column::Duration) {
            return Err("columns need 'end' or 'duration'".into());
        }
        Ok(CsvLayout::Custom(columns))
    }

    /// One line's fields as a row.
    pub fn row(&self, fields: &[&str], zone: CdrZone) -> Result<CdrRow, String> {
        let columns: Vec<Option<Column>> = match self {
            CsvLayout::Custom(columns) => {
                if fields.len() != columns.len() {
                    return Err(format!(
                        "{} fields where the mapping has {}",
                        fields.len(),
                        columns.len()
                    ));
                }
                columns.clone()
            }
            CsvLayout::CdrCsv => {
                let optional: &[Column] = match fields.len() {
                    21 => &[Column::Uniqueid, Column::Userfield],
                    // One of loguniqueid / loguserfield: a Uniqueid looks like `1795388070.2`.
                    20 if looks_like_uniqueid(fields[16]) => &[Column::Uniqueid],
                    20 => &[Column::Userfield],
                    19 => &[],
                    n => {
                        return Err(format!(
                            "cdr_csv line of {n} fields; pbxlink needs the Linkedid \
                             (cdr.conf [csv] newcdrcolumns = yes)"
                        ))
                    }
                };
                let new = [Column::Peeraccount, Column::Linkedid, Column::Sequence];
                CDR_CSV
                    .iter()
                    .chain(optional)
                    .chain(&new)
                    .map(|c| Some(*c))
                    .collect()
            }
        };
        let mut row = CdrRow::default();
        let (mut answer, mut end) = (None, None);
        for (column, value) in columns.iter().zip(fields) {
            let Some(column) = column else { continue };
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{}: '{value}' is not a number", name_of(*column)))
            };
            let text = (*value).to_owned();
            match column {
                Column::Start => {
                    row.start = zone.parse(value)?.ok_or("empty start time")?;
                }
                Column::Answer => answer = Some(zone.parse(value)?),
                Column::End => end = Some(zone.parse(value)?.ok_or("empty end time")?),
                Column::Duration => row.duration = number()?,
                Column::Billsec => row.billsec = number()?,
                Column::Sequence => row.sequence = number()?,
                Column::Clid => row.clid = text,
                Column::Src => row.src = text,
                Column::Dst => row.dst = text,
                Column::Dcontext => row.dcontext = text,
                Column::Channel => row.channel = text,
                Column::Dstchannel => row.dstchannel = text,
                Column::Lastapp => row.lastapp = text,
                Column::Lastdata => row.lastdata = text,
                Column::Disposition => row.disposition = text,
                Column::Amaflags => row.amaflags = text,
                Column::Accountcode => row.accountcode = text,
                Column::Uniqueid => row.uniqueid = text,
                Column::Userfield => row.userfield = text,
                Column::Peeraccount => row.peeraccount = text,
                Column::Linkedid => row.linkedid = text,
                Column::Did => row.did = text,
                Column::Recordingfile => row.recordingfile = text,
                Column::Cnum => row.cnum = text,
                Column::Cnam => row.cnam = text,
            }
        }
        if row.linkedid.is_empty() {
            return Err("row without a Linkedid".into());
        }
        match (answer, end) {
            (Some(answer), Some(end)) => {
                row.answer = answer;
                row.end = end;
            }
            _ => row.derive_answer_and_end(),
        }
        Ok(row)
    }
}

fn name_of(column: Column) -> &'static str {
    Column::NAMES
        .iter()
        .find(|(_, c)| *c == column)
        .map_or("?", |(n, _)| n)
}

fn looks_like_uniqueid(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
    })
}

impl CdrRow {
    /// Sets `answer` and `end` from `start`, `duration` and `billsec`, for sources that keep
    /// only those (FreePBX's `cdr` table has no answer or end column).
    pub fn derive_answer_and_end(&mut self) {
        let secs = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        self.end = self.start + secs(self.duration);
        // A queue attempt is "NO ANSWER" with billsec > 0: the PBX had answered the caller.
        self.answer = (self.billsec > 0 || self.disposition == "ANSWERED")
            .then(|| self.end - secs(self.billsec));
    }
}

/// Rows of a CSV file (cdr_csv or cdr_custom Master.csv), one at a time: the file is never
/// held in memory. A line that does not parse is an `Err` with its line number; reading
/// goes on with the next one.
pub fn read_csv<'a, R: Read + 'a>(
    reader: R,
    layout: &'a CsvLayout,
    zone: CdrZone,
) -> impl Iterator<Item = Result<CdrRow, String>> + 'a {
    let csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    csv.into_records().map(move |record| {
        let record = record.map_err(|e| e.to_string())?;
        let line = record.position().map_or(0, |p| p.line());
        let fields: Vec<&str> = record.iter().collect();
        layout
            .row(&fields, zone)
            .map_err(|e| format!("line {line}: {e}"))
    })
}

/// What the rows of one call say, read the same way for [`repair`] and [`record_from_cdr`].
struct CdrCall<'a> {
    /// The call's rows by start, then sequence.
    rows: Vec<&'a CdrRow>,
    /// The channel that placed the call (of the row whose Uniqueid is the Linkedid).
    caller: &'a str,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    /// When and by whom a person first answered.
    answer: Option<(DateTime<Utc>, String)>,
}

impl<'a> CdrCall<'a> {
    fn read(rows: &'a [CdrRow], linkedid: &str, config: &TrackerConfig) -> Option<Self> {
        let mut rows: Vec<&CdrRow> = rows.iter().filter(|r| r.linkedid == linkedid).collect();
        rows.sort_by_key(|r| (r.start, r.sequence));
        let first = rows
            .iter()
            .find(|r| r.uniqueid == linkedid)
            .or(rows.first())?;
        // An answer at the very end with nothing billed is a leg taken over by a pickup (the
        // rung phone's row), not a conversation: prefer the answers that lasted.
        let answer = rows
            .iter()
            .filter_map(|r| Some((r.billsec == 0, r.answer?, r.sequence, person(r, config)?)))
            .min()
            .map(|(_, at, _, by)| (at, by));
        Some(CdrCall {
            caller: &first.channel,
            started: rows.iter().map(|r| r.start).min()?,
            ended: rows.iter().map(|r| r.end).max()?,
            answer,
            rows,
        })
    }

    fn first(&self) -> &'a CdrRow {
        self.rows
            .iter()
            .find(|r| r.channel == self.caller)
            .unwrap_or(&self.rows[0])
    }

    /// The caller's `Dial` rows to a trunk: the number it dialed out.
    fn dialed_out(&self, config: &TrackerConfig) -> Option<&'a CdrRow> {
        self.rows.iter().copied().find(|r| {
            r.channel == self.caller
                && r.lastapp == "Dial"
                && config.classify(&r.dstchannel) == Kind::Trunk
        })
    }

    fn direction(&self, config: &TrackerConfig) -> Direction {
        match config.classify(self.caller) {
            Kind::Trunk => Direction::Inbound,
            Kind::Phone(_) if self.dialed_out(config).is_some() => Direction::Outbound,
            _ => Direction::Internal,
        }
    }

    /// How an unanswered call ended.
    fn unanswered(&self) -> Disposition {
        let any = |d: &str| self.rows.iter().any(|r| r.disposition == d);
        if any("BUSY") {
            return Disposition::Busy;
        }
        if !any("NO ANSWER") && (any("FAILED") || any("CONGESTION")) {
            return Disposition::Failed;
        }
        // The caller gave up while a phone rang: the call's last leg is a Dial that ended
        // before its timeout (a timed-out Dial goes on to an announcement or a hangup row).
        let last = self.rows.iter().max_by_key(|r| (r.end, r.sequence));
        match last {
            Some(r) if r.lastapp == "Dial" && dial_timeout(r).is_none_or(|t| r.duration < t) => {
                Disposition::Cancelled
            }
            _ => Disposition::NoAnswer,
        }
    }
}

/// The person (extension, external number, conference room) an answered row connected the
/// call to; `None` for a PBX answer (IVR, queue, announcement) and Local channel hops.
fn person(row: &CdrRow, config: &TrackerConfig) -> Option<String> {
    if row.disposition != "ANSWERED" {
        return None;
    }
    if matches!(row.lastapp.as_str(), "ConfBridge" | "MeetMe") {
        return Some(row.dst.clone());
    }
    match config.classify(&row.dstchannel) {
        Kind::Phone(ext) => Some(ext),
        Kind::Trunk if row.lastapp == "Dial" => Some(row.dst.clone()),
        _ => None,
    }
}

/// The timeout (seconds) of a `Dial(dest,timeout,options)` row.
fn dial_timeout(row: &CdrRow) -> Option<u64> {
    row.lastdata.split(',').nth(1)?.trim().parse().ok()
}

/// Whole seconds from `a` to `b` (0 if `b` is earlier).
fn seconds(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    u64::try_from((b - a).num_seconds()).unwrap_or(0)
}

/// `Jane Caller` from `"Jane Caller" <15551234567>`.
fn clid_name(clid: &str) -> Option<String> {
    let name = clid.split_once('<').map_or(clid, |(n, _)| n).trim();
    let name = name.trim_matches('"').trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The call a gap swallowed whole, from its CDR rows: `None` when there are none. Parties
/// are read like the tracker reads them (the caller's channel; `did` for an inbound call's
/// dialed number, else the first row's `dst`); transfers and the click-to-call agent's
/// ringing are not in the CDR.
pub fn record_from_cdr(
    rows: &[CdrRow],
    linkedid: &str,
    config: &TrackerConfig,
) -> Option<CallRecord> {
    let call = CdrCall::read(rows, linkedid, config)?;
    let first = call.first();
    let direction = call.direction(config);
    let caller_ext = match config.classify(call.caller) {
        Kind::Phone(ext) => Some(ext),
        _ => None,
    };
    let from = match direction {
        Direction::Inbound => Some(first.src.clone()),
        _ => caller_ext.or_else(|| Some(first.src.clone())),
    };
    let to = match direction {
        Direction::Inbound => call.rows.iter().find(|r| !r.did.is_empty()).map(|r| &r.did),
        Direction::Outbound => call.dialed_out(config).map(|r| &r.dst),
        Direction::Internal => None,
    }
    .unwrap_or(&first.dst);
    let disposition = match call.answer {
        Some(_) => Disposition::Answered,
        None => call.unanswered(),
    };
    let answered_at = call.answer.as_ref().map(|(at, _)| *at);
    let ring_end = answered_at.unwrap_or_else(|| {
        call.rows
            .iter()
            .filter(|r| matches!(r.lastapp.as_str(), "Dial" | "Queue"))
            .map(|r| r.end)
            .max()
            .unwrap_or(call.started)
    });
    let mut rang: Vec<String> = Vec::new();
    let mut legs: Vec<String> = Vec::new();
    for row in &call.rows {
        if let Kind::Phone(ext) = config.classify(&row.dstchannel) {
            if row.lastapp == "Dial" && !rang.contains(&ext) {
                rang.push(ext);
            }
        }
        for leg in [&row.channel, &row.dstchannel] {
            if !leg.is_empty() && !legs.contains(leg) {
                legs.push(leg.clone());
            }
        }
    }
    let mut timeline = vec![entry(call.started, "started", "from the PBX's CDR".into())];
    if let Some((at, by)) = &call.answer {
        timeline.push(entry(*at, "answered", config.describe(by)));
    }
    timeline.push(entry(call.ended, "hangup", String::new()));
    Some(CallRecord {
        id: linkedid.to_owned(),
        direction,
        from,
        to: Some(to.clone()),
        // Outbound, the caller ID is the trunk's, not the person who dialed.
        caller_name: (direction != Direction::Outbound)
            .then(|| clid_name(&first.clid))
            .flatten(),
        started_at: call.started,
        answered_at,
        ended_at: call.ended,
        ring_seconds: seconds(call.started, ring_end),
        talk_seconds: answered_at.map_or(0, |a| seconds(a, call.ended)),
        disposition,
        answered_by: call.answer.map(|(_, by)| by),
        rang,
        transfers: Vec::new(),
        queue: call
            .rows
            .iter()
            .find(|r| r.lastapp == "Queue")
            .map(|r| r.dst.clone()),
        recording: call
            .rows
            .iter()
            .find(|r| !r.recordingfile.is_empty())
            .map(|r| r.recordingfile.clone()),
        legs,
        timeline,
        provenance: Provenance {
            source: Source::Cdr,
            ..Provenance::default()
        },
    })
}

fn entry(at: DateTime<Utc>, what: &str, detail: String) -> TimelineEntry {
    TimelineEntry {
        at,
        what: what.into(),
        detail,
    }
}

/// How far a CDR time may lie outside the gap it should fall in: CDR times are whole
/// seconds, so the true moment is up to a second later than written.
const CDR_RESOLUTION: TimeDelta = TimeDelta::seconds(1);

/// Corrects from the CDR what a tracker record does not know because it happened in a gap
/// of the event stream: the answer (when and who) and the end. Returns the record as it was
/// when the CDR has no rows of the call.
///
/// The rows' times are moved onto pbxlink's clock by the call's start (seen by both), and a
/// moment is taken from the CDR only when it falls within the gap the record names for it,
/// or between the last moment the record saw the call and that gap's start (events read
/// late open a gap late), and is then clamped into the gap: an answer the CDR puts before
/// what the tracker saw (it would have seen it) or an end outside that means the rows and
/// the record disagree, and the tracker's value, seen live, stays. A first answer in a gap
/// the call went through, before any answer the tracker saw, is taken too (a transfer's
/// first answerer); and an unanswered call whose end or start fell in a gap ends as the
/// CDR says (busy, failed, cancelled, no answer).
/// A record the CDR corrects is `source: ami_cdr`, keeps its gap bounds (what was not seen)
/// and gets a `cdr` timeline entry saying what was taken.
pub fn repair(mut record: CallRecord, rows: &[CdrRow], config: &TrackerConfig) -> CallRecord {
    let Some(call) = CdrCall::read(rows, &record.id, config) else {
        return record;
    };
    let shift = record.started_at - call.started;
    // What the record saw of the call: a gap opens at the last event pbxlink read, and
    // events read late (a backlog) make that later than the moment the stream stopped; a
    // moment the CDR puts after the last one the record saw was not seen either.
    let (started, seen): (_, Vec<DateTime<Utc>>) = (
        record.started_at,
        record.timeline.iter().map(|e| e.at).collect(),
    );
    let seen_before = |gap: Gap| {
        let last = seen.iter().copied().filter(|at| *at < gap.from).max();
        last.unwrap_or(started).min(gap.from)
    };
    let in_gap = |gap: Option<Gap>, at: DateTime<Utc>| {
        let gap = gap?;
        let at = at + shift;
        (seen_before(gap) - CDR_RESOLUTION <= at && at <= gap.to + CDR_RESOLUTION)
            .then(|| at.clamp(gap.from, gap.to))
    };
    let gaps = record.provenance.clone();
    let mut taken = Vec::new();
    if let Some(end) = in_gap(gaps.ended_in_gap, call.ended) {
        record.ended_at = end;
        taken.push(format!("ended {}", end.format("%H:%M:%S")));
    }
    let answered = record.disposition == Disposition::Answered;
    match &call.answer {
        Some((at, by)) => {
            // Answered in the gap; or, unseen by the tracker, before the call ended in one
            // or in a gap it went through; or, before the answer the tracker saw, in such a
            // gap (a transfer's first answerer, who took the call while pbxlink was away).
            let first = if answered && gaps.answered_in_gap.is_some() {
                in_gap(gaps.answered_in_gap, *at)
            } else {
                let ended = gaps.ended_in_gap.filter(|_| !answered);
                ended
                    .into_iter()
                    .chain(gaps.gaps.iter().copied())
                    .find_map(|gap| in_gap(Some(gap), *at))
                    .filter(|at| record.answered_at.is_none_or(|seen| *at < seen))
            };
            if let Some(at) = first.filter(|at| *at <= record.ended_at) {
                let waited = record
                    .answered_at
                    .map_or(seconds(record.started_at, at), |old| {
                        // The tracker's ring time excludes IVR menus: move only its end.
                        record.ring_seconds.saturating_sub(seconds(at, old))
                    });
                record.ring_seconds = waited;
                record.answered_at = Some(at);
                record.answered_by = Some(by.clone());
                record.disposition = Disposition::Answered;
                taken.push(format!(
                    "answered {} by {}",
                    at.format("%H:%M:%S"),
                    config.describe(by)
                ));
            }
        }
        // How an unanswered call ended, when its end or its dial (a start in a gap) was
        // not seen: the tracker's guess yields to the CDR's account.
        None if !answered && (!taken.is_empty() || gaps.started_in_gap.is_some()) => {
            let disposition = call.unanswered();
            if !taken.is_empty() || disposition != record.disposition {
                record.disposition = disposition;
                taken.push(format!("{disposition:?}").to_lowercase());
            }
        }
        _ => {}
    }
    if taken.is_empty() {
        return record;
    }
    if let Some(answered_at) = record.answered_at {
        record.talk_seconds = seconds(answered_at, record.ended_at);
    }
    record.provenance.source = Source::AmiCdr;
    let note = entry(
        record.ended_at,
        "cdr",
        format!("from the PBX's CDR: {}", taken.join(", ")),
    );
    let at = record.timeline.partition_point(|e| e.at <= note.at);
    record.timeline.insert(at, note);
    record
}

#[cfg(test)]
mod tests;
