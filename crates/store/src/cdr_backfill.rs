//! The CDR backfill's mark per PBX (`[pbx.cdr]`): before it, pbxlink was listening or has
//! looked up the calls of its gaps in the CDR. It outlives the process, so a gap whose calls
//! a killed pbxlink never looked up is looked up by the next one.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use crate::codec::{from_micros, micros};
use crate::{Result, Store};

impl Store {
    /// The mark of `pbx`; `None` before its first login with `[pbx.cdr]`.
    pub async fn cdr_backfilled_to(&self, pbx: &str) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT backfilled_to FROM cdr_backfill WHERE pbx = $1")
            .bind(pbx)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_micros("backfilled_to", r.try_get("backfilled_to")?))
            .transpose()
    }

    /// Moves the mark of `pbx` to `at`, never back: backfills may finish out of order.
    pub async fn set_cdr_backfilled_to(&self, pbx: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO cdr_backfill (pbx, backfilled_to) VALUES ($1, $2) \
             ON CONFLICT (pbx) DO UPDATE SET backfilled_to = excluded.backfilled_to \
             WHERE cdr_backfill.backfilled_to < excluded.backfilled_to",
        )
        .bind(pbx)
        .bind(micros(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
