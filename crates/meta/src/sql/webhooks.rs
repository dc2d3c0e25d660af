//! [`Webhooks`] on SQLite.

use sqlx::Row;

use super::{SqlMeta, db};
use crate::{Result, WebhookCursor, WebhookFailure, Webhooks};

#[async_trait::async_trait]
impl Webhooks for SqlMeta {
    async fn webhook_cursor(&self, hook: &str) -> Result<Option<WebhookCursor>> {
        let row = sqlx::query("SELECT after_id, attempts, next_at, last_error FROM webhook_cursors WHERE hook = $1")
            .bind(hook)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        Ok(row.map(|r| WebhookCursor {
            after_id: r.get("after_id"),
            attempts: r.get::<i64, _>("attempts") as u32,
            next_at_ms: r.get("next_at"),
            last_error: r.get("last_error"),
        }))
    }

    async fn save_webhook_cursor(&self, hook: &str, c: &WebhookCursor, gave_up: Option<&WebhookFailure>) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO webhook_cursors (hook, after_id, attempts, next_at, last_error) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (hook) DO UPDATE SET after_id = $2, attempts = $3, next_at = $4, last_error = $5",
        )
        .bind(hook)
        .bind(c.after_id)
        .bind(c.attempts as i64)
        .bind(c.next_at_ms)
        .bind(&c.last_error)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(f) = gave_up {
            sqlx::query("INSERT INTO webhook_failures (hook, audit_id, error, at) VALUES ($1, $2, $3, $4)")
                .bind(&f.hook)
                .bind(f.audit_id)
                .bind(&f.error)
                .bind(f.at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn webhook_failures(&self, limit: usize) -> Result<Vec<WebhookFailure>> {
        let rows = sqlx::query("SELECT hook, audit_id, error, at FROM webhook_failures ORDER BY id DESC LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| WebhookFailure { hook: r.get("hook"), audit_id: r.get("audit_id"), error: r.get("error"), at_ms: r.get("at") }).collect())
    }

    async fn audit_head(&self) -> Result<i64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit").fetch_one(&self.reader).await.map_err(db)?;
        Ok(head.unwrap_or(0))
    }
}
