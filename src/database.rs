//! The database every connection shares: DataFusion's session, the catalog and storage.
//!
//! [`Database::execute`] runs one parsed statement and returns an [`Output`]; it knows nothing of
//! the wire protocol. Read-only SQL is planned and run by DataFusion; `INSERT` goes through
//! DataFusion into our table sink; our DDL, `FLUSH` and `SHOW` are answered in [`ddl`].

pub mod ddl;
pub mod dml;
mod offload;
mod plan_cache;
pub mod privileges;
mod sort_into_union;

use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::analyzer::resolve_grouping_function::ResolveGroupingFunction;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use futures::{FutureExt, StreamExt, TryStreamExt};
use sqlparser::ast::{CopySource, CopyTarget, ObjectType, Query, Statement as SqlStatement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::provider::PublicSchema;
use crate::catalog::roles::{Principal, Privilege, Roles};
use crate::catalog::system::{self, SystemSchema};
use crate::catalog::table::TableDef;
use crate::catalog::view::ViewDef;
use crate::catalog::{DATABASE_NAME, SCHEMA_NAME};
use crate::checkpoint::{Checkpoints, Participant, Participants};
use crate::config::{Config, StorageLocation};
use crate::error::{Error, Result};
use crate::maintenance::Maintenance;
use crate::metrics;
use crate::pg::arrays::{ArrayLiteralComparisons, ArrayText};
use crate::pg::bytea::ByteaText;
use crate::pg::casts::RoundingCasts;
use crate::pg::coercion::BooleanText;
use crate::pg::information_schema::{self, InformationSchema};
use crate::pg::literals::{BareAggregates, IntegerLiterals};
use crate::pg::names::{postgres_names, rename, with_distinct_names};
use crate::pg::numeric::NumericDivision;
use crate::pg::overflow::CheckedArithmetic;
use crate::pg::pg_catalog::PgCatalog;
use crate::planner;
use crate::server::backends::Backends;
use crate::source::{Sources, Surroundings};
use crate::sql::copy::CopyFormat;
use crate::sql::parser::table_name;
use crate::sql::{CreateView, Statement};
use crate::storage::{CheckpointRecord, Storage};
use crate::stream::feed::Feeds;
use crate::stream::plan::ViewPlan;
use crate::stream::state_memory::StatePools;
use crate::table::KeyedTables;
use crate::view::{Replay, TopicReader, Views, dependency_order};
use offload::Interruptible;
use plan_cache::{Cached, PlanCache};
use sort_into_union::SortIntoUnion;

/// What a statement produced.
pub enum Output {
    /// Rows to send to the client.
    Rows(SendableRecordBatchStream),
    /// A command tag such as `CREATE TABLE`, with a row count for `INSERT`.
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
    /// `COPY … FROM STDIN`: the client sends rows next.
    CopyIn(CopyIn),
    /// `COPY … TO STDOUT`: rows to send as COPY data.
    CopyOut {
        rows: SendableRecordBatchStream,
        format: CopyFormat,
    },
    /// A result the client is warned about first (a NoticeResponse of severity WARNING,
    /// SQLSTATE 01000, as Postgres warns).
    Warned {
        warning: Warning,
        output: Box<Output>,
    },
}

/// What a statement that succeeded warns of.
#[derive(Debug, Clone)]
pub struct Warning {
    pub message: String,
    pub hint: Option<String>,
}

impl Output {
    /// A command tag without a row count.
    pub fn command(tag: &'static str) -> Self {
        Output::Command { tag, rows: None }
    }
}

/// A `COPY FROM STDIN` waiting for its data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: TableDef,
    /// Indices of the table columns the input fills, in input order.
    pub columns: Vec<usize>,
    pub format: CopyFormat,
}

pub struct Database {
    ctx: SessionContext,
    storage: Arc<Storage>,
    sources: Arc<Sources>,
    views: Arc<Views>,
    /// Tables with a primary key: their current rows.
    keyed: Arc<KeyedTables>,
    checkpoints: Arc<Checkpoints>,
    /// The live connections (`pg_stat_activity`, cancel and terminate).
    backends: Arc<Backends>,
    roles: Arc<Roles>,
    /// Plans of queries over views, kept for their next run.
    plans: Arc<PlanCache>,
    /// The tasks running checkpoints and storage maintenance every interval.
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    config: Config,
}

