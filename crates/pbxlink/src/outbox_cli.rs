//! `pbxlink crm test NAME` (a CRM's connectivity and credentials) and `pbxlink outbox
//! list|retry|purge` (the deliveries waiting, done and dead).

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Local, TimeDelta, TimeZone, Utc};
use comfy_table::{presets, Table};
use store::{OutboxCount, OutboxFilter, OutboxRow, OutboxStatus, Purge, Requeue, Store};

use delivery::outbox::Crm;

use crate::calls_cli::{name, plain_table};
use crate::config::Config;

/// `pbxlink crm ...`.
#[derive(Debug, clap::Args)]
pub struct CrmArgs {
    #[command(subcommand)]
    command: CrmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CrmCommand {
    /// Send one harmless request to the `[[crm]]` named NAME and report what it answered.
    Test {
        /// The connector's `name` in the config file.
        name: String,
    },
}

/// Runs a `pbxlink crm` command.
pub async fn run(config: &Config, args: CrmArgs) -> anyhow::Result<()> {
    let CrmCommand::Test { name } = args.command;
    let known: Vec<&str> = config.crm.iter().map(|c| c.name()).collect();
    let section = config
        .crm
        .iter()
        .find(|c| c.name() == name)
        .with_context(|| format!("no [[crm]] named {name:?} (configured: {known:?})"))?;
    let crm = Crm::from_config(section)?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()?;
    match crm.test(&http).await {
        Ok(outcome) => {
            println!("{name}: ok: {outcome}");
            Ok(())
        }
        Err(error) => anyhow::bail!("{name}: {error}"),
    }
}

/// `pbxlink outbox ...`: what waits for the CRMs, what died, and what to do about it.
#[derive(Debug, clap::Args)]
pub struct OutboxArgs {
    /// Database (sqlx URL) instead of the config's (`[database] url`, else SQLite in `data_dir`).
    #[arg(long, global = true, env = "PBXLINK_DATABASE_URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OutboxCommand {
    /// List deliveries, newest first, and how many each CRM has in each state.
    List {
        /// pending, in_flight, delivered or dead.
        #[arg(long, value_parser = parse_status)]
        state: Option<OutboxStatus>,
        /// Only this connector's rows (its `[[crm]]` name).
        #[arg(long)]
        crm: Option<String>,
        /// Only this call's rows (its id, the Linkedid).
        #[arg(long)]
        call: Option<String>,
        /// Rows per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page (printed at its end).
        #[arg(long)]
        before: Option<i64>,
        /// Print JSON Lines (one row per line) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead rows back in the queue: due now, attempts reset, 24 h dead-letter clock restarted.
    Retry {
        /// The row's id (first column of `outbox list`).
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<i64>,
        /// Every dead row (of `--crm`, when given).
        #[arg(long)]
        all_dead: bool,
        /// With --all-dead: only this connector's rows.
        #[arg(long, conflicts_with = "id")]
        crm: Option<String>,
    },
    /// Delete finished rows: delivered ones older than a duration, or dead ones.
    Purge {
        /// Delivered more than this long ago: `90s`, `45m`, `12h`, `30d`, `2w`.
        #[arg(long, value_parser = parse_age, required_unless_present = "dead", conflicts_with = "dead")]
        delivered_before: Option<TimeDelta>,
        /// Every dead row.
        #[arg(long)]
        dead: bool,
        /// Only this connector's rows.
        #[arg(long)]
        crm: Option<String>,
    },
}

/// Runs a `pbxlink outbox` command against the configured database, printing to stdout.
pub async fn run_outbox(config: &Config, args: OutboxArgs) -> anyhow::Result<()> {
    let url = args.database.unwrap_or_else(|| config.database_url());
    let store = crate::calls_cli::open(&url).await?;
    let out = outbox_command(&store, args.command, Utc::now()).await;
    store.close().await;
    print!("{}", out?);
    Ok(())
}

async fn outbox_command(
    store: &Store,
    command: OutboxCommand,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    match command {
        OutboxCommand::List {
            state,
            crm,
            call,
            limit,
            before,
            json,
        } => {
            let filter = OutboxFilter {
                status: state,
                connector: crm,
                call_id: call,
                before_id: before,
            };
            let rows = store.list_outbox(&filter, limit).await?;
            if json {
                return Ok(rows
                    .iter()
                    .map(|row| format!("{}\n", row_json(row)))
                    .collect());
            }
            let mut out = rows_table(&rows, &Local);
            if rows.len() == limit as usize {
                if let Some(last) = rows.last() {
                    let _ = writeln!(out, "more: --before {}", last.id);
                }
            }
            out.push_str(&counts_text(&store.outbox_counts().await?));
            Ok(out)
        }
        OutboxCommand::Retry { id, all_dead, crm } => {
            let which = match id {
                Some(id) if !all_dead => Requeue::Row(id),
                _ => Requeue::AllDead { connector: crm },
            };
            let requeued = store.requeue_outbox(&which, now).await?;
            if let (Requeue::Row(id), 0) = (&which, requeued) {
                bail!("no dead outbox row with id {id} (only dead rows are retried)");
            }
            Ok(format!("requeued {requeued} row(s)\n"))
        }
        OutboxCommand::Purge {
            delivered_before,
            dead,
            crm,
        } => {
            let which = match delivered_before {
                Some(age) if !dead => Purge::DeliveredBefore {
                    cutoff: now - age,
                    connector: crm,
                },
                _ => Purge::Dead { connector: crm },
            };
            Ok(format!(
                "purged {} row(s)\n",
                store.purge_outbox(&which).await?
            ))
        }
    }
}

/// A row as one JSON object (what `--json` prints, one per line).
fn row_json(row: &OutboxRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "crm": row.connector,
        "pbx": row.pbx,
        "call_id": row.call_id,
        "kind": row.kind,
        "state": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at,
        "lease_owner": row.lease_owner,
        "lease_until": row.lease_until,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "idempotency_key": row.idempotency_key,
        "payload": row.payload,
    })
}

