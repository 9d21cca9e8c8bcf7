//! Statement outputs as pgwire responses. Text-format columns are spelled as Postgres spells
//! them ([`crate::pg::text`]); binary-format columns are encoded by arrow-pg.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::BytesMut;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DataType, Decimal128Type, Field, Schema,
};
use datafusion::arrow::error::ArrowError;
use futures::{StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{
    CopyResponse, DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};

use super::backends::Running;
use super::cancel::CancelToken;
use super::numeric::BinaryNumeric;
use crate::database::Output;
use crate::error::Error;
use crate::pg::text::{self, TextStyle};

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
    match Rows::try_new(Arc::clone(fields), batch) {
        Ok(rows) => Box::new(rows),
        Err(e) => Box::new(std::iter::once(Err(PgWireError::from(Error::from(e))))),
    }
}

/// The rows of one batch, its text-format columns rendered up front.
struct Rows {
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
    /// Per column: its values as Postgres text, or `None` for a binary-format column.
    texts: Vec<Option<Vec<Option<String>>>>,
    encoder: DataRowEncoder,
    row: usize,
}

impl Rows {
    fn try_new(fields: Arc<Vec<FieldInfo>>, batch: RecordBatch) -> Result<Self, ArrowError> {
        let batch = to_wire(batch)?;
        let texts = batch
            .columns()
            .iter()
            .zip(fields.iter())
            .map(|(column, field)| match field.format() {
                FieldFormat::Text => {
                    let style = TextStyle::new(field.format_options());
                    text::render(column.as_ref(), &style).map(Some)
                }
                FieldFormat::Binary => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rows {
            encoder: DataRowEncoder::new(Arc::clone(&fields)),
            fields,
            batch,
            texts,
            row: 0,
        })
    }

    fn encode_row(&mut self) -> PgWireResult<DataRow> {
        let schema = self.batch.schema();
        for (column, field) in self.fields.iter().enumerate() {
            match &self.texts[column] {
                Some(texts) => self.encoder.encode_field_with_type_and_format(
                    &Rendered(texts[self.row].as_deref()),
                    field.datatype(),
                    FieldFormat::Text,
                    field.format_options(),
                )?,
                None if is_empty_list(self.batch.column(column).as_ref(), self.row) => {
                    self.encoder.encode_field_with_type_and_format(
                        &EmptyArray,
                        field.datatype(),
                        FieldFormat::Binary,
                        field.format_options(),
                    )?
                }
                None if let Some(numeric) = binary_numeric(self.batch.column(column), self.row) => {
                    self.encoder.encode_field_with_type_and_format(
                        &numeric,
                        field.datatype(),
                        FieldFormat::Binary,
                        field.format_options(),
                    )?
                }
                None => arrow_pg::encoder::encode_value(
                    &mut self.encoder,
                    self.batch.column(column),
                    self.row,
                    schema.field(column),
                    field,
                )?,
            }
        }
        Ok(self.encoder.take_row())
    }
}

impl Iterator for Rows {
    type Item = PgWireResult<DataRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.row == self.batch.num_rows() {
            return None;
        }
        let row = self.encode_row();
        self.row += 1;
        Some(row)
    }
}

/// A value already in Postgres' text form, written as it is.
#[derive(Debug)]
struct Rendered<'a>(Option<&'a str>);

impl ToSqlText for Rendered<'_> {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                IsNull::No
            }
            None => IsNull::Yes,
        })
    }
}

/// Only ever asked for text: [`Rows`] sends binary columns through arrow-pg.
impl ToSql for Rendered<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql_text(ty, out, &FormatOptions::default())
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// `column`'s value at `row` when it is a decimal, encoded as Postgres does.
fn binary_numeric(column: &dyn Array, row: usize) -> Option<BinaryNumeric> {
    // A negative scale (never made by SQL) goes through arrow-pg.
    let DataType::Decimal128(_, scale @ 0..) = column.data_type() else {
        return None;
    };
    let decimals = column.as_primitive::<Decimal128Type>();
    Some(BinaryNumeric {
        value: decimals.is_valid(row).then(|| decimals.value(row)),
        scale: *scale,
    })
}

/// Whether `column` holds an empty array at `row`.
fn is_empty_list(column: &dyn Array, row: usize) -> bool {
    match column.data_type() {
        DataType::List(_) => column.as_list::<i32>().value_length(row) == 0 && column.is_valid(row),
        DataType::LargeList(_) => {
            column.as_list::<i64>().value_length(row) == 0 && column.is_valid(row)
        }
        _ => false,
    }
}

/// An empty array in binary form as Postgres sends it: no dimensions (postgres-types writes
/// one dimension of length 0, which Postgres' own clients read as a different value).
#[derive(Debug)]
struct EmptyArray;

impl ToSql for EmptyArray {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let element = match ty.kind() {
            postgres_types::Kind::Array(element) => element.oid(),
            _ => 0,
        };
        out.extend_from_slice(&0i32.to_be_bytes()); // dimensions
        out.extend_from_slice(&0i32.to_be_bytes()); // no NULLs
        out.extend_from_slice(&element.to_be_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// Only sent in binary form.
impl ToSqlText for EmptyArray {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        _options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

/// The type a column goes out as, when not its own: arrow-pg cannot encode Float16 or
/// Decimal256, and sends Int8 in binary form as a one-byte int2, which clients misread; an
/// untyped NULL is `text`, as Postgres resolves `SELECT NULL`; DataFusion's counters and
/// positions (`row_number()`, `array_length`) are UInt64, which Postgres has as bigint, not
/// numeric.
fn wire_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Null => Some(DataType::Utf8),
        DataType::UInt64 => Some(DataType::Int64),
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
        // The session sent the warning.
        Output::Warned { output, .. } => response(*output, format, options, cancel, running),
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
