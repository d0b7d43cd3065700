//! The Bitrix24 connector (incoming-webhook URL mode): the per-call plan of
//! `telephony.externalcall.*` steps, their requests, and Bitrix24's error classification.
//!
//! Bitrix24 names a call by the `CALL_ID` that `register` returns, and every later step needs
//! it. The connector caches it per Linkedid; after a restart the cache is empty, so a step
//! re-sends its call's `register` first: Bitrix24 answers a repeated `register` with the same
//! parameters with the same `CALL_ID` until `finish` (documented behaviour), so nothing is
//! registered twice. Only `attachRecord`, which follows `finish`, cannot recover a lost
//! `CALL_ID` that way; `finish` therefore also carries the recording's `RECORD_URL`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use calls::{CallRecord, Direction, Disposition};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use crate::delivery::{
    classify_status, clip, Connector, DeliveryError, HttpRequest, HttpResponse, OutboxItem,
    Progress,
};

/// What the planner needs to know about a Bitrix24 portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// `CALL_START_DATE` is written in this offset (the portal's time zone).
    pub utc_offset: FixedOffset,
    /// Create a lead for numbers the CRM does not know (`CRM_CREATE`).
    pub create_leads: bool,
    /// Extension the call is registered to when nobody's phone rang (IVR hang-ups).
    pub default_extension: Option<String>,
    /// Recordings are served under this URL (`{base}/{file name}`); none: no `attachRecord`.
    pub record_url_base: Option<String>,
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

    /// How many users have an inner phone.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No user has an inner phone.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `STATUS_CODE` for `finish`: SIP-like codes Bitrix24 shows as the call's outcome.
pub fn status_code(record: &CallRecord) -> &'static str {
    match (record.disposition, record.direction) {
        (Disposition::Answered, _) => "200",
        (Disposition::NoAnswer, _) => "304",
        // An inbound caller who gave up while it rang is a missed call to call back.
        (Disposition::Cancelled, Direction::Inbound) => "304",
        (Disposition::Cancelled, _) => "603-S",
        (Disposition::Busy, _) => "486",
        (Disposition::Failed, _) => "503",
    }
}

/// The Bitrix24 steps for a finished call, in order: `(kind, payload)`. Internal calls and
/// calls with no user to register them to give no steps.
///
/// Every payload carries the call's `register` parameters (see the module doc for why).
pub fn plan(record: &CallRecord, config: &PlanConfig) -> Vec<(String, Value)> {
    let (phone, type_code, owner) = match record.direction {
        Direction::Internal => return Vec::new(),
        Direction::Inbound => (
            record.from.as_deref(),
            2,
            record
                .answered_by
                .as_ref()
                .filter(|by| record.rang.contains(by))
                .or(record.rang.first()),
        ),
        Direction::Outbound => (record.to.as_deref(), 1, record.from.as_ref()),
    };
    let (Some(phone), Some(owner)) = (phone, owner.or(config.default_extension.as_ref())) else {
        return Vec::new();
    };
    let started = record.started_at.with_timezone(&config.utc_offset);
    let register = json!({
        "USER_PHONE_INNER": owner,
        "PHONE_NUMBER": phone,
        "TYPE": type_code,
        "CALL_START_DATE": started.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "CRM_CREATE": u8::from(config.create_leads),
        "SHOW": 0,
        "LINE_NUMBER": record.to.as_deref().filter(|_| record.direction == Direction::Inbound),
    });
    let step = |extra: Value| {
        let mut payload = json!({ "register": register });
        if let (Some(payload), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            payload.extend(extra);
        }
        payload
    };
    let record_url = config
        .record_url_base
        .as_ref()
        .zip(record.recording.as_ref())
        .map(|(base, file)| {
            let name = file.rsplit('/').next().unwrap_or(file);
            (
                name.to_owned(),
                format!("{}/{name}", base.trim_end_matches('/')),
            )
        });

    let mut steps = vec![("register".to_owned(), step(json!({})))];
    if !record.rang.is_empty() {
        steps.push((
            "show".to_owned(),
            step(json!({ "extensions": record.rang })),
        ));
    }
    if record.answered_at.is_some() {
        let others: Vec<&String> = record.rang.iter().filter(|e| *e != owner).collect();
        if !others.is_empty() {
            steps.push(("hide".to_owned(), step(json!({ "extensions": others }))));
        }
    }
    steps.push((
        "finish".to_owned(),
        step(json!({
            "extension": owner,
            "DURATION": record.talk_seconds,
            "STATUS_CODE": status_code(record),
            "RECORD_URL": record_url.as_ref().map(|(_, url)| url),
        })),
    ));
    if let Some((name, url)) = record_url {
        steps.push((
            "attachRecord".to_owned(),
            step(json!({ "FILENAME": name, "RECORD_URL": url })),
        ));
    }
    if let Some((_, last)) = steps.last_mut() {
        last["last"] = json!(true);
    }
    steps
}

