//! Result column names as Postgres gives them.
//!
//! DataFusion names an unaliased expression by its text (`Int64(1)`, `count(*)`, `sum(t.x)`);
//! Postgres names it by its column or function (`count`, `sum`) and otherwise `?column?`.
//! psql headers, BI charts and drivers that map rows by name expect the Postgres names.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use sqlparser::ast::{DataType, Expr, Ident, SelectItem, SetExpr, Statement as SqlStatement};

use crate::sql::normalize_ident;

/// Postgres' names for the result columns of a plain `SELECT`, or `None` when DataFusion's are
/// already right (wildcards, `VALUES`, set operations, anything but a query).
pub fn postgres_names(stmt: &SqlStatement) -> Option<Vec<String>> {
    let SqlStatement::Query(query) = stmt else {
        return None;
    };
    body_names(&query.body)
}

/// A set operation is named by its first branch, as in Postgres.
fn body_names(body: &SetExpr) -> Option<Vec<String>> {
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { left, .. } => return body_names(left),
        SetExpr::Query(query) => return body_names(&query.body),
        _ => return None,
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(postgres_expr_name(expr)),
            SelectItem::ExprWithAlias { alias, .. } => Some(normalize_ident(alias)),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => None,
            _ => None,
        })
        .collect()
}

/// The column name Postgres gives an unaliased expression (its `FigureColname`).
pub fn postgres_expr_name(expr: &Expr) -> String {
    figure(expr).map_or_else(|| "?column?".to_string(), |(name, _)| name)
}

/// A name and how strongly it holds: a cast or CASE names a column only when what it wraps
/// names it weakly or not at all (`DATE '…'::timestamp` is `timestamp`, `x::int` is `x`).
fn figure(expr: &Expr) -> Option<(String, u8)> {
    let strong = |name: &str| Some((name.to_string(), 2));
    match expr {
        Expr::Identifier(ident) => Some((normalize_ident(ident), 2)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| (normalize_ident(p), 2)),
        Expr::Function(function) => match function.name.0.last() {
            Some(sqlparser::ast::ObjectNamePart::Identifier(ident)) => {
                Some((normalize_ident(ident), 2))
            }
            _ => None,
        },
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            Some((name, 2)) => Some((name, 2)),
            _ => Some((type_name(data_type), 1)),
        },
        // `TIMESTAMP '…'` is a cast of a constant in Postgres' grammar.
        Expr::TypedString(typed) => Some((type_name(&typed.data_type), 1)),
        Expr::Interval(_) => Some(("interval".to_string(), 1)),
        // `ARRAY[…]` and `ROW(…)` name columns as functions do.
        Expr::Array(_) => strong("array"),
        Expr::Tuple(_) => strong("row"),
        // `(ARRAY[…])[2]` keeps the name of what it indexes.
        Expr::Nested(expr) | Expr::Collate { expr, .. } => figure(expr),
        Expr::CompoundFieldAccess { root, .. } => figure(root),
        // A scalar subquery is named by its one column.
        Expr::Subquery(query) => match body_names(&query.body) {
            Some(names) if names.len() == 1 && names[0] != "?column?" => {
                Some((names[0].clone(), 2))
            }
            _ => None,
        },
        Expr::Case { else_result, .. } => match else_result.as_deref().and_then(figure) {
            Some((name, 2)) => Some((name, 2)),
            _ => Some(("case".to_string(), 1)),
        },
        Expr::Exists { .. } => strong("exists"),
        Expr::Extract { .. } => strong("extract"),
        Expr::Substring {
            shorthand: true, ..
        } => strong("substr"),
        Expr::Substring { .. } => strong("substring"),
        Expr::Position { .. } => strong("position"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::Trim { .. } => strong("btrim"),
        Expr::Ceil { .. } => strong("ceil"),
        Expr::Floor { .. } => strong("floor"),
        Expr::AtTimeZone { .. } => strong("timezone"),
        _ => None,
    }
}

/// The name Postgres gives a type in a column name: its internal name (`int4`, `float8`,
/// `timestamptz`, `bpchar`), an array type by its element's.
fn type_name(data_type: &DataType) -> String {
    let written = data_type.to_string().to_ascii_lowercase();
    let base = written
        .split('(')
        .next()
        .unwrap_or_default()
        .trim_end_matches("[]")
        .trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "decimal" | "dec" | "numeric" => "numeric",
        "boolean" | "bool" => "bool",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp without time zone" | "timestamp" => "timestamp",
        "time with time zone" | "timetz" => "timetz",
        "time without time zone" | "time" => "time",
        other => return other.rsplit('.').next().unwrap_or(other).to_string(),
    }
    .to_string()
}

