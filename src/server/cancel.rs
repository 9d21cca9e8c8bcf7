//! Query cancellation: Postgres `CancelRequest`s, routed to the connection they name.
//!
//! A client cancels by opening a second connection that carries the pid and secret key the
//! server gave it at startup. pgwire's own cancel hook only interrupts the planning phase, not
//! the streaming of rows that follows, so every connection here has a [`CancelSignal`] that the
//! statement, its row stream and COPY all watch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::watch;

/// The cancel state of one connection: a counter bumped by every cancel request.
#[derive(Debug)]
pub struct CancelSignal {
    cancels: watch::Sender<u64>,
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
        }
    }

    /// A token for the statement about to run: it fires on the next cancel request only.
    pub fn token(&self) -> CancelToken {
        let mut receiver = self.cancels.subscribe();
        receiver.mark_unchanged();
        CancelToken { receiver }
    }

    fn cancel(&self) {
        self.cancels.send_modify(|n| *n += 1);
    }
}

/// Resolves when the statement it was made for is cancelled.
#[derive(Debug, Clone)]
pub struct CancelToken {
    receiver: watch::Receiver<u64>,
}

impl CancelToken {
    /// Waits for a cancel request; never returns if none comes.
    pub async fn cancelled(mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Every live connection, by the pid and secret key it was given.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    connections: Mutex<HashMap<(i32, Bytes), Arc<CancelSignal>>>,
}

impl CancelRegistry {
    pub fn register(&self, pid: i32, secret: Bytes, signal: Arc<CancelSignal>) {
        self.lock().insert((pid, secret), signal);
    }

    pub fn unregister(&self, pid: i32, secret: &Bytes) {
        self.lock().remove(&(pid, secret.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, Bytes), Arc<CancelSignal>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let signal = self.lock().get(&key).cloned();
        match signal {
            Some(signal) => {
                tracing::info!(pid = request.pid, "cancel request");
                signal.cancel();
            }
            None => tracing::debug!(
                pid = request.pid,
                "cancel request for an unknown connection"
            ),
        }
    }
}
