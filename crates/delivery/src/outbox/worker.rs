//! Outbox workers: claim due rows under a lease, deliver them through their connector (rate
//! limited, one call's steps in order), then mark them delivered, retry later, or dead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use crm::{backoff, DeliveryError, HttpRequest, HttpResponse, OutboxItem, Progress};
use store::{Failure, OutboxRow, Outcome, Store};
use tokio::sync::mpsc;

use super::lane::Lane;
use super::Crm;

/// How the workers pace themselves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Name of this worker in `lease_owner` (unique per pbxlink process).
    pub owner: String,
    /// Rows claimed at a time.
    pub batch: u32,
    /// How long a claim holds; a worker that dies mid-delivery frees its rows after this.
    pub lease: Duration,
    /// Pause when nothing is due.
    pub idle: Duration,
    /// First retry delay; doubles per attempt (with full jitter) up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// A row still failing this long after it was queued goes dead (dead letter). By age,
    /// not by attempt count: a CRM that is down for an hour must not cost any call.
    pub give_up_after: Duration,
    /// Per-request HTTP timeout.
    pub http_timeout: Duration,
    /// Once requested, no more rows are claimed; deliveries in flight finish.
    pub shutdown: crate::shutdown::Shutdown,
    /// Rows were queued: claim now rather than after `idle`.
    pub wake: Arc<tokio::sync::Notify>,
}

impl WorkerConfig {
    /// These pacing defaults with `[outbox]`'s lease and batch size.
    pub fn with_settings(self, settings: &super::OutboxSettings) -> anyhow::Result<Self> {
        let lease = Duration::try_from_secs_f64(settings.lease)
            .ok()
            .filter(|lease| !lease.is_zero())
            .ok_or_else(|| {
                anyhow::anyhow!("[outbox] lease must be a positive number of seconds")
            })?;
        anyhow::ensure!(settings.batch > 0, "[outbox] batch must be at least 1");
        Ok(Self {
            lease,
            batch: settings.batch,
            ..self
        })
    }

    /// Production pacing for worker `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            batch: 200,
            lease: Duration::from_secs(300),
            idle: Duration::from_millis(100),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
            http_timeout: Duration::from_secs(20),
            shutdown: crate::shutdown::Shutdown::never(),
            wake: Arc::default(),
        }
    }
}

/// Starts the delivery loop for `crms`; it runs until the process ends.
pub fn spawn_workers(store: Store, crms: Vec<Crm>, config: WorkerConfig) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(config.http_timeout)
        .build()?;
    let crms: HashMap<String, Arc<Lane>> = crms
        .into_iter()
        .map(|crm| (crm.name.clone(), Lane::start(crm, http.clone())))
        .collect();
    let worker = Arc::new(Worker {
        store,
        crms,
        config,
    });
    tokio::spawn(async move { worker.run().await });
    Ok(())
}

