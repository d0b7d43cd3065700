//! The Bitrix24 connector, after the official REST docs (bitrix24/b24restdocs): the call plan
//! ([`plan`]), the `telephony.externalcall.*` requests and Bitrix24's error classification,
//! both auth modes (incoming-webhook URL, or a local application's OAuth tokens renewed at
//! oauth.bitrix.info: [`auth`]), `batch` ([`batch`]), `searchCrmEntities` caller lookups and
//! the `ONEXTERNALCALLSTART` click-to-call event, pushed or polled ([`events`]).
//!
//! Bitrix24 names a call by the `CALL_ID` that `register` returns, and every later step needs
//! it. The connector caches it per Linkedid; after a restart the cache is empty, so a step
//! re-sends its call's `register` first: Bitrix24 answers a repeated `register` with the same
//! `EXTERNAL_CALL_ID`, user, number, type and line with the same `CALL_ID` (documented
//! re-registration), so nothing is registered twice. Only `attachRecord`, which follows
//! `finish`, cannot recover a lost `CALL_ID` that way; `finish` therefore also carries the
//! recording's `RECORD_URL`.

pub mod auth;
pub mod batch;
pub mod events;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::delivery::{
    classify_status, clip, lock, Connector, DeliveryError, HttpRequest, HttpResponse, OutboxItem,
    Progress,
};
use crate::{CallerInfo, CrmError, HttpLookup};

pub use auth::{OAuthConfig, Tokens};
pub use plan::{status_code, CardMode, PlanConfig, Planner};

/// How pbxlink signs in to the portal.
#[derive(Debug)]
pub enum Auth {
    /// An incoming webhook, `https://portal.bitrix24.ru/rest/<user>/<code>`: the URL is the
    /// credential.
    Webhook(String),
    /// A local application: OAuth access token, renewed with the refresh token on
    /// `expired_token`.
    OAuth(auth::OAuth),
}

/// A Bitrix24 portal.
#[derive(Debug)]
pub struct Bitrix24 {
    auth: Auth,
    users: Mutex<UserMap>,
    /// Linkedid -> Bitrix24 `CALL_ID`, for calls whose last step is not delivered yet.
    call_ids: Mutex<HashMap<String, String>>,
}

/// What a Bitrix24 answer means for the request's sender.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The method's `result`.
    Result(Value),
    /// Send the request again (built anew): the access token was renewed, or has to be.
    Again,
}

