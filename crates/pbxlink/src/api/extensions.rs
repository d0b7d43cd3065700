//! Extensions over HTTP: presence (`GET /extensions`), DND and call forwarding
//! (`/extensions/{ext}/dnd`, `/extensions/{ext}/forwarding/{kind}`), queue member pause.
//!
//! Every path segment and body is checked before the PBX hears of it: an unknown extension,
//! a malformed number, forwarding to itself or an unknown queue member is a 4xx and nothing
//! is sent. Presence changes and forwarding changes made here go out on the live stream as
//! `extension.state` / `extension.forwarding`, filtered by extension like call events.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use calls::{ExtensionState, Presence};
use chrono::Utc;
use serde::Deserialize;

use super::edge::{ApiJson, ApiQuery};
use super::live::{ExtensionChange, ExtensionEvent, Live};
use super::{ApiError, AppState};
use pbx::ami_client::AmiClient;
use pbx::extensions::{self, Forwarding, QueuePause, Setting};

impl AppState {
    /// Folds one AMI event into the PBX's presence and publishes the extensions it changed.
    pub fn presence_event(&self, pbx: &str, msg: &ami::Message) {
        if !calls::presence::concerns(msg) {
            return;
        }
        self.fold_presence(pbx, |p| p.handle(msg));
    }

    /// Folds an `ExtensionStateList` result (at every login) into the PBX's presence.
    pub fn presence_resync(&self, pbx: &str, items: &[ami::Message]) {
        self.fold_presence(pbx, |p| p.resync(items));
    }

    fn fold_presence(&self, pbx: &str, f: impl FnOnce(&mut Presence) -> Vec<ExtensionState>) {
        let changed = {
            let mut all = self.presence.lock().expect("presence lock poisoned");
            f(all.entry(pbx.to_owned()).or_default())
        };
        for state in changed {
            let parties = vec![state.extension.clone()];
            self.publish_extension(pbx, ExtensionChange::State(state), parties);
        }
    }

    fn publish_extension(&self, pbx: &str, change: ExtensionChange, parties: Vec<String>) {
        let event = ExtensionEvent {
            at: Utc::now(),
            change,
        };
        self.live.publish(pbx, Live::Extension(event), parties);
    }

    /// The PBX named (or the only one) and its link, and checks that `extension` is one of
    /// its extensions (a hint or queue member it reported, or `[extensions] known`).
    fn extension_on(
        &self,
        pbx: Option<&str>,
        extension: &str,
    ) -> Result<(String, AmiClient), ApiError> {
        extensions::check_extension(extension)?;
        let (name, client) = self.pick_pbx(pbx)?;
        let reported = self
            .presence
            .lock()
            .expect("presence lock poisoned")
            .get(&name)
            .is_some_and(|p| p.get(extension).is_some());
        extensions::check_known(&self.extensions, reported, &name, extension)?;
        Ok((name, client))
    }
}

#[cfg(test)]
impl AppState {
    /// Every event still in the live ring, for tests to see what a subscriber would.
    pub(crate) fn live_backlog(&self) -> Vec<std::sync::Arc<super::live::LiveEvent>> {
        let (backlog, _) = self.live.subscribe(Some(0));
        backlog
            .into_iter()
            .filter_map(|item| match item {
                super::live::StreamItem::Event(e) => Some(e),
                super::live::StreamItem::Resync => None,
            })
            .collect()
    }
}

/// `?pbx=`: which PBX; optional when there is one.
#[derive(Debug, Deserialize)]
pub struct PbxQuery {
    pbx: Option<String>,
}

/// `GET /api/v1/extensions`: every extension of every PBX (or of `?pbx=`), with its state.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Json<Vec<serde_json::Value>> {
    let all = state.presence.lock().expect("presence lock poisoned");
    let mut out = Vec::new();
    for (pbx, presence) in all.iter() {
        if q.pbx.as_ref().is_some_and(|want| want != pbx) {
            continue;
        }
        out.extend(presence.extensions().map(|s| with_pbx(pbx, s)));
    }
    Json(out)
}

/// `GET /api/v1/extensions/{ext}`.
pub async fn get(
    State(state): State<AppState>,
    Path(ext): Path<String>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = state.presence.lock().expect("presence lock poisoned");
    all.iter()
        .filter(|(pbx, _)| q.pbx.as_ref().is_none_or(|want| want == *pbx))
        .find_map(|(pbx, p)| p.get(&ext).map(|s| Json(with_pbx(pbx, s))))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no extension {ext:?}")))
}

fn with_pbx(pbx: &str, state: &ExtensionState) -> serde_json::Value {
    let mut v = serde_json::to_value(state).expect("an extension state always serializes");
    v["pbx"] = pbx.into();
    v
}

