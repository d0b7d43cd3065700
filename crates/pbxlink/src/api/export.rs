//! `GET /api/v1/calls` as CSV (`?format=csv` or `Accept: text/csv`), for spreadsheets and
//! CRMs that import call logs.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use calls::{CallRecord, Direction, Disposition};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::StoredCall;

use super::ApiError;

/// One CSV line: the record's flat fields (the story and transfers stay in the JSON).
#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    pbx: &'a str,
    direction: Direction,
    from: Option<String>,
    to: Option<String>,
    caller_name: Option<String>,
    started_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: DateTime<Utc>,
    ring_seconds: u64,
    talk_seconds: u64,
    disposition: Disposition,
    answered_by: Option<String>,
    queue: Option<String>,
}

impl<'a> Row<'a> {
    fn of(pbx: &'a str, r: &'a CallRecord) -> Self {
        Row {
            id: &r.id,
            pbx,
            direction: r.direction,
            from: r.from.as_deref().map(inert),
            to: r.to.as_deref().map(inert),
            caller_name: r.caller_name.as_deref().map(inert),
            started_at: r.started_at,
            answered_at: r.answered_at,
            ended_at: r.ended_at,
            ring_seconds: r.ring_seconds,
            talk_seconds: r.talk_seconds,
            disposition: r.disposition,
            answered_by: r.answered_by.as_deref().map(inert),
            queue: r.queue.as_deref().map(inert),
        }
    }
}

/// Caller names and numbers come from the outside world: a spreadsheet must not run one
/// (`=HYPERLINK(...)`) as a formula. A leading quote makes it text; `+7495...` stays a number.
fn inert(text: &str) -> String {
    let looks_like_formula = match text.as_bytes() {
        [b'=' | b'@' | b'\t' | b'\r', ..] => true,
        [b'+' | b'-', rest @ ..] => !rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if looks_like_formula {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// Whether the client asked for CSV.
pub fn wanted(format: Option<&str>, headers: &HeaderMap) -> bool {
    format == Some("csv")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))
}

/// The page as CSV; the next page's cursor goes in the `X-Next-Cursor` header.
pub fn csv_page(calls: &[StoredCall], next_cursor: Option<&str>) -> Result<Response, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for c in calls {
        out.serialize(Row::of(&c.pbx, &c.record))
            .map_err(internal)?;
    }
    let body = out.into_inner().map_err(|e| internal(e.into_error()))?;
    let mut resp = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert("x-next-cursor", cursor);
    }
    Ok(resp)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "CSV export failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "CSV export failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn numbers_stay_numbers_and_formulas_become_text() {
        let shown: Vec<String> = [
            "+74951234567",
            "-1",
            "=HYPERLINK(\"x\")",
            "@SUM(A1)",
            "+cmd",
            "Ivan",
        ]
        .into_iter()
        .map(inert)
        .collect();
        expect![[r#"+74951234567 | -1 | '=HYPERLINK("x") | '@SUM(A1) | '+cmd | Ivan"#]]
            .assert_eq(&shown.join(" | "));
    }
}
