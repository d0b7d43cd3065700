//! Call control on a call in progress over HTTP: hangup, blind or attended transfer,
//! redirect. What is sent to the PBX is `pbx::control`; this finds the call's PBX link and
//! answers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use pbx::ami_client::AmiClient;
use pbx::control::{self, Channel, Target, TransferKind};
use serde::Deserialize;

use super::edge::ApiJson;
use super::{ApiError, AppState};

/// The link to the PBX of a call in progress.
fn link_of(state: &AppState, call_id: &str) -> Result<AmiClient, ApiError> {
    let pbx = state
        .active
        .lock()
        .expect("active-calls lock poisoned")
        .get(call_id)
        .map(|c| c.pbx.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no call {call_id:?} in progress"),
            )
        })?;
    state.pbxes.get(&pbx).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("PBX {pbx:?} has no AMI link"),
        )
    })
}

fn accepted(
    call_id: &str,
    action: &str,
    channels: &[&Channel],
) -> (StatusCode, Json<serde_json::Value>) {
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "call_id": call_id, "action": action, "channels": names })),
    )
}

/// `POST /api/v1/calls/{id}/hangup`: ends the call on every channel it has.
pub async fn hangup(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let client = link_of(&state, &id)?;
    let channels = control::hangup(&client, &id).await?;
    Ok(accepted(
        &id,
        "hangup",
        &channels.iter().collect::<Vec<_>>(),
    ))
}

/// `POST /api/v1/calls/{id}/transfer` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    kind: TransferKind,
    /// The extension or number to transfer to.
    to: String,
    /// Who transfers; by default whoever answered the call.
    extension: Option<String>,
    /// Dialplan context `to` is dialled in.
    context: Option<String>,
}

/// `POST /api/v1/calls/{id}/transfer`: the agent's channel transfers its peer.
pub async fn transfer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let target = Target::checked(&req.to, req.context.as_deref())?;
    let answered_by = state
        .active
        .lock()
        .expect("active-calls lock poisoned")
        .get(&id)
        .and_then(|c| c.answered_by.clone());
    let transferer = req.extension.or(answered_by).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "nobody has answered yet: name the transferring \"extension\"",
        )
    })?;
    let client = link_of(&state, &id)?;
    let leg = control::transfer(&client, &id, &transferer, req.kind, &target).await?;
    Ok(accepted(&id, req.kind.action_name(), &[&leg]))
}

/// `POST /api/v1/calls/{id}/redirect` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectRequest {
    /// The extension or number the channel is sent to.
    to: String,
    /// Whose channel; by default the call's first channel (the caller).
    extension: Option<String>,
    /// Dialplan context `to` is dialled in.
    context: Option<String>,
}

