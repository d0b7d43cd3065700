//! API tokens: who may use the HTTP API, at which scope. Only each token's SHA-256 is stored;
//! the scope is kept as text the gateway interprets.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::codec::{from_micros, micros};
use crate::{Result, Store};

/// A stored token (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Public id, for listing and revoking.
    pub id: String,
    /// What it is for (`1C production`).
    pub name: String,
    /// `read`, `control` or `admin`.
    pub scope: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "id, name, scope, created_at, revoked_at";

impl Store {
    /// Stores a new token by the hex SHA-256 of its secret.
    pub async fn create_token(&self, token: &ApiToken, sha256_hex: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, scope, sha256, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.scope)
        .bind(sha256_hex)
        .bind(micros(token.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live (not revoked) token whose secret hashes to `sha256_hex`.
    pub async fn token_by_hash(&self, sha256_hex: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE sha256 = $1 AND revoked_at IS NULL"
        ))
        .bind(sha256_hex)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes token `id`; false when there is no such live token.
    pub async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scope: row.try_get("scope")?,
        created_at: from_micros("token created_at", row.try_get("created_at")?)?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(|us| from_micros("token revoked_at", us))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_found_by_hash_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let at = DateTime::from_timestamp(1_795_388_070, 0).unwrap();
        let token = ApiToken {
            id: "t1".into(),
            name: "1C".into(),
            scope: "read".into(),
            created_at: at,
            revoked_at: None,
        };
        store.create_token(&token, "abc").await.unwrap();
        assert_eq!(
            store.token_by_hash("abc").await.unwrap(),
            Some(token.clone())
        );
        assert_eq!(store.token_by_hash("abd").await.unwrap(), None);
        assert!(store.revoke_token("t1", at).await.unwrap());
        assert!(!store.revoke_token("t1", at).await.unwrap());
        assert_eq!(store.token_by_hash("abc").await.unwrap(), None);
        let listed = store.tokens().await.unwrap();
        assert_eq!(listed[0].revoked_at, Some(at));
    }
}
