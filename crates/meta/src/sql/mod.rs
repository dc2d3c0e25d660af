//! The SQL adapter, one code path for two databases: SQLite, embedded (one file in the data
//! directory, WAL, `synchronous=FULL`: an acknowledged commit survives power loss), and PostgreSQL,
//! which N replicas share. Both go through sqlx's `Any` driver with the same statements (`$N`
//! placeholders, BIGINT/TEXT, `ON CONFLICT`); where the two speak differently, [`Dialect`] picks.
//!
//! Writes are serial in both, so every read-then-write in a transaction sees what it decides on:
//! SQLite has one writer connection; on PostgreSQL each write transaction first takes one
//! transaction-scoped advisory lock ([`WRITE_LOCK`]), so writers of every replica take turns, and
//! READ COMMITTED statements after it see every earlier commit. Reads never wait for writes.
//! Upload sessions are the one exception: each of their writes is a statement that decides by its
//! own row alone, which needs no lock (`SqlMeta::write_row`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use oci::{Digest, Reference, RepoName, Tag, UploadId};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Row, Transaction};

use crate::{
    CachedManifest, Error, KeptTags, Listing, ManifestRecord, NewManifest, Page, Repositories, Result, TagRecord, UploadRecord,
    UploadSessions,
};

/// SQLite's schema migrations, applied in order once each.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_registry.sql")),
    (2, include_str!("../../migrations/sqlite/0002_access.sql")),
    (3, include_str!("../../migrations/sqlite/0003_inspection.sql")),
    (4, include_str!("../../migrations/sqlite/0004_verdicts.sql")),
    (5, include_str!("../../migrations/sqlite/0005_judgements.sql")),
    (6, include_str!("../../migrations/sqlite/0006_matches.sql")),
    (7, include_str!("../../migrations/sqlite/0007_webhooks.sql")),
    (8, include_str!("../../migrations/sqlite/0008_layer_records.sql")),
    (9, include_str!("../../migrations/sqlite/0009_pushed_by.sql")),
    (10, include_str!("../../migrations/sqlite/0010_query_indexes.sql")),
    (11, include_str!("../../migrations/sqlite/0011_manifest_pulls.sql")),
    (12, include_str!("../../migrations/sqlite/0012_stale_verdict_pages.sql")),
    (13, include_str!("../../migrations/sqlite/0013_untagged_at.sql")),
    (14, include_str!("../../migrations/sqlite/0014_damaged_blobs.sql")),
    (15, include_str!("../../migrations/sqlite/0015_blob_links_by_digest.sql")),
    (16, include_str!("../../migrations/sqlite/0016_installation.sql")),
    (17, include_str!("../../migrations/sqlite/0017_quota_holds.sql")),
];

/// PostgreSQL's: it arrived with SQLite's schema at version 15, so that is its first migration;
/// later ones are numbered alike in both directories.
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (15, include_str!("../../migrations/postgres/0015_schema.sql")),
    (16, include_str!("../../migrations/postgres/0016_installation.sql")),
    (17, include_str!("../../migrations/postgres/0017_quota_holds.sql")),
];

/// The key of PostgreSQL's transaction-scoped advisory lock every write takes ("customs").
const WRITE_LOCK: i64 = 0x0063_7573_746f_6d73;

mod byte_locks;
mod copy;
pub use copy::Copied;
mod identities;
mod inspections;
mod integrity;
mod leadership;
mod quotas;
mod statement;
mod webhooks;

/// Where the two databases' SQL differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

pub struct SqlMeta {
    pub(super) writer: AnyPool,
    pub(super) reader: AnyPool,
    pub(super) dialect: Dialect,
    leads: leadership::Leads,
    holds: byte_locks::Holds,
}

