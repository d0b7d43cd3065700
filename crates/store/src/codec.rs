//! Conversions between Rust values and the integer/text columns both backends share.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Result, StoreError};

/// A timestamp as stored: microseconds since the Unix epoch.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    // chrono's whole range (±262k years) fits in i64 microseconds (±292k years).
    at.timestamp_micros()
}

/// A stored timestamp read back.
pub(crate) fn from_micros(what: &'static str, us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt {
        what,
        detail: format!("{us} is not a timestamp"),
    })
}

/// A count as stored (the databases have no unsigned 64-bit integer).
pub(crate) fn to_i64(what: &'static str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::OutOfRange {
        what,
        detail: n.to_string(),
    })
}

/// A stored count read back.
pub(crate) fn to_u64(what: &'static str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("negative count {n}"),
    })
}

/// A value as JSON text.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain data (strings, numbers, derived structs) into a String cannot fail.
    serde_json::to_string(value).unwrap_or_else(|e| unreachable!("serializing to JSON: {e}"))
}

/// JSON text read back.
pub(crate) fn from_json<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// A unit-variant enum (`Direction`, `Disposition`, ...) as its serde name (`no_answer`).
pub(crate) fn to_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => unreachable!("enum does not serialize to a name: {other:?}"),
    }
}

/// A stored enum name read back.
pub(crate) fn from_name<T: DeserializeOwned>(what: &'static str, name: String) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name)).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}
