//! Postgres subquery forms that DataFusion cannot decorrelate, in forms it can.
//!
//! DataFusion decorrelates a scalar subquery only when it aggregates, and cannot see an outer
//! column inside a derived table. Catalog queries of psql (`\du`, `\dT`, `\dp`), pgAdmin and BI
//! tools are full of both, and users write them too:
//! - `ARRAY(SELECT b.rolname FROM … WHERE m.member = r.oid ORDER BY 1)` becomes
//!   `coalesce((SELECT array_agg(b.rolname ORDER BY b.rolname) FROM … WHERE …), make_array())`:
//!   the same rows in the same order, `{}` when there are none — for every query, not only
//!   catalog ones.
//!   An element that aggregates or returns sets, or DISTINCT, GROUP BY, HAVING, LIMIT or
//!   OFFSET, keep the older form `(SELECT array_agg(x) FROM (…))` (uncorrelated only).
//! - A correlated lookup `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`
//!   takes its value with [`super::single_value`], which keeps Postgres' 21000 for a second row
//!   (`first_value(… ORDER BY …)` under `ORDER BY … LIMIT 1`), when each condition reading outer
//!   columns is an equality. In a catalog query's select list one that is not becomes NULL, as
//!   datafusion-pg-catalog made every correlated one there (its answer is NULL here anyway).
//! - An `ARRAY(SELECT … FROM unnest(c.reloptions) …)` over a catalog array that is always NULL
//!   here (storage options, privileges) is `NULL::text[]`, and one over a catalog table that is
//!   always empty here (`pg_policy`) is `{}`, as their answers are.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, LimitClause, OrderByKind, Query, Select, SelectItem,
    SetExpr, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::pg::compat::{function_name, parse_expr};

/// Aggregate functions: a subquery calling one already returns one row.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "single_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "bit_and",
    "bit_or",
    "bit_xor",
    "median",
    "approx_distinct",
    "approx_count_distinct",
];

/// Set-returning functions: an element calling one is many rows per input row.
const SET_RETURNING: &[&str] = &["unnest", "generate_series", "generate_subscripts"];

/// `ARRAY(query)` as an expression DataFusion runs.
pub fn array_subquery(query: &Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if unnests_null_catalog_array(select) {
        return parse_expr("CAST(NULL AS TEXT[])");
    }
    if reads_empty_catalog_table(select) {
        return parse_expr("make_array()");
    }
    let element = single_item(select)?;
    if plain(query, select, false) && !aggregates(element) && !calls(element, SET_RETURNING) {
        let order = order_by(query, element)?;
        return with_aggregate(query, &format!("array_agg({element}{order})"))
            .and_then(|lookup| parse_expr(&format!("coalesce(({lookup}), make_array())")));
    }
    let mut inner = query.clone();
    if let SetExpr::Select(select) = inner.body.as_mut() {
        select.projection = vec![SelectItem::ExprWithAlias {
            expr: element.clone(),
            alias: sqlparser::ast::Ident::new("array_element"),
        }];
    }
    parse_expr(&format!(
        "coalesce((SELECT array_agg(array_element) FROM ({inner}) AS array_rows), make_array())"
    ))
}

/// Correlated scalar subqueries take their one row with `single_value` (`first_value` under
/// `ORDER BY … LIMIT 1`); one of a catalog query's select list that DataFusion cannot
/// decorrelate is NULL, as datafusion-pg-catalog made every correlated one (psql's `\d` asks
/// for a column's collation where it differs from its type's: never here).
pub fn single_row_lookups<V: VisitMut>(statement: &mut V) {
    let _ = statement.visit(&mut Lookups::default());
}

#[derive(Default)]
struct Lookups {
    /// Subqueries compared with `ANY`/`ALL`: all their rows count, so they stay as they are.
    quantified: HashSet<*const Query>,
}

