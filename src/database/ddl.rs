//! Statements that change or describe the catalog: CREATE/DROP TABLE and SOURCE, and SHOW;
//! those of materialized views are in [`view`].
//!
//! Each change is one manifest commit, so it is all-or-nothing and visible to every session once
//! it returns.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use sqlparser::ast::{Ident, ObjectName, ShowCreateObject, Statement as SqlStatement};

use super::{Database, Output, Warning, privileges};
use crate::catalog::roles::Principal;
use crate::catalog::source::SourceDef;
use crate::catalog::table::TableDef;
use crate::error::{Error, Result};
use crate::source::kafka::ResetTo;
use crate::source::options::{Connector, SourceSettings, canonical_options};
use crate::source::{SourceHandle, Sources};
use crate::source::{kafka, kafka_properties};
use crate::sql::parser::{check_unique, table_name};
use crate::sql::{CreateSource, CreateTable, Statement, normalize_ident};
use crate::storage::{Manifest, SourceState, Storage, TableState, ViewState};

mod view;

pub use view::{alter_view, create_view, drop_views, read_relations, state_ttl_us};

pub async fn create_table(
    storage: &Storage,
    create: CreateTable,
    principal: &Principal,
) -> Result<Output> {
    privileges::require_create(principal)?;
    let done = Output::Command {
        tag: "CREATE TABLE",
        rows: None,
    };
    // IF NOT EXISTS on an existing table changes nothing, so it commits nothing.
    if create.if_not_exists && storage.manifest().has_relation(&create.name) {
        return Ok(done);
    }
    storage
        .commit(move |m| {
            if m.has_relation(&create.name) {
                return match create.if_not_exists {
                    true => Ok(()),
                    false => Err(Error::DuplicateRelation {
                        kind: "relation",
                        name: create.name,
                    }),
                };
            }
            let def = TableDef::new(m.next_table_id, create);
            m.next_table_id += 1;
            m.privileges.insert(def.name.clone(), principal.new_acl());
            m.tables.insert(
                def.name.clone(),
                TableState {
                    def,
                    files: Vec::new(),
                    writes: 0,
                },
            );
            Ok(())
        })
        .await?;
    Ok(done)
}

pub async fn drop_tables(
    db: &Database,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
    principal: &Principal,
) -> Result<Output> {
    let names: Vec<String> = names.iter().map(table_name).collect::<Result<_>>()?;
    // Tables fed by a connector run as keyed sources.
    let manifest = db.storage().manifest();
    let (fed, names): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| manifest.source(n).is_some_and(|s| s.def.keyed()));
    let drop = Drop {
        names: &fed,
        if_exists,
        cascade,
        principal,
    };
    drop_running_sources(db, "table", drop).await?;
    let drop = Drop {
        names: &names,
        if_exists,
        cascade,
        principal,
    };
    let (tables, views) = commit_drop(db, "table", drop, |m, n| m.tables.remove(n)).await?;
    for table in tables {
        db.keyed_tables().remove(&table.def.name);
    }
    // The files go with garbage collection, after queries that listed them finish.
    forget_views(db, views).await;
    Ok(Output::Command {
        tag: "DROP TABLE",
        rows: None,
    })
}

/// What a DROP names, and who asks.
#[derive(Clone, Copy)]
struct Drop<'a> {
    names: &'a [String],
    if_exists: bool,
    cascade: bool,
    principal: &'a Principal,
}

/// [`remove_relations`] as one commit: what it removed.
async fn commit_drop<S>(
    db: &Database,
    kind: &'static str,
    drop: Drop<'_>,
    remove: impl Fn(&mut Manifest, &str) -> Option<S>,
) -> Result<(Vec<S>, Vec<ViewState>)> {
    let mut removed = (Vec::new(), Vec::new());
    db.storage()
        .commit(|m| {
            removed = remove_relations(m, kind, drop, remove)?;
            Ok(())
        })
        .await?;
    Ok(removed)
}

