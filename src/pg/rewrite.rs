//! Postgres' rewrites of standard statements, in their order.
//!
//! Catalog queries (those reading `pg_catalog` or `information_schema`) go through
//! datafusion-pg-catalog's `PostgresCompatibilityParser`, whose rules let psql's and BI tools'
//! catalog queries run in DataFusion — all but two: its `RemoveSubqueryFromProjection` answers a
//! correlated scalar subquery with NULL and cuts an uncorrelated one to its first row (wrong
//! where Postgres gives values or an error; [`super::subqueries`] does what it was for), and its
//! `FixArrayLiteral` splits `'{…}'::t[]` at every comma ([`super::arrays`] reads them). Its
//! whole-query replacements (the blacklist, psql's `\d` queries) are kept where they match.
//! Then ours: drivers' queries swapped ([`super::driver_queries`]), expressions
//! ([`super::compat`]) and result column names ([`super::names`]).

use std::sync::LazyLock;

use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};

use crate::sql::Statement;

static PG_COMPAT: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// datafusion-pg-catalog's rewrites in its order, without `RemoveSubqueryFromProjection` and
/// `FixArrayLiteral`.
static DATA_REWRITES: LazyLock<Vec<Box<dyn SqlStatementRewriteRule>>> = LazyLock::new(|| {
    vec![
        Box::new(rules::AliasDuplicatedProjectionRewrite),
        Box::new(rules::ResolveUnqualifiedIdentifier),
        Box::new(rules::RewriteArrayAnyAllOperation),
        Box::new(rules::PrependUnqualifiedPgTableName),
        Box::new(rules::StripCallableQualifier),
        Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
        Box::new(rules::StripCollate),
        Box::new(rules::RewritePgCatalogOperator),
        Box::new(rules::RewriteRegCastToSubquery::new()),
        Box::new(rules::FixVersionColumnName),
    ]
});

/// datafusion-pg-catalog's rewrites for `statement` but its subquery removal; correlated
/// lookups then take their one row ([`super::subqueries`]).
fn compatible(statement: sqlparser::ast::Statement) -> sqlparser::ast::Statement {
    let mut statement = DATA_REWRITES
        .iter()
        .fold(statement, |statement, rule| rule.rewrite(statement));
    super::subqueries::single_row_lookups(&mut statement);
    statement
}

/// Whether a statement reads `pg_catalog` or `information_schema` (named or bare `pg_*`).
fn reads_catalog(statement: &sqlparser::ast::Statement) -> bool {
    let found = sqlparser::ast::visit_relations(statement, |name| {
        let catalog = name.0.iter().any(|part| {
            part.as_ident().is_some_and(|ident| {
                let value = ident.value.to_ascii_lowercase();
                value == "pg_catalog" || value == "information_schema" || value.starts_with("pg_")
            })
        });
        match catalog {
            true => std::ops::ControlFlow::Break(()),
            false => std::ops::ControlFlow::Continue(()),
        }
    });
    found.is_break()
}

/// `statements` (parsed from `sql`) with every standard one rewritten for DataFusion.
pub fn standard_statements(sql: &str, mut statements: Vec<Statement>) -> Vec<Statement> {
    // Scalar functions in FROM become derived tables here, and the text handed on below is
    // made from them: datafusion-pg-catalog's blacklist would otherwise swap Grafana's
    // search_path subquery (which then plans) for '' at the token level.
    let mut from_functions = false;
    for statement in &mut statements {
        if let Statement::Standard(s) = statement {
            from_functions |= super::compat::functions_in_from(s.as_mut());
        }
    }
    let rewritten_text = from_functions.then(|| {
        statements
            .iter()
            .filter_map(|s| match s {
                Statement::Standard(s) => Some(s.to_string()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(";\n")
    });
    let sql = rewritten_text.as_deref().unwrap_or(sql);
    let standard: Vec<&sqlparser::ast::Statement> = statements
        .iter()
        .filter_map(|s| match s {
            Statement::Standard(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect();
    // The blacklist of PG_COMPAT.parse swaps whole catalog queries (psql's) at the token level;
    // its answer is taken only where it did (its rules alone would give the same statements).
    if standard.len() == statements.len()
        && standard.iter().all(|s| reads_catalog(s))
        && let Ok(rewritten) = PG_COMPAT.parse(sql)
        && rewritten.len() == statements.len()
        && standard
            .iter()
            .zip(&rewritten)
            .any(|(original, rewritten)| PG_COMPAT.rewrite((*original).clone()) != *rewritten)
    {
        return standard
            .into_iter()
            .zip(rewritten)
            .map(|(original, rewritten)| finish_standard(original, rewritten))
            .collect();
    }
    statements
        .into_iter()
        .map(|s| match s {
            Statement::Standard(s) => finish_standard(&s, compatible((*s).clone())),
            ours => ours,
        })
        .collect()
}

/// Our rewrites of a standard statement, after datafusion-pg-catalog's (`statement`, made
/// from `original`).
fn finish_standard(
    original: &sqlparser::ast::Statement,
    statement: sqlparser::ast::Statement,
) -> Statement {
    let mut s = match super::driver_queries::equivalent(&statement) {
        Some(equivalent) => compatible(equivalent),
        None => statement,
    };
    super::compat::rewrite(&mut s);
    super::names::name_columns(original, &mut s);
    Statement::Standard(Box::new(s))
}
