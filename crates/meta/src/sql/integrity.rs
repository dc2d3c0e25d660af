//! [`Integrity`] on SQLite.

use oci::Digest;
use sqlx::Row;

use super::{SqlMeta, db, parse};
use crate::{DamagedBlob, Integrity, Result, ScrubProgress};

#[async_trait::async_trait]
impl Integrity for SqlMeta {
    async fn mark_damaged(&self, digest: &Digest, reason: &str, at_ms: i64) -> Result<bool> {
        let done = self.write_one(sqlx::query(
            "INSERT INTO damaged_blobs (digest, reason, found_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(reason)
        .bind(at_ms)).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn damaged_blobs(&self, limit: usize) -> Result<Vec<DamagedBlob>> {
        let rows = sqlx::query(
            "SELECT d.digest, d.reason, d.found_at,
                    CASE WHEN EXISTS (SELECT 1 FROM blob_links l WHERE l.digest = d.digest)
                      OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = d.digest) THEN 1 ELSE 0 END AS in_use
             FROM damaged_blobs d ORDER BY d.digest LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(DamagedBlob {
                    digest: parse(&r.get::<String, _>("digest"))?,
                    reason: r.get("reason"),
                    found_at_ms: r.get("found_at"),
                    in_use: r.get::<i64, _>("in_use") != 0,
                })
            })
            .collect()
    }

    async fn forget_unused_damage(&self) -> Result<u64> {
        let done = self.write_one(sqlx::query(
            "DELETE FROM damaged_blobs WHERE NOT EXISTS (SELECT 1 FROM blob_links l WHERE l.digest = damaged_blobs.digest)
             AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = damaged_blobs.digest)",
        )).await?;
        Ok(done.rows_affected())
    }

    async fn scrub_progress(&self) -> Result<Option<ScrubProgress>> {
        let row = sqlx::query("SELECT after_digest, pass_started, last_pass_ended FROM scrub_progress WHERE id = 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(ScrubProgress {
                after: r.get::<Option<String>, _>("after_digest").map(|d| parse(&d)).transpose()?,
                pass_started_ms: r.get("pass_started"),
                last_pass_ended_ms: r.get("last_pass_ended"),
            })
        })
        .transpose()
    }

    async fn save_scrub_progress(&self, p: &ScrubProgress) -> Result<()> {
        self.write_one(sqlx::query(
            "INSERT INTO scrub_progress (id, after_digest, pass_started, last_pass_ended) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET after_digest = $1, pass_started = $2, last_pass_ended = $3",
        )
        .bind(p.after.as_ref().map(Digest::to_string))
        .bind(p.pass_started_ms)
        .bind(p.last_pass_ended_ms)).await?;
        Ok(())
    }
}