fn rows_table<Tz: TimeZone>(rows: &[OutboxRow], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if rows.is_empty() {
        return "no outbox rows\n".to_owned();
    }
    let time = |at: DateTime<Utc>| at.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header([
        "ID", "STATE", "CRM", "KIND", "TRIES", "WHEN", "CALL", "ERROR",
    ]);
    for row in rows {
        // Open rows: when they are (next) due; finished rows: when they finished.
        let when = match row.status {
            OutboxStatus::Pending => time(row.next_attempt_at),
            OutboxStatus::InFlight => row.lease_until.map(time).unwrap_or_default(),
            OutboxStatus::Delivered | OutboxStatus::Dead => {
                row.finished_at.map(time).unwrap_or_default()
            }
        };
        let error = row.last_error.as_deref().unwrap_or_default();
        table.add_row([
            row.id.to_string(),
            name(&row.status),
            row.connector.clone(),
            row.kind.clone(),
            row.attempts.to_string(),
            when,
            format!("{}/{}", row.pbx, row.call_id),
            error.chars().take(80).collect(),
        ]);
    }
    plain_table(&mut table)
}

fn counts_text(counts: &[OutboxCount]) -> String {
    let mut by_crm: Vec<(&str, Vec<String>)> = Vec::new();
    for count in counts {
        let state = format!("{} {}", count.rows, name(&count.status));
        match by_crm.last_mut() {
            Some((crm, states)) if *crm == count.connector => states.push(state),
            _ => by_crm.push((&count.connector, vec![state])),
        }
    }
    by_crm
        .iter()
        .map(|(crm, states)| format!("{crm}: {}\n", states.join(", ")))
        .collect()
}

fn parse_status(text: &str) -> Result<OutboxStatus, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("unknown state {text:?}: use pending, in_flight, delivered or dead"))
}

