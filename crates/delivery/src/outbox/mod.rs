//! CRM delivery: `[[crm]]` config, the planner that turns a finished call into outbox rows
//! (written with the call, in its transaction), and the workers that deliver them.

pub mod bitrix24;
mod lane;
pub mod metrics;
mod worker;

pub use crm::RecordingReady;
pub use worker::{send, spawn_workers, WorkerConfig};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use calls::{CallEvent, CallRecord};
use crm::amocrm::{self, AmoCrm};
use crm::webhook::{SigningSecret, Webhook};
use crm::{Connector, RecordingHandOver, Step};
use serde::Deserialize;
use store::NewOutboxRow;

/// `[outbox]`: how the delivery workers pace themselves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// Seconds a worker holds the rows it claimed. Rows of a worker that died (crash, SIGKILL,
    /// power loss) wait this long before another worker, or the restarted process, takes them
    /// over; it must cover a claimed batch's wait for the CRM's rate limit.
    #[serde(default = "default_lease")]
    pub lease: f64,
    /// Rows a worker claims at a time.
    #[serde(default = "default_batch")]
    pub batch: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            lease: default_lease(),
            batch: default_batch(),
        }
    }
}

fn default_lease() -> f64 {
    300.0
}

fn default_batch() -> u32 {
    200
}

/// One `[[crm]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CrmConfig {
    /// A Bitrix24 portal through an incoming webhook.
    Bitrix24(Bitrix24Config),
    /// Signed JSON events POSTed to a URL (1C HTTP services, custom CRMs).
    Webhook(WebhookConfig),
    /// An amoCRM / Kommo account, with a long-lived token.
    AmoCrm(AmoCrmConfig),
}

/// `kind = "bitrix24"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bitrix24Config {
    /// Connector name (outbox rows and `pbxlink crm test NAME` use it).
    pub name: String,
    /// Incoming-webhook URL, `https://portal.bitrix24.ru/rest/<user>/<code>`; it is a secret.
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook URL instead.
    pub webhook_url_env: Option<String>,
    /// The portal's UTC offset, for `CALL_START_DATE` (`+03:00`).
    #[serde(default = "utc")]
    pub utc_offset: String,
    /// Create leads for unknown numbers.
    #[serde(default)]
    pub create_leads: bool,
    /// Extension calls are registered to when no phone rang.
    pub default_extension: Option<String>,
    /// Recordings are served under this URL; unset: no `attachRecord`.
    pub record_url_base: Option<String>,
    /// Extension -> Bitrix24 user id, used until (and besides) `user.get` answers.
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, u64>,
    /// Requests per second (Bitrix24 allows 2 per portal; `batch` packs up to 50 steps in one).
    #[serde(default = "bitrix24_rate")]
    pub rate_per_second: f64,
    /// A local application's OAuth settings, instead of `webhook_url`.
    pub oauth: Option<bitrix24::OAuthSection>,
    /// When users get the call card: `ring` (default), `answer` or `never`.
    #[serde(default = "card_on_ring")]
    pub card: String,
    /// Card mode per extension, `{ "203" = "answer" }`.
    #[serde(default)]
    pub cards: std::collections::BTreeMap<String, String>,
    /// `auth[application_token]` Bitrix24 sends with the application's events
    /// (`ONEXTERNALCALLSTART`); unset: events are refused.
    pub application_token: Option<String>,
    /// Environment variable holding it instead.
    pub application_token_env: Option<String>,
    /// PBX that places Bitrix24's click-to-calls; needed with several PBXes.
    pub pbx: Option<String>,
    /// Seconds between `event.offline.get` polls (a PBX Bitrix24 cannot reach); unset: none.
    pub offline_events_poll: Option<f64>,
}

fn card_on_ring() -> String {
    "ring".into()
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Connector name.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Signing secrets (`whsec_...`); several during a rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Environment variable holding space-separated secrets instead.
    pub secrets_env: Option<String>,
    /// Event types to send; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Requests per second; unset: no limit.
    pub rate_per_second: Option<f64>,
    /// Where the FastAGI `route`/`callerid` scripts ask who is calling (`[agi] lookup`),
    /// signed with the same secrets; unset: this connector does no lookups.
    pub lookup_url: Option<String>,
}

