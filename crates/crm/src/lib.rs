//! CRM connectors (Bitrix24, signed webhooks, amoCRM) behind one trait, with retriable vs permanent failures.

use std::future::Future;

pub mod amocrm;
pub mod bitrix24;
pub mod delivery;
pub mod lookup;
pub mod webhook;

pub use delivery::{
    backoff, Connector, DeliveryError, HttpRequest, HttpResponse, OutboxItem, Progress,
    RecordingHandOver, RecordingReady, Step,
};
pub use lookup::{HttpLookup, WebhookLookup};

/// What a CRM knows about a caller, for routing and caller-name display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerInfo {
    /// Display name (contact or company); `None` when the CRM has none.
    pub name: Option<String>,
    /// The CRM's id of the contact/lead/company, for later lookups and links.
    pub crm_id: Option<String>,
    /// The PBX extension of the manager responsible for this client, if the CRM has one.
    pub responsible_extension: Option<String>,
}

/// Why a CRM request failed, split the way delivery decisions need it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmError {
    /// Worth retrying later: network trouble, timeouts, 5xx, rate limits.
    #[error("CRM temporarily failed: {0}")]
    Retriable(String),
    /// Will fail the same way again: bad credentials, 4xx, an answer that makes no sense.
    #[error("CRM refused: {0}")]
    Permanent(String),
}

/// The lookup side of a CRM connector: who is calling, and who should take the call.
///
/// Runtime-free on purpose (no tokio, no HTTP client here): connectors implement it with
/// whatever I/O they need; callers put their own time budget around the future.
pub trait CallerLookup: Send + Sync {
    /// Looks up a caller by phone number as the PBX presents it (`15551234567`,
    /// `+7 495 ...`); an unknown caller is `Ok` with all fields `None`.
    fn lookup_caller(
        &self,
        number: &str,
    ) -> impl Future<Output = Result<CallerInfo, CrmError>> + Send;
}
