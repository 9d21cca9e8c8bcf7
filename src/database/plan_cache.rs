//! Plans of the queries clients send again and again, made once rather than on every run.
//!
//! A dashboard sends the same few queries over its views on every refresh, from every viewer.
//! Turning one into a plan (SQL to logical plan, analyzer, optimizer) cost more than running it
//! over a view of a few thousand rows. So a query's plan is kept, keyed by its syntax tree,
//! when planning it again could not give another answer:
//! - it is a query (`SELECT`, `VALUES`, `WITH`), and reads nothing but materialized views, or
//!   no relation at all. A view's provider holds only its definition; its files and live rows
//!   are taken when the physical plan is made, on every run. Catalog tables and stored tables
//!   are snapshots taken while planning, so queries of them are planned every time;
//! - the manifest is the one it was planned under: any commit (DDL, a view's or a table's new
//!   files, grants) plans the next run again;
//! - it is kept optimized only when it has no parameters and calls no function that is not
//!   immutable, since the optimizer folds `now()`, `current_date` and parameters' values into
//!   the plan. Otherwise the logical plan is kept and optimized on every run.
//!
//! Privileges are checked on every run, against the role running it. A statement bound to its
//! caller (`current_user` …) is another syntax tree, so another entry. The cache holds at most
//! [`ENTRIES_MAX`] plans of at most [`SIZE_MAX`] nodes each, and empties when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use sqlparser::ast::Statement as SqlStatement;

use crate::catalog::provider::ViewTable;
use crate::error::Result;
use crate::storage::Manifest;

/// Most plans kept.
const ENTRIES_MAX: usize = 256;
/// Largest plan kept, in plan nodes plus expression nodes: small enough that its physical plan
/// is made on the connection's own task, without a trip to the planning threads.
const SIZE_MAX: usize = 512;

/// A kept plan.
#[derive(Debug)]
pub struct Cached {
    /// The manifest it was planned under; a weak reference keeps no old manifest alive, and
    /// its allocation (not its contents) is kept, so no new manifest can take its address.
    manifest: Weak<Manifest>,
    /// The plan as DataFusion's SQL planner made it.
    pub plan: LogicalPlan,
    /// The plan as the optimizer leaves it, when that does not depend on the run.
    pub optimized: Option<LogicalPlan>,
}

/// The kept plans, shared by every connection.
#[derive(Debug, Default)]
pub struct PlanCache {
    entries: Mutex<HashMap<SqlStatement, Arc<Cached>>>,
}

impl PlanCache {
    /// The plan kept for `stmt` under `manifest`, if any.
    pub fn get(&self, stmt: &SqlStatement, manifest: &Arc<Manifest>) -> Option<Arc<Cached>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let cached = entries.get(stmt)?;
        if cached.manifest.as_ptr() != Arc::as_ptr(manifest) {
            return None;
        }
        Some(Arc::clone(cached))
    }

    /// Keeps `plan` for `stmt` if it may be kept, optimized by `optimize` when its run cannot
    /// change that; what was kept, if anything.
    pub fn keep(
        &self,
        stmt: &SqlStatement,
        manifest: &Arc<Manifest>,
        plan: &LogicalPlan,
        optimize: impl FnOnce(&LogicalPlan) -> Result<LogicalPlan>,
    ) -> Result<Option<Arc<Cached>>> {
        if !matches!(stmt, SqlStatement::Query(_)) || !reads_only_views(plan) {
            return Ok(None);
        }
        if size(plan) > SIZE_MAX {
            return Ok(None);
        }
        let optimized = match fixed(plan) {
            true => Some(optimize(plan)?),
            false => None,
        };
        let cached = Arc::new(Cached {
            manifest: Arc::downgrade(manifest),
            plan: plan.clone(),
            optimized,
        });
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(stmt.clone(), Arc::clone(&cached));
        Ok(Some(cached))
    }
}

/// Whether every relation `plan` reads (in subqueries too) is a materialized view.
fn reads_only_views(plan: &LogicalPlan) -> bool {
    let mut only_views = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let provider = datafusion::datasource::source_as_provider(&scan.source);
            only_views = provider.is_ok_and(|p| p.as_ref().downcast_ref::<ViewTable>().is_some());
        }
        Ok(match only_views {
            true => TreeNodeRecursion::Continue,
            false => TreeNodeRecursion::Stop,
        })
    });
    only_views
}

/// Whether `plan` has no parameters and calls only immutable functions, so its optimized plan
/// does not depend on when or with what it runs.
fn fixed(plan: &LogicalPlan) -> bool {
    let mut fixed = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                fixed &= match e {
                    Expr::Placeholder(_) | Expr::ScalarVariable(..) => false,
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    _ => true,
                };
                Ok(match fixed {
                    true => TreeNodeRecursion::Continue,
                    false => TreeNodeRecursion::Stop,
                })
            })
        })
    });
    fixed
}

/// Plan nodes plus expression nodes of `plan`, in subqueries too.
fn size(plan: &LogicalPlan) -> usize {
    let mut size = 0usize;
    let _ = plan.apply_with_subqueries(|node| {
        size += 1;
        node.apply_expressions(|expr| {
            expr.apply(|_| {
                size += 1;
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(match size > SIZE_MAX {
            true => TreeNodeRecursion::Stop,
            false => TreeNodeRecursion::Continue,
        })
    });
    size
}
