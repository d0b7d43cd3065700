//! The call journal: saving finished calls (with their outbox rows) and querying them back.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use calls::{CallRecord, Disposition, Provenance, Source, TimelineEntry};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_json, from_micros, from_name, micros, to_i64, to_json, to_name, to_u64};
use crate::outbox::{insert_outbox_rows, NewOutboxRow};
use crate::sql::{Sql, Value};
use crate::{Result, Store, StoreError};

/// A journal entry: the call record and the PBX it happened on.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCall {
    /// The PBX's name (call ids are unique per PBX only).
    pub pbx: String,
    /// The call, timeline included.
    pub record: CallRecord,
}

/// Which calls a journal query returns; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Calls that started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Calls that started before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Calls from or to this number.
    pub number: Option<String>,
    /// Calls this extension placed, answered, or that rang it (or were dialled to it).
    pub extension: Option<String>,
    /// Calls that ended this way.
    pub disposition: Option<Disposition>,
}

/// One page of the journal, newest call first.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPage {
    /// The calls on this page.
    pub calls: Vec<StoredCall>,
    /// Pass to the next `list_calls` to get the following page; `None` on the last page.
    pub next_cursor: Option<String>,
}

const CALL_COLUMNS: &str = "pbx, id, direction, from_number, to_number, caller_name, \
    started_at, answered_at, ended_at, ring_seconds, talk_seconds, disposition, answered_by, \
    rang, transfers, queue, recording, legs, source, gaps";

impl Store {
    /// Writes a finished call, its timeline and its outbox rows in one transaction.
    ///
    /// Saving the same call (same `pbx` and id) again replaces the record and timeline;
    /// outbox rows whose idempotency key already exists are left as they are, so a re-save
    /// never queues a second delivery.
    pub async fn save_call(
        &self,
        pbx: &str,
        call: &CallRecord,
        outbox: &[NewOutboxRow],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.save_calls(pbx, &[(call, outbox)], now).await
    }

    /// [`Store::save_call`] for many calls in ONE transaction: a busy PBX ends hundreds of
    /// calls a second, and one commit (one fsync) per batch instead of per call is what lets
    /// the journal keep up.
    pub async fn save_calls(
        &self,
        pbx: &str,
        calls: &[(&CallRecord, &[NewOutboxRow])],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.save_journal(pbx, &[], calls, now).await
    }

