//! `pbxlink release customer add|list|revoke` and `pbxlink release license grant|revoke|list`:
//! who gets licensed modules from the release server.
//!
//! A customer's token is made here and shown once; the database keeps its SHA-256 only (the
//! API tokens' helper), so it cannot be shown again: `customer add` prints it with the update
//! URL base that `pbxlink freepbx package --customer` puts in the module.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use store::{License, Store};

use super::licensing::{channel_name, token_hash, InUse};
use super::ChannelArg;
use crate::Settings;

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Add a customer and print its token (the only time it is shown).
    Add {
        /// Unique name: a-z, 0-9, '-', '_' and '.'.
        name: String,
    },
    /// Customers with their state (never their tokens).
    List,
    /// Revoke a customer's token: it gets nothing more (within 2 s on a running server).
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Grant a customer a module (again: replace the terms). The module is licensed from its
    /// first grant on: the plain URLs refuse it, license holders get it through theirs.
    Grant {
        customer: String,
        rawname: String,
        /// The releases it follows (beta: beta and stable).
        #[arg(long, value_enum, default_value = "stable")]
        channel: ChannelArg,
        /// Last day of the license (`2027-03-31`, through the end of that day UTC) or an RFC
        /// 3339 time; none: no end.
        #[arg(long, value_parser = parse_until)]
        until: Option<DateTime<Utc>>,
        /// Installations it covers. Shown against those in use (the addresses that checked
        /// for updates in the last 30 days); FreePBX sends nothing that tells installations
        /// apart, so it is not enforced.
        #[arg(long, default_value_t = 1)]
        seats: u64,
    },
    /// Revoke a license: no more updates or downloads of that module for that customer.
    Revoke { customer: String, rawname: String },
    /// Every license with its state.
    List,
}

/// A customer name: safe in a file name and a log line.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// `--until`: a date means through the end of that day (UTC).
fn parse_until(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let next = day.succ_opt().ok_or("date out of range")?;
        return Ok(next.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

fn state(revoked_at: Option<DateTime<Utc>>, valid: bool) -> String {
    match revoked_at {
        Some(at) => format!("revoked {}", at.to_rfc3339()),
        None if valid => "active".to_owned(),
        None => "expired".to_owned(),
    }
}

pub async fn customer(
    store: &Store,
    config: &Settings,
    actor: &str,
    command: CustomerCommand,
) -> anyhow::Result<()> {
    let now = Utc::now();
    match command {
        CustomerCommand::Add { name } => {
            if !is_valid_name(&name) {
                anyhow::bail!("customer name {name:?}: a-z, 0-9, '-', '_', '.' (64 at most)");
            }
            let token = web::tokens::new_secret();
            if !store
                .add_customer(&name, &token_hash(&token), actor, now)
                .await?
            {
                anyhow::bail!("customer {name} exists already");
            }
            println!("customer: {name}\ntoken:    {token}");
            if let Some(base) = &config.release.public_url {
                println!("update URL base: {}/c/{token}", base.trim_end_matches('/'));
            }
            eprintln!(
                "The token is shown only now. Package the module for this customer with\n  \
                 PBXLINK_CUSTOMER_TOKEN=<token> pbxlink freepbx package --customer {name} --version V"
            );
        }
        CustomerCommand::List => {
            let licenses = store.licenses().await?;
            for (c, _) in store.customers().await? {
                let modules: Vec<&str> = licenses
                    .iter()
                    .filter(|l| l.customer == c.name && l.is_valid_at(now))
                    .map(|l| l.rawname.as_str())
                    .collect();
                println!(
                    "{}\t{}\t{}\t{}",
                    c.name,
                    c.created_at.to_rfc3339(),
                    state(c.revoked_at, true),
                    modules.join(",")
                );
            }
        }
        CustomerCommand::Revoke { name } => {
            if !store.revoke_customer(&name, actor, now).await? {
                anyhow::bail!("no active customer {name:?}");
            }
            println!("revoked customer {name}");
        }
    }
    Ok(())
}

pub async fn license(store: &Store, actor: &str, command: LicenseCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    match command {
        LicenseCommand::Grant {
            customer,
            rawname,
            channel,
            until,
            seats,
        } => {
            if !super::module::is_valid_rawname(&rawname) {
                anyhow::bail!("{rawname:?} is not a module name (a-z, 0-9, '_')");
            }
            let license = License {
                customer,
                rawname,
                channel: channel_name(channel.into()).to_owned(),
                valid_until: until,
                seats,
                granted_at: now,
                revoked_at: None,
            };
            if !store
                .grant_license(&license, actor, now)
                .await
                .context("granting the license")?
            {
                anyhow::bail!("no active customer {:?}", license.customer);
            }
            println!(
                "granted {} {} on {}{}",
                license.customer,
                license.rawname,
                license.channel,
                until.map_or(String::new(), |at| format!(" until {}", at.to_rfc3339()))
            );
            if until.is_some_and(|at| at <= now) {
                eprintln!("note: that license has already expired");
            }
        }
        LicenseCommand::Revoke { customer, rawname } => {
            if !store
                .revoke_license(&customer, &rawname, actor, now)
                .await?
            {
                anyhow::bail!("no active license of {customer} for {rawname}");
            }
            println!("revoked the license of {customer} for {rawname}");
        }
        LicenseCommand::List => {
            let in_use = InUse::load(store, now).await?;
            for l in store.licenses().await? {
                let seen = in_use.of(&l);
                println!(
                    "{}\t{}\t{}\t{}\t{seen}/{} seats in use\t{}",
                    l.customer,
                    l.rawname,
                    l.channel,
                    l.valid_until
                        .map_or("no end".to_owned(), |at| at.to_rfc3339()),
                    l.seats,
                    state(l.revoked_at, l.is_valid_at(now))
                );
            }
        }
    }
    Ok(())
}

/// `<base>/c/<token>`, the update URL base of a customer's package, once `token` is checked
/// to be `name`'s live token (a typo would otherwise ship a module that never updates).
pub async fn customer_update_url(
    config: &Settings,
    name: &str,
    token: &str,
    base: &str,
) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    if base.contains("/c/") {
        anyhow::bail!("{base}: give the server's base URL; --customer adds /c/TOKEN itself");
    }
    let store = super::open_store(config).await?;
    match store.customer_by_hash(&token_hash(token)).await? {
        Some(c) if c.name == name => Ok(format!("{base}/c/{token}")),
        Some(_) => anyhow::bail!("that token belongs to another customer than {name}"),
        None => anyhow::bail!("that token is not a live customer token (revoked, or a typo?)"),
    }
}
