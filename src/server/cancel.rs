//! Query cancellation: Postgres `CancelRequest`s, routed to the connection they name.
//!
//! A client cancels by opening a second connection that carries the pid and secret key the
//! server gave it at startup ([`super::backends`] finds the connection). pgwire's own cancel hook
//! only interrupts the planning phase, not the streaming of rows that follows, so every
//! connection here has a [`CancelSignal`] that the statement, its row stream and COPY all watch.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Error;

/// The cancel state of one connection: a counter bumped by every cancel request, and whether
/// `pg_terminate_backend` asked the connection to close.
#[derive(Debug)]
pub struct CancelSignal {
    cancels: watch::Sender<u64>,
    terminate: watch::Sender<bool>,
}

impl Default for CancelSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelSignal {
    pub fn new() -> Self {
        CancelSignal {
            cancels: watch::Sender::new(0),
            terminate: watch::Sender::new(false),
        }
    }

    /// A token for the statement about to run: it fires on the next cancel request only.
    pub fn token(&self) -> CancelToken {
        let mut receiver = self.cancels.subscribe();
        receiver.mark_unchanged();
        CancelToken {
            receiver,
            terminate: self.terminate.subscribe(),
            deadline: None,
        }
    }

    pub fn cancel(&self) {
        self.cancels.send_modify(|n| *n += 1);
    }

    /// Stops the running statement and marks the connection to be closed.
    pub fn terminate(&self) {
        self.terminate.send_replace(true);
        self.cancel();
    }

    /// Resolves once the connection is to be closed.
    pub async fn terminated(&self) {
        let _ = self.terminate.subscribe().wait_for(|t| *t).await;
    }
}

/// Resolves when the statement it was made for is cancelled, or its `statement_timeout` passes.
#[derive(Debug, Clone)]
pub struct CancelToken {
    receiver: watch::Receiver<u64>,
    terminate: watch::Receiver<bool>,
    deadline: Option<Instant>,
}

impl CancelToken {
    /// The same token, also cancelled once `timeout` (the statement's `statement_timeout`)
    /// has passed from now.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.deadline = timeout.map(|t| Instant::now() + t);
        self
    }

    /// Waits for a cancel request or the deadline; never returns if neither comes.
    pub async fn cancelled(mut self) {
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.receiver.changed() => if changed.is_err() {
                std::future::pending::<()>().await;
            },
            () = deadline => {}
        }
    }

    /// What a cancelled statement answers: FATAL 57P01 when the connection is being
    /// terminated (the error closes it), 57014 for a cancel request or the statement timeout.
    pub fn error(&self) -> Error {
        if *self.terminate.borrow() {
            return Error::Terminated;
        }
        match self.deadline.is_some_and(|d| Instant::now() >= d)
            && !self.receiver.has_changed().unwrap_or(true)
        {
            true => Error::StatementTimeout,
            false => Error::QueryCanceled,
        }
    }
}
