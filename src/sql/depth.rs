//! Keeps expression trees shallow enough to plan, so no statement can overflow a stack.
//!
//! sqlparser builds `a OR b OR …` and `1 + 1 + …` in a loop (its recursion limit counts only
//! nesting), so a few KiB of SQL make a tree thousands of levels deep. Every recursive walk after
//! it — our rewrites, DataFusion's planner and optimizer, `Clone` and `Drop` of its `Expr`, the
//! physical expressions evaluating it — needs a frame per level, and one statement overflowing
//! a thread's stack aborts the whole server. Right after a statement is parsed, [`bound`]
//! - rebuilds long AND/OR chains as balanced trees: both are associative in SQL's three-valued
//!   logic, so the depth drops from n to log n;
//! - turns `x = 1 OR x = 2 OR …` into `x IN (1, 2, …)` and `x <> 1 AND x <> 2 AND …` into
//!   `x NOT IN (…)`, what BI tools and ORMs send: DataFusion needs 20 s to plan a 10 000-term
//!   chain and milliseconds for the IN list, which it also evaluates with a hash set;
//! - measures what remains and refuses a tree deeper than [`MAX_DEPTH`] with Postgres'
//!   `54001 stack depth limit exceeded`, taking the refused tree apart bottom-up so that dropping
//!   it does not recurse either.
//!
//! sqlparser's visitors grow their stack on the heap when it runs low (`recursive`), so these
//! walks hold at any depth.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, UnaryOperator, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};

use super::Statement;
use crate::error::{Error, Result};

/// The deepest expression tree a statement may hold after its chains are flattened. Postgres
/// (2 MB `max_stack_depth`) answers `1+1+…` with 4 000 terms and refuses 5 000; DataFusion's
/// planning time grows with the square of the depth, so the limit is lower here.
pub const MAX_DEPTH: usize = 1_000;

/// The most result columns a SELECT may have, as in Postgres (`MaxTupleAttributeNumber`):
/// planning time grows faster than the column count, so 65 535 `$n` columns took minutes.
pub const MAX_COLUMNS: usize = 1_664;

/// AND/OR chains shorter than this are left as written.
const MIN_CHAIN: usize = 8;

/// Flattens the statement's AND/OR chains and refuses it if an expression stays deeper than
/// [`MAX_DEPTH`].
pub fn bound(statement: &mut Statement) -> Result<()> {
    match statement {
        Statement::Standard(stmt) => bound_node(stmt.as_mut()),
        Statement::CreateView(create) | Statement::ExplainView(create) => {
            bound_node(create.query.as_mut())
        }
        _ => Ok(()),
    }
}

/// [`bound`] for any sqlparser node (a statement, a query, an expression).
pub fn bound_node<N: Visit + VisitMut>(node: &mut N) -> Result<()> {
    let _ = VisitMut::visit(node, &mut Flatten);
    let mut measure = Depth {
        depth: 0,
        too_wide: false,
    };
    if Visit::visit(&*node, &mut measure).is_continue() {
        return Ok(());
    }
    if measure.too_wide {
        return Err(Error::TooManyColumns(format!(
            "target lists can have at most {MAX_COLUMNS} entries"
        )));
    }
    let _ = VisitMut::visit(node, &mut Dismantle);
    Err(Error::StackDepth)
}

struct Flatten;

impl VisitorMut for Flatten {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::BinaryOp {
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } = expr
        else {
            return ControlFlow::Continue(());
        };
        let op = op.clone();
        if chain_length(expr, &op) < MIN_CHAIN {
            return ControlFlow::Continue(());
        }
        let chain = std::mem::replace(expr, null());
        let terms = in_lists(chain_terms(chain, &op), &op);
        *expr = balanced(terms, &op);
        ControlFlow::Continue(())
    }
}

/// Whether `expr` continues a chain of `op`: the operator itself, or it in parentheses.
fn link<'a>(expr: &'a Expr, op: &BinaryOperator) -> Option<(&'a Expr, &'a Expr)> {
    match expr {
        Expr::BinaryOp { left, op: o, right } if o == op => Some((left, right)),
        Expr::Nested(inner) => link(inner, op),
        _ => None,
    }
}

fn chain_length(expr: &Expr, op: &BinaryOperator) -> usize {
    let mut stack = vec![expr];
    let mut terms = 0;
    while let Some(e) = stack.pop() {
        match link(e, op) {
            Some((left, right)) => stack.extend([right, left]),
            None => terms += 1,
        }
    }
    terms
}

