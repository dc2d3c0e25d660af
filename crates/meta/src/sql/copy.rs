//! Moving records from SQLite to PostgreSQL: an installation that began on the embedded default
//! (one server, `meta.db`) becomes replicas sharing a PostgreSQL database without a push again.
//!
//! Every table is copied row by row, as stored, in one PostgreSQL transaction that holds the write
//! lock: the target shows all the records or none, and no replica writes meanwhile. Both
//! databases must be at the same schema version, and the target must hold nothing yet. Columns
//! are read by name and written as the target's types say (SQLite's 0/1 flags become BOOLEAN);
//! identity columns keep their values and their sequences continue after the highest, so audit
//! entries, access changes and job ids go on where they were.

use futures::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::statement::Statement;
use super::{Dialect, SqlMeta, db};
use crate::{Error, Result};

/// Every table of the records, each after the tables it references. A migration that adds a
/// table adds it here: [`SqlMeta::copy_into`] refuses a database with a table it does not know.
const TABLES: &[&str] = &[
    "repositories",
    "blob_links",
    "manifests",
    "manifest_refs",
    "tags",
    "uploads",
    "manifest_pulls",
    "principals",
    "grants",
    "access_changes",
    "audit",
    "inspection_jobs",
    "inspection_reports",
    "verdicts",
    "components",
    "image_vulnerabilities",
    "waivers",
    "webhook_cursors",
    "webhook_failures",
    "layer_records",
    "damaged_blobs",
    "scrub_progress",
    "installation",
];

/// Values bound in one INSERT: PostgreSQL takes at most 65,535.
const MAX_VALUES: usize = 30_000;

/// How a column's values travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Integer,
    Boolean,
    Text,
    Bytes,
    Real,
}

struct Column {
    name: String,
    kind: Kind,
}

/// The rows copied, per table, in copying order.
pub type Copied = Vec<(&'static str, u64)>;

impl SqlMeta {
    /// Copies every record of this SQLite database into `target`, an empty PostgreSQL database
    /// at the same schema version, in one transaction; the rows copied per table. `progress` is
    /// told each table as it is done.
    pub async fn copy_into(&self, target: &SqlMeta, mut progress: impl FnMut(&str, u64)) -> Result<Copied> {
        if self.dialect != Dialect::Sqlite || target.dialect != Dialect::Postgres {
            return Err(Error::Refused(format!("records are copied from SQLite into PostgreSQL, not from {} into {}", self.backend(), target.backend())));
        }
        let (from, to) = (self.schema_version().await?, target.schema_version().await?);
        if from != to {
            return Err(Error::Refused(format!("the SQLite records are at schema version {from}, the PostgreSQL ones at {to}: run the same customs on both")));
        }
        let mut found: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> 'schema_migrations' ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        found.retain(|t| !TABLES.contains(&t.as_str()));
        if !found.is_empty() {
            return Err(Error::Refused(format!("the SQLite records have tables this customs does not copy: {}", found.join(", "))));
        }
        let mut tx = target.write().await?;
        for table in TABLES {
            let held: Option<i64> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT 1 FROM {table} LIMIT 1"))).fetch_optional(&mut *tx).await.map_err(db)?;
            if held.is_some() {
                return Err(Error::Refused(format!("the PostgreSQL database already holds records (table {table}): copy into an empty one")));
            }
        }
        let mut copied = Vec::new();
        for &table in TABLES {
            let columns = self.columns(target, table).await?;
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            // SQLite's BOOLEAN columns are read as integers: `Any` maps that declared type to nothing.
            let read: Vec<String> =
                columns.iter().map(|c| if c.kind == Kind::Boolean { format!("CAST({0} AS INTEGER) AS {0}", c.name) } else { c.name.clone() }).collect();
            let select = format!("SELECT {} FROM {table}", read.join(", "));
            let insert = format!("INSERT INTO {table} ({}) ", names.join(", "));
            let per_batch = (MAX_VALUES / columns.len().max(1)).max(1);
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&self.reader);
            let (mut batch, mut n) = (Vec::with_capacity(per_batch), 0u64);
            loop {
                let row = rows.try_next().await.map_err(db)?;
                let done = row.is_none();
                batch.extend(row);
                if batch.len() == per_batch || (done && !batch.is_empty()) {
                    let mut statement = Statement::new(Dialect::Postgres, &insert);
                    statement.push("VALUES ");
                    for (i, row) in batch.iter().enumerate() {
                        statement.push(if i > 0 { ", (" } else { "(" });
                        for (j, column) in columns.iter().enumerate() {
                            if j > 0 {
                                statement.push(", ");
                            }
                            bind(&mut statement, row, j, column).map_err(|e| Error::Corrupt(format!("{table}.{}: {e}", column.name)))?;
                        }
                        statement.push(")");
                    }
                    statement.build().execute(&mut *tx).await.map_err(db)?;
                    n += batch.len() as u64;
                    batch.clear();
                }
                if done {
                    break;
                }
            }
            // Identity columns go on after the highest value copied.
            let identities: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND identity_generation = 'BY DEFAULT'",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for column in identities {
                let sql = format!(
                    "SELECT CAST(setval(pg_get_serial_sequence('{table}', '{column}'), GREATEST(COALESCE(MAX({column}), 0), 1), MAX({column}) IS NOT NULL) AS BIGINT) FROM {table}"
                );
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *tx).await.map_err(db)?;
            }
            progress(table, n);
            copied.push((table, n));
        }
        tx.commit().await.map_err(db)?;
        Ok(copied)
    }

    async fn schema_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT CAST(MAX(version) AS BIGINT) FROM schema_migrations").fetch_one(&self.reader).await.map_err(db)
    }

    /// The columns of `table` to copy: SQLite's, each of which the target must have, with the
    /// target's type.
    async fn columns(&self, target: &SqlMeta, table: &str) -> Result<Vec<Column>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid").bind(table).fetch_all(&self.reader).await.map_err(db)?;
        let types: Vec<(String, String, Option<String>)> = sqlx::query(
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT), CAST(identity_generation AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_all(&target.reader)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let Some((_, data_type, identity)) = types.iter().find(|(n, _, _)| *n == name) else {
                return Err(Error::Refused(format!("the PostgreSQL table {table} has no column {name}")));
            };
            if identity.as_deref() == Some("ALWAYS") {
                return Err(Error::Refused(format!("{table}.{name} is generated by PostgreSQL and cannot be copied")));
            }
            let kind = match data_type.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "boolean" => Kind::Boolean,
                "text" | "character varying" => Kind::Text,
                "bytea" => Kind::Bytes,
                "double precision" | "real" => Kind::Real,
                other => return Err(Error::Refused(format!("{table}.{name}: cannot copy PostgreSQL type {other}"))),
            };
            columns.push(Column { name, kind });
        }
        Ok(columns)
    }
}

