//! One Postgres connection: simple and extended query protocol, COPY FROM STDIN, startup.
//!
//! A [`Session`] is created per accepted socket, so per-connection state (the COPY in progress,
//! the cancel signal) lives here and dies with the connection. Statements are parsed by
//! [`crate::sql::parser`] and run by [`Database::execute`]; `BEGIN`/`COMMIT` are answered by
//! datafusion-postgres' transaction hook and `SET`/`SHOW` by [`crate::pg::settings`], per connection.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use futures::{Sink, SinkExt};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::copy::{
    CopyHandler, send_copy_both_response, send_copy_in_response, send_copy_out_response,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response,
    send_ready_for_query,
};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ErrorHandler, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Bind, BindComplete, Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;

use super::backends::Full;
use super::backends::{Backend, Backends};
use super::cancel::CancelSignal;
use super::copy_in::CopyInProgress;
use super::encode;
use super::login::Login;
use super::parameters::{self, Parameter};
use crate::catalog::roles::Principal;
use crate::database::{Database, Output, ddl, plans_rows, result_schema};
use crate::error::Error;
use crate::metrics;
use crate::pg::settings;
use crate::sql::{Statement, parser};
use sqlparser::ast::Statement as SqlStatement;

/// A statement prepared by the extended protocol. The plan is made at `Parse` only to describe
/// parameters and result columns; `Execute` plans again so it reads the newest data (or takes
/// the plan kept for it, which reads the newest data too: `database::plan_cache`).
#[derive(Debug)]
pub struct Prepared {
    statement: Statement,
    /// The result columns, typed as execution yields them (the analyzed plan's); `None` for a
    /// statement without rows.
    columns: Option<SchemaRef>,
    parameters: Vec<Parameter>,
}

/// The state of one connection.
pub struct Session {
    db: Arc<Database>,
    backends: Arc<Backends>,
    signal: Arc<CancelSignal>,
    /// This connection in `backends`, once its login has succeeded.
    backend: OnceLock<Arc<Backend>>,
    copy: tokio::sync::Mutex<Option<CopyInProgress>>,
    hooks: Vec<Arc<dyn QueryHook>>,
    parser: Arc<StatementParser>,
}

/// Parses statements for the extended protocol and describes them.
pub struct StatementParser {
    db: Arc<Database>,
    hooks: Vec<Arc<dyn QueryHook>>,
}

impl Session {
    pub fn new(db: Arc<Database>, backends: Arc<Backends>) -> Arc<Self> {
        metrics::CONNECTIONS_ACTIVE.add(1);
        let hooks: Vec<Arc<dyn QueryHook>> = vec![Arc::new(TransactionStatementHook)];
        let parser = Arc::new(StatementParser {
            db: Arc::clone(&db),
            hooks: hooks.clone(),
        });
        Arc::new(Session {
            db,
            backends,
            signal: Arc::new(CancelSignal::new()),
            backend: OnceLock::new(),
            copy: tokio::sync::Mutex::new(None),
            hooks,
            parser,
        })
    }

    /// Lists the connection (for cancel requests and `pg_stat_activity`) once its login has
    /// succeeded.
    /// Whether `max_connections` connections are logged in already: a new one is refused at its
    /// startup message, as Postgres does.
    pub fn no_room(&self) -> bool {
        self.backends.is_full()
    }

    /// Whether `user` is a superuser now.
    pub fn is_superuser(&self, user: &str) -> bool {
        self.db.roles().principal(user).superuser
    }

    /// Registers the connection of `user` (`superuser` or not), if there is room:
    /// `max_connections` may be logged in at once, the last reserved for superusers.
    pub fn started<C: ClientInfo>(&self, client: &C, superuser: bool) -> Result<(), Full> {
        let (pid, secret) = client.pid_and_secret_key();
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        tracing::debug!(pid, user, "connection started");
        let backend = self.backends.register(
            pid,
            secret.to_bytes(),
            user,
            superuser,
            client.socket_addr(),
            Arc::clone(&self.signal),
        )?;
        self.backend.set(backend).map_err(|_| Full::All)
    }

    /// Resolves once `pg_terminate_backend` named this connection.
    pub async fn terminated(&self) {
        self.signal.terminated().await;
    }

    /// Cancels the running statement, as a CancelRequest would.
    pub fn cancel(&self) {
        self.signal.cancel();
    }

    /// Whether a statement is running (or streaming its rows).
    pub fn is_running(&self) -> bool {
        self.backend.get().is_some_and(|b| b.is_running())
    }

