//! `information_schema` as Postgres answers it, in place of DataFusion's own.
//!
//! Tools read it to fill their pickers (Grafana's table and column lists, Superset's and
//! Metabase's column types), and they match on Postgres' words: `data_type` is `bigint` or
//! `timestamp with time zone`, never an Arrow type, and `udt_name` is `int8`/`timestamptz`.
//! Materialized views are listed with `table_type = 'VIEW'`, where Postgres leaves them out
//! altogether — tools that only know tables and views (Grafana) then offer them too. The key
//! views (`table_constraints`, `key_column_usage`, `referential_constraints`) are empty: there
//! are no keys, and Metabase's column sync joins them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;

use crate::catalog::roles::{PUBLIC, Principal, Privilege};
use crate::catalog::snapshot::{Snapshot, SnapshotTable};
use crate::catalog::types::pg_type_names;
use crate::catalog::{DATABASE_NAME, SCHEMA_NAME as SCHEMA_NAME_PUBLIC};
use crate::storage::{Manifest, Storage};

pub const SCHEMA_NAME: &str = "information_schema";

#[derive(Debug, Clone, Copy)]
enum View {
    Tables,
    Columns,
    Schemata,
    Views,
    /// No primary, unique, foreign keys or checks exist: the key views are empty.
    TableConstraints,
    KeyColumnUsage,
    ReferentialConstraints,
    /// Grants on relations: `table_privileges` shows those to the caller or PUBLIC,
    /// `role_table_grants` those to or by the caller (a superuser sees all).
    TablePrivileges,
    RoleTableGrants,
}

const VIEWS: [(&str, View); 9] = [
    ("tables", View::Tables),
    ("columns", View::Columns),
    ("schemata", View::Schemata),
    ("views", View::Views),
    ("table_constraints", View::TableConstraints),
    ("key_column_usage", View::KeyColumnUsage),
    ("referential_constraints", View::ReferentialConstraints),
    ("table_privileges", View::TablePrivileges),
    ("role_table_grants", View::RoleTableGrants),
];

/// The `information_schema` of one catalog (database).
#[derive(Debug)]
pub struct InformationSchema {
    catalogs: Arc<dyn CatalogProviderList>,
    storage: Arc<Storage>,
}

