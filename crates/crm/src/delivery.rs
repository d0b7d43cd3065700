//! The one delivery trait every connector implements, sans-IO: a connector turns an outbox item
//! into HTTP requests and judges the responses; the caller (pbxlink) does the HTTP.
//!
//! Why sans-IO: the connectors' logic (request shapes, error classification, signing) is then
//! tested without sockets or a runtime, and `crm` needs neither tokio nor reqwest.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// One queued delivery, as a connector sees it (a view of a store outbox row).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// The call (Linkedid) it belongs to.
    pub call_id: String,
    /// What it delivers (`register`, `finish`, `call.ended`, ...).
    pub kind: String,
    /// The connector's payload, as its planner wrote it.
    pub payload: serde_json::Value,
    /// Unique per delivery and stable across retries, so the CRM can drop duplicates.
    pub idempotency_key: String,
}

/// One planned delivery of a call: an outbox row to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The idempotency key's last part: unique within the call, and the same whenever the
    /// call is planned again (a restart or takeover replays it), so nothing is queued twice.
    pub key: String,
    /// What the connector delivers (`register`, `show`, `call.ringing`, `call`, ...).
    pub kind: String,
    /// What the connector needs to build the request.
    pub payload: serde_json::Value,
}

impl Step {
    /// A step a call has at most once: its kind names it.
    pub fn once(kind: &str, payload: serde_json::Value) -> Self {
        Self {
            key: kind.to_owned(),
            kind: kind.to_owned(),
            payload,
        }
    }
}

/// When a finished call's recording goes to the CRMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordingHandOver {
    /// With the call's own steps, as the PBX's file: under a connector's `record_url_base`,
    /// and named by the webhook's `recording.ready`.
    #[default]
    WithCall,
    /// After the call, once pbxlink's recordings worker has converted it and made a link: the
    /// call's steps leave the recording out, and the planners' `on_recording` (webhook:
    /// `plan_recording`) give its steps then ([`RecordingReady`]).
    Later,
}

/// A converted recording, as the planners get it.
#[derive(Debug, Clone, Copy)]
pub struct RecordingReady<'a> {
    /// Signed download link.
    pub url: &'a str,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
    /// Hex SHA-256 of the MP3.
    pub sha256: &'a str,
    /// MP3 size.
    pub bytes: u64,
    /// Audio length.
    pub duration_ms: u64,
}

/// An HTTP request for the caller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Full URL.
    pub url: String,
    /// Header name/value pairs besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// JSON body, POSTed; empty: the request is a GET (e.g. an OAuth token renewal).
    pub body: String,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<u64>,
    /// Body text.
    pub body: String,
}

/// After a response: is the item delivered, or does the connector need another request first?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The CRM accepted the item.
    Delivered,
    /// Ask [`Connector::next_request`] again (e.g. the call had to be re-registered first).
    Continue,
}

/// Why a delivery failed: the split the outbox needs to retry or dead-letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later: network trouble, timeouts, 5xx, 429, rate limits, expired tokens.
    #[error("retriable: {reason}")]
    Retriable {
        /// What went wrong.
        reason: String,
        /// The earliest sensible retry, when the CRM said so.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way again: 4xx, rejected or invalid data.
    #[error("permanent: {reason}")]
    Permanent {
        /// What went wrong.
        reason: String,
    },
}

impl DeliveryError {
    /// A retriable error without a hint on when to retry.
    pub fn retriable(reason: impl Into<String>) -> Self {
        Self::Retriable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.into(),
        }
    }
}

/// A CRM connector: builds requests for outbox items and classifies the answers.
///
/// The caller loops `next_request` -> send -> `on_response` until `Delivered` or an error; a
/// transport failure (refused, timeout) is the caller's to report as retriable.
pub trait Connector: std::fmt::Debug + Send + Sync {
    /// The next request to send for `item`; `now` is for signatures and timestamps.
    fn next_request(
        &self,
        item: &OutboxItem,
        now: DateTime<Utc>,
    ) -> Result<HttpRequest, DeliveryError>;

    /// Judges the response to the request `next_request` returned for `item`.
    fn on_response(
        &self,
        item: &OutboxItem,
        response: &HttpResponse,
    ) -> Result<Progress, DeliveryError>;

    /// Most requests one [`Connector::batch`] request may carry; 1: the CRM has no batch
    /// method, every request goes alone.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Several requests as one (the CRM's batch method), to spare its rate limit; `None`
    /// when these cannot go together (then they go one by one).
    fn batch(&self, _requests: &[HttpRequest]) -> Option<HttpRequest> {
        None
    }

    /// The answer to a [`Connector::batch`] request as one answer per request, in order.
    fn split_batch(&self, response: &HttpResponse, count: usize) -> Vec<HttpResponse> {
        vec![response.clone(); count]
    }
}

/// Retry delay after `attempt` failures: "full jitter" exponential backoff, a uniform pick in
/// `[0, min(cap, base * 2^(attempt-1))]`, so that many rows failing together (CRM down) do not
/// come back together. `unit` is a random number in `[0, 1)` supplied by the caller.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let ceiling = base.saturating_mul(1 << exponent).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Classifies a non-2xx status the way every HTTP connector does.
pub(crate) fn classify_status(status: u16, retry_after: Option<u64>, body: &str) -> DeliveryError {
    let reason = format!("HTTP {status}: {}", clip(body));
    match status {
        408 | 425 | 429 | 500..=599 => DeliveryError::Retriable {
            reason,
            retry_after: retry_after.map(Duration::from_secs),
        },
        _ => DeliveryError::Permanent { reason },
    }
}

/// Locks a connector's or planner's state. Each holder changes the state in whole steps that
/// cannot panic halfway, so a lock poisoned by a panic elsewhere still guards whole state.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bodies go into error messages (and the outbox's `last_error`): keep them short.
pub(crate) fn clip(body: &str) -> &str {
    const MAX: usize = 200;
    match body.char_indices().nth(MAX) {
        Some((at, _)) => &body[..at],
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_below_it() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        let ceilings: Vec<_> = (1..=8)
            .map(|attempt| backoff(attempt, base, cap, 0.999_999).as_secs())
            .collect();
        expect![[r#"[0, 1, 3, 7, 15, 31, 59, 59]"#]].assert_eq(&format!("{ceilings:?}"));
        assert_eq!(backoff(5, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(u32::MAX, base, cap, 0.5), Duration::from_secs(30));
    }

    #[test]
    fn statuses_split_into_retriable_and_permanent() {
        let verdicts: Vec<_> = [400, 401, 404, 408, 422, 429, 500, 502, 503]
            .into_iter()
            .map(|status| match classify_status(status, Some(3), "x") {
                DeliveryError::Retriable { retry_after, .. } => {
                    format!("{status}:R{retry_after:?}")
                }
                DeliveryError::Permanent { .. } => format!("{status}:P"),
            })
            .collect();
        expect![[r#"["400:P", "401:P", "404:P", "408:RSome(3s)", "422:P", "429:RSome(3s)", "500:RSome(3s)", "502:RSome(3s)", "503:RSome(3s)"]"#]]
            .assert_eq(&format!("{verdicts:?}"));
    }
}
