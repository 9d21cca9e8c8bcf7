//! Our corrections to datafusion-pg-catalog's `pg_catalog`, layered over its schema.
//!
//! It knows tables and views only, so materialized views came out as `relkind = 'v'`: psql's
//! `\dm`, pgjdbc's `MATERIALIZED VIEW` table type, SQLAlchemy's and DBeaver's materialized-view
//! lists all missed them. [`PgCatalog`] hands out every table unchanged except `pg_class`,
//! whose rows for our materialized views get `relkind = 'm'`, and which gains the columns
//! psql's `\d+` reads and it lacks (`reloptions`, `relacl`: always NULL here).
//! `pg_index` and `pg_constraint` are empty here (no indexes, keys or checks), but with their
//! key columns typed as arrays, as SQLAlchemy's reflection needs for `unnest(ix.indkey)` and
//! `attnum = ANY(ix.indkey)` to plan (datafusion-pg-catalog types them as text).
//! `pg_get_viewdef(oid)` answers with a materialized view's query; the oids are the ones the
//! last `pg_class` scan handed out, which is where every client learns them. `pg_settings`
//! lists the settings SET and SHOW know (datafusion-pg-catalog's has one row); `pg_authid` and
//! `pg_roles` list the roles there are (see [`crate::pg::roles`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListBuilder, RecordBatch, StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;

use crate::catalog::SCHEMA_NAME;
use crate::catalog::roles::Roles;
use crate::catalog::snapshot::SnapshotTable;
use crate::pg::roles::RolesTable;
use crate::storage::{Manifest, Storage};

/// The oids `pg_class` gave our materialized views, by oid.
type ViewOids = Arc<Mutex<HashMap<i32, String>>>;

/// datafusion-pg-catalog's `pg_catalog` with `pg_class` corrected.
#[derive(Debug)]
pub struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    storage: Arc<Storage>,
    roles: Arc<Roles>,
    view_oids: ViewOids,
    /// Tables the server adds (`pg_stat_activity`).
    added: std::sync::RwLock<HashMap<String, Arc<dyn TableProvider>>>,
}

