//! [`Identities`] on SQLite.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{SqlMeta, db, now_ms};
use crate::{
    AccessChanges, AuditEntry, AuditQuery, AuditRecord, Error, GrantRecord, Identities, IdentityKind, PrincipalRecord,
    Result,
};

macro_rules! principal_select {
    () => {
        "SELECT name, kind, secret, expires_at, description, created_at, created_by FROM principals"
    };
}
#[async_trait::async_trait]
impl Identities for SqlMeta {
    async fn create_principal(&self, p: &PrincipalRecord, grants: &[GrantRecord], audit: &AuditEntry) -> Result<()> {
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO principals (name, kind, secret, expires_at, description, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&p.name)
        .bind(p.kind.as_str())
        .bind(&p.secret)
        .bind(p.expires_at_ms)
        .bind(&p.description)
        .bind(p.created_at_ms)
        .bind(&p.created_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(Error::Exists(p.name.clone()));
        }
        // Grants left behind by an earlier principal of the same name are not inherited.
        sqlx::query("DELETE FROM grants WHERE principal = $1").bind(&p.name).execute(&mut *tx).await.map_err(db)?;
        for g in grants {
            upsert_grant(&mut tx, g).await?;
        }
        changed(&mut tx, &p.name, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn set_secret(&self, name: &str, secret: &str, audit: &AuditEntry) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE principals SET secret = $1 WHERE name = $2")
            .bind(secret)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        changed(&mut tx, name, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn upgrade_secret(&self, name: &str, old: &str, new: &str) -> Result<bool> {
        let done = self.write_one(sqlx::query("UPDATE principals SET secret = $1 WHERE name = $2 AND secret = $3")
            .bind(new)
            .bind(name)
            .bind(old)).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_principal(&self, name: &str, audit: &AuditEntry) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM principals WHERE name = $1").bind(name).execute(&mut *tx).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM grants WHERE principal = $1").bind(name).execute(&mut *tx).await.map_err(db)?;
        changed(&mut tx, name, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>> {
        let row = sqlx::query(concat!(principal_select!(), " WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.as_ref().map(principal_row).transpose()
    }

    async fn principals(&self) -> Result<Vec<PrincipalRecord>> {
        let rows = sqlx::query(concat!(principal_select!(), " ORDER BY name")).fetch_all(&self.reader).await.map_err(db)?;
        rows.iter().map(principal_row).collect()
    }

    async fn grant(&self, grant: &GrantRecord, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.write().await?;
        upsert_grant(&mut tx, grant).await?;
        changed(&mut tx, &grant.principal, audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn revoke(&self, principal: &str, namespace: &str, audit: &AuditEntry) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM grants WHERE principal = $1 AND namespace = $2")
            .bind(principal)
            .bind(namespace)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        changed(&mut tx, principal, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn grants(&self, principal: Option<&str>) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT principal, namespace, permission FROM grants WHERE $1 IS NULL OR principal = $1
             ORDER BY principal, namespace",
        )
        .bind(principal)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| GrantRecord { principal: r.get(0), namespace: r.get(1), permission: r.get(2) })
            .collect())
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write().await?;
        audit_in(&mut tx, entry).await?;
        tx.commit().await.map_err(db)
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, client, detail FROM audit
             WHERE id > $1 AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3 OR action LIKE $3 || '.%')
             ORDER BY id LIMIT $4",
        )
        .bind(q.after_id)
        .bind(&q.actor)
        .bind(&q.action_prefix)
        .bind(q.limit as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                id: r.get(0),
                at_ms: r.get(1),
                entry: AuditEntry { actor: r.get(2), action: r.get(3), target: r.get(4), client: r.get(5), detail: r.get(6) },
            })
            .collect())
    }

    async fn access_changes(&self, since_ms: i64) -> Result<AccessChanges> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(id) FROM access_changes").fetch_one(&self.reader).await.map_err(db)?;
        let rows = sqlx::query("SELECT principal, MAX(id) FROM access_changes WHERE at >= $1 GROUP BY principal")
            .bind(since_ms)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        Ok(AccessChanges { version: version.unwrap_or(0), changed: rows.iter().map(|r| (r.get(0), r.get(1))).collect() })
    }
}

fn principal_row(r: &AnyRow) -> Result<PrincipalRecord> {
    let kind: String = r.get(1);
    let kind = match kind.as_str() {
        "user" => IdentityKind::User,
        "robot" => IdentityKind::Robot,
        other => return Err(Error::Corrupt(format!("principal kind {other:?}"))),
    };
    Ok(PrincipalRecord {
        name: r.get(0),
        kind,
        secret: r.get(2),
        expires_at_ms: r.get(3),
        description: r.get(4),
        created_at_ms: r.get(5),
        created_by: r.get(6),
    })
}

async fn upsert_grant(tx: &mut Transaction<'static, Any>, g: &GrantRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO grants (principal, namespace, permission) VALUES ($1, $2, $3)
         ON CONFLICT (principal, namespace) DO UPDATE SET permission = excluded.permission",
    )
    .bind(&g.principal)
    .bind(&g.namespace)
    .bind(&g.permission)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// The change-log row and the audit entry of a change of `principal`'s access.
async fn changed(tx: &mut Transaction<'static, Any>, principal: &str, audit: &AuditEntry) -> Result<()> {
    sqlx::query("INSERT INTO access_changes (principal, at) VALUES ($1, $2)")
        .bind(principal)
        .bind(now_ms())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    audit_in(tx, audit).await
}

pub(super) async fn audit_in(tx: &mut Transaction<'static, Any>, e: &AuditEntry) -> Result<()> {
    sqlx::query("INSERT INTO audit (at, actor, action, target, client, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(now_ms())
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.client)
        .bind(&e.detail)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}