impl Bitrix24 {
    /// A connector for the portal behind an incoming-webhook URL.
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self::with_auth(Auth::Webhook(
            webhook_url.into().trim_end_matches('/').to_owned(),
        ))
    }

    /// A connector signing in with `auth`.
    pub fn with_auth(auth: Auth) -> Self {
        Self {
            auth,
            users: Mutex::default(),
            call_ids: Mutex::default(),
        }
    }

    /// Replaces the user map (after a successful `user.get`; a failed one keeps the old map).
    pub fn set_users(&self, users: UserMap) {
        *lock(&self.users) = users;
    }

    /// The user map as it is now.
    pub fn users(&self) -> UserMap {
        lock(&self.users).clone()
    }

    /// Tokens renewed since the last call, to be saved (OAuth mode only).
    pub fn take_renewed_tokens(&self) -> Option<Tokens> {
        match &self.auth {
            Auth::OAuth(oauth) => oauth.take_renewed(),
            Auth::Webhook(_) => None,
        }
    }

    /// The request for a REST method; in OAuth mode, when the access token has expired, the
    /// token renewal instead (then [`Bitrix24::answer`] says [`Answer::Again`]).
    pub fn request(&self, method: &str, params: &Value) -> HttpRequest {
        if let Auth::OAuth(oauth) = &self.auth {
            if let Some(renewal) = oauth.renewal_request() {
                return renewal;
            }
        }
        self.method_request(method, params)
    }

    /// The request for a REST method with the credentials as they are.
    fn method_request(&self, method: &str, params: &Value) -> HttpRequest {
        let (url, params) = match &self.auth {
            Auth::Webhook(base) => (format!("{base}/{method}.json"), params.clone()),
            Auth::OAuth(oauth) => {
                let mut params = params.clone();
                params["auth"] = json!(oauth.access_token());
                (format!("{}/{method}.json", oauth.endpoint()), params)
            }
        };
        HttpRequest {
            url,
            headers: Vec::new(),
            body: params.to_string(),
        }
    }

    /// The REST base URL requests go to.
    fn endpoint(&self) -> &str {
        match &self.auth {
            Auth::Webhook(base) => base,
            Auth::OAuth(oauth) => oauth.endpoint(),
        }
    }

    /// Judges the answer to a request from [`Bitrix24::request`].
    pub fn answer(&self, response: &HttpResponse) -> Result<Answer, DeliveryError> {
        let Auth::OAuth(oauth) = &self.auth else {
            return check(response).map(Answer::Result);
        };
        let body: Value = serde_json::from_str(&response.body).unwrap_or_default();
        if oauth.take_renewal_answer(&body) {
            return Ok(Answer::Again);
        }
        match body["error"].as_str() {
            Some("expired_token") => {
                oauth.expired();
                Ok(Answer::Again)
            }
            Some(code) if oauth.renewal_failed(code) => Err(DeliveryError::retriable(format!(
                "renewing the access token: {code}: {}",
                body["error_description"].as_str().unwrap_or_default()
            ))),
            _ => check(response).map(Answer::Result),
        }
    }

    /// The `user.get` request that loads the user map (users with an inner phone).
    pub fn users_request(&self) -> HttpRequest {
        self.request("user.get", &json!({ "FILTER": { "ACTIVE": true } }))
    }

    /// The `telephony.externalCall.searchCrmEntities` request: who has this number.
    pub fn search_request(&self, number: &str) -> HttpRequest {
        self.request(
            "telephony.externalCall.searchCrmEntities",
            &json!({ "PHONE_NUMBER": number }),
        )
    }

    /// The caller as a `searchCrmEntities` result describes them: the first entity found
    /// (contact, company or lead), its responsible manager's extension from
    /// `ASSIGNED_BY.USER_PHONE_INNER` or else the user map. No entity: all `None`.
    pub fn caller_info(&self, result: &Value) -> CallerInfo {
        let Some(entity) = result.as_array().and_then(|found| found.first()) else {
            return CallerInfo::default();
        };
        let text = |v: &Value| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let manager = text(&entity["ASSIGNED_BY_ID"]).and_then(|id| id.parse().ok());
        let responsible_extension = text(&entity["ASSIGNED_BY"]["USER_PHONE_INNER"])
            .or_else(|| lock(&self.users).extension_of(manager?));
        CallerInfo {
            name: text(&entity["NAME"]),
            crm_id: text(&entity["CRM_ENTITY_TYPE"])
                .zip(text(&entity["CRM_ENTITY_ID"]))
                .map(|(kind, id)| format!("{kind}:{id}")),
            responsible_extension,
        }
    }

    fn user_ids(&self, extensions: &Value) -> Vec<u64> {
        let users = lock(&self.users);
        let extensions = extensions.as_array().map(Vec::as_slice).unwrap_or_default();
        extensions
            .iter()
            .filter_map(|e| users.user(e.as_str()?))
            .collect()
    }

    fn step_request(&self, item: &OutboxItem, call_id: &str) -> Result<HttpRequest, DeliveryError> {
        let payload = &item.payload;
        let method = step_method(&item.kind);
        let params = match method {
            "show" | "hide" => {
                json!({ "CALL_ID": call_id, "USER_ID": self.user_ids(&payload["extensions"]) })
            }
            "finish" => {
                let extension = payload["extension"].as_str().unwrap_or_default();
                let user = lock(&self.users).user(extension).ok_or_else(|| {
                    DeliveryError::permanent(format!(
                        "no Bitrix24 user has inner phone {extension:?}"
                    ))
                })?;
                json!({
                    "CALL_ID": call_id,
                    "USER_ID": user,
                    "DURATION": payload["DURATION"],
                    "STATUS_CODE": payload["STATUS_CODE"],
                    "RECORD_URL": payload["RECORD_URL"],
                })
            }
            "attachRecord" => json!({
                "CALL_ID": call_id,
                "FILENAME": payload["FILENAME"],
                "RECORD_URL": payload["RECORD_URL"],
            }),
            other => {
                return Err(DeliveryError::permanent(format!(
                    "unknown Bitrix24 step {other:?}"
                )))
            }
        };
        Ok(self.request(&format!("telephony.externalcall.{method}"), &params))
    }

    /// The call's `CALL_ID`: given by Bitrix24 (a call it started), or cached from `register`.
    fn known_call_id(&self, item: &OutboxItem) -> Option<String> {
        match item.payload["CALL_ID"].as_str() {
            Some(given) => Some(given.to_owned()),
            None => lock(&self.call_ids).get(&item.call_id).cloned(),
        }
    }
}

/// Caller lookups: `telephony.externalCall.searchCrmEntities`. In OAuth mode an expired token
/// fails this lookup (retriable) and the next request renews it.
impl HttpLookup for Bitrix24 {
    fn lookup_request(&self, number: &str, _now: DateTime<Utc>) -> Result<HttpRequest, CrmError> {
        Ok(self.search_request(number))
    }

    fn lookup_answer(&self, response: &HttpResponse) -> Result<CallerInfo, CrmError> {
        match self.answer(response)? {
            Answer::Result(result) => Ok(self.caller_info(&result)),
            Answer::Again => Err(CrmError::Retriable(
                "the access token was renewed; ask again".into(),
            )),
        }
    }
}

impl Connector for Bitrix24 {
    fn next_request(
        &self,
        item: &OutboxItem,
        _now: DateTime<Utc>,
    ) -> Result<HttpRequest, DeliveryError> {
        let register = &item.payload["register"];
        match (step_method(&item.kind), self.known_call_id(item)) {
            ("register", _) => Ok(self.request("telephony.externalcall.register", register)),
            (_, Some(call_id)) => self.step_request(item, &call_id),
            ("attachRecord", None) => Err(DeliveryError::permanent(
                "CALL_ID lost after finish (restart); the recording went with finish's RECORD_URL",
            )),
            (_, None) if register.is_null() => Err(DeliveryError::permanent(
                "no CALL_ID and no register parameters to recover it",
            )),
            _ => Ok(self.request("telephony.externalcall.register", register)),
        }
    }