impl VisitorMut for Lookups {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                && let Expr::Subquery(subquery) = expr
                && let SetExpr::Select(inner) = subquery.body.as_ref()
                && reads_only_catalog(inner)
                && correlated(inner)
                && !decorrelatable(inner)
            {
                *expr = Expr::Value(Value::Null.into());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr
            && let Expr::Subquery(query) = right.as_ref()
        {
            self.quantified.insert(query.as_ref() as *const Query);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && !self.quantified.contains(&(query.as_ref() as *const Query))
            && let Some(lookup) = single_row_lookup(query)
        {
            **query = lookup;
        }
        ControlFlow::Continue(())
    }
}

fn single_row_lookup(query: &Query) -> Option<Query> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let value = single_item(select)?;
    if !plain(query, select, true)
        || aggregates(value)
        || !correlated(select)
        || !decorrelatable(select)
    {
        return None;
    }
    // `ORDER BY … LIMIT 1` asks for the first row; otherwise a second one is an error.
    let aggregate = match query.limit_clause {
        Some(_) => format!("first_value({value}{})", order_by(query, value)?),
        None => format!("{}({value})", super::single_value::NAME),
    };
    let sql = with_aggregate(query, &aggregate)?;
    match parse_expr(&format!("({sql})"))? {
        Expr::Subquery(lookup) => Some(*lookup),
        _ => None,
    }
}

/// The one expression `select` returns.
fn single_item(select: &Select) -> Option<&Expr> {
    match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }] => Some(e),
        _ => None,
    }
}

/// Whether `query` is one SELECT whose rows an aggregate over its FROM and WHERE sees: no
/// DISTINCT, grouping, LIMIT (but `LIMIT 1` where `first_row` is wanted), OFFSET or WITH.
fn plain(query: &Query, select: &Select, first_row: bool) -> bool {
    let limit_one = match &query.limit_clause {
        None => true,
        Some(LimitClause::LimitOffset {
            limit: Some(limit),
            offset: None,
            limit_by,
        }) if first_row => {
            limit_by.is_empty()
                && matches!(limit, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n == "1"))
        }
        Some(_) => false,
    };
    limit_one
        && query.with.is_none()
        && query.fetch.is_none()
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty())
}

/// `query`'s ORDER BY as an aggregate's ` ORDER BY …` clause (positions and the alias read as
/// `element`);
/// `None` for `ORDER BY ALL` or a position other than 1.
fn order_by(query: &Query, element: &Expr) -> Option<String> {
    let Some(order_by) = &query.order_by else {
        return Some(String::new());
    };
    let alias = match query.body.as_ref() {
        SetExpr::Select(select) => match select.projection.as_slice() {
            [SelectItem::ExprWithAlias { alias, .. }] => Some(alias.value.to_ascii_lowercase()),
            _ => None,
        },
        _ => None,
    };
    let OrderByKind::Expressions(keys) = &order_by.kind else {
        return None;
    };
    let keys = keys
        .iter()
        .map(|key| {
            let mut key = key.clone();
            if let Expr::Value(v) = &key.expr
                && let Value::Number(n, _) = &v.value
            {
                if n != "1" {
                    return None;
                }
                key.expr = element.clone();
            }
            // The element's alias means the element (the aggregate sees no select list).
            if let Expr::Identifier(name) = &key.expr
                && alias.as_deref() == Some(name.value.to_ascii_lowercase().as_str())
            {
                key.expr = element.clone();
            }
            Some(key.to_string())
        })
        .collect::<Option<Vec<_>>>()?;
    Some(format!(" ORDER BY {}", keys.join(", ")))
}

/// `SELECT aggregate FROM … WHERE …` of `query`.
fn with_aggregate(query: &Query, aggregate: &str) -> Option<String> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let mut select = select.clone();
    select.projection = vec![SelectItem::UnnamedExpr(parse_expr(aggregate)?)];
    Some(select.to_string())
}