impl Database {
    /// Opens storage and builds the session every connection runs its queries in.
    pub async fn open(config: Config) -> Result<Arc<Self>> {
        let opening = std::time::Instant::now();
        let started_at_ms = chrono::Utc::now().timestamp_millis();
        let storage = Arc::new(Storage::open(&config).await?);
        let mut session_config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE_NAME, SCHEMA_NAME)
            .with_create_default_catalog_and_schema(true);
        session_config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        session_config
            .options_mut()
            .sql_parser
            .parse_float_as_decimal = true;
        let runtime = runtime(&config)?;
        storage.register(&runtime);
        let state = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_analyzer_rules(analyzer_rules())
            .with_optimizer_rules(optimizer_rules())
            .with_physical_optimizer_rules(physical_optimizer_rules())
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            Arc::new(ArrayLiteralComparisons),
        )?;
        let catalog = ctx
            .catalog(DATABASE_NAME)
            .ok_or_else(|| Error::Internal("default catalog is missing".into()))?;
        let feeds = Arc::new(Feeds::default());
        let checkpoint_requested = Arc::new(tokio::sync::Notify::new());
        let state_memory = StatePools::new(&ctx.runtime_env().memory_pool);
        let keyed = Arc::new(KeyedTables::open(&storage, state_memory.clone()).await?);
        let sources = Arc::new(Sources::new(
            Arc::clone(&storage),
            Arc::clone(&feeds),
            Surroundings {
                checkpoint_requested: Arc::clone(&checkpoint_requested),
                memory: state_memory.clone(),
                kafka_reader: config.kafka_reader.clone(),
            },
        ));
        let views = Arc::new(Views::new(
            Arc::clone(&storage),
            feeds,
            Arc::clone(&sources),
            config.view_max_open_groups,
            state_memory,
        ));
        let checkpoints = Arc::new(Checkpoints::new(
            Arc::clone(&storage),
            Arc::new(Everyone {
                sources: Arc::clone(&sources),
                views: Arc::clone(&views),
            }),
            config.checkpoint_interval,
            checkpoint_requested,
        ));
        catalog.register_schema(
            SCHEMA_NAME,
            Arc::new(PublicSchema::new(
                Arc::clone(&storage),
                Arc::clone(&sources),
                Arc::clone(&views),
                Arc::clone(&keyed),
            )),
        )?;
        catalog.register_schema(
            system::SCHEMA_NAME,
            Arc::new(SystemSchema::new(
                Arc::clone(&storage),
                Arc::clone(&sources),
                Arc::clone(&views),
                Arc::clone(&checkpoints),
            )),
        )?;
        catalog.register_schema(
            information_schema::SCHEMA_NAME,
            Arc::new(InformationSchema::new(
                ctx.state().catalog_list().clone(),
                Arc::clone(&storage),
            )),
        )?;
        planner::functions::register(&ctx, &storage);
        datafusion_pg_catalog::setup_pg_catalog(&ctx, DATABASE_NAME, EmptyContextProvider)
            .map_err(|e| Error::from(*e))?;
        let roles = Arc::new(Roles::new(&config.access, Arc::clone(&storage)));
        PgCatalog::install(
            &ctx,
            DATABASE_NAME,
            Arc::clone(&storage),
            Arc::clone(&roles),
        )?;
        crate::pg::roles::register(&ctx, Arc::clone(&roles));
        crate::pg::function_signatures::register(&ctx).await?;
        let backends = Arc::new(Backends::new(
            config.max_connections,
            config.superuser_reserved_connections,
        ));
        backends.install(&ctx, Arc::clone(&roles))?;
        crate::pg::functions::register(&ctx);
        crate::pg::bytea_functions::register(&ctx);
        crate::pg::numeric::register(&ctx);
        crate::pg::introspection::register(&ctx);
        // `now()` is a timestamptz in Postgres. DataFusion gives it a zone only when the zone is
        // SET, which re-creates the time functions with the new setting; the builder does not.
        ctx.sql("SET datafusion.execution.time_zone = '+00:00'")
            .await?;
        sources.start_all();
        let database = Arc::new(Database {
            ctx,
            storage,
            sources,
            views,
            keyed,
            checkpoints,
            backends,
            roles,
            plans: Arc::default(),
            background: std::sync::Mutex::new(Vec::new()),
            config,
        });
        database.start_views().await;
        database.note_recovery(started_at_ms, opening.elapsed());
        let maintenance = Maintenance::new(
            Arc::clone(&database.storage),
            Arc::clone(&database.checkpoints),
            &database.config,
        );
        database
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([database.checkpoints.spawn(), maintenance.spawn()]);
        Ok(database)
    }

    /// Logs how long resuming from the last checkpoint took, and keeps it for
    /// `sluice_catalog.checkpoints`.
    fn note_recovery(&self, started_at_ms: i64, took: std::time::Duration) {
        let manifest = self.storage.manifest();
        let id = manifest.checkpoint_id();
        if id == 0 {
            return;
        }
        let state_bytes: u64 = manifest
            .views
            .values()
            .filter_map(|v| v.checkpoint.as_ref())
            .flat_map(|c| c.state_files())
            .chain(manifest.sources.values().flat_map(|s| &s.dedup))
            .map(|f| f.size_bytes)
            .sum();
        tracing::info!(
            checkpoint = id,
            epoch = manifest.epoch,
            ms = took.as_millis() as u64,
            state_bytes,
            "recovered from the last checkpoint"
        );
        self.checkpoints.recovered(CheckpointRecord {
            id,
            kind: "recovery".into(),
            reason: "restart".into(),
            started_at_ms,
            duration_ms: took.as_millis() as u64,
            size_bytes: state_bytes,
            state_bytes,
            files: 0,
        });
    }

    /// Starts every view of the committed catalog, each after the view it reads. A view whose
    /// query no longer plans is logged and shown as failed; the others run.
    async fn start_views(&self) {
        let defs: Vec<ViewDef> = self
            .storage
            .manifest()
            .views
            .values()
            .map(|v| v.def.clone())
            .collect();
        for def in dependency_order(defs, |d| d) {
            let started = match self.plan_stored_view(&def).await {
                Ok(plan) => self.views.start(def.clone(), plan, Replay::Default).await,
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                tracing::error!(view = %def.name, error = %e, "materialized view cannot start");
                self.views.failed(def, &e);
            }
        }
    }

    /// Plans a view of the catalog; a part of a view is planned with the view it is part of.
    pub(crate) async fn plan_stored_view(&self, def: &ViewDef) -> Result<ViewPlan> {
        let Some(whole) = &def.part_of else {
            let query = crate::sql::view::parse_query(&def.query)?;
            let plan = self.plan_view(&def.name, &query, def.emit_on_close).await?;
            return Ok(plan.with_state_ttl(ddl::state_ttl_us(def.state_ttl.as_deref())?));
        };
        let whole = self
            .storage
            .manifest()
            .view(whole)
            .map(|v| v.def.clone())
            .ok_or_else(|| Error::UndefinedRelation {
                kind: "materialized view",
                name: whole.clone(),
            })?;
        let plan = Box::pin(self.plan_stored_view(&whole)).await?;
        plan.parts
            .into_iter()
            .find(|p| p.name == def.name)
            .map(|p| p.plan)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "materialized view \"{}\" has no part \"{}\"",
                    whole.name, def.name
                ))
            })
    }

    /// `EXPLAIN CREATE MATERIALIZED VIEW`: DataFusion's logical plan with the window node, and
    /// the streaming pipeline, as rows `(plan_type, plan)`.
    pub async fn explain_view(
        &self,
        create: &CreateView,
        principal: &Principal,
    ) -> Result<LogicalPlan> {
        let plan = self
            .plan_view(&create.name, &create.query, create.emit_on_close)
            .await?
            .with_state_ttl(ddl::state_ttl_us(create.state_ttl.as_deref())?);
        let manifest = self.storage.manifest();
        for input in ddl::read_relations(&plan) {
            privileges::require(&manifest, principal, input, Privilege::Select)?;
        }
        let mut rows = vec![
            vec![
                "logical_plan".to_string(),
                plan.logical.display_indent().to_string(),
            ],
            vec![
                "streaming_plan".to_string(),
                plan.describe(&create.name, create.emit_on_close),
            ],
        ];
        // Each part's pipeline, as the view it runs as.
        for part in &plan.parts {
            rows.push(vec![
                format!("streaming_plan of part {}", part.name),
                part.plan.describe(&part.name, false),
            ]);
        }
        ddl::rows_plan(&["plan_type", "plan"], rows)
    }

    /// Plans a view's query into its operator graph: DataFusion's logical plan (analyzed,
    /// types coerced), lowered by the planner against the newest catalog.
    pub async fn plan_view(
        &self,
        name: &str,
        query: &Query,
        emit_on_close: bool,
    ) -> Result<ViewPlan> {
        let state = self.ctx.state();
        let statement = SqlStatement::Query(Box::new(query.clone()));
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await?;
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})?;
        let names = crate::pg::names::postgres_names(&statement);
        planner::plan_view(
            &state,
            &self.storage.manifest(),
            name,
            plan,
            names,
            emit_on_close,
        )
    }

    /// Runs the statements of a script that change something (the demo pipeline); its queries
    /// are examples for the user and are skipped, so startup never scans data.
    pub async fn execute_script(&self, sql: &str) -> Result<()> {
        for statement in crate::sql::parser::parse(sql)? {
            if matches!(&statement, Statement::Standard(s) if matches!(**s, SqlStatement::Query(_)))
            {
                continue;
            }
            let principal = Principal::server();
            if let Output::Rows(mut rows) = self.execute(&statement, None, &principal).await? {
                while let Some(batch) = rows.next().await {
                    batch?;
                }
            }
        }
        Ok(())
    }

    /// Takes a last checkpoint of everything taken in, then stops sources and views.
    pub async fn shutdown(&self) {
        let background =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        for task in background {
            task.abort();
        }
        if let Err(e) = self.checkpoints.checkpoint("shutdown").await {
            tracing::warn!(error = %e, "the last checkpoint failed; the server resumes from the one before");
        }
        self.sources.shutdown().await;
        self.views.shutdown().await;
    }

    pub fn checkpoints(&self) -> &Arc<Checkpoints> {
        &self.checkpoints
    }

    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn backends(&self) -> Arc<Backends> {
        Arc::clone(&self.backends)
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    pub fn sources(&self) -> &Arc<Sources> {
        &self.sources
    }

    pub fn views(&self) -> &Arc<Views> {
        &self.views
    }

    pub fn keyed_tables(&self) -> &Arc<KeyedTables> {
        &self.keyed
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn roles(&self) -> &Arc<Roles> {
        &self.roles
    }

    /// Runs one statement as `principal`. `params` binds `$1…` of a prepared statement.
    pub async fn execute(
        &self,
        statement: &Statement,
        params: Option<ParamValues>,
        principal: &Principal,
    ) -> Result<Output> {
        match statement {
            Statement::CreateTable(create) => {
                ddl::create_table(&self.storage, create.clone(), principal).await
            }
            Statement::CreateSource(create) => {
                let secrets = self.config.secrets_dir.as_deref();
                ddl::create_source(
                    &self.storage,
                    &self.sources,
                    create.clone(),
                    secrets,
                    principal,
                )
                .await
            }
            Statement::DropSource {
                names,
                if_exists,
                cascade,
            } => ddl::drop_sources(self, names, *if_exists, *cascade, principal).await,
            Statement::CreateView(create) => ddl::create_view(self, create, principal).await,
            Statement::ExplainView(create) => {
                let plan = self.explain_view(create, principal).await?;
                Ok(Output::Rows(self.run(plan, principal).await?))
            }
            Statement::DropView {
                names,
                if_exists,
                cascade,
            } => ddl::drop_views(self, names, *if_exists, *cascade, principal).await,
            Statement::AlterView { name, action } => {
                ddl::alter_view(self, name, action, principal).await
            }
            Statement::ResetSourceOffsets { name, to } => {
                ddl::reset_source_offsets(self, name, *to, principal).await
            }
            Statement::ShowSources
            | Statement::ShowCreateSource(_)
            | Statement::ShowViews
            | Statement::ShowCreateView(_) => {
                let plan = ddl::show_catalog(&self.storage, statement)?
                    .ok_or_else(|| Error::Internal("not a SHOW statement".into()))?;
                Ok(Output::Rows(self.run(plan, principal).await?))
            }
            Statement::Flush => {
                privileges::require_flush(principal)?;
                self.checkpoints.checkpoint("flush").await?;
                Ok(Output::command("FLUSH"))
            }
            Statement::Standard(stmt) => self.execute_standard(stmt, params, principal).await,
        }
    }

    async fn execute_standard(
        &self,
        stmt: &SqlStatement,
        params: Option<ParamValues>,
        principal: &Principal,
    ) -> Result<Output> {
        let (storage, roles) = (&self.storage, &self.roles);
        match stmt {
            SqlStatement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                cascade,
                ..
            } => ddl::drop_tables(self, names, *if_exists, *cascade, principal).await,
            SqlStatement::Drop {
                object_type: ObjectType::Role,
                if_exists,
                names,
                ..
            } => privileges::drop_roles(storage, roles, principal, names, *if_exists).await,
            SqlStatement::CreateRole(create) => {
                privileges::create_role(storage, roles, principal, create).await
            }
            SqlStatement::AlterRole { name, operation } => {
                let name = crate::sql::normalize_ident(name);
                privileges::alter_role(storage, roles, principal, &name, operation).await
            }
            SqlStatement::Grant(grant) => privileges::grant(storage, roles, principal, grant).await,
            SqlStatement::Revoke(revoke) => {
                privileges::revoke(storage, roles, principal, revoke).await
            }
            SqlStatement::Copy {
                source,
                to: false,
                target: CopyTarget::Stdin,
                options,
                legacy_options,
                ..
            } => {
                let CopySource::Table {
                    table_name: name,
                    columns,
                } = source
                else {
                    return Err(Error::unsupported("COPY (query) FROM", None));
                };
                let table = ddl::table(&self.storage, &table_name(name)?)?;
                let manifest = self.storage.manifest();
                privileges::require(&manifest, principal, &table.name, Privilege::Insert)?;
                let columns = ddl::column_indices(&table, columns)?;
                let format = CopyFormat::from_options(options, legacy_options)?;
                Ok(Output::CopyIn(CopyIn {
                    table,
                    columns,
                    format,
                }))
            }
            SqlStatement::Copy {
                source,
                to: true,
                target: CopyTarget::Stdout,
                options,
                legacy_options,
                ..
            } => {
                let format = CopyFormat::from_options(options, legacy_options)?;
                let query = match source {
                    CopySource::Query(query) => SqlStatement::Query(query.clone()),
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let columns = match columns.as_slice() {
                            [] => "*".to_string(),
                            columns => columns
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                        };
                        let sql = format!("SELECT {columns} FROM {table_name}");
                        Parser::parse_sql(&PostgreSqlDialect {}, &sql)?.remove(0)
                    }
                };
                let rows = self.query(&query, None, principal).await?;
                Ok(Output::CopyOut { rows, format })
            }
            SqlStatement::Copy { .. } => Err(Error::unsupported(
                "COPY to or from a server file or program",
                Some("Use COPY … FROM STDIN or COPY … TO STDOUT, as psql's \\copy does."),
            )),
            // Every statement commits on its own; savepoints have nothing to mark.
            SqlStatement::Savepoint { .. } => Ok(Output::Command {
                tag: "SAVEPOINT",
                rows: None,
            }),
            SqlStatement::ReleaseSavepoint { .. } => Ok(Output::Command {
                tag: "RELEASE",
                rows: None,
            }),
            SqlStatement::Insert(_) => {
                let batches: Vec<RecordBatch> = self
                    .query(stmt, params, principal)
                    .await?
                    .try_collect()
                    .await?;
                Ok(Output::Command {
                    tag: "INSERT",
                    rows: Some(inserted_rows(&batches)),
                })
            }
            SqlStatement::Update(update) => dml::update(self, update, principal, params).await,
            SqlStatement::Delete(delete) => dml::delete(self, delete, principal, params).await,
            SqlStatement::Merge { .. } | SqlStatement::Truncate { .. } => Err(Error::unsupported(
                statement_kind(stmt),
                Some("Tables are append-only; write new rows with INSERT or COPY."),
            )),
            _ => {
                let rows = self.query(stmt, params, principal).await?;
                Ok(Output::Rows(match postgres_names(stmt) {
                    Some(names) => relabel(rows, &names),
                    None => rows,
                }))
            }
        }
    }

    /// Plans a standard statement and executes it as `principal`, with `params` bound. A
    /// query whose plan was kept ([`plan_cache`]) is only checked and physically planned;
    /// any other statement goes to the planning threads once, for its logical plan, the
    /// privilege check and its physical plan together (each trip is a thread handoff, a cost
    /// every short query pays).
    pub(crate) async fn query(
        &self,
        stmt: &SqlStatement,
        params: Option<ParamValues>,
        principal: &Principal,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.execution_state(principal);
        let manifest = self.storage.manifest();
        if let Some(cached) = self.plans.get(stmt, &manifest) {
            metrics::PLANS_REUSED.add(1);
            privileges::check_plan(&manifest, principal, &cached.plan)?;
            // As on the planning threads, a panic fails only this statement.
            let planned = AssertUnwindSafe(execute_kept(state, &cached, params));
            return planned
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(offload::panicked(panic.as_ref())));
        }
        let (storage, plans) = (Arc::clone(&self.storage), Arc::clone(&self.plans));
        let (stmt, principal) = (stmt.clone(), principal.clone());
        offload::off_workers(async move {
            let plan = plan_checked(&storage, &state, &stmt).await?;
            privileges::check_plan(&manifest, &principal, &plan)?;
            let optimize = |plan: &LogicalPlan| Ok(state.optimize(plan)?);
            match plans.keep(&stmt, &manifest, &plan, optimize)? {
                Some(cached) => execute_kept(state, &cached, params).await,
                None => Ok(DataFrame::new(state, bind(plan, params)?)
                    .execute_stream()
                    .await?),
            }
        })
        .await
    }

    /// Executes a plan as a stream of batches, as `principal`.
    async fn run(
        &self,
        plan: LogicalPlan,
        principal: &Principal,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.execution_state(principal);
        offload::off_workers(async move { Ok(DataFrame::new(state, plan).execute_stream().await?) })
            .await
    }

    /// The session's state for one statement run by `principal`, which functions and catalog
    /// tables that answer per caller find in its configuration.
    fn execution_state(&self, principal: &Principal) -> SessionState {
        let mut state = self.ctx.state();
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(principal.clone());
        // Functions evaluated while planning read the options as of this mark.
        state.mark_start_execution();
        state
    }

    /// Plans a standard statement, refusing anything that would change state outside our
    /// catalog (DataFusion's own `CREATE VIEW`, `SET` of engine options …).
    pub async fn plan(&self, stmt: &SqlStatement) -> Result<LogicalPlan> {
        if let Some(cached) = self.plans.get(stmt, &self.storage.manifest()) {
            return Ok(cached.plan.clone());
        }
        let (storage, state, stmt) = (Arc::clone(&self.storage), self.ctx.state(), stmt.clone());
        offload::off_workers(async move { plan_checked(&storage, &state, &stmt).await }).await
    }

    /// `plan` as the analyzer leaves it, whose column types are the ones execution yields
    /// (our rules type literals as Postgres does); `plan` itself if it does not analyze yet
    /// (parameters of unknown type).
    pub fn analyzed(&self, plan: &LogicalPlan) -> LogicalPlan {
        let state = self.ctx.state();
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
            .unwrap_or_else(|_| plan.clone())
    }
}

