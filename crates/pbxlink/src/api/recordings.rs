//! Recordings over HTTP: a fresh signed link for a call (read scope), and the download behind
//! a link (no token: the signature is the credential). Range requests are answered by
//! tower-http's `ServeFile`.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use store::RecordingState;

use super::edge::ApiQuery;
use super::{ApiError, AppState};

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "recordings are not enabled: add a [recordings] section to the config",
    )
}

/// `GET /api/v1/calls/{id}/recording`: the call's recording and a link valid from now.
pub(super) async fn call_recording(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<super::CallQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let recordings = state.recordings.as_ref().ok_or_else(disabled)?;
    let call = state.store.get_call(&id, q.pbx.as_deref()).await?;
    let call =
        call.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no call {id:?}")))?;
    let row = state.store.recording(&call.pbx, &id).await?;
    let not_here = |why: String| ApiError::new(StatusCode::NOT_FOUND, why);
    let row = match (row, &call.record.recording) {
        (Some(row), _) => row,
        (None, Some(_)) => return Err(not_here("the recording is not converted yet".into())),
        (None, None) => return Err(not_here(format!("call {id:?} was not recorded"))),
    };
    match (row.state, row.sha256.as_deref()) {
        (RecordingState::Ready, Some(sha256)) => {
            let link = recordings.link(sha256, Utc::now());
            Ok(Json(serde_json::json!({
                "call_id": id,
                "pbx": call.pbx,
                "url": link.url,
                "expires_at": link.expires_at,
                "bytes": row.bytes,
                "duration_ms": row.duration_ms,
            })))
        }
        (RecordingState::Pending, _) => Err(not_here("the recording is not converted yet".into())),
        (RecordingState::Empty, _) => Err(not_here("the recording holds no audio".into())),
        (state, _) => Err(not_here(format!(
            "the recording is {}: {}",
            serde_json::to_value(state)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("gone"),
            row.error.unwrap_or_default()
        ))),
    }
}

/// `GET /recordings/{link}`: the MP3, if the link is genuine and unexpired (else 403).
pub(super) async fn download(
    State(state): State<AppState>,
    Path(link): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let recordings = state.recordings.as_ref().ok_or_else(disabled)?;
    let path = recordings.open(&link, Utc::now()).map_err(|e| {
        tracing::info!(error = %e, "recording link refused");
        ApiError::new(StatusCode::FORBIDDEN, e.to_string())
    })?;
    let served = tower_http::services::ServeFile::new(path)
        .try_call(req)
        .await;
    let mut response = served
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read a stored recording");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the recording",
            )
        })?
        .map(axum::body::Body::new);
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this recording was deleted (retention)",
        ));
    }
    // The link is the secret: no shared cache should keep the file.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response.into_response())
}

#[cfg(test)]
mod tests;
