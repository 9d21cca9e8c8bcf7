//! Catalog queries of client drivers that DataFusion cannot plan, swapped for equivalents.
//!
//! asyncpg looks up every result type it has no codec for (int8[], bool[], float8[], date[] …)
//! with one recursive query over pg_type whose domain, composite and range branches are
//! correlated scalar subqueries, which DataFusion does not execute. SluiceDB has no domains,
//! composites or ranges, so those branches are always NULL: the swapped query answers the
//! requested types and their element types with the same columns, nothing else. The query is
//! recognised by its CTE's name (`typeinfo_tree`), which every asyncpg release since 0.18 uses.
//! Metabase's column sync adds materialized views' columns to `information_schema.columns`,
//! which here already lists them: its UNION ALL becomes a UNION.
//! pgjdbc's key and index listings expand keys of the (here empty) `pg_index`/`pg_constraint`
//! with a composite-returning function; they are answered with their columns and no rows.
//! SQLAlchemy 2's column reflection asks, per column, for its identity options, default and
//! collation with correlated subqueries over `pg_sequence`, `pg_attrdef` and `pg_collation`
//! (and `json_build_object`); SluiceDB's columns have no identity, no default and the default
//! collation, so those three columns are NULL.

use std::sync::LazyLock;

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, Query, SelectItem, SetExpr, SetOperator, SetQuantifier, Statement,
    visit_expressions,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// asyncpg's type introspection over what SluiceDB has; `$1` is the requested type oids.
/// `kind` goes out as bytes, as Postgres' `"char"` reaches asyncpg; `attrtypoids` (always NULL)
/// as text, since an oid[] column would itself need looking up.
const ASYNCPG_TYPES: &str = "
WITH requested AS (
  SELECT t.oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind, t.typelem AS elemtype,
         0 AS depth
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
  WHERE t.oid = ANY($1::oid[])
), tree AS (
  SELECT * FROM requested
  UNION ALL
  SELECT e.oid, ns.nspname, e.typname, e.typtype, e.typelem, 1
  FROM requested r
  JOIN pg_catalog.pg_type e ON e.oid = r.elemtype
  JOIN pg_catalog.pg_namespace ns ON ns.oid = e.typnamespace
)
SELECT DISTINCT tree.oid, tree.ns, tree.name, CAST(tree.kind AS BYTEA) AS kind,
  CAST(NULL AS OID) AS basetype,
  CASE WHEN tree.elemtype = 0 THEN NULL ELSE tree.elemtype END AS elemtype,
  e.typdelim AS elemdelim, CAST(NULL AS OID) AS range_subtype,
  CAST(NULL AS TEXT) AS attrtypoids, CAST(NULL AS TEXT[]) AS attrnames, tree.depth,
  CAST(NULL AS TEXT) AS basetype_name, format_type(e.oid, NULL) AS elemtype_name,
  CAST(NULL AS TEXT) AS range_subtype_name
FROM tree LEFT JOIN pg_catalog.pg_type e ON e.oid = tree.elemtype
ORDER BY tree.depth DESC";

static ASYNCPG_TYPES_PARSED: LazyLock<Statement> = LazyLock::new(|| {
    Parser::parse_sql(&PostgreSqlDialect {}, ASYNCPG_TYPES)
        .expect("the asyncpg type query parses")
        .remove(0)
});

/// The equivalent of a driver's catalog query DataFusion cannot run, if `statement` is one.
pub fn equivalent(statement: &Statement) -> Option<Statement> {
    let Statement::Query(query) = statement else {
        return None;
    };
    if is_asyncpg_type_lookup(query) {
        return Some(ASYNCPG_TYPES_PARSED.clone());
    }
    if let Some(deduplicated) = materialized_view_columns_once(query) {
        return Some(Statement::Query(Box::new(deduplicated)));
    }
    if let Some(plain) = sqlalchemy_columns_without_options(query) {
        return Some(Statement::Query(Box::new(plain)));
    }
    reads_index_keys(statement).then(|| no_rows_like(query))?
}

/// Metabase's column sync reads `information_schema.columns` UNION ALL the columns of
/// materialized views from `pg_attribute`, since Postgres leaves them out of the former. Here
/// `information_schema.columns` lists them too, with the same values in every column Metabase
/// selects, so the union keeps one of each.
fn materialized_view_columns_once(query: &Query) -> Option<Query> {
    let SetExpr::SetOperation {
        op: SetOperator::Union,
        set_quantifier: SetQuantifier::All,
        left,
        right,
    } = query.body.as_ref()
    else {
        return None;
    };
    let (left_sql, right_sql) = (left.to_string(), right.to_string());
    let adds_view_columns = left_sql.contains("\"information_schema\".\"columns\"")
        && right_sql.contains("\"pg_attribute\"")
        && right_sql.contains("\"relkind\" = 'm'");
    adds_view_columns.then(|| {
        let mut query = query.clone();
        if let SetExpr::SetOperation { set_quantifier, .. } = query.body.as_mut() {
            *set_quantifier = SetQuantifier::Distinct;
        }
        query
    })
}