/// Binds the `j`th value of `row` as `column`'s type wants it.
fn bind(statement: &mut Statement, row: &AnyRow, j: usize, column: &Column) -> std::result::Result<(), sqlx::Error> {
    match column.kind {
        Kind::Integer => statement.push("CAST(").push_bind(row.try_get::<Option<i64>, _>(j)?).push(" AS BIGINT)"),
        Kind::Boolean => statement.push_bind(row.try_get::<Option<i64>, _>(j)?.map(|v| v != 0)),
        Kind::Text => statement.push_bind(row.try_get::<Option<String>, _>(j)?),
        Kind::Bytes => statement.push_bind(row.try_get::<Option<Vec<u8>>, _>(j)?),
        Kind::Real => statement.push_bind(row.try_get::<Option<f64>, _>(j)?),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditEntry, Identities};

    /// Every row of `table`, each value as text, sorted: the same for both databases when they
    /// hold the same records.
    async fn dump(meta: &SqlMeta, columns: &[Column], table: &str) -> Vec<Vec<String>> {
        let read: Vec<String> = columns
            .iter()
            .map(|c| match c.kind {
                Kind::Integer => format!("CAST({} AS BIGINT)", c.name),
                Kind::Boolean => format!("CAST(CAST({} AS INTEGER) AS BIGINT)", c.name),
                _ => c.name.clone(),
            })
            .collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {} FROM {table}", read.join(", ")))).fetch_all(&meta.reader).await.unwrap();
        let mut out: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(j, c)| match c.kind {
                        Kind::Integer | Kind::Boolean => format!("{:?}", row.get::<Option<i64>, _>(j)),
                        Kind::Text => format!("{:?}", row.get::<Option<String>, _>(j)),
                        Kind::Bytes => format!("{:?}", row.get::<Option<Vec<u8>>, _>(j)),
                        Kind::Real => format!("{:?}", row.get::<Option<f64>, _>(j)),
                    })
                    .collect()
            })
            .collect();
        out.sort();
        out
    }

    /// The records the conformance suite leaves in SQLite are copied into PostgreSQL row for row
    /// (every value, flags included); ids go on after the highest copied; a second copy, or one
    /// the other way, is refused and changes nothing.
    #[tokio::test]
    async fn sqlite_records_move_into_postgres_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqlMeta::open(&dir.path().join("meta.db")).await.unwrap();
        crate::conformance::run(&sqlite).await;
        sqlite.id("the-installation").await.unwrap();
        // Rows in the tables the suite leaves empty, so every column is copied.
        let repo: oci::RepoName = "copy/app".parse().unwrap();
        let digest: oci::Digest = format!("sha256:{:064x}", 7).parse().unwrap();
        let upload = crate::UploadRecord {
            id: oci::UploadId::new("4f1c2b9e-0a7d-4c52-9d3e-2b8f6a1e5c70").unwrap(),
            repo: repo.clone(),
            received: 12,
            hash_state: vec![0, 1, 2, 255],
            started_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_500,
        };
        crate::UploadSessions::create_upload(&sqlite, &upload).await.unwrap();
        crate::Repositories::record_pulls(&sqlite, &[(repo.clone(), digest.clone(), 1_700_000_001_000)]).await.unwrap();
        crate::Integrity::mark_damaged(&sqlite, &digest, "its bytes hash to another digest", 1_700_000_002_000).await.unwrap();
        let grant = crate::GrantRecord { principal: "alice".into(), namespace: "copy/**".into(), permission: "maintainer".into() };
        let audit = AuditEntry { actor: "admin".into(), action: "grant".into(), target: "alice".into(), client: None, detail: None };
        sqlite.grant(&grant, &audit).await.unwrap();
        sqlx::query("INSERT INTO image_vulnerabilities (digest, vuln, canonical, package, version, severity, fixed) VALUES ($1, 'CVE-2021-44228', 'CVE-2021-44228', 'log4j-core', '2.14.1', 'CRITICAL', NULL), ($1, 'GHSA-jfh8-c2jp-5v3q', 'CVE-2021-44228', 'log4j-core', '2.14.1', 'CRITICAL', '2.15.0')")
            .bind(digest.to_string())
            .execute(&sqlite.writer)
            .await
            .unwrap();
        let pg = test_support::Postgres::start();
        let target = SqlMeta::connect(&pg.database()).await.unwrap();

        let mut told = Vec::new();
        let copied = sqlite.copy_into(&target, |table, n| told.push((table.to_owned(), n))).await.unwrap();
        assert_eq!(copied.len(), TABLES.len());
        assert_eq!(told.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), TABLES);
        let empty: Vec<&str> = copied.iter().filter(|(_, n)| *n == 0).map(|(t, _)| *t).collect();
        assert!(empty.is_empty(), "every table has rows to copy; empty: {empty:?}");
        for table in TABLES {
            let columns = sqlite.columns(&target, table).await.unwrap();
            let (from, to) = (dump(&sqlite, &columns, table).await, dump(&target, &columns, table).await);
            assert_eq!(from.len() as u64, copied.iter().find(|(t, _)| t == table).unwrap().1, "{table}");
            assert!(from == to, "{table} differs:\n{from:?}\n{to:?}");
        }
        assert_eq!(target.id("another").await.unwrap(), "the-installation", "the records keep their id");

        // New rows take ids after the copied ones.
        let before: i64 = sqlx::query_scalar("SELECT MAX(id) FROM audit").fetch_one(&target.reader).await.unwrap();
        target.append_audit(&AuditEntry { actor: "a".into(), action: "after.copy".into(), target: "t".into(), client: None, detail: None }).await.unwrap();
        let after: i64 = sqlx::query_scalar("SELECT MAX(id) FROM audit").fetch_one(&target.reader).await.unwrap();
        assert_eq!(after, before + 1);

        let again = sqlite.copy_into(&target, |_, _| {}).await.unwrap_err();
        assert!(matches!(&again, Error::Refused(m) if m.contains("already holds records")), "{again}");
        let back = target.copy_into(&sqlite, |_, _| {}).await.unwrap_err();
        assert!(matches!(&back, Error::Refused(m) if m.contains("from SQLite into PostgreSQL")), "{back}");
        let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit").fetch_one(&target.reader).await.unwrap();
        assert_eq!(audit, dump(&sqlite, &sqlite.columns(&target, "audit").await.unwrap(), "audit").await.len() as i64 + 1);
    }
}