/// `kind = "amocrm"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmoCrmConfig {
    /// Connector name.
    pub name: String,
    /// The account's address: `https://example.amocrm.ru` (`.amocrm.com`, `.kommo.com`).
    pub url: String,
    /// Long-lived token (a private integration's "Keys and scopes"); it is a secret.
    pub token: Option<String>,
    /// Environment variable holding the token instead.
    pub token_env: Option<String>,
    /// Extension -> amoCRM user id: who is responsible for a call, whose popup shows it.
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, u64>,
    /// Extension whose user gets calls where no phone rang (IVR hang-ups).
    pub default_extension: Option<String>,
    /// Recordings are served under this URL (the call's `link`); unset: no link.
    pub record_url_base: Option<String>,
    /// Inbound calls from numbers no card has become unsorted leads ("Incoming leads").
    #[serde(default)]
    pub unsorted: bool,
    /// Pipeline of those leads; unset: the account's main one.
    pub pipeline_id: Option<u64>,
    /// Incoming-call notifications for the users whose phones ring.
    #[serde(default = "yes")]
    pub notify: bool,
    /// The calls' `source`, as amoCRM shows it.
    #[serde(default = "pbxlink_source")]
    pub source: String,
    /// Requests per second (amoCRM allows 7 per integration).
    #[serde(default = "amocrm_rate")]
    pub rate_per_second: f64,
}

fn yes() -> bool {
    true
}

fn pbxlink_source() -> String {
    "pbxlink".into()
}

fn amocrm_rate() -> f64 {
    7.0
}

impl CrmConfig {
    /// The connector's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Bitrix24(c) => &c.name,
            Self::Webhook(c) => &c.name,
            Self::AmoCrm(c) => &c.name,
        }
    }
}

fn utc() -> String {
    "+00:00".into()
}

fn bitrix24_rate() -> f64 {
    2.0
}

/// A configured connector: how to plan a call's rows, and how to deliver them.
#[derive(Debug, Clone)]
pub struct Crm {
    /// Connector name, as in outbox rows.
    pub name: String,
    planner: Planner,
    /// Delivers the rows.
    pub connector: Arc<dyn Connector>,
    /// Smallest gap between two requests (the rate limit).
    pub min_gap: Duration,
    /// The recordings worker hands this connector the call's recording later
    /// ([`plan_recording`]), so the call's own plan leaves it out.
    pub recordings_follow: bool,
    /// Answers "who is calling" for FastAGI routing, when the connector can.
    pub lookup: Option<Arc<dyn crm::HttpLookup>>,
    /// Wakes this process's delivery workers when rows are queued ([`rows_queued`]): they
    /// claim at once instead of at their next poll.
    pub queued: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Clone)]
enum Planner {
    Bitrix24(Arc<bitrix24::Portal>),
    /// The endpoint plans its own events.
    Webhook(Arc<Webhook>),
    AmoCrm(Arc<Amo>),
}

/// An amoCRM account: the connector (`pbxlink crm test` asks it too) and its planner.
#[derive(Debug)]
struct Amo {
    account: Arc<AmoCrm>,
    planner: std::sync::Mutex<amocrm::Planner>,
}

