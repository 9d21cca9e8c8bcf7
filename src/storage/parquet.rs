//! Parquet files: writing a stream of batches as one file, and scanning a set of files.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::manifest::DataFile;
use crate::error::{Error, Result};

/// Writes every batch of `input` to a new Parquet file at `path`, checking each batch against
/// `schema` (NOT NULL columns included). Returns `None` and writes nothing for an empty input.
/// On error the partial file is left behind uncommitted, hence invisible, and removed at startup.
pub async fn write_file(
    store: Arc<dyn ObjectStore>,
    path: Path,
    schema: SchemaRef,
    mut input: SendableRecordBatchStream,
) -> Result<Option<DataFile>> {
    let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
    let mut rows = 0u64;
    while let Some(batch) = input.next().await {
        let batch = conform(&schema, batch.map_err(|e| input_error(&schema, e))?)?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        let writer = match &mut writer {
            Some(writer) => writer,
            None => writer.insert(new_writer(Arc::clone(&store), &path, &schema)?),
        };
        writer.write(&batch).await.map_err(parquet_error)?;
    }
    let Some(writer) = writer else {
        return Ok(None);
    };
    writer.close().await.map_err(parquet_error)?;
    let size_bytes = store.head(&path).await?.size;
    Ok(Some(DataFile {
        path: path.to_string(),
        size_bytes,
        rows,
        windows_end: None,
        seq: None,
    }))
}

/// A whole file is read in ranges of at most this size, a few at once, so that every request
/// ends well within the store's request timeout however large compaction made the file.
const READ_RANGE_BYTES: u64 = 8 << 20;
const READ_RANGES_IN_FLIGHT: usize = 4;

/// Reads a whole Parquet file (decoded in memory).
pub async fn read_file(store: Arc<dyn ObjectStore>, file: &DataFile) -> Result<Vec<RecordBatch>> {
    let path = Path::from(file.path.as_str());
    let bytes = if file.size_bytes <= READ_RANGE_BYTES {
        store.get(&path).await?.bytes().await?
    } else {
        let ranges = (0..file.size_bytes)
            .step_by(READ_RANGE_BYTES as usize)
            .map(|start| start..(start + READ_RANGE_BYTES).min(file.size_bytes));
        let parts: Vec<bytes::Bytes> = futures::stream::iter(ranges)
            .map(|range| {
                let (store, path) = (Arc::clone(&store), path.clone());
                async move { store.get_range(&path, range).await }
            })
            .buffered(READ_RANGES_IN_FLIGHT)
            .try_collect()
            .await?;
        bytes::Bytes::from(parts.concat())
    };
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(parquet_error)?
        .build()
        .map_err(parquet_error)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)
}

fn new_writer(
    store: Arc<dyn ObjectStore>,
    path: &Path,
    schema: &SchemaRef,
) -> Result<AsyncArrowWriter<BufWriter>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(parquet_error)?,
        ))
        .build();
    let object_writer = BufWriter::new(store, path.clone());
    AsyncArrowWriter::try_new(object_writer, Arc::clone(schema), Some(props)).map_err(parquet_error)
}

/// Re-labels `batch` with the table's schema after checking types and NOT NULL columns.
fn conform(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(Error::Internal(format!(
            "batch has {} columns, table has {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if column.data_type() != field.data_type() {
            return Err(Error::DatatypeMismatch {
                message: format!(
                    "column \"{}\" is of type {} but the value is {}",
                    field.name(),
                    field.data_type(),
                    column.data_type()
                ),
                hint: None,
            });
        }
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(Error::NotNullViolation {
                column: field.name().clone(),
            });
        }
    }
    RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
        .map_err(|e| Error::Internal(e.to_string()))
}

/// DataFusion checks NOT NULL before our sink and names the column by position; name it.
fn input_error(schema: &SchemaRef, error: datafusion::error::DataFusionError) -> Error {
    if let datafusion::error::DataFusionError::Execution(message) = error.find_root()
        && let Some(rest) = message.strip_prefix("Invalid batch column at '")
        && let Some(index) = rest
            .split('\'')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
        && index < schema.fields().len()
    {
        return Error::NotNullViolation {
            column: schema.field(index).name().clone(),
        };
    }
    Error::from(error)
}

fn parquet_error(error: datafusion::parquet::errors::ParquetError) -> Error {
    use datafusion::parquet::errors::ParquetError;
    match error {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(e) => Error::storage(*e),
            // The writer's errors come as io::Errors around the store's.
            Err(other) if crate::error::is_disk_full(other.as_ref()) => Error::disk_full(),
            Err(other) => Error::Storage {
                message: other.to_string(),
                retryable: false,
            },
        },
        other => Error::Internal(format!("parquet: {other}")),
    }
}

/// Where a scan reads: the store's URL in DataFusion, and what opens each file there.
pub struct Files<'a> {
    pub url: &'a ObjectStoreUrl,
    pub reader: Arc<dyn ParquetFileReaderFactory>,
}

/// A plan reading `files` (all of `schema`) with an optional projection, pruning predicate and
/// row limit. Files are spread over `partitions` groups so large tables scan on every core.
pub fn scan(
    at: Files<'_>,
    schema: &SchemaRef,
    files: &[DataFile],
    projection: Option<&Vec<usize>>,
    predicate: Option<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    partitions: usize,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    if files.is_empty() {
        let projected = match projection {
            Some(indices) => Arc::new(schema.project(indices)?),
            None => Arc::clone(schema),
        };
        return Ok(Arc::new(EmptyExec::new(projected)));
    }
    let mut source =
        ParquetSource::new(Arc::clone(schema)).with_parquet_file_reader_factory(at.reader);
    if let Some(predicate) = predicate {
        source = source.with_predicate(predicate);
    }
    let partitions = partitions.clamp(1, files.len());
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
    for (i, file) in files.iter().enumerate() {
        groups[i % partitions].push(PartitionedFile::new(file.path.clone(), file.size_bytes));
    }
    let config = FileScanConfigBuilder::new(at.url.clone(), Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, BinaryArray};
    use datafusion::parquet::arrow::ArrowWriter;
    use object_store::memory::InMemory;
    use rand::{RngCore, SeedableRng};

    #[tokio::test]
    async fn a_file_larger_than_one_range_reads_whole() {
        // Incompressible values, so the file is as large as they are: three ranges.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let values: Vec<Vec<u8>> = (0..20)
            .map(|_| {
                let mut value = vec![0u8; 1 << 20];
                rng.fill_bytes(&mut value);
                value
            })
            .collect();
        let column = BinaryArray::from_iter_values(values.iter());
        let batch = RecordBatch::try_from_iter([("v", Arc::new(column) as _)]).unwrap();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        assert!(file.len() as u64 > 2 * READ_RANGE_BYTES);
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data = DataFile {
            path: "big.parquet".into(),
            size_bytes: file.len() as u64,
            rows: 20,
            windows_end: None,
            seq: None,
        };
        store
            .put(&Path::from("big.parquet"), file.into())
            .await
            .unwrap();
        let read = read_file(store, &data).await.unwrap();
        let read: Vec<Vec<u8>> = read
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<BinaryArray>().unwrap();
                (0..column.len())
                    .map(|i| column.value(i).to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(read, values);
    }
}
