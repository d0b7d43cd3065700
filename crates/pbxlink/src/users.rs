//! Web UI users: argon2id password hashes and `pbxlink user add|list|remove`; a user may
//! have an extension (their phone), whose calls `/api/v1/events?user=NAME` streams.
//!
//! A password never comes from the command line (it would sit in the shell history and in
//! `ps`): it is asked for on the terminal, or read from `PBXLINK_USER_PASSWORD`, or from the
//! first line of standard input when that is not a terminal (scripts).

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use chrono::Utc;
use clap::{Args, Subcommand};
use store::{Store, User};

use crate::config::Config;
use web::tokens::Scope;

/// Shorter passwords are refused: a guessable password makes the rest moot.
const MIN_PASSWORD: usize = 8;

/// The argon2id PHC string of `password` (fresh salt; the crate's defaults, OWASP's
/// recommended parameters).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches `phc`; an unreadable stored hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// `pbxlink user ...`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// Database (sqlx URL) instead of the config's (`[database] url`, else SQLite in `data_dir`).
    #[arg(long, global = true, env = "PBXLINK_DATABASE_URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user who signs in to the web UI with a password (asked for, or read from
    /// PBXLINK_USER_PASSWORD or standard input; never an argument).
    Add {
        /// Login name.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum, default_value = "read")]
        scope: Scope,
        /// The user's own extension: `/api/v1/events?user=NAME` streams its calls.
        #[arg(long, value_parser = parse_extension)]
        extension: Option<String>,
    },
    /// List users (names, scopes, extensions; never the hashes).
    List,
    /// Remove a user: their sessions end at once.
    Remove {
        /// Login name.
        name: String,
    },
}

/// Runs a `user` subcommand.
pub async fn run(config: &Config, args: UserArgs) -> anyhow::Result<()> {
    let url = args.database.unwrap_or_else(|| config.database_url());
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    match args.command {
        UserCommand::Add {
            name,
            scope,
            extension,
        } => {
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 64 && !name.chars().any(char::is_control),
                "a user name is 1 to 64 printable characters"
            );
            let password = read_password(&name)?;
            let user = User {
                name,
                scope: scope.as_str().to_owned(),
                password_hash: hash_password(&password),
                extension,
                created_at: Utc::now(),
            };
            anyhow::ensure!(
                store.add_user(&user).await?,
                "user {:?} exists: remove it first to change it",
                user.name
            );
            println!("added {} ({})", user.name, user.scope);
        }
        UserCommand::List => {
            for u in store.users().await? {
                let extension = u.extension.as_deref().unwrap_or("-");
                println!(
                    "{}\t{}\t{extension}\t{}",
                    u.name,
                    u.scope,
                    u.created_at.to_rfc3339()
                );
            }
        }
        UserCommand::Remove { name } => {
            anyhow::ensure!(store.remove_user(&name).await?, "no user {name:?}");
            println!("removed {name}");
        }
    }
    Ok(())
}

/// An extension as the PBX numbers it (as the API takes it: 1 to 16 digits).
fn parse_extension(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not an extension number (1 to 16 digits)"));
    }
    Ok(s.to_owned())
}

/// The new password: `PBXLINK_USER_PASSWORD`, else asked twice on the terminal, else the
/// first line of standard input.
fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if let Ok(p) = std::env::var("PBXLINK_USER_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD,
        "a password needs at least {MIN_PASSWORD} characters"
    );
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("correct horse", "not a hash"));
        // A fresh salt each time: equal passwords do not show as equal hashes.
        assert_ne!(phc, hash_password("correct horse"));
    }
}
