//! The built-in FastAGI scripts: `route` and `callerid` ask the CRM (through
//! [`crm::CallerLookup`]) within a time budget, with a cache and a fallback; `webhook` POSTs
//! the AGI environment to a URL and turns the JSON answer into dialplan variables; static
//! routes set fixed variables.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm::{CallerInfo, CallerLookup, CrmError};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;

use super::{Agi, AgiError, Handler};

/// Longest value pbxlink puts into a dialplan variable; CRM text beyond it is cut.
const MAX_VALUE_CHARS: usize = 256;
/// Most variables one webhook answer may set.
const MAX_WEBHOOK_VARIABLES: usize = 32;
/// A lookup that outlives its budget keeps running this long to fill the cache.
const LATE_LOOKUP_LIMIT: Duration = Duration::from_secs(10);
/// Callers remembered; when full, expired entries go first, then everything.
const CACHE_CAPACITY: usize = 10_000;

/// Where an answer came from, as the dialplan sees it in `PBXLINK_*_STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The CRM answered within the budget.
    Ok,
    /// A recent CRM answer was reused.
    Cache,
    /// Nothing to ask or nothing known (no caller ID, unknown caller, no manager, no CRM).
    Fallback,
    /// The CRM did not answer within the budget.
    Timeout,
    /// The CRM failed or answered nonsense.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Cache => "cache",
            Status::Fallback => "fallback",
            Status::Timeout => "timeout",
            Status::Error => "error",
        }
    }
}

/// A `[[crm]]` connector's caller lookup ([`crm::HttpLookup`], sans-IO) sent with pbxlink's
/// HTTP client: what `route` and `callerid` ask (`[agi] lookup = "<crm name>"`).
#[derive(Debug, Clone)]
pub struct CrmLookup {
    pub http: reqwest::Client,
    pub connector: Arc<dyn crm::HttpLookup>,
}

impl CallerLookup for CrmLookup {
    async fn lookup_caller(&self, number: &str) -> Result<CallerInfo, CrmError> {
        let request = self.connector.lookup_request(number, chrono::Utc::now())?;
        // The same question may be asked again (after a timeout): one key per number.
        let response =
            delivery::outbox::send(&self.http, &request, &format!("lookup:{number}")).await?;
        self.connector.lookup_answer(&response)
    }
}

/// `true` for what Asterisk can dial as an extension: digits, letters and `*#+_-./@`,
/// 1 to 80 characters. Anything else from a CRM is garbage, not a target.
pub fn is_dialable(target: &str) -> bool {
    (1..=80).contains(&target.len())
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*#+_-./@".contains(&b))
}

/// CRM text made safe for a dialplan variable: control characters (line breaks would end
/// the AGI command) become spaces, and it is cut at [`MAX_VALUE_CHARS`].
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_VALUE_CHARS)
        .collect()
}

/// Recent CRM answers by caller number.
#[derive(Debug)]
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, CallerInfo)>>,
}

impl Cache {
    fn get(&self, number: &str) -> Option<CallerInfo> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (stored, info) = entries.get(number)?;
        (stored.elapsed() < self.ttl).then(|| info.clone())
    }

    fn insert(&self, number: &str, info: CallerInfo) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.retain(|_, (stored, _)| stored.elapsed() < self.ttl);
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(number.to_owned(), (Instant::now(), info));
    }
}

/// A CRM lookup within a budget, through a cache, shared by `route` and `callerid`.
#[derive(Debug)]
pub struct Lookup<L> {
    crm: Option<Arc<L>>,
    budget: Duration,
    cache: Arc<Cache>,
}

impl<L> Clone for Lookup<L> {
    fn clone(&self) -> Self {
        Lookup {
            crm: self.crm.clone(),
            budget: self.budget,
            cache: self.cache.clone(),
        }
    }
}

