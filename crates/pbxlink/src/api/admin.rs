//! The web UI's operator pages: CRM deliveries (outbox) with retry, the settings (secrets
//! masked), and the FreePBX module releases the release server offers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{OutboxFilter, OutboxStatus, Requeue};

use super::edge::ApiQuery;
use super::{ApiError, AppState, DEFAULT_PAGE, MAX_PAGE};

#[derive(Debug, Deserialize)]
pub(super) struct OutboxQuery {
    /// Rows of this call (Linkedid).
    call: Option<String>,
    /// pending, in_flight, delivered or dead.
    state: Option<String>,
    /// Rows of this connector (`[[crm]] name`).
    crm: Option<String>,
    /// Rows older than this id (the next page).
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/outbox`: deliveries, newest first, and per-CRM counts by state.
pub(super) async fn outbox(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OutboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = q
        .state
        .as_deref()
        .map(|s| {
            serde_json::from_value::<OutboxStatus>(Value::String(s.to_owned())).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown state {s:?}: expected pending, in_flight, delivered or dead"),
                )
            })
        })
        .transpose()?;
    let filter = OutboxFilter {
        status,
        connector: q.crm,
        call_id: q.call,
        before_id: q.before,
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let rows = state.store.list_outbox(&filter, limit).await?;
    let counts = state.store.outbox_counts().await?;
    // The payload is the CRM's request body: large, and shown by `pbxlink outbox` when needed.
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "crm": r.connector, "pbx": r.pbx, "call_id": r.call_id,
                "kind": r.kind, "state": r.status, "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at, "last_error": r.last_error,
                "created_at": r.created_at, "finished_at": r.finished_at,
            })
        })
        .collect();
    let counts: Vec<Value> = counts
        .into_iter()
        .map(|c| json!({ "crm": c.connector, "state": c.status, "rows": c.rows }))
        .collect();
    Ok(Json(json!({ "rows": rows, "counts": counts })))
}

/// `POST /api/v1/outbox/{id}/retry`: a dead delivery goes back in the queue, due now.
/// Open rows retry by themselves and delivered ones are done: 409 for those.
pub(super) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    if state
        .store
        .requeue_outbox(&Requeue::Row(id), Utc::now())
        .await?
        == 0
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("no dead delivery {id}: only dead ones are retried by hand"),
        ));
    }
    Ok(Json(json!({ "id": id, "state": OutboxStatus::Pending })))
}

/// `GET /api/v1/settings`: the running configuration, secrets masked.
pub(super) async fn settings(State(state): State<AppState>) -> Json<Value> {
    Json((*state.settings).clone())
}

/// `GET /api/v1/releases`: every module release, newest first, with its counters.
pub(super) async fn releases(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut releases = state.store.releases().await?;
    releases.sort_by_key(|r| std::cmp::Reverse(r.published_at));
    let releases: Vec<Value> = releases
        .into_iter()
        .map(|r| {
            json!({
                "rawname": r.release.rawname, "version": r.release.version,
                "channel": r.release.channel, "name": r.release.name,
                "published_at": r.published_at, "yanked_at": r.yanked_at,
                "downloads": r.downloads, "update_checks": r.update_checks,
                "size": r.release.size, "sha256": r.release.sha256,
                "signed": r.release.minisig.is_some(),
            })
        })
        .collect();
    Ok(Json(json!({ "releases": releases })))
}
