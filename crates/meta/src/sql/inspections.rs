//! [`Inspections`] and [`Findings`] in SQL. Writes take turns (see the module above), so a claim
//! is a plain `UPDATE … WHERE id = (SELECT …) RETURNING` on both databases: no two replicas can
//! claim one job.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci::{Digest, RepoName};
use sqlx::Row;
use sqlx::Any;
use sqlx::any::AnyRow;

use super::statement::Statement;
use super::{Dialect, SqlMeta, db, now_ms};
use crate::{
    Component, Error, Findings, GateState, ImageMatch, ImageVulnerability, InspectionJob, InspectionState, Inspections, Matches,
    NewWaiver, PackageQuery, ReportFacts, ReportIndex, Result, StoredReport, Verdict, VerdictBatch, Waiver,
};

/// Rows per multi-row INSERT (7 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

macro_rules! verdict_columns {
    () => {
        "repo, digest, allowed, enforced, policy, reasons, warnings, basis, judged_at"
    };
}

/// The columns [`verdict`] reads: the flags as 0 or 1, which both databases hand over alike.
macro_rules! verdict_select {
    () => {
        "SELECT repo, digest, CASE WHEN allowed THEN 1 ELSE 0 END AS allowed, CASE WHEN enforced THEN 1 ELSE 0 END AS enforced, \
         policy, reasons, warnings, basis, judged_at"
    };
}

