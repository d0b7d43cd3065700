//! Who may have which module: customers by token, their licenses, and which modules are
//! licensed at all. A snapshot the release server reloads with its release list, so the
//! FreePBX-facing routes never wait on the database.
//!
//! A module is licensed from its first license grant on (revoked and expired licenses keep
//! it so): then only live license holders get it, through their `/c/{token}/` URLs. Every
//! other module is public: open on the plain paths, and to any live customer token.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use store::{Customer, License, Store};

use crate::ReleaseChannel;

/// The loaded customers and licenses.
#[derive(Debug, Default)]
pub struct Licensing {
    /// Live customers by the hex SHA-256 of their token.
    by_hash: HashMap<String, Holder>,
    /// Modules with at least one license row.
    licensed: HashSet<String>,
}

#[derive(Debug)]
struct Holder {
    name: String,
    licenses: HashMap<String, License>,
}

/// What a customer may have of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The customer's name (never its token).
    pub customer: String,
    /// The releases it follows.
    pub channel: ReleaseChannel,
    /// Whether the module is licensed (its files are then made for this customer).
    pub licensed: bool,
}

/// Why a request gets 403, as the plain text FreePBX and the cabinet show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Unknown or revoked customer token.
    Token,
    /// A licensed module asked for without a customer token.
    NeedsToken(String),
    /// The customer holds no license for the module.
    NoLicense(String),
    /// The customer's license was revoked.
    Revoked(String),
    /// The customer's license ran out.
    Expired(String, DateTime<Utc>),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Token => write!(f, "unknown or revoked customer token"),
            Denied::NeedsToken(m) => write!(
                f,
                "{m} is licensed: use your customer update URL (/c/TOKEN/getModuleUpdate/...)"
            ),
            Denied::NoLicense(m) => write!(f, "no license for {m}"),
            Denied::Revoked(m) => write!(f, "the license for {m} was revoked"),
            Denied::Expired(m, at) => write!(
                f,
                "the license for {m} expired on {}",
                at.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }
}

/// How far back an update check counts as an installation in use.
const IN_USE_DAYS: i64 = 30;

/// Installations in use per (customer, module): the addresses that checked it for updates in
/// the last 30 days. FreePBX sends no identity, so this is as near as one can tell (NAT
/// merges installations, a new address adds one); shown against the seats, not enforced.
#[derive(Debug, Default)]
pub struct InUse(HashMap<(String, String), u64>);

impl InUse {
    /// Reads the counts as of `now`.
    pub async fn load(store: &Store, now: DateTime<Utc>) -> store::Result<Self> {
        let since = now - chrono::TimeDelta::days(IN_USE_DAYS);
        Ok(Self(
            store
                .installations_seen(since)
                .await?
                .into_iter()
                .map(|(customer, rawname, n)| ((customer, rawname), n))
                .collect(),
        ))
    }

    /// Installations in use under `license`.
    pub fn of(&self, license: &License) -> u64 {
        let key = (license.customer.clone(), license.rawname.clone());
        self.0.get(&key).copied().unwrap_or(0)
    }
}

/// Hex SHA-256 of a customer token: what the database keeps (the API tokens' hash).
pub fn token_hash(token: &str) -> String {
    hex::encode(web::tokens::digest(token))
}

impl Licensing {
    /// Reads the customers and licenses.
    pub async fn load(store: &Store) -> store::Result<Self> {
        let customers = store.customers().await?;
        let licenses = store.licenses().await?;
        Ok(Self::new(customers, licenses))
    }

    fn new(customers: Vec<(Customer, String)>, licenses: Vec<License>) -> Self {
        let licensed = licenses.iter().map(|l| l.rawname.clone()).collect();
        let mut by_name: HashMap<String, HashMap<String, License>> = HashMap::new();
        for license in licenses {
            by_name
                .entry(license.customer.clone())
                .or_default()
                .insert(license.rawname.clone(), license);
        }
        let by_hash = customers
            .into_iter()
            .filter(|(c, _)| c.revoked_at.is_none())
            .map(|(c, hash)| {
                let licenses = by_name.remove(&c.name).unwrap_or_default();
                (
                    hash,
                    Holder {
                        name: c.name,
                        licenses,
                    },
                )
            })
            .collect();
        Self { by_hash, licensed }
    }