impl<L: CallerLookup + 'static> Lookup<L> {
    pub fn new(crm: Option<Arc<L>>, budget: Duration, cache_ttl: Duration) -> Self {
        Lookup {
            crm,
            budget,
            cache: Arc::new(Cache {
                ttl: cache_ttl,
                entries: Mutex::default(),
            }),
        }
    }

    /// What the CRM knows about `number`, and where that came from. Never takes longer than
    /// the budget: a slower CRM answer only lands in the cache, for the next call.
    pub async fn find(&self, number: Option<&str>) -> (Status, CallerInfo) {
        let (Some(crm), Some(number)) = (&self.crm, number) else {
            return (Status::Fallback, CallerInfo::default());
        };
        if let Some(info) = self.cache.get(number) {
            return (Status::Cache, info);
        }
        let (crm, cache, owned) = (crm.clone(), self.cache.clone(), number.to_owned());
        let lookup = tokio::spawn(async move {
            let answer = tokio::time::timeout(LATE_LOOKUP_LIMIT, crm.lookup_caller(&owned))
                .await
                .unwrap_or_else(|_| Err(CrmError::Retriable("no answer".into())))
                .and_then(checked);
            if let Ok(info) = &answer {
                cache.insert(&owned, info.clone());
            }
            answer
        });
        match tokio::time::timeout(self.budget, lookup).await {
            Ok(Ok(Ok(info))) => (Status::Ok, info),
            Ok(Ok(Err(e))) => {
                tracing::warn!(number, "CRM lookup failed: {e}");
                (Status::Error, CallerInfo::default())
            }
            Ok(Err(panicked)) => {
                tracing::error!(number, "CRM lookup task failed: {panicked}");
                (Status::Error, CallerInfo::default())
            }
            Err(_) => {
                tracing::warn!(number, budget = ?self.budget, "CRM lookup over budget");
                (Status::Timeout, CallerInfo::default())
            }
        }
    }
}

/// A CRM answer fit for the dialplan, or why it is not: a responsible extension that cannot
/// be dialled is garbage, and so the whole answer is distrusted.
fn checked(info: CallerInfo) -> Result<CallerInfo, CrmError> {
    if let Some(ext) = &info.responsible_extension {
        if !is_dialable(ext) {
            return Err(CrmError::Permanent(format!(
                "responsible extension {:?} is not dialable",
                sanitize(ext)
            )));
        }
    }
    Ok(CallerInfo {
        name: info.name.as_deref().map(sanitize),
        crm_id: info.crm_id.as_deref().map(sanitize),
        responsible_extension: info.responsible_extension,
    })
}

/// `route`: who should take this call. Sets `PBXLINK_TARGET` (the responsible manager's
/// extension, or the fallback), `PBXLINK_CALLER_NAME` and `PBXLINK_CRM_ID` when the CRM knows
/// them, and `PBXLINK_ROUTE_STATUS`.
#[derive(Debug)]
pub struct Route<L> {
    pub lookup: Lookup<L>,
    pub fallback_target: String,
}

impl<L: CallerLookup + 'static> Handler for Route<L> {
    fn handle<'a>(&'a self, agi: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>> {
        async move {
            let (mut status, info) = self.lookup.find(agi.env().caller_id()).await;
            let target = match info.responsible_extension {
                Some(ext) => ext,
                None => {
                    if matches!(status, Status::Ok | Status::Cache) {
                        status = Status::Fallback;
                    }
                    self.fallback_target.clone()
                }
            };
            agi.set_variable("PBXLINK_TARGET", &target).await?;
            if let Some(name) = &info.name {
                agi.set_variable("PBXLINK_CALLER_NAME", name).await?;
            }
            if let Some(id) = &info.crm_id {
                agi.set_variable("PBXLINK_CRM_ID", id).await?;
            }
            agi.set_variable("PBXLINK_ROUTE_STATUS", status.as_str())
                .await
        }
        .boxed()
    }
}

/// `callerid`: the caller's name from the CRM (CNAM). Sets `CALLERID(name)` and
/// `PBXLINK_CRM_ID` when the CRM knows the caller, and `PBXLINK_CALLERID_STATUS`.
#[derive(Debug)]
pub struct CallerId<L> {
    pub lookup: Lookup<L>,
}

