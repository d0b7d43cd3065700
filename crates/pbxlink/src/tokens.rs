//! `pbxlink token create|list|revoke`: API tokens in the journal's database (what a token
//! is and how it is hashed: `web::tokens`).

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};
use store::{ApiToken, Store};
use web::tokens::{digest, new_secret, Scope};

use crate::config::Config;

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