/// `90s`, `45m`, `12h`, `30d`, `2w`.
fn parse_age(text: &str) -> Result<TimeDelta, String> {
    let bad = || format!("cannot read {text:?} as a duration: use 90s, 45m, 12h, 30d or 2w");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        _ => None,
    };
    age.filter(|age| *age >= TimeDelta::zero()).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use calls::{CallRecord, Direction, Disposition};
    use chrono::FixedOffset;
    use clap::Parser as _;
    use expect_test::{expect, Expect};
    use store::{Failure, NewOutboxRow};

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    fn call(id: &str) -> CallRecord {
        CallRecord {
            id: id.into(),
            direction: Direction::Inbound,
            from: Some("+74951234567".into()),
            to: Some("84950000000".into()),
            caller_name: None,
            started_at: at(0),
            answered_at: None,
            ended_at: at(20),
            ring_seconds: 20,
            talk_seconds: 0,
            disposition: Disposition::NoAnswer,
            answered_by: None,
            rang: vec!["201".into()],
            transfers: Vec::new(),
            queue: None,
            recording: None,
            legs: Vec::new(),
            provenance: Default::default(),
            timeline: Vec::new(),
        }
    }

    /// `pbxlink outbox ARGS...` parsed as the binary would.
    fn parse(args: &str) -> Result<OutboxCommand, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            outbox: OutboxArgs,
        }
        let argv = std::iter::once("outbox").chain(args.split_whitespace());
        Cli::try_parse_from(argv).map(|cli| cli.outbox.command)
    }

    /// A store with one call: b24 `register` delivered, b24 `finish` dead, `erp` pending.
    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        let row = |crm: &str, kind: &str| NewOutboxRow {
            connector: crm.into(),
            kind: kind.into(),
            payload: serde_json::json!({}),
            idempotency_key: format!("{crm}:office:1764000000.1:{kind}"),
        };
        let rows = [
            row("b24", "register"),
            row("b24", "finish"),
            row("erp", "call.ended"),
        ];
        let call = call("1764000000.1");
        store
            .save_call("office", &call, &rows, at(20))
            .await
            .unwrap();
        let lease = TimeDelta::seconds(60);
        let claimed = store.claim_outbox("w", 2, lease, at(21)).await.unwrap();
        assert!(store
            .mark_delivered(claimed[0].id, "w", at(22))
            .await
            .unwrap());
        let error = "permanent: HTTP 400: {\"error\":\"ERROR_ARGUMENT\"}";
        let dead = store
            .mark_failed(claimed[1].id, "w", Failure::Permanent, error, at(23))
            .await;
        assert!(dead.unwrap());
        store
    }

    async fn check(store: &Store, args: &str, expected: Expect) {
        let out = match outbox_command(store, parse(args).unwrap(), at(100)).await {
            Ok(out) => out,
            Err(e) => format!("error: {e}\n"),
        };
        expected.assert_eq(&out);
    }

    #[tokio::test]
    async fn list_retry_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let utc3 = FixedOffset::east_opt(3 * 3600).unwrap();
        let all = store
            .list_outbox(&OutboxFilter::default(), 10)
            .await
            .unwrap();
        expect![[r#"
            ID  STATE      CRM  KIND        TRIES  WHEN                 CALL                 ERROR
            3   pending    erp  call.ended  0      2025-11-24 19:00:20  office/1764000000.1
            2   dead       b24  finish      1      2025-11-24 19:00:23  office/1764000000.1  permanent: HTTP 400: {"error":"ERROR_ARGUMENT"}
            1   delivered  b24  register    1      2025-11-24 19:00:22  office/1764000000.1
        "#]]
        .assert_eq(&rows_table(&all, &utc3));
        expect![[r#"
            b24: 1 dead, 1 delivered
            erp: 1 pending
        "#]]
        .assert_eq(&counts_text(&store.outbox_counts().await.unwrap()));

        check(
            &store,
            "list --state dead --json",
            expect![[r#"
                {"attempts":1,"call_id":"1764000000.1","created_at":"2025-11-24T16:00:20Z","crm":"b24","finished_at":"2025-11-24T16:00:23Z","id":2,"idempotency_key":"b24:office:1764000000.1:finish","kind":"finish","last_error":"permanent: HTTP 400: {\"error\":\"ERROR_ARGUMENT\"}","lease_owner":null,"lease_until":null,"next_attempt_at":"2025-11-24T16:00:20Z","payload":{},"pbx":"office","state":"dead"}
            "#]],
        )
        .await;
        check(
            &store,
            "list --crm nobody",
            expect![[r#"
            no outbox rows
            b24: 1 dead, 1 delivered
            erp: 1 pending
        "#]],
        )
        .await;
        check(
            &store,
            "retry 1",
            expect![[r#"
                error: no dead outbox row with id 1 (only dead rows are retried)
            "#]],
        )
        .await;
        check(
            &store,
            "retry --all-dead --crm erp",
            expect![[r#"
            requeued 0 row(s)
        "#]],
        )
        .await;
        check(
            &store,
            "retry 2",
            expect![[r#"
            requeued 1 row(s)
        "#]],
        )
        .await;
        check(
            &store,
            "purge --delivered-before 1m",
            expect![[r#"
            purged 1 row(s)
        "#]],
        )
        .await;
        check(
            &store,
            "purge --dead",
            expect![[r#"
            purged 0 row(s)
        "#]],
        )
        .await;
        let left: Vec<_> = store
            .list_outbox(&OutboxFilter::default(), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    name(&r.status),
                    r.attempts,
                    r.next_attempt_at == at(100),
                )
            })
            .collect();
        expect![[r#"[(3, "pending", 0, false), (2, "pending", 0, true)]"#]]
            .assert_eq(&format!("{left:?}"));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let errors: Vec<_> = [
            "list --state lost",
            "retry",
            "retry 3 --all-dead",
            "retry 3 --crm b24",
            "purge",
            "purge --dead --delivered-before 1d",
            "purge --delivered-before 3y",
        ]
        .iter()
        .map(|args| format!("{args}: {:?}", parse(args).err().map(|e| e.kind())))
        .collect();
        expect![[r#"
            [
                "list --state lost: Some(ValueValidation)",
                "retry: Some(MissingRequiredArgument)",
                "retry 3 --all-dead: Some(ArgumentConflict)",
                "retry 3 --crm b24: Some(ArgumentConflict)",
                "purge: Some(MissingRequiredArgument)",
                "purge --dead --delivered-before 1d: Some(ArgumentConflict)",
                "purge --delivered-before 3y: Some(ValueValidation)",
            ]
        "#]]
        .assert_debug_eq(&errors);
        let ages: Vec<_> = ["90s", "45m", "12h", "30d", "2w", "-1d", "d", ""]
            .iter()
            .map(|age| parse_age(age).map(|a| a.num_seconds()))
            .collect();
        expect![[r#"
            [
                Ok(
                    90,
                ),
                Ok(
                    2700,
                ),
                Ok(
                    43200,
                ),
                Ok(
                    2592000,
                ),
                Ok(
                    1209600,
                ),
                Err(
                    "cannot read \"-1d\" as a duration: use 90s, 45m, 12h, 30d or 2w",
                ),
                Err(
                    "cannot read \"d\" as a duration: use 90s, 45m, 12h, 30d or 2w",
                ),
                Err(
                    "cannot read \"\" as a duration: use 90s, 45m, 12h, 30d or 2w",
                ),
            ]
        "#]]
        .assert_debug_eq(&ages);
    }
}
