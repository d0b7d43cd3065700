//! FreePBX module releases (publish, yank, counts, audit) and the customers and licenses
//! gating them, on SQLite and on PostgreSQL
//! (`PBXLINK_TEST_POSTGRES_URL`, set up by `scripts/test`); each run gets a fresh database.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, Executor as _};
use store::{CustomerDownloads, InstallationSeen, License, NewRelease, ReleaseCounts, Store};

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
        minisig: (version == "1.1.0").then(|| "untrusted comment: sig\nRW...".into()),
    }
}

async fn exercise(store: &Store) {
    releases(store).await;
    customers(store).await;
}

async fn releases(store: &Store) {
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

fn license(customer: &str, valid_until: Option<DateTime<Utc>>) -> License {
    License {
        customer: customer.into(),
        rawname: "pbxlink".into(),
        channel: "beta".into(),
        valid_until,
        seats: 5,
        granted_at: at(10),
        revoked_at: None,
    }
}

async fn customers(store: &Store) {
    assert!(store
        .add_customer("acme", "hash-acme", "cli:ops", at(10))
        .await
        .unwrap());
    // Names are unique.
    assert!(!store
        .add_customer("acme", "hash-other", "cli:ops", at(10))
        .await
        .unwrap());
    assert!(store
        .add_customer("globex", "hash-globex", "cli:ops", at(10))
        .await
        .unwrap());
    let found = store.customer_by_hash("hash-acme").await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.created_at), ("acme", at(10)));
    assert_eq!(store.customer_by_hash("hash-other").await.unwrap(), None);

    assert!(store
        .grant_license(&license("acme", None), "cli:ops", at(11))
        .await
        .unwrap());
    // Granting again replaces the terms.
    let until = Some(at(100));
    assert!(store
        .grant_license(&license("acme", until), "cli:ops", at(12))
        .await
        .unwrap());
    assert!(!store
        .grant_license(&license("nobody", None), "cli:ops", at(12))
        .await
        .unwrap());
    assert!(store
        .grant_license(&license("globex", None), "cli:ops", at(12))
        .await
        .unwrap());
    assert!(store
        .revoke_license("globex", "pbxlink", "cli:ops", at(13))
        .await
        .unwrap());
    assert!(!store
        .revoke_license("globex", "pbxlink", "cli:ops", at(13))
        .await
        .unwrap());
    let licenses = store.licenses().await.unwrap();
    assert_eq!(licenses[0], license("acme", until));
    assert!(licenses[0].is_valid_at(at(99)));
    assert!(!licenses[0].is_valid_at(at(100)));
    assert_eq!(licenses[1].revoked_at, Some(at(13)));
    assert!(!licenses[1].is_valid_at(at(14)));

    assert!(store
        .revoke_customer("globex", "cli:ops", at(14))
        .await
        .unwrap());
    assert!(!store
        .revoke_customer("globex", "cli:ops", at(14))
        .await
        .unwrap());
    assert_eq!(store.customer_by_hash("hash-globex").await.unwrap(), None);
    // A revoked customer gets no new license.
    assert!(!store
        .grant_license(&license("globex", None), "cli:ops", at(15))
        .await
        .unwrap());
    let listed = store.customers().await.unwrap();
    assert_eq!(listed[1].0.revoked_at, Some(at(14)));
    assert_eq!(listed[1].1, "hash-globex");

    let count = |customer: &str, version: &str, downloads| CustomerDownloads {
        customer: customer.into(),
        rawname: "pbxlink".into(),
        version: version.into(),
        downloads,
    };
    let batch = [count("acme", "1.1.0", 2), count("globex", "1.1.0", 1)];
    store.add_customer_downloads(&batch).await.unwrap();
    store
        .add_customer_downloads(&[count("acme", "1.1.0", 3)])
        .await
        .unwrap();
    assert_eq!(
        store.customer_downloads().await.unwrap(),
        [count("acme", "1.1.0", 5), count("globex", "1.1.0", 1)]
    );

    // Addresses that checked for updates: a repeat (even flushed out of order) is one
    // installation; those not seen since the cut-off are not counted.
    let seen = |address: &str, seconds| InstallationSeen {
        customer: "acme".into(),
        rawname: "pbxlink".into(),
        address: address.into(),
        at: at(seconds),
    };
    store
        .note_installations(&[seen("192.0.2.1", 20), seen("192.0.2.2", 5)])
        .await
        .unwrap();
    store
        .note_installations(&[seen("192.0.2.1", 18), seen("192.0.2.3", 21)])
        .await
        .unwrap();
    let acme = |n| vec![("acme".to_owned(), "pbxlink".to_owned(), n)];
    assert_eq!(store.installations_seen(at(20)).await.unwrap(), acme(2));
    assert_eq!(store.installations_seen(at(0)).await.unwrap(), acme(3));
    assert_eq!(store.installations_seen(at(22)).await.unwrap(), vec![]);

    let audit: Vec<String> = store
        .release_audit()
        .await
        .unwrap()
        .iter()
        .skip(3)
        .map(|e| {
            format!(
                "{} {} {:?} {:?} by {}: {}",
                e.at.timestamp() - at(0).timestamp(),
                e.action,
                e.customer,
                e.rawname,
                e.actor,
                e.detail
            )
        })
        .collect();
    expect_test::expect![[r#"
        [
            "10 customer-add Some(\"acme\") \"\" by cli:ops: ",
            "10 customer-add Some(\"globex\") \"\" by cli:ops: ",
            "11 license-grant Some(\"acme\") \"pbxlink\" by cli:ops: channel beta until no end seats 5",
            "12 license-grant Some(\"acme\") \"pbxlink\" by cli:ops: channel beta until 2025-11-24T16:01:40+00:00 seats 5",
            "12 license-grant Some(\"globex\") \"pbxlink\" by cli:ops: channel beta until no end seats 5",
            "13 license-revoke Some(\"globex\") \"pbxlink\" by cli:ops: ",
            "14 customer-revoke Some(\"globex\") \"\" by cli:ops: ",
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