    /// Whether `rawname` is licensed (closed on the plain paths).
    pub fn is_licensed(&self, rawname: &str) -> bool {
        self.licensed.contains(rawname)
    }

    /// What the plain paths (no token) may serve of `rawname`.
    pub fn public(&self, rawname: &str) -> Result<ReleaseChannel, Denied> {
        if self.is_licensed(rawname) {
            Err(Denied::NeedsToken(rawname.to_owned()))
        } else {
            Ok(ReleaseChannel::Stable)
        }
    }

    /// What the holder of `token` may have of `rawname` at `now`.
    pub fn access(&self, token: &str, rawname: &str, now: DateTime<Utc>) -> Result<Access, Denied> {
        let holder = self.by_hash.get(&token_hash(token)).ok_or(Denied::Token)?;
        let customer = holder.name.clone();
        if !self.is_licensed(rawname) {
            return Ok(Access {
                customer,
                channel: ReleaseChannel::Stable,
                licensed: false,
            });
        }
        let license = holder
            .licenses
            .get(rawname)
            .ok_or_else(|| Denied::NoLicense(rawname.to_owned()))?;
        if license.revoked_at.is_some() {
            return Err(Denied::Revoked(rawname.to_owned()));
        }
        if let Some(until) = license.valid_until.filter(|_| !license.is_valid_at(now)) {
            return Err(Denied::Expired(rawname.to_owned(), until));
        }
        Ok(Access {
            customer,
            channel: channel_named(&license.channel),
            licensed: true,
        })
    }
}

/// The channel stored as `stable` / `beta`.
pub fn channel_named(name: &str) -> ReleaseChannel {
    if name == "beta" {
        ReleaseChannel::Beta
    } else {
        ReleaseChannel::Stable
    }
}

/// How a channel is stored.
pub fn channel_name(channel: ReleaseChannel) -> &'static str {
    match channel {
        ReleaseChannel::Stable => "stable",
        ReleaseChannel::Beta => "beta",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn access_follows_token_license_and_time() {
        let customer = |name: &str, revoked: bool| {
            (
                Customer {
                    name: name.into(),
                    created_at: at(0),
                    revoked_at: revoked.then(|| at(1)),
                },
                token_hash(&format!("token-{name}")),
            )
        };
        let license = |customer: &str, rawname: &str, until: Option<i64>, revoked: bool| License {
            customer: customer.into(),
            rawname: rawname.into(),
            channel: "beta".into(),
            valid_until: until.map(at),
            seats: 1,
            granted_at: at(0),
            revoked_at: revoked.then(|| at(2)),
        };
        let licensing = Licensing::new(
            vec![customer("acme", false), customer("gone", true)],
            vec![
                license("acme", "paid", Some(100), false),
                license("acme", "dropped", None, true),
                license("gone", "paid", None, false),
            ],
        );
        let show = |token: &str, rawname: &str, now: i64| match licensing.access(
            token,
            rawname,
            at(now),
        ) {
            Ok(a) => format!("{} {:?} licensed={}", a.customer, a.channel, a.licensed),
            Err(denied) => denied.to_string(),
        };
        let seen = [
            show("token-acme", "paid", 99),
            show("token-acme", "paid", 100),
            show("token-acme", "dropped", 0),
            show("token-acme", "public", 0),
            show("token-gone", "paid", 0),
            show("token-gone", "public", 0),
            show("nobody", "public", 0),
        ];
        expect_test::expect![[r#"
            [
                "acme Beta licensed=true",
                "the license for paid expired on 2025-11-24 16:01 UTC",
                "the license for dropped was revoked",
                "acme Stable licensed=false",
                "unknown or revoked customer token",
                "unknown or revoked customer token",
                "unknown or revoked customer token",
            ]
        "#]]
        .assert_debug_eq(&seen);
        assert_eq!(licensing.public("public"), Ok(ReleaseChannel::Stable));
        assert_eq!(
            licensing.public("paid"),
            Err(Denied::NeedsToken("paid".into()))
        );
    }
}
