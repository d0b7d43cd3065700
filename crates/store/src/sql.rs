//! SQL built at run time (journal filters, multi-row inserts) with numbered `$N` placeholders.
//!
//! sqlx's `QueryBuilder` writes `?` placeholders for the `Any` driver, which PostgreSQL rejects;
//! `$N` is understood by both PostgreSQL and SQLite.

use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// One bound value: the store only ever binds integers and text, possibly NULL.
#[derive(Debug)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}

/// SQL text and the values its placeholders stand for.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    /// Starts with fixed text.
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends fixed text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        // Writing to a String cannot fail.
        let _ = write!(self.text, "${}", self.values.len());
        self
    }

    /// Appends `(v1, v2, ...)`: one row of a multi-row `VALUES` list.
    pub(crate) fn bind_row(&mut self, row: impl IntoIterator<Item = Value>) -> &mut Self {
        self.push("(");
        for (i, value) in row.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    /// The statement, ready to run.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        self.values
            .iter()
            .fold(sqlx::query(&self.text), |q, value| match value {
                Value::Int(v) => q.bind(*v),
                Value::Text(v) => q.bind(v.as_deref()),
            })
    }
}