impl PgCatalog {
    /// Layers the corrections over the `pg_catalog` schema of `ctx`'s catalog `database`.
    pub fn install(
        ctx: &SessionContext,
        database: &str,
        storage: Arc<Storage>,
        roles: Arc<Roles>,
    ) -> Result<()> {
        let catalog = ctx
            .catalog(database)
            .ok_or_else(|| DataFusionError::Internal(format!("catalog {database} missing")))?;
        let inner = catalog
            .schema("pg_catalog")
            .ok_or_else(|| DataFusionError::Internal("pg_catalog missing".into()))?;
        let view_oids = ViewOids::default();
        ctx.register_udf(ScalarUDF::new_from_impl(ViewDefinition {
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Stable,
            ),
            storage: Arc::clone(&storage),
            view_oids: Arc::clone(&view_oids),
        }));
        let corrected = PgCatalog {
            inner,
            storage,
            roles,
            view_oids,
            added: Default::default(),
        };
        catalog.register_schema("pg_catalog", Arc::new(corrected))?;
        Ok(())
    }
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.added().keys().cloned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(added) = self.added().get(name) {
            return Ok(Some(Arc::clone(added)));
        }
        let table = self.inner.table(name).await?;
        if let Some(arrays) = ARRAY_COLUMNS
            .iter()
            .find(|(table, _)| *table == name)
            .map(|(_, columns)| columns)
        {
            return Ok(table.map(|t| {
                Arc::new(EmptyTable::new(with_arrays(&t.schema(), arrays)))
                    as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_settings" {
            return table.map(|t| settings_table(&t.schema())).transpose();
        }
        if name == "pg_roles" || name == "pg_authid" {
            return Ok(table.map(|roles| {
                Arc::new(SnapshotTable(RolesTable {
                    schema: roles.schema(),
                    roles: Arc::clone(&self.roles),
                    masked: name == "pg_roles",
                })) as Arc<dyn TableProvider>
            }));
        }
        if name != "pg_class" {
            return Ok(table);
        }
        let namespaces = self.inner.table("pg_namespace").await?;
        Ok(table.zip(namespaces).map(|(classes, namespaces)| {
            Arc::new(PgClass {
                classes,
                namespaces,
                storage: Arc::clone(&self.storage),
                view_oids: Arc::clone(&self.view_oids),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.added().contains_key(name) || self.inner.table_exist(name)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut added = self.added.write().unwrap_or_else(|e| e.into_inner());
        Ok(added.insert(name, table))
    }
}

impl PgCatalog {
    fn added(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn TableProvider>>> {
        self.added.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Catalog tables that are always empty here, and their columns that Postgres types as arrays
/// of int2 (`int2vector`, keys) or of oids.
const ARRAY_COLUMNS: [(&str, &[(&str, DataType)]); 3] = [
    (
        "pg_index",
        &[
            ("indkey", DataType::Int16),
            ("indoption", DataType::Int16),
            ("indcollation", DataType::Int32),
            ("indclass", DataType::Int32),
        ],
    ),
    (
        "pg_constraint",
        &[
            ("conkey", DataType::Int16),
            ("confkey", DataType::Int16),
            ("confdelsetcols", DataType::Int16),
            ("conpfeqop", DataType::Int32),
            ("conppeqop", DataType::Int32),
            ("conffeqop", DataType::Int32),
            ("conexclop", DataType::Int32),
        ],
    ),
    // Row-level security policies (psql's \dp reads `oid = ANY(polroles)`).
    ("pg_policy", &[("polroles", DataType::Int32)]),
];

/// Whether `table` is a `pg_catalog` table that never has rows here.
pub fn always_empty(table: &str) -> bool {
    ARRAY_COLUMNS.iter().any(|(name, _)| *name == table)
}

/// `pg_settings` listing every setting SET and SHOW know, with its default (pgjdbc reads
/// `max_index_keys` here before it lists foreign keys).
fn settings_table(schema: &SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let settings: Vec<_> = crate::pg::settings::defaults().collect();
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let values: Option<StringArray> = match field.name().as_str() {
                "name" => Some(settings.iter().map(|(name, _, _)| Some(*name)).collect()),
                "setting" | "boot_val" | "reset_val" => Some(
                    settings
                        .iter()
                        .map(|(_, value, _)| Some(value.as_str()))
                        .collect(),
                ),
                "context" => Some(
                    settings
                        .iter()
                        .map(|(_, _, fixed)| Some(if *fixed { "internal" } else { "user" }))
                        .collect(),
                ),
                "vartype" => Some(settings.iter().map(|_| Some("string")).collect()),
                "source" => Some(settings.iter().map(|_| Some("default")).collect()),
                _ => None,
            };
            match values {
                Some(values) => cast(&values, field.data_type()),
                None => Ok(new_null_array(field.data_type(), settings.len())),
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(Arc::clone(schema), columns)?;
    Ok(Arc::new(MemTable::try_new(
        Arc::clone(schema),
        vec![vec![batch]],
    )?))
}

fn with_arrays(schema: &SchemaRef, arrays: &[(&str, DataType)]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(
            |field| match arrays.iter().find(|(name, _)| name == field.name()) {
                Some((_, item)) => Field::new(
                    field.name(),
                    DataType::List(Arc::new(Field::new_list_field(item.clone(), true))),
                    true,
                ),
                None => field.as_ref().clone(),
            },
        )
        .collect();
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
struct PgClass {
    classes: Arc<dyn TableProvider>,
    namespaces: Arc<dyn TableProvider>,
    storage: Arc<Storage>,
    view_oids: ViewOids,
}

async fn rows(table: &dyn TableProvider, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} missing")))
}

/// The oid of our schema in `pg_namespace`.
fn public_oid(namespaces: &[RecordBatch]) -> Result<Option<i32>> {
    for batch in namespaces {
        let names: &StringArray = column(batch, "nspname")?;
        let oids = batch
            .column_by_name("oid")
            .ok_or_else(|| DataFusionError::Internal("pg_namespace.oid missing".into()))?
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| DataFusionError::Internal("pg_namespace.oid is not int4".into()))?;
        if let Some(i) = (0..batch.num_rows()).find(|&i| names.value(i) == SCHEMA_NAME) {
            return Ok(Some(oids.value(i)));
        }
    }
    Ok(None)
}

fn mark_materialized(
    batch: &RecordBatch,
    public: i32,
    views: &HashSet<String>,
    view_oids: &mut HashMap<i32, String>,
) -> Result<RecordBatch> {
    let oids = batch
        .column_by_name("oid")
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| DataFusionError::Internal("pg_class.oid missing".into()))?;
    let names: &StringArray = column(batch, "relname")?;
    let kinds: &StringArray = column(batch, "relkind")?;
    let namespace = batch
        .column_by_name("relnamespace")
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| DataFusionError::Internal("pg_class.relnamespace missing".into()))?;
    let corrected: StringArray = (0..batch.num_rows())
        .map(|i| {
            let materialized =
                !names.is_null(i) && namespace.value(i) == public && views.contains(names.value(i));
            match materialized {
                true => {
                    view_oids.insert(oids.value(i), names.value(i).to_string());
                    Some("m")
                }
                false => (!kinds.is_null(i)).then(|| kinds.value(i)),
            }
        })
        .collect();
    let index = batch.schema().index_of("relkind")?;
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(corrected);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `relacl` of our relations: their grants as `aclitem` text (psql's `\dp`).
fn with_privileges(batch: &RecordBatch, public: i32, manifest: &Manifest) -> Result<RecordBatch> {
    let names: &StringArray = column(batch, "relname")?;
    let namespace = batch
        .column_by_name("relnamespace")
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| DataFusionError::Internal("pg_class.relnamespace missing".into()))?;
    let mut acl = ListBuilder::new(StringBuilder::new());
    for i in 0..batch.num_rows() {
        let items = (!names.is_null(i) && namespace.value(i) == public)
            .then(|| manifest.privileges.get(names.value(i))?.aclitems())
            .flatten();
        match items {
            Some(items) => acl.append_value(items.into_iter().map(Some)),
            None => acl.append_null(),
        }
    }
    let index = batch.schema().index_of("relacl")?;
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(acl.finish());
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Columns Postgres' `pg_class` has and datafusion-pg-catalog's lacks, NULL here but
/// `relacl` of relations with grants.
const MISSING: [&str; 2] = ["reloptions", "relacl"];

fn text_array() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn with_missing_columns(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in MISSING {
        if schema.index_of(name).is_err() {
            fields.push(Field::new(name, text_array(), true));
        }
    }
    Arc::new(Schema::new(fields))
}

fn add_missing_columns(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    for field in schema.fields().iter().skip(columns.len()) {
        columns.push(new_null_array(field.data_type(), batch.num_rows()));
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        with_missing_columns(&self.classes.schema())
    }

    fn table_type(&self) -> TableType {
        self.classes.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let manifest = self.storage.manifest();
        let views: HashSet<String> = manifest.views.keys().cloned().collect();
        let classes = rows(self.classes.as_ref(), state).await?;
        let public = public_oid(&rows(self.namespaces.as_ref(), state).await?)?;
        let schema = self.schema();
        let mut view_oids = HashMap::new();
        let classes = classes
            .iter()
            .map(|batch| {
                let Some(public) = public else {
                    return add_missing_columns(batch, &schema);
                };
                let batch = mark_materialized(batch, public, &views, &mut view_oids)?;
                let batch = add_missing_columns(&batch, &schema)?;
                with_privileges(&batch, public, &manifest)
            })
            .collect::<Result<Vec<_>>>()?;
        *self.view_oids.lock().unwrap_or_else(|e| e.into_inner()) = view_oids;
        Ok(MemorySourceConfig::try_new_exec(
            &[classes],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// `pg_get_viewdef(oid [, pretty])`: the query of a materialized view, NULL for anything else.
#[derive(Debug)]
struct ViewDefinition {
    signature: Signature,
    storage: Arc<Storage>,
    view_oids: ViewOids,
}

impl PartialEq for ViewDefinition {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.view_oids, &other.view_oids)
    }
}

impl Eq for ViewDefinition {}

impl std::hash::Hash for ViewDefinition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.view_oids).hash(state);
    }
}

impl ScalarUDFImpl for ViewDefinition {
    fn name(&self) -> &str {
        "pg_get_viewdef"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = args.args[0].to_array(args.number_rows)?;
        let oids = cast(&oids, &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let names = self
            .view_oids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let manifest = self.storage.manifest();
        let definitions: StringArray = oids
            .iter()
            .map(|oid| {
                let name = names.get(&oid?)?;
                Some(format!(" {};", manifest.views.get(name)?.def.query))
            })
            .collect();
        let definitions: ArrayRef = Arc::new(definitions);
        super::functions::scalar_if_scalar(&args.args, definitions)
    }
}