struct Worker {
    store: Store,
    crms: HashMap<String, Arc<Lane>>,
    config: WorkerConfig,
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let lease = TimeDelta::from_std(self.config.lease).unwrap_or(TimeDelta::MAX);
        while !self.config.shutdown.is_requested() {
            let claimed = self
                .store
                .claim_outbox(&self.config.owner, self.config.batch, lease, Utc::now())
                .await;
            let rows = match claimed {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot claim rows");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(self.config.idle) => {}
                    () = self.config.wake.notified() => {}
                    () = self.config.shutdown.requested() => {}
                }
                continue;
            }
            // Calls and connectors go side by side (each connector's rate limit still holds);
            // one call's rows for one connector go in id order, which is the call's order.
            let mut by_call: HashMap<(String, String, String), Vec<OutboxRow>> = HashMap::new();
            for row in rows {
                let call = (row.connector.clone(), row.pbx.clone(), row.call_id.clone());
                by_call.entry(call).or_default().push(row);
            }
            let lanes: Vec<Vec<OutboxRow>> = by_call.into_values().collect();
            let waits = self.earlier_steps(&lanes).await;
            let (results, recorded) = mpsc::unbounded_channel();
            let recorder = tokio::spawn(record_results(
                self.store.clone(),
                self.config.owner.clone(),
                recorded,
            ));
            let lanes = lanes.into_iter().zip(waits).map(|(rows, wait)| {
                let worker = self.clone();
                let results = results.clone();
                tokio::spawn(async move { worker.lane(rows, wait, &results).await })
            });
            for lane in futures::future::join_all(lanes).await {
                if let Err(e) = lane {
                    tracing::error!(error = %e, "outbox: delivery task failed");
                }
            }
            // Every result is saved before the next claim: a call's next step sees this one.
            drop(results);
            if let Err(e) = recorder.await {
                tracing::error!(error = %e, "outbox: result writer failed");
            }
        }
    }

    /// For each lane (one call's rows for one connector), whether an earlier step of its
    /// call is still open (in backoff): until when, and why.
    async fn earlier_steps(
        &self,
        lanes: &[Vec<OutboxRow>],
    ) -> Vec<Option<(DateTime<Utc>, String)>> {
        let firsts: Vec<_> = lanes
            .iter()
            .map(|rows| {
                let r = &rows[0];
                (
                    r.connector.as_str(),
                    r.pbx.as_str(),
                    r.call_id.as_str(),
                    r.id,
                )
            })
            .collect();
        match self.store.open_steps_before(&firsts).await {
            Ok(due) => due
                .into_iter()
                .map(|at| at.map(|at| (at, WAITING.to_owned())))
                .collect(),
            Err(e) => {
                let why = format!("cannot check the call's earlier steps: {e}");
                let at = Utc::now() + TimeDelta::seconds(1);
                vec![Some((at, why)); lanes.len()]
            }
        }
    }

    /// One call's claimed rows for one connector, in order. A step waits while an earlier
    /// one of the call is still open (`wait`), and so does everything after a step that
    /// failed and will be retried.
    async fn lane(
        &self,
        rows: Vec<OutboxRow>,
        mut wait: Option<(DateTime<Utc>, String)>,
        results: &Results,
    ) {
        for row in rows {
            // Stopping: the delivery under way finished; the call's later steps are handed
            // back, due at the next start rather than after the lease.
            let outcome = if self.config.shutdown.is_requested() {
                Outcome::Released
            } else if let Some((at, why)) = &wait {
                let next_attempt_at = (*at).max(Utc::now() + TimeDelta::milliseconds(100));
                Outcome::Failed {
                    failure: Failure::Retriable { next_attempt_at },
                    error: why.clone(),
                }
            } else {
                let outcome = self.attempt(&row).await;
                if let Outcome::Failed {
                    failure: Failure::Retriable { next_attempt_at },
                    ..
                } = outcome
                {
                    wait = Some((next_attempt_at, WAITING.to_owned()));
                }
                outcome
            };
            // The writer outlives every lane of the batch.
            let _ = results.send((row.id, outcome));
        }
    }

    /// Delivers one row, counting the outcome.
    async fn attempt(&self, row: &OutboxRow) -> Outcome {
        match self.deliver(row).await {
            Ok(()) => {
                metrics::counter!(super::metrics::DELIVERED, "crm" => row.connector.clone())
                    .increment(1);
                Outcome::Delivered
            }
            Err(error) => {
                let failure = self.failure(row, &error);
                let kind = if failure == Failure::Permanent {
                    tracing::warn!(row = row.id, key = row.idempotency_key, %error, "outbox: dead letter");
                    "permanent"
                } else {
                    "retriable"
                };
                metrics::counter!(
                    super::metrics::DELIVERY_ERRORS,
                    "crm" => row.connector.clone(),
                    "kind" => kind
                )
                .increment(1);
                Outcome::Failed {
                    failure,
                    error: error.to_string(),
                }
            }
        }
    }

    fn failure(&self, row: &OutboxRow, error: &DeliveryError) -> Failure {
        match error {
            DeliveryError::Retriable { retry_after, .. }
                if Utc::now() - row.created_at
                    < TimeDelta::from_std(self.config.give_up_after).unwrap_or(TimeDelta::MAX) =>
            {
                let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
                let delay = backoff(
                    attempt,
                    self.config.base_backoff,
                    self.config.max_backoff,
                    rand::random::<f64>(),
                )
                .max(retry_after.unwrap_or_default());
                Failure::Retriable {
                    next_attempt_at: Utc::now()
                        + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX),
                }
            }
            _ => Failure::Permanent,
        }
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<(), DeliveryError> {
        let lane = self.crms.get(&row.connector).ok_or_else(|| {
            DeliveryError::permanent(format!(
                "no [[crm]] named {:?} is configured",
                row.connector
            ))
        })?;
        let item = outbox_item(row);
        // A step needs at most its call's re-registration and a token renewal (then the
        // request again) first; more means a confused exchange, worth a later try.
        for _ in 0..5 {
            let request = lane.crm.connector.next_request(&item, Utc::now())?;
            let response = lane.send(&request, &item.idempotency_key).await?;
            if lane.crm.connector.on_response(&item, &response)? == Progress::Delivered {
                return Ok(());
            }
        }
        Err(DeliveryError::retriable(
            "connector kept asking for more requests",
        ))
    }
}

