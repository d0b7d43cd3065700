//! Scale-out on one database: PBX leases (each PBX tracked by one instance at a time), the
//! events of calls a previous owner left unfinished, and live-event fan-out between instances
//! (PostgreSQL `NOTIFY`/`LISTEN`).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgListener;
use sqlx::Row as _;

use crate::codec::{from_micros, micros};
use crate::events::{event_from_row, RawEvent, EVENT_COLUMNS};
use crate::{Backend, Result, Store};

/// The `NOTIFY` channel live call events travel on.
pub const LIVE_CHANNEL: &str = "pbxlink_live";

/// Who holds a PBX's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The PBX.
    pub pbx: String,
    /// The instance holding it.
    pub owner: String,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// When this owner took it.
    pub since: DateTime<Utc>,
}

impl Store {
    /// Takes or renews `owner`'s lease on `pbx` until `now + ttl`. Succeeds when the PBX is
    /// free, already `owner`'s, or its lease expired before `now`; `false` while another
    /// instance holds it. One statement: two instances racing for a free PBX cannot both win.
    pub async fn acquire_lease(
        &self,
        pbx: &str,
        owner: &str,
        ttl: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO pbx_leases (pbx, owner, expires_at, since) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (pbx) DO UPDATE SET owner = excluded.owner, \
               expires_at = excluded.expires_at, \
               since = CASE WHEN pbx_leases.owner = excluded.owner \
                       THEN pbx_leases.since ELSE excluded.since END \
             WHERE pbx_leases.owner = excluded.owner OR pbx_leases.expires_at < excluded.since",
        )
        .bind(pbx)
        .bind(owner)
        .bind(micros(now + ttl))
        .bind(micros(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up at once (graceful shutdown), so another instance need not wait
    /// for it to expire. Does nothing when `owner` no longer holds it.
    pub async fn release_lease(&self, pbx: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM pbx_leases WHERE pbx = $1 AND owner = $2")
            .bind(pbx)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every lease, live or expired, by PBX name.
    pub async fn leases(&self) -> Result<Vec<Lease>> {
        let rows = sqlx::query("SELECT pbx, owner, expires_at, since FROM pbx_leases ORDER BY pbx")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Lease {
                    pbx: row.try_get("pbx")?,
                    owner: row.try_get("owner")?,
                    expires_at: from_micros("lease expires_at", row.try_get("expires_at")?)?,
                    since: from_micros("lease since", row.try_get("since")?)?,
                })
            })
            .collect()
    }

    /// The logged events, received at or after `since`, of calls on `pbx` that are not in
    /// the journal: the calls a previous owner (a crashed instance, or this one before a
    /// restart) was tracking. Replayed into a fresh tracker, they let the new owner finish
    /// those calls instead of losing them.
    pub async fn unfinished_call_events(
        &self,
        pbx: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<RawEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM ami_events e \
             WHERE e.pbx = $1 AND e.received_at >= $2 AND e.linkedid IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.pbx = e.pbx AND c.id = e.linkedid) \
             ORDER BY e.id"
        ))
        .bind(pbx)
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Sends `payloads`, in order, to every instance listening on `channel` (PostgreSQL
    /// `NOTIFY`, each payload under 8000 bytes). One round trip for the lot: a burst of live
    /// events must not queue behind one database round trip each. On SQLite there are no
    /// other instances: nothing to do.
    pub async fn notify(&self, channel: &str, payloads: &[String]) -> Result<()> {
        if self.backend == Backend::Postgres && !payloads.is_empty() {
            // The pool is `Any` (no array binds): the batch travels as one JSON array.
            let batch = serde_json::to_string(payloads).expect("strings serialize");
            sqlx::query("SELECT pg_notify($1, value) FROM json_array_elements_text($2::json)")
                .bind(channel)
                .bind(batch)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A listener for `channel` on its own PostgreSQL connection; `None` on SQLite.
    pub async fn listen(&self, channel: &str) -> Result<Option<Listener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(channel).await?;
        Ok(Some(Listener { inner: listener }))
    }
}

/// Notifications from other instances (see [`Store::notify`]).
#[derive(Debug)]
pub struct Listener {
    inner: PgListener,
}

impl Listener {
    /// The next notification's payload. A lost connection is re-established (sqlx does
    /// it); notifications sent meanwhile are missed, which only live views suffer from.
    pub async fn recv(&mut self) -> Result<String> {
        Ok(self.inner.recv().await?.payload().to_owned())
    }
}