impl InformationSchema {
    pub fn new(catalogs: Arc<dyn CatalogProviderList>, storage: Arc<Storage>) -> Self {
        InformationSchema { catalogs, storage }
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        VIEWS.iter().map(|(name, _)| name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(VIEWS.iter().find(|(n, _)| *n == name).map(|(_, view)| {
            Arc::new(SnapshotTable(InformationView {
                view: *view,
                catalogs: Arc::clone(&self.catalogs),
                storage: Arc::clone(&self.storage),
            })) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        VIEWS.iter().any(|(n, _)| *n == name)
    }
}

#[derive(Debug)]
struct InformationView {
    view: View,
    catalogs: Arc<dyn CatalogProviderList>,
    storage: Arc<Storage>,
}

fn text_fields(names: &[&str]) -> Vec<Field> {
    names
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect()
}

fn schema_of(view: View) -> SchemaRef {
    let fields = match view {
        View::Tables => text_fields(&[
            "table_catalog",
            "table_schema",
            "table_name",
            "table_type",
            "self_referencing_column_name",
            "reference_generation",
            "user_defined_type_catalog",
            "user_defined_type_schema",
            "user_defined_type_name",
            "is_insertable_into",
            "is_typed",
            "commit_action",
        ]),
        View::Columns => {
            let mut fields =
                text_fields(&["table_catalog", "table_schema", "table_name", "column_name"]);
            fields.push(Field::new("ordinal_position", DataType::Int32, false));
            fields.extend(text_fields(&["column_default", "is_nullable", "data_type"]));
            for name in [
                "character_maximum_length",
                "character_octet_length",
                "numeric_precision",
                "numeric_precision_radix",
                "numeric_scale",
                "datetime_precision",
            ] {
                fields.push(Field::new(name, DataType::Int32, true));
            }
            fields.extend(text_fields(&[
                "interval_type",
                "udt_catalog",
                "udt_schema",
                "udt_name",
                "is_identity",
                "is_generated",
                "is_updatable",
            ]));
            fields
        }
        View::Schemata => text_fields(&[
            "catalog_name",
            "schema_name",
            "schema_owner",
            "default_character_set_catalog",
            "default_character_set_schema",
            "default_character_set_name",
            "sql_path",
        ]),
        View::Views => text_fields(&[
            "table_catalog",
            "table_schema",
            "table_name",
            "view_definition",
            "check_option",
            "is_updatable",
            "is_insertable_into",
            "is_trigger_updatable",
            "is_trigger_deletable",
            "is_trigger_insertable_into",
        ]),
        View::TableConstraints => text_fields(&[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ]),
        View::KeyColumnUsage => {
            let mut fields = text_fields(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
            ]);
            fields.push(Field::new("ordinal_position", DataType::Int32, true));
            fields.push(Field::new(
                "position_in_unique_constraint",
                DataType::Int32,
                true,
            ));
            fields
        }
        View::ReferentialConstraints => text_fields(&[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ]),
        View::TablePrivileges | View::RoleTableGrants => text_fields(&[
            "grantor",
            "grantee",
            "table_catalog",
            "table_schema",
            "table_name",
            "privilege_type",
            "is_grantable",
            "with_hierarchy",
        ]),
    };
    Arc::new(Schema::new(fields))
}

/// One relation as the views list it.
struct Relation {
    catalog: String,
    schema: String,
    name: String,
    kind: TableType,
    columns: SchemaRef,
}

impl InformationView {
    /// The relations the caller may see: as in Postgres, ours only where it holds a privilege.
    async fn relations(&self, caller: &Principal) -> Result<Vec<Relation>> {
        let manifest = self.storage.manifest();
        let mut relations = self.all_relations().await?;
        relations.retain(|r| {
            r.schema != SCHEMA_NAME_PUBLIC
                || Privilege::ALL
                    .iter()
                    .any(|p| caller.may(&manifest, &r.name, *p))
        });
        Ok(relations)
    }

    async fn all_relations(&self) -> Result<Vec<Relation>> {
        let mut relations = Vec::new();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for name in schema.table_names() {
                    if let Some(table) = schema.table(&name).await? {
                        relations.push(Relation {
                            catalog: catalog_name.clone(),
                            schema: schema_name.clone(),
                            name,
                            kind: table.table_type(),
                            columns: table.schema(),
                        });
                    }
                }
            }
        }
        relations.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(relations)
    }

    async fn batch(&self, caller: &Principal) -> Result<RecordBatch> {
        let schema = schema_of(self.view);
        let columns: Vec<ArrayRef> = match self.view {
            View::Tables => {
                let relations = self.relations(caller).await?;
                let text = |f: fn(&Relation) -> Option<String>| text_column(&relations, f);
                vec![
                    text(|r| Some(r.catalog.clone())),
                    text(|r| Some(r.schema.clone())),
                    text(|r| Some(r.name.clone())),
                    text(|r| {
                        Some(
                            match r.kind {
                                TableType::Base => "BASE TABLE",
                                TableType::View => "VIEW",
                                TableType::Temporary => "LOCAL TEMPORARY",
                            }
                            .to_string(),
                        )
                    }),
                    text(|_| None),
                    text(|_| None),
                    text(|_| None),
                    text(|_| None),
                    text(|_| None),
                    text(|r| Some(yes_no(r.kind == TableType::Base))),
                    text(|_| Some("NO".into())),
                    text(|_| None),
                ]
            }
            View::Columns => columns_arrays(&self.relations(caller).await?),
            View::Schemata => {
                let mut rows = Vec::new();
                for catalog_name in self.catalogs.catalog_names() {
                    if let Some(catalog) = self.catalogs.catalog(&catalog_name) {
                        let mut schemas = catalog.schema_names();
                        schemas.push(SCHEMA_NAME.to_string());
                        schemas.sort();
                        schemas.dedup();
                        rows.extend(schemas.into_iter().map(|s| (catalog_name.clone(), s)));
                    }
                }
                let text = |f: fn(&(String, String)) -> Option<String>| text_column(&rows, f);
                vec![
                    text(|(c, _)| Some(c.clone())),
                    text(|(_, s)| Some(s.clone())),
                    text(|_| Some("postgres".into())),
                    text(|_| None),
                    text(|_| None),
                    text(|_| None),
                    text(|_| None),
                ]
            }
            View::Views => {
                let relations: Vec<Relation> = self
                    .relations(caller)
                    .await?
                    .into_iter()
                    .filter(|r| r.kind == TableType::View)
                    .collect();
                let text = |f: fn(&Relation) -> Option<String>| text_column(&relations, f);
                vec![
                    text(|r| Some(r.catalog.clone())),
                    text(|r| Some(r.schema.clone())),
                    text(|r| Some(r.name.clone())),
                    text(|_| None),
                    text(|_| Some("NONE".into())),
                    text(|_| Some("NO".into())),
                    text(|_| Some("NO".into())),
                    text(|_| Some("NO".into())),
                    text(|_| Some("NO".into())),
                    text(|_| Some("NO".into())),
                ]
            }
            View::TableConstraints | View::KeyColumnUsage | View::ReferentialConstraints => {
                return Ok(RecordBatch::new_empty(schema));
            }
            View::TablePrivileges | View::RoleTableGrants => {
                let all = grants(&self.storage.manifest());
                let to_public = matches!(self.view, View::TablePrivileges);
                let rows: Vec<Grant> = all
                    .into_iter()
                    .filter(|g| {
                        caller.superuser
                            || g.grantee == caller.name
                            || (to_public && g.grantee == "PUBLIC")
                            || (!to_public && g.grantor == caller.name)
                    })
                    .collect();
                let text = |f: fn(&Grant) -> Option<String>| text_column(&rows, f);
                vec![
                    text(|g| Some(g.grantor.clone())),
                    text(|g| Some(g.grantee.clone())),
                    text(|_| Some(DATABASE_NAME.to_string())),
                    text(|_| Some(SCHEMA_NAME_PUBLIC.to_string())),
                    text(|g| Some(g.table.clone())),
                    text(|g| Some(g.privilege.name().to_string())),
                    text(|g| Some(yes_no(g.grantable))),
                    text(|g| Some(yes_no(g.privilege == Privilege::Select))),
                ]
            }
        };
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// One row of the privilege views.
struct Grant {
    grantor: String,
    grantee: String,
    table: String,
    privilege: Privilege,
    grantable: bool,
}

/// Every grant on our relations, the owners' own first, as Postgres lists them.
fn grants(m: &Manifest) -> Vec<Grant> {
    let mut rows = Vec::new();
    for (table, acl) in &m.privileges {
        let Some(owner) = &acl.owner else { continue };
        let grant = |grantee: &str, privilege: Privilege, grantable: bool| Grant {
            grantor: owner.clone(),
            grantee: grantee.to_string(),
            table: table.clone(),
            privilege,
            grantable,
        };
        rows.extend(Privilege::ALL.map(|p| grant(owner, p, true)));
        for (grantee, privileges) in &acl.grants {
            let grantee = if grantee == PUBLIC { "PUBLIC" } else { grantee };
            rows.extend(privileges.iter().map(|p| grant(grantee, *p, false)));
        }
    }
    rows
}

/// A text column with one value per row.
fn text_column<T>(rows: &[T], value: impl Fn(&T) -> Option<String>) -> ArrayRef {
    Arc::new(rows.iter().map(value).collect::<StringArray>())
}

fn yes_no(yes: bool) -> String {
    if yes { "YES" } else { "NO" }.to_string()
}

/// One row per column of every relation.
fn columns_arrays(relations: &[Relation]) -> Vec<ArrayRef> {
    let rows: Vec<(&Relation, usize, &Field)> = relations
        .iter()
        .flat_map(|r| {
            r.columns
                .fields()
                .iter()
                .enumerate()
                .map(move |(i, f)| (r, i, f.as_ref()))
        })
        .collect();
    let text = |f: fn(&Relation, &Field) -> Option<String>| text_column(&rows, |(r, _, c)| f(r, c));
    let int = |f: &dyn Fn(&Field) -> Option<i32>| -> ArrayRef {
        Arc::new(rows.iter().map(|(_, _, c)| f(c)).collect::<Int32Array>())
    };
    let numeric = |field: &Field| match field.data_type() {
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => Some((16, 0)),
        DataType::Int32 | DataType::UInt16 => Some((32, 0)),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Some((64, 0)),
        DataType::Float32 | DataType::Float16 => Some((24, -1)),
        DataType::Float64 => Some((53, -1)),
        DataType::Decimal128(p, s) => Some((i32::from(*p), i32::from(*s))),
        _ => None,
    };
    vec![
        text(|r, _| Some(r.catalog.clone())),
        text(|r, _| Some(r.schema.clone())),
        text(|r, _| Some(r.name.clone())),
        text(|_, c| Some(c.name().clone())),
        Arc::new(
            rows.iter()
                .map(|(_, i, _)| Some(*i as i32 + 1))
                .collect::<Int32Array>(),
        ),
        text(|_, _| None),
        text(|_, c| Some(yes_no(c.is_nullable()))),
        text(|_, c| Some(pg_type_names(c.data_type()).0)),
        int(&|_| None),
        int(&|c| {
            matches!(
                c.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
            .then_some(1_073_741_824)
        }),
        int(&|c| numeric(c).map(|(p, _)| p)),
        int(&|c| {
            numeric(c).map(|_| match c.data_type() {
                DataType::Decimal128(..) => 10,
                _ => 2,
            })
        }),
        int(&|c| numeric(c).and_then(|(_, s)| (s >= 0).then_some(s))),
        int(&|c| {
            matches!(c.data_type(), DataType::Timestamp(..) | DataType::Time64(_))
                .then_some(6)
                .or(matches!(c.data_type(), DataType::Date32 | DataType::Date64).then_some(0))
        }),
        text(|_, _| None),
        text(|r, _| Some(r.catalog.clone())),
        text(|_, _| Some("pg_catalog".into())),
        text(|_, c| Some(pg_type_names(c.data_type()).1)),
        text(|_, _| Some("NO".into())),
        text(|_, _| Some("NEVER".into())),
        text(|r, _| Some(yes_no(r.kind == TableType::Base))),
    ]
}

#[async_trait]
impl Snapshot for InformationView {
    fn schema(&self) -> SchemaRef {
        schema_of(self.view)
    }

    async fn rows(&self, state: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        self.batch(&Principal::of(state.config().options())).await
    }
}