/// SQLAlchemy 2's column query with its identity, default and collation subqueries as NULL.
fn sqlalchemy_columns_without_options(query: &Query) -> Option<Query> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    const OPTIONS: [(&str, &str); 3] = [
        ("identity_options", "pg_sequence"),
        ("default", "pg_attrdef"),
        ("collation", "pg_collation"),
    ];
    let mut query = query.clone();
    let SetExpr::Select(rewritten) = query.body.as_mut() else {
        return None;
    };
    let mut changed = false;
    for (item, original) in rewritten.projection.iter_mut().zip(&select.projection) {
        let SelectItem::ExprWithAlias { expr, alias } = original else {
            continue;
        };
        let reads = |catalog: &str| expr.to_string().contains(catalog);
        if OPTIONS
            .iter()
            .any(|(name, catalog)| alias.value == *name && reads(catalog))
        {
            *item = SelectItem::ExprWithAlias {
                expr: null_keeping_parameters(expr)?,
                alias: alias.clone(),
            };
            changed = true;
        }
    }
    changed.then_some(query)
}

/// NULL, still naming the parameters `expr` held with their casts (`$3::VARCHAR`), so they keep
/// the types the client was told and binds values for.
fn null_keeping_parameters(expr: &Expr) -> Option<Expr> {
    let mut parameters: Vec<String> = Vec::new();
    let _ = visit_expressions(expr, |e| {
        match e {
            Expr::Cast { expr: inner, .. } if is_placeholder(inner) => {
                parameters.push(e.to_string())
            }
            e if is_placeholder(e) => parameters.push(e.to_string()),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if parameters.is_empty() {
        return Some(Expr::value(sqlparser::ast::Value::Null));
    }
    let tests: Vec<String> = parameters.iter().map(|p| format!("{p} IS NULL")).collect();
    let sql = format!("CASE WHEN false AND {} THEN NULL END", tests.join(" AND "));
    super::compat::parse_expr(&sql)
}

fn is_placeholder(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Placeholder(_)))
}

fn is_asyncpg_type_lookup(query: &Query) -> bool {
    query.with.as_ref().is_some_and(|with| {
        with.recursive
            && matches!(query.body.as_ref(), SetExpr::Select(_))
            && with
                .cte_tables
                .iter()
                .any(|cte| cte.alias.name.value == "typeinfo_tree")
    })
}

/// pgjdbc's `getPrimaryKeys`, `getIndexInfo` and `getImportedKeys` expand index and constraint
/// keys with `information_schema._pg_expandarray(…)`, a set-returning function of a composite
/// type. Its input comes from `pg_index`/`pg_constraint`, which are empty here: no keys.
fn reads_index_keys(statement: &Statement) -> bool {
    visit_expressions(statement, |expr| match expr {
        Expr::Function(f)
            if f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray")) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// `SELECT NULL AS <column>, … WHERE false` with the output columns of `query`'s SELECT.
fn no_rows_like(query: &Query) -> Option<Statement> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let names: Option<Vec<&Ident>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Some(ident),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last(),
            _ => None,
        })
        .collect();
    // Written as the query wrote them, so unquoted names fold to lower case as in Postgres.
    let columns: Vec<String> = names?
        .iter()
        .map(|name| format!("NULL AS {name}"))
        .collect();
    let sql = format!("SELECT {} WHERE false", columns.join(", "));
    Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_asyncpg_type_lookup() {
        let asyncpg = "WITH RECURSIVE typeinfo_tree(oid, depth) AS (
            SELECT oid, 0 FROM pg_type WHERE oid = any($1::oid[])
            UNION ALL SELECT t.oid, tt.depth + 1 FROM pg_type t, typeinfo_tree tt
            WHERE t.oid = tt.oid) SELECT DISTINCT * FROM typeinfo_tree ORDER BY depth DESC";
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, asyncpg).unwrap();
        assert_eq!(equivalent(&parsed[0]), Some(ASYNCPG_TYPES_PARSED.clone()));
        let other = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3)
            SELECT * FROM t";
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, other).unwrap();
        assert_eq!(equivalent(&parsed[0]), None);
    }

    #[test]
    fn key_listings_keep_their_columns_and_return_nothing() {
        let pgjdbc = "SELECT result.TABLE_CAT, result.\"Key\", NULL AS KEY_SEQ FROM (SELECT
            (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ FROM pg_index i) result";
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, pgjdbc).unwrap();
        assert_eq!(
            equivalent(&parsed[0]).unwrap().to_string(),
            "SELECT NULL AS TABLE_CAT, NULL AS \"Key\", NULL AS KEY_SEQ WHERE false"
        );
    }
}