    fn on_response(
        &self,
        item: &OutboxItem,
        response: &HttpResponse,
    ) -> Result<Progress, DeliveryError> {
        let result = match self.answer(response)? {
            Answer::Again => return Ok(Progress::Continue),
            Answer::Result(result) => result,
        };
        let given = item.payload["CALL_ID"].is_string();
        let mut call_ids = lock(&self.call_ids);
        if item.kind == "register" || (!given && !call_ids.contains_key(&item.call_id)) {
            let call_id = result["CALL_ID"].as_str().ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "register answered without CALL_ID: {}",
                    clip(&response.body)
                ))
            })?;
            call_ids.insert(item.call_id.clone(), call_id.to_owned());
            if item.kind != "register" {
                return Ok(Progress::Continue);
            }
        }
        if item.payload["last"] == json!(true) {
            call_ids.remove(&item.call_id);
        }
        Ok(Progress::Delivered)
    }

    fn batch_limit(&self) -> usize {
        batch::MAX_COMMANDS
    }

    fn batch(&self, requests: &[HttpRequest]) -> Option<HttpRequest> {
        let cmd = batch::commands(self.endpoint(), requests)?;
        Some(self.method_request("batch", &json!({ "halt": 0, "cmd": cmd })))
    }

    fn split_batch(&self, response: &HttpResponse, count: usize) -> Vec<HttpResponse> {
        batch::split(response, count)
    }
}

/// Extension (`UF_PHONE_INNER`) -> Bitrix24 user id, from `user.get`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMap(BTreeMap<String, u64>);

impl UserMap {
    /// Parses the `result` of a `user.get` answer (see [`check`]); users without an inner
    /// phone are left out. A result that is not a user list is an error, so the caller keeps
    /// the map it had.
    pub fn from_user_get(result: &Value) -> Result<Self, DeliveryError> {
        let users = result
            .as_array()
            .ok_or_else(|| DeliveryError::permanent("user.get: the result is not a user list"))?;
        let pairs = users.iter().filter_map(|user| {
            let extension = user.get("UF_PHONE_INNER")?.as_str()?.trim();
            let id = match user.get("ID")? {
                Value::String(id) => id.parse().ok()?,
                id => id.as_u64()?,
            };
            (!extension.is_empty()).then(|| (extension.to_owned(), id))
        });
        Ok(Self(pairs.collect()))
    }

    /// A map from configured (extension, user id) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// Adds `other`'s users, replacing the ones both have.
    pub fn extend(&mut self, other: UserMap) {
        self.0.extend(other.0);
    }

    /// The user whose inner phone is `extension`.
    pub fn user(&self, extension: &str) -> Option<u64> {
        self.0.get(extension).copied()
    }

    /// The extension of user `id`.
    pub fn extension_of(&self, id: u64) -> Option<String> {
        self.0
            .iter()
            .find(|(_, user)| **user == id)
            .map(|(extension, _)| extension.clone())
    }

    /// How many users have an inner phone.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No user has an inner phone.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The method of an outbox row's kind: `show` of `show:201,203` (the planner's step key).
fn step_method(kind: &str) -> &str {
    kind.split(':').next().unwrap_or(kind)
}

/// Bitrix24 error codes worth retrying (besides any 5xx / 429).
const RETRIABLE_ERRORS: [&str; 5] = [
    "ERROR_BATCH_MISSING",
    "QUERY_LIMIT_EXCEEDED",
    "expired_token",
    "INTERNAL_SERVER_ERROR",
    "OPERATION_TIME_LIMIT",
];

/// The `result` of a Bitrix24 answer, or its error classified.
pub fn check(response: &HttpResponse) -> Result<Value, DeliveryError> {
    let body: Option<Value> = serde_json::from_str(&response.body).ok();
    let error = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str);
    match (error, body.as_ref().and_then(|b| b.get("result"))) {
        (None, Some(result)) if (200..300).contains(&response.status) => Ok(result.clone()),
        (Some(code), _) => {
            let description = body.as_ref().and_then(|b| b["error_description"].as_str());
            let reason = format!("{code}: {}", description.unwrap_or_default());
            if RETRIABLE_ERRORS.contains(&code) || response.status >= 500 {
                Err(DeliveryError::Retriable {
                    reason,
                    // Bitrix24 refills its request bucket at 2 per second.
                    retry_after: Some(Duration::from_secs(response.retry_after.unwrap_or(1))),
                })
            } else {
                Err(DeliveryError::Permanent { reason })
            }
        }
        (None, _) if (200..300).contains(&response.status) => Err(DeliveryError::permanent(
            format!("answer without result: {}", clip(&response.body)),
        )),
        (None, _) => Err(classify_status(
            response.status,
            response.retry_after,
            &response.body,
        )),
    }
}

#[cfg(test)]
mod tests;
