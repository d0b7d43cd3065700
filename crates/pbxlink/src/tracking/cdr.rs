//! Gaps in a PBX's event stream, repaired from its CDR (`[pbx.cdr]`): records the tracker
//! made with a moment in a gap are corrected before they are journaled, and calls that
//! began and ended inside a gap are journaled from the CDR alone (`source: cdr`). Both go
//! through the PBX's journal writer, so CRM deliveries are planned like for any call.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calls::cdr::{record_from_cdr, repair};
use calls::{CallRecord, CdrRow, Gap, TrackerConfig};
use chrono::{DateTime, TimeDelta, Utc};
use store::Store;
use tokio::sync::mpsc;

use super::JournalItem;
use crate::config::Config;
use pbx::cdr::CdrSource;

/// Waits before each CDR lookup of a record: Asterisk writes a leg's row when the leg ends,
/// so the rows of a call that just ended may come a moment later (or, with cdr.conf
/// `batch = yes`, up to its `time`). After the last, the record is journaled as it is.
const REPAIR_WAITS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// How long after a reconnect the gap's calls are looked up: their last rows are being
/// written as the link comes back.
const BACKFILL_WAIT: Duration = Duration::from_secs(5);

/// CDR times are whole seconds: a leg that began in the gap's first second may read earlier.
const CDR_RESOLUTION: TimeDelta = TimeDelta::seconds(1);

/// How often, and how long apart, the backfill looks for its calls in the journal before
/// it moves the store's mark (the writer commits within a batch's time).
const JOURNAL_CHECKS: u32 = 50;
const JOURNAL_CHECK_EVERY: Duration = Duration::from_millis(200);

/// How far before a gap the backfill looks, back to the store's mark: to an earlier gap
/// whose calls a killed pbxlink never looked up, and to the moment its stream really stopped
/// (events read late, from a backlog, say that pbxlink listened longer than it did). Bounded
/// like the calls a restart resumes: every call in it is looked up in the journal.
const BACKFILL_LOOKBACK: TimeDelta = TimeDelta::hours(4);

/// The `[pbx.cdr]` readers of the config, by PBX name.
#[derive(Debug, Clone, Default)]
pub struct CdrSources(Arc<HashMap<String, Arc<CdrSource>>>);

impl CdrSources {
    pub fn from_config(config: &Config) -> anyhow::Result<CdrSources> {
        let mut sources = HashMap::new();
        for pbx in &config.pbx {
            if let Some(cdr) = &pbx.cdr {
                sources.insert(pbx.name.clone(), Arc::new(CdrSource::new(cdr)?));
            }
        }
        Ok(CdrSources(Arc::new(sources)))
    }
}

/// One PBX's gap handling, owned by its tracking.
pub(super) struct GapRepair {
    pbx: String,
    source: Option<Arc<CdrSource>>,
    store: Store,
    journal: mpsc::Sender<JournalItem>,
    /// Calls whose record is being repaired: not to be journaled again from the CDR alone.
    repairing: Arc<Mutex<HashSet<String>>>,
}

impl GapRepair {
    pub(super) fn new(
        pbx: &str,
        pipeline: &super::Pipeline,
        journal: mpsc::Sender<JournalItem>,
    ) -> GapRepair {
        GapRepair {
            pbx: pbx.to_owned(),
            source: pipeline.cdr.0.get(pbx).cloned(),
            store: pipeline.store.clone(),
            journal,
            repairing: Arc::default(),
        }
    }

    /// The tracker closed `gap` (its channel list after a login, which listed the calls
    /// `live`): the calls that began and ended inside it, or since the store's mark, are
    /// looked up in the CDR, and the mark moves past the gap once they are journaled.
    /// `parties` tells phones from trunks in the CDR's channel names: the tracker's
    /// knowledge ([`calls::Tracker::party_config`]).
    pub(super) fn gap_closed(&self, gap: Gap, live: HashSet<String>, parties: TrackerConfig) {
        let Some(source) = self.source.clone() else {
            return;
        };
        let (store, pbx, journal) = (self.store.clone(), self.pbx.clone(), self.journal.clone());
        let (config, repairing) = (parties, self.repairing.clone());
        tokio::spawn(async move {
            let window = Gap {
                from: backfill_from(&store, &pbx, gap).await,
                to: gap.to,
            };
            tokio::time::sleep(BACKFILL_WAIT).await;
            let known = |id: &str| {
                let id = id.to_owned();
                let (store, pbx, repairing, live) = (&store, &pbx, &repairing, &live);
                async move {
                    // A listed call is the tracker's: its rows so far are not all of it.
                    live.contains(&id)
                        || repairing.lock().unwrap().contains(&id)
                        // An unreadable journal counts as known: better a call missing from
                        // the backfill than one journaled twice with other contents.
                        || !matches!(store.get_call(&id, Some(pbx)).await, Ok(None))
                }
            };
            match cdr_backfill(&source, window, known, &config).await {
                Ok(records) => {
                    if !records.is_empty() {
                        tracing::info!(pbx, calls = records.len(), from = %window.from, to = %window.to, "journaling calls of a gap from the CDR");
                    }
                    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
                    for record in records {
                        if journal.send(JournalItem::Call(record)).await.is_err() {
                            return;
                        }
                    }
                    // Sent is not yet written: the mark moves once a crash cannot lose them.
                    if !journaled(&store, &pbx, &ids).await {
                        return;
                    }
                    if let Err(e) = store.set_cdr_backfilled_to(&pbx, gap.to).await {
                        tracing::warn!(pbx, error = %e, "cannot save how far the CDR backfill went");
                    }
                }
                Err(e) => {
                    tracing::warn!(pbx, error = %e, "cannot read the CDR; calls of the gap are not journaled")
                }
            }
        });
    }