/// Removes the relations a DROP names (of one kind) from `m` with `remove`, and the views
/// reading them (see [`drop_dependents`]), with their privileges. Only their owner may.
/// Returns the removed relations and the removed views.
fn remove_relations<S>(
    m: &mut Manifest,
    kind: &'static str,
    drop: Drop,
    remove: impl Fn(&mut Manifest, &str) -> Option<S>,
) -> Result<(Vec<S>, Vec<ViewState>)> {
    let (mut removed, mut views) = (Vec::new(), Vec::new());
    for name in drop.names {
        if m.relation_kind(name) == Some(kind) {
            privileges::require_owner(m, drop.principal, name)?;
        }
        if let Some(whole) = m.view(name).and_then(|v| v.def.part_of.clone())
            && !drop.names.contains(&whole)
        {
            return Err(Error::PartOfView {
                action: "drop",
                name: name.clone(),
                whole,
            });
        }
        match remove(m, name) {
            Some(state) => removed.push(state),
            None if drop.if_exists => continue,
            None => {
                return Err(Error::UndefinedRelation {
                    kind,
                    name: name.clone(),
                });
            }
        }
        m.privileges.remove(name);
        views.extend(drop_dependents(m, kind, name, drop.names, drop.cascade)?);
        for part in remove_parts(m, name) {
            views.extend(drop_dependents(
                m,
                kind,
                &part.def.name,
                drop.names,
                drop.cascade,
            )?);
            views.push(part);
        }
    }
    Ok((removed, views))
}

/// Views as the user created them: a part as the view it is part of.
fn wholes(m: &Manifest, views: Vec<String>) -> Vec<String> {
    let mut wholes: Vec<String> = Vec::new();
    for mut view in views {
        while let Some(whole) = m.view(&view).and_then(|v| v.def.part_of.clone()) {
            view = whole;
        }
        if !wholes.contains(&view) {
            wholes.push(view);
        }
    }
    wholes
}

/// Removes from `m` the parts of view `name`, and theirs: they go with it.
fn remove_parts(m: &mut Manifest, name: &str) -> Vec<ViewState> {
    let parts: Vec<String> = m
        .views
        .values()
        .filter(|v| v.def.part_of.as_deref() == Some(name))
        .map(|v| v.def.name.clone())
        .collect();
    let mut removed = Vec::new();
    for part in parts {
        m.privileges.remove(&part);
        removed.extend(m.views.remove(&part));
        removed.extend(remove_parts(m, &part));
    }
    removed
}

/// Removes from `m` the views reading `name` (and the views reading those), or fails with
/// 2BP01 when there are some and `cascade` is off. Views in `dropping` go anyway.
fn drop_dependents(
    m: &mut Manifest,
    kind: &'static str,
    name: &str,
    dropping: &[String],
    cascade: bool,
) -> Result<Vec<ViewState>> {
    let mut queue = vec![name.to_string()];
    let mut removed = Vec::new();
    while let Some(relation) = queue.pop() {
        let dependents: Vec<String> = m
            .dependents(&relation)
            .into_iter()
            .filter(|d| !dropping.contains(d))
            .collect();
        if !dependents.is_empty() && !cascade {
            return Err(Error::DependentObjects {
                action: "drop",
                kind,
                name: name.to_string(),
                dependents: wholes(m, dependents),
            });
        }
        for dependent in dependents {
            removed.extend(m.views.remove(&dependent));
            m.privileges.remove(&dependent);
            for part in remove_parts(m, &dependent) {
                queue.push(part.def.name.clone());
                removed.push(part);
            }
            queue.push(dependent);
        }
    }
    Ok(removed)
}

/// Stops dropped views (readers first); after the commit. Their files go with garbage
/// collection.
async fn forget_views(db: &Database, dropped: Vec<ViewState>) {
    for state in crate::view::dependency_order(dropped, |s| &s.def)
        .iter()
        .rev()
    {
        db.views().remove(&state.def.name);
        tracing::info!(view = %state.def.name, "materialized view dropped");
    }
}

