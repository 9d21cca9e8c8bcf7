//! Planning runs off the async workers, and a panic in it fails only its statement.
//!
//! Planning is CPU-bound and, for a big statement, takes seconds: DataFusion's optimizer grows
//! with the square of an expression's depth, and of a statement's columns and parameters. On a
//! tokio worker that would stall every connection sharing the worker, and the accept loop.
//! [`off_workers`] runs it on tokio's blocking pool instead, whose threads have the workers'
//! large stack ([`crate::THREAD_STACK_SIZE`]), and turns a panic into that statement's `XX000`.

use std::future::Future;

use crate::error::{Error, Result};

/// Runs `work` to completion on a thread of the blocking pool.
pub async fn off_workers<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || runtime.block_on(work)).await {
        Ok(result) => result,
        Err(error) => Err(Error::Internal(match error.try_into_panic() {
            Ok(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(message, "a statement panicked while it was planned");
                format!("planning panicked: {message}")
            }
            Err(error) => error.to_string(),
        })),
    }
}
