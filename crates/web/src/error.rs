//! The one error type at the HTTP edge: a status and a message, as JSON; and what each
//! lower crate's errors become there.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pbx::ami_client::AmiError;
use pbx::control::ControlError;
use pbx::extensions::{BadInput, PbxError};

/// The one error type at the HTTP edge: a status and a message, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}

impl From<AmiError> for ApiError {
    fn from(e: AmiError) -> Self {
        ApiError::new(StatusCode::BAD_GATEWAY, format!("PBX: {e}"))
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::BadInput(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Refused(_) => StatusCode::BAD_GATEWAY,
            ControlError::Link(e) => return e.into(),
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::BadCursor(_) | store::StoreError::Ambiguous { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "store failure in API handler");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "journal unavailable")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<BadInput> for ApiError {
    fn from(e: BadInput) -> Self {
        let status = match e {
            BadInput::Unknown { .. } | BadInput::NotMember { .. } => StatusCode::NOT_FOUND,
            BadInput::Malformed(_) | BadInput::Reason => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<PbxError> for ApiError {
    fn from(e: PbxError) -> Self {
        match e {
            PbxError::Ami(e) => e.into(),
            PbxError::Refused { .. } => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
}
