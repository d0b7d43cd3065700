//! The CRM outbox: deliveries queued in the same transaction as the call, claimed by workers
//! under a lease, then marked delivered, retried or dead.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};

use crate::codec::{from_json, from_micros, from_name, micros, to_json, to_name, to_u64};
use crate::sql::Sql;
use crate::{Backend, Result, Store, StoreError};

/// A delivery to queue with a call (see [`Store::save_call`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    /// Connector that will deliver it (`bitrix24`, `webhook:sales`, ...).
    pub connector: String,
    /// What to deliver (`call.ended`, `call.recording`, ...).
    pub kind: String,
    /// The connector's request body.
    pub payload: serde_json::Value,
    /// Unique per delivery: queuing the same key twice keeps the first row only.
    pub idempotency_key: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for `next_attempt_at`.
    Pending,
    /// Claimed by a worker until `lease_until`.
    InFlight,
    /// The connector accepted it.
    Delivered,
    /// Failed permanently; kept for inspection.
    Dead,
}

/// A queued delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id (what `mark_*` take).
    pub id: i64,
    /// Connector that delivers it.
    pub connector: String,
    /// The PBX of the call it belongs to.
    pub pbx: String,
    /// The call it belongs to.
    pub call_id: String,
    /// What it delivers.
    pub kind: String,
    /// The connector's request body.
    pub payload: serde_json::Value,
    /// Unique per delivery; connectors pass it on so the CRM can drop duplicates.
    pub idempotency_key: String,
    /// Where it stands.
    pub status: OutboxStatus,
    /// Claims so far (this one included, for a claimed row).
    pub attempts: u64,
    /// Not to be claimed before this.
    pub next_attempt_at: DateTime<Utc>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// The lease ends here; then another worker may claim the row.
    pub lease_until: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued; a requeue restarts it, and with it the dead-letter clock.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or went dead; `None` while open (and for rows finished before
    /// pbxlink kept this).
    pub finished_at: Option<DateTime<Utc>>,
}

/// How a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again at this instant (network error, 5xx, rate limit).
    Retriable {
        /// When to try again.
        next_attempt_at: DateTime<Utc>,
    },
    /// Never retry (rejected payload, 4xx): the row goes dead.
    Permanent,
}

/// What became of a claimed row, for [`Store::finish_outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The CRM took it.
    Delivered,
    /// It failed: retried later or dead, with the error to show.
    Failed { failure: Failure, error: String },
    /// Never attempted (the worker is stopping): pending again, the claim's attempt not
    /// counted.
    Released,
}

const OUTBOX_COLUMNS: &str =
    "id, connector, pbx, call_id, kind, payload, idempotency_key, status, \
    attempts, next_attempt_at, lease_owner, lease_until, last_error, created_at, finished_at";

// Rows due now: pending and due, or claimed by a worker whose lease ran out (it died). The
// leading `status IN` is what lets the planners use the `outbox_open` partial index.
const DUE: &str = "status IN ('pending', 'in_flight') \
    AND ((status = 'pending' AND next_attempt_at <= $3) \
    OR (status = 'in_flight' AND lease_until <= $3))";

