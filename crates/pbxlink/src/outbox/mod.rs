//! CRM delivery: `[[crm]]` config, the planner that turns a finished call into outbox rows
//! (written with the call, in its transaction), and the workers that deliver them.

pub mod cli;
mod worker;

pub(crate) use worker::send;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use calls::CallRecord;
use crm::bitrix24::{self, Bitrix24, PlanConfig, UserMap};
use crm::webhook::{SigningSecret, Webhook};
use crm::Connector;
use serde::Deserialize;
use serde_json::Value;
use store::NewOutboxRow;

use worker::{spawn_workers, WorkerConfig};

/// One `[[crm]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CrmConfig {
    /// A Bitrix24 portal through an incoming webhook.
    Bitrix24(Bitrix24Config),
    /// Signed JSON events POSTed to a URL (1C HTTP services, custom CRMs).
    Webhook(WebhookConfig),
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
    /// Requests per second (Bitrix24 allows 2 per portal).
    #[serde(default = "bitrix24_rate")]
    pub rate_per_second: f64,
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

impl CrmConfig {
    /// The connector's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Bitrix24(c) => &c.name,
            Self::Webhook(c) => &c.name,
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
    /// Answers "who is calling" for FastAGI routing, when the connector can.
    pub lookup: Option<Arc<dyn crm::HttpLookup>>,
    /// The recordings worker hands this connector the call's recording later
    /// ([`plan_recording`]), so the call's own plan leaves it out.
    pub recordings_follow: bool,
}

#[derive(Debug, Clone)]
enum Planner {
    Bitrix24 {
        plan: PlanConfig,
        portal: Arc<Bitrix24>,
        /// The configured users; `user.get` adds to them, never removes them.
        users: UserMap,
    },
    Webhook(Arc<Webhook>),
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
                let url = secret(&c.name, c.webhook_url.as_ref(), c.webhook_url_env.as_ref())?;
                let utc_offset =
                    c.utc_offset
                        .parse::<chrono::FixedOffset>()
                        .with_context(|| {
                            format!("crm {}: bad utc_offset {:?}", c.name, c.utc_offset)
                        })?;
                let portal = Arc::new(Bitrix24::new(url));
                let users = UserMap::from_pairs(c.users.clone());
                portal.set_users(users.clone());
                Ok(Self {
                    name: c.name.clone(),
                    planner: Planner::Bitrix24 {
                        plan: PlanConfig {
                            utc_offset,
                            create_leads: c.create_leads,
                            default_extension: c.default_extension.clone(),
                            record_url_base: c.record_url_base.clone(),
                        },
                        portal: portal.clone(),
                        users,
                    },
                    connector: portal,
                    min_gap: gap(Some(c.rate_per_second)),
                    lookup: None,
                    recordings_follow: false,
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
                    lookup,
                    recordings_follow: false,
                })
            }
        }
    }

    /// Checks connectivity and credentials with one harmless request: Bitrix24 `user.get`
    /// (which also refreshes the user map), a signed `pbxlink.test` event for a webhook.
    /// Returns what the CRM said, in a line.
    pub async fn test(&self, http: &reqwest::Client) -> Result<String, crm::DeliveryError> {
        match &self.planner {
            Planner::Bitrix24 {
                portal,
                users: configured,
                ..
            } => {
                let response = worker::send(http, &portal.users_request(), "user.get").await?;
                let mut users = configured.clone();
                users.extend(UserMap::from_user_get(&bitrix24::check(&response)?)?);
                let found = users.len();
                portal.set_users(users);
                Ok(format!(
                    "user.get answered; {found} users have an inner phone"
                ))
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
        }
    }

    /// The outbox rows for a finished call, in delivery order. The idempotency key
    /// `{connector}:{pbx}:{call}:{step}` makes a re-saved call queue nothing twice.
    pub fn plan(&self, pbx: &str, record: &CallRecord) -> Vec<NewOutboxRow> {
        let steps = match &self.planner {
            Planner::Bitrix24 { plan, .. } => bitrix24::plan(record, plan),
            Planner::Webhook(webhook) => webhook.plan(record, &[]),
        };
        let steps = self.leave_recording_out(record, steps);
        self.rows(pbx, &record.id, steps)
    }

    /// With a recordings worker, the call's recording steps wait for the MP3 and its link
    /// ([`plan_recording`]): no `attachRecord`/`RECORD_URL`/`recording.ready` at call end, and
    /// Bitrix24's `finish` is not the last step (the connector keeps the `CALL_ID` that the
    /// later `attachRecord` needs). Unanswered calls leave header-only files: nothing follows.
    fn leave_recording_out(
        &self,
        record: &CallRecord,
        mut steps: Vec<(String, Value)>,
    ) -> Vec<(String, Value)> {
        if !self.recordings_follow || record.recording.is_none() {
            return steps;
        }
        steps.retain(|(kind, _)| kind != "attachRecord" && kind != RECORDING_READY);
        for (kind, payload) in &mut steps {
            if let Some(payload) = payload.as_object_mut() {
                if kind == "finish" {
                    payload.remove("RECORD_URL");
                }
                if record.answered_at.is_some() {
                    payload.remove("last");
                }
            }
        }
        steps
    }

    fn rows(&self, pbx: &str, call_id: &str, steps: Vec<(String, Value)>) -> Vec<NewOutboxRow> {
        steps
            .into_iter()
            .map(|(kind, payload)| NewOutboxRow {
                idempotency_key: format!("{}:{pbx}:{call_id}:{kind}", self.name),
                connector: self.name.clone(),
                kind,
                payload,
            })
            .collect()
    }
}

