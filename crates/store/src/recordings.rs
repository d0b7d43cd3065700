//! Call recordings: which journaled calls have a MixMonitor file, where its conversion stands,
//! and the MP3 it became (named by its SHA-256). The worker in `pbxlink` drives the states;
//! the store only remembers them, so a restart picks up where it stopped.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_micros, from_name, micros, to_i64, to_name, to_u64};
use crate::outbox::{insert_outbox_rows, NewOutboxRow};
use crate::sql::Sql;
use crate::{Result, Store};

/// Where a call's recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Waiting for the file to appear and stop growing.
    Pending,
    /// Converted; the MP3 is stored.
    Ready,
    /// The file holds no audio (a call never bridged: MixMonitor's `b` option).
    Empty,
    /// The file never appeared.
    Missing,
    /// The file could not be converted (unsupported or broken format).
    Failed,
}

/// A call's recording row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The PBX of the call.
    pub pbx: String,
    /// The call (Linkedid).
    pub call_id: String,
    /// The file as the PBX named it.
    pub source: String,
    /// Where it stands.
    pub state: RecordingState,
    /// Hex SHA-256 of the MP3, when ready.
    pub sha256: Option<String>,
    /// MP3 size in bytes, when ready.
    pub bytes: Option<u64>,
    /// Audio length in milliseconds, when ready.
    pub duration_ms: Option<u64>,
    /// The source file's size at the last look.
    pub source_bytes: Option<u64>,
    /// The worker looks again at this instant (pending rows only).
    pub next_check_at: DateTime<Utc>,
    /// Why it is missing or failed.
    pub error: Option<String>,
    /// When the worker first saw the call.
    pub created_at: DateTime<Utc>,
    /// When it left the pending state.
    pub finished_at: Option<DateTime<Utc>>,
}

/// How a pending recording ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingOutcome {
    /// Converted and stored.
    Ready {
        /// Hex SHA-256 of the MP3.
        sha256: String,
        /// MP3 size.
        bytes: u64,
        /// Audio length.
        duration_ms: u64,
    },
    /// No audio in the file.
    Empty,
    /// No file; why.
    Missing(String),
    /// Not convertible; why.
    Failed(String),
}

const RECORDING_COLUMNS: &str = "pbx, call_id, source, state, sha256, bytes, duration_ms, \
    source_bytes, next_check_at, error, created_at, finished_at";

impl Store {
    /// Adds a pending row for every call that started at or after `since`, names a recording
    /// and has no row yet; returns how many were added. Safe to run from several workers.
    pub async fn discover_recordings(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let added = sqlx::query(
            "INSERT INTO recordings (pbx, call_id, source, state, next_check_at, created_at) \
             SELECT c.pbx, c.id, c.recording, 'pending', $1, $1 FROM calls c \
             WHERE c.started_at >= $2 AND c.recording IS NOT NULL AND c.recording <> '' \
             AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.pbx = c.pbx AND r.call_id = c.id) \
             ON CONFLICT (pbx, call_id) DO NOTHING",
        )
        .bind(micros(now))
        .bind(micros(since))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(added)
    }

