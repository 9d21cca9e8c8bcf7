//! Postgres expressions that clients send and DataFusion spells differently, rewritten in the
//! syntax tree after datafusion-pg-catalog's own rewrites.
//!
//! - `ARRAY(SELECT …)` (psql's `\d+` and `\du`): see [`crate::pg::subqueries`].
//! - `unnest(a) x` in FROM names its column `x`, as in Postgres (`unnest(a) AS x(x)`).
//! - `INTERVAL '5 minutes' * n` (Superset's 5/10/15/30-minute grains, its epoch conversion):
//!   DataFusion cannot scale an interval, so it becomes `CAST(CAST(n * 300 AS VARCHAR) ||
//!   ' seconds' AS INTERVAL)` for any fixed-length interval.
//! - `TIMESTAMP 'epoch'` / `CAST('epoch' AS TIMESTAMP)` (Superset's epoch columns) → 1970-01-01.
//! - `generate_subscripts(a, d)` → `unnest(generate_series(1, array_length(a, d)))`.
//! - `current_role` (a column name to sqlparser) → `current_user`.
//! - sort keys holding a subquery move into an inner query ([`super::sort_keys`]).
//! - `LIKE 'a/_%' ESCAPE '/'` → `LIKE 'a\_%'`: DataFusion escapes with the backslash only.
//! - `to_timestamp(text, 'YYYY-MM-DD HH24:MI:SS.US')` and `to_date(text, 'YYYY-MM-DD')`, as
//!   Superset writes time filters: the Postgres template becomes a chrono one, which is what
//!   DataFusion's functions read.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectNamePart, TableAlias, TableAliasColumnDef, TableFactor, Value, VisitMut,
    VisitorMut, visit_expressions_mut, visit_relations_mut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Applies every rewrite of this module to `statement`.
