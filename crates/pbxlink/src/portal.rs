//! Bitrix24's click-to-call (`ONEXTERNALCALLSTART`) pushed to `POST /bitrix24/{name}/events`
//! or polled with `event.offline.get`: the PBX places the call (AMI Originate, as the API's
//! click-to-call) and the planner sends only `finish` for it, under Bitrix24's `CALL_ID`. The
//! portal's connector (OAuth, REST calls, user map) is `delivery::outbox::bitrix24`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use crm::bitrix24::events::{self, ExternalCallStart, PostedEvent};
use delivery::outbox::{bitrix24::call, Crm};
use serde_json::Value;

use pbx::ami_client::AmiClient;
use web::ApiError;

/// Who places Bitrix24's click-to-calls: the PBX links, by name.
#[derive(Clone)]
pub struct ClickToCall {
    crms: Arc<[Crm]>,
    pbxes: Arc<HashMap<String, AmiClient>>,
}

impl ClickToCall {
    /// Bitrix24 click-to-calls of `crms` go out through `pbxes`.
    pub fn new(crms: Arc<[Crm]>, pbxes: HashMap<String, AmiClient>) -> Self {
        Self {
            crms,
            pbxes: Arc::new(pbxes),
        }
    }

    /// `POST /bitrix24/{name}/events`: the application's event handler URL.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/bitrix24/{name}/events", post(posted_event))
            .with_state(self.clone())
    }

    /// Starts `event.offline.get` polling for every portal that asks for it.
    pub fn start_polling(&self) {
        for crm in self.crms.iter() {
            if let Some(every) = crm.bitrix24().and_then(|b| b.offline_poll()) {
                tokio::spawn(self.clone().poll(crm.clone(), every));
            }
        }
    }

    /// Places the call Bitrix24 asks for: the user's phone rings first, then the number
    /// (the API's click-to-call path), and the planner is told the call is Bitrix24's.
    async fn place(&self, crm: &Crm, start: &ExternalCallStart) -> Result<String, ApiError> {
        let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
        let b24 = crm
            .bitrix24()
            .ok_or_else(|| bad(format!("{} is not a Bitrix24 portal", crm.name)))?;
        let extension = b24
            .connector()
            .users()
            .extension_of(start.user_id)
            .ok_or_else(|| {
                bad(format!(
                    "Bitrix24 user {} has no inner phone (UF_PHONE_INNER) pbxlink knows",
                    start.user_id
                ))
            })?;
        let (pbx, client) = match b24.pbx() {
            Some(name) => self
                .pbxes
                .get_key_value(name)
                .ok_or_else(|| bad(format!("no PBX named {name:?}")))?,
            None if self.pbxes.len() == 1 => self.pbxes.iter().next().expect("one PBX"),
            None => {
                return Err(bad(format!(
                    "several PBXes: set pbx in [[crm]] {}",
                    crm.name
                )))
            }
        };
        let call_id = pbx::control::new_click_to_call_id();
        let key = format!("{pbx}/{call_id}");
        b24.crm_originated(&key, &start.call_id);
        // Bitrix24 sends numbers as the CRM card shows them: `+7 (495) 123-45-67`.
        let number: String = start
            .phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if number.is_empty() || number.len() > 32 {
            b24.forget_originated(&key);
            return Err(bad(format!(
                "{:?} is not a phone number",
                start.phone_number
            )));
        }
        let variables = vec![("BITRIX24_CALL_ID".to_owned(), start.call_id.clone())];
        let placed = pbx::control::originate_click_to_call(
            client, &extension, &number, &number, &call_id, variables,
        )
        .await;
        if let Err(error) = placed {
            b24.forget_originated(&key);
            return Err(error.into());
        }
        tracing::info!(
            crm = crm.name,
            call_id,
            bitrix24_call = start.call_id,
            extension,
            "Bitrix24 click-to-call placed"
        );
        Ok(call_id)
    }

    async fn poll(self, crm: Crm, every: Duration) {
        let http = reqwest::Client::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.poll_once(&crm, &http).await {
                tracing::warn!(crm = crm.name, %error, "event.offline.get failed; polling on");
            }
        }
    }

    /// One `event.offline.get` (records reserved, `clear=0`), each event handled, then
    /// `event.offline.clear` of that `process_id`. Records of a batch that fails to clear are
    /// handed out again by Bitrix24, so a call is never lost; a call placed whose clear failed
    /// may be placed twice.
    pub(crate) async fn poll_once(
        &self,
        crm: &Crm,
        http: &reqwest::Client,
    ) -> anyhow::Result<usize> {
        let b24 = crm.bitrix24().context("not a Bitrix24 portal")?;
        let get = b24.connector().offline_get_request();
        let params: Value = serde_json::from_str(&get.body).unwrap_or_default();
        let result = call(crm, http, "event.offline.get", &params).await?;
        let batch = events::offline_events(&result);
        let Some(process_id) = batch.process_id else {
            return Ok(0);
        };
        let mut ids = Vec::new();
        for (id, start) in batch.events {
            match start {
                Ok(start) => {
                    if let Err(error) = self.place(crm, &start).await {
                        tracing::warn!(crm = crm.name, %error, "Bitrix24 click-to-call not placed");
                    }
                }
                Err(error) => tracing::warn!(crm = crm.name, error, "unreadable offline event"),
            }
            ids.push(id);
        }
        let clear = b24.connector().offline_clear_request(&process_id, &ids);
        let params: Value = serde_json::from_str(&clear.body).unwrap_or_default();
        call(crm, http, "event.offline.clear", &params).await?;
        Ok(ids.len())
    }
}

/// Bitrix24 POSTs its events form-encoded; the application token proves it is the portal.
async fn posted_event(
    State(c2c): State<ClickToCall>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let crm = c2c
        .crms
        .iter()
        .find(|crm| crm.name == name && crm.bitrix24().is_some())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no Bitrix24 [[crm]] named {name:?}"),
            )
        })?;
    let b24 = crm.bitrix24().expect("found as Bitrix24");
    let event = PostedEvent::parse(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let expected = b24.application_token().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("[[crm]] {name} has no application_token: events are not taken"),
        )
    })?;
    let given = event.application_token.as_deref().unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong auth[application_token]",
        ));
    }
    let start = event
        .external_call_start()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let call_id = c2c.place(crm, &start).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "call_id": call_id, "bitrix24_call_id": start.call_id })),
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