#[async_trait::async_trait]
impl Inspections for SqlMeta {
    async fn claim_inspection(&self, now: i64, lease_ms: i64) -> Result<Option<InspectionJob>> {
        let row = self.write_returning(sqlx::query(
            "UPDATE inspection_jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, updated_at = $2
             WHERE id = (SELECT id FROM inspection_jobs
                         WHERE (state = 'queued' AND run_after <= $2) OR (state = 'running' AND lease_until < $2)
                         ORDER BY id LIMIT 1)
             RETURNING id, repo, digest, attempts",
        )
        .bind(now + lease_ms)
        .bind(now)).await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(InspectionJob {
            id: row.get("id"),
            repo: parse(row.get::<&str, _>("repo"), "repository")?,
            digest: parse(row.get::<&str, _>("digest"), "digest")?,
            attempts: row.get::<i64, _>("attempts") as u32,
        }))
    }

    async fn record_verdict(&self, report: Option<(&StoredReport, &ReportIndex)>, v: &Verdict) -> Result<Option<Verdict>> {
        let mut tx = self.write().await?;
        let old = write_verdict(&mut tx, self.dialect, report, v, true).await?;
        tx.commit().await.map_err(db)?;
        Ok(old)
    }

    async fn record_verdicts(&self, batch: &VerdictBatch<'_>) -> Result<()> {
        let mut tx = self.write().await?;
        for w in batch.judged {
            write_verdict(&mut tx, self.dialect, w.report, w.verdict, false).await?;
        }
        for chunk in batch.carried.chunks(ROWS_PER_INSERT) {
            let mut q = Statement::new(self.dialect, "UPDATE verdicts SET basis = ");
            q.push_bind(batch.basis).push(" WHERE (repo, digest) IN ");
            q.push_pairs(chunk.iter().map(|(repo, digest)| (repo.as_str(), digest.to_string())));
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        for chunk in batch.restamped.chunks(ROWS_PER_INSERT) {
            let mut q = Statement::new(self.dialect, "UPDATE inspection_reports SET db_version = ");
            q.push_bind(batch.db_version).push(", db = ").push_bind(batch.db).push(" WHERE digest IN ");
            q.push_list(chunk.iter().map(|d| d.to_string()));
            q.build().execute(&mut *tx).await.map_err(db)?;
        }
        for entry in batch.audit {
            super::identities::audit_in(&mut tx, entry).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn fail_inspection(&self, job: i64, error: &str, retry_at: Option<i64>) -> Result<()> {
        let (state, run_after) = match retry_at {
            Some(t) => ("queued", t),
            None => ("failed", now_ms()),
        };
        self.write_one(sqlx::query("UPDATE inspection_jobs SET state = $1, run_after = $2, lease_until = NULL, last_error = $3, updated_at = $4 WHERE id = $5")
            .bind(state)
            .bind(run_after)
            .bind(error)
            .bind(now_ms())
            .bind(job)).await?;
        Ok(())
    }

    async fn inspection_report(&self, digest: &Digest) -> Result<Option<StoredReport>> {
        let row = sqlx::query(
            "SELECT report, db_version, db, vulnerabilities, vulnerabilities_digest, inspected_at, millis FROM inspection_reports WHERE digest = $1",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        Ok(row.map(|row| StoredReport {
            digest: digest.clone(),
            facts: row.get("report"),
            matches: Matches {
                db_version: row.get("db_version"),
                db: row.get("db"),
                vulnerabilities: row.get("vulnerabilities"),
                digest: row.get("vulnerabilities_digest"),
            },
            inspected_at_ms: row.get("inspected_at"),
            millis: row.get("millis"),
        }))
    }

    async fn report_facts(&self, digests: &[Digest]) -> Result<Vec<ReportFacts>> {
        let mut out = Vec::with_capacity(digests.len());
        for chunk in digests.chunks(ROWS_PER_INSERT) {
            let mut q = Statement::new(self.dialect, "SELECT digest, report, db_version, vulnerabilities_digest, inspected_at, millis FROM inspection_reports WHERE digest IN ");
            q.push_list(chunk.iter().map(Digest::to_string));
            for row in q.build().fetch_all(&self.reader).await.map_err(db)? {
                out.push(ReportFacts {
                    digest: parse(row.get::<&str, _>("digest"), "digest")?,
                    facts: row.get("report"),
                    db_version: row.get("db_version"),
                    matches_digest: row.get("vulnerabilities_digest"),
                    inspected_at_ms: row.get("inspected_at"),
                    millis: row.get("millis"),
                });
            }
        }
        Ok(out)
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

    async fn verdict(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Verdict>> {
        sqlx::query(concat!(verdict_select!(), " FROM verdicts WHERE repo = $1 AND digest = $2"))
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .map(|row| verdict(&row))
            .transpose()
    }

    async fn gate_state(&self, repo: &RepoName, digest: &Digest) -> Result<GateState> {
        let own = self.own_gate_state(repo, digest).await?;
        if own != GateState::Unjudged {
            return Ok(own);
        }
        // An index: judged through the images it lists.
        let children: Vec<String> = sqlx::query_scalar("SELECT target FROM manifest_refs WHERE repo = $1 AND manifest = $2 AND kind = 'manifest'")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        let mut strictest = GateState::Unjudged;
        for child in children {
            let child_digest: Digest = parse(&child, "digest")?;
            let state = match self.own_gate_state(repo, &child_digest).await? {
                GateState::Blocked { policy, reasons } => {
                    GateState::Blocked { policy, reasons: reasons.into_iter().map(|r| format!("{child}: {r}")).collect() }
                }
                other => other,
            };
            if strictness(&state) > strictness(&strictest) {
                strictest = state;
            }
        }
        Ok(strictest)
    }

    async fn stale_verdicts(&self, basis: &str, after: Option<(&Digest, &RepoName)>, limit: usize) -> Result<Vec<Verdict>> {
        // Every stored pair sorts after ("", ""): a digest is never empty.
        let (digest, repo) = after.map(|(d, r)| (d.to_string(), r.as_str())).unwrap_or_default();
        let rows = sqlx::query(concat!(verdict_select!(), " FROM verdicts WHERE basis <> $1 AND (digest, repo) > ($2, $3) ORDER BY digest, repo LIMIT $4"))
            .bind(basis)
            .bind(digest)
            .bind(repo)
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter().map(verdict).collect()
    }

    async fn rejudge_verdict(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.write_one(sqlx::query("UPDATE verdicts SET basis = '' WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.to_string())).await?;
        Ok(())
    }

    async fn layer_records(&self, engines: &str, layers: &[Digest]) -> Result<Vec<(Digest, Vec<u8>)>> {
        let mut out = Vec::new();
        for chunk in layers.chunks(ROWS_PER_INSERT) {
            let mut q = Statement::new(self.dialect, "SELECT layer, record FROM layer_records WHERE engines = ");
            q.push_bind(engines).push(" AND layer IN ");
            q.push_list(chunk.iter().map(Digest::to_string));
            for row in q.build().fetch_all(&self.reader).await.map_err(db)? {
                out.push((parse(row.get::<&str, _>("layer"), "digest")?, row.get("record")));
            }
        }
        Ok(out)
    }

    async fn save_layer_records(&self, engines: &str, records: &[(Digest, Vec<u8>)]) -> Result<()> {
        let mut tx = self.write().await?;
        for (layer, record) in records {
            sqlx::query("INSERT INTO layer_records (layer, engines, record, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(layer.to_string())
                .bind(engines)
                .bind(record)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn prune_layer_records(&self, engines: &str, before_ms: i64) -> Result<u64> {
        let done = self.write_one(sqlx::query("DELETE FROM layer_records WHERE engines <> $1 AND created_at < $2")
            .bind(engines)
            .bind(before_ms)).await?;
        Ok(done.rows_affected())
    }
}

impl SqlMeta {
    /// The gate state of `digest` itself: its verdict, else its job.
    async fn own_gate_state(&self, repo: &RepoName, digest: &Digest) -> Result<GateState> {
        if let Some(v) = self.verdict(repo, digest).await? {
            return Ok(if v.serves() { GateState::Allowed } else { GateState::Blocked { policy: v.policy, reasons: v.reasons } });
        }
        Ok(match self.inspection_state(repo, digest).await? {
            None | Some(InspectionState::Done) => GateState::Unjudged,
            Some(InspectionState::Queued | InspectionState::Running) => GateState::Pending,
            Some(InspectionState::Failed(e)) => GateState::Failed(e),
        })
    }

    async fn image_matches<T>(&self, rows: Vec<(String, String, T)>) -> Result<Vec<ImageMatch<T>>> {
        // Every image's tags in one query per few hundred images.
        let mut images: Vec<(&str, &str)> = rows.iter().map(|(r, d, _)| (r.as_str(), d.as_str())).collect();
        images.sort_unstable();
        images.dedup();
        let mut tags: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for chunk in images.chunks(ROWS_PER_INSERT) {
            let mut q = Statement::new(self.dialect, "SELECT repo, digest, name FROM tags WHERE (repo, digest) IN ");
            q.push_pairs(chunk.iter().copied());
            q.push(" ORDER BY repo, digest, name");
            for row in q.build().fetch_all(&self.reader).await.map_err(db)? {
                tags.entry((row.get("repo"), row.get("digest"))).or_default().push(row.get("name"));
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for (repo, digest, found) in rows {
            let t = tags.get(&(repo.clone(), digest.clone())).cloned().unwrap_or_default();
            out.push(ImageMatch { repo: parse(&repo, "repository")?, digest: parse(&digest, "digest")?, tags: t, found });
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Findings for SqlMeta {
    async fn images_with_vulnerability(&self, id: &str, limit: usize) -> Result<Vec<ImageMatch<ImageVulnerability>>> {
        // An image holds the vulnerability once per id it goes by; the same canonical id through
        // two aliases is one finding.
        let rows = sqlx::query(
            "SELECT DISTINCT m.repo, v.digest, v.canonical, v.package, v.version, v.severity, v.fixed
             FROM image_vulnerabilities v JOIN manifests m ON m.digest = v.digest
             WHERE v.vuln = $1 ORDER BY m.repo, v.digest, v.package LIMIT $2",
        )
        .bind(id)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        let rows = rows
            .iter()
            .map(|r| {
                let found = ImageVulnerability {
                    id: id.to_owned(),
                    canonical: r.get("canonical"),
                    package: r.get("package"),
                    version: r.get("version"),
                    severity: r.get("severity"),
                    fixed: r.get("fixed"),
                };
                (r.get::<String, _>("repo"), r.get::<String, _>("digest"), found)
            })
            .collect();
        self.image_matches(rows).await
    }

    async fn images_with_package(&self, q: &PackageQuery, limit: usize) -> Result<Vec<ImageMatch<Component>>> {
        // A purl without a version matches every version of it.
        let (purl_exact, purl_prefix) = match &q.purl {
            Some(p) if p.contains('@') => (Some(p.clone()), None),
            Some(p) => (None, Some(format!("{p}@"))),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT DISTINCT m.repo, c.digest, c.ecosystem, c.name, c.version, c.purl, c.layer
             FROM components c JOIN manifests m ON m.digest = c.digest
             WHERE ($1 IS NULL OR c.purl = $1 OR c.purl LIKE $1 || '?%')
               AND ($2 IS NULL OR substr(c.purl, 1, length($2)) = $2)
               AND ($3 IS NULL OR c.ecosystem = $3)
               AND ($4 IS NULL OR c.name = $4 OR substr(c.name, length(c.name) - length($4)) = ':' || $4)
             ORDER BY m.repo, c.digest, c.name, c.version LIMIT $5",
        )
        .bind(purl_exact)
        .bind(purl_prefix)
        .bind(&q.ecosystem)
        .bind(&q.name)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        let rows = rows
            .iter()
            .map(|r| {
                let found = Component {
                    ecosystem: r.get("ecosystem"),
                    name: r.get("name"),
                    version: r.get("version"),
                    purl: r.get("purl"),
                    layer: r.get("layer"),
                };
                (r.get::<String, _>("repo"), r.get::<String, _>("digest"), found)
            })
            .collect();
        self.image_matches(rows).await
    }

    async fn add_waiver(&self, w: &NewWaiver) -> Result<Waiver> {
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO waivers (finding, repositories, reason, expires_at, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&w.finding)
        .bind(&w.repositories)
        .bind(&w.reason)
        .bind(w.expires_at_ms)
        .bind(now)
        .bind(&w.created_by)
        .fetch_one(&self.writer)
        .await
        .map_err(db)?;
        Ok(Waiver {
            id,
            finding: w.finding.clone(),
            repositories: w.repositories.clone(),
            reason: w.reason.clone(),
            expires_at_ms: w.expires_at_ms,
            created_at_ms: now,
            created_by: w.created_by.clone(),
        })
    }

    async fn waivers(&self) -> Result<Vec<Waiver>> {
        let rows = sqlx::query("SELECT id, finding, repositories, reason, expires_at, created_at, created_by FROM waivers ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Waiver {
                id: r.get("id"),
                finding: r.get("finding"),
                repositories: r.get("repositories"),
                reason: r.get("reason"),
                expires_at_ms: r.get("expires_at"),
                created_at_ms: r.get("created_at"),
                created_by: r.get("created_by"),
            })
            .collect())
    }

    async fn remove_waiver(&self, id: i64) -> Result<bool> {
        let done = self.write_one(sqlx::query("DELETE FROM waivers WHERE id = $1").bind(id)).await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Stores a report's new matches (its facts stay) and changes its query rows by difference: a
/// newer DB changes a few of an image's vulnerabilities, not hundreds.
async fn rematched(tx: &mut sqlx::Transaction<'static, Any>, dialect: Dialect, r: &StoredReport, index: &ReportIndex) -> Result<()> {
    let digest = r.digest.to_string();
    let updated = sqlx::query("UPDATE inspection_reports SET db_version = $2, db = $3, vulnerabilities = $4, vulnerabilities_digest = $5 WHERE digest = $1")
        .bind(&digest)
        .bind(&r.matches.db_version)
        .bind(&r.matches.db)
        .bind(&r.matches.vulnerabilities)
        .bind(&r.matches.digest)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if updated.rows_affected() == 0 {
        return Err(Error::Unavailable(format!("no stored report of {digest} to match again")));
    }
    // The old rows as one JSON array, [rowid, fields...] each: one value to hand over instead
    // of hundreds of rows.
    let (old,): (String,) = sqlx::query_as(match dialect {
        Dialect::Sqlite => {
            "SELECT coalesce(json_group_array(json_array(rowid, vuln, canonical, package, version, severity, fixed)), '[]')
             FROM image_vulnerabilities WHERE digest = $1"
        }
        Dialect::Postgres => {
            "SELECT coalesce(json_agg(json_build_array(rowid, vuln, canonical, package, version, severity, fixed))::text, '[]')
             FROM image_vulnerabilities WHERE digest = $1"
        }
    })
    .bind(&digest)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    // Owned: a field with an escape in JSON cannot be borrowed.
    type Row = (i64, String, String, String, String, String, Option<String>);
    let old: Vec<Row> = serde_json::from_str(&old).map_err(|e| Error::Unavailable(format!("the stored rows of {digest}: {e}")))?;
    fn key(f: &ImageVulnerability) -> (&str, &str, &str, &str, &str, Option<&str>) {
        (&f.id, &f.canonical, &f.package, &f.version, &f.severity, f.fixed.as_deref())
    }
    // A multiset: the same row may stand twice (one package at two paths).
    let mut wanted: std::collections::HashMap<_, (&ImageVulnerability, usize)> = std::collections::HashMap::new();
    for f in &index.vulnerabilities {
        wanted.entry(key(f)).or_insert((f, 0)).1 += 1;
    }
    let mut gone = Vec::new();
    for (rowid, vuln, canonical, package, version, severity, fixed) in &old {
        match wanted.get_mut(&(vuln.as_str(), canonical.as_str(), package.as_str(), version.as_str(), severity.as_str(), fixed.as_deref())) {
            Some((_, n)) if *n > 0 => *n -= 1,
            _ => gone.push(rowid),
        }
    }
    for chunk in gone.chunks(ROWS_PER_INSERT) {
        let mut q = Statement::new(dialect, "DELETE FROM image_vulnerabilities WHERE rowid IN ");
        q.push_list(chunk.iter().copied());
        q.build().execute(&mut **tx).await.map_err(db)?;
    }
    let new: Vec<&ImageVulnerability> = wanted.into_values().flat_map(|(f, n)| std::iter::repeat_n(f, n)).collect();
    for chunk in new.chunks(ROWS_PER_INSERT) {
        let mut q = Statement::new(dialect, "INSERT INTO image_vulnerabilities (digest, vuln, canonical, package, version, severity, fixed) ");
        q.push_values(chunk, |row, f| {
            row.push_bind(&digest).push_bind(&f.id).push_bind(&f.canonical).push_bind(&f.package).push_bind(&f.version).push_bind(&f.severity).push_bind(&f.fixed);
        });
        q.build().execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// Writes one verdict (and its report and rows, when given) in `tx`. `inspected`: it ends an
/// inspection, whose job is marked done; and the verdict it replaced is returned (judging again
/// knows it already).
async fn write_verdict(tx: &mut sqlx::Transaction<'static, Any>, dialect: Dialect, report: Option<(&StoredReport, &ReportIndex)>, v: &Verdict, inspected: bool) -> Result<Option<Verdict>> {
        if let Some((r, index)) = report
            && index.components.is_none()
        {
            // Matched again: the same facts and packages, new matches. Only what changed is
            // written: the matches, and the query rows by difference.
            rematched(tx, dialect, r, index).await?;
        } else if let Some((r, index)) = report {
            let digest = r.digest.to_string();
            sqlx::query(
                "INSERT INTO inspection_reports (digest, report, db_version, db, vulnerabilities, vulnerabilities_digest, inspected_at, millis)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (digest) DO UPDATE SET report = $2, db_version = $3, db = $4, vulnerabilities = $5,
                     vulnerabilities_digest = $6, inspected_at = $7, millis = $8",
            )
            .bind(&digest)
            .bind(&r.facts)
            .bind(&r.matches.db_version)
            .bind(&r.matches.db)
            .bind(&r.matches.vulnerabilities)
            .bind(&r.matches.digest)
            .bind(r.inspected_at_ms)
            .bind(r.millis)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            // Rows go in many per statement: each statement is a round trip to SQLite's thread.
            if let Some(components) = &index.components {
                sqlx::query("DELETE FROM components WHERE digest = $1").bind(&digest).execute(&mut **tx).await.map_err(db)?;
                for chunk in components.chunks(ROWS_PER_INSERT) {
                    let mut q = Statement::new(dialect, "INSERT INTO components (digest, ecosystem, name, version, purl, layer) ");
                    q.push_values(chunk, |row, c| {
                        row.push_bind(&digest).push_bind(&c.ecosystem).push_bind(&c.name).push_bind(&c.version).push_bind(&c.purl).push_bind(&c.layer);
                    });
                    q.build().execute(&mut **tx).await.map_err(db)?;
                }
            }
            sqlx::query("DELETE FROM image_vulnerabilities WHERE digest = $1").bind(&digest).execute(&mut **tx).await.map_err(db)?;
            for chunk in index.vulnerabilities.chunks(ROWS_PER_INSERT) {
                let mut q = Statement::new(dialect, "INSERT INTO image_vulnerabilities (digest, vuln, canonical, package, version, severity, fixed) ");
                q.push_values(chunk, |row, f| {
                    row.push_bind(&digest).push_bind(&f.id).push_bind(&f.canonical).push_bind(&f.package).push_bind(&f.version).push_bind(&f.severity).push_bind(&f.fixed);
                });
                q.build().execute(&mut **tx).await.map_err(db)?;
            }
        }
        let old = if inspected {
            sqlx::query(concat!(verdict_select!(), " FROM verdicts WHERE repo = $1 AND digest = $2"))
                .bind(v.repo.as_str())
                .bind(v.digest.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?
                .map(|row| verdict(&row))
                .transpose()?
        } else {
            None
        };
        sqlx::query(concat!("INSERT INTO verdicts (", verdict_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (repo, digest) DO UPDATE SET allowed = $3, enforced = $4, policy = $5, reasons = $6,
                 warnings = $7, basis = $8, judged_at = $9"))
        .bind(v.repo.as_str())
        .bind(v.digest.to_string())
        .bind(v.allowed)
        .bind(v.enforced)
        .bind(&v.policy)
        .bind(json_list(&v.reasons))
        .bind(json_list(&v.warnings))
        .bind(&v.basis)
        .bind(v.judged_at_ms)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        if inspected {
            sqlx::query(
                "UPDATE inspection_jobs SET state = 'done', lease_until = NULL, last_error = NULL, updated_at = $1
                 WHERE repo = $2 AND digest = $3",
            )
            .bind(now_ms())
            .bind(v.repo.as_str())
            .bind(v.digest.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
        Ok(old)
    }


/// How strongly a state refuses: the strictest child decides an index's state.
fn strictness(s: &GateState) -> u8 {
    match s {
        GateState::Unjudged => 0,
        GateState::Allowed => 1,
        GateState::Pending => 2,
        GateState::Blocked { .. } => 3,
        GateState::Failed(_) => 4,
    }
}

fn verdict(row: &AnyRow) -> Result<Verdict> {
    Ok(Verdict {
        repo: parse(row.get::<&str, _>("repo"), "repository")?,
        digest: parse(row.get::<&str, _>("digest"), "digest")?,
        allowed: row.get::<i64, _>("allowed") != 0,
        enforced: row.get::<i64, _>("enforced") != 0,
        policy: row.get("policy"),
        reasons: list(row.get("reasons"))?,
        warnings: list(row.get("warnings"))?,
        basis: row.get("basis"),
        judged_at_ms: row.get("judged_at"),
    })
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn list(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|_| Error::Corrupt(format!("stored list {json:?} is not a JSON list of strings")))
}

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse().map_err(|_| Error::Corrupt(format!("stored {what} {s:?} does not parse")))
}
