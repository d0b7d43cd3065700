//! Release-server customers (a token, kept as its SHA-256 only), their module licenses and
//! their downloads per release. Every change writes its line in the release audit log.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_micros, micros, to_i64, to_u64};
use crate::releases::Audit;
use crate::{Result, Store};

/// A customer (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Unique name (`acme`).
    pub name: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When its token was revoked, if it was: it then gets nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A customer's right to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    /// The customer's name.
    pub customer: String,
    /// The module.
    pub rawname: String,
    /// `stable` or `beta` (beta followers get stable releases too).
    pub channel: String,
    /// The end of the license; `None`: no end.
    pub valid_until: Option<DateTime<Utc>>,
    /// How many installations it covers.
    pub seats: u64,
    /// When it was (last) granted.
    pub granted_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl License {
    /// Whether it entitles its holder to updates and downloads at `now`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.valid_until.is_none_or(|until| now < until)
    }
}

/// Downloads of one release by one customer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct CustomerDownloads {
    /// The customer's name.
    pub customer: String,
    /// Module name.
    pub rawname: String,
    /// Version.
    pub version: String,
    /// How many (to add, when written).
    pub downloads: u64,
}

const CUSTOMER_COLUMNS: &str = "name, created_at, revoked_at";
const LICENSE_COLUMNS: &str =
    "customer, rawname, channel, valid_until, seats, granted_at, revoked_at";