pub fn rewrite<V: VisitMut>(statement: &mut V) {
    // First, as they make subqueries the rewrites below work on.
    let _ = statement.visit(&mut super::sort_keys::HoistSortSubqueries);
    let _ = statement.visit(&mut super::sort_keys::InSubqueryColumns);
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(rewritten) = rewrite_expr(expr) {
            *expr = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = statement.visit(&mut NameUnnestColumns);
    let _ = visit_relations_mut(statement, |name| {
        if let [ObjectNamePart::Identifier(table)] = name.0.as_slice()
            && OWN_CATALOG_TABLES.contains(&table.value.as_str())
        {
            name.0
                .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `pg_catalog` tables of ours (datafusion-pg-catalog qualifies only its own when named bare).
const OWN_CATALOG_TABLES: &[&str] = &["pg_stat_activity"];

/// Scalar functions returning an array that clients call in FROM (Grafana's table picker:
/// `string_to_array(current_setting('search_path'), ',') s`).
const ARRAY_FUNCTIONS_IN_FROM: &[&str] = &[
    "string_to_array",
    "regexp_split_to_array",
    "current_schemas",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_remove",
];

/// A scalar function in FROM is a one-row relation whose one column has the alias' name, as in
/// Postgres; DataFusion takes only table functions there. `f(args) s` becomes
/// `(SELECT f(args) AS s) s`. Returns whether anything changed.
pub fn functions_in_from<V: VisitMut>(statement: &mut V) -> bool {
    let mut rewrite = FunctionsInFrom { changed: false };
    let _ = statement.visit(&mut rewrite);
    rewrite.changed
}

struct FunctionsInFrom {
    changed: bool,
}

impl VisitorMut for FunctionsInFrom {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            with_ordinality: false,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(function) = name.0.last().and_then(|p| p.as_ident()) else {
            return ControlFlow::Continue(());
        };
        let function = function.value.to_ascii_lowercase();
        if !ARRAY_FUNCTIONS_IN_FROM.contains(&function.as_str()) {
            return ControlFlow::Continue(());
        }
        let column = alias
            .as_ref()
            .map_or_else(|| function.clone(), |a| a.name.value.clone());
        let arguments: Vec<String> = args.args.iter().map(ToString::to_string).collect();
        let sql = format!(
            "SELECT {function}({}) AS \"{}\"",
            arguments.join(", "),
            column.replace('"', "\"\"")
        );
        let Ok(mut parsed) = Parser::parse_sql(&PostgreSqlDialect {}, &sql) else {
            return ControlFlow::Continue(());
        };
        let Some(sqlparser::ast::Statement::Query(subquery)) = parsed.pop() else {
            return ControlFlow::Continue(());
        };
        let alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::with_quote('"', column),
            columns: Vec::new(),
            at: None,
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
            sample: None,
        };
        self.changed = true;
        ControlFlow::Continue(())
    }
}

/// Gives `unnest(a) AS x` and `generate_series(…) AS x` the column name `x`, as Postgres does.
struct NameUnnestColumns;

impl VisitorMut for NameUnnestColumns {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } = factor
            && array_exprs.len() == 1
            && alias.columns.is_empty()
        {
            alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
        }
        // Likewise `generate_series(1, n) g`: the column is `g`.
        if let TableFactor::Table {
            name,
            args: Some(_),
            alias: Some(alias),
            with_ordinality: false,
            ..
        } = factor
            && alias.columns.is_empty()
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"))
        {
            alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
        }
        ControlFlow::Continue(())
    }
}

fn rewrite_expr(expr: &Expr) -> Option<Expr> {
    // `current_role` parses as a column name; it is `current_user` (bound per connection).
    if let Expr::Identifier(ident) = expr
        && ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case("current_role")
    {
        return parse_expr("current_user");
    }
    if let Some(like) = like_with_backslash_escape(expr) {
        return Some(like);
    }
    if let Expr::BinaryOp {
        left,
        op: BinaryOperator::Multiply,
        right,
    } = expr
    {
        return scaled_interval(left, right).or_else(|| scaled_interval(right, left));
    }
    if let Some(epoch) = epoch_timestamp(expr) {
        return Some(epoch);
    }
    if let Some(double) = out_of_decimal_range(expr) {
        return Some(double);
    }
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function_name(function)?;
    match (name.as_str(), &function.args) {
        ("array", FunctionArguments::Subquery(query)) => {
            crate::pg::subqueries::array_subquery(query)
        }
        ("generate_subscripts", FunctionArguments::List(_)) => {
            let [array, dimension] = plain_args(function)?;
            parse_expr(&format!(
                "unnest(generate_series(1, array_length({array}, {dimension})))"
            ))
        }
        ("to_timestamp" | "to_date", FunctionArguments::List(_)) => {
            let [text, Expr::Value(template)] = plain_args(function)? else {
                return None;
            };
            let Value::SingleQuotedString(template) = &template.value else {
                return None;
            };
            let chrono = chrono_template(template)?;
            let mut rewritten = function.clone();
            rewritten.args = FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(text.clone())),
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                        Value::SingleQuotedString(chrono),
                    ))),
                ],
                clauses: Vec::new(),
            });
            Some(Expr::Function(rewritten))
        }
        // Postgres reads an integer literal as `integer`; DataFusion reads `bigint`, which these
        // catalog functions (taking an oid or an encoding number) do not accept.
        (name, FunctionArguments::List(list))
            if INTEGER_ARGUMENT_FUNCTIONS.contains(&name)
                && list.args.iter().any(|a| integer_literal(a).is_some()) =>
        {
            let mut rewritten = function.clone();
            if let FunctionArguments::List(list) = &mut rewritten.args {
                for arg in &mut list.args {
                    if let Some(literal) = integer_literal(arg) {
                        *arg = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Cast {
                            kind: sqlparser::ast::CastKind::Cast,
                            expr: Box::new(literal),
                            data_type: DataType::Integer(None),
                            array: false,
                            format: None,
                        }));
                    }
                }
            }
            Some(Expr::Function(rewritten))
        }
        // Visible means on the search path, which is public and pg_catalog here: not
        // information_schema or sluice_catalog (datafusion-pg-catalog answers true for all, so
        // SQLAlchemy listed their views as the user's).
        ("pg_table_is_visible", FunctionArguments::List(_)) => {
            let [relation] = plain_args(function)?;
            parse_expr(&format!(
                "coalesce(array_has((SELECT array_agg(visible.oid) \
                 FROM pg_catalog.pg_class AS visible JOIN pg_catalog.pg_namespace AS visible_ns \
                 ON visible_ns.oid = visible.relnamespace \
                 WHERE visible_ns.nspname IN ('public', 'pg_catalog')), ({relation})), false)"
            ))
        }
        // Only relations have access privileges (nspacl, attacl, … are NULL, and
        // datafusion-pg-catalog types some as text): psql's \dn+ prints them joined.
        ("array_to_string", FunctionArguments::List(_))
            if unnamed_args(function)
                .and_then(|args| args.first().copied())
                .is_some_and(is_privileges_column) =>
        {
            parse_expr("CAST(NULL AS TEXT)")
        }
        // No object has a comment: these are NULL whatever they are given, so their arguments
        // need not plan (Metabase passes `format('%I.%I', schema, table)::regclass`, a cast
        // DataFusion cannot make from a computed name).
        (
            "obj_description" | "col_description" | "shobj_description",
            FunctionArguments::List(list),
        ) if !list.args.iter().all(|a| {
            matches!(
                a,
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(_)))
            )
        }) =>
        {
            let mut rewritten = function.clone();
            if let FunctionArguments::List(list) = &mut rewritten.args {
                for arg in &mut list.args {
                    *arg = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(Value::Null)));
                }
            }
            Some(Expr::Function(rewritten))
        }
        _ => None,
    }
}