impl SqlMeta {
    /// Opens (creating if needed) the SQLite database file at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqlMeta> {
        sqlx::any::install_default_drivers();
        let file = SqliteConnectOptions::new().filename(path);
        let url = |o: SqliteConnectOptions| AnyConnectOptions::from_url(&o.to_url_lossy()).map_err(db);
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON",
                    )
                    .execute(conn)
                    .await
                    .map(drop)
                })
            })
            .connect_with(url(file.clone().create_if_missing(true))?)
            .await
            .map_err(db)?;
        let meta = SqlMeta { reader: writer.clone(), writer, dialect: Dialect::Sqlite, leads: leadership::Leads::alone(), holds: byte_locks::Holds::alone() };
        meta.migrate(SQLITE_MIGRATIONS).await?;
        let reader = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| Box::pin(async move { sqlx::raw_sql("PRAGMA busy_timeout = 10000").execute(conn).await.map(drop) }))
            .connect_with(url(file.read_only(true))?)
            .await
            .map_err(db)?;
        Ok(SqlMeta { reader, ..meta })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/db`),
    /// applying pending migrations (replicas starting together take turns).
    pub async fn connect(url: &str) -> Result<SqlMeta> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url).map_err(db)?;
        let pool = |n| AnyPoolOptions::new().max_connections(n).acquire_timeout(Duration::from_secs(10)).connect_with(options.clone());
        let writer = pool(4).await.map_err(db)?;
        let meta = SqlMeta { reader: writer.clone(), writer, dialect: Dialect::Postgres, leads: leadership::Leads::shared(options.clone()), holds: byte_locks::Holds::alone() };
        meta.migrate(POSTGRES_MIGRATIONS).await?;
        Ok(SqlMeta { reader: pool(16).await.map_err(db)?, holds: byte_locks::Holds::shared(options), ..meta })
    }

    /// Which database this is.
    pub fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The records' own id: the one stored, else `candidate`, stored now (the first of several
    /// replicas to ask decides).
    pub async fn id(&self, candidate: &str) -> Result<String> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO installation (id) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM installation)")
            .bind(candidate)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let id: String = sqlx::query_scalar("SELECT id FROM installation").fetch_one(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    /// Gives up this process's leads and closes both pools, waiting for connections to finish
    /// their work.
    pub async fn close(&self) {
        self.leads.close().await;
        self.holds.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Begins a write transaction: every write is one, and they take turns (see the module's
    /// documentation).
    pub(super) async fn write(&self) -> Result<Transaction<'static, Any>> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await.map_err(db)?;
        }
        Ok(tx)
    }

    /// Runs one writing statement: on PostgreSQL in a transaction of its own, which takes the
    /// write lock; on SQLite's one writer connection as it is.
    pub(super) async fn write_one(&self, query: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>) -> Result<sqlx::any::AnyQueryResult> {
        if self.dialect == Dialect::Sqlite {
            return query.execute(&self.writer).await.map_err(db);
        }
        let mut tx = self.write().await?;
        let done = query.execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    /// Runs one statement that writes one row and decides by that row alone (an insert that
    /// does nothing if the key is taken, a compare-and-set, a delete by key), without the write
    /// lock. Such a statement is atomic in both databases by itself: PostgreSQL locks the row and,
    /// under READ COMMITTED, checks an `UPDATE`'s `WHERE` again against the row's newest version
    /// before it writes. The lock is for writes that read other rows to decide; making these
    /// wait for it would put every upload chunk of every replica in the same line as the pushes'
    /// commits (bench/RESULTS.md, "Writes in line"). Only upload sessions write this way: no
    /// locked write reads their rows to decide anything.
    ///
    /// On PostgreSQL it runs on the pool of 16 sessions reads use, not on the writers', whose
    /// sessions spend their time in line for the lock.
    async fn write_row(&self, query: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>) -> Result<sqlx::any::AnyQueryResult> {
        let pool = match self.dialect {
            // The reader pool is opened read-only here; the one writer connection keeps order.
            Dialect::Sqlite => &self.writer,
            Dialect::Postgres => &self.reader,
        };
        query.execute(pool).await.map_err(db)
    }

    /// [`Self::write_one`] for a statement that returns at most a row (`RETURNING`).
    pub(super) async fn write_returning(&self, query: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>) -> Result<Option<AnyRow>> {
        if self.dialect == Dialect::Sqlite {
            return query.fetch_optional(&self.writer).await.map_err(db);
        }
        let mut tx = self.write().await?;
        let row = query.fetch_optional(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(row)
    }

    async fn migrate(&self, migrations: &'static [(i64, &'static str)]) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        for &(version, sql) in migrations {
            let mut tx = self.write().await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            tracing::info!(version, backend = self.backend(), "applied metadata migration");
        }
        Ok(())
    }
}

/// The manifests of repository `$1` that no tag points at, no manifest references (an index's
/// children) and that are not referrers (those go with their subject), stored, untagged and
/// pulled last before `$2`.
macro_rules! idle_untagged_from {
    () => {
        "FROM manifests m LEFT JOIN manifest_pulls p ON p.repo = m.repo AND p.digest = m.digest \
         WHERE m.repo = $1 AND m.subject IS NULL \
         AND m.created_at < $2 AND COALESCE(m.untagged_at, 0) < $2 AND COALESCE(p.pulled_at, 0) < $2 \
         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest) \
         AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.target = m.digest)"
    };
}

/// The size of a blob linked in a repository, unless it is damaged (see [`crate::Integrity`]).
const LINKED_SIZE: &str = "SELECT size FROM blob_links WHERE repo = $1 AND digest = $2 \
     AND NOT EXISTS (SELECT 1 FROM damaged_blobs WHERE digest = $2)";

macro_rules! manifest_select {
    ($rest:literal) => {
        concat!("SELECT m.digest, m.media_type, m.size, m.artifact_type, m.subject, m.annotations ", $rest)
    };
}

#[async_trait::async_trait]
impl Repositories for SqlMeta {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.write().await?;
        link_in(&mut tx, repo, digest, size).await?;
        tx.commit().await.map_err(db)
    }

    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(LINKED_SIZE)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        Ok(size.map(|s| s as u64))
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.write_repo_digest("DELETE FROM blob_links WHERE repo = $1 AND digest = $2", repo, digest).await
    }

    async fn put_manifest(&self, repo: &RepoName, m: &NewManifest) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write().await?;
        ensure_repo(&mut tx, repo, now).await?;
        for (digest, declared) in &m.blobs {
            let size: Option<i64> = sqlx::query_scalar(LINKED_SIZE)
                .bind(repo.as_str())
                .bind(digest.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            match size {
                None => return Err(Error::MissingReference(digest.clone())),
                Some(actual) if actual as u64 != *declared => {
                    let (declared, actual) = (*declared, actual as u64);
                    return Err(Error::SizeMismatch { digest: digest.clone(), declared, actual });
                }
                Some(_) => {}
            }
        }
        for child in &m.children {
            let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(child.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if found.is_none() && !m.children_optional {
                return Err(Error::MissingReference(child.clone()));
            }
        }
        let r = &m.record;
        // The caller has just put the manifest's bytes in the store.
        repaired(&mut tx, &r.digest).await?;
        sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, size, artifact_type, subject, annotations, created_at, pushed_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(r.digest.to_string())
        .bind(&r.media_type)
        .bind(r.size as i64)
        .bind(&r.artifact_type)
        .bind(r.subject.as_ref().map(Digest::to_string))
        .bind(&r.annotations)
        .bind(now)
        .bind(&m.pushed_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if m.inspect {
            sqlx::query(
                "INSERT INTO inspection_jobs (repo, digest, state, attempts, run_after, created_at, updated_at)
                 VALUES ($1, $2, 'queued', 0, $3, $3, $3) ON CONFLICT (repo, digest) DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(r.digest.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let refs = m.blobs.iter().map(|(d, _)| (d, "blob")).chain(m.children.iter().map(|d| (d, "manifest")));
        for (target, kind) in refs {
            sqlx::query(
                "INSERT INTO manifest_refs (repo, manifest, target, kind) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo, manifest, target) DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(r.digest.to_string())
            .bind(target.to_string())
            .bind(kind)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if let Some(tag) = &m.tag {
            if m.tag_immutable
                && let Some(digest) = tagged(&mut tx, repo, tag).await?
                && digest != r.digest
            {
                return Err(Error::TagImmutable { tag: tag.clone(), digest });
            }
            mark_untagged(&mut tx, repo, tag, Some(&r.digest), now).await?;
            sqlx::query(
                "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(r.digest.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<Option<ManifestRecord>> {
        let row = match reference {
            Reference::Digest(d) => {
                sqlx::query(manifest_select!("FROM manifests m WHERE m.repo = $1 AND m.digest = $2"))
                    .bind(repo.as_str())
                    .bind(d.to_string())
                    .fetch_optional(&self.reader)
                    .await
            }
            Reference::Tag(t) => {
                sqlx::query(manifest_select!(
                    "FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                     WHERE t.repo = $1 AND t.name = $2"
                ))
                .bind(repo.as_str())
                .bind(t.as_str())
                .fetch_optional(&self.reader)
                .await
            }
        };
        row.map_err(db)?.map(|r| manifest_record(&r)).transpose()
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest, kept: KeptTags<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let tags: Vec<String> = sqlx::query_scalar("SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        for tag in tags {
            let tag: Tag = parse(&tag)?;
            if kept(&tag) {
                return Err(Error::TagImmutable { tag, digest: digest.clone() });
            }
        }
        let done = delete_manifest_in(&mut tx, repo, digest).await?;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn delete_dangling_referrers(&self, before_ms: i64, limit: usize) -> Result<Vec<(RepoName, Digest)>> {
        let mut tx = self.write().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT repo, digest FROM manifests m WHERE subject IS NOT NULL AND created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject) \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.target = m.digest) \
             ORDER BY repo, digest LIMIT $2",
        )
        .bind(before_ms)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut deleted = Vec::with_capacity(rows.len());
        for (repo, digest) in rows {
            let corrupt = || Error::Corrupt(format!("stored manifest {repo:?} {digest:?} does not parse"));
            let (repo, digest): (RepoName, Digest) = (repo.parse().map_err(|_| corrupt())?, digest.parse().map_err(|_| corrupt())?);
            delete_manifest_in(&mut tx, &repo, &digest).await?;
            deleted.push((repo, digest));
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let mut tx = self.write().await?;
        mark_untagged(&mut tx, repo, tag, None, now_ms()).await?;
        let done = sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn tag_records(&self, repo: &RepoName) -> Result<Vec<TagRecord>> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT t.name, t.digest, t.updated_at, p.pulled_at FROM tags t \
             LEFT JOIN manifest_pulls p ON p.repo = t.repo AND p.digest = t.digest WHERE t.repo = $1 ORDER BY t.name",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(tag, digest, pushed_at_ms, pulled_at_ms)| {
                Ok(TagRecord { tag: parse(&tag)?, digest: parse(&digest)?, pushed_at_ms, pulled_at_ms })
            })
            .collect()
    }

    async fn delete_tag_if_unchanged(&self, repo: &RepoName, record: &TagRecord) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2 AND digest = $3 AND updated_at = $4")
            .bind(repo.as_str())
            .bind(record.tag.as_str())
            .bind(record.digest.to_string())
            .bind(record.pushed_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            sqlx::query("UPDATE manifests SET untagged_at = $3 WHERE repo = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(record.digest.to_string())
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn idle_untagged(&self, repo: &RepoName, before_ms: i64, limit: usize) -> Result<Vec<Digest>> {
        idle_untagged_in(&self.reader, repo, before_ms, limit).await
    }

    async fn delete_idle_untagged(&self, repo: &RepoName, before_ms: i64, limit: usize) -> Result<Vec<Digest>> {
        let mut tx = self.write().await?;
        let digests = idle_untagged_in(&mut *tx, repo, before_ms, limit).await?;
        for digest in &digests {
            delete_manifest_in(&mut tx, repo, digest).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(digests)
    }

    async fn tags(&self, repo: &RepoName, page: &Page) -> Result<Option<Listing<Tag>>> {
        let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        if known.is_none() {
            return Ok(None);
        }
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM tags WHERE repo = $1 AND name > $2 ORDER BY name LIMIT $3")
                .bind(repo.as_str())
                .bind(page.last.as_deref().unwrap_or(""))
                .bind(page.n as i64 + 1)
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
        listing(names, page.n).map(Some)
    }

    async fn repositories(&self, page: &Page) -> Result<Listing<RepoName>> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(page.n as i64 + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        listing(names, page.n)
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<ManifestRecord>> {
        let rows = sqlx::query(manifest_select!(
            "FROM manifests m WHERE m.repo = $1 AND m.subject = $2
             AND ($3 IS NULL OR m.artifact_type = $3) ORDER BY m.digest"
        ))
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter().map(manifest_record).collect()
    }

    async fn pushed_by(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let who: Option<Option<String>> = sqlx::query_scalar("SELECT pushed_by FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        Ok(who.flatten())
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db)
    }

    async fn manifests_referencing(&self, repo: &RepoName, target: &Digest) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT manifest FROM manifest_refs WHERE repo = $1 AND target = $2 ORDER BY manifest")
            .bind(repo.as_str())
            .bind(target.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter().map(|d| d.parse().map_err(|_| Error::Corrupt(format!("stored digest {d:?} does not parse")))).collect()
    }

    async fn unlink_unreferenced_blob(&self, repo: &RepoName, digest: &Digest, before_ms: i64) -> Result<bool> {
        let sql = "DELETE FROM blob_links WHERE repo = $1 AND digest = $2 AND created_at < $3 \
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs WHERE repo = $1 AND target = $2)";
        let done = self.write_one(sqlx::query(sql).bind(repo.as_str()).bind(digest.to_string()).bind(before_ms)).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn renew_link(&self, repo: &RepoName, digest: &Digest, older_than_ms: i64, now_ms: i64) -> Result<bool> {
        // One statement deciding by its own row: on PostgreSQL a concurrent unlink either sees the
        // renewed time (READ COMMITTED checks its `WHERE` again against the newest row) or has
        // removed the row, which this then does not find. The row is written whether or not its
        // time changes, so that "found" is this statement's own answer.
        let done = self
            .write_row(
                sqlx::query(
                    "UPDATE blob_links SET created_at = CASE WHEN created_at < $3 THEN $4 ELSE created_at END \
                     WHERE repo = $1 AND digest = $2",
                )
                .bind(repo.as_str())
                .bind(digest.to_string())
                .bind(older_than_ms)
                .bind(now_ms),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn orphan_links(&self, before_ms: i64, limit: usize) -> Result<Vec<(RepoName, Digest)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT repo, digest FROM blob_links l WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = l.repo AND r.target = l.digest) \
             ORDER BY repo, digest LIMIT $2",
        )
        .bind(before_ms)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(repo, digest)| {
                let corrupt = || Error::Corrupt(format!("stored link {repo:?} {digest:?} does not parse"));
                Ok((repo.parse().map_err(|_| corrupt())?, digest.parse().map_err(|_| corrupt())?))
            })
            .collect()
    }

    async fn digest_in_use(&self, digest: &Digest) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM blob_links WHERE digest = $1 UNION ALL SELECT 1 FROM manifests WHERE digest = $1 LIMIT 1",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(db)?;
        Ok(found.is_some())
    }

    async fn record_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        let mut tx = self.write().await?;
        for (repo, digest, at) in pulls {
            sqlx::query(
                "INSERT INTO manifest_pulls (repo, digest, pulled_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo, digest) DO UPDATE SET pulled_at = \
                 CASE WHEN excluded.pulled_at > manifest_pulls.pulled_at THEN excluded.pulled_at ELSE manifest_pulls.pulled_at END",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn least_recently_pulled(&self, prefix: &str, before_ms: i64, limit: usize) -> Result<Vec<CachedManifest>> {
        let (from, to) = prefix_range(prefix);
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT m.repo, m.digest, COALESCE(p.pulled_at, m.created_at) AS used \
             FROM manifests m LEFT JOIN manifest_pulls p ON p.repo = m.repo AND p.digest = m.digest \
             WHERE m.repo >= $1 AND m.repo < $2 AND m.subject IS NULL AND COALESCE(p.pulled_at, m.created_at) < $3 \
             ORDER BY used, m.repo, m.digest LIMIT $4",
        )
        .bind(from)
        .bind(to)
        .bind(before_ms)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(repo, digest, used)| {
                Ok(CachedManifest {
                    repo: repo.parse().map_err(|_| Error::Corrupt(format!("stored repository {repo:?} does not parse")))?,
                    digest: digest.parse().map_err(|_| Error::Corrupt(format!("stored digest {digest:?} does not parse")))?,
                    last_used_ms: used,
                })
            })
            .collect()
    }

    async fn linked_bytes(&self, prefix: &str, except: &[&str]) -> Result<u64> {
        // Blobs and manifests alike, each digest once.
        let left_out = except_ranges(3, except.len());
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM (SELECT digest, MAX(size) AS size FROM ( \
               SELECT digest, size FROM blob_links WHERE repo >= $1 AND repo < $2{left_out} \
               UNION ALL SELECT digest, size FROM manifests WHERE repo >= $1 AND repo < $2{left_out} \
             ) AS u GROUP BY digest) AS d"
        );
        let total: i64 =
            bind_ranges(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), prefix, except).fetch_one(&self.reader).await.map_err(db)?;
        Ok(total.max(0) as u64)
    }

    async fn linked_under(&self, prefix: &str, except: &[&str], digest: &Digest) -> Result<bool> {
        let query = sqlx::query_scalar(sqlx::AssertSqlSafe(linked_under_sql(except.len()))).bind(digest.to_string());
        let found: Option<i64> = bind_ranges(query, prefix, except).fetch_optional(&self.reader).await.map_err(db)?;
        Ok(found.is_some())
    }
}

impl SqlMeta {
    /// Runs a write whose `$1` is `repo` and `$2` is `digest`; whether it changed a row.
    async fn write_repo_digest(&self, sql: &'static str, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = self.write_one(sqlx::query(sql).bind(repo.as_str()).bind(digest.to_string())).await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Whether a digest (`$1`) is linked, or a manifest, under a prefix (`$2`, `$3` from
/// [`prefix_range`]) but under none of `except` names: an index seek, asked at each commit into
/// a namespace with a quota.
fn linked_under_sql(except: usize) -> String {
    let left_out = except_ranges(4, except);
    format!(
        "SELECT 1 FROM blob_links WHERE digest = $1 AND repo >= $2 AND repo < $3{left_out} \
         UNION ALL SELECT 1 FROM manifests WHERE digest = $1 AND repo >= $2 AND repo < $3{left_out} LIMIT 1"
    )
}

/// `AND NOT (repo >= $k AND repo < $k+1)` for each of `n` names left out, from placeholder `first`.
fn except_ranges(first: usize, n: usize) -> String {
    (0..n).map(|i| format!(" AND NOT (repo >= ${} AND repo < ${})", first + 2 * i, first + 2 * i + 1)).collect()
}

/// Binds the range of `prefix`, then of each of `except`, in the order [`except_ranges`] numbers them.
fn bind_ranges<'q, O>(
    mut query: sqlx::query::QueryScalar<'q, Any, O, sqlx::any::AnyArguments>,
    prefix: &str,
    except: &[&str],
) -> sqlx::query::QueryScalar<'q, Any, O, sqlx::any::AnyArguments> {
    for name in std::iter::once(prefix).chain(except.iter().copied()) {
        let (from, to) = prefix_range(name);
        query = query.bind(from).bind(to);
    }
    query
}

/// The names under `prefix/` as a half-open range: `[prefix/, prefix0)` (`0` follows `/`), which
/// an index on names serves and `LIKE` wildcards (`_` is one) cannot confuse.
fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}/"), format!("{prefix}0"))
}

#[async_trait::async_trait]
impl UploadSessions for SqlMeta {
    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        let done = self.write_row(sqlx::query(
            "INSERT INTO uploads (id, repo, received, hash_state, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(u.id.as_str())
        .bind(u.repo.as_str())
        .bind(u.received as i64)
        .bind(&u.hash_state)
        .bind(u.started_at_ms)
        .bind(u.updated_at_ms)).await?;
        if done.rows_affected() == 0 {
            return Err(Error::UploadExists(u.id.to_string()));
        }
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        let row = sqlx::query("SELECT id, repo, received, hash_state, started_at, updated_at FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.map(|r| upload_record(&r)).transpose()
    }

    async fn advance_upload(&self, id: &UploadId, from: u64, to: u64, hash_state: &[u8], now_ms: i64) -> Result<bool> {
        let done = self.write_row(sqlx::query(
            "UPDATE uploads SET received = $1, hash_state = $2, updated_at = $3 WHERE id = $4 AND received = $5",
        )
        .bind(to as i64)
        .bind(hash_state)
        .bind(now_ms)
        .bind(id.as_str())
        .bind(from as i64)).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn finish_upload(&self, id: &UploadId, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await.map_err(db)?;
        link_in(&mut tx, repo, digest, size).await?;
        tx.commit().await.map_err(db)
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let done = self.write_row(sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_str())).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_stale_upload(&self, id: &UploadId, before_ms: i64) -> Result<bool> {
        let done = self.write_row(sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at < $2")
            .bind(id.as_str())
            .bind(before_ms)).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_uploads(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads").fetch_one(&self.reader).await.map_err(db)?;
        Ok(n as u64)
    }

    async fn stale_uploads(&self, before_ms: i64, limit: usize) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(
            "SELECT id, repo, received, hash_state, started_at, updated_at FROM uploads
             WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(before_ms)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter().map(upload_record).collect()
    }
}

async fn ensure_repo(tx: &mut Transaction<'static, Any>, repo: &RepoName, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(repo.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Up to `limit` manifests of `repo` that nothing keeps, idle since before `before_ms` (see
/// [`Repositories::idle_untagged`]), by digest.
async fn idle_untagged_in<'e>(e: impl sqlx::any::AnyExecutor<'e>, repo: &RepoName, before_ms: i64, limit: usize) -> Result<Vec<Digest>> {
    let digests: Vec<String> = sqlx::query_scalar(concat!("SELECT m.digest ", idle_untagged_from!(), " ORDER BY m.digest LIMIT $3"))
        .bind(repo.as_str())
        .bind(before_ms)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(e)
        .await
        .map_err(db)?;
    digests.iter().map(|d| parse(d)).collect()
}

/// The manifest `tag` points at in `repo`.
async fn tagged(tx: &mut Transaction<'static, Any>, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
    let digest: Option<String> = sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    digest.map(|d| parse(&d)).transpose()
}

/// Records that the manifest `tag` points at in `repo` loses it now, unless it is `keeps` (a
/// push that moves the tag onto the manifest it already points at).
async fn mark_untagged(tx: &mut Transaction<'static, Any>, repo: &RepoName, tag: &Tag, keeps: Option<&Digest>, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE manifests SET untagged_at = $4 WHERE repo = $1 \
         AND digest = (SELECT digest FROM tags WHERE repo = $1 AND name = $2) AND digest <> $3",
    )
    .bind(repo.as_str())
    .bind(tag.as_str())
    .bind(keeps.map(Digest::to_string).unwrap_or_default())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Removes a manifest from `repo` with its tags, references, jobs, verdict and pulls.
async fn delete_manifest_in(tx: &mut Transaction<'static, Any>, repo: &RepoName, digest: &Digest) -> Result<bool> {
    for sql in [
        "DELETE FROM tags WHERE repo = $1 AND digest = $2",
        "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
        "DELETE FROM inspection_jobs WHERE repo = $1 AND digest = $2",
        "DELETE FROM verdicts WHERE repo = $1 AND digest = $2",
        "DELETE FROM manifest_pulls WHERE repo = $1 AND digest = $2",
    ] {
        sqlx::query(sql).bind(repo.as_str()).bind(digest.to_string()).execute(&mut **tx).await.map_err(db)?;
    }
    let done = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
        .bind(repo.as_str())
        .bind(digest.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

/// Links a blob whose bytes the caller has just found or put in the store, which also repairs it
/// if it was marked damaged.
async fn link_in(tx: &mut Transaction<'static, Any>, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
    let now = now_ms();
    ensure_repo(tx, repo, now).await?;
    repaired(tx, digest).await?;
    sqlx::query(
        "INSERT INTO blob_links (repo, digest, size, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repo, digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(repo.as_str())
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Removes `digest`'s damage mark: good bytes of it are in the store again.
async fn repaired(tx: &mut Transaction<'static, Any>, digest: &Digest) -> Result<()> {
    sqlx::query("DELETE FROM damaged_blobs WHERE digest = $1").bind(digest.to_string()).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

fn listing<T: FromStr>(mut names: Vec<String>, n: usize) -> Result<Listing<T>>
where
    T::Err: std::fmt::Display,
{
    let more = names.len() > n;
    names.truncate(n);
    let entries = names.iter().map(|s| parse(s)).collect::<Result<_>>()?;
    Ok(Listing { entries, more })
}

fn manifest_record(r: &AnyRow) -> Result<ManifestRecord> {
    let subject: Option<String> = r.try_get("subject").map_err(db)?;
    Ok(ManifestRecord {
        digest: parse(&r.try_get::<String, _>("digest").map_err(db)?)?,
        media_type: r.try_get("media_type").map_err(db)?,
        size: r.try_get::<i64, _>("size").map_err(db)? as u64,
        artifact_type: r.try_get("artifact_type").map_err(db)?,
        subject: subject.as_deref().map(parse).transpose()?,
        annotations: r.try_get("annotations").map_err(db)?,
    })
}

fn upload_record(r: &AnyRow) -> Result<UploadRecord> {
    let id: String = r.try_get("id").map_err(db)?;
    Ok(UploadRecord {
        id: UploadId::new(&id).ok_or_else(|| Error::Corrupt(format!("upload id {id:?}")))?,
        repo: parse(&r.try_get::<String, _>("repo").map_err(db)?)?,
        received: r.try_get::<i64, _>("received").map_err(db)? as u64,
        hash_state: r.try_get("hash_state").map_err(db)?,
        started_at_ms: r.try_get("started_at").map_err(db)?,
        updated_at_ms: r.try_get("updated_at").map_err(db)?,
    })
}

pub(super) fn parse<T: FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| Error::Corrupt(format!("{s:?}: {e}")))
}

pub(super) fn db(e: sqlx::Error) -> Error {
    // SQLITE_FULL: the disk (or `max_page_count`) has no room for the change, which was rolled
    // back; PostgreSQL's disk_full (SQLSTATE 53100), the same on its server.
    const NO_ROOM: [&str; 2] = ["13", "53100"];
    match &e {
        sqlx::Error::Database(d) if d.code().is_some_and(|c| NO_ROOM.contains(&c.as_ref())) => Error::NoSpace(e.to_string()),
        _ => Error::Unavailable(e.to_string()),
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        crate::conformance::run(&meta).await;
        meta.close().await;
        // Reopening applies no migration twice and keeps what was written.
        let again = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        assert!(!again.repositories(&Page { n: 10, last: None }).await.unwrap().entries.is_empty());
    }

    #[tokio::test]
    async fn reports_stored_whole_are_split_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let whole = serde_json::json!({
            "schema": "customs.report/v1", "packages": [{ "name": "openssl" }],
            "db": { "version": "sha256:x", "updated_at": "2026-11-24T00:00:00Z" },
            "vulnerabilities": [{ "id": "CVE-2023-0286", "aliases": ["DSA-5343-1"] }],
        });
        {
            // A records file as the release before this change left it.
            let pool = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path).create_if_missing(true)).await.unwrap();
            sqlx::query("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").execute(&pool).await.unwrap();
            for &(version, sql) in &SQLITE_MIGRATIONS[..5] {
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)").bind(version).execute(&pool).await.unwrap();
            }
            sqlx::query("INSERT INTO inspection_reports (digest, report, db_version, inspected_at, millis) VALUES ('sha256:aa', $1, 'sha256:x', 1, 2)")
                .bind(whole.to_string())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let meta = SqlMeta::open(&path).await.unwrap();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        sqlx::query("UPDATE inspection_reports SET digest = $1").bind(digest.to_string()).execute(&meta.writer).await.unwrap();
        let stored = crate::Inspections::inspection_report(&meta, &digest).await.unwrap().unwrap();
        assert_eq!(stored.to_json().unwrap(), whole, "the same report, read back from its two parts");
        assert!(!stored.facts.contains("CVE-2023-0286"), "{}", stored.facts);
        assert_eq!(stored.matches.digest, "", "unknown: the next re-match stores its matches again");
    }

    #[tokio::test]
    async fn a_quota_check_seeks_the_links_of_one_digest() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        for except in [0, 2] {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", linked_under_sql(except)))).bind("sha256:x");
            for name in ["ns", "ns/a", "ns/b"].into_iter().take(1 + except) {
                let (from, to) = prefix_range(name);
                query = query.bind(from).bind(to);
            }
            let rows = query.fetch_all(&meta.reader).await.unwrap();
            let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
            assert!(plan.iter().any(|d| d.contains("INDEX blob_links_by_digest (digest=? AND repo>? AND repo<?)")), "{except}: {plan:?}");
            assert!(plan.iter().any(|d| d.contains("manifests USING INDEX manifests_by_digest (digest=?)")), "{except}: {plan:?}");
            assert!(!plan.iter().any(|d| d.starts_with("SCAN")), "{except}: {plan:?}");
        }
    }

    #[tokio::test]
    async fn a_full_database_is_no_space_and_keeps_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        let repo: RepoName = "full/app".parse().unwrap();
        let digest = |i: u32| -> Digest { format!("sha256:{i:064x}").parse().unwrap() };
        Repositories::link_blob(&meta, &repo, &digest(0), 1).await.unwrap();
        // The writer's one connection may grow the file no further, as on a full disk.
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&meta.writer).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}"))).execute(&meta.writer).await.unwrap();
        let mut refused = None;
        for i in 1..10_000 {
            if let Err(e) = Repositories::link_blob(&meta, &repo, &digest(i), 1).await {
                refused = Some(e);
                break;
            }
        }
        let e = refused.expect("a database that cannot grow refuses a write");
        assert!(matches!(e, Error::NoSpace(_)), "{e:?}");
        assert_eq!(Repositories::linked_blob(&meta, &repo, &digest(0)).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn the_audit_log_refuses_edits() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        let entry = crate::AuditEntry {
            actor: "eve".into(),
            action: "login.failed".into(),
            target: "eve".into(),
            client: None,
            detail: None,
        };
        crate::Identities::append_audit(&meta, &entry).await.unwrap();
        for sql in ["UPDATE audit SET actor = 'nobody'", "DELETE FROM audit"] {
            let e = sqlx::query(sql).execute(&meta.writer).await.unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
    }

    /// The same adapter on a real PostgreSQL (`test_support::Postgres`: a throwaway cluster on a
    /// loopback port, its databases collated by ICU's English rather than byte by byte).
    mod postgres {
        use super::*;
        use crate::{Inspections, NO_KEPT_TAGS};

        #[tokio::test]
        async fn passes_the_conformance_suite() {
            let pg = test_support::Postgres::start();
            let url = pg.database();
            let meta = SqlMeta::connect(&url).await.unwrap();
            assert_eq!(meta.backend(), "postgres");
            crate::conformance::run(&meta).await;
            meta.close().await;
            // Connecting again applies no migration twice and keeps what was written.
            let again = SqlMeta::connect(&url).await.unwrap();
            assert!(!again.repositories(&Page { n: 10, last: None }).await.unwrap().entries.is_empty());
            let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations").fetch_one(&again.reader).await.unwrap();
            assert_eq!(applied, POSTGRES_MIGRATIONS.len() as i64);
        }

        #[tokio::test]
        async fn replicas_agree_on_the_records_id() {
            let pg = test_support::Postgres::start();
            let replicas = connect_all(&pg.database(), 3).await;
            let mut ids = Vec::new();
            for (i, meta) in replicas.iter().enumerate() {
                ids.push(meta.id(&format!("candidate-{i}")).await.unwrap());
            }
            assert!(ids[0].starts_with("candidate-"), "{ids:?}");
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        }

        #[tokio::test]
        async fn the_audit_log_refuses_edits() {
            let pg = test_support::Postgres::start();
            let meta = SqlMeta::connect(&pg.database()).await.unwrap();
            let entry = crate::AuditEntry { actor: "eve".into(), action: "login.failed".into(), target: "eve".into(), client: None, detail: None };
            crate::Identities::append_audit(&meta, &entry).await.unwrap();
            for sql in ["UPDATE audit SET actor = 'nobody'", "DELETE FROM audit", "TRUNCATE audit"] {
                let e = sqlx::query(sql).execute(&meta.writer).await.unwrap_err();
                assert!(e.to_string().contains("append-only"), "{sql}: {e}");
            }
        }

        #[tokio::test]
        async fn replicas_starting_together_migrate_once() {
            let pg = test_support::Postgres::start();
            let url = pg.database();
            let replicas = connect_all(&url, 4).await;
            let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations").fetch_one(&replicas[0].reader).await.unwrap();
            assert_eq!(applied, POSTGRES_MIGRATIONS.len() as i64);
        }

        /// Writes of several replicas take turns, so a decision read in a transaction holds when it
        /// commits: a job is claimed by one replica only, and a manifest never lands on a layer
        /// another replica unlinked meanwhile.
        #[tokio::test]
        async fn writes_of_replicas_take_turns() {
            let pg = test_support::Postgres::start();
            let replicas = connect_all(&pg.database(), 4).await;
            let repo: RepoName = "turns/app".parse().unwrap();
            let digest = |i: u32| -> Digest { format!("sha256:{i:064x}").parse().unwrap() };
            let image = |i: u32, inspect: bool| NewManifest {
                record: ManifestRecord {
                    digest: digest(100_000 + i),
                    media_type: oci::media_type::OCI_MANIFEST.into(),
                    size: 10,
                    artifact_type: None,
                    subject: None,
                    annotations: None,
                },
                blobs: vec![(digest(i), 1)],
                children: vec![],
                tag: None,
                inspect,
                pushed_by: None,
                children_optional: false,
                tag_immutable: false,
            };
            const JOBS: u32 = 40;
            for i in 0..JOBS {
                replicas[0].link_blob(&repo, &digest(i), 1).await.unwrap();
                replicas[0].put_manifest(&repo, &image(i, true)).await.unwrap();
            }
            let mut claims = tokio::task::JoinSet::new();
            for meta in &replicas {
                let meta = meta.clone();
                claims.spawn(async move {
                    let mut mine = Vec::new();
                    while let Some(job) = meta.claim_inspection(now_ms(), 60_000).await.unwrap() {
                        mine.push(job.id);
                    }
                    mine
                });
            }
            let mut claimed: Vec<i64> = claims.join_all().await.into_iter().flatten().collect();
            claimed.sort();
            let distinct = { let mut d = claimed.clone(); d.dedup(); d };
            assert_eq!(claimed, distinct, "a job was claimed twice");
            assert_eq!(claimed.len(), JOBS as usize);

            // Replica 0 pushes manifests on layers that replica 1 unlinks as unreferenced.
            for round in 0..50 {
                let i = 1_000 + round;
                replicas[0].link_blob(&repo, &digest(i), 1).await.unwrap();
                let (a, b) = (replicas[0].clone(), replicas[1].clone());
                let (pushed, unlinked) = tokio::join!(
                    async move { a.put_manifest(&repo_of("turns/app"), &image(i, false)).await },
                    async move { b.unlink_unreferenced_blob(&repo_of("turns/app"), &digest(i), i64::MAX).await.unwrap() },
                );
                let linked = replicas[2].linked_blob(&repo, &digest(i)).await.unwrap().is_some();
                match pushed {
                    Ok(()) => assert!(linked && !unlinked, "round {round}: a manifest landed on a layer unlinked meanwhile"),
                    Err(Error::MissingReference(_)) => assert!(unlinked && !linked, "round {round}"),
                    Err(e) => panic!("round {round}: {e}"),
                }
                replicas[0].delete_manifest(&repo, &digest(100_000 + i), NO_KEPT_TAGS).await.unwrap();
            }
            for meta in &replicas {
                meta.close().await;
            }
        }

        fn repo_of(name: &str) -> RepoName {
            name.parse().unwrap()
        }

        /// `n` replicas connecting at once.
        /// With a database that takes only TLS with a client certificate, the records connect
        /// over TLS when the URL asks (`sslmode`), verifying the server's certificate against
        /// `sslrootcert` (else the system's roots, which do not know this test's CA), and log in
        /// with `sslcert` and `sslkey`; every connection, the leads' included, is TLS.
        #[tokio::test]
        async fn connects_over_tls_verifying_the_server() {
            let pg = test_support::Postgres::start_tls();
            let url = pg.database();
            let (ca, (crt, key)) = (pg.ca_file(), pg.client_certificate());
            let client = format!("sslcert={}&sslkey={}", crt.display(), key.display());
            let verified = format!("{url}?sslmode=verify-full&sslrootcert={}&{client}", ca.display());
            let meta = SqlMeta::connect(&verified).await.unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
            crate::Identities::append_audit(&meta, &crate::AuditEntry { actor: "a".into(), action: "test".into(), target: "t".into(), client: None, detail: None })
                .await
                .unwrap();
            assert!(crate::Leadership::leads(&meta, crate::Task::Gc).await);
            let plain: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = current_database() AND NOT s.ssl")
                .fetch_one(&meta.reader)
                .await
                .unwrap();
            let leads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_ssl s ON s.pid = l.pid WHERE l.locktype = 'advisory' AND s.ssl")
                .fetch_one(&meta.reader)
                .await
                .unwrap();
            assert_eq!((plain, leads), (0, 1), "every connection is TLS, the one holding the lead too");
            meta.close().await;

            let e = SqlMeta::connect(&format!("{url}?sslmode=disable")).await.err().expect("the server refuses a connection without TLS");
            assert!(e.to_string().contains("rejects connection") && e.to_string().contains("no encryption"), "{e}");
            let e = SqlMeta::connect(&format!("{url}?sslmode=verify-full&{client}")).await.err().expect("the system's roots do not trust the test CA");
            assert!(e.to_string().contains("invalid peer certificate: UnknownIssuer"), "{e}");
            // localhost is 127.0.0.1, but the certificate does not name it.
            let e = SqlMeta::connect(&verified.replace("127.0.0.1", "localhost")).await.err().expect("a certificate for another name");
            assert!(e.to_string().contains("certificate not valid for name \"localhost\""), "{e}");
            let anonymous = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
            let e = SqlMeta::connect(&anonymous).await.err().expect("the server refuses a client without a certificate");
            assert!(e.to_string().contains("requires a valid client certificate"), "{e}");
        }

        async fn connect_all(url: &str, n: usize) -> Vec<std::sync::Arc<SqlMeta>> {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let url = url.to_owned();
                set.spawn(async move { SqlMeta::connect(&url).await.map(std::sync::Arc::new) });
            }
            set.join_all().await.into_iter().map(|r| r.expect("a replica connects")).collect()
        }
    }
}
