//! [`QuotaLedger`] on both databases.

use super::{SqlMeta, db};
use crate::{Held, Hold, QuotaLedger, Result};

/// The ledger's bytes for `$1` (a namespace) beyond a count begun after mark `$2`.
const HELD_SQL: &str =
    "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM quota_holds WHERE namespace = $1 AND (settled = 0 OR id > $2)";

fn bytes(n: i64) -> u64 {
    n.max(0) as u64
}

fn value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl QuotaLedger for SqlMeta {
    async fn ledger_mark(&self) -> Result<i64> {
        let mark: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM quota_holds").fetch_one(&self.reader).await.map_err(db)?;
        Ok(mark)
    }

    async fn ledger_bytes(&self, namespace: &str, mark: i64) -> Result<u64> {
        let held: i64 = sqlx::query_scalar(HELD_SQL).bind(namespace).bind(mark).fetch_one(&self.reader).await.map_err(db)?;
        Ok(bytes(held))
    }

    async fn hold(&self, hold: &Hold) -> Result<Held> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM quota_holds WHERE expires_ms < $1").bind(hold.now_ms).execute(&mut *tx).await.map_err(db)?;
        let held: i64 =
            sqlx::query_scalar(HELD_SQL).bind(&hold.namespace).bind(hold.mark).fetch_one(&mut *tx).await.map_err(db)?;
        let used = hold.stored.saturating_add(bytes(held));
        if let Some(max) = hold.max_bytes
            && used.saturating_add(hold.bytes) > max
        {
            return Ok(Held::Refused { used });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO quota_holds (namespace, bytes, settled, expires_ms) VALUES ($1, $2, 0, $3) RETURNING id",
        )
        .bind(&hold.namespace)
        .bind(value(hold.bytes))
        .bind(hold.expires_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Held::Granted(id))
    }

    async fn settle_hold(&self, id: i64, expires_ms: i64) -> Result<()> {
        let mut tx = self.write().await?;
        // Moved to a new, larger id: a count that began after the write was held, but before it
        // was recorded, must still add it.
        sqlx::query(
            "INSERT INTO quota_holds (namespace, bytes, settled, expires_ms) \
             SELECT namespace, bytes, 1, $2 FROM quota_holds WHERE id = $1 AND settled = 0",
        )
        .bind(id)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM quota_holds WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn release_hold(&self, id: i64) -> Result<()> {
        self.write_one(sqlx::query("DELETE FROM quota_holds WHERE id = $1 AND settled = 0").bind(id)).await?;
        Ok(())
    }
}
