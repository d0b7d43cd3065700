//! The raw AMI event log: every event as received, for replay and debugging, kept for a while.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_json, from_micros, micros, to_i64, to_json, to_u64};
use crate::sql::Sql;
use crate::{Result, Store};

/// One AMI event as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The PBX it came from.
    pub pbx: String,
    /// Order of arrival within the AMI session.
    pub seq: u64,
    /// When pbxlink read it.
    pub received_at: DateTime<Utc>,
    /// The `Event:` name.
    pub event: String,
    /// The call it belongs to, when it has a `Linkedid`.
    pub linkedid: Option<String>,
    /// The whole message as a JSON object (`ami::Message::to_json`).
    pub message: serde_json::Value,
}

impl Store {
    /// Appends a batch of events in one transaction (one commit per batch, not per event,
    /// keeps up with a busy PBX).
    pub async fn append_events(&self, events: &[RawEvent]) -> Result<()> {
        // Both backends cap bind parameters per statement (SQLite: 32766; 6 per row), and
        // binding costs grow faster than the parameter count (sqlx looks each one up by name:
        // at 1000 rows per statement that lookup took half of the gateway's CPU under load).
        // 64 rows keep statements few and binding cheap.
        const ROWS_PER_INSERT: usize = 64;
        let (_turn, mut tx) = self.begin_write().await?;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut sql = Sql::new(
                "INSERT INTO ami_events (pbx, seq, received_at, event, linkedid, message) VALUES ",
            );
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind_row([
                    e.pbx.as_str().into(),
                    to_i64("event seq", e.seq)?.into(),
                    micros(e.received_at).into(),
                    e.event.as_str().into(),
                    e.linkedid.as_deref().into(),
                    to_json(&e.message).into(),
                ]);
            }
            sql.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The logged events of one call, in order of arrival.
    pub async fn events_for_call(&self, pbx: &str, linkedid: &str) -> Result<Vec<RawEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM ami_events WHERE pbx = $1 AND linkedid = $2 ORDER BY id"
        ))
        .bind(pbx)
        .bind(linkedid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// When the last logged event of `pbx` was received: after a restart, where the gap in
    /// its event stream began. `None` when none is logged.
    pub async fn last_event_at(&self, pbx: &str) -> Result<Option<DateTime<Utc>>> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(received_at) FROM ami_events WHERE pbx = $1")
                .bind(pbx)
                .fetch_one(&self.pool)
                .await?;
        last.map(|t| from_micros("received_at", t)).transpose()
    }

    /// Deletes events received before `cutoff` (retention); returns how many went.
    pub async fn purge_events(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM ami_events WHERE received_at < $1")
            .bind(micros(cutoff))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// The columns [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str = "pbx, seq, received_at, event, linkedid, message";

pub(crate) fn event_from_row(row: &AnyRow) -> Result<RawEvent> {
    Ok(RawEvent {
        pbx: row.try_get("pbx")?,
        seq: to_u64("event seq", row.try_get("seq")?)?,
        received_at: from_micros("received_at", row.try_get("received_at")?)?,
        event: row.try_get("event")?,
        linkedid: row.try_get("linkedid")?,
        message: from_json("event message", row.try_get("message")?)?,
    })
}