/// Queues `rows` for a call inside the caller's transaction; existing keys are kept.
pub(crate) async fn insert_outbox_rows(
    tx: &mut Transaction<'_, Any>,
    pbx: &str,
    call_id: &str,
    rows: &[NewOutboxRow],
    now: DateTime<Utc>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(
        "INSERT INTO outbox (connector, pbx, call_id, kind, payload, idempotency_key, status, \
         attempts, next_attempt_at, created_at) VALUES ",
    );
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind_row([
            row.connector.as_str().into(),
            pbx.into(),
            call_id.into(),
            row.kind.as_str().into(),
            to_json(&row.payload).into(),
            row.idempotency_key.as_str().into(),
            to_name(&OutboxStatus::Pending).into(),
            0.into(),
            micros(now).into(),
            micros(now).into(),
        ]);
    }
    sql.push(" ON CONFLICT (idempotency_key) DO NOTHING");
    sql.query().execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    /// Claims up to `limit` due rows for worker `owner` until `now + lease`, oldest first.
    ///
    /// Two workers never get the same row while its lease runs: PostgreSQL skips rows another
    /// transaction has locked (`FOR UPDATE SKIP LOCKED`); SQLite runs one writer at a time, so
    /// the single `UPDATE ... RETURNING` is atomic by itself.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        limit: u32,
        lease: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let lease_until = now
            .checked_add_signed(lease)
            .ok_or(StoreError::OutOfRange {
                what: "lease",
                detail: lease.to_string(),
            })?;
        let sql = format!(
            "UPDATE outbox SET status = 'in_flight', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE {DUE} ORDER BY id LIMIT $4{lock}) \
             RETURNING {OUTBOX_COLUMNS}"
        );
        let _turn = self.write_turn().await;
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(micros(lease_until))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(outbox_from_row)
            .collect::<Result<Vec<_>>>()?;
        // RETURNING gives no order guarantee.
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    /// Records a successful delivery. False when `owner` no longer holds the lease (it ran out
    /// and another worker claimed the row), in which case nothing changes.
    pub async fn mark_delivered(&self, id: i64, owner: &str, now: DateTime<Utc>) -> Result<bool> {
        self.finish_one(id, owner, Outcome::Delivered, now).await
    }

    /// Records a failed delivery: back to pending for a retry, or dead. False when `owner` no
    /// longer holds the lease, in which case nothing changes.
    pub async fn mark_failed(
        &self,
        id: i64,
        owner: &str,
        failure: Failure,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let error = error.to_owned();
        self.finish_one(id, owner, Outcome::Failed { failure, error }, now)
            .await
    }

    /// Hands back a claimed row that was never attempted (the worker is stopping): pending
    /// again, due as before, its claim's attempt not counted. False when `owner` no longer
    /// holds it.
    pub async fn release_outbox(&self, id: i64, owner: &str, now: DateTime<Utc>) -> Result<bool> {
        self.finish_one(id, owner, Outcome::Released, now).await
    }

    async fn finish_one(
        &self,
        id: i64,
        owner: &str,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        Ok(self.finish_outbox(owner, &[(id, outcome)], now).await? == 1)
    }

    /// Records what became of claimed rows, all in one transaction (a busy worker's results
    /// are written together: one commit, not one per row). Only rows `owner` still holds
    /// change; the count says how many did.
    pub async fn finish_outbox(
        &self,
        owner: &str,
        results: &[(i64, Outcome)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let (_turn, mut tx) = self.begin_write().await?;
        let mut changed = 0;
        // The common case, every delivered row in one statement.
        let delivered: Vec<i64> = results
            .iter()
            .filter(|(_, o)| *o == Outcome::Delivered)
            .map(|(id, _)| *id)
            .collect();
        for ids in delivered.chunks(500) {
            let mut sql = Sql::new(
                "UPDATE outbox SET status = 'delivered', lease_owner = NULL, lease_until = NULL, \
                 last_error = NULL, finished_at = ",
            );
            sql.bind(micros(now))
                .push(" WHERE lease_owner = ")
                .bind(owner)
                .push(" AND status = 'in_flight' AND id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(*id);
            }
            sql.push(")");
            changed += sql.query().execute(&mut *tx).await?.rows_affected();
        }
        for (id, outcome) in results {
            let done = match outcome {
                Outcome::Delivered => continue,
                Outcome::Failed { failure, error } => {
                    let (status, next_attempt_at, finished_at) = match failure {
                        Failure::Retriable { next_attempt_at } => {
                            (OutboxStatus::Pending, Some(micros(*next_attempt_at)), None)
                        }
                        Failure::Permanent => (OutboxStatus::Dead, None, Some(micros(now))),
                    };
                    sqlx::query(
                        "UPDATE outbox SET status = $1, \
                         next_attempt_at = COALESCE($3, next_attempt_at), \
                         lease_owner = NULL, lease_until = NULL, last_error = $4, finished_at = $5 \
                         WHERE id = $6 AND lease_owner = $2 AND status = 'in_flight'",
                    )
                    .bind(to_name(&status))
                    .bind(owner)
                    .bind(next_attempt_at)
                    .bind(error.as_str())
                    .bind(finished_at)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?
                }
                Outcome::Released => {
                    sqlx::query(
                        "UPDATE outbox SET status = 'pending', lease_owner = NULL, \
                         lease_until = NULL, attempts = attempts - 1 \
                         WHERE id = $1 AND lease_owner = $2 AND status = 'in_flight'",
                    )
                    .bind(*id)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?
                }
            };
            changed += done.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// For each `(connector, pbx, call_id, before)`: when the earliest still-open (pending)
    /// step of that call for that connector before row `before` is due, if there is one (a
    /// later step must wait for it: the call's order). One query for a whole claimed batch.
    pub async fn open_steps_before(
        &self,
        lanes: &[(&str, &str, &str, i64)],
    ) -> Result<Vec<Option<DateTime<Utc>>>> {
        let mut due = vec![None; lanes.len()];
        for (chunk_at, chunk) in lanes.chunks(200).enumerate() {
            let mut sql = Sql::new(
                "SELECT connector, pbx, call_id, id, next_attempt_at FROM outbox \
                 WHERE status = 'pending' AND (",
            );
            for (i, (_, pbx, call_id, _)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(pbx = ")
                    .bind(*pbx)
                    .push(" AND call_id = ")
                    .bind(*call_id)
                    .push(")");
            }
            sql.push(")");
            for row in sql.query().fetch_all(&self.pool).await? {
                let (connector, pbx, call_id, id): (String, String, String, i64) = (
                    row.try_get("connector")?,
                    row.try_get("pbx")?,
                    row.try_get("call_id")?,
                    row.try_get("id")?,
                );
                let at = from_micros("next_attempt_at", row.try_get("next_attempt_at")?)?;
                for (i, lane) in chunk.iter().enumerate() {
                    if (lane.0, lane.1, lane.2) == (&connector, &pbx, &call_id) && id < lane.3 {
                        let slot = &mut due[chunk_at * 200 + i];
                        *slot = Some(slot.map_or(at, |d: DateTime<Utc>| d.min(at)));
                    }
                }
            }
        }
        Ok(due)
    }

    /// Every outbox row of a call, oldest first (for the journal and for inspection).
    pub async fn outbox_for_call(&self, pbx: &str, call_id: &str) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE pbx = $1 AND call_id = $2 ORDER BY id"
        ))
        .bind(pbx)
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// A page of rows matching `filter`, newest first. The next page: the same filter with
    /// `before_id` set to the last row's id.
    pub async fn list_outbox(&self, filter: &OutboxFilter, limit: u32) -> Result<Vec<OutboxRow>> {
        let mut sql = Sql::new(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE "));
        filter.push_to(&mut sql);
        sql.push(" ORDER BY id DESC LIMIT ").bind(i64::from(limit));
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// How many rows each connector has in each state (states with no rows are left out).
    pub async fn outbox_counts(&self) -> Result<Vec<OutboxCount>> {
        self.counts("").await
    }

    /// [`Store::outbox_counts`] of the rows not delivered (pending, in flight, dead): what
    /// needs watching, counted by index without reading the delivered history.
    pub async fn open_outbox_counts(&self) -> Result<Vec<OutboxCount>> {
        self.counts("WHERE status IN ('pending', 'in_flight', 'dead')")
            .await
    }

    async fn counts(&self, filter: &str) -> Result<Vec<OutboxCount>> {
        let rows = sqlx::query(&format!(
            "SELECT connector, status, COUNT(*) AS n FROM outbox {filter} \
             GROUP BY connector, status ORDER BY connector, status"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxCount {
                    connector: row.try_get("connector")?,
                    status: from_name("outbox status", row.try_get("status")?)?,
                    rows: to_u64("outbox count", row.try_get("n")?)?,
                })
            })
            .collect()
    }

    /// Puts dead rows back in the queue, due at `now`, with their attempts reset and the
    /// dead-letter clock (`created_at`) restarted; the last error is kept for the record.
    /// `Requeue::Row` of a row that is not dead changes nothing. Returns the rows requeued.
    pub async fn requeue_outbox(&self, which: &Requeue, now: DateTime<Utc>) -> Result<u64> {
        let mut sql = Sql::new(
            "UPDATE outbox SET status = 'pending', attempts = 0, lease_owner = NULL, \
             lease_until = NULL, finished_at = NULL, next_attempt_at = ",
        );
        sql.bind(micros(now))
            .push(", created_at = ")
            .bind(micros(now))
            .push(" WHERE status = 'dead'");
        match which {
            Requeue::Row(id) => {
                sql.push(" AND id = ").bind(*id);
            }
            Requeue::AllDead { connector } => {
                push_connector(&mut sql, connector.as_deref());
            }
        }
        Ok(sql.query().execute(&self.pool).await?.rows_affected())
    }

    /// Deletes finished rows: delivered before a cutoff, or dead. Open rows (pending, in
    /// flight) are never purged. Returns the rows deleted.
    pub async fn purge_outbox(&self, which: &Purge) -> Result<u64> {
        let mut sql = Sql::new("DELETE FROM outbox WHERE ");
        let connector = match which {
            Purge::DeliveredBefore { cutoff, connector } => {
                // Rows delivered before `finished_at` existed count from when they were queued.
                sql.push("status = 'delivered' AND COALESCE(finished_at, created_at) < ")
                    .bind(micros(*cutoff));
                connector
            }
            Purge::Dead { connector } => {
                sql.push("status = 'dead'");
                connector
            }
        };
        push_connector(&mut sql, connector.as_deref());
        Ok(sql.query().execute(&self.pool).await?.rows_affected())
    }
}

/// Which rows [`Store::list_outbox`] returns; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxFilter {
    /// Rows in this state.
    pub status: Option<OutboxStatus>,
    /// Rows of this connector.
    pub connector: Option<String>,
    /// Rows of calls with this id (Linkedid), on any PBX.
    pub call_id: Option<String>,
    /// Rows older than this id: the page after one that ended here.
    pub before_id: Option<i64>,
}

impl OutboxFilter {
    fn push_to(&self, sql: &mut Sql) {
        // A constant first condition lets every filter start with " AND ".
        sql.push("1 = 1");
        if let Some(status) = self.status {
            sql.push(" AND status = ").bind(to_name(&status));
        }
        push_connector(sql, self.connector.as_deref());
        if let Some(call_id) = &self.call_id {
            sql.push(" AND call_id = ").bind(call_id.as_str());
        }
        if let Some(before) = self.before_id {
            sql.push(" AND id < ").bind(before);
        }
    }
}

fn push_connector(sql: &mut Sql, connector: Option<&str>) {
    if let Some(connector) = connector {
        sql.push(" AND connector = ").bind(connector);
    }
}

/// Rows of one connector in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCount {
    /// The connector.
    pub connector: String,
    /// The state.
    pub status: OutboxStatus,
    /// How many rows.
    pub rows: u64,
}

