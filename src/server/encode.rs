//! Statement outputs as pgwire responses; Arrow → Postgres encoding is arrow-pg's.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DECIMAL128_MAX_PRECISION, DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use futures::{StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use super::backends::Running;
use super::cancel::CancelToken;
use crate::database::Output;
use crate::error::Error;

/// Postgres field descriptions of an Arrow schema.
pub fn fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    arrow_pg::datatypes::arrow_schema_to_pg_fields(&wire_schema(schema), format, options)
}

/// A batch as data rows for `fields` (made by [`fields`] from the batch's schema).
pub fn data_rows(
    fields: &Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> {
    match to_wire(batch) {
        Ok(batch) => arrow_pg::datatypes::encode_recordbatch(Arc::clone(fields), batch),
        Err(e) => Box::new(std::iter::once(Err(PgWireError::from(Error::from(e))))),
    }
}

/// The type a column goes out as, when not its own: arrow-pg cannot encode Float16 or
/// Decimal256, and sends Int8 in binary form as a one-byte int2, which clients misread.
fn wire_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Int8 => Some(DataType::Int16),
        DataType::Float16 => Some(DataType::Float32),
        DataType::Decimal256(precision, scale) if *precision <= DECIMAL128_MAX_PRECISION => {
            Some(DataType::Decimal128(*precision, *scale))
        }
        DataType::Decimal256(..) => Some(DataType::Utf8),
        _ => None,
    }
}

fn wire_schema(schema: &Schema) -> Cow<'_, Schema> {
    if schema
        .fields()
        .iter()
        .all(|f| wire_type(f.data_type()).is_none())
    {
        return Cow::Borrowed(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match wire_type(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Cow::Owned(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn to_wire(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let Cow::Owned(schema) = wire_schema(batch.schema_ref()) else {
        return Ok(batch);
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(schema), columns)
}

/// The Postgres type of an Arrow type, for parameter descriptions.
pub fn pg_type(data_type: &datafusion::arrow::datatypes::DataType) -> PgWireResult<Type> {
    arrow_pg::datatypes::into_pg_type(data_type)
}

/// Turns an output into a response. Rows stream lazily; `cancel` cuts the stream short with
/// a "canceling statement" error; `running` is dropped after the last row.
pub fn response(
    output: Output,
    format: &Format,
    options: Arc<FormatOptions>,
    cancel: CancelToken,
    running: Option<Running>,
) -> PgWireResult<Response> {
    match output {
        Output::Rows(batches) => {
            let fields = Arc::new(fields(&batches.schema(), format, Some(options))?);
            let row_fields = Arc::clone(&fields);
            let rows = batches.flat_map(move |batch| {
                let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> =
                    match batch {
                        Ok(batch) => data_rows(&row_fields, batch),
                        Err(e) => Box::new(std::iter::once(Err(PgWireError::from(Error::from(e))))),
                    };
                stream::iter(rows)
            });
            let rows = until_cancelled(rows, cancel, running);
            Ok(Response::Query(QueryResponse::new(fields, rows)))
        }
        Output::Command {
            tag: "INSERT",
            rows,
        } => Ok(Response::Execution(
            Tag::new("INSERT")
                .with_oid(0)
                .with_rows(rows.unwrap_or(0) as usize),
        )),
        Output::Command { tag, rows } => {
            let tag = Tag::new(tag);
            Ok(Response::Execution(match rows {
                Some(rows) => tag.with_rows(rows as usize),
                None => tag,
            }))
        }
        Output::CopyIn(copy) => Ok(Response::CopyIn(CopyResponse::new(
            0,
            copy.columns.len(),
            stream::empty(),
        ))),
        Output::CopyOut { rows, format } => super::copy_out::response(rows, format, options),
    }
}

/// Ends `rows` after its first error, or with a "canceling statement" error on cancel.
/// `running` lives as long as the stream.
fn until_cancelled(
    rows: impl futures::Stream<Item = PgWireResult<DataRow>> + Send + 'static,
    cancel: CancelToken,
    running: Option<Running>,
) -> impl futures::Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let state = Streaming {
        rows: Box::pin(rows),
        cancelled: Box::pin(cancel.clone().cancelled()),
        cancel,
        done: false,
        _running: running,
    };
    stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        tokio::select! {
            biased;
            () = &mut state.cancelled => {
                state.done = true;
                Some((Err(PgWireError::from(state.cancel.error())), state))
            }
            row = state.rows.next() => {
                let row = row?;
                state.done = row.is_err();
                Some((row, state))
            }
        }
    })
}

struct Streaming<R, C> {
    rows: std::pin::Pin<Box<R>>,
    cancelled: std::pin::Pin<Box<C>>,
    cancel: CancelToken,
    done: bool,
    _running: Option<Running>,
}