/// A Bitrix24 portal reached through an incoming-webhook URL
/// (`https://portal.bitrix24.ru/rest/1/<code>`).
#[derive(Debug)]
pub struct Bitrix24 {
    webhook_url: String,
    users: Mutex<UserMap>,
    /// Linkedid -> Bitrix24 `CALL_ID`, for calls whose last step is not delivered yet.
    call_ids: Mutex<HashMap<String, String>>,
}

impl Bitrix24 {
    /// A connector for the portal behind `webhook_url`.
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self {
            webhook_url: webhook_url.into().trim_end_matches('/').to_owned(),
            users: Mutex::default(),
            call_ids: Mutex::default(),
        }
    }

    /// Replaces the user map (after a successful `user.get`; a failed one keeps the old map).
    pub fn set_users(&self, users: UserMap) {
        *lock(&self.users) = users;
    }

    /// A request for any REST method.
    pub fn request(&self, method: &str, params: &Value) -> HttpRequest {
        HttpRequest {
            url: format!("{}/{method}.json", self.webhook_url),
            headers: Vec::new(),
            body: params.to_string(),
        }
    }

    /// The `user.get` request that loads the user map (users with an inner phone).
    pub fn users_request(&self) -> HttpRequest {
        self.request("user.get", &json!({ "FILTER": { "ACTIVE": true } }))
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
        let params = match item.kind.as_str() {
            "show" | "hide" => {
                // Ringing users without a Bitrix24 account get no card; that is not an error.
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
        Ok(self.request(&format!("telephony.externalcall.{}", item.kind), &params))
    }
}

impl Connector for Bitrix24 {
    fn next_request(
        &self,
        item: &OutboxItem,
        _now: DateTime<Utc>,
    ) -> Result<HttpRequest, DeliveryError> {
        let known = lock(&self.call_ids).get(&item.call_id).cloned();
        match (item.kind.as_str(), known) {
            (_, Some(call_id)) if item.kind != "register" => self.step_request(item, &call_id),
            ("attachRecord", None) => Err(DeliveryError::permanent(
                "CALL_ID lost after finish (restart); the recording went with finish's RECORD_URL",
            )),
            _ => Ok(self.request("telephony.externalcall.register", &item.payload["register"])),
        }
    }

    fn on_response(
        &self,
        item: &OutboxItem,
        response: &HttpResponse,
    ) -> Result<Progress, DeliveryError> {
        let result = check(response)?;
        let mut call_ids = lock(&self.call_ids);
        if item.kind == "register" || !call_ids.contains_key(&item.call_id) {
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
}

/// Bitrix24 error codes worth retrying (besides any 5xx / 429).
const RETRIABLE_ERRORS: [&str; 4] = [
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent at every await-free step, so a poisoned lock is usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn record(disposition: Disposition, rang: &[&str], answered_by: Option<&str>) -> CallRecord {
        let at = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        CallRecord {
            id: "1700000000.7".into(),
            direction: Direction::Inbound,
            from: Some("79161234567".into()),
            to: Some("74951112233".into()),
            caller_name: None,
            started_at: at(0),
            answered_at: answered_by.map(|_| at(10)),
            ended_at: at(70),
            ring_seconds: 10,
            talk_seconds: if answered_by.is_some() { 60 } else { 0 },
            disposition,
            answered_by: answered_by.map(Into::into),
            rang: rang.iter().map(|e| e.to_string()).collect(),
            transfers: Vec::new(),
            queue: None,
            recording: Some("/var/spool/asterisk/monitor/2023/11/14/in-1700000000.7.wav".into()),
            legs: Vec::new(),
            timeline: Vec::new(),
        }
    }

    fn config() -> PlanConfig {
        PlanConfig {
            utc_offset: FixedOffset::east_opt(3 * 3600).unwrap(),
            create_leads: true,
            default_extension: Some("200".into()),
            record_url_base: Some("https://pbx.example/rec/".into()),
        }
    }

    fn check_plan(record: &CallRecord, expect: Expect) {
        let steps: Vec<String> = plan(record, &config())
            .into_iter()
            .map(|(kind, mut payload)| {
                // Every step repeats the register parameters; show them once.
                if kind != "register" {
                    payload.as_object_mut().unwrap().remove("register");
                }
                format!("{kind} {payload}")
            })
            .collect();
        expect.assert_eq(&steps.join("\n"));
    }

    #[test]
    fn ring_group_answered_by_the_second_phone() {
        check_plan(
            &record(Disposition::Answered, &["201", "202", "203"], Some("202")),
            expect![[r#"
                register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"202"}}
                show {"extensions":["201","202","203"]}
                hide {"extensions":["201","203"]}
                finish {"DURATION":60,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"200","extension":"202"}
                attachRecord {"FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","last":true}"#]],
        );
    }

    #[test]
    fn missed_call_and_ivr_hang_up() {
        check_plan(
            &record(Disposition::NoAnswer, &["201"], None),
            expect![[r#"
                register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201"}}
                show {"extensions":["201"]}
                finish {"DURATION":0,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"304","extension":"201"}
                attachRecord {"FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","last":true}"#]],
        );
        check_plan(
            &record(Disposition::Cancelled, &[], None),
            expect![[r#"
            register {"register":{"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"200"}}
            finish {"DURATION":0,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"304","extension":"200"}
            attachRecord {"FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","last":true}"#]],
        );
    }

    #[test]
    fn internal_calls_are_not_sent() {
        let mut internal = record(Disposition::Answered, &["202"], Some("202"));
        internal.direction = Direction::Internal;
        assert!(plan(&internal, &config()).is_empty());
    }

    fn users() -> UserMap {
        UserMap::from_user_get(&json!([
            {"ID": "11", "UF_PHONE_INNER": "201"},
            {"ID": "12", "UF_PHONE_INNER": "202"},
            {"ID": "13", "UF_PHONE_INNER": ""},
            {"ID": 14, "UF_PHONE_INNER": "200"},
        ]))
        .unwrap()
    }

    #[test]
    fn user_map_skips_users_without_an_inner_phone() {
        expect![[r#"
            UserMap(
                {
                    "200": 14,
                    "201": 11,
                    "202": 12,
                },
            )
        "#]]
        .assert_debug_eq(&users());
        assert!(UserMap::from_user_get(&json!({"error": "expired_token"})).is_err());
    }

    fn ok(body: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            retry_after: None,
            body: body.to_string(),
        }
    }

    /// Runs a call's steps against canned answers: every request sent, in order.
    fn deliver_all(connector: &Bitrix24, steps: &[(String, Value)]) -> Vec<String> {
        let mut sent = Vec::new();
        for (kind, payload) in steps {
            let item = OutboxItem {
                call_id: "1700000000.7".into(),
                kind: kind.clone(),
                payload: payload.clone(),
                idempotency_key: format!("bitrix24:1700000000.7:{kind}"),
            };
            loop {
                let request = connector.next_request(&item, Utc::now()).unwrap();
                let answer = if request.url.ends_with("register.json") {
                    json!({"result": {"CALL_ID": "externalCall.abc.1700000000"}})
                } else {
                    json!({"result": true})
                };
                sent.push(format!("{} {}", request.url, request.body));
                if connector.on_response(&item, &ok(answer)).unwrap() == Progress::Delivered {
                    break;
                }
            }
        }
        sent
    }

    #[test]
    fn steps_use_the_registered_call_id_and_mapped_users() {
        let connector = Bitrix24::new("https://portal.bitrix24.ru/rest/1/code/");
        connector.set_users(users());
        let steps = plan(
            &record(Disposition::Answered, &["201", "202"], Some("202")),
            &config(),
        );
        expect![[r#"
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.register.json {"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"202"}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.show.json {"CALL_ID":"externalCall.abc.1700000000","USER_ID":[11,12]}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.hide.json {"CALL_ID":"externalCall.abc.1700000000","USER_ID":[11]}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.finish.json {"CALL_ID":"externalCall.abc.1700000000","DURATION":60,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"200","USER_ID":12}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.attachRecord.json {"CALL_ID":"externalCall.abc.1700000000","FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav"}"#]].assert_eq(&deliver_all(&connector, &steps).join("\n"));
        assert!(
            lock(&connector.call_ids).is_empty(),
            "the last step forgets the call"
        );
    }

    #[test]
    fn after_a_restart_a_step_re_registers_first() {
        let connector = Bitrix24::new("https://portal.bitrix24.ru/rest/1/code");
        connector.set_users(users());
        let steps = plan(&record(Disposition::NoAnswer, &["201"], None), &config());
        let after_register = &steps[1..];
        expect![[r#"
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.register.json {"CALL_START_DATE":"2023-11-15T01:13:20+03:00","CRM_CREATE":1,"LINE_NUMBER":"74951112233","PHONE_NUMBER":"79161234567","SHOW":0,"TYPE":2,"USER_PHONE_INNER":"201"}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.show.json {"CALL_ID":"externalCall.abc.1700000000","USER_ID":[11]}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.finish.json {"CALL_ID":"externalCall.abc.1700000000","DURATION":0,"RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav","STATUS_CODE":"304","USER_ID":11}
            https://portal.bitrix24.ru/rest/1/code/telephony.externalcall.attachRecord.json {"CALL_ID":"externalCall.abc.1700000000","FILENAME":"in-1700000000.7.wav","RECORD_URL":"https://pbx.example/rec/in-1700000000.7.wav"}"#]].assert_eq(&deliver_all(&connector, after_register).join("\n"));
    }

    fn check_answers(answers: &[(u16, &str)], expect: Expect) {
        let verdicts: Vec<String> = answers
            .iter()
            .map(|(status, body)| {
                let response = HttpResponse {
                    status: *status,
                    retry_after: None,
                    body: body.to_string(),
                };
                format!("{status} {body} => {:?}", check(&response))
            })
            .collect();
        expect.assert_eq(&verdicts.join("\n"));
    }

    #[test]
    fn errors_are_classified() {
        check_answers(
            &[
                (200, r#"{"result":{"CALL_ID":"x"}}"#),
                (
                    503,
                    r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#,
                ),
                (
                    401,
                    r#"{"error":"expired_token","error_description":"The access token provided has expired."}"#,
                ),
                (
                    400,
                    r#"{"error":"ERROR_ARGUMENT","error_description":"Argument 'PHONE_NUMBER' is null or empty"}"#,
                ),
                (
                    401,
                    r#"{"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"}"#,
                ),
                (502, "<html>Bad Gateway</html>"),
                (404, "Not Found"),
                (200, "{}"),
            ],
            expect![[r#"
                200 {"result":{"CALL_ID":"x"}} => Ok(Object {"CALL_ID": String("x")})
                503 {"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"} => Err(Retriable { reason: "QUERY_LIMIT_EXCEEDED: Too many requests", retry_after: Some(1s) })
                401 {"error":"expired_token","error_description":"The access token provided has expired."} => Err(Retriable { reason: "expired_token: The access token provided has expired.", retry_after: Some(1s) })
                400 {"error":"ERROR_ARGUMENT","error_description":"Argument 'PHONE_NUMBER' is null or empty"} => Err(Permanent { reason: "ERROR_ARGUMENT: Argument 'PHONE_NUMBER' is null or empty" })
                401 {"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"} => Err(Permanent { reason: "NO_AUTH_FOUND: Wrong authorization data" })
                502 <html>Bad Gateway</html> => Err(Retriable { reason: "HTTP 502: <html>Bad Gateway</html>", retry_after: None })
                404 Not Found => Err(Permanent { reason: "HTTP 404: Not Found" })
                200 {} => Err(Permanent { reason: "answer without result: {}" })"#]],
        );
    }
}
