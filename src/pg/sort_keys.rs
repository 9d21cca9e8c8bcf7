//! ORDER BY keys that hold a subquery, as Grafana's table picker sorts (`ORDER BY CASE WHEN
//! quote_ident(table_schema) IN (SELECT …) THEN 0 ELSE 1 END, 1`). DataFusion plans subqueries
//! in projections, filters, joins and aggregates, not in a sort, so such a query is turned
//! inside out: its columns and sort keys become the columns of an inner query, and an outer one
//! sorts by the keys and returns the columns under their Postgres names.
//!
//! A membership test in a column (`x IN (SELECT …)`, now also the hoisted key) is
//! [`InSubqueryColumns`]: DataFusion decorrelates `IN` only in filters, so in a projection it
//! becomes `coalesce(array_has(ARRAY(SELECT …), x), false)` (an uncorrelated scalar subquery).

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, OrderByKind, Query, SelectItem, SetExpr, Statement, Value, Visit, Visitor, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::names::postgres_names;
use crate::sql::normalize_ident;

/// Rewrites every query of `statement` whose sort keys hold a subquery.
pub struct HoistSortSubqueries;

impl VisitorMut for HoistSortSubqueries {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(hoisted) = hoisted(query) {
            *query = hoisted;
        }
        ControlFlow::Continue(())
    }
}

fn hoisted(query: &Query) -> Option<Query> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let OrderByKind::Expressions(keys) = &query.order_by.as_ref()?.kind else {
        return None;
    };
    // Hidden sort columns would change what DISTINCT keeps.
    if select.distinct.is_some() || !keys.iter().any(|k| has_subquery(&k.expr)) {
        return None;
    }
    let names = postgres_names(&Statement::Query(Box::new(query.clone())))?;
    let column = |i: usize| format!("\"__sluice_column_{i}\"");
    let mut inner = select.as_ref().clone();
    for (i, item) in inner.projection.iter_mut().enumerate() {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
            _ => return None,
        };
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: sqlparser::ast::Ident::with_quote('"', format!("__sluice_column_{i}")),
        };
    }
    let mut outer_keys = Vec::with_capacity(keys.len());
    for (k, key) in keys.iter().enumerate() {
        let position = match &key.expr {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=names.len()).contains(n)),
                _ => None,
            },
            _ => None,
        };
        let output = match &key.expr {
            Expr::Identifier(ident) => names.iter().position(|n| *n == normalize_ident(ident)),
            _ => None,
        };
        let target = match (position, output) {
            (Some(n), _) => column(n - 1),
            (None, Some(i)) => column(i),
            (None, None) => {
                inner.projection.push(SelectItem::ExprWithAlias {
                    expr: key.expr.clone(),
                    alias: sqlparser::ast::Ident::with_quote('"', format!("__sluice_key_{k}")),
                });
                format!("\"__sluice_key_{k}\"")
            }
        };
        let mut key = key.clone();
        key.expr = Expr::Identifier(sqlparser::ast::Ident::with_quote(
            '"',
            target.trim_matches('"'),
        ));
        outer_keys.push(key.to_string());
    }
    let outer_columns: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{} AS \"{}\"", column(i), name.replace('"', "\"\"")))
        .collect();
    let with = query
        .with
        .as_ref()
        .map(|w| format!("{w} "))
        .unwrap_or_default();
    let limit = query
        .limit_clause
        .as_ref()
        .map(|l| format!(" {l}"))
        .unwrap_or_default();
    let sql = format!(
        "{with}SELECT {} FROM ({inner}) AS \"__sluice_sorted\" ORDER BY {}{limit}",
        outer_columns.join(", "),
        outer_keys.join(", ")
    );
    match Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()? {
        Statement::Query(query) => Some(*query),
        _ => None,
    }
}

/// Rewrites `IN (subquery)` in the columns of every SELECT of a statement.
pub struct InSubqueryColumns;

impl VisitorMut for InSubqueryColumns {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                {
                    let _ = sqlparser::ast::visit_expressions_mut(expr, |e| {
                        if let Some(rewritten) = membership_as_array(e) {
                            *e = rewritten;
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn membership_as_array(expr: &Expr) -> Option<Expr> {
    let Expr::InSubquery {
        expr,
        subquery,
        negated,
    } = expr
    else {
        return None;
    };
    let not = if *negated { "NOT " } else { "" };
    let sql = format!("{not}coalesce(array_has(ARRAY({subquery}), {expr}), false)");
    super::compat::parse_expr(&sql)
}

fn has_subquery(expr: &Expr) -> bool {
    struct Found;
    impl Visitor for Found {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    expr.visit(&mut Found).is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let _ = sqlparser::ast::VisitMut::visit(&mut statement, &mut HoistSortSubqueries);
        statement.to_string()
    }

    #[test]
    fn moves_subquery_keys_into_an_inner_query() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN s IN (SELECT x FROM u) THEN n ELSE s || n END AS t FROM r \
                 ORDER BY CASE WHEN s IN (SELECT x FROM u) THEN 0 ELSE 1 END, 1 DESC LIMIT 5"
            ),
            "SELECT \"__sluice_column_0\" AS \"t\" FROM (SELECT CASE WHEN s IN (SELECT x FROM u) \
             THEN n ELSE s || n END AS \"__sluice_column_0\", CASE WHEN s IN (SELECT x FROM u) \
             THEN 0 ELSE 1 END AS \"__sluice_key_0\" FROM r) AS \"__sluice_sorted\" ORDER BY \
             \"__sluice_key_0\", \"__sluice_column_0\" DESC LIMIT 5"
        );
        let plain = "SELECT a FROM r ORDER BY a";
        assert_eq!(rewritten(plain), plain);
    }
}
