//! [`Inspections`] on SQLite. One writer connection serialises claims, so the claim is a plain
//! `UPDATE … WHERE id = (SELECT …) RETURNING`; PostgreSQL will add `FOR UPDATE SKIP LOCKED`.

use std::str::FromStr;

use oci::{Digest, RepoName};
use sqlx::Row;

use super::{SqliteMeta, db, now_ms};
use crate::{Error, GateState, InspectionJob, InspectionState, Inspections, Result, StoredReport};

fn stored_report(row: &sqlx::sqlite::SqliteRow, digest: Digest) -> Result<StoredReport> {
    Ok(StoredReport {
        digest,
        report: row.get("report"),
        db_version: row.get("db_version"),
        inspected_at_ms: row.get("inspected_at"),
        millis: row.get("millis"),
        allowed: row.get("allowed"),
        policy: row.get("policy"),
        reasons: reasons(row.get("reasons"))?,
    })
}

fn reasons(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|_| Error::Corrupt(format!("stored reasons {json:?} are not a JSON list")))
}

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse().map_err(|_| Error::Corrupt(format!("stored {what} {s:?} does not parse")))
}

#[async_trait::async_trait]
impl Inspections for SqliteMeta {
    async fn claim_inspection(&self, now: i64, lease_ms: i64) -> Result<Option<InspectionJob>> {
        let row = sqlx::query(
            "UPDATE inspection_jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, updated_at = $2
             WHERE id = (SELECT id FROM inspection_jobs
                         WHERE (state = 'queued' AND run_after <= $2) OR (state = 'running' AND lease_until < $2)
                         ORDER BY id LIMIT 1)
             RETURNING id, repo, digest, attempts",
        )
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(InspectionJob {
            id: row.get("id"),
            repo: parse(row.get::<&str, _>("repo"), "repository")?,
            digest: parse(row.get::<&str, _>("digest"), "digest")?,
            attempts: row.get::<i64, _>("attempts") as u32,
        }))
    }

    async fn complete_inspection(&self, r: &StoredReport) -> Result<()> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO inspection_reports (digest, report, db_version, inspected_at, millis, allowed, policy, reasons)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (digest) DO UPDATE SET report = $2, db_version = $3, inspected_at = $4, millis = $5,
                 allowed = $6, policy = $7, reasons = $8",
        )
        .bind(r.digest.to_string())
        .bind(&r.report)
        .bind(&r.db_version)
        .bind(r.inspected_at_ms)
        .bind(r.millis)
        .bind(r.allowed)
        .bind(&r.policy)
        .bind(serde_json::to_string(&r.reasons).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE inspection_jobs SET state = 'done', lease_until = NULL, last_error = NULL, updated_at = $1 WHERE digest = $2")
            .bind(now_ms())
            .bind(r.digest.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn fail_inspection(&self, job: i64, error: &str, retry_at: Option<i64>) -> Result<()> {
        let (state, run_after) = match retry_at {
            Some(t) => ("queued", t),
            None => ("failed", now_ms()),
        };
        sqlx::query("UPDATE inspection_jobs SET state = $1, run_after = $2, lease_until = NULL, last_error = $3, updated_at = $4 WHERE id = $5")
            .bind(state)
            .bind(run_after)
            .bind(error)
            .bind(now_ms())
            .bind(job)
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn inspection_report(&self, digest: &Digest) -> Result<Option<StoredReport>> {
        let row = sqlx::query("SELECT report, db_version, inspected_at, millis, allowed, policy, reasons FROM inspection_reports WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.map(|row| stored_report(&row, digest.clone())).transpose()
    }

    async fn stale_reports(&self, db_version: &str, limit: usize) -> Result<Vec<StoredReport>> {
        let rows = sqlx::query(
            "SELECT digest, report, db_version, inspected_at, millis, allowed, policy, reasons FROM inspection_reports
             WHERE db_version <> $1 ORDER BY digest LIMIT $2",
        )
        .bind(db_version)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter().map(|row| stored_report(row, parse(row.get::<&str, _>("digest"), "digest")?)).collect()
    }

    async fn gate_state(&self, repo: &RepoName, digest: &Digest) -> Result<GateState> {
        let verdict = sqlx::query("SELECT allowed, policy, reasons FROM inspection_reports WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        if let Some(row) = verdict {
            return Ok(if row.get::<bool, _>("allowed") {
                GateState::Allowed
            } else {
                GateState::Blocked { policy: row.get("policy"), reasons: reasons(row.get("reasons"))? }
            });
        }
        Ok(match self.inspection_state(repo, digest).await? {
            None | Some(InspectionState::Done) => GateState::Unjudged,
            Some(InspectionState::Queued | InspectionState::Running) => GateState::Pending,
            Some(InspectionState::Failed(e)) => GateState::Failed(e),
        })
    }

    async fn inspection_state(&self, repo: &RepoName, digest: &Digest) -> Result<Option<InspectionState>> {
        let row = sqlx::query("SELECT state, last_error FROM inspection_jobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(match row.get::<&str, _>("state") {
            "queued" => InspectionState::Queued,
            "running" => InspectionState::Running,
            "done" => InspectionState::Done,
            "failed" => InspectionState::Failed(row.get::<Option<String>, _>("last_error").unwrap_or_default()),
            other => return Err(Error::Corrupt(format!("inspection state {other:?}"))),
        }))
    }
}