/// The operands of a chain of `op`, left to right.
fn chain_terms(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut stack = vec![expr];
    let mut terms = Vec::new();
    while let Some(e) = stack.pop() {
        if link(&e, op).is_none() {
            terms.push(e);
            continue;
        }
        let mut e = e;
        while let Expr::Nested(inner) = e {
            e = *inner;
        }
        if let Expr::BinaryOp { left, right, .. } = e {
            stack.push(*right);
            stack.push(*left);
        }
    }
    terms
}

/// What an IN list may gather: a column compared with a literal of one kind.
#[derive(PartialEq, Eq, Hash)]
enum LiteralKind {
    Number,
    String,
    Parameter,
}

/// `column = literal` (for OR chains) or `column <> literal` (for AND chains), either way round.
fn comparison(term: &Expr, chain: &BinaryOperator) -> Option<(String, LiteralKind)> {
    let wanted = match chain {
        BinaryOperator::Or => BinaryOperator::Eq,
        _ => BinaryOperator::NotEq,
    };
    let Expr::BinaryOp { left, op, right } = term else {
        return None;
    };
    if *op != wanted {
        return None;
    }
    let (column, literal) = match (column(left), literal_kind(right)) {
        (true, Some(kind)) => (left, kind),
        _ => match (column(right), literal_kind(left)) {
            (true, Some(kind)) => (right, kind),
            _ => return None,
        },
    };
    Some((column.to_string(), literal))
}

fn column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

fn literal_kind(expr: &Expr) -> Option<LiteralKind> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(..) => Some(LiteralKind::Number),
            Value::SingleQuotedString(_) => Some(LiteralKind::String),
            Value::Placeholder(_) => Some(LiteralKind::Parameter),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } if matches!(literal_kind(expr), Some(LiteralKind::Number)) => Some(LiteralKind::Number),
        _ => None,
    }
}

/// Gathers the comparisons of one column with literals of one kind into an IN list at the
/// place of the first; everything else keeps its place.
fn in_lists(terms: Vec<Expr>, chain: &BinaryOperator) -> Vec<Expr> {
    let keys: Vec<_> = terms.iter().map(|t| comparison(t, chain)).collect();
    let mut counts: HashMap<&(String, LiteralKind), usize> = HashMap::new();
    for key in keys.iter().flatten() {
        *counts.entry(key).or_default() += 1;
    }
    let mut lists: HashMap<&(String, LiteralKind), usize> = HashMap::new();
    let mut out: Vec<Expr> = Vec::with_capacity(terms.len());
    for (term, key) in terms.into_iter().zip(&keys) {
        let Some(key) = key.as_ref().filter(|k| counts[k] > 1) else {
            out.push(term);
            continue;
        };
        let Expr::BinaryOp { left, right, .. } = term else {
            unreachable!("a comparison is a binary operator")
        };
        let (column, value) = match column(&left) {
            true => (left, *right),
            false => (right, *left),
        };
        match lists.get(key) {
            Some(&at) => {
                if let Expr::InList { list, .. } = &mut out[at] {
                    list.push(value);
                }
            }
            None => {
                lists.insert(key, out.len());
                out.push(Expr::InList {
                    expr: column,
                    list: vec![value],
                    negated: *chain == BinaryOperator::And,
                });
            }
        }
    }
    out
}

/// Joins `terms` with `op` pairwise, level by level: a tree of depth log2(n), in order.
fn balanced(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut rest = terms.into_iter();
        while let Some(left) = rest.next() {
            next.push(match rest.next() {
                Some(right) => Expr::BinaryOp {
                    left: Box::new(left),
                    op: op.clone(),
                    right: Box::new(right),
                },
                None => left,
            });
        }
        terms = next;
    }
    terms.pop().unwrap_or_else(null)
}

fn null() -> Expr {
    Expr::Value(Value::Null.into())
}

