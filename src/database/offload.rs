//! Planning runs off the async workers, and a panic in it fails only its statement.
//!
//! Planning is CPU-bound and, for a big statement, takes seconds: DataFusion's optimizer grows
//! with the square of an expression's depth, and of a statement's columns and parameters. On a
//! tokio worker that would stall every connection sharing the worker, and the accept loop.
//! [`off_workers`] runs it on tokio's blocking pool instead, whose threads have the workers'
//! large stack ([`crate::THREAD_STACK_SIZE`]), and turns a panic into that statement's `XX000`.
//!
//! A statement given up while it is planned (cancelled, timed out, its client gone) drops the
//! future waiting for it, but a thread cannot be stopped from outside: the planning would run
//! on to its end, burning a core. So the drop raises a flag the planning thread sees, and
//! DataFusion's analyzer and optimizer rules are wrapped ([`Interruptible`]) to check it before
//! each rule runs: the planning ends within one rule's step.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::error::{Error, Result};

thread_local! {
    /// Raised once the statement this thread plans was given up.
    static GIVEN_UP: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Raises its flag when dropped: when the statement's future is dropped, or has finished.
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An error if the statement planned on this thread was given up.
fn check_given_up() -> std::result::Result<(), DataFusionError> {
    let given_up = GIVEN_UP.with(|g| {
        g.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    });
    match given_up {
        true => Err(DataFusionError::Execution(
            "the statement was given up while it was planned".into(),
        )),
        false => Ok(()),
    }
}

/// Runs `work` to completion on a thread of the blocking pool, or until this future is
/// dropped and the work's next rule sees it.
pub async fn off_workers<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let given_up = Arc::new(AtomicBool::new(false));
    let _raise = RaiseOnDrop(Arc::clone(&given_up));
    let planning = move || {
        GIVEN_UP.with(|g| *g.borrow_mut() = Some(given_up));
        let result = runtime.block_on(work);
        GIVEN_UP.with(|g| *g.borrow_mut() = None);
        result
    };
    match tokio::task::spawn_blocking(planning).await {
        Ok(result) => result,
        Err(error) => Err(match error.try_into_panic() {
            Ok(panic) => panicked(panic.as_ref()),
            Err(error) => Error::Internal(error.to_string()),
        }),
    }
}

/// The error of a statement whose planning panicked, logged.
pub fn panicked(panic: &(dyn std::any::Any + Send)) -> Error {
    let message = crate::error::panic_message(panic);
    tracing::error!(message, "a statement panicked while it was planned");
    Error::Internal(format!("planning panicked: {message}"))
}

/// A DataFusion rule that first checks whether its statement was given up.
#[derive(Debug)]
pub struct Interruptible<R: ?Sized>(pub Arc<R>);

impl OptimizerRule for Interruptible<dyn OptimizerRule + Send + Sync> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.0.apply_order()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> std::result::Result<Transformed<LogicalPlan>, DataFusionError> {
        check_given_up()?;
        self.0.rewrite(plan, config)
    }
}

impl AnalyzerRule for Interruptible<dyn AnalyzerRule + Send + Sync> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn analyze(
        &self,
        plan: LogicalPlan,
        config: &ConfigOptions,
    ) -> std::result::Result<LogicalPlan, DataFusionError> {
        check_given_up()?;
        self.0.analyze(plan, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_dropped_statement_stops_at_its_next_rule() {
        let (started, started_rx) = tokio::sync::oneshot::channel();
        let (ended, mut ended_rx) = tokio::sync::oneshot::channel();
        let planning = off_workers(async move {
            let _ = started.send(());
            // A long plan: rule after rule, until told the statement was given up.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if check_given_up().is_err() {
                    let _ = ended.send(());
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(())
        });
        let waiting = tokio::spawn(planning);
        started_rx.await.unwrap();
        waiting.abort();
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(2), &mut ended_rx).await;
        assert!(matches!(stopped, Ok(Ok(()))), "the planning ran on");
        // A statement that was not given up never sees the flag.
        assert!(
            off_workers(async { Ok(check_given_up().is_ok()) })
                .await
                .unwrap()
        );
    }
}
