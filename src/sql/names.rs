//! Result column names as Postgres gives them.
//!
//! DataFusion names an unaliased expression by its text (`Int64(1)`, `count(*)`, `sum(t.x)`);
//! Postgres names it by its column or function (`count`, `sum`) and otherwise `?column?`.
//! psql headers, BI charts and drivers that map rows by name expect the Postgres names.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement as SqlStatement};

use super::normalize_ident;

/// Postgres' names for the result columns of a plain `SELECT`, or `None` when DataFusion's are
/// already right (wildcards, `VALUES`, set operations, anything but a query).
pub fn postgres_names(stmt: &SqlStatement) -> Option<Vec<String>> {
    let SqlStatement::Query(query) = stmt else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
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

/// The column name Postgres gives an unaliased expression.
pub fn postgres_expr_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => normalize_ident(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map(normalize_ident).unwrap_or_default(),
        Expr::Function(function) => match function.name.0.last() {
            Some(sqlparser::ast::ObjectNamePart::Identifier(ident)) => normalize_ident(ident),
            _ => "?column?".to_string(),
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => postgres_expr_name(expr),
        Expr::Case { .. } => "case".to_string(),
        Expr::Exists { .. } => "exists".to_string(),
        _ => "?column?".to_string(),
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
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(names("VALUES (1)"), None);
    }
}