/// The statement with its result columns aliased apart, for DataFusion, which refuses two
/// columns of one name (`SELECT count(*), (SELECT count(*) FROM t)`; Postgres names both
/// `count`). Unaliased items and aliases used twice get internal names; the client still sees
/// [`postgres_names`]. `None` where those do not apply (wildcards, anything but a plain `SELECT`).
pub fn with_distinct_names(stmt: &SqlStatement) -> Option<SqlStatement> {
    // Only where the client's names come from `postgres_names`, never from these aliases.
    postgres_names(stmt)?;
    let mut stmt = stmt.clone();
    let SqlStatement::Query(query) = &mut stmt else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let aliases: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(normalize_ident(alias)),
            _ => None,
        })
        .collect();
    let used_twice = |name: &str| aliases.iter().filter(|a| *a == name).count() > 1;
    for (i, item) in select.projection.iter_mut().enumerate() {
        let alias = Ident::new(format!("__sluice_column_{i}"));
        *item = match std::mem::replace(item, SelectItem::Wildcard(Default::default())) {
            SelectItem::UnnamedExpr(expr) => SelectItem::ExprWithAlias { expr, alias },
            SelectItem::ExprWithAlias { expr, alias: named }
                if used_twice(&normalize_ident(&named)) =>
            {
                SelectItem::ExprWithAlias { expr, alias }
            }
            other => other,
        };
    }
    Some(stmt)
}

/// Gives the unaliased columns of a plain `SELECT` the names Postgres gives them, worked out
/// from the statement as the user wrote it (`original`), as aliases: the rewrites before
/// planning change expressions (datafusion-pg-catalog turns `current_user` into
/// `session_user`, `INTERVAL '1 hour' * 3` becomes a cast), never what the client sees.
pub fn name_columns(original: &SqlStatement, rewritten: &mut SqlStatement) {
    let Some(names) = postgres_names(original) else {
        return;
    };
    let SqlStatement::Query(query) = rewritten else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if select.projection.len() != names.len() {
        return;
    }
    for (item, name) in select.projection.iter_mut().zip(names) {
        // Only where a rewrite changed the name: the statement is also what
        // `pg_stat_activity` shows.
        if let SelectItem::UnnamedExpr(expr) = item
            && postgres_expr_name(expr) != name
        {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('"', name),
            };
        }
    }
}

/// `schema` with its fields renamed to `names`; unchanged when the counts differ.
pub fn rename(schema: &SchemaRef, names: &[String]) -> SchemaRef {
    if names.len() != schema.fields().len() {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(field, name)| field.as_ref().clone().with_name(name))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn names(sql: &str) -> Option<Vec<String>> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        postgres_names(&stmt)
    }

    #[test]
    fn names_columns_like_postgres() {
        assert_eq!(
            names("SELECT 1, a, t.B, count(*), sum(x) AS Total, \"Q\", now()::date FROM t")
                .unwrap(),
            ["?column?", "a", "b", "count", "total", "Q", "now"]
        );
        assert_eq!(
            names(
                "SELECT 2.0::float8, TIMESTAMP '2024-01-01', DATE '2024-01-01'::timestamp, ARRAY[1], INTERVAL '1 day', \
                 x::int, '1'::integer[], CAST(1 AS double precision), 'a'::varchar(3), \
                 (SELECT count(*) FROM t), extract(epoch FROM now()), \
                 '1'::timestamp with time zone FROM t"
            )
            .unwrap(),
            [
                "float8",
                "timestamp",
                "timestamp",
                "array",
                "interval",
                "x",
                "int4",
                "float8",
                "varchar",
                "count",
                "extract",
                "timestamptz"
            ]
        );
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(names("VALUES (1)"), None);
    }

    #[test]
    fn aliases_columns_apart() {
        let stmt = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT count(*), a AS x, b AS y, c AS y FROM t ORDER BY x",
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            with_distinct_names(&stmt).unwrap().to_string(),
            "SELECT count(*) AS __sluice_column_0, a AS x, b AS __sluice_column_2, \
             c AS __sluice_column_3 FROM t ORDER BY x"
        );
    }
}
