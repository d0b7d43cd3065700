//! `pbxlink calls list|show`: the call journal on the command line.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use calls::{CallRecord, Disposition};
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use clap::{Args, Subcommand};
use comfy_table::{presets, Table};
use serde::Serialize;
use store::{CallFilter, OutboxRow, Store, StoredCall};

use crate::config::Config;

/// `pbxlink calls ...`.
#[derive(Debug, Args)]
pub struct CallsArgs {
    /// Journal database (sqlx URL) instead of the config's (`[database] url`, else SQLite in
    /// `data_dir`).
    #[arg(long, global = true, env = "PBXLINK_DATABASE_URL")]
    database: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CallsCommand,
}

#[derive(Debug, Subcommand)]
enum CallsCommand {
    /// List calls, newest first.
    List {
        /// Calls that started at or after this time (RFC 3339, `YYYY-MM-DD` or
        /// `YYYY-MM-DD HH:MM[:SS]` in local time).
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Calls that started before this time (same forms as --since).
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Calls from or to this number.
        #[arg(long)]
        number: Option<String>,
        /// Calls this extension answered or that rang it.
        #[arg(long)]
        extension: Option<String>,
        /// answered, no_answer, busy, failed or cancelled.
        #[arg(long, value_parser = parse_disposition)]
        disposition: Option<Disposition>,
        /// Calls per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page (printed at its end).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one call: the record and its story.
    Show {
        /// Call id (the Linkedid).
        id: String,
        /// The PBX, when several have a call with this id.
        #[arg(long)]
        pbx: Option<String>,
    },
}

/// Runs a `calls` subcommand over the configured journal, printing to stdout.
pub async fn run(config: &Config, args: CallsArgs) -> anyhow::Result<()> {
    let url = args.database.unwrap_or_else(|| config.database_url());
    let store = open(&url).await?;
    let out = match args.command {
        CallsCommand::List {
            since,
            until,
            number,
            extension,
            disposition,
            limit,
            cursor,
        } => {
            let filter = CallFilter {
                since,
                until,
                number,
                extension,
                disposition,
            };
            let page = store.list_calls(&filter, limit, cursor.as_deref()).await?;
            if args.json {
                let calls: Vec<_> = page.calls.iter().map(JsonCall::from).collect();
                let json = serde_json::json!({ "calls": calls, "next_cursor": page.next_cursor });
                format!("{json}\n")
            } else {
                let mut text = list_table(&page.calls, &Local);
                if let Some(next) = page.next_cursor {
                    let _ = writeln!(text, "more: --cursor {next}");
                }
                text
            }
        }
        CallsCommand::Show { id, pbx } => {
            let Some(call) = store.get_call(&id, pbx.as_deref()).await? else {
                bail!("no call {id} in the journal");
            };
            let deliveries = store.outbox_for_call(&call.pbx, &call.record.id).await?;
            if args.json {
                format!("{}\n", serde_json::json!(JsonCall::from(&call)))
            } else {
                show_text(&call, &deliveries, &Local)
            }
        }
    };
    store.close().await;
    print!("{out}");
    Ok(())
}

pub(crate) async fn open(url: &str) -> anyhow::Result<Store> {
    // A fresh install has no data directory yet; SQLite creates the file, not its folder.
    if let Some(path) = url.strip_prefix("sqlite://") {
        let file = std::path::Path::new(path.split('?').next().unwrap_or(path));
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the data directory {}", dir.display()))?;
        }
    }
    Store::connect(url)
        .await
        .with_context(|| format!("opening the journal at {url}"))
}

/// A call as JSON: the record with the PBX name beside its fields.
#[derive(Serialize)]
struct JsonCall<'a> {
    pbx: &'a str,
    #[serde(flatten)]
    record: &'a CallRecord,
}

impl<'a> From<&'a StoredCall> for JsonCall<'a> {
    fn from(call: &'a StoredCall) -> Self {
        Self {
            pbx: &call.pbx,
            record: &call.record,
        }
    }
}