    /// Pending rows due for a look at `now`, oldest first.
    pub async fn due_recordings(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Recording>> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings \
             WHERE state = 'pending' AND next_check_at <= $1 \
             ORDER BY next_check_at, pbx, call_id LIMIT $2"
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Notes the source file's size (or its absence) and when to look again.
    pub async fn recheck_recording(
        &self,
        pbx: &str,
        call_id: &str,
        source_bytes: Option<u64>,
        next_check_at: DateTime<Utc>,
    ) -> Result<()> {
        let size = source_bytes
            .map(|n| to_i64("source_bytes", n))
            .transpose()?;
        sqlx::query(
            "UPDATE recordings SET source_bytes = $1, next_check_at = $2 \
             WHERE pbx = $3 AND call_id = $4 AND state = 'pending'",
        )
        .bind(size)
        .bind(micros(next_check_at))
        .bind(pbx)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a pending recording and queues its CRM deliveries, in one transaction: a ready
    /// recording is never without its deliveries, nor a delivery without its recording.
    pub async fn finish_recording(
        &self,
        pbx: &str,
        call_id: &str,
        outcome: &RecordingOutcome,
        outbox: &[NewOutboxRow],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (state, sha256, bytes, duration_ms, error) = match outcome {
            RecordingOutcome::Ready {
                sha256,
                bytes,
                duration_ms,
            } => (
                RecordingState::Ready,
                Some(sha256.as_str()),
                Some(to_i64("bytes", *bytes)?),
                Some(to_i64("duration_ms", *duration_ms)?),
                None,
            ),
            RecordingOutcome::Empty => (RecordingState::Empty, None, None, None, None),
            RecordingOutcome::Missing(why) => (
                RecordingState::Missing,
                None,
                None,
                None,
                Some(why.as_str()),
            ),
            RecordingOutcome::Failed(why) => {
                (RecordingState::Failed, None, None, None, Some(why.as_str()))
            }
        };
        let (_turn, mut tx) = self.begin_write().await?;
        let mut sql = Sql::new("UPDATE recordings SET state = ");
        sql.bind(to_name(&state))
            .push(", sha256 = ")
            .bind(sha256)
            .push(", bytes = ")
            .bind(bytes)
            .push(", duration_ms = ")
            .bind(duration_ms)
            .push(", error = ")
            .bind(error)
            .push(", finished_at = ")
            .bind(micros(now))
            .push(" WHERE pbx = ")
            .bind(pbx)
            .push(" AND call_id = ")
            .bind(call_id)
            .push(" AND state = 'pending'");
        let updated = sql.query().execute(&mut *tx).await?.rows_affected();
        // Another worker finished it first: its deliveries are queued already.
        if updated == 1 {
            insert_outbox_rows(&mut tx, pbx, call_id, outbox, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A call's recording row.
    pub async fn recording(&self, pbx: &str, call_id: &str) -> Result<Option<Recording>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE pbx = $1 AND call_id = $2"
        ))
        .bind(pbx)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// Deletes every recording row created before `before`; returns the MP3 digests that no
    /// remaining row names, whose files can go (two calls may share one file).
    pub async fn expire_recordings(&self, before: DateTime<Utc>) -> Result<Vec<String>> {
        let (_turn, mut tx) = self.begin_write().await?;
        let expired: Vec<Option<String>> =
            sqlx::query_scalar("DELETE FROM recordings WHERE created_at < $1 RETURNING sha256")
                .bind(micros(before))
                .fetch_all(&mut *tx)
                .await?;
        let mut unreferenced = Vec::new();
        for sha256 in expired.into_iter().flatten() {
            let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recordings WHERE sha256 = $1")
                .bind(&sha256)
                .fetch_one(&mut *tx)
                .await?;
            if kept == 0 && !unreferenced.contains(&sha256) {
                unreferenced.push(sha256);
            }
        }
        tx.commit().await?;
        unreferenced.sort();
        Ok(unreferenced)
    }
}

fn recording_from_row(row: &AnyRow) -> Result<Recording> {
    let count = |name: &'static str| -> Result<Option<u64>> {
        row.try_get::<Option<i64>, _>(name)?
            .map(|n| to_u64(name, n))
            .transpose()
    };
    Ok(Recording {
        pbx: row.try_get("pbx")?,
        call_id: row.try_get("call_id")?,
        source: row.try_get("source")?,
        state: from_name("recording state", row.try_get("state")?)?,
        sha256: row.try_get("sha256")?,
        bytes: count("bytes")?,
        duration_ms: count("duration_ms")?,
        source_bytes: count("source_bytes")?,
        next_check_at: from_micros("next_check_at", row.try_get("next_check_at")?)?,
        error: row.try_get("error")?,
        created_at: from_micros("created_at", row.try_get("created_at")?)?,
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(|us| from_micros("finished_at", us))
            .transpose()?,
    })
}
