//! One connector's way out: its rate limit, and for a CRM with a batch method (Bitrix24) the
//! batching of requests that wait for the same turn, so a burst of calls costs a request per
//! 50 steps instead of one each (Bitrix24 allows 2 requests a second).

use std::sync::Arc;

use crm::{DeliveryError, HttpRequest, HttpResponse};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::Crm;

type Reply = oneshot::Sender<Result<HttpResponse, DeliveryError>>;

/// A request waiting for its turn: the request, its idempotency key, where the answer goes.
type Waiting = (HttpRequest, String, Reply);

/// A connector with its rate limiter (and batcher).
pub(super) struct Lane {
    pub(super) crm: Crm,
    http: reqwest::Client,
    /// The earliest instant the next request may leave.
    next_slot: std::sync::Mutex<Instant>,
    /// Requests waiting for the batcher.
    waiting: std::sync::Mutex<Vec<Waiting>>,
    wake: Notify,
}

impl Lane {
    /// A lane for `crm`; a batching connector gets its batcher task.
    pub(super) fn start(crm: Crm, http: reqwest::Client) -> Arc<Self> {
        let lane = Arc::new(Self {
            crm,
            http,
            next_slot: std::sync::Mutex::new(Instant::now()),
            waiting: std::sync::Mutex::default(),
            wake: Notify::new(),
        });
        if lane.crm.connector.batch_limit() > 1 {
            tokio::spawn(lane.clone().batcher());
        }
        lane
    }

    /// Sends `request` in its turn: alone, or with others in one batch.
    pub(super) async fn send(
        &self,
        request: &HttpRequest,
        idempotency_key: &str,
    ) -> Result<HttpResponse, DeliveryError> {
        if self.crm.connector.batch_limit() <= 1 {
            self.wait_turn().await;
            return self
                .crm
                .exchange(&self.http, request, idempotency_key)
                .await;
        }
        let (reply, answer) = oneshot::channel();
        self.waiting_list()
            .push((request.clone(), idempotency_key.to_owned(), reply));
        self.wake.notify_one();
        answer
            .await
            .unwrap_or_else(|_| Err(DeliveryError::retriable("the batcher stopped")))
    }

    /// Waits for this request's slot under the rate limit. The slot is reserved under a
    /// short lock and waited for outside it; without a limit nothing waits (a timer, even an
    /// expired one, costs a tick of the timer wheel: about a millisecond per request).
    async fn wait_turn(&self) {
        if self.crm.min_gap.is_zero() {
            return;
        }
        let slot = {
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = Instant::now().max(*next);
            *next = slot + self.crm.min_gap;
            slot
        };
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
    }

    fn waiting_list(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        // Pushes and drains never panic halfway, so a poisoned list is still whole.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Each turn takes what waits: up to the batch limit in one batch request, or the first
    /// alone when the connector cannot batch them (e.g. a token renewal among them).
    async fn batcher(self: Arc<Self>) {
        let limit = self.crm.connector.batch_limit();
        loop {
            if self.waiting_list().is_empty() {
                self.wake.notified().await;
                continue;
            }
            self.wait_turn().await;
            let mut taken: Vec<Waiting> = {
                let mut waiting = self.waiting_list();
                let n = waiting.len().min(limit);
                waiting.drain(..n).collect()
            };
            let requests: Vec<HttpRequest> = taken.iter().map(|(r, _, _)| r.clone()).collect();
            let batch = (requests.len() > 1)
                .then(|| self.crm.connector.batch(&requests))
                .flatten();
            let Some(batch) = batch else {
                // One alone; the rest go back to the head of the queue.
                let rest = taken.split_off(1);
                self.waiting_list().splice(0..0, rest);
                let (request, key, reply) = taken.remove(0);
                let answer = self.crm.exchange(&self.http, &request, &key).await;
                let _ = reply.send(answer);
                continue;
            };
            let count = taken.len();
            let answers = match self.crm.exchange(&self.http, &batch, "").await {
                Ok(response) => self
                    .crm
                    .connector
                    .split_batch(&response, count)
                    .into_iter()
                    .map(Ok)
                    .collect(),
                Err(error) => vec![Err(error); count],
            };
            tracing::debug!(crm = self.crm.name, commands = count, "batch sent");
            for ((_, _, reply), answer) in taken.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
    }
}