fn list_table<Tz: TimeZone>(calls: &[StoredCall], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if calls.is_empty() {
        return "no calls\n".to_owned();
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header([
        "STARTED", "DIR", "FROM", "TO", "RESULT", "BY", "RING", "TALK", "PBX", "ID",
    ]);
    for StoredCall { pbx, record: c } in calls {
        table.add_row([
            c.started_at
                .with_timezone(tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            name(&c.direction),
            c.from.clone().unwrap_or_default(),
            c.to.clone().unwrap_or_default(),
            name(&c.disposition),
            c.answered_by.clone().unwrap_or_default(),
            duration(c.ring_seconds),
            duration(c.talk_seconds),
            pbx.clone(),
            c.id.clone(),
        ]);
    }
    plain_table(&mut table)
}

/// A borderless table as text, flush left like `ls -l`: comfy-table pads the first and last
/// columns too, and those blanks only get in the way of grep and cut.
pub(crate) fn plain_table(table: &mut Table) -> String {
    if let Some(first) = table.column_mut(0) {
        first.set_padding((0, 1));
    }
    let lines: Vec<_> = table.lines().map(|l| l.trim_end().to_owned()).collect();
    lines.join("\n") + "\n"
}

fn show_text<Tz: TimeZone>(call: &StoredCall, deliveries: &[OutboxRow], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let c = &call.record;
    let time = |at: DateTime<Utc>| at.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let list = |items: &[String]| items.join(", ");
    let mut fields = vec![
        ("call", format!("{} on {}", c.id, call.pbx)),
        ("direction", name(&c.direction)),
        ("from", c.from.clone().unwrap_or_default()),
        ("to", c.to.clone().unwrap_or_default()),
        ("caller name", c.caller_name.clone().unwrap_or_default()),
        ("started", time(c.started_at)),
        ("answered", c.answered_at.map(time).unwrap_or_default()),
        ("ended", time(c.ended_at)),
        ("ringing", duration(c.ring_seconds)),
        ("talking", duration(c.talk_seconds)),
        ("result", name(&c.disposition)),
        ("answered by", c.answered_by.clone().unwrap_or_default()),
        ("rang", list(&c.rang)),
        ("queue", c.queue.clone().unwrap_or_default()),
        ("recording", c.recording.clone().unwrap_or_default()),
        ("legs", list(&c.legs)),
    ];
    fields.extend(c.transfers.iter().map(|t| {
        let who = |x: &Option<String>| x.clone().unwrap_or_else(|| "?".to_owned());
        let what = format!(
            "{} {} -> {} at {}",
            name(&t.kind),
            who(&t.from),
            who(&t.to),
            time(t.at)
        );
        ("transfer", what)
    }));
    let mut out = String::new();
    for (label, value) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(out, "{label:>12}  {value}");
    }
    if !c.timeline.is_empty() {
        out.push_str("\nstory:\n");
        // Time into the call, so the story reads without subtracting clock times.
        let offsets: Vec<String> = c
            .timeline
            .iter()
            .map(|e| duration((e.at - c.started_at).num_seconds().max(0).unsigned_abs()))
            .collect();
        let offset_width = offsets.iter().map(String::len).max().unwrap_or(0);
        let what_width = c.timeline.iter().map(|e| e.what.len()).max().unwrap_or(0);
        for (e, offset) in c.timeline.iter().zip(&offsets) {
            let clock = e.at.with_timezone(tz).format("%H:%M:%S");
            let (what, detail) = (&e.what, &e.detail);
            let _ = writeln!(
                out,
                "  {clock}  +{offset:<offset_width$}  {what:<what_width$}  {detail}"
            );
        }
    }
    if !deliveries.is_empty() {
        out.push_str("\ndeliveries:\n");
        for d in deliveries {
            let _ = write!(
                out,
                "  {} {}: {} after {} attempt(s)",
                d.connector,
                d.kind,
                name(&d.status),
                d.attempts
            );
            match &d.last_error {
                Some(error) => {
                    let _ = writeln!(out, " ({error})");
                }
                None => out.push('\n'),
            }
        }
    }
    out
}

/// A unit enum's serde name (`no_answer`), the same word the JSON output and filters use.
pub(crate) fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn parse_disposition(text: &str) -> Result<Disposition, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        format!("unknown disposition {text:?}: use answered, no_answer, busy, failed or cancelled")
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_in(text, &Local)
}

// The time zone is a parameter so tests do not depend on the machine's.
fn parse_time_in<Tz: TimeZone>(text: &str, tz: &Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| {
        format!("cannot read {text:?} as a time: use 2026-11-24, 2026-11-24 09:30 or RFC 3339")
    })?;
    // On a DST change a local time can happen twice (take the first) or not at all.
    tz.from_local_datetime(&local)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| format!("{text} does not exist in the local time zone (DST change)"))
}

