//! FreePBX module releases (publish, yank, counts, audit) on SQLite and on PostgreSQL
//! (`PBXLINK_TEST_POSTGRES_URL`, set up by `scripts/test`); each run gets a fresh database.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, Executor as _};
use store::{NewRelease, ReleaseCounts, Store};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
}

fn release(version: &str) -> NewRelease {
    NewRelease {
        rawname: "pbxlink".into(),
        version: version.into(),
        channel: "stable".into(),
        name: "pbxlink CRM integration".into(),
        publisher: Some("pbxlink".into()),
        license: None,
        changelog: Some(format!("*{version}* fixes")),
        depends: Some(r#"{"version":["15.0"]}"#.into()),
        size: 1234,
        md5: "m".repeat(32),
        sha1: "s".repeat(40),
        sha256: version.repeat(8),
        location: None,
    }
}

async fn exercise(store: &Store) {
    assert!(store
        .publish_release(&release("1.0.0"), "cli:ci", at(0))
        .await
        .unwrap());
    assert!(store
        .publish_release(&release("1.1.0"), "api", at(1))
        .await
        .unwrap());
    // A version is never replaced.
    assert!(!store
        .publish_release(&release("1.1.0"), "api", at(2))
        .await
        .unwrap());
    assert!(store
        .yank_release("pbxlink", "1.0.0", "cli:ops", "broken", at(3))
        .await
        .unwrap());
    assert!(!store
        .yank_release("pbxlink", "1.0.0", "cli:ops", "again", at(4))
        .await
        .unwrap());
    assert!(!store
        .yank_release("pbxlink", "9.9", "cli:ops", "unknown", at(4))
        .await
        .unwrap());
    let counts = ReleaseCounts {
        rawname: "pbxlink".into(),
        version: "1.1.0".into(),
        downloads: 2,
        update_checks: 5,
    };
    store
        .add_release_counts(std::slice::from_ref(&counts))
        .await
        .unwrap();
    store.add_release_counts(&[counts]).await.unwrap();

    let releases = store.releases().await.unwrap();
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[0].release, release("1.0.0"));
    assert_eq!(releases[0].yanked_at, Some(at(3)));
    assert_eq!(releases[1].release, release("1.1.0"));
    assert_eq!((releases[1].downloads, releases[1].update_checks), (4, 10));
    assert_eq!(releases[1].published_at, at(1));

    let audit: Vec<String> = store
        .release_audit()
        .await
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} by {}: {}",
                e.at.timestamp() - at(0).timestamp(),
                e.action,
                e.rawname,
                e.version,
                e.actor,
                e.detail
            )
        })
        .collect();
    expect_test::expect![[r#"
        [
            "0 publish pbxlink 1.0.0 by cli:ci: channel stable sha256 1.0.01.0.01.0.01.0.01.0.01.0.01.0.01.0.0",
            "1 publish pbxlink 1.1.0 by api: channel stable sha256 1.1.01.1.01.1.01.1.01.1.01.1.01.1.01.1.0",
            "3 yank pbxlink 1.0.0 by cli:ops: broken",
        ]
    "#]]
    .assert_debug_eq(&audit);
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.unwrap();
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres() {
    let server = std::env::var("PBXLINK_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PBXLINK_TEST_POSTGRES_URL is not set: the release store tests need a PostgreSQL \
             server. Run scripts/test, which starts a throwaway one."
        )
    });
    let name = format!(
        "pbxlink_releases_{}_{}",
        std::process::id(),
        rand::random::<u64>()
    );
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&server).await.unwrap();
    admin
        .execute(&*format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    let store = Store::connect(url.as_str()).await.unwrap();
    exercise(&store).await;
    store.close().await;
    admin
        .execute(&*format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