    /// Parses and runs the text of one statement of a Query message.
    async fn run_text<C>(&self, client: &mut C, text: &str) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut statements = parser::parse(text).inspect_err(log_error)?;
        match (statements.pop(), statements.is_empty()) {
            (Some(statement), true) => {
                self.run(client, &statement, None, &Format::UnifiedText)
                    .await
            }
            _ => Err(Error::Internal(format!("not one statement: {text}")).into()),
        }
    }

    /// Runs one statement and encodes its output.
    async fn run<C>(
        &self,
        client: &mut C,
        statement: &Statement,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        metrics::QUERIES.add(1);
        let running = self.backend.get().map(|backend| {
            let application_name = client.metadata().get("application_name");
            backend.running(statement, application_name.map_or("", String::as_str))
        });
        if let Statement::Standard(stmt) = statement {
            if let SqlStatement::Deallocate { name, .. } = stmt.as_ref() {
                // `DEALLOCATE ALL` has nothing to enumerate: pgwire replaces a statement
                // parsed again under the same name, which is all clients rely on.
                if !name.value.eq_ignore_ascii_case("all") {
                    client.portal_store().rm_statement(&name.value);
                }
                return Ok(Response::Execution(Tag::new("DEALLOCATE")));
            }
            for hook in &self.hooks {
                if let Some(response) = hook
                    .handle_simple_query(stmt, self.db.session(), client)
                    .await
                {
                    return response;
                }
            }
            if let Some(applied) = settings::apply(stmt, client.metadata_mut()) {
                let applied = applied.inspect_err(log_error)?;
                report_settings(client, applied.report).await?;
                let options = Arc::new(settings::format_options(client.metadata()));
                return encode::response(
                    applied.output,
                    format,
                    options,
                    self.signal.token(),
                    running,
                );
            }
        }
        let bound = match statement {
            Statement::Standard(stmt) => {
                let caller = settings::Caller {
                    user: client.metadata().get("user").map_or("", String::as_str),
                    pid: client.pid_and_secret_key().0,
                    metadata: client.metadata(),
                };
                let bound = settings::bind_caller(stmt, &caller);
                // A set_config call is one of the calls bind_caller binds.
                if bound.is_some() {
                    let report = settings::set_configs(stmt, client.metadata_mut())
                        .inspect_err(log_error)?;
                    report_settings(client, report).await?;
                }
                bound.map(|s| Statement::Standard(Box::new(s)))
            }
            _ => None,
        };
        let statement = bound.as_ref().unwrap_or(statement);
        let timeout = settings::timeout(client.metadata(), "statement_timeout")
            .unwrap_or(self.db.config().statement_timeout);
        let token = self.signal.token().with_timeout(timeout);
        let principal = principal(&self.db, client);
        let output = tokio::select! {
            output = self.db.execute(statement, params, &principal) => output,
            () = token.clone().cancelled() => Err(token.error()),
        };
        let output = match output.inspect_err(log_error)? {
            Output::Warned { warning, output } => {
                let mut notice = ErrorInfo::new("WARNING".into(), "01000".into(), warning.message);
                notice.hint = warning.hint;
                client
                    .feed(PgWireBackendMessage::NoticeResponse(notice.into()))
                    .await?;
                *output
            }
            output => output,
        };
        if let Output::CopyIn(copy) = &output {
            let progress = CopyInProgress::start(&self.db, copy.clone());
            *self.copy.lock().await = Some(progress);
        }
        let options = Arc::new(settings::format_options(client.metadata()));
        encode::response(output, format, options, token, running)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        metrics::CONNECTIONS_ACTIVE.add(-1);
        if let Some(backend) = self.backend.get() {
            self.backends.unregister(backend.pid());
        }
    }
}

/// Tells the client the new values of reported settings (ParameterStatus).
async fn report_settings<C>(client: &mut C, report: Vec<(String, String)>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (name, value) in report {
        client
            .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name, value,
            )))
            .await?;
    }
    Ok(())
}

/// The role a connection's next statement runs as, as the catalog has it now.
fn principal<C: ClientInfo>(db: &Database, client: &C) -> Principal {
    let user = client.metadata().get("user").map_or("", String::as_str);
    db.roles().principal(user)
}

fn log_error(error: &Error) {
    metrics::QUERY_ERRORS.add(1);
    match error {
        Error::Storage { .. } | Error::DiskFull { .. } | Error::Internal(_) => {
            tracing::warn!(sqlstate = error.sqlstate(), error = %error, "statement failed")
        }
        _ => tracing::debug!(sqlstate = error.sqlstate(), error = %error, "statement failed"),
    }
}