/// A numeric literal too large or too small for a decimal (`1e300`, past 10^±76), which
/// DataFusion refuses, as a double: Postgres' numeric goes further, but a double holds it.
fn out_of_decimal_range(expr: &Expr) -> Option<Expr> {
    let Expr::Value(value) = expr else {
        return None;
    };
    let Value::Number(number, _) = &value.value else {
        return None;
    };
    let (mantissa, exponent) = number.split_once(['e', 'E'])?;
    let exponent = exponent.parse::<i64>().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    let length = i64::try_from(significant.len()).ok()?;
    let scale = i64::try_from(fraction.len()).ok()? - exponent;
    let decimal_digits = length.max(scale).max(length - scale);
    (decimal_digits > 76 || scale < -76).then(|| Expr::Cast {
        kind: sqlparser::ast::CastKind::Cast,
        expr: Box::new(Expr::value(Value::SingleQuotedString(number.clone()))),
        data_type: DataType::DoublePrecision,
        array: false,
        format: None,
    })
}

/// `x LIKE 'a/_%' ESCAPE '/'` (SQLAlchemy's `startswith`, reflection queries): DataFusion takes
/// only the backslash as escape, so a literal pattern is rewritten to backslash escapes.
/// `ESCAPE ''` (no escape at all) makes every backslash literal.
fn like_with_backslash_escape(expr: &Expr) -> Option<Expr> {
    let mut rewritten = expr.clone();
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = &mut rewritten
    else {
        return None;
    };
    let Value::SingleQuotedString(escape) = &escape_char.as_ref()?.value else {
        return None;
    };
    let mut escapes = escape.chars();
    let escape = match (escapes.next(), escapes.next()) {
        // The default: nothing to translate.
        (Some('\\'), None) => {
            *escape_char = None;
            return Some(rewritten);
        }
        (Some(c), None) => Some(c),
        (None, _) => None,
        // Postgres refuses it (22025); DataFusion says so too.
        (Some(_), Some(_)) => return None,
    };
    let Expr::Value(literal) = pattern.as_mut() else {
        return None;
    };
    let Value::SingleQuotedString(text) = &literal.value else {
        return None;
    };
    let mut translated = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if Some(c) == escape => {
                translated.push('\\');
                // A pattern ending in its escape character: Postgres refuses it, so must we.
                translated.push(chars.next().unwrap_or('\\'));
            }
            '\\' => translated.push_str("\\\\"),
            c => translated.push(c),
        }
    }
    literal.value = Value::SingleQuotedString(translated);
    *escape_char = None;
    Some(rewritten)
}

/// A catalog column of access privileges other than `relacl` (`nspacl`, `attacl`).
fn is_privileges_column(expr: &Expr) -> bool {
    let name = match expr {
        Expr::Identifier(ident) => &ident.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(ident) => &ident.value,
            None => return false,
        },
        _ => return false,
    };
    let name = name.to_ascii_lowercase();
    name.len() > 3 && name.ends_with("acl") && name != "relacl"
}

/// datafusion-pg-catalog functions whose oid or code arguments are `integer` only.
const INTEGER_ARGUMENT_FUNCTIONS: &[&str] = &[
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_encoding_to_char",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_stat_get_numscans",
];

/// An unsigned integer literal argument (`6`, not `6.0` or `'6'`).
fn integer_literal(arg: &FunctionArg) -> Option<Expr> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) if matches!(&v.value, Value::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit())) => {
            Some(Expr::Value(v.clone()))
        }
        _ => None,
    }
}

const EPOCH: &str = "1970-01-01 00:00:00";

/// Postgres' special timestamp input `epoch`, spelled out.
fn epoch_timestamp(expr: &Expr) -> Option<Expr> {
    match expr {
        Expr::Cast {
            expr: value,
            data_type: DataType::Timestamp(..),
            ..
        } if is_epoch(value) => {
            let mut cast = expr.clone();
            if let Expr::Cast { expr: value, .. } = &mut cast {
                **value = Expr::value(Value::SingleQuotedString(EPOCH.into()));
            }
            Some(cast)
        }
        Expr::TypedString(typed)
            if matches!(typed.data_type, DataType::Timestamp(..))
                && matches!(&typed.value.value, Value::SingleQuotedString(s) if s.eq_ignore_ascii_case("epoch")) =>
        {
            let mut typed = typed.clone();
            typed.value.value = Value::SingleQuotedString(EPOCH.into());
            Some(Expr::TypedString(typed))
        }
        _ => None,
    }
}

fn is_epoch(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(s) if s.eq_ignore_ascii_case("epoch")))
}

