//! FreePBX module releases (what `pbxlink release-server` offers), their download and
//! update-check counts, and the audit log of publishes and yanks.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_micros, micros, to_i64, to_u64};
use crate::{Result, Store};

/// A release as published (the tarball's `module.xml` plus the stored file's digests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    /// FreePBX module name (`<rawname>`).
    pub rawname: String,
    /// `<version>`.
    pub version: String,
    /// `stable` or `beta`.
    pub channel: String,
    /// `<name>`.
    pub name: String,
    /// `<publisher>`.
    pub publisher: Option<String>,
    /// `<license>`.
    pub license: Option<String>,
    /// `<changelog>`.
    pub changelog: Option<String>,
    /// `<depends>` as a JSON object text.
    pub depends: Option<String>,
    /// Tarball size in bytes.
    pub size: u64,
    /// Hex digests of the tarball.
    pub md5: String,
    /// Hex SHA-1 (FreePBX verifies it when advertised).
    pub sha1: String,
    /// Hex SHA-256: the stored file's name.
    pub sha256: String,
    /// External download URL (CDN, S3); `None` when pbxlink serves the file itself.
    pub location: Option<String>,
    /// The minisign signature file of the tarball (text), when published with one.
    pub minisig: Option<String>,
}

/// A stored release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// What was published.
    pub release: NewRelease,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// When it was withdrawn, if it was.
    pub yanked_at: Option<DateTime<Utc>>,
    /// Downloads counted so far.
    pub downloads: u64,
    /// Update checks that offered or confirmed this version.
    pub update_checks: u64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `publish`, `yank`, `customer-add`, `customer-revoke`, `license-grant`, `license-revoke`.
    pub action: String,
    /// Module name (empty for customer lines).
    pub rawname: String,
    /// Version (empty for customer and license lines).
    pub version: String,
    /// The customer a customer or license line is about.
    pub customer: Option<String>,
    /// Who did it (`cli:<user>`, `api`).
    pub actor: String,
    /// Channel, digest or reason.
    pub detail: String,
}

/// Counts accumulated by the server since its last flush, for one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseCounts {
    /// Module name.
    pub rawname: String,
    /// Version.
    pub version: String,
    /// Downloads to add.
    pub downloads: u64,
    /// Update checks to add.
    pub update_checks: u64,
}

const RELEASE_COLUMNS: &str = "rawname, version, channel, name, publisher, license, changelog, \
     depends, size, md5, sha1, sha256, location, minisig, published_at, yanked_at, downloads, \
     update_checks";

impl Store {
    /// Records a release and its audit line in one transaction. `Ok(false)`: that
    /// rawname/version exists already (a version is never replaced, even when yanked).
    pub async fn publish_release(
        &self,
        r: &NewRelease,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO releases ({RELEASE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, 0, 0) \
             ON CONFLICT (rawname, version) DO NOTHING"
        ))
        .bind(&r.rawname)
        .bind(&r.version)
        .bind(&r.channel)
        .bind(&r.name)
        .bind(&r.publisher)
        .bind(&r.license)
        .bind(&r.changelog)
        .bind(&r.depends)
        .bind(to_i64("release size", r.size)?)
        .bind(&r.md5)
        .bind(&r.sha1)
        .bind(&r.sha256)
        .bind(&r.location)
        .bind(&r.minisig)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            let detail = format!("channel {} sha256 {}", r.channel, r.sha256);
            let line = Audit {
                action: "publish",
                rawname: &r.rawname,
                version: &r.version,
                customer: None,
                detail: &detail,
            };
            line.write(&mut tx, now, actor).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Withdraws a release (it stays listed, is never offered again, and its file answers
    /// 410). `Ok(false)`: no such release, or already yanked.
    pub async fn yank_release(
        &self,
        rawname: &str,
        version: &str,
        actor: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        let yanked = sqlx::query(
            "UPDATE releases SET yanked_at = $1 \
             WHERE rawname = $2 AND version = $3 AND yanked_at IS NULL",
        )
        .bind(micros(now))
        .bind(rawname)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if yanked {
            let line = Audit {
                action: "yank",
                rawname,
                version,
                customer: None,
                detail: reason,
            };
            line.write(&mut tx, now, actor).await?;
        }
        tx.commit().await?;
        Ok(yanked)
    }

    /// Every release (yanked ones too), by module then publication time.
    pub async fn releases(&self) -> Result<Vec<Release>> {
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases ORDER BY rawname, published_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(release_from_row).collect()
    }

    /// Adds the server's counts since its last flush.
    pub async fn add_release_counts(&self, counts: &[ReleaseCounts]) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        for c in counts {
            sqlx::query(
                "UPDATE releases SET downloads = downloads + $1, \
                 update_checks = update_checks + $2 WHERE rawname = $3 AND version = $4",
            )
            .bind(to_i64("download count", c.downloads)?)
            .bind(to_i64("update-check count", c.update_checks)?)
            .bind(&c.rawname)
            .bind(&c.version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The audit log, oldest first.
    pub async fn release_audit(&self) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, action, rawname, version, customer, actor, detail FROM release_audit \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at: from_micros("audit time", row.try_get("at")?)?,
                    action: row.try_get("action")?,
                    rawname: row.try_get("rawname")?,
                    version: row.try_get("version")?,
                    customer: row.try_get("customer")?,
                    actor: row.try_get("actor")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}

/// One line for the audit log, written in the transaction of the change it records.
pub(crate) struct Audit<'a> {
    pub(crate) action: &'a str,
    pub(crate) rawname: &'a str,
    pub(crate) version: &'a str,
    pub(crate) customer: Option<&'a str>,
    pub(crate) detail: &'a str,
}

impl Audit<'_> {
    pub(crate) async fn write(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO release_audit (at, action, rawname, version, customer, actor, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(micros(now))
        .bind(self.action)
        .bind(self.rawname)
        .bind(self.version)
        .bind(self.customer)
        .bind(actor)
        .bind(self.detail)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

fn release_from_row(row: &AnyRow) -> Result<Release> {
    Ok(Release {
        release: NewRelease {
            rawname: row.try_get("rawname")?,
            version: row.try_get("version")?,
            channel: row.try_get("channel")?,
            name: row.try_get("name")?,
            publisher: row.try_get("publisher")?,
            license: row.try_get("license")?,
            changelog: row.try_get("changelog")?,
            depends: row.try_get("depends")?,
            size: to_u64("release size", row.try_get("size")?)?,
            md5: row.try_get("md5")?,
            sha1: row.try_get("sha1")?,
            sha256: row.try_get("sha256")?,
            location: row.try_get("location")?,
            minisig: row.try_get("minisig")?,
        },
        published_at: from_micros("published_at", row.try_get("published_at")?)?,
        yanked_at: row
            .try_get::<Option<i64>, _>("yanked_at")?
            .map(|us| from_micros("yanked_at", us))
            .transpose()?,
        downloads: to_u64("downloads", row.try_get("downloads")?)?,
        update_checks: to_u64("update checks", row.try_get("update_checks")?)?,
    })
}