/// The longest Query message parsed whole before it is split: one statement, the common case,
/// is then parsed once rather than twice, and the syntax trees held stay small.
const PARSED_WHOLE_MAX: usize = 64 << 10;

/// A statement of a Query message: parsed already, or a text parsed when its turn comes.
enum Part {
    Parsed(Box<Statement>),
    Text(String),
}

/// The one statement of a short Query message; `None` for several, none, or a syntax error
/// (which [`parser::split`] then reports as it does for any message).
fn parsed_whole(query: &str) -> Option<Statement> {
    if query.len() > PARSED_WHOLE_MAX {
        return None;
    }
    let mut statements = parser::parse(query).ok()?;
    match statements.len() {
        1 => statements.pop(),
        _ => None,
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    /// Runs the statements of one Query message one at a time, sending each one's response
    /// before the next runs. pgwire's default runs them all first and holds every response
    /// until the last (100 000 `SELECT 1;` held 2 GB before a byte was sent).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        let parts = match parsed_whole(&query.query) {
            Some(statement) => vec![Part::Parsed(Box::new(statement))],
            None => {
                let texts = parser::split(&query.query).inspect_err(log_error)?;
                texts.into_iter().map(Part::Text).collect()
            }
        };
        if parts.is_empty() {
            send_response(client, Response::EmptyQuery, &mut status).await?;
        }
        for part in &parts {
            let ran = match part {
                Part::Parsed(statement) => {
                    self.run(client, statement, None, &Format::UnifiedText)
                        .await
                }
                Part::Text(text) => self.run_text(client, text).await,
            };
            let response = match ran {
                Ok(response) => response,
                Err(PgWireError::UserError(info)) => Response::Error(info),
                Err(other) => return Err(other),
            };
            // Postgres skips the rest of a multi-statement query after an error.
            let failed = matches!(response, Response::Error(_));
            send_response(client, response, &mut status).await?;
            if failed {
                break;
            }
        }
        // A COPY in progress answers ReadyForQuery when it ends.
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(status);
            send_ready_for_query(client, status).await?;
        }
        Ok(())
    }

    /// Never called: `on_query` answers Query messages itself.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(Error::Internal("queries are answered by Session::on_query".into()).into())
    }
}

