//! [`Statement`]: SQL built up with its bound values — lists for `IN`, rows for `INSERT` — with
//! each database's placeholders: `$N` for PostgreSQL, which does not take the `?` that sqlx's
//! `QueryBuilder` writes for the `Any` driver; `?` for SQLite, which looks each `$N` up among the
//! names before it (quadratic in a 3,500-value insert: it tripled the time to store reports).

use std::fmt::Write;

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Encode, Type};

use super::Dialect;

pub(super) struct Statement {
    sql: String,
    args: AnyArguments,
    bound: usize,
    dialect: Dialect,
}

impl Statement {
    pub(super) fn new(dialect: Dialect, sql: &str) -> Statement {
        Statement { sql: sql.to_owned(), args: AnyArguments::default(), bound: 0, dialect }
    }

    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// A placeholder for `value`.
    pub(super) fn push_bind<'t, T: Encode<'t, Any> + Type<Any>>(&mut self, value: T) -> &mut Self {
        // Adding to `AnyArguments` only fails for a value that cannot encode, and then at
        // execution, as sqlx's own `bind` does.
        let _ = self.args.add(value);
        self.bound += 1;
        match self.dialect {
            Dialect::Postgres => {
                let _ = write!(self.sql, "${}", self.bound);
            }
            Dialect::Sqlite => self.sql.push('?'),
        }
        self
    }

    /// `(a, b, …)`: a list for `IN`, one placeholder each.
    pub(super) fn push_list<'t, T: Encode<'t, Any> + Type<Any>>(&mut self, items: impl IntoIterator<Item = T>) -> &mut Self {
        self.push("(");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(item);
        }
        self.push(")")
    }

    /// `(VALUES (a, b), …)`: pairs for `(x, y) IN`.
    pub(super) fn push_pairs<'t, A, B>(&mut self, pairs: impl IntoIterator<Item = (A, B)>) -> &mut Self
    where
        A: Encode<'t, Any> + Type<Any>,
        B: Encode<'t, Any> + Type<Any>,
    {
        self.push("(VALUES ");
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            self.push(if i > 0 { ", (" } else { "(" });
            self.push_bind(a).push(", ").push_bind(b).push(")");
        }
        self.push(")")
    }

    /// `VALUES (…), (…)`: a row per item, whose values `row` binds.
    pub(super) fn push_values<I>(&mut self, items: impl IntoIterator<Item = I>, mut row: impl FnMut(&mut Values<'_>, I)) -> &mut Self {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.push(if i > 0 { ", (" } else { "(" });
            row(&mut Values { statement: self, first: true }, item);
            self.push(")");
        }
        self
    }

    pub(super) fn build(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args)
    }
}

/// The values of one row of [`Statement::push_values`].
pub(super) struct Values<'s> {
    statement: &'s mut Statement,
    first: bool,
}

impl Values<'_> {
    pub(super) fn push_bind<'t, T: Encode<'t, Any> + Type<Any>>(&mut self, value: T) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.statement.push(", ");
        }
        self.statement.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut s = Statement::new(Dialect::Postgres, "UPDATE t SET a = ");
        s.push_bind(1_i64).push(" WHERE (x, y) IN ").push_pairs([("p", "q"), ("r", "s")]).push(" AND z IN ").push_list([7_i64, 8]);
        assert_eq!(s.sql, "UPDATE t SET a = $1 WHERE (x, y) IN (VALUES ($2, $3), ($4, $5)) AND z IN ($6, $7)");
        let mut s = Statement::new(Dialect::Postgres, "INSERT INTO t (a, b) ");
        s.push_values([(1_i64, "one"), (2, "two")], |row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        assert_eq!(s.sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(s.bound, 4);
        let mut s = Statement::new(Dialect::Sqlite, "DELETE FROM t WHERE z IN ");
        s.push_list([7_i64, 8]);
        assert_eq!(s.sql, "DELETE FROM t WHERE z IN (?, ?)");
    }
}