/// Our analyzer rules around DataFusion's, each [`Interruptible`].
fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![
        Arc::new(IntegerLiterals),
        Arc::new(BooleanText),
        Arc::new(ResolveGroupingFunction::new()),
        Arc::new(TypeCoercion::new()),
        Arc::new(NumericDivision),
        Arc::new(ArrayText),
        Arc::new(RoundingCasts),
        Arc::new(ByteaText),
    ];
    rules
        .into_iter()
        .map(|rule| Arc::new(Interruptible(rule)) as Arc<dyn AnalyzerRule + Send + Sync>)
        .collect()
}

/// DataFusion's optimizer rules, with [`BareAggregates`] right after expression simplification,
/// each [`Interruptible`].
fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "simplify_expressions")
        .map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(BareAggregates));
    rules
        .into_iter()
        .map(|rule| Arc::new(Interruptible(rule)) as Arc<dyn OptimizerRule + Send + Sync>)
        .collect()
}

/// DataFusion's physical optimizer rules, with [`SortIntoUnion`] right before its own sort
/// pushdown and [`CheckedArithmetic`] last.
fn physical_optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "PushdownSort")
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(SortIntoUnion));
    rules.push(Arc::new(CheckedArithmetic));
    rules
}

/// DataFusion's runtime: one memory pool of `memory_limit` for every query, fair between the
/// operators that can spill (sorts, joins, aggregates), which spill under the data folder's
/// `tmp/` (the OS's temporary folder for S3 storage). What cannot spill fails its query with
/// 53200 instead of growing the process until the kernel kills it.
fn runtime(config: &Config) -> Result<Arc<RuntimeEnv>> {
    let limit = usize::try_from(config.memory_limit).unwrap_or(usize::MAX);
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(limit),
        NonZeroUsize::new(3).expect("non-zero"),
    );
    let mut builder = RuntimeEnvBuilder::new().with_memory_pool(Arc::new(pool));
    if let StorageLocation::Local(root) = &config.storage {
        // Spill files of a previous run are of no use: their queries ended with it.
        let tmp = root.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::Storage {
            message: format!("cannot create the spill folder {}: {e}", tmp.display()),
            retryable: false,
        })?;
        builder = builder.with_temp_file_path(tmp);
    }
    tracing::info!(
        memory_limit = config.memory_limit,
        "queries share a memory pool of {} MiB (--memory-limit)",
        config.memory_limit >> 20
    );
    Ok(builder.build_arc()?)
}