/// Sends one statement's response, as pgwire's default query loop does, and follows the
/// transaction status it implies.
async fn send_response<C>(
    client: &mut C,
    response: Response,
    status: &mut TransactionStatus,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?
        }
        Response::Query(results) => send_query_response(client, results, true).await?,
        Response::Execution(tag) => send_execution_response(client, tag).await?,
        Response::TransactionStart(tag) => {
            send_execution_response(client, tag).await?;
            *status = status.to_in_transaction_state();
        }
        Response::TransactionEnd(tag) => {
            send_execution_response(client, tag).await?;
            *status = status.to_idle_state();
        }
        Response::Error(error) => {
            client
                .feed(PgWireBackendMessage::ErrorResponse((*error).into()))
                .await?;
            *status = status.to_error_state();
        }
        Response::CopyIn(copy) => {
            send_copy_in_response(client, copy).await?;
            client.set_state(PgWireConnectionState::CopyInProgress(false));
        }
        Response::CopyOut(copy) => send_copy_out_response(client, copy).await?,
        Response::CopyBoth(copy) => {
            send_copy_both_response(client, copy).await?;
            client.set_state(PgWireConnectionState::CopyInProgress(false));
        }
    }
    Ok(())
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Arc<Prepared>>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = parser::parse(sql).inspect_err(log_error)?;
        if statements.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            )
            .into());
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let mut plan;
        if let Statement::Standard(stmt) = &statement {
            plan = settings::describe(stmt);
            if plan.is_none() {
                for hook in &self.hooks {
                    if let Some(hooked) = hook
                        .handle_extended_parse_query(stmt, self.db.session(), client)
                        .await
                    {
                        plan = Some(hooked?);
                        break;
                    }
                }
            }
            if plan.is_none() {
                // UPDATE and DELETE: their parameters are those of the query they run.
                plan = crate::database::dml::parameters_plan(&self.db, stmt).await;
            }
            if plan.is_none() && plans_rows(stmt) {
                // Described as it will run: with the connection's values bound (`user`).
                let caller = settings::Caller {
                    user: client.metadata().get("user").map_or("", String::as_str),
                    pid: client.pid_and_secret_key().0,
                    metadata: client.metadata(),
                };
                let bound = settings::bind_caller(stmt, &caller);
                let described = bound.as_ref().unwrap_or(stmt);
                plan = Some(self.db.plan(described).await.inspect_err(log_error)?);
            }
        } else if let Statement::ExplainView(create) = &statement {
            let principal = principal(&self.db, client);
            let explained = self.db.explain_view(create, &principal).await;
            plan = Some(explained.inspect_err(log_error)?);
        } else {
            plan = ddl::show_catalog(self.db.storage(), &statement).inspect_err(log_error)?;
        }
        let parameters = parameters::parameters(&statement, plan.as_ref())?;
        // Worked out once here: clients describe a statement again on every execution.
        let columns = match (&statement, &plan) {
            (_, Some(LogicalPlan::Dml(_) | LogicalPlan::Ddl(_)) | None) => None,
            (Statement::Standard(stmt), _) if !plans_rows(stmt) => None,
            (Statement::Standard(stmt), Some(plan)) => {
                Some(result_schema(stmt, &self.db.analyzed(plan)))
            }
            (_, Some(plan)) => Some(Arc::new(plan.schema().as_arrow().clone())),
        };
        Ok(Some(Arc::new(Prepared {
            statement,
            columns,
            parameters,
        })))
    }

    fn get_parameter_types(&self, prepared: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(parameters::described(&prepared.parameters))
    }

    fn get_result_schema(
        &self,
        prepared: &Arc<Prepared>,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match &prepared.columns {
            Some(columns) => encode::fields(columns, format, None),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Arc<Prepared>;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        Arc::clone(&self.parser)
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire answers a statement that has parameters but no result columns (an INSERT)
        // with an empty RowDescription; Postgres sends NoData, and pgjdbc reads the former as
        // "a result was returned". Answer those ourselves.
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let response = self.do_describe_statement(client, &stmt).await?;
                if response.fields.is_empty() {
                    let types = response.parameters.iter().map(|t| t.oid()).collect();
                    client
                        .feed(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(types),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    /// pgwire's Bind, with Postgres' check that it supplies as many values as the statement
    /// has parameters (pgwire took extra values, and planned with the missing ones unbound).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let statement = client.portal_store().get_statement(name);
        // As in Postgres: the parameters the statement names, or as many as Parse typed (a
        // driver's query we answer with an equivalent may no longer name them all).
        let required = match &statement {
            Some(Entry::Value(stored)) => stored
                .statement
                .parameters
                .len()
                .max(stored.parameter_types.len()),
            Some(Entry::Empty) => 0,
            None => return Err(PgWireError::StatementNotFound(name.to_owned())),
        };
        if message.parameters.len() != required {
            let shown = message.statement_name.as_deref().unwrap_or_default();
            return Err(Error::ProtocolViolation(format!(
                "bind message supplies {} parameters, but prepared statement \"{shown}\" requires {required}",
                message.parameters.len()
            ))
            .into());
        }
        match statement {
            Some(Entry::Value(stored)) => {
                let portal = Portal::try_new(&message, stored)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            _ => {
                let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal);
            }
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let params = parameters::values(portal, &prepared.parameters)?;
        self.run(
            client,
            &prepared.statement,
            params,
            &portal.result_column_format,
        )
        .await
    }
}

#[async_trait]
impl CopyHandler for Session {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Errors are kept and reported at CopyDone: the client keeps sending until then.
        if let Some(copy) = self.copy.lock().await.as_mut() {
            copy.push(&data.data).await;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let copy = self.copy.lock().await.take();
        let Some(copy) = copy else {
            return Err(
                Error::ProtocolViolation("CopyDone without COPY in progress".into()).into(),
            );
        };
        let rows = copy.finish().await.inspect_err(log_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Dropping the COPY in progress aborts its file: nothing of it is committed.
        self.copy.lock().await.take();
        let mut info = pgwire::error::ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        );
        info.detail = Some("No rows of this COPY were written.".into());
        PgWireError::UserError(Box::new(info))
    }
}

/// Logs protocol-level failures (malformed messages, broken sockets) that never reach `run`.
pub struct ErrorLog;

impl ErrorHandler for ErrorLog {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        match error {
            PgWireError::UserError(info) => {
                tracing::debug!(code = %info.code, message = %info.message, "error sent")
            }
            other => tracing::info!(error = %other, "protocol error"),
        }
    }
}

/// The handlers of one connection.
pub struct ConnectionHandlers {
    pub session: Arc<Session>,
    pub login: Arc<Login>,
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.login)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.session)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(ErrorLog)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.session.backends)
    }
}
