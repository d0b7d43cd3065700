//! API tokens: their scopes, how they are made and hashed, and `pbxlink token create|list|revoke`.
//!
//! A token is shown once, when made; the database keeps only its SHA-256, so neither a
//! database dump nor a log line can be replayed against the API.

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};
use store::{ApiToken, Store};

use crate::config::Config;

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scope {
    /// Read calls, the live view and the event stream, metrics.
    Read,
    /// Also place, hang up, transfer and redirect calls.
    Control,
    /// Everything.
    Admin,
}

impl Scope {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
            Scope::Admin => "admin",
        }
    }

    /// The scope of a stored name; `None` for anything else, which grants nothing.
    pub fn from_stored(name: &str) -> Option<Scope> {
        Scope::from_str(name, false).ok()
    }
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh secret: 192 random bits, with a prefix that secret scanners can recognise.
pub fn new_secret() -> String {
    format!("pbxl_{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// `pbxlink token ...`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Database (sqlx URL) instead of the config's (`[database] url`, else SQLite in `data_dir`).
    #[arg(long, global = true, env = "PBXLINK_DATABASE_URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token and print it (the only time it is shown).
    Create {
        /// What the token is for.
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum, default_value = "read")]
        scope: Scope,
    },
    /// List tokens (ids, names, scopes; never the secrets).
    List,
    /// Revoke a token by id: it stops working at once.
    Revoke {
        /// The id `create` printed.
        id: String,
    },
}

/// Runs a `token` subcommand.
pub async fn run(config: &Config, args: TokenArgs) -> anyhow::Result<()> {
    let url = args.database.unwrap_or_else(|| config.database_url());
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    match args.command {
        TokenCommand::Create { name, scope } => {
            let secret = new_secret();
            let token = ApiToken {
                id: hex::encode(rand::random::<[u8; 6]>()),
                name,
                scope: scope.as_str().to_owned(),
                created_at: Utc::now(),
                revoked_at: None,
            };
            store
                .create_token(&token, &hex::encode(digest(&secret)))
                .await?;
            println!(
                "id:    {}\nscope: {}\ntoken: {secret}",
                token.id, token.scope
            );
        }
        TokenCommand::List => {
            for t in store.tokens().await? {
                let state = t.revoked_at.map_or("active".to_owned(), |at| {
                    format!("revoked {}", at.to_rfc3339())
                });
                println!(
                    "{}\t{}\t{}\t{}\t{state}",
                    t.id,
                    t.scope,
                    t.created_at.to_rfc3339(),
                    t.name
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(&id, Utc::now()).await? {
                anyhow::bail!("no active token {id:?}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