/// Executes a kept plan: its optimized plan when it has one and no parameters are bound,
/// else its logical plan, bound and optimized for this run.
async fn execute_kept(
    state: SessionState,
    cached: &Cached,
    params: Option<ParamValues>,
) -> Result<SendableRecordBatchStream> {
    match (&cached.optimized, params) {
        (Some(optimized), None) => {
            let physical = state
                .query_planner()
                .create_physical_plan(optimized, &state)
                .await?;
            Ok(execute_stream(physical, state.task_ctx())?)
        }
        (_, params) => {
            let plan = bind(cached.plan.clone(), params)?;
            Ok(DataFrame::new(state, plan).execute_stream().await?)
        }
    }
}

/// The plan of a standard statement: a `SHOW`'s answer, or DataFusion's plan of anything that
/// does not change state outside our catalog (DataFusion's own `CREATE VIEW`, `SET` of engine
/// options … are refused).
async fn plan_checked(
    storage: &Storage,
    state: &SessionState,
    stmt: &SqlStatement,
) -> Result<LogicalPlan> {
    if let Some(output) = ddl::show(storage, stmt)? {
        return Ok(output);
    }
    let plan = plan_standard(state, stmt).await?;
    match &plan {
        LogicalPlan::Ddl(ddl) => Err(Error::unsupported(
            ddl.name().to_string(),
            Some("SluiceDB manages its catalog itself: use CREATE TABLE and DROP TABLE."),
        )),
        LogicalPlan::Statement(s) => Err(Error::unsupported(s.name().to_string(), None)),
        LogicalPlan::Copy(_) => Err(Error::unsupported("COPY TO", None)),
        _ => Ok(plan),
    }
}