/// How long `ALTER SOURCE … RESET OFFSETS` waits for the readers to move.
const RESET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `ALTER SOURCE name RESET OFFSETS TO EARLIEST | LATEST`: the partitions stopped at an offset
/// out of the broker's range go on from the broker's first or next offset, in every reader of
/// the source (its own, and those of views reading its topic themselves). Partitions that read
/// on are not touched: moving them would skip or re-read records.
pub async fn reset_source_offsets(
    db: &Database,
    name: &str,
    to: ResetTo,
    principal: &Principal,
) -> Result<Output> {
    let manifest = db.storage().manifest();
    privileges::require_owner(&manifest, principal, name)?;
    if manifest.source(name).is_none() {
        return Err(Error::UndefinedRelation {
            kind: "source",
            name: name.to_string(),
        });
    }
    let stopped = |reader: &SourceHandle| {
        reader
            .stats
            .snapshot()
            .partitions
            .values()
            .any(|p| p.stopped.is_some())
    };
    let private = db
        .views()
        .all()
        .into_iter()
        .flat_map(|v| {
            v.readers()
                .iter()
                .map(|(_, r)| Arc::clone(r))
                .collect::<Vec<_>>()
        })
        .filter(|r| r.name() == name);
    let readers: Vec<Arc<SourceHandle>> = db
        .sources()
        .get(name)
        .into_iter()
        .chain(private)
        .filter(|r| stopped(r))
        .collect();
    if readers.is_empty() {
        return Err(Error::NotReady(format!(
            "no partition of source \"{name}\" is stopped: RESET OFFSETS moves only partitions \
             stopped at an offset out of the broker's range"
        )));
    }
    for reader in &readers {
        reader.reset_offsets(to);
    }
    let deadline = std::time::Instant::now() + RESET_TIMEOUT;
    while readers.iter().any(|r| stopped(r)) {
        if std::time::Instant::now() >= deadline {
            return Err(Error::Connector {
                message: format!(
                    "the readers of source \"{name}\" did not reset their offsets within {}s",
                    RESET_TIMEOUT.as_secs()
                ),
                hint: Some("Check the broker in sluice_catalog.sources, then retry.".into()),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(Output::command("ALTER SOURCE"))
}

/// Creates a source; files its properties name must lie in `secrets_dir`.
pub async fn create_source(
    storage: &Storage,
    sources: &Sources,
    create: CreateSource,
    secrets_dir: Option<&Path>,
    principal: &Principal,
) -> Result<Output> {
    privileges::require_create(principal)?;
    let done = Output::Command {
        tag: match create.primary_key.is_empty() {
            true => "CREATE SOURCE",
            false => "CREATE TABLE",
        },
        rows: None,
    };
    if create.if_not_exists && storage.manifest().has_relation(&create.name) {
        return Ok(done);
    }
    let mut options = canonical_options(&create)?;
    kafka_properties::resolve_files(&mut options, secrets_dir)?;
    let mut def = SourceDef {
        id: 0,
        options,
        name: create.name,
        columns: create.columns,
        watermark: create.watermark,
        includes: create.includes,
        created_at_ms: chrono::Utc::now().timestamp_millis(),
        primary_key: create.primary_key,
    };
    check_unique(&def.all_columns())?;
    let settings = SourceSettings::from_def(&def)?;
    if let Connector::Kafka(kafka) = &settings.connector {
        kafka::check_topic(&def.name, kafka).await?;
    }
    let if_not_exists = create.if_not_exists;
    let mut created = None;
    storage
        .commit(|m| {
            if m.has_relation(&def.name) {
                return match if_not_exists {
                    true => Ok(()),
                    false => Err(Error::DuplicateRelation {
                        kind: "relation",
                        name: def.name.clone(),
                    }),
                };
            }
            def.id = m.next_table_id;
            m.next_table_id += 1;
            m.privileges.insert(def.name.clone(), principal.new_acl());
            m.sources.insert(
                def.name.clone(),
                SourceState {
                    def: def.clone(),
                    files: Vec::new(),
                    offsets: Default::default(),
                    dedup: None,
                },
            );
            created = Some(def.clone());
            Ok(())
        })
        .await?;
    if let Some(def) = created {
        tracing::info!(source = %def.name, connector = def.options.get("connector").map(String::as_str).unwrap_or_default(), "source created");
        sources.start(def);
    }
    Ok(done)
}

pub async fn drop_sources(
    db: &Database,
    names: &[String],
    if_exists: bool,
    cascade: bool,
    principal: &Principal,
) -> Result<Output> {
    let drop = Drop {
        names,
        if_exists,
        cascade,
        principal,
    };
    drop_running_sources(db, "source", drop).await?;
    Ok(Output::Command {
        tag: "DROP SOURCE",
        rows: None,
    })
}

/// Drops sources (`kind` "source") or tables fed by a connector ("table") and stops them.
async fn drop_running_sources(db: &Database, kind: &'static str, drop: Drop<'_>) -> Result<()> {
    if drop.names.is_empty() {
        return Ok(());
    }
    let keyed = kind == "table";
    let (dropped, dropped_views) = commit_drop(db, kind, drop, |m, n| {
        match m.source(n).is_some_and(|s| s.def.keyed() == keyed) {
            true => m.sources.remove(n),
            false => None,
        }
    })
    .await?;
    forget_views(db, dropped_views).await;
    for state in &dropped {
        db.sources().remove(&state.def.name);
        tracing::info!(relation = %state.def.name, kind, "dropped");
    }
    Ok(())
}

/// `SHOW SOURCES`, `SHOW MATERIALIZED VIEWS` and their `SHOW CREATE` as plans, like [`show`].
pub fn show_catalog(storage: &Storage, statement: &Statement) -> Result<Option<LogicalPlan>> {
    let manifest = storage.manifest();
    match statement {
        Statement::ShowViews => rows_plan(
            &["name", "input", "emit"],
            manifest
                .views
                .values()
                .map(|v| {
                    let emit = if v.def.emit_on_close {
                        "on window close"
                    } else {
                        "live"
                    };
                    vec![v.def.name.clone(), v.def.input.clone(), emit.to_string()]
                })
                .collect(),
        )
        .map(Some),
        Statement::ShowCreateView(name) => {
            let state = manifest
                .view(name)
                .ok_or_else(|| Error::UndefinedRelation {
                    kind: "materialized view",
                    name: name.clone(),
                })?;
            rows_plan(
                &["name", "create_sql"],
                vec![vec![name.clone(), state.def.create_sql()]],
            )
            .map(Some)
        }
        Statement::ShowSources => rows_plan(
            &["name", "connector"],
            manifest
                .sources
                .values()
                .map(|s| {
                    let connector = s.def.options.get("connector").cloned().unwrap_or_default();
                    vec![s.def.name.clone(), connector]
                })
                .collect(),
        )
        .map(Some),
        Statement::ShowCreateSource(name) => {
            let state = manifest
                .source(name)
                .ok_or_else(|| Error::UndefinedRelation {
                    kind: "source",
                    name: name.clone(),
                })?;
            rows_plan(
                &["name", "create_sql"],
                vec![vec![name.clone(), state.def.create_sql()]],
            )
            .map(Some)
        }
        _ => Ok(None),
    }
}

/// The definition of an existing table.
pub fn table(storage: &Storage, name: &str) -> Result<TableDef> {
    let manifest = storage.manifest();
    if let Some(source) = manifest.source(name) {
        return Err(crate::catalog::provider::fed_by_connector(
            &source.def,
            "changing",
        ));
    }
    manifest
        .table(name)
        .map(|state| state.def.clone())
        .ok_or_else(|| Error::UndefinedRelation {
            kind: "relation",
            name: name.to_string(),
        })
}

/// Positions of the named columns (all columns when none are named).
pub fn column_indices(table: &TableDef, columns: &[Ident]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    columns
        .iter()
        .map(|ident| {
            let name = normalize_ident(ident);
            table
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or(Error::UndefinedColumn { name })
        })
        .collect()
}

/// `SHOW TABLES`, `SHOW CREATE TABLE` and `DESCRIBE` of our relations as plans over in-memory rows, so they describe and
/// execute like any query. `None` for every other statement.
pub fn show(storage: &Storage, stmt: &SqlStatement) -> Result<Option<LogicalPlan>> {
    let manifest = storage.manifest();
    let (columns, rows): (&[&str], Vec<Vec<String>>) = match stmt {
        SqlStatement::ShowTables { .. } => (
            &["name"],
            manifest
                .tables
                .keys()
                .map(|name| vec![name.clone()])
                .collect(),
        ),
        SqlStatement::ExplainTable { table_name: t, .. } => {
            // Our relations list their Postgres types; anything else is DataFusion's to describe.
            let Ok(name) = table_name(t) else {
                return Ok(None);
            };
            let columns = match (
                manifest.table(&name),
                manifest.source(&name),
                manifest.view(&name),
            ) {
                (Some(table), _, _) => table.def.columns.clone(),
                (None, Some(source), _) => source.def.all_columns(),
                (None, None, Some(view)) => view.def.columns.clone(),
                (None, None, None) => return Ok(None),
            };
            (
                &["column_name", "data_type", "is_nullable"],
                columns
                    .iter()
                    .map(|c| {
                        let nullable = if c.nullable { "YES" } else { "NO" };
                        vec![
                            c.name.clone(),
                            c.column_type.pg_name.clone(),
                            nullable.into(),
                        ]
                    })
                    .collect(),
            )
        }
        SqlStatement::ShowCreate {
            obj_type: ShowCreateObject::Table,
            obj_name,
        } => {
            let name = table_name(obj_name)?;
            let def = table(storage, &name)?;
            (&["name", "create_sql"], vec![vec![name, def.create_sql()]])
        }
        _ => return Ok(None),
    };
    rows_plan(columns, rows).map(Some)
}

/// A plan over in-memory text rows, so answers describe and execute like any query.
pub fn rows_plan(columns: &[&str], rows: Vec<Vec<String>>) -> Result<LogicalPlan> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let arrays = (0..columns.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as _)
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    Ok(LogicalPlanBuilder::scan("show", provider_as_source(Arc::new(table)), None)?.build()?)
}