/// `POST /api/v1/calls/{id}/redirect`: sends one channel of the call elsewhere in the dialplan.
pub async fn redirect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RedirectRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let target = Target::checked(&req.to, req.context.as_deref())?;
    let client = link_of(&state, &id)?;
    let leg = control::redirect(&client, &id, req.extension.as_deref(), &target).await?;
    Ok(accepted(&id, "redirect", &[&leg]))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::Body;
    use axum::http::Request;
    use calls::{CallEvent, CallEventKind};
    use chrono::DateTime;
    use expect_test::expect;
    use tower::ServiceExt;

    use super::*;

    const CALL: &str = "1795388070.1";
    /// The call: the trunk leg (first channel) bridged to extension 101; and another call.
    const CHANNELS: &[pbx::testing::Channel] = &[
        ("PJSIP/trunk-00000001", "1795388070.1", CALL),
        ("PJSIP/101-00000002", "1795388070.2", CALL),
        ("PJSIP/102-00000003", "1795388070.3", "1795388070.3"),
    ];

    /// The API over a fake PBX that lists [`CHANNELS`], with the call in progress; the PBX's
    /// actions.
    async fn state_with_pbx() -> (AppState, pbx::testing::Actions, tempfile::TempDir) {
        let (client, actions) = pbx::testing::start(CHANNELS).await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let store = store::Store::connect(&url).await.unwrap();
        let pbxes = HashMap::from([("pbx".to_owned(), client)]);
        let state = AppState::new(store, &["secret-token".to_owned()], pbxes);
        let at = DateTime::from_timestamp(1_795_388_070, 0).unwrap();
        for kind in [
            CallEventKind::Started {
                direction: calls::Direction::Inbound,
                from: Some("15551234567".into()),
                to: Some("15550001000".into()),
            },
            CallEventKind::Answered {
                by: Some("101".into()),
            },
        ] {
            let call_id = CALL.to_owned();
            state.publish("pbx", CallEvent { call_id, at, kind });
        }
        (state, actions, dir)
    }

    async fn post(state: &AppState, uri: &str, body: &str) -> String {
        let req = Request::post(uri)
            .header("Authorization", "Bearer secret-token")
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = crate::api::app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        format!("{status} {}", String::from_utf8_lossy(&body))
    }

    #[tokio::test]
    async fn control_sends_the_exact_ami_action_on_the_right_channel() {
        let (state, seen, _dir) = state_with_pbx().await;
        let calls = format!("/api/v1/calls/{CALL}");
        let mut replies = Vec::new();
        for (path, body) in [
            ("transfer", r#"{"kind":"blind","to":"102"}"#),
            (
                "transfer",
                r#"{"kind":"attended","to":"103","context":"ext-local"}"#,
            ),
            ("redirect", r#"{"to":"200"}"#),
            ("redirect", r#"{"to":"201","extension":"101"}"#),
            ("hangup", ""),
            ("redirect", r#"{"to":"201","extension":"999"}"#),
            (
                "redirect",
                r#"{"to":"201","context":"x\r\nAction: Originate"}"#,
            ),
            ("transfer", r#"{"kind":"sideways","to":"102"}"#),
        ] {
            replies.push(post(&state, &format!("{calls}/{path}"), body).await);
        }
        replies.push(post(&state, "/api/v1/calls/nope/hangup", "").await);
        expect![[r#"
            202 {"action":"blind_transfer","call_id":"1795388070.1","channels":["PJSIP/101-00000002"]}
            202 {"action":"attended_transfer","call_id":"1795388070.1","channels":["PJSIP/101-00000002"]}
            202 {"action":"redirect","call_id":"1795388070.1","channels":["PJSIP/trunk-00000001"]}
            202 {"action":"redirect","call_id":"1795388070.1","channels":["PJSIP/101-00000002"]}
            202 {"action":"hangup","call_id":"1795388070.1","channels":["PJSIP/trunk-00000001","PJSIP/101-00000002"]}
            409 {"error":"extension \"999\" is not on this call"}
            422 {"error":"\"x\\r\\nAction: Originate\" is not a dialplan context"}
            422 {"error":"Failed to deserialize the JSON body into the target type: kind: unknown variant `sideways`, expected `blind` or `attended` at line 1 column 18"}
            404 {"error":"no call \"nope\" in progress"}"#]]
        .assert_eq(&replies.join("\n"));
        let sent = pbx::testing::sent(&seen, &[]);
        expect![[r#"
            Action=BlindTransfer Channel=PJSIP/101-00000002 Context=from-internal Exten=102
            Action=Atxfer Channel=PJSIP/101-00000002 Exten=103 Context=ext-local
            Action=Redirect Channel=PJSIP/trunk-00000001 Context=from-internal Exten=200 Priority=1
            Action=Redirect Channel=PJSIP/101-00000002 Context=from-internal Exten=201 Priority=1
            Action=Hangup Channel=PJSIP/trunk-00000001
            Action=Hangup Channel=PJSIP/101-00000002"#]]
        .assert_eq(&sent.join("\n"));
    }

    #[tokio::test]
    async fn click_to_call_sends_one_exact_originate_and_refuses_injection() {
        let (state, seen, _dir) = state_with_pbx().await;
        let mut replies = Vec::new();
        for body in [
            r#"{"extension":"201","number":"+15557654321","caller_name":"ACME deal 42","variables":{"CRM_DEAL":"42","__CRM_USER":"olga"}}"#,
            r#"{"extension":"201","number":"15557654321","caller_name":"x\r\nAction: Command"}"#,
            r#"{"extension":"201","number":"15557654321","caller_name":"Bob\" <999>"}"#,
            r#"{"extension":"201","number":"15557654321","variables":{"A=1\r\nAction: Logoff":"x"}}"#,
            r#"{"extension":"201","number":"15557654321","variables":{"A":"1,B=2"}}"#,
            r#"{"extension":"201","number":"15557654321","variables":{"A":"1\nAction: Logoff"}}"#,
            r#"{"extension":"20 1","number":"15557654321"}"#,
            r#"{"extension":"201","number":"555-CALL-NOW"}"#,
        ] {
            let reply = post(&state, "/api/v1/calls", body).await;
            // The call id is random: show its shape.
            let id = regex_lite_c2c(&reply);
            replies.push(reply.replace(&id, "c2c-ID"));
        }
        expect![[r#"
            202 {"call_id":"c2c-ID","pbx":"pbx"}
            422 {"error":"caller_name \"x\\r\\nAction: Command\": at most 80 characters, no quotes, <, > or control characters"}
            422 {"error":"caller_name \"Bob\\\" <999>\": at most 80 characters, no quotes, <, > or control characters"}
            422 {"error":"variable \"A=1\\r\\nAction: Logoff\": a name is letters, digits and _ (at most 64)"}
            422 {"error":"variable A: a value has at most 1024 bytes, no commas or control characters"}
            422 {"error":"variable A: a value has at most 1024 bytes, no commas or control characters"}
            422 {"error":"extension \"20 1\" is not a number"}
            422 {"error":"number \"555-CALL-NOW\" is not a phone number"}"#]]
        .assert_eq(&replies.join("\n"));
        let sent = pbx::testing::sent(&seen, &["Originate"]);
        let sent = sent.join("\n");
        let id = regex_lite_c2c(&sent);
        expect![[r#"Action=Originate Channel=PJSIP/201 Context=from-internal Exten=15557654321 Priority=1 CallerID="ACME deal 42" <201> Async=yes Variable=CRM_DEAL=42 Variable=__CRM_USER=olga ChannelId=c2c-ID"#]]
        .assert_eq(&sent.replace(&id, "c2c-ID"));
    }

    /// The first `c2c-<hex>` id in `text`.
    fn regex_lite_c2c(text: &str) -> String {
        text.find("c2c-")
            .map(|at| {
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect()
            })
            .unwrap_or_else(|| "c2c-none".into())
    }
}