/// DataFusion's plan of a standard statement.
async fn plan_standard(state: &SessionState, stmt: &SqlStatement) -> Result<LogicalPlan> {
    match state
        .statement_to_plan(DfStatement::Statement(Box::new(stmt.clone())))
        .await
    {
        // Postgres allows two result columns of one name (`d.id` and a subquery named
        // `id`); DataFusion does not. The client sees the Postgres names either way
        // (`postgres_names`).
        Err(e)
            if e.to_string().contains("unique expression names")
                || e.to_string().contains("which would be ambiguous") =>
        {
            match with_distinct_names(stmt) {
                Some(renamed) => Ok(state
                    .statement_to_plan(DfStatement::Statement(Box::new(renamed)))
                    .await?),
                None => Err(e.into()),
            }
        }
        planned => Ok(planned?),
    }
}

/// Whether a standard statement is planned by DataFusion (and so has a schema and parameters).
pub fn plans_rows(stmt: &SqlStatement) -> bool {
    !matches!(
        stmt,
        SqlStatement::Drop { .. }
            | SqlStatement::Copy { .. }
            | SqlStatement::Update(_)
            | SqlStatement::Delete(_)
            | SqlStatement::Merge { .. }
            | SqlStatement::Truncate { .. }
            | SqlStatement::Savepoint { .. }
            | SqlStatement::ReleaseSavepoint { .. }
    )
}