struct Depth {
    depth: usize,
    too_wide: bool,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let mut bodies = vec![query.body.as_ref()];
        while let Some(body) = bodies.pop() {
            match body {
                SetExpr::Select(select) if select.projection.len() > MAX_COLUMNS => {
                    self.too_wide = true;
                    return ControlFlow::Break(());
                }
                SetExpr::SetOperation { left, right, .. } => {
                    bodies.extend([left.as_ref(), right.as_ref()])
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        match self.depth > MAX_DEPTH {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Replaces every expression, children first, by NULL: the tree then drops one level at a time.
struct Dismantle;

impl VisitorMut for Dismantle {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        *expr = null();
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::parse;

    /// Runs `test` on a thread with the server's stack size: a debug build's frames are large.
    fn on_server_stack(test: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(crate::THREAD_STACK_SIZE)
            .spawn(test)
            .unwrap()
            .join()
            .unwrap();
    }

    fn one(sql: &str) -> Result<String> {
        let mut statements = parse(sql)?;
        assert_eq!(statements.len(), 1);
        match statements.pop() {
            Some(Statement::Standard(s)) => Ok(s.to_string()),
            other => panic!("not a standard statement: {other:?}"),
        }
    }

    fn chain(n: usize, term: impl Fn(usize) -> String, op: &str) -> String {
        (0..n).map(term).collect::<Vec<_>>().join(op)
    }

    #[test]
    fn equalities_become_an_in_list() {
        let sql = format!(
            "SELECT * FROM t WHERE {}",
            chain(10, |i| format!("x = {i}"), " OR ")
        );
        assert_eq!(
            one(&sql).unwrap(),
            "SELECT * FROM t WHERE x IN (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"
        );
        let sql = format!(
            "SELECT * FROM t WHERE {}",
            chain(8, |i| format!("'{i}' <> t.s"), " AND ")
        );
        assert_eq!(
            one(&sql).unwrap(),
            "SELECT * FROM t WHERE t.s NOT IN ('0', '1', '2', '3', '4', '5', '6', '7')"
        );
    }

    #[test]
    fn other_terms_keep_their_place_and_kinds_are_not_mixed() {
        let sql = "SELECT 1 WHERE a = 1 OR b > 2 OR a = -2 OR (a = 3 OR a = 'x') OR a = 'y' \
                   OR c OR a = 4 OR a = a";
        assert_eq!(
            one(sql).unwrap(),
            "SELECT 1 WHERE a IN (1, -2, 3, 4) OR b > 2 OR a IN ('x', 'y') OR c OR a = a"
        );
        // Short chains are left as written.
        assert_eq!(
            one("SELECT 1 WHERE (a = 1 OR a = 2)").unwrap(),
            "SELECT 1 WHERE (a = 1 OR a = 2)"
        );
    }

    #[test]
    fn long_chains_are_balanced() {
        let sql = format!(
            "SELECT 1 WHERE {}",
            chain(100_000, |i| format!("c{i}"), " AND ")
        );
        let statement = one(&sql).unwrap();
        assert!(statement.starts_with("SELECT 1 WHERE c0 AND c1 AND c2"));
    }

    #[test]
    fn wide_selects_are_refused_with_54011() {
        let columns = |n| format!("SELECT {}", chain(n, |i| format!("${}", i + 1), ", "));
        assert!(one(&columns(MAX_COLUMNS)).is_ok());
        assert_eq!(
            one(&columns(MAX_COLUMNS + 1)).unwrap_err().sqlstate(),
            "54011"
        );
        let union = format!("SELECT 1 UNION ALL ({})", columns(65_535));
        assert_eq!(one(&union).unwrap_err().sqlstate(), "54011");
    }

    #[test]
    fn deep_trees_are_refused_with_54001() {
        on_server_stack(|| {
            let ok = format!("SELECT {}", chain(MAX_DEPTH - 1, |_| "1".into(), "+"));
            assert!(one(&ok).is_ok());
            for n in [MAX_DEPTH + 1, 1_000_000] {
                let deep = format!("SELECT {}", chain(n, |_| "1".into(), "+"));
                let error = one(&deep).unwrap_err();
                assert_eq!(error.sqlstate(), "54001", "{n} terms");
            }
            // Nesting Postgres answers: 200 NOTs, 400 parentheses; much deeper is 54001.
            let nots = format!("SELECT {}true", "NOT ".repeat(200));
            assert!(one(&nots).is_ok());
            let parens = |n| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
            assert!(one(&parens(400)).is_ok());
            assert_eq!(one(&parens(5_000)).unwrap_err().sqlstate(), "54001");
            let view = format!(
                "CREATE MATERIALIZED VIEW v AS SELECT * FROM t WHERE v < {}",
                chain(5_000, |_| "1".into(), "+")
            );
            assert_eq!(parse(&view).unwrap_err().sqlstate(), "54001");
        });
    }
}