impl Store {
    /// Adds a customer with the hex SHA-256 of its token. `Ok(false)`: the name is taken.
    pub async fn add_customer(
        &self,
        name: &str,
        sha256_hex: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        let added = sqlx::query(
            "INSERT INTO customers (name, sha256, created_at, revoked_at) \
             VALUES ($1, $2, $3, NULL) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(sha256_hex)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            customer_line("customer-add", name, "", "")
                .write(&mut tx, now, actor)
                .await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Revokes a customer's token. `Ok(false)`: no such customer, or revoked already.
    pub async fn revoke_customer(
        &self,
        name: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE customers SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if revoked {
            customer_line("customer-revoke", name, "", "")
                .write(&mut tx, now, actor)
                .await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// The live (not revoked) customer whose token hashes to `sha256_hex`.
    pub async fn customer_by_hash(&self, sha256_hex: &str) -> Result<Option<Customer>> {
        let row = sqlx::query(&format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE sha256 = $1 AND revoked_at IS NULL"
        ))
        .bind(sha256_hex)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(customer_from_row).transpose()
    }

    /// Every customer with its token's hex SHA-256, by name.
    pub async fn customers(&self) -> Result<Vec<(Customer, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT {CUSTOMER_COLUMNS}, sha256 FROM customers ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((customer_from_row(row)?, row.try_get("sha256")?)))
            .collect()
    }

    /// Grants (or replaces: new terms, not revoked) a license. `Ok(false)`: no live customer
    /// of that name.
    pub async fn grant_license(
        &self,
        license: &License,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        let live = sqlx::query("SELECT 1 FROM customers WHERE name = $1 AND revoked_at IS NULL")
            .bind(&license.customer)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !live {
            return Ok(false);
        }
        sqlx::query(&format!(
            "INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (customer, rawname) DO UPDATE SET channel = excluded.channel, \
             valid_until = excluded.valid_until, seats = excluded.seats, \
             granted_at = excluded.granted_at, revoked_at = NULL"
        ))
        .bind(&license.customer)
        .bind(&license.rawname)
        .bind(&license.channel)
        .bind(license.valid_until.map(micros))
        .bind(to_i64("seats", license.seats)?)
        .bind(micros(license.granted_at))
        .execute(&mut *tx)
        .await?;
        let until = license
            .valid_until
            .map_or("no end".to_owned(), |at| at.to_rfc3339());
        let detail = format!(
            "channel {} until {until} seats {}",
            license.channel, license.seats
        );
        customer_line(
            "license-grant",
            &license.customer,
            &license.rawname,
            &detail,
        )
        .write(&mut tx, now, actor)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes a license. `Ok(false)`: none live for that customer and module.
    pub async fn revoke_license(
        &self,
        customer: &str,
        rawname: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE licenses SET revoked_at = $1 \
             WHERE customer = $2 AND rawname = $3 AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(customer)
        .bind(rawname)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if revoked {
            customer_line("license-revoke", customer, rawname, "")
                .write(&mut tx, now, actor)
                .await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Every license (revoked and expired ones too), by customer and module.
    pub async fn licenses(&self) -> Result<Vec<License>> {
        let rows = sqlx::query(&format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY customer, rawname"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(license_from_row).collect()
    }

    /// Adds the server's per-customer download counts since its last flush.
    pub async fn add_customer_downloads(&self, counts: &[CustomerDownloads]) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        for c in counts {
            sqlx::query(
                "INSERT INTO customer_downloads (customer, rawname, version, downloads) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (customer, rawname, version) \
                 DO UPDATE SET downloads = customer_downloads.downloads + excluded.downloads",
            )
            .bind(&c.customer)
            .bind(&c.rawname)
            .bind(&c.version)
            .bind(to_i64("download count", c.downloads)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Downloads per customer and release, by customer, module and version.
    pub async fn customer_downloads(&self) -> Result<Vec<CustomerDownloads>> {
        let rows = sqlx::query(
            "SELECT customer, rawname, version, downloads FROM customer_downloads \
             ORDER BY customer, rawname, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CustomerDownloads {
                    customer: row.try_get("customer")?,
                    rawname: row.try_get("rawname")?,
                    version: row.try_get("version")?,
                    downloads: to_u64("downloads", row.try_get("downloads")?)?,
                })
            })
            .collect()
    }
}

/// One address a customer's licensed module was checked for updates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationSeen {
    /// The customer's name.
    pub customer: String,
    /// The module.
    pub rawname: String,
    /// The client's IP address.
    pub address: String,
    /// When (the latest check since the last flush).
    pub at: DateTime<Utc>,
}

impl Store {
    /// Records where licensed modules were checked for updates from (the server's gathering
    /// since its last flush): a new address is added, a known one gets its `last_seen`.
    pub async fn note_installations(&self, seen: &[InstallationSeen]) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        for s in seen {
            sqlx::query(
                "INSERT INTO customer_installations \
                 (customer, rawname, address, first_seen, last_seen) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (customer, rawname, address) \
                 DO UPDATE SET last_seen = CASE \
                   WHEN excluded.last_seen > customer_installations.last_seen \
                   THEN excluded.last_seen ELSE customer_installations.last_seen END",
            )
            .bind(&s.customer)
            .bind(&s.rawname)
            .bind(&s.address)
            .bind(micros(s.at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many addresses checked each (customer, module) for updates at or after `since`.
    pub async fn installations_seen(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, u64)>> {
        let rows = sqlx::query(
            "SELECT customer, rawname, COUNT(*) AS seen FROM customer_installations \
             WHERE last_seen >= $1 GROUP BY customer, rawname ORDER BY customer, rawname",
        )
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("customer")?,
                    row.try_get("rawname")?,
                    to_u64("installations seen", row.try_get("seen")?)?,
                ))
            })
            .collect()
    }
}

fn customer_line<'a>(
    action: &'a str,
    customer: &'a str,
    rawname: &'a str,
    detail: &'a str,
) -> Audit<'a> {
    Audit {
        action,
        rawname,
        version: "",
        customer: Some(customer),
        detail,
    }
}

fn optional_time(row: &AnyRow, column: &'static str) -> Result<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|us| from_micros(column, us))
        .transpose()
}

fn customer_from_row(row: &AnyRow) -> Result<Customer> {
    Ok(Customer {
        name: row.try_get("name")?,
        created_at: from_micros("created_at", row.try_get("created_at")?)?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

fn license_from_row(row: &AnyRow) -> Result<License> {
    Ok(License {
        customer: row.try_get("customer")?,
        rawname: row.try_get("rawname")?,
        channel: row.try_get("channel")?,
        valid_until: optional_time(row, "valid_until")?,
        seats: to_u64("seats", row.try_get("seats")?)?,
        granted_at: from_micros("granted_at", row.try_get("granted_at")?)?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}