/// `interval * factor` as an interval of seconds, when `interval` is a fixed-length literal.
fn scaled_interval(interval: &Expr, factor: &Expr) -> Option<Expr> {
    let ms = crate::sql::interval::interval_ms(interval).ok()?;
    let seconds = ms as f64 / 1000.0;
    parse_expr(&format!(
        "CAST(CAST(({factor}) * {seconds} AS VARCHAR) || ' seconds' AS INTERVAL)"
    ))
}

/// A called function's name, lower case, without its schema.
pub fn function_name(function: &Function) -> Option<String> {
    Some(
        function
            .name
            .0
            .last()?
            .as_ident()?
            .value
            .to_ascii_lowercase(),
    )
}

/// The arguments of a call without names or modifiers (none for `current_user`).
pub fn unnamed_args(function: &Function) -> Option<Vec<&Expr>> {
    let list = match &function.args {
        FunctionArguments::None => return Some(Vec::new()),
        FunctionArguments::List(list) => list,
        FunctionArguments::Subquery(_) => return None,
    };
    if !list.clauses.is_empty() || list.duplicate_treatment.is_some() {
        return None;
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// Exactly `N` unnamed arguments.
fn plain_args<const N: usize>(function: &Function) -> Option<[&Expr; N]> {
    unnamed_args(function)?.try_into().ok()
}

/// An expression from SQL text this module (or a sibling) wrote; `None` if it does not parse.
pub(crate) fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// A Postgres date/time template in chrono's syntax, or `None` when it has a field we do not
/// translate (then DataFusion reports the template as invalid).
fn chrono_template(template: &str) -> Option<String> {
    // Longest patterns first, so `HH24` wins over `HH` and `MS` is not read as `M` + `S`.
    const FIELDS: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("Month", "%B"),
        ("Mon", "%b"),
        ("Day", "%A"),
        ("Dy", "%a"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("TZ", "%Z"),
        ("OF", "%:z"),
    ];
    if template.contains('%') {
        return None;
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if let Some((pattern, chrono)) = FIELDS.iter().find(|(p, _)| rest.starts_with(p)) {
            out.push_str(chrono);
            rest = &rest[pattern.len()..];
        } else if c.is_ascii_alphabetic() {
            return None;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Statement;

    fn rewritten(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let mut statement: Statement = statements.remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn translates_postgres_templates() {
        assert_eq!(
            chrono_template("YYYY-MM-DD HH24:MI:SS.US").unwrap(),
            "%Y-%m-%d %H:%M:%S.%6f"
        );
        assert_eq!(chrono_template("YYYY-MM-DD").unwrap(), "%Y-%m-%d");
        assert_eq!(chrono_template("%Y"), None);
        assert_eq!(chrono_template("YYYY Q"), None);
        assert!(
            rewritten(
                "SELECT TO_TIMESTAMP('2024-01-02 03:04:05.000001', 'YYYY-MM-DD HH24:MI:SS.US')"
            )
            .contains("'%Y-%m-%d %H:%M:%S.%6f'")
        );
    }

    #[test]
    fn translates_like_escapes_to_backslashes() {
        assert_eq!(
            rewritten(r"SELECT a LIKE 'x/_y\%' ESCAPE '/' FROM t"),
            r"SELECT a LIKE 'x\_y\\%' FROM t"
        );
        assert_eq!(
            rewritten(r"SELECT a NOT ILIKE 'a\_' ESCAPE '' FROM t"),
            r"SELECT a NOT ILIKE 'a\\_' FROM t"
        );
        assert_eq!(
            rewritten(r"SELECT a LIKE 'a\_' ESCAPE '\' FROM t"),
            r"SELECT a LIKE 'a\_' FROM t"
        );
    }

    #[test]
    fn rewrites_intervals_epochs_and_subscripts() {
        let sql = rewritten("SELECT INTERVAL '5 MINUTES' * FLOOR(EXTRACT(MINUTE FROM ts) / 5)");
        assert!(
            sql.contains("CAST(CAST((FLOOR(EXTRACT(MINUTE FROM ts) / 5)) * 300 AS VARCHAR) || ' seconds' AS INTERVAL)"),
            "{sql}"
        );
        let sql = rewritten("SELECT (CAST('epoch' AS TIMESTAMP) + 1), timestamp 'epoch'");
        assert_eq!(sql.matches("'1970-01-01 00:00:00'").count(), 2, "{sql}");
        let sql = rewritten("SELECT x FROM unnest(ARRAY[1, 2]) x");
        assert!(sql.contains("UNNEST(ARRAY[1, 2]) x (x)"), "{sql}");
        let sql = rewritten("SELECT generate_subscripts(ARRAY[1, 2], 1)");
        assert!(
            sql.contains("unnest(generate_series(1, array_length(ARRAY[1, 2], 1)))"),
            "{sql}"
        );
    }
}