    /// [`Store::save_calls`] with the outbox rows of calls still in progress (CRM steps
    /// planned from live call events), all in ONE transaction. The live rows go first: a call's
    /// live rows always come before its record's rows, and rows are delivered in id order.
    pub async fn save_journal(
        &self,
        pbx: &str,
        live: &[(&str, &[NewOutboxRow])],
        calls: &[(&CallRecord, &[NewOutboxRow])],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        for (call_id, outbox) in live {
            insert_outbox_rows(&mut tx, pbx, call_id, outbox, now).await?;
        }
        for (call, outbox) in calls {
            save_call_in(&mut tx, pbx, call, outbox, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One call with its timeline. Without `pbx`, an id found on several PBXes is an error
    /// ([`StoreError::Ambiguous`]) rather than a guess.
    pub async fn get_call(&self, id: &str, pbx: Option<&str>) -> Result<Option<StoredCall>> {
        let mut sql = Sql::new(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = "));
        sql.bind(id);
        if let Some(pbx) = pbx {
            sql.push(" AND pbx = ").bind(pbx);
        }
        sql.push(" ORDER BY pbx");
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>>>()?;
        if calls.len() > 1 {
            return Err(StoreError::Ambiguous {
                id: id.to_owned(),
                pbxes: calls.into_iter().map(|c| c.pbx).collect(),
            });
        }
        self.load_timelines(&mut calls).await?;
        Ok(calls.pop())
    }

    /// A page of calls matching `filter`, newest first. `cursor` is a previous page's
    /// `next_cursor`; pages stay stable while new calls are saved.
    pub async fn list_calls(
        &self,
        filter: &CallFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<CallPage> {
        let mut sql = Sql::new(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE "));
        push_filter(&mut sql, filter);
        if let Some(cursor) = cursor {
            let (started_at, pbx, id) = decode_cursor(cursor)?;
            sql.push(" AND (started_at, pbx, id) < (")
                .bind(started_at)
                .push(", ")
                .bind(pbx)
                .push(", ")
                .bind(id)
                .push(")");
        }
        // One row past the page tells whether another page follows.
        sql.push(" ORDER BY started_at DESC, pbx DESC, id DESC LIMIT ")
            .bind(i64::from(limit) + 1);
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if calls.len() > limit as usize {
            calls.truncate(limit as usize);
            calls.last().map(encode_cursor)
        } else {
            None
        };
        self.load_timelines(&mut calls).await?;
        Ok(CallPage { calls, next_cursor })
    }

    /// How many calls match `filter`.
    pub async fn count_calls(&self, filter: &CallFilter) -> Result<u64> {
        let mut sql = Sql::new("SELECT COUNT(*) FROM calls WHERE ");
        push_filter(&mut sql, filter);
        let n: i64 = sql.query().fetch_one(&self.pool).await?.try_get(0)?;
        to_u64("call count", n)
    }

    // One query for all the calls of a page rather than one per call.
    async fn load_timelines(&self, calls: &mut [StoredCall]) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new(
            "SELECT pbx, call_id, at, what, detail FROM call_timeline \
             WHERE (pbx, call_id) IN (VALUES ",
        );
        for (i, call) in calls.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_row([call.pbx.as_str().into(), call.record.id.as_str().into()]);
        }
        sql.push(") ORDER BY pbx, call_id, seq");
        let mut timelines: HashMap<(String, String), Vec<TimelineEntry>> = HashMap::new();
        for row in sql.query().fetch_all(&self.pool).await? {
            let entry = TimelineEntry {
                at: from_micros("timeline time", row.try_get("at")?)?,
                what: row.try_get("what")?,
                detail: row.try_get("detail")?,
            };
            timelines
                .entry((row.try_get("pbx")?, row.try_get("call_id")?))
                .or_default()
                .push(entry);
        }
        for call in calls {
            let key = (call.pbx.clone(), call.record.id.clone());
            call.record.timeline = timelines.remove(&key).unwrap_or_default();
        }
        Ok(())
    }
}

/// Writes one call, its timeline and its outbox rows inside the caller's transaction.
async fn save_call_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    pbx: &str,
    call: &CallRecord,
    outbox: &[NewOutboxRow],
    now: DateTime<Utc>,
) -> Result<()> {
    let values: Vec<Value> = vec![
        pbx.into(),
        call.id.as_str().into(),
        to_name(&call.direction).into(),
        call.from.as_deref().into(),
        call.to.as_deref().into(),
        call.caller_name.as_deref().into(),
        micros(call.started_at).into(),
        call.answered_at.map(micros).into(),
        micros(call.ended_at).into(),
        to_i64("ring_seconds", call.ring_seconds)?.into(),
        to_i64("talk_seconds", call.talk_seconds)?.into(),
        to_name(&call.disposition).into(),
        call.answered_by.as_deref().into(),
        to_json(&call.rang).into(),
        to_json(&call.transfers).into(),
        call.queue.as_deref().into(),
        call.recording.as_deref().into(),
        to_json(&call.legs).into(),
        to_name(&call.provenance.source).into(),
        gaps_json(&call.provenance).as_deref().into(),
    ];
    let mut upsert = Sql::new(&format!("INSERT INTO calls ({CALL_COLUMNS}) VALUES "));
    upsert
        .bind_row(values)
        .push(" ON CONFLICT (pbx, id) DO UPDATE SET ");
    let updates: Vec<String> = CALL_COLUMNS
        .split(", ")
        .filter(|c| !matches!(*c, "pbx" | "id"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    upsert.push(&updates.join(", "));

    upsert.query().execute(&mut **tx).await?;
    sqlx::query("DELETE FROM call_timeline WHERE pbx = $1 AND call_id = $2")
        .bind(pbx)
        .bind(&call.id)
        .execute(&mut **tx)
        .await?;
    if !call.timeline.is_empty() {
        let mut insert =
            Sql::new("INSERT INTO call_timeline (pbx, call_id, seq, at, what, detail) VALUES ");
        for (seq, entry) in call.timeline.iter().enumerate() {
            if seq > 0 {
                insert.push(", ");
            }
            insert.bind_row([
                pbx.into(),
                call.id.as_str().into(),
                to_i64("timeline seq", seq as u64)?.into(),
                micros(entry.at).into(),
                entry.what.as_str().into(),
                entry.detail.as_str().into(),
            ]);
        }
        insert.query().execute(&mut **tx).await?;
    }
    insert_outbox_rows(tx, pbx, &call.id, outbox, now).await?;
    Ok(())
}

fn push_filter(sql: &mut Sql, filter: &CallFilter) {
    // A constant first condition lets every filter start with " AND ".
    sql.push("1 = 1");
    if let Some(since) = filter.since {
        sql.push(" AND started_at >= ").bind(micros(since));
    }
    if let Some(until) = filter.until {
        sql.push(" AND started_at < ").bind(micros(until));
    }
    if let Some(number) = &filter.number {
        sql.push(" AND (from_number = ")
            .bind(number.as_str())
            .push(" OR to_number = ")
            .bind(number.as_str())
            .push(")");
    }
    if let Some(extension) = &filter.extension {
        // `rang` is a JSON array of strings: look for the extension as a whole JSON string.
        let pattern = format!("%{}%", escape_like(&to_json(extension)));
        sql.push(" AND (answered_by = ")
            .bind(extension.as_str())
            .push(" OR from_number = ")
            .bind(extension.as_str())
            .push(" OR to_number = ")
            .bind(extension.as_str())
            .push(" OR rang LIKE ")
            .bind(pattern)
            .push(" ESCAPE '\\')");
    }
    if let Some(disposition) = filter.disposition {
        sql.push(" AND disposition = ").bind(to_name(&disposition));
    }
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The gap bounds of a record as the `gaps` column holds them: `None` when it spans none.
fn gaps_json(provenance: &Provenance) -> Option<String> {
    let gaps = Provenance {
        source: Source::Ami,
        ..provenance.clone()
    };
    (gaps != Provenance::default()).then(|| to_json(&gaps))
}

fn provenance_from_row(row: &AnyRow) -> Result<Provenance> {
    let source: Source = from_name("source", row.try_get("source")?)?;
    let gaps: Option<String> = row.try_get("gaps")?;
    let gaps: Provenance = match gaps {
        Some(json) => from_json("gaps", &json)?,
        None => Provenance::default(),
    };
    Ok(Provenance { source, ..gaps })
}

fn call_from_row(row: &AnyRow) -> Result<StoredCall> {
    let record = CallRecord {
        id: row.try_get("id")?,
        direction: from_name("direction", row.try_get("direction")?)?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        caller_name: row.try_get("caller_name")?,
        started_at: from_micros("started_at", row.try_get("started_at")?)?,
        answered_at: row
            .try_get::<Option<i64>, _>("answered_at")?
            .map(|us| from_micros("answered_at", us))
            .transpose()?,
        ended_at: from_micros("ended_at", row.try_get("ended_at")?)?,
        ring_seconds: to_u64("ring_seconds", row.try_get("ring_seconds")?)?,
        talk_seconds: to_u64("talk_seconds", row.try_get("talk_seconds")?)?,
        disposition: from_name("disposition", row.try_get("disposition")?)?,
        answered_by: row.try_get("answered_by")?,
        rang: from_json("rang", row.try_get("rang")?)?,
        transfers: from_json("transfers", row.try_get("transfers")?)?,
        queue: row.try_get("queue")?,
        recording: row.try_get("recording")?,
        legs: from_json("legs", row.try_get("legs")?)?,
        timeline: Vec::new(),
        provenance: provenance_from_row(row)?,
    };
    Ok(StoredCall {
        pbx: row.try_get("pbx")?,
        record,
    })
}

// The cursor is the sort key of the page's last call, opaque to callers.
fn encode_cursor(last: &StoredCall) -> String {
    let key = (micros(last.record.started_at), &last.pbx, &last.record.id);
    URL_SAFE_NO_PAD.encode(to_json(&key))
}

fn decode_cursor(cursor: &str) -> Result<(i64, String, String)> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))
}
