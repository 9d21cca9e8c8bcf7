//! A `COPY FROM STDIN` in progress: decoded batches flow to a background writer.
//!
//! The writer ([`Storage::append`](crate::storage::Storage::append)) commits only when the stream
//! ends with an explicit "done". A decode error, `CopyFail`, or a client that disconnects drops
//! the sender without it, the stream ends in an error, and nothing of the COPY becomes visible.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::database::{CopyIn, Database};
use crate::error::{Error, Result};
use crate::sql::copy::CopyDecoder;
use crate::table::Write;

/// Decoded batches in flight between the connection and the writer; bounds COPY's memory.
const BATCHES_IN_FLIGHT_MAX: usize = 4;
/// A long COPY logs its progress every this many rows.
const PROGRESS_ROWS: u64 = 1_000_000;

enum Message {
    Batch(RecordBatch),
    Done,
}

pub struct CopyInProgress {
    decoder: CopyDecoder,
    sender: mpsc::Sender<Message>,
    writer: JoinHandle<Result<u64>>,
    /// The first error; later input is discarded until CopyDone, as Postgres does.
    error: Option<Error>,
    table: String,
    rows_decoded: u64,
    /// Bytes of one unfinished record the decoder may hold (`copy_pending_bytes_max`).
    pending_bytes_max: usize,
}

impl CopyInProgress {
    /// Starts the writer for `copy`.
    pub fn start(db: &Database, copy: CopyIn) -> Self {
        let decoder = CopyDecoder::new(
            copy.table.clone(),
            copy.columns,
            copy.format,
            db.config().copy_batch_rows,
        );
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT_MAX);
        let batches = stream::unfold(Some(receiver), |receiver| async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(Message::Batch(batch)) => Some((Ok(batch), Some(receiver))),
                Some(Message::Done) => None,
                None => Some((Err(DataFusionError::from(Error::QueryCanceled)), None)),
            }
        });
        let input = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(decoder.schema()),
            batches,
        ));
        let storage = Arc::clone(db.storage());
        let table = copy.table;
        let name = table.name.clone();
        let keyed = db.keyed_tables().get(&table);
        let writer = tokio::spawn(async move {
            match keyed? {
                Some(keyed) => keyed.write(&storage, input, Write::Upsert).await,
                None => storage.append(&table, input).await,
            }
        });
        CopyInProgress {
            decoder,
            sender,
            writer,
            error: None,
            table: name,
            rows_decoded: 0,
            pending_bytes_max: db.config().copy_pending_bytes_max,
        }
    }

    /// Decodes a chunk and hands its complete batches to the writer.
    pub async fn push(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let batches = match self.decoder.push(data) {
            Ok(batches) => batches,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        // A record without its line end (or a CSV quote never closed) must not grow without
        // bound: one client could take the server's memory.
        if self.decoder.pending_bytes() > self.pending_bytes_max {
            self.error = Some(Error::LimitExceeded(format!(
                "COPY {}: a record longer than copy_pending_bytes_max ({} bytes)",
                self.table, self.pending_bytes_max
            )));
            return;
        }
        for batch in batches {
            let before = self.rows_decoded;
            self.rows_decoded += batch.num_rows() as u64;
            if self.rows_decoded / PROGRESS_ROWS > before / PROGRESS_ROWS {
                tracing::info!(table = %self.table, rows = self.rows_decoded, "copy in progress");
            }
            if self.sender.send(Message::Batch(batch)).await.is_err() {
                // The writer stopped early; its error is reported by `finish`.
                self.error = Some(Error::Internal("COPY writer stopped".into()));
                return;
            }
        }
    }

    /// Ends the input: commits and returns the rows written, or reports the first error.
    pub async fn finish(mut self) -> Result<u64> {
        if self.error.is_none() {
            match self.decoder.finish() {
                Ok(Some(batch)) => {
                    let _ = self.sender.send(Message::Batch(batch)).await;
                }
                Ok(None) => {}
                Err(e) => self.error = Some(e),
            }
        }
        let decode_error = self.error.take();
        if decode_error.is_none() {
            let _ = self.sender.send(Message::Done).await;
        }
        drop(self.sender);
        let written = self
            .writer
            .await
            .map_err(|e| Error::Internal(format!("COPY writer panicked: {e}")))?;
        match (decode_error, written) {
            (Some(Error::Internal(_)), Err(writer_error)) => Err(writer_error),
            (Some(e), _) => Err(e),
            (None, written) => written,
        }
    }
}