impl<L: CallerLookup + 'static> Handler for CallerId<L> {
    fn handle<'a>(&'a self, agi: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>> {
        async move {
            let (mut status, info) = self.lookup.find(agi.env().caller_id()).await;
            match &info.name {
                Some(name) => agi.set_variable("CALLERID(name)", name).await?,
                None if matches!(status, Status::Ok | Status::Cache) => status = Status::Fallback,
                None => {}
            }
            if let Some(id) = &info.crm_id {
                agi.set_variable("PBXLINK_CRM_ID", id).await?;
            }
            agi.set_variable("PBXLINK_CALLERID_STATUS", status.as_str())
                .await
        }
        .boxed()
    }
}

/// `webhook`: POSTs the AGI environment as a JSON object to a URL; every key of the JSON
/// object answered becomes `PBXLINK_<KEY>` (`{"num": "202"}` -> `PBXLINK_NUM=202`). Sets
/// `PBXLINK_WEBHOOK_STATUS`; when the answer is late or unusable, also
/// `PBXLINK_TARGET` = the fallback.
#[derive(Debug)]
pub struct Webhook {
    pub client: reqwest::Client,
    pub url: String,
    pub budget: Duration,
    pub fallback_target: String,
}

impl Webhook {
    async fn ask(&self, env: &agi::Environment) -> Result<Vec<(String, String)>, String> {
        let body: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(name, value)| (name.to_owned(), value.into()))
            .collect();
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("POST {}: HTTP {status}", self.url));
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        variables_from_json(&bytes)
    }
}

/// The dialplan variables a webhook answer asks for: a JSON object of up to
/// [`MAX_WEBHOOK_VARIABLES`] keys made of letters, digits and `_`; strings, numbers and
/// booleans as text, `null` as empty, arrays and objects as their JSON text.
pub fn variables_from_json(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let answer: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "answer is not JSON ({e}): {:?}",
            sanitize(&String::from_utf8_lossy(&body[..body.len().min(80)]))
        )
    })?;
    let serde_json::Value::Object(fields) = answer else {
        return Err(format!("answer is not a JSON object: {answer}"));
    };
    if fields.len() > MAX_WEBHOOK_VARIABLES {
        return Err(format!(
            "answer has {} keys, more than {MAX_WEBHOOK_VARIABLES}",
            fields.len()
        ));
    }
    fields
        .into_iter()
        .map(|(key, value)| {
            if key.is_empty()
                || key.len() > 64
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!("answer key {key:?} is not a variable name"));
            }
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            Ok((
                format!("PBXLINK_{}", key.to_ascii_uppercase()),
                sanitize(&text),
            ))
        })
        .collect()
}

impl Handler for Webhook {
    fn handle<'a>(&'a self, agi: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>> {
        async move {
            let answer = tokio::time::timeout(self.budget, self.ask(agi.env())).await;
            let (status, variables) = match answer {
                Ok(Ok(variables)) => (Status::Ok, variables),
                Ok(Err(e)) => {
                    tracing::warn!("FastAGI webhook: {e}");
                    (Status::Error, Vec::new())
                }
                Err(_) => {
                    tracing::warn!(url = self.url, "FastAGI webhook over budget");
                    (Status::Timeout, Vec::new())
                }
            };
            for (name, value) in &variables {
                agi.set_variable(name, value).await?;
            }
            if status != Status::Ok {
                agi.set_variable("PBXLINK_TARGET", &self.fallback_target)
                    .await?;
            }
            agi.set_variable("PBXLINK_WEBHOOK_STATUS", status.as_str())
                .await
        }
        .boxed()
    }
}

/// `[agi.static.NAME]`: sets the configured variables, in name order.
#[derive(Debug)]
pub struct Static {
    pub variables: BTreeMap<String, String>,
}

impl Handler for Static {
    fn handle<'a>(&'a self, agi: &'a mut Agi) -> BoxFuture<'a, Result<(), AgiError>> {
        async move {
            for (name, value) in &self.variables {
                agi.set_variable(name, value).await?;
            }
            Ok(())
        }
        .boxed()
    }
}
