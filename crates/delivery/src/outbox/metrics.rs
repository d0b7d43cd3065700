//! The outbox's `/metrics`: delivery counters per CRM (the workers count) and the queue's
//! depth per CRM and state, read from the database.

use std::collections::BTreeSet;
use std::time::Duration;

use store::{OutboxStatus, Store};

/// How often the outbox depth gauges are read from the database.
const GAUGES_EVERY: Duration = Duration::from_secs(10);

/// `/metrics` names of the outbox workers' counters, per `crm`: deliveries, and failed
/// attempts by `kind` (`retriable`: tried again later; `permanent`: the row went dead).
pub(super) const DELIVERED: &str = "pbxlink_outbox_delivered_total";
pub(super) const DELIVERY_ERRORS: &str = "pbxlink_outbox_delivery_errors_total";

/// Outbox metrics. Every connector's delivery counters exist from the start, at 0, so an
/// alert on their increase sees the very first error. `pbxlink_outbox_rows{crm, state}`
/// (pending, in_flight, dead) is the queue in the database (in a cluster, the shared one),
/// read every [`GAUGES_EVERY`]: the workers see only the rows they claim.
pub fn spawn(store: Store, crms: &[super::Crm], shutdown: crate::shutdown::Shutdown) {
    let mut connectors: BTreeSet<String> = crms.iter().map(|c| c.name.clone()).collect();
    for crm in &connectors {
        // `increment(0)`, not `absolute(0)`: the workers may have counted already.
        metrics::counter!(DELIVERED, "crm" => crm.clone()).increment(0);
        for kind in ["retriable", "permanent"] {
            metrics::counter!(DELIVERY_ERRORS, "crm" => crm.clone(), "kind" => kind).increment(0);
        }
    }
    let states = [
        (OutboxStatus::Pending, "pending"),
        (OutboxStatus::InFlight, "in_flight"),
        (OutboxStatus::Dead, "dead"),
    ];
    tokio::spawn(async move {
        let mut every = tokio::time::interval(GAUGES_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.requested() => return,
            }
            let counts = match store.open_outbox_counts().await {
                Ok(counts) => counts,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count outbox rows for /metrics");
                    continue;
                }
            };
            // Rows of a connector no longer configured still count; an emptied state reads
            // 0, not its last value.
            connectors.extend(counts.iter().map(|c| c.connector.clone()));
            for crm in &connectors {
                for (status, state) in states {
                    let rows = counts
                        .iter()
                        .find(|c| c.connector == *crm && c.status == status)
                        .map_or(0, |c| c.rows);
                    metrics::gauge!("pbxlink_outbox_rows", "crm" => crm.clone(), "state" => state)
                        .set(rows as f64);
                }
            }
        }
    });
}
