//! `[pbx.cdr]`: where a PBX keeps its CDR (a cdr_csv / cdr_custom Master.csv, or FreePBX's
//! MySQL/MariaDB `asteriskcdrdb.cdr`), and reading the rows of given calls or of a time
//! range from it. What the rows mean is `calls::cdr`; this is only the I/O.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context as _;
use calls::cdr::read_csv;
use calls::{CdrRow, CdrZone, CsvLayout};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::Deserialize;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::Row as _;

use crate::secret::Secret;

/// `[pbx.cdr]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrConfig {
    /// `csv` (bare Asterisk) or `mysql` (FreePBX).
    pub kind: CdrKind,
    /// `csv`: the Master.csv of cdr_csv or cdr_custom.
    pub path: Option<PathBuf>,
    /// `csv`: cdr_custom's mapping as its `CDR(...)` names in order (`_` skips a field);
    /// unset: the file is cdr_csv's (with `newcdrcolumns = yes`).
    pub columns: Option<Vec<String>>,
    /// `mysql`: `mysql://user:password@host/asteriskcdrdb`. Prefer `url_env`.
    pub url: Option<Secret>,
    /// `mysql`: the environment variable holding the URL.
    pub url_env: Option<String>,
    /// `mysql`: the CDR table.
    #[serde(default = "default_table")]
    pub table: String,
    /// Zone of the CDR's times: `utc` (cdr_csv with `usegmtime = yes`), `local` (this
    /// host's: cdr_custom and MySQL write the PBX's local time), or an offset like `+03:00`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

/// Where the CDR is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdrKind {
    Csv,
    Mysql,
}

fn default_table() -> String {
    "cdr".into()
}

fn default_timezone() -> String {
    "utc".into()
}

impl CdrConfig {
    /// What is wrong with the section, as (key, message); pure (no files, no environment).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.zone() {
            out.push(("timezone", e));
        }
        match self.kind {
            CdrKind::Csv => {
                if self.path.is_none() {
                    out.push(("kind", "kind = \"csv\" needs `path` (Master.csv)".into()));
                }
                if let Err(e) = self.layout() {
                    out.push(("columns", e));
                }
            }
            CdrKind::Mysql => {
                if self.url.is_none() == self.url_env.is_none() {
                    out.push((
                        "kind",
                        "kind = \"mysql\" needs one of `url` or `url_env`".into(),
                    ));
                }
                let identifier = |s: &str| {
                    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                };
                if !self.table.split('.').all(identifier) {
                    out.push((
                        "table",
                        format!("table '{}' is not a table name", self.table),
                    ));
                }
            }
        }
        out
    }

    fn zone(&self) -> Result<CdrZone, String> {
        match self.timezone.as_str() {
            "utc" | "UTC" => Ok(CdrZone::Utc),
            "local" => Ok(CdrZone::Local),
            offset => offset
                .parse::<FixedOffset>()
                .map(CdrZone::Fixed)
                .map_err(|_| {
                    format!("timezone '{offset}': expected utc, local or an offset like +03:00")
                }),
        }
    }

    fn layout(&self) -> Result<CsvLayout, String> {
        match &self.columns {
            None => Ok(CsvLayout::CdrCsv),
            Some(columns) => CsvLayout::custom(columns),
        }
    }

    /// The MySQL URL: `url`, else the variable `url_env` names.
    pub fn resolve_url(&self, env: impl Fn(&str) -> Option<String>) -> Result<Secret, String> {
        match (&self.url, &self.url_env) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(var)) => env(var)
                .map(Secret::new)
                .ok_or_else(|| format!("environment variable {var} (url_env) is not set")),
            (None, None) => Err("no `url` or `url_env`".into()),
        }
    }
}

/// A PBX's CDR, ready to read.
#[derive(Debug)]
pub enum CdrSource {
    Csv {
        path: PathBuf,
        layout: CsvLayout,
        zone: CdrZone,
    },
    Mysql {
        /// Connects at the first query: a CDR database that is down must not keep the PBX
        /// from being tracked.
        pool: MySqlPool,
        table: String,
        zone: CdrZone,
    },
}

/// The columns read from FreePBX's table (it has no answer or end: they are derived).
const MYSQL_COLUMNS: &str = "calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp, \
    lastdata, duration, billsec, disposition, amaflags, accountcode, uniqueid, userfield, did, \
    recordingfile, cnum, cnam, linkedid, peeraccount, sequence";

/// Rows one CSV scan or MySQL query may return: a bound on memory, far above any gap's.
const MAX_ROWS: usize = 100_000;