/// Which dead rows [`Store::requeue_outbox`] puts back in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// One row, by id.
    Row(i64),
    /// Every dead row, or those of one connector.
    AllDead {
        /// Only this connector's rows.
        connector: Option<String>,
    },
}

/// Which finished rows [`Store::purge_outbox`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Delivered rows finished before `cutoff`.
    DeliveredBefore {
        /// Rows delivered before this instant.
        cutoff: DateTime<Utc>,
        /// Only this connector's rows.
        connector: Option<String>,
    },
    /// Every dead row (after a look at why they failed).
    Dead {
        /// Only this connector's rows.
        connector: Option<String>,
    },
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxRow> {
    let optional_time = |column: &'static str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|us| from_micros(column, us))
            .transpose()
    };
    Ok(OutboxRow {
        id: row.try_get("id")?,
        connector: row.try_get("connector")?,
        pbx: row.try_get("pbx")?,
        call_id: row.try_get("call_id")?,
        kind: row.try_get("kind")?,
        payload: from_json("outbox payload", row.try_get("payload")?)?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: from_name("outbox status", row.try_get("status")?)?,
        attempts: to_u64("outbox attempts", row.try_get("attempts")?)?,
        next_attempt_at: from_micros("next_attempt_at", row.try_get("next_attempt_at")?)?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: optional_time("lease_until")?,
        last_error: row.try_get("last_error")?,
        created_at: from_micros("created_at", row.try_get("created_at")?)?,
        finished_at: optional_time("finished_at")?,
    })
}