/// Why a step waits for an earlier one.
const WAITING: &str = "waiting for an earlier step of the call";
/// How long a result waits for others to share its commit.
const GROUP_WINDOW: Duration = Duration::from_millis(5);
/// Most results written in one transaction.
const RESULTS_PER_WRITE: usize = 512;

/// Where lanes report what became of their rows.
type Results = mpsc::UnboundedSender<(i64, Outcome)>;

/// Saves lanes' results as they come, in group commits: a result waits at most
/// [`GROUP_WINDOW`] for others to share its transaction, so a busy worker writes one commit
/// per many rows while the window in which a crash would send a delivered step again stays a
/// few milliseconds.
async fn record_results(
    store: Store,
    owner: String,
    mut recorded: mpsc::UnboundedReceiver<(i64, Outcome)>,
) {
    let mut batch = Vec::with_capacity(RESULTS_PER_WRITE);
    while recorded.recv_many(&mut batch, RESULTS_PER_WRITE).await > 0 {
        // A commit costs a disk sync: let the results of the next few milliseconds join.
        let deadline = tokio::time::Instant::now() + GROUP_WINDOW;
        while batch.len() < RESULTS_PER_WRITE {
            let room = RESULTS_PER_WRITE - batch.len();
            match tokio::time::timeout_at(deadline, recorded.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        match store.finish_outbox(&owner, &batch, Utc::now()).await {
            Ok(saved) if saved < batch.len() as u64 => tracing::warn!(
                lost = batch.len() as u64 - saved,
                "outbox: lease lost before some results were saved"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(
                rows = batch.len(),
                error = %e,
                "outbox: cannot save delivery results; the rows go out again when their lease ends"
            ),
        }
        batch.clear();
    }
}

/// The connector's view of a stored row.
pub(super) fn outbox_item(row: &OutboxRow) -> OutboxItem {
    OutboxItem {
        call_id: row.call_id.clone(),
        kind: row.kind.clone(),
        payload: row.payload.clone(),
        idempotency_key: row.idempotency_key.clone(),
    }
}

/// POSTs a request (GETs one without a body); transport failures (refused, reset, timeout)
/// are retriable.
pub async fn send(
    http: &reqwest::Client,
    request: &HttpRequest,
    idempotency_key: &str,
) -> Result<HttpResponse, DeliveryError> {
    let mut builder = if request.body.is_empty() {
        http.get(&request.url)
    } else {
        http.post(&request.url)
            .header("content-type", "application/json")
            .body(request.body.clone())
    };
    if !idempotency_key.is_empty() {
        builder = builder.header("idempotency-key", idempotency_key);
    }
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let response = builder
        .send()
        .await
        .map_err(|e| transport_error(&request.url, e))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.trim().parse().ok());
    let body = response
        .text()
        .await
        .map_err(|e| transport_error(&request.url, e))?;
    Ok(HttpResponse {
        status,
        retry_after,
        body,
    })
}

/// A failed exchange, as a retriable error naming the server only: a CRM URL's path may be
/// the credential (Bitrix24's incoming webhook), and errors reach the log and the outbox's
/// `last_error`.
fn transport_error(url: &str, error: reqwest::Error) -> DeliveryError {
    let server = url::Url::parse(url).map_or_else(
        |_| "the CRM".to_owned(),
        |url| url.origin().ascii_serialization(),
    );
    // reqwest says only "error sending request"; what went wrong is in its causes.
    let error = error.without_url();
    let causes = std::iter::successors(std::error::Error::source(&error), |e| e.source());
    let reason: Vec<String> = std::iter::once(error.to_string())
        .chain(causes.map(ToString::to_string))
        .collect();
    DeliveryError::retriable(format!("{server}: {}", reason.join(": ")))
}