fn aggregates(expr: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if let Expr::Function(f) = e
            && (f.over.is_some()
                || f.filter.is_some()
                || !f.within_group.is_empty()
                || function_name(f).is_some_and(|name| AGGREGATES.contains(&name.as_str())))
        {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Whether `expr` calls one of `functions`.
fn calls(expr: &Expr, functions: &[&str]) -> bool {
    sqlparser::ast::visit_expressions(expr, |e| match e {
        Expr::Function(f) if function_name(f).is_some_and(|n| functions.contains(&n.as_str())) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Whether every relation `select` reads is a catalog table (`pg_*`, `information_schema`).
fn reads_only_catalog(select: &Select) -> bool {
    select.from.iter().all(|from| {
        std::iter::once(&from.relation)
            .chain(from.joins.iter().map(|j| &j.relation))
            .all(|factor| match factor {
                TableFactor::Table { name, .. } => name.0.iter().any(|part| {
                    part.as_ident().is_some_and(|ident| {
                        let name = ident.value.to_ascii_lowercase();
                        name.starts_with("pg_") || name == "information_schema"
                    })
                }),
                _ => false,
            })
    })
}

/// Whether `select` names a relation it does not read itself (`t.x` where no `t` is in its
/// FROM). Unqualified outer columns are not seen; catalog queries qualify theirs.
fn correlated(select: &Select) -> bool {
    references(select, &bound(select)).1
}

/// Whether DataFusion can decorrelate `select`: each condition of its WHERE that reads outer
/// columns is an equality with its own.
fn decorrelatable(select: &Select) -> bool {
    let bound = bound(select);
    let mut conditions = Vec::new();
    let mut pending: Vec<&Expr> = select.selection.iter().collect();
    while let Some(condition) = pending.pop() {
        match condition {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => pending.extend([left.as_ref(), right.as_ref()]),
            Expr::Nested(inner) => pending.push(inner),
            other => conditions.push(other),
        }
    }
    conditions
        .into_iter()
        .all(|condition| match references(condition, &bound) {
            (_, false) => true,
            (true, true) => matches!(
                condition,
                Expr::BinaryOp {
                    op: BinaryOperator::Eq,
                    ..
                }
            ),
            (false, true) => false,
        })
}

/// The names `select`'s FROM binds: tables and their aliases.
fn bound(select: &Select) -> HashSet<String> {
    let mut bound = HashSet::new();
    for from in &select.from {
        for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        {
            bind(factor, &mut bound);
        }
    }
    bound
}

/// Whether `node` reads columns of `bound` relations (or unqualified ones), and whether it
/// reads columns of other relations.
fn references<N: Visit>(node: &N, bound: &HashSet<String>) -> (bool, bool) {
    let mut columns = Columns {
        bound,
        inner: false,
        outer: false,
        depth: 0,
    };
    let _ = node.visit(&mut columns);
    (columns.inner, columns.outer)
}

fn bind(factor: &TableFactor, bound: &mut HashSet<String>) {
    match factor {
        TableFactor::Table { name, alias, .. } => {
            if let Some(table) = name.0.last().and_then(|p| p.as_ident()) {
                bound.insert(table.value.to_ascii_lowercase());
            }
            if let Some(alias) = alias {
                bound.insert(alias.name.value.to_ascii_lowercase());
            }
        }
        TableFactor::Derived { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::Function { alias, .. } => {
            if let Some(alias) = alias {
                bound.insert(alias.name.value.to_ascii_lowercase());
            }
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            bind(&table_with_joins.relation, bound);
            for join in &table_with_joins.joins {
                bind(&join.relation, bound);
            }
        }
        _ => {}
    }
}

struct Columns<'a> {
    bound: &'a HashSet<String>,
    inner: bool,
    outer: bool,
    /// How many queries deep inside the one being read the visit is.
    depth: usize,
}

impl Visitor for Columns<'_> {
    type Break = ();

    // Nested queries have scopes of their own: their columns are not this one's.
    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = parts[parts.len() - 2].value.to_ascii_lowercase();
                match self.bound.contains(&qualifier) {
                    true => self.inner = true,
                    false => self.outer = true,
                }
            }
            Expr::Identifier(_) => self.inner = true,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether `select` reads one catalog table that never has rows here (psql's `\dp` lists
/// policies with a subquery nested in its select list, which DataFusion cannot run).
fn reads_empty_catalog_table(select: &Select) -> bool {
    match select.from.as_slice() {
        [from] if from.joins.is_empty() => {
            matches!(&from.relation, TableFactor::Table { name, args: None, .. }
            if name.0.last().and_then(|p| p.as_ident()).is_some_and(|t| crate::pg::pg_catalog::always_empty(&t.value)))
        }
        _ => false,
    }
}

/// Whether `select` reads only `unnest(c.x)` of a catalog array that is always NULL here
/// (`reloptions`, `relacl`, `nspacl`, … — there are no storage options or privileges), as
/// psql's `\d+` does. DataFusion cannot plan an outer column inside FROM, and the answer is
/// NULL anyway.
fn unnests_null_catalog_array(select: &Select) -> bool {
    let [from] = select.from.as_slice() else {
        return false;
    };
    if !from.joins.is_empty() || select.selection.is_some() {
        return false;
    }
    let arrays: Vec<&Expr> = match &from.relation {
        TableFactor::UNNEST { array_exprs, .. } => array_exprs.iter().collect(),
        TableFactor::Table {
            name,
            args: Some(args),
            ..
        } if name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest")) =>
        {
            args.args
                .iter()
                .filter_map(|a| match a {
                    sqlparser::ast::FunctionArg::Unnamed(
                        sqlparser::ast::FunctionArgExpr::Expr(e),
                    ) => Some(e),
                    _ => None,
                })
                .collect()
        }
        _ => return false,
    };
    !arrays.is_empty()
        && arrays.iter().all(|e| match e {
            Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|column| {
                let column = column.value.to_ascii_lowercase();
                column.ends_with("options") || column.ends_with("acl")
            }),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn lookups(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        super::single_row_lookups(&mut statement);
        statement.to_string()
    }

    fn array(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        crate::pg::compat::rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn correlated_lookups_take_their_first_row() {
        assert_eq!(
            lookups(
                "SELECT t.oid FROM pg_type t WHERE (SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)"
            ),
            "SELECT t.oid FROM pg_type t WHERE (SELECT single_value(c.relkind = 'c') FROM pg_class c WHERE c.oid = t.typrelid)"
        );
        // Aggregated, uncorrelated or limited to more than one row: unchanged.
        for sql in [
            "SELECT (SELECT count(*) FROM pg_class c WHERE c.oid = t.oid) FROM pg_type t",
            "SELECT (SELECT c.relname FROM pg_class c WHERE c.oid = 5) FROM pg_type t",
            "SELECT (SELECT c.relname FROM pg_class c WHERE c.oid = t.oid LIMIT 2) FROM pg_type t",
            "SELECT (SELECT DISTINCT c.relname FROM pg_class c WHERE c.oid = t.oid) FROM pg_type t",
        ] {
            assert_eq!(lookups(sql), sql);
        }
        assert_eq!(
            lookups(
                "SELECT (SELECT c.relname FROM pg_class c WHERE c.oid = t.oid ORDER BY 1 LIMIT 1) FROM pg_type t"
            ),
            "SELECT (SELECT first_value(c.relname ORDER BY c.relname) FROM pg_class c WHERE c.oid = t.oid) FROM pg_type t"
        );
    }

    #[test]
    fn leaves_alone_what_it_cannot_read_as_one_row() {
        // Nested scopes, user tables, ANY/ALL and mixed-in catalog names: unchanged.
        for sql in [
            "SELECT (SELECT c.relname FROM pg_class c WHERE c.relnamespace IN (SELECT n.oid FROM pg_namespace n)) FROM pg_type t",
            "SELECT t.oid FROM pg_type t WHERE t.oid <> ALL(SELECT c.reltype FROM pg_class c WHERE c.relnamespace = t.typnamespace)",
        ] {
            assert_eq!(lookups(sql), sql);
        }
    }

    #[test]
    fn array_subqueries_aggregate_in_place() {
        assert_eq!(
            array(
                "SELECT ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r"
            ),
            "SELECT coalesce((SELECT array_agg(b.rolname ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid), make_array()) FROM pg_roles r"
        );
        let sql = array("SELECT ARRAY(SELECT DISTINCT x FROM t LIMIT 3)");
        assert!(
            sql.contains("coalesce((SELECT array_agg(array_element) FROM (SELECT DISTINCT x AS array_element FROM t LIMIT 3) AS array_rows), make_array())"),
            "{sql}"
        );
        // Aggregates and set-returning elements keep their own query.
        for sql in [
            "SELECT ARRAY(SELECT max(x) FROM t)",
            "SELECT ARRAY(SELECT unnest(a) FROM t)",
        ] {
            assert!(array(sql).contains("AS array_rows"), "{sql}");
        }
        let sql = array("SELECT ARRAY(SELECT x + 1 AS y FROM t ORDER BY y DESC)");
        assert!(
            sql.contains("array_agg(x + 1 ORDER BY x + 1 DESC)"),
            "{sql}"
        );
        let sql = array(
            "SELECT array_to_string(c.reloptions || array(select 'toast.' || x from unnest(tc.reloptions) x), ', ') FROM pg_class c",
        );
        assert!(
            sql.contains("c.reloptions || CAST(NULL AS TEXT[])"),
            "{sql}"
        );
    }
}