const RECORDING_READY: &str = "recording.ready";

/// A converted recording, as the connectors get it.
#[derive(Debug, Clone, Copy)]
pub struct RecordingReady<'a> {
    /// Signed download link.
    pub url: &'a str,
    /// When the link stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Hex SHA-256 of the MP3.
    pub sha256: &'a str,
    /// MP3 size.
    pub bytes: u64,
    /// Audio length.
    pub duration_ms: u64,
}

/// The hand-over from the recordings worker: Bitrix24 `attachRecord` (the call's last step,
/// see [`Crm::plan`]) and webhook `recording.ready`, queued with the recording's row.
pub fn plan_recording(
    crms: &[Crm],
    pbx: &str,
    record: &CallRecord,
    ready: &RecordingReady<'_>,
) -> Vec<NewOutboxRow> {
    let stem = record
        .recording
        .as_deref()
        .and_then(|f| std::path::Path::new(f).file_stem())
        .map_or_else(|| record.id.clone(), |s| s.to_string_lossy().into_owned());
    crms.iter()
        .filter(|crm| crm.recordings_follow)
        .flat_map(|crm| {
            let step = match &crm.planner {
                Planner::Bitrix24 { plan, .. } => {
                    // Every Bitrix24 step carries the call's `register` (CALL_ID recovery).
                    let register = bitrix24::plan(record, plan)
                        .first()
                        .map(|(_, p)| p["register"].clone());
                    register.map(|register| {
                        let payload = serde_json::json!({
                            "register": register,
                            "FILENAME": format!("{stem}.mp3"),
                            "RECORD_URL": ready.url,
                            "last": true,
                        });
                        ("attachRecord".to_owned(), payload)
                    })
                }
                Planner::Webhook(webhook) if webhook.wants(RECORDING_READY) => {
                    let payload = serde_json::json!({
                        "call_id": record.id,
                        "pbx": pbx,
                        "url": ready.url,
                        "expires_at": ready.expires_at,
                        "sha256": ready.sha256,
                        "bytes": ready.bytes,
                        "duration_ms": ready.duration_ms,
                        "source": record.recording,
                    });
                    Some((RECORDING_READY.to_owned(), payload))
                }
                Planner::Webhook(_) => None,
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
    store: &store::Store,
    recordings_follow: bool,
) -> anyhow::Result<Arc<[Crm]>> {
    let mut crms = configs
        .iter()
        .map(Crm::from_config)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for crm in &mut crms {
        crm.recordings_follow = recordings_follow;
    }
    for crm in &crms {
        if let Planner::Bitrix24 { .. } = crm.planner {
            tokio::spawn(refresh_users(crm.clone()));
        }
    }
    if !crms.is_empty() {
        let owner = format!(
            "pbxlink-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        spawn_workers(store.clone(), crms.clone(), WorkerConfig::new(owner))?;
    }
    Ok(crms.into())
}

/// Every configured connector's rows for a call.
pub fn plan_all(crms: &[Crm], pbx: &str, record: &CallRecord) -> Vec<NewOutboxRow> {
    crms.iter().flat_map(|crm| crm.plan(pbx, record)).collect()
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

fn secret(name: &str, value: Option<&String>, env: Option<&String>) -> anyhow::Result<String> {
    match (value, env) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(var)) => {
            std::env::var(var).with_context(|| format!("crm {name}: ${var} is not set"))
        }
        (None, None) => anyhow::bail!("crm {name}: set webhook_url or webhook_url_env"),
    }
}

#[cfg(test)]
mod tests;