impl Crm {
    /// Builds a connector from its config, reading secrets from the environment if asked.
    pub fn from_config(config: &CrmConfig) -> anyhow::Result<Self> {
        let gap = |rate: Option<f64>| match rate {
            Some(rate) if rate > 0.0 => Duration::from_secs_f64(1.0 / rate),
            _ => Duration::ZERO,
        };
        match config {
            CrmConfig::Bitrix24(c) => {
                let b24 = Arc::new(bitrix24::build(c)?);
                Ok(Self {
                    name: c.name.clone(),
                    connector: b24.portal.clone(),
                    lookup: Some(b24.portal.clone()),
                    planner: Planner::Bitrix24(b24),
                    min_gap: gap(Some(c.rate_per_second)),
                    recordings_follow: false,
                    queued: Arc::default(),
                })
            }
            CrmConfig::Webhook(c) => {
                let mut secrets = c.secrets.clone();
                if let Some(var) = &c.secrets_env {
                    let value = std::env::var(var)
                        .with_context(|| format!("crm {}: ${var} is not set", c.name))?;
                    secrets.extend(value.split_whitespace().map(str::to_owned));
                }
                let secrets = secrets
                    .iter()
                    .map(|s| SigningSecret::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("crm {}", c.name))?;
                let lookup = c.lookup_url.as_ref().map(|url| {
                    Arc::new(crm::WebhookLookup::new(url.clone(), secrets.clone()))
                        as Arc<dyn crm::HttpLookup>
                });
                let webhook = Arc::new(
                    Webhook::new(c.url.clone(), secrets, &c.events)
                        .with_context(|| format!("crm {}", c.name))?,
                );
                Ok(Self {
                    name: c.name.clone(),
                    planner: Planner::Webhook(webhook.clone()),
                    connector: webhook,
                    min_gap: gap(c.rate_per_second),
                    recordings_follow: false,
                    queued: Arc::default(),
                    lookup,
                })
            }
            CrmConfig::AmoCrm(c) => {
                let name = &c.name;
                let url = url::Url::parse(&c.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .with_context(|| {
                        format!("crm {name}: url {:?} is not the account's address, e.g. https://example.amocrm.ru", c.url)
                    })?;
                let token = secret(name, "token", c.token.as_ref(), c.token_env.as_ref())?;
                anyhow::ensure!(!token.trim().is_empty(), "crm {name}: the token is empty");
                let account = Arc::new(AmoCrm::new(url.as_str(), token.trim()));
                let planner = amocrm::Planner::new(amocrm::PlanConfig {
                    source: c.source.clone(),
                    users: c.users.clone(),
                    default_extension: c.default_extension.clone(),
                    record_url_base: c.record_url_base.clone(),
                    unsorted: c.unsorted,
                    pipeline_id: c.pipeline_id,
                    notify: c.notify,
                });
                Ok(Self {
                    name: name.clone(),
                    connector: account.clone(),
                    planner: Planner::AmoCrm(Arc::new(Amo {
                        account,
                        planner: std::sync::Mutex::new(planner),
                    })),
                    min_gap: gap(Some(c.rate_per_second)),
                    recordings_follow: false,
                    queued: Arc::default(),
                    lookup: None,
                })
            }
        }
    }

    /// Checks connectivity and credentials with one harmless request: Bitrix24 `user.get`
    /// (which also refreshes the user map), a signed `pbxlink.test` event for a webhook,
    /// amoCRM `GET /api/v4/account`. Returns what the CRM said, in a line.
    pub async fn test(&self, http: &reqwest::Client) -> Result<String, crm::DeliveryError> {
        match &self.planner {
            Planner::Bitrix24(b24) => {
                bitrix24::reload_users(self, http, &b24.portal, &b24.users).await
            }
            Planner::Webhook(webhook) => {
                let probe = crm::OutboxItem {
                    call_id: String::new(),
                    kind: "pbxlink.test".into(),
                    payload: serde_json::json!({}),
                    idempotency_key: format!("pbxlink.test:{}", chrono::Utc::now().timestamp()),
                };
                let request = webhook.next_request(&probe, chrono::Utc::now())?;
                let response = worker::send(http, &request, &probe.idempotency_key).await?;
                webhook.on_response(&probe, &response)?;
                Ok(format!(
                    "{} accepted a signed test event (HTTP {})",
                    request.url, response.status
                ))
            }
            Planner::AmoCrm(amo) => {
                let request = amo.account.account_request();
                let response = worker::send(http, &request, "").await?;
                amocrm::account_answer(&response)
            }
        }
    }

    /// The outbox rows for a finished call, in delivery order. The idempotency key
    /// `{connector}:{pbx}:{call}:{step}` makes a re-saved call queue nothing twice.
    pub fn plan(&self, pbx: &str, record: &CallRecord) -> Vec<NewOutboxRow> {
        let call = format!("{pbx}/{}", record.id);
        let hand_over = if self.recordings_follow {
            RecordingHandOver::Later
        } else {
            RecordingHandOver::WithCall
        };
        let steps = match &self.planner {
            Planner::Bitrix24(b24) => {
                let users = b24.portal.users();
                lock(&b24.planner).on_record(&call, record, &users, hand_over)
            }
            Planner::Webhook(webhook) => webhook.plan(pbx, record, hand_over),
            Planner::AmoCrm(amo) => lock(&amo.planner).on_record(&call, record),
        };
        self.rows(pbx, &record.id, steps)
    }

    /// The outbox rows a live call event gives, queued as the event happens (in order with
    /// the call's record): Bitrix24 register at start and cards as phones ring and on answer,
    /// webhook `call.started`/`ringing`/`answered`/`transferred`, amoCRM notifications.
    pub fn plan_event(&self, pbx: &str, event: &CallEvent) -> Vec<NewOutboxRow> {
        let call = format!("{pbx}/{}", event.call_id);
        let steps = match &self.planner {
            Planner::Bitrix24(b24) => {
                let users = b24.portal.users();
                lock(&b24.planner).on_event(&call, event, &users)
            }
            Planner::Webhook(webhook) => webhook.plan_event(pbx, event).into_iter().collect(),
            Planner::AmoCrm(amo) => lock(&amo.planner)
                .on_event(&call, event)
                .into_iter()
                .collect(),
        };
        self.rows(pbx, &event.call_id, steps)
    }

    /// The Bitrix24 parts, when this connector is a Bitrix24 portal.
    pub fn bitrix24(&self) -> Option<&bitrix24::Portal> {
        match &self.planner {
            Planner::Bitrix24(b24) => Some(b24),
            Planner::Webhook(_) | Planner::AmoCrm(_) => None,
        }
    }

    /// Sends one request to this CRM (a Bitrix24 portal keeps the tokens it renewed).
    pub(crate) async fn exchange(
        &self,
        http: &reqwest::Client,
        request: &crm::HttpRequest,
        idempotency_key: &str,
    ) -> Result<crm::HttpResponse, crm::DeliveryError> {
        let response = worker::send(http, request, idempotency_key).await;
        if let Some(b24) = self.bitrix24() {
            b24.link.keep_tokens(&self.name, &b24.portal);
        }
        response
    }

    fn rows(&self, pbx: &str, call_id: &str, steps: Vec<Step>) -> Vec<NewOutboxRow> {
        steps
            .into_iter()
            .map(|step| NewOutboxRow {
                idempotency_key: format!("{}:{pbx}:{call_id}:{}", self.name, step.key),
                connector: self.name.clone(),
                kind: step.kind,
                payload: step.payload,
            })
            .collect()
    }
}

/// The hand-over from the recordings worker, queued with the recording's row: what each
/// connector's planner gives for a recording converted after its call (Bitrix24's last step,
/// the webhook's `recording.ready` with the link; amoCRM nothing).
pub fn plan_recording(
    crms: &[Crm],
    pbx: &str,
    record: &CallRecord,
    ready: &RecordingReady<'_>,
) -> Vec<NewOutboxRow> {
    crms.iter()
        .filter(|crm| crm.recordings_follow)
        .flat_map(|crm| {
            let step = match &crm.planner {
                Planner::Bitrix24(b24) => lock(&b24.planner).on_recording(record, ready),
                Planner::Webhook(webhook) => webhook.plan_recording(pbx, record, ready),
                Planner::AmoCrm(_) => None,
            };
            crm.rows(pbx, &record.id, step.into_iter().collect())
        })
        .collect()
}

/// Builds the configured connectors and starts their delivery workers (none configured:
/// nothing starts). The worker's lease owner is unique per process, so several pbxlink
/// instances can share one database.
///
/// With `recordings_follow` (a `[recordings]` worker runs), calls are planned without their
/// recording, which [`plan_recording`] queues once it is converted.
pub fn start(
    configs: &[CrmConfig],
    settings: &OutboxSettings,
    store: &store::Store,
    recordings_follow: bool,
    shutdown: &crate::shutdown::Shutdown,
) -> anyhow::Result<Arc<[Crm]>> {
    let mut crms = configs
        .iter()
        .map(Crm::from_config)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let queued = Arc::new(tokio::sync::Notify::new());
    for crm in &mut crms {
        crm.recordings_follow = recordings_follow;
        crm.queued = queued.clone();
    }
    for crm in &crms {
        if crm.bitrix24().is_some() {
            tokio::spawn(refresh_users(crm.clone()));
        }
    }
    if !crms.is_empty() {
        let owner = format!(
            "pbxlink-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let config = WorkerConfig {
            shutdown: shutdown.clone(),
            wake: queued,
            ..WorkerConfig::new(owner).with_settings(settings)?
        };
        spawn_workers(store.clone(), crms.clone(), config)?;
    }
    Ok(crms.into())
}

/// Tells the delivery workers that rows were just committed to the outbox.
pub fn rows_queued(crms: &[Crm]) {
    // One Notify is shared by all connectors; a stored permit wakes the worker's next wait.
    if let Some(crm) = crms.first() {
        crm.queued.notify_one();
    }
}

/// Every configured connector's rows for a call.
pub fn plan_all(crms: &[Crm], pbx: &str, record: &CallRecord) -> Vec<NewOutboxRow> {
    crms.iter().flat_map(|crm| crm.plan(pbx, record)).collect()
}

/// Every configured connector's rows for a live call event.
pub fn plan_event_all(crms: &[Crm], pbx: &str, event: &CallEvent) -> Vec<NewOutboxRow> {
    crms.iter()
        .flat_map(|crm| crm.plan_event(pbx, event))
        .collect()
}

/// Reloads a Bitrix24 user map every 10 minutes; a failed reload keeps the map it had.
async fn refresh_users(crm: Crm) {
    let http = reqwest::Client::new();
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match crm.test(&http).await {
            Ok(outcome) => tracing::info!(crm = crm.name, outcome, "Bitrix24 users reloaded"),
            Err(error) => {
                tracing::warn!(crm = crm.name, %error, "Bitrix24 users not reloaded; keeping the old map")
            }
        }
    }
}

/// Locks a planner. Its maps stay whole at every step, so a lock poisoned by a panic
/// elsewhere is still usable.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A secret of `[[crm]]` `name`, from its `key` or the variable `{key}_env` names.
fn secret(
    name: &str,
    key: &str,
    value: Option<&String>,
    env: Option<&String>,
) -> anyhow::Result<String> {
    match (value, env) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(var)) => {
            std::env::var(var).with_context(|| format!("crm {name}: ${var} is not set"))
        }
        (None, None) => anyhow::bail!("crm {name}: set {key} or {key}_env"),
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod fake_amocrm;
#[cfg(any(test, feature = "testing"))]
pub mod fake_bitrix24;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