    /// A finished record: back when it needs nothing from the CDR; else the repair takes it
    /// and journals it (repaired or, when the CDR cannot tell, as it is).
    pub(super) fn take_gapped(
        &self,
        record: CallRecord,
        parties: impl FnOnce() -> TrackerConfig,
    ) -> Option<CallRecord> {
        let p = &record.provenance;
        // A call that merely went through a gap may have been answered first in it.
        let gapped = !p.gaps.is_empty()
            || p.started_in_gap.is_some()
            || p.answered_in_gap.is_some()
            || p.ended_in_gap.is_some();
        let Some(source) = self.source.clone().filter(|_| gapped) else {
            return Some(record);
        };
        let (pbx, journal, config) = (self.pbx.clone(), self.journal.clone(), parties());
        let repairing = self.repairing.clone();
        repairing.lock().unwrap().insert(record.id.clone());
        tokio::spawn(async move {
            let id = record.id.clone();
            let record = repaired(&source, record, &config, &pbx).await;
            // The writer closes once every sender is gone: at shutdown it waits for this one.
            let _ = journal.send(JournalItem::Call(record)).await;
            repairing.lock().unwrap().remove(&id);
        });
        None
    }
}

/// Where the backfill of `gap` starts: at the store's mark when that is earlier (within
/// [`BACKFILL_LOOKBACK`]). Without a mark (the first gap), the gap's start becomes the mark
/// before anything else, so that a pbxlink killed before the backfill leaves it to the next.
async fn backfill_from(store: &Store, pbx: &str, gap: Gap) -> DateTime<Utc> {
    match store.cdr_backfilled_to(pbx).await {
        Ok(Some(mark)) => gap.from.min(mark.max(gap.from - BACKFILL_LOOKBACK)),
        Ok(None) => {
            if let Err(e) = store.set_cdr_backfilled_to(pbx, gap.from).await {
                tracing::warn!(pbx, error = %e, "cannot save where the CDR backfill starts");
            }
            gap.from
        }
        Err(e) => {
            tracing::warn!(pbx, error = %e, "cannot read how far the CDR backfill went; looking in the gap only");
            gap.from
        }
    }
}

/// Whether the calls `ids` are all in the journal, waiting a while for its writer.
async fn journaled(store: &Store, pbx: &str, ids: &[String]) -> bool {
    for _ in 0..JOURNAL_CHECKS {
        let mut all = true;
        for id in ids {
            all &= matches!(store.get_call(id, Some(pbx)).await, Ok(Some(_)));
        }
        if all {
            return true;
        }
        tokio::time::sleep(JOURNAL_CHECK_EVERY).await;
    }
    tracing::warn!(
        pbx,
        "calls of a gap not yet journaled; the next gap looks them up again"
    );
    false
}

/// `record` corrected from the CDR, looked up until its rows are there.
async fn repaired(
    source: &CdrSource,
    mut record: CallRecord,
    config: &TrackerConfig,
    pbx: &str,
) -> CallRecord {
    let id = [record.id.clone()];
    for wait in REPAIR_WAITS {
        tokio::time::sleep(wait).await;
        match source.rows_of(&id).await {
            Ok(rows) if !rows.is_empty() => {
                record = repair(record, &rows, config);
                tracing::debug!(pbx, call = id[0], source = ?record.provenance.source, "gap repaired from the CDR");
                return record;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(pbx, call = id[0], error = %e, "cannot read the CDR"),
        }
    }
    tracing::warn!(
        pbx,
        call = id[0],
        "no CDR rows for a call with a gap; journaled as tracked"
    );
    record
}

/// The calls that began and ended inside `gap` and are not `known` (journaled, or being
/// repaired), built from the CDR alone. A call the tracker saw begin has a row that began
/// before the gap, so it is never among them.
pub async fn cdr_backfill<F, Fut>(
    source: &CdrSource,
    gap: Gap,
    known: F,
    config: &TrackerConfig,
) -> anyhow::Result<Vec<CallRecord>>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (from, to) = (gap.from - CDR_RESOLUTION, gap.to + CDR_RESOLUTION);
    let mut ids: Vec<String> = Vec::new();
    for row in source.rows_between(from, to).await? {
        if !ids.contains(&row.linkedid) && !known(&row.linkedid).await {
            ids.push(row.linkedid);
        }
    }
    // All rows of those calls: a call that began before the gap has rows outside it.
    let mut calls: BTreeMap<String, Vec<CdrRow>> = BTreeMap::new();
    for row in source.rows_of(&ids).await? {
        calls.entry(row.linkedid.clone()).or_default().push(row);
    }
    Ok(calls
        .iter()
        .filter(|(_, rows)| rows.iter().all(|r| from <= r.start && r.end <= to))
        .filter_map(|(id, rows)| record_from_cdr(rows, id, config))
        .collect())
}

#[cfg(test)]
mod tests;