/// The result schema a client sees: the plan's, with Postgres column names.
pub fn result_schema(stmt: &SqlStatement, plan: &LogicalPlan) -> SchemaRef {
    let schema = Arc::new(plan.schema().as_arrow().clone());
    match postgres_names(stmt) {
        Some(names) => rename(&schema, &names),
        None => schema,
    }
}

/// Renames the columns of every batch of `rows`.
fn relabel(rows: SendableRecordBatchStream, names: &[String]) -> SendableRecordBatchStream {
    let schema = rename(&rows.schema(), names);
    let renamed = Arc::clone(&schema);
    let batches = rows.map(move |batch| {
        let batch = batch?;
        Ok(RecordBatch::try_new(
            Arc::clone(&renamed),
            batch.columns().to_vec(),
        )?)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

fn bind(plan: LogicalPlan, params: Option<ParamValues>) -> Result<LogicalPlan> {
    match params {
        Some(params) => Ok(plan.with_param_values(params)?),
        None => Ok(plan),
    }
}

fn statement_kind(stmt: &SqlStatement) -> &'static str {
    match stmt {
        SqlStatement::Update(_) => "UPDATE",
        SqlStatement::Delete(_) => "DELETE",
        SqlStatement::Merge { .. } => "MERGE",
        _ => "TRUNCATE",
    }
}

/// DataFusion's insert plans return one row with the column `count`.
fn inserted_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .first()
        .and_then(|b| b.column_by_name("count"))
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
        })
        .filter(|c| !c.is_empty())
        .map_or(0, |c| c.value(0))
}

