//! Web UI users (name, scope, argon2 password hash, extension) and their sign-in sessions,
//! kept by the SHA-256 of the session token. Hashing and checking passwords is the gateway's
//! job; the store only keeps the strings.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_micros, micros};
use crate::{Result, Store};

/// A user who signs in to the web UI with a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// `read`, `control` or `admin`: what the user's sessions may do.
    pub scope: String,
    /// PHC string (`$argon2id$v=19$...`); never the password.
    pub password_hash: String,
    /// The user's extension (their phone), if they have one.
    pub extension: Option<String>,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
}

/// A live session: whose, with the user's current scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user signed in.
    pub user: String,
    /// The user's scope now.
    pub scope: String,
    /// When the session stops working.
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Adds a user; false (nothing changed) when the name is taken.
    pub async fn add_user(&self, user: &User) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO users (name, scope, password_hash, extension, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.name)
        .bind(&user.scope)
        .bind(&user.password_hash)
        .bind(&user.extension)
        .bind(micros(user.created_at))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// The user called `name`.
    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT name, scope, password_hash, extension, created_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(
            "SELECT name, scope, password_hash, extension, created_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Removes a user and ends their sessions; false when there is no such user.
    pub async fn remove_user(&self, name: &str) -> Result<bool> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM user_sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Opens a session for `user` under the token hashing to `sha256_hex`; sessions already
    /// expired are cleared on the way, so the table holds only live ones.
    pub async fn open_session(
        &self,
        sha256_hex: &str,
        user: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let (_turn, mut tx) = self.begin_write().await?;
        sqlx::query("DELETE FROM user_sessions WHERE expires_at <= $1")
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO user_sessions (sha256, user_name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(sha256_hex)
        .bind(user)
        .bind(micros(now))
        .bind(micros(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired session of a token hashing to `sha256_hex`, with its user's scope now.
    pub async fn session_by_hash(
        &self,
        sha256_hex: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT u.name, u.scope, s.expires_at FROM user_sessions s \
             JOIN users u ON u.name = s.user_name WHERE s.sha256 = $1 AND s.expires_at > $2",
        )
        .bind(sha256_hex)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Session {
                user: row.try_get("name")?,
                scope: row.try_get("scope")?,
                expires_at: from_micros("session expires_at", row.try_get("expires_at")?)?,
            })
        })
        .transpose()
    }

    /// Ends the session of a token hashing to `sha256_hex` (sign-out); false when none.
    pub async fn close_session(&self, sha256_hex: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM user_sessions WHERE sha256 = $1")
            .bind(sha256_hex)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done == 1)
    }
}

fn user_from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        name: row.try_get("name")?,
        scope: row.try_get("scope")?,
        password_hash: row.try_get("password_hash")?,
        extension: row.try_get("extension")?,
        created_at: from_micros("user created_at", row.try_get("created_at")?)?,
    })
}
