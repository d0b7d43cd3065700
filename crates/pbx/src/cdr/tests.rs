use super::*;
use calls::cdr::record_from_cdr;
use calls::TrackerConfig;

use crate::testing::cdr_fixture_config as fixture_config;

#[test]
fn section_problems() {
    let problems = |text: &str| toml::from_str::<CdrConfig>(text).unwrap().problems();
    assert_eq!(
        problems("kind = \"mysql\"\ntable = \"cdr; DROP\"\ntimezone = \"Europe/Moscow\""),
        [
            (
                "timezone",
                "timezone 'Europe/Moscow': expected utc, local or an offset like +03:00".into()
            ),
            (
                "kind",
                "kind = \"mysql\" needs one of `url` or `url_env`".into()
            ),
            ("table", "table 'cdr; DROP' is not a table name".into()),
        ]
    );
    assert_eq!(
        problems("kind = \"csv\"\ncolumns = [\"start\"]"),
        [
            ("kind", "kind = \"csv\" needs `path` (Master.csv)".into()),
            ("columns", "columns lack 'linkedid'".into()),
        ]
    );
}

/// FreePBX's `asteriskcdrdb.cdr` on a real MariaDB (scripts/test starts one): the fixture's
/// rows loaded as a PBX writes them, read by the read-only user, give the records the CSV
/// of the same calls gives.
#[tokio::test]
async fn freepbx_mysql_table_gives_the_csv_s_records() {
    let (Ok(loader), Ok(reader)) = (
        std::env::var("PBXLINK_TEST_MYSQL_URL"),
        std::env::var("PBXLINK_TEST_MYSQL_READER_URL"),
    ) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PBXLINK_TEST_MYSQL_URL and PBXLINK_TEST_MYSQL_READER_URL must be set in CI (scripts/test sets them)"
        );
        eprintln!("skipped: no PBXLINK_TEST_MYSQL_URL (scripts/test starts a MariaDB)");
        return;
    };
    let csv = CdrSource::new(&fixture_config("asterisk-22-pjsip")).unwrap();
    let (first, last) = (
        "2026-11-22T00:00:00Z".parse().unwrap(),
        "2026-11-23T00:00:00Z".parse().unwrap(),
    );
    let rows = csv.rows_between(first, last).await.unwrap();
    let mut ids: Vec<String> = rows.iter().map(|r| r.linkedid.clone()).collect();
    ids.dedup();

    let pool = MySqlPoolOptions::new().connect(&loader).await.unwrap();
    let marks = vec!["?"; ids.len()].join(", ");
    let delete = format!("DELETE FROM cdr WHERE linkedid IN ({marks})");
    let mut query = sqlx::query(&delete);
    for id in &ids {
        query = query.bind(id);
    }
    query.execute(&pool).await.unwrap();
    for r in &rows {
        sqlx::query(&format!(
            "INSERT INTO cdr ({MYSQL_COLUMNS}) VALUES ({})",
            vec!["?"; 23].join(", ")
        ))
        .bind(r.start.naive_utc())
        .bind(&r.clid)
        .bind(&r.src)
        .bind(&r.dst)
        .bind(&r.dcontext)
        .bind(&r.channel)
        .bind(&r.dstchannel)
        .bind(&r.lastapp)
        .bind(&r.lastdata)
        .bind(r.duration as i64)
        .bind(r.billsec as i64)
        .bind(&r.disposition)
        .bind(3_i64) // DOCUMENTATION
        .bind(&r.accountcode)
        .bind(&r.uniqueid)
        .bind(&r.userfield)
        .bind(&r.did)
        .bind(&r.recordingfile)
        .bind(&r.cnum)
        .bind(&r.cnam)
        .bind(&r.linkedid)
        .bind(&r.peeraccount)
        .bind(r.sequence as i64)
        .execute(&pool)
        .await
        .unwrap();
    }

    let mysql = CdrSource::new(
        &toml::from_str::<CdrConfig>(&format!("kind = \"mysql\"\nurl = \"{reader}\"")).unwrap(),
    )
    .unwrap();
    let CdrSource::Mysql { pool: reader, .. } = &mysql else {
        unreachable!()
    };
    assert!(
        sqlx::query("DELETE FROM cdr")
            .execute(reader)
            .await
            .is_err(),
        "the reader may only SELECT"
    );
    assert_eq!(
        mysql.rows_between(first, last).await.unwrap().len(),
        rows.len()
    );
    let config = TrackerConfig::default();
    let from_mysql = mysql.rows_of(&ids).await.unwrap();
    for id in &ids {
        let (mut got, mut want) = (
            record_from_cdr(&from_mysql, id, &config).unwrap(),
            record_from_cdr(&rows, id, &config).unwrap(),
        );
        // The table has no answer or end column: derived from `calldate`, `duration` and
        // `billsec` (whole seconds, truncated), they may be a second off what cdr_custom writes.
        let near = |a: i64, b: i64| (a - b).abs() <= 1;
        let secs = |t: Option<DateTime<Utc>>| t.map_or(0, |t| t.timestamp());
        assert!(
            near(got.ended_at.timestamp(), want.ended_at.timestamp()),
            "call {id}"
        );
        assert!(
            near(secs(got.answered_at), secs(want.answered_at)),
            "call {id}"
        );
        assert!(
            near(got.ring_seconds as i64, want.ring_seconds as i64),
            "call {id}"
        );
        assert!(
            near(got.talk_seconds as i64, want.talk_seconds as i64),
            "call {id}"
        );
        for r in [&mut got, &mut want] {
            (r.ended_at, r.ring_seconds, r.talk_seconds) = (r.started_at, 0, 0);
            r.answered_at = r.answered_at.map(|_| r.started_at);
            r.timeline.retain(|e| e.what == "started");
        }
        assert_eq!(got, want, "call {id}");
    }
    assert_eq!(ids.len(), 17);
}