/// Who takes part in checkpoint rounds: every source runner, then every view upstream first,
/// each after its own topic reader.
struct Everyone {
    sources: Arc<Sources>,
    views: Arc<Views>,
}

impl Participants for Everyone {
    fn in_dependency_order(&self) -> Vec<Arc<dyn Participant>> {
        let mut all: Vec<Arc<dyn Participant>> = Vec::new();
        for source in self.sources.all() {
            all.push(source);
        }
        for view in self.views.in_dependency_order() {
            for (input, _) in view.readers() {
                all.push(Arc::new(TopicReader(Arc::clone(&view), *input)));
            }
            all.push(view);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sql::mutate::{Edit, mutated};

    /// Fuzz target: planning any query, however mangled, answers within 10 s, on a plan or an
    /// error: no statement overflows a stack, hangs the planner or takes the process down (a
    /// panic inside planning is that statement's XX000). `scripts/fuzz` runs it longer.
    #[test]
    fn fuzz_plan() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(crate::THREAD_STACK_SIZE)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let args = crate::config::ServeArgs {
            storage: Some(dir.path().to_string_lossy().into_owned()),
            pg_listen: Some("127.0.0.1:0".parse().unwrap()),
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        };
        let config = args.resolve(crate::config::AwsEnv::default()).unwrap();
        let db = runtime.block_on(async {
            let db = Database::open(config).await.unwrap();
            db.execute_script(
                "CREATE TABLE t (id BIGINT NOT NULL, name TEXT, ts TIMESTAMPTZ, a INT, \
                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
                 CREATE TABLE cf (id BIGINT NOT NULL, name TEXT);
                 CREATE TABLE wide (i INT, b BIGINT);",
            )
            .await
            .unwrap();
            db
        });
        // The database is only read here; a failing input fails the whole test.
        let (db, runtime) = (
            std::panic::AssertUnwindSafe(&db),
            std::panic::AssertUnwindSafe(&runtime),
        );
        bolero::check!()
            .with_type::<(u16, Vec<Edit>)>()
            .for_each(|(index, edits)| {
                let sql = mutated(*index, edits);
                let Ok(statements) = crate::sql::parser::parse(&sql) else {
                    return;
                };
                for statement in statements {
                    let Statement::Standard(stmt) = &statement else {
                        continue;
                    };
                    if !matches!(**stmt, SqlStatement::Query(_)) {
                        continue;
                    }
                    let planned = runtime.block_on(async {
                        tokio::time::timeout(Duration::from_secs(10), db.plan(stmt)).await
                    });
                    assert!(planned.is_ok(), "planning took over 10 s: {sql}");
                }
            });
        runtime.block_on(db.shutdown());
    }
}