#[cfg(test)]
mod tests {
    use calls::{Direction, TimelineEntry, Transfer, TransferKind};
    use chrono::{FixedOffset, TimeDelta};
    use expect_test::{expect, Expect};
    use store::NewOutboxRow;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 15, 0).unwrap() + TimeDelta::seconds(seconds)
    }

    fn calls() -> Vec<StoredCall> {
        let answered = CallRecord {
            id: "1764000000.17".into(),
            direction: Direction::Inbound,
            from: Some("+74951234567".into()),
            to: Some("84950000000".into()),
            caller_name: Some("Ivan".into()),
            started_at: at(0),
            answered_at: Some(at(12)),
            ended_at: at(3700),
            ring_seconds: 12,
            talk_seconds: 3688,
            disposition: Disposition::Answered,
            answered_by: Some("201".into()),
            rang: vec!["201".into(), "202".into()],
            transfers: vec![Transfer {
                kind: TransferKind::Blind,
                from: Some("201".into()),
                to: Some("203".into()),
                at: at(600),
            }],
            queue: Some("sales".into()),
            recording: Some("in-1764000000.17.wav".into()),
            legs: vec!["PJSIP/trunk-00000001".into(), "PJSIP/201-00000002".into()],
            provenance: Default::default(),
            timeline: vec![
                TimelineEntry {
                    at: at(0),
                    what: "started".into(),
                    detail: "from +74951234567".into(),
                },
                TimelineEntry {
                    at: at(2),
                    what: "ringing".into(),
                    detail: "rang 201, 202".into(),
                },
                TimelineEntry {
                    at: at(12),
                    what: "answered".into(),
                    detail: "by 201".into(),
                },
                TimelineEntry {
                    at: at(600),
                    what: "transferred".into(),
                    detail: "blind to 203".into(),
                },
                TimelineEntry {
                    at: at(3700),
                    what: "hangup".into(),
                    detail: "hung up by caller".into(),
                },
            ],
        };
        let missed = CallRecord {
            id: "1764000100.20".into(),
            direction: Direction::Internal,
            from: Some("202".into()),
            to: Some("201".into()),
            caller_name: None,
            started_at: at(100),
            answered_at: None,
            ended_at: at(125),
            ring_seconds: 25,
            talk_seconds: 0,
            disposition: Disposition::NoAnswer,
            answered_by: None,
            rang: vec!["201".into()],
            transfers: Vec::new(),
            queue: None,
            recording: None,
            legs: Vec::new(),
            provenance: Default::default(),
            timeline: Vec::new(),
        };
        [missed, answered]
            .into_iter()
            .map(|record| StoredCall {
                pbx: "office".into(),
                record,
            })
            .collect()
    }

    #[test]
    fn list_is_a_table() {
        let moscow = FixedOffset::east_opt(3 * 3600).unwrap();
        expect![[r#"
             STARTED              DIR       FROM          TO           RESULT     BY   RING  TALK     PBX     ID
             2026-11-24 12:16:40  internal  202           201          no_answer       0:25  0:00     office  1764000100.20
             2026-11-24 12:15:00  inbound   +74951234567  84950000000  answered   201  0:12  1:01:28  office  1764000000.17
        "#]]
        .assert_eq(&list_table(&calls(), &moscow));
        expect![[r#"
            no calls
        "#]]
        .assert_eq(&list_table(&[], &moscow));
    }

    #[tokio::test]
    async fn show_tells_the_story_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("data/pbxlink.db").display()
        );
        let store = open(&url).await.unwrap();
        let call = calls().pop().unwrap();
        let delivery = NewOutboxRow {
            connector: "bitrix24".into(),
            kind: "call.ended".into(),
            payload: serde_json::json!({}),
            idempotency_key: "k".into(),
        };
        store
            .save_call(&call.pbx, &call.record, &[delivery], at(3700))
            .await
            .unwrap();
        let back = store
            .get_call(&call.record.id, None)
            .await
            .unwrap()
            .unwrap();
        let deliveries = store
            .outbox_for_call(&back.pbx, &back.record.id)
            .await
            .unwrap();
        store.close().await;

        expect![[r#"
                    call  1764000000.17 on office
               direction  inbound
                    from  +74951234567
                      to  84950000000
             caller name  Ivan
                 started  2026-11-24 09:15:00
                answered  2026-11-24 09:15:12
                   ended  2026-11-24 10:16:40
                 ringing  0:12
                 talking  1:01:28
                  result  answered
             answered by  201
                    rang  201, 202
                   queue  sales
               recording  in-1764000000.17.wav
                    legs  PJSIP/trunk-00000001, PJSIP/201-00000002
                transfer  blind 201 -> 203 at 2026-11-24 09:25:00

            story:
              09:15:00  +0:00     started      from +74951234567
              09:15:02  +0:02     ringing      rang 201, 202
              09:15:12  +0:12     answered     by 201
              09:25:00  +10:00    transferred  blind to 203
              10:16:40  +1:01:40  hangup       hung up by caller

            deliveries:
              bitrix24 call.ended: pending after 0 attempt(s)
        "#]]
        .assert_eq(&show_text(&back, &deliveries, &Utc));
    }

    #[test]
    fn times_and_dispositions_from_the_command_line() {
        let moscow = FixedOffset::east_opt(3 * 3600).unwrap();
        let check = |text: &str, expected: Expect| {
            let got = match parse_time_in(text, &moscow) {
                Ok(at) => at.to_rfc3339(),
                Err(e) => e,
            };
            expected.assert_eq(&got);
        };
        check("2026-11-24T09:30:00Z", expect!["2026-11-24T09:30:00+00:00"]);
        check(
            "2026-11-24T09:30:00+05:00",
            expect!["2026-11-24T04:30:00+00:00"],
        );
        check("2026-11-24 09:30", expect!["2026-11-24T06:30:00+00:00"]);
        check("2026-11-24 09:30:15", expect!["2026-11-24T06:30:15+00:00"]);
        check("2026-11-24", expect!["2026-11-23T21:00:00+00:00"]);
        check(
            "yesterday",
            expect![[
                r#"cannot read "yesterday" as a time: use 2026-11-24, 2026-11-24 09:30 or RFC 3339"#
            ]],
        );
        assert_eq!(parse_disposition("no_answer"), Ok(Disposition::NoAnswer));
        expect![[
            r#"unknown disposition "missed": use answered, no_answer, busy, failed or cancelled"#
        ]]
        .assert_eq(&parse_disposition("missed").unwrap_err());
    }
}