impl CdrSource {
    /// The reader for a checked `[pbx.cdr]`; the process environment for `url_env`.
    pub fn new(config: &CdrConfig) -> anyhow::Result<CdrSource> {
        let zone = config.zone().map_err(anyhow::Error::msg)?;
        Ok(match config.kind {
            CdrKind::Csv => CdrSource::Csv {
                path: config.path.clone().context("[pbx.cdr] path")?,
                layout: config.layout().map_err(anyhow::Error::msg)?,
                zone,
            },
            CdrKind::Mysql => {
                let url = config
                    .resolve_url(|var| std::env::var(var).ok())
                    .map_err(anyhow::Error::msg)?;
                CdrSource::Mysql {
                    pool: MySqlPoolOptions::new()
                        .max_connections(2)
                        .connect_lazy(url.expose())
                        .context("[pbx.cdr] url")?,
                    table: config.table.clone(),
                    zone,
                }
            }
        })
    }

    /// Every row of these calls.
    pub async fn rows_of(&self, linkedids: &[String]) -> anyhow::Result<Vec<CdrRow>> {
        if linkedids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            CdrSource::Csv { .. } => {
                let wanted: HashSet<String> = linkedids.iter().cloned().collect();
                self.scan(move |row| wanted.contains(&row.linkedid)).await
            }
            CdrSource::Mysql { pool, table, zone } => {
                let marks = vec!["?"; linkedids.len()].join(", ");
                let sql =
                    format!("SELECT {MYSQL_COLUMNS} FROM {table} WHERE linkedid IN ({marks})");
                let mut query = sqlx::query(&sql);
                for id in linkedids {
                    query = query.bind(id);
                }
                let rows = query.fetch_all(pool).await?;
                rows.iter().map(|r| mysql_row(r, *zone)).collect()
            }
        }
    }

    /// The rows of legs that began between `from` and `to` (bounds included).
    pub async fn rows_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<Vec<CdrRow>> {
        match self {
            CdrSource::Csv { .. } => {
                self.scan(move |row| from <= row.start && row.start <= to)
                    .await
            }
            CdrSource::Mysql { pool, table, zone } => {
                let sql = format!(
                    "SELECT {MYSQL_COLUMNS} FROM {table} WHERE calldate BETWEEN ? AND ? LIMIT {MAX_ROWS}"
                );
                let rows = sqlx::query(&sql)
                    .bind(zone.from_utc(from))
                    .bind(zone.from_utc(to))
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| mysql_row(r, *zone)).collect()
            }
        }
    }

    /// The rows of the CSV file `keep` wants, read line by line on a blocking thread (the
    /// file may be large; only the rows kept are held). Lines that do not parse are logged
    /// and skipped: one bad line must not hide the others.
    async fn scan(
        &self,
        keep: impl Fn(&CdrRow) -> bool + Send + 'static,
    ) -> anyhow::Result<Vec<CdrRow>> {
        let CdrSource::Csv { path, layout, zone } = self else {
            unreachable!("scan reads CSV sources only")
        };
        let (path, layout, zone) = (path.clone(), layout.clone(), *zone);
        tokio::task::spawn_blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                // Asterisk creates Master.csv with its first row: a new PBX has none yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot open the CDR file {}", path.display()))
                }
            };
            let mut rows = Vec::new();
            for row in read_csv(std::io::BufReader::new(file), &layout, zone) {
                match row {
                    Ok(row) if keep(&row) && rows.len() < MAX_ROWS => rows.push(row),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(file = %path.display(), error = e, "CDR line skipped"),
                }
            }
            Ok(rows)
        })
        .await?
    }
}

/// A row of FreePBX's `cdr` table. Text columns may be NULL in tables made by hand.
fn mysql_row(row: &MySqlRow, zone: CdrZone) -> anyhow::Result<CdrRow> {
    let text = |column: &str| -> anyhow::Result<String> {
        Ok(row
            .try_get::<Option<String>, _>(column)?
            .unwrap_or_default())
    };
    let count = |column: &str| -> anyhow::Result<u64> {
        Ok(u64::try_from(row.try_get::<Option<i64>, _>(column)?.unwrap_or(0)).unwrap_or(0))
    };
    let calldate: NaiveDateTime = row.try_get("calldate")?;
    let mut cdr = CdrRow {
        start: zone
            .to_utc(calldate)
            .with_context(|| format!("calldate {calldate} is not a time of the PBX's zone"))?,
        clid: text("clid")?,
        src: text("src")?,
        dst: text("dst")?,
        dcontext: text("dcontext")?,
        channel: text("channel")?,
        dstchannel: text("dstchannel")?,
        lastapp: text("lastapp")?,
        lastdata: text("lastdata")?,
        duration: count("duration")?,
        billsec: count("billsec")?,
        disposition: text("disposition")?,
        amaflags: count("amaflags")?.to_string(),
        accountcode: text("accountcode")?,
        uniqueid: text("uniqueid")?,
        userfield: text("userfield")?,
        did: text("did")?,
        recordingfile: text("recordingfile")?,
        cnum: text("cnum")?,
        cnam: text("cnam")?,
        linkedid: text("linkedid")?,
        peeraccount: text("peeraccount")?,
        sequence: count("sequence")?,
        ..CdrRow::default()
    };
    cdr.derive_answer_and_end();
    Ok(cdr)
}

#[cfg(test)]
mod tests;