/// `GET /api/v1/extensions/{ext}/forwarding`: DND and the three forwardings, as stored.
pub async fn forwarding(
    State(state): State<AppState>,
    Path(ext): Path<String>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Result<Json<Forwarding>, ApiError> {
    let (_, client) = state.extension_on(q.pbx.as_deref(), &ext)?;
    Ok(Json(extensions::read(&client, &ext).await?))
}

/// `PUT /api/v1/extensions/{ext}/dnd`: do not disturb on.
pub async fn dnd_on(
    State(state): State<AppState>,
    Path(ext): Path<String>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Result<Json<Forwarding>, ApiError> {
    let on = Some(extensions::DND_ON);
    change(&state, q.pbx.as_deref(), &ext, Setting::Dnd, on).await
}

/// `DELETE /api/v1/extensions/{ext}/dnd`: do not disturb off.
pub async fn dnd_off(
    State(state): State<AppState>,
    Path(ext): Path<String>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Result<Json<Forwarding>, ApiError> {
    change(&state, q.pbx.as_deref(), &ext, Setting::Dnd, None).await
}

/// `PUT /api/v1/extensions/{ext}/forwarding/{kind}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRequest {
    /// An extension or a phone number (digits, optionally a leading `+`).
    to: String,
}

/// `PUT /api/v1/extensions/{ext}/forwarding/{kind}`: forward calls (`unconditional`,
/// `busy`, `noanswer`) to `to`.
pub async fn forward_on(
    State(state): State<AppState>,
    Path((ext, kind)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PbxQuery>,
    ApiJson(req): ApiJson<ForwardRequest>,
) -> Result<Json<Forwarding>, ApiError> {
    let setting = forward_kind(&kind)?;
    extensions::check_target(&ext, &req.to)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    change(&state, q.pbx.as_deref(), &ext, setting, Some(&req.to)).await
}

/// `DELETE /api/v1/extensions/{ext}/forwarding/{kind}`: stop forwarding.
pub async fn forward_off(
    State(state): State<AppState>,
    Path((ext, kind)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Result<Json<Forwarding>, ApiError> {
    let setting = forward_kind(&kind)?;
    change(&state, q.pbx.as_deref(), &ext, setting, None).await
}

fn forward_kind(kind: &str) -> Result<Setting, ApiError> {
    Setting::forward(kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no forwarding {kind:?}: unconditional, busy or noanswer"),
        )
    })
}

/// Stores a setting on the PBX, answers the stored result and publishes it.
async fn change(
    state: &AppState,
    pbx: Option<&str>,
    ext: &str,
    setting: Setting,
    value: Option<&str>,
) -> Result<Json<Forwarding>, ApiError> {
    let (pbx, client) = state.extension_on(pbx, ext)?;
    let style = state.extensions.style;
    let stored = extensions::change(&client, style, ext, setting, value).await?;
    let parties = vec![ext.to_owned()];
    state.publish_extension(&pbx, ExtensionChange::Forwarding(stored.clone()), parties);
    Ok(Json(stored))
}

/// `POST /api/v1/queues/{queue}/members/{member}/pause` body (optional: no reason).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why (`PausedReason` in queue_log and the queue events).
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/queues/{queue}/members/{member}/pause`; `member` is an extension or the
/// member interface (`Local%2F201%40from-queue%2Fn`).
pub async fn pause(
    State(state): State<AppState>,
    Path((queue, member)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PbxQuery>,
    body: axum::body::Bytes,
) -> Result<Json<QueuePause>, ApiError> {
    let reason = if body.is_empty() {
        String::new()
    } else {
        serde_json::from_slice::<PauseRequest>(&body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("body: {e}")))?
            .reason
    };
    queue_pause(&state, q.pbx.as_deref(), &queue, &member, true, &reason).await
}

/// `POST /api/v1/queues/{queue}/members/{member}/unpause`.
pub async fn unpause(
    State(state): State<AppState>,
    Path((queue, member)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PbxQuery>,
) -> Result<Json<QueuePause>, ApiError> {
    queue_pause(&state, q.pbx.as_deref(), &queue, &member, false, "").await
}

async fn queue_pause(
    state: &AppState,
    pbx: Option<&str>,
    queue: &str,
    member: &str,
    paused: bool,
    reason: &str,
) -> Result<Json<QueuePause>, ApiError> {
    extensions::check_reason(reason)?;
    let (pbx, client) = state.pick_pbx(pbx)?;
    let interface = {
        let all = state.presence.lock().expect("presence lock poisoned");
        let none = Presence::new();
        extensions::queue_interface(all.get(&pbx).unwrap_or(&none), &pbx, queue, member)?
    };
    let done = extensions::queue_pause(&client, &pbx, queue, &interface, paused, reason).await?;
    Ok(Json(done))
}

#[cfg(test)]
mod tests;
