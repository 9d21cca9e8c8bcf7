//! The errors a user can see, each with its Postgres SQLSTATE, detail and hint.
//!
//! Every failure that reaches a client goes through [`Error`]: DataFusion, Arrow, object_store and
//! parser errors are classified here once (see [`Error::from_datafusion`]) so the pgwire layer
//! never guesses a code. Messages follow Postgres style: lowercase, no final period, identifiers
//! in double quotes with their kind.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;
use pgwire::error::{ErrorInfo, PgWireError};

/// A user-facing error. Matched exhaustively: adding a variant forces a SQLSTATE decision.
/// `Clone` so that one raised inside DataFusion (behind its `Box`) can come back out whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Syntax(String),
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedRelation { kind: &'static str, name: String },
    #[error("{kind} \"{name}\" already exists")]
    DuplicateRelation { kind: &'static str, name: String },
    #[error("column \"{name}\" does not exist")]
    UndefinedColumn { name: String },
    /// A field taken of a value that has none (`b.value` of an integer); 42703 as in Postgres.
    #[error("{0}")]
    UndefinedField(String),
    #[error("column \"{name}\" specified more than once")]
    DuplicateColumn { name: String },
    #[error("function {name} does not exist")]
    UndefinedFunction { name: String },
    #[error("{message}")]
    InvalidText {
        message: String,
        detail: Option<String>,
    },
    /// Bytes that are not UTF-8, or a NUL, in text input (22021 as in Postgres).
    #[error("{message}")]
    InvalidEncoding {
        message: String,
        detail: Option<String>,
    },
    #[error("{message}")]
    InvalidDatetime {
        message: String,
        detail: Option<String>,
    },
    #[error("{message}")]
    DatatypeMismatch {
        message: String,
        hint: Option<String>,
    },
    #[error("{0}")]
    NumericOutOfRange(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("null value in column \"{column}\" violates not-null constraint")]
    NotNullViolation { column: String },
    #[error("{0}")]
    InvalidTableDefinition(String),
    #[error("{feature} is not supported")]
    FeatureNotSupported {
        feature: String,
        hint: Option<String>,
    },
    #[error("{0}")]
    InvalidParameter(String),
    #[error("more than one row returned by a subquery used as an expression")]
    SubqueryRows,
    /// Work that waits for the pipeline (a checkpoint round, FLUSH) and found it not ready.
    #[error("{0}")]
    NotReady(String),
    /// Input past a configured limit (one COPY record larger than `copy_pending_bytes_max`).
    #[error("{0}")]
    LimitExceeded(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    #[error("parameter \"{0}\" cannot be changed")]
    CantChangeSetting(String),
    #[error("cursor \"{0}\" does not exist")]
    UndefinedCursor(String),
    /// A DROP that would leave views reading nothing, a REBUILD that would feed them twice.
    #[error("cannot {action} {kind} \"{name}\" because other objects depend on it")]
    DependentObjects {
        action: &'static str,
        kind: &'static str,
        name: String,
        dependents: Vec<String>,
    },
    /// A DROP or ALTER of a view that runs a subquery of another view.
    #[error(
        "cannot {action} materialized view \"{name}\" because materialized view \"{whole}\" requires it"
    )]
    PartOfView {
        action: &'static str,
        name: String,
        whole: String,
    },
    #[error("{0}")]
    Plan(String),
    #[error("canceling statement due to user request")]
    QueryCanceled,
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    /// `pg_terminate_backend` named this connection; the error closes it.
    #[error("terminating connection due to administrator command")]
    Terminated,
    #[error("{0}")]
    ProtocolViolation(String),
    #[error("out of memory: {0}")]
    ResourcesExhausted(String),
    /// A failure of the object store or the local disk. `retryable` marks transient failures
    /// (timeouts, unreachable endpoint) that the same statement may succeed on later.
    #[error("storage error: {message}")]
    Storage { message: String, retryable: bool },
    /// The local disk holding `place` (the data folder, spill files) is full.
    #[error("could not write to {place}: No space left on device")]
    DiskFull { place: String },
    /// An external system a source reads from (Kafka) cannot be reached or refuses.
    #[error("{message}")]
    Connector {
        message: String,
        hint: Option<String>,
    },
    /// A state file a checkpoint names cannot be read back.
    #[error("state file \"{path}\" of {owner} cannot be read: {reason}")]
    CorruptState {
        path: String,
        owner: String,
        reason: String,
        hint: Option<String>,
    },
    /// A pattern the regular-expression engine refuses (2201B).
    #[error("{0}")]
    InvalidRegex(String),
    /// `$n` in a statement sent without values for it (42P02).
    #[error("there is no parameter {0}")]
    UndefinedParameter(String),
    /// A substring or overlay position or length out of bounds (22011).
    #[error("{0}")]
    SubstringError(String),
    #[error("role \"{0}\" does not exist")]
    UndefinedRole(String),
    #[error("role \"{0}\" already exists")]
    DuplicateRole(String),
    /// A role name Postgres keeps for itself (`public`, `pg_…`), 42939.
    #[error("{0}")]
    ReservedName(String),
    /// A DROP ROLE of a role that owns relations or holds privileges on them.
    #[error("role \"{name}\" cannot be dropped because some objects depend on it")]
    RoleInUse {
        name: String,
        dependents: Vec<String>,
    },
    /// Something the caller may not do or name (SQLSTATE 42501).
    #[error("{0}")]
    InsufficientPrivilege(String),
    /// A SELECT with more result columns than Postgres allows (54011).
    #[error("{0}")]
    TooManyColumns(String),
    /// An expression nested deeper than planning can follow (`crate::sql::depth`).
    #[error("stack depth limit exceeded")]
    StackDepth,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The Postgres SQLSTATE code of this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedRelation { .. } => "42P01",
            Error::DuplicateRelation { .. } => "42P07",
            Error::UndefinedColumn { .. } | Error::UndefinedField(_) => "42703",
            Error::DuplicateColumn { .. } => "42701",
            Error::UndefinedFunction { .. } => "42883",
            Error::InvalidText { .. } => "22P02",
            Error::InvalidEncoding { .. } => "22021",
            Error::InvalidDatetime { .. } => "22007",
            Error::DatatypeMismatch { .. } => "42804",
            Error::NumericOutOfRange(_) => "22003",
            Error::DivisionByZero => "22012",
            Error::NotNullViolation { .. } => "23502",
            Error::InvalidTableDefinition(_) => "42P16",
            Error::FeatureNotSupported { .. } => "0A000",
            Error::InvalidParameter(_) => "22023",
            Error::SubqueryRows => "21000",
            Error::NotReady(_) => "55000",
            Error::LimitExceeded(_) => "54000",
            Error::UnknownSetting(_) => "42704",
            Error::UndefinedCursor(_) => "34000",
            Error::CantChangeSetting(_) => "55P02",
            Error::DependentObjects { .. } | Error::PartOfView { .. } => "2BP01",
            Error::Plan(_) => "42000",
            Error::QueryCanceled | Error::StatementTimeout => "57014",
            Error::Terminated => "57P01",
            Error::ProtocolViolation(_) => "08P01",
            Error::ResourcesExhausted(_) => "53200",
            Error::Storage { .. } => "58030",
            Error::DiskFull { .. } => "53100",
            Error::Connector { .. } => "08001",
            Error::CorruptState { .. } => "XX001",
            Error::StackDepth => "54001",
            Error::TooManyColumns(_) => "54011",
            Error::InsufficientPrivilege(_) => "42501",
            Error::InvalidRegex(_) => "2201B",
            Error::UndefinedParameter(_) => "42P02",
            Error::SubstringError(_) => "22011",
            Error::UndefinedRole(_) => "42704",
            Error::DuplicateRole(_) => "42710",
            Error::ReservedName(_) => "42939",
            Error::RoleInUse { .. } => "2BP01",
            Error::Config(_) => "F0000",
            Error::Internal(_) => "XX000",
        }
    }

    /// A sentence with more detail, where it helps.
    pub fn detail(&self) -> Option<String> {
        match self {
            Error::InvalidText { detail, .. }
            | Error::InvalidEncoding { detail, .. }
            | Error::InvalidDatetime { detail, .. } => detail.clone(),
            Error::DependentObjects { dependents, .. } => Some(
                dependents
                    .iter()
                    .map(|d| format!("materialized view {d} depends on it"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Error::RoleInUse { dependents, .. } => Some(dependents.join("\n")),
            Error::PartOfView { whole, .. } => Some(format!(
                "It runs a subquery of materialized view \"{whole}\", which creates and drops it."
            )),
            Error::Storage { retryable, .. } => retryable.then(|| {
                "The storage backend did not answer; the statement had no effect.".to_string()
            }),
            Error::Syntax(_)
            | Error::UndefinedRelation { .. }
            | Error::DuplicateRelation { .. }
            | Error::UndefinedColumn { .. }
            | Error::UndefinedField(_)
            | Error::DuplicateColumn { .. }
            | Error::UndefinedFunction { .. }
            | Error::DatatypeMismatch { .. }
            | Error::NumericOutOfRange(_)
            | Error::DivisionByZero
            | Error::NotNullViolation { .. }
            | Error::InvalidTableDefinition(_)
            | Error::FeatureNotSupported { .. }
            | Error::InvalidParameter(_)
            | Error::SubqueryRows
            | Error::NotReady(_)
            | Error::LimitExceeded(_)
            | Error::UnknownSetting(_)
            | Error::CantChangeSetting(_)
            | Error::UndefinedCursor(_)
            | Error::Plan(_)
            | Error::QueryCanceled
            | Error::StatementTimeout
            | Error::Terminated
            | Error::ProtocolViolation(_)
            | Error::ResourcesExhausted(_)
            | Error::DiskFull { .. }
            | Error::Connector { .. }
            | Error::CorruptState { .. }
            | Error::StackDepth
            | Error::TooManyColumns(_)
            | Error::InsufficientPrivilege(_)
            | Error::UndefinedRole(_)
            | Error::DuplicateRole(_)
            | Error::ReservedName(_)
            | Error::InvalidRegex(_)
            | Error::UndefinedParameter(_)
            | Error::SubstringError(_)
            | Error::Config(_)
            | Error::Internal(_) => None,
        }
    }

    /// A sentence that says what to do instead, where we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::FeatureNotSupported { hint, .. }
            | Error::DatatypeMismatch { hint, .. }
            | Error::Connector { hint, .. } => hint.clone(),
            Error::UndefinedRelation { kind, .. } => Some(
                match *kind {
                    "source" => "Run SHOW SOURCES to list the sources that exist.",
                    "materialized view" => {
                        "Run SHOW MATERIALIZED VIEWS to list the views that exist."
                    }
                    "kafka topic" => "Create the topic first, or check the option \"topic\".",
                    _ => "Run SHOW TABLES to list the tables that exist.",
                }
                .to_string(),
            ),
            Error::Storage {
                retryable: true, ..
            } => Some("Check that the object store is reachable, then retry.".to_string()),
            Error::DiskFull { .. } => Some(
                "Free space on that disk. Nothing was written; reads go on, and writes and \
                 checkpoints succeed again once there is room."
                    .to_string(),
            ),
            Error::DependentObjects { .. } => {
                Some("Use DROP … CASCADE to drop the dependent objects too.".to_string())
            }
            Error::PartOfView { action, whole, .. } => Some(format!(
                "You can {action} materialized view \"{whole}\" instead."
            )),
            Error::CorruptState { hint, .. } => hint.clone(),
            Error::StackDepth => Some(format!(
                "Simplify the statement: an expression may nest at most {} operators deep.",
                crate::sql::depth::MAX_DEPTH
            )),
            Error::TooManyColumns(_) => None,
            Error::Syntax(_)
            | Error::InsufficientPrivilege(_)
            | Error::UndefinedRole(_)
            | Error::DuplicateRole(_)
            | Error::ReservedName(_)
            | Error::RoleInUse { .. }
            | Error::InvalidRegex(_)
            | Error::UndefinedParameter(_)
            | Error::SubstringError(_)
            | Error::DuplicateRelation { .. }
            | Error::UndefinedColumn { .. }
            | Error::UndefinedField(_)
            | Error::DuplicateColumn { .. }
            | Error::UndefinedFunction { .. }
            | Error::InvalidText { .. }
            | Error::InvalidEncoding { .. }
            | Error::InvalidDatetime { .. }
            | Error::NumericOutOfRange(_)
            | Error::DivisionByZero
            | Error::NotNullViolation { .. }
            | Error::InvalidTableDefinition(_)
            | Error::InvalidParameter(_)
            | Error::SubqueryRows
            | Error::NotReady(_)
            | Error::LimitExceeded(_)
            | Error::UnknownSetting(_)
            | Error::CantChangeSetting(_)
            | Error::UndefinedCursor(_)
            | Error::Plan(_)
            | Error::QueryCanceled
            | Error::StatementTimeout
            | Error::Terminated
            | Error::ProtocolViolation(_)
            | Error::ResourcesExhausted(_)
            | Error::Storage {
                retryable: false, ..
            }
            | Error::Config(_)
            | Error::Internal(_) => None,
        }
    }

    pub fn unsupported(feature: impl Into<String>, hint: Option<&str>) -> Self {
        Error::FeatureNotSupported {
            feature: feature.into(),
            hint: hint.map(str::to_string),
        }
    }

    pub fn storage(error: object_store::Error) -> Self {
        if is_disk_full(&error) {
            return Error::disk_full();
        }
        let retryable = matches!(error, object_store::Error::Generic { .. });
        Error::Storage {
            message: lowercase_first(&error.to_string()),
            retryable,
        }
    }

    /// [`Error::DiskFull`], naming the data folder when storage is local (and the process has
    /// one: used as a library, it may run several databases).
    pub fn disk_full() -> Self {
        let folders = DATA_FOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        Error::DiskFull {
            place: match folders.as_slice() {
                [folder] => format!("the data folder \"{}\"", folder.display()),
                _ => "the local disk".into(),
            },
        }
    }

    /// Notes a local data folder for [`Error::DiskFull`] messages (when storage opens).
    pub fn set_data_folder(folder: &std::path::Path) {
        let mut folders = DATA_FOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if !folders.iter().any(|f| f == folder) {
            folders.push(folder.to_path_buf());
        }
    }

    /// Classifies a DataFusion error by its root cause. Our own errors raised inside DataFusion
    /// (for example by a table sink) come back out unchanged.
    pub fn from_datafusion(error: DataFusionError) -> Self {
        let root = error.find_root();
        if let DataFusionError::External(inner) = root
            && let Some(ours) = inner.downcast_ref::<Error>()
        {
            return ours.clone();
        }
        match root {
            DataFusionError::SQL(e, _) => Error::Syntax(lowercase_first(&e.to_string())),
            DataFusionError::SchemaError(e, _) => match e.as_ref() {
                SchemaError::FieldNotFound { field, .. } => Error::UndefinedColumn {
                    name: field.name.clone(),
                },
                SchemaError::DuplicateQualifiedField { name, .. }
                | SchemaError::DuplicateUnqualifiedField { name } => {
                    Error::DuplicateColumn { name: name.clone() }
                }
                other => Error::Plan(lowercase_first(&other.to_string())),
            },
            DataFusionError::ArrowError(e, _) => from_arrow(e),
            DataFusionError::NotImplemented(m) => Error::FeatureNotSupported {
                feature: lowercase_first(m),
                hint: None,
            },
            DataFusionError::ObjectStore(e) if is_disk_full(e.as_ref()) => Error::disk_full(),
            DataFusionError::ObjectStore(e) => Error::Storage {
                message: lowercase_first(&e.to_string()),
                retryable: matches!(e.as_ref(), object_store::Error::Generic { .. }),
            },
            DataFusionError::IoError(e) if is_disk_full(e) => Error::disk_full(),
            DataFusionError::IoError(e) => Error::Storage {
                message: lowercase_first(&e.to_string()),
                retryable: false,
            },
            // Reading a Parquet file whose object the store did not give (down, frozen, gone):
            // the store's failure, not ours. A footer's read says so in words; a data page's
            // carries the store's error itself.
            DataFusionError::ParquetError(e)
                if e.to_string().contains("Object Store error")
                    || matches!(e.as_ref(), ParquetError::External(inner)
                        if inner.downcast_ref::<object_store::Error>().is_some()) =>
            {
                Error::Storage {
                    message: format!("cannot read from the object store: {e}"),
                    retryable: true,
                }
            }
            DataFusionError::ResourcesExhausted(m) => Error::ResourcesExhausted(lowercase_first(m)),
            DataFusionError::Plan(m) => from_plan_message(m),
            DataFusionError::Execution(m) => from_execution_message(m),
            other => {
                let message = other.strip_backtrace();
                // DataFusion's own words around the reason.
                let message = message
                    .strip_prefix("External error: ")
                    .or_else(|| message.strip_prefix("Internal error: "))
                    .unwrap_or(&message);
                from_execution_message(message)
            }
        }
    }
}

/// The local data folders opened, for [`Error::DiskFull`] messages.
static DATA_FOLDERS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Whether `error` or one of its causes is a full disk (or quota): ENOSPC, EDQUOT.
pub(crate) fn is_disk_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return true;
        }
        cause = e.source();
    }
    false
}

impl From<DataFusionError> for Error {
    fn from(error: DataFusionError) -> Self {
        Error::from_datafusion(error)
    }
}

impl From<ArrowError> for Error {
    fn from(error: ArrowError) -> Self {
        from_arrow(&error)
    }
}

impl From<object_store::Error> for Error {
    fn from(error: object_store::Error) -> Self {
        Error::storage(error)
    }
}

impl From<sqlparser::parser::ParserError> for Error {
    fn from(error: sqlparser::parser::ParserError) -> Self {
        let message = match error {
            sqlparser::parser::ParserError::TokenizerError(m)
            | sqlparser::parser::ParserError::ParserError(m) => m,
            sqlparser::parser::ParserError::RecursionLimitExceeded => return Error::StackDepth,
        };
        Error::Syntax(postgres_syntax_message(&message))
    }
}

/// sqlparser's "Expected: X, found: Y at Line: 1, Column: 5" in Postgres' words, which
/// clients match on: `syntax error at or near "Y"`, or `syntax error at end of input`.
fn postgres_syntax_message(message: &str) -> String {
    let parsed = message.strip_prefix("Expected: ").and_then(|rest| {
        let (expected, found) = rest.split_once(", found: ")?;
        let found = found.split(" at Line: ").next()?;
        Some((expected, found))
    });
    match parsed {
        Some((expected, "EOF")) => format!("syntax error at end of input: expected {expected}"),
        Some((expected, found)) => {
            format!("syntax error at or near \"{found}\": expected {expected}")
        }
        None => format!("syntax error: {}", lowercase_first(message)),
    }
}

impl From<Error> for DataFusionError {
    fn from(error: Error) -> Self {
        DataFusionError::External(Box::new(error))
    }
}

impl From<Error> for PgWireError {
    fn from(error: Error) -> Self {
        let severity = match error {
            Error::Terminated => "FATAL",
            _ => "ERROR",
        };
        let mut info = ErrorInfo::new(
            severity.to_string(),
            error.sqlstate().to_string(),
            error.to_string(),
        );
        info.detail = error.detail();
        info.hint = error.hint();
        PgWireError::UserError(Box::new(info))
    }
}

fn from_arrow(error: &ArrowError) -> Error {
    match error {
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            let message = lowercase_first(m);
            let lower = message.to_ascii_lowercase();
            if lower.contains("timestamp") || lower.contains("date") || lower.contains("time ") {
                Error::InvalidDatetime {
                    message,
                    detail: None,
                }
            } else {
                Error::InvalidText {
                    message,
                    detail: None,
                }
            }
        }
        ArrowError::DivideByZero => Error::DivisionByZero,
        // A kernel refusing a value it was given (`sqrt(-1)`, `power` of a negative): the
        // user's data, not our fault.
        ArrowError::ComputeError(m) => match from_execution_message(m) {
            Error::Internal(message) => Error::InvalidParameter(message),
            classified => classified,
        },
        ArrowError::ArithmeticOverflow(m) => Error::NumericOutOfRange(lowercase_first(m)),
        // A value past a decimal's precision ("… is too large to store in a Decimal128 …").
        ArrowError::InvalidArgumentError(m) if m.contains("too large to store") => {
            Error::NumericOutOfRange(lowercase_first(m))
        }
        // datafusion-pg-catalog looks a `'name'::regclass` up with a scalar subquery, whose
        // NULL for an unknown name fails its non-nullable column; Postgres says 42P01.
        ArrowError::InvalidArgumentError(m) if m.contains("'regclass'") => {
            Error::UndefinedRelation {
                kind: "relation",
                name: "given to ::regclass".into(),
            }
        }
        // A NULL written to a NOT NULL column, caught where DataFusion builds the rows (the
        // name is the column of the VALUES list).
        ArrowError::InvalidArgumentError(m)
            if m.ends_with("non-nullable but contains null values") =>
        {
            Error::NotNullViolation {
                column: m.split('\'').nth(1).unwrap_or_default().to_string(),
            }
        }
        ArrowError::IoError(_, e) if is_disk_full(e) => Error::disk_full(),
        ArrowError::IoError(m, _) => Error::Storage {
            message: lowercase_first(m),
            retryable: false,
        },
        ArrowError::ExternalError(e) => match e.downcast_ref::<Error>() {
            Some(ours) => ours.clone(),
            None => Error::Internal(lowercase_first(&e.to_string())),
        },
        other => Error::Internal(lowercase_first(&other.to_string())),
    }
}

/// DataFusion reports most planning failures as `Plan(String)`; the text is the only signal.
fn from_plan_message(message: &str) -> Error {
    let lower = message.to_ascii_lowercase();
    if let Some(name) = lower
        .strip_prefix("table '")
        .and_then(|rest| rest.split('\'').next())
        && lower.ends_with("not found")
    {
        let name = name.rsplit('.').next().unwrap_or(name).to_string();
        return Error::UndefinedRelation {
            kind: "relation",
            name,
        };
    }
    if lower.starts_with("invalid function") {
        let name = message.split('\'').nth(1).unwrap_or(message).to_string();
        return Error::UndefinedFunction { name };
    }
    if lower.contains("failed to match any signature") {
        return from_execution_message(message);
    }
    if lower.contains("coerc")
        || lower.contains("cannot infer")
        || lower.contains("no function matches")
        || lower.contains("does not support")
        || lower.contains("type mismatch")
        || lower.contains("inserting query must have")
        || lower.contains("expected")
    {
        return Error::DatatypeMismatch {
            message: lowercase_first(message),
            hint: None,
        };
    }
    Error::Plan(lowercase_first(message))
}

/// DataFusion's execution errors are about the values a statement was given, nearly always:
/// each known one gets Postgres' SQLSTATE, and what is left is XX000.
fn from_execution_message(message: &str) -> Error {
    let lower = message.to_ascii_lowercase();
    let text = || lowercase_first(message);
    if lower.contains("cannot access field") {
        return Error::UndefinedField(text());
    }
    // "Placeholder '$1' was not provided a value for execution."
    if let Some((_, rest)) = message.split_once("laceholder '")
        && let Some((name, _)) = rest.split_once("' was not provided")
    {
        return Error::UndefinedParameter(name.to_string());
    }
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return Error::DivisionByZero;
    }
    if lower.contains("overflow") {
        return Error::NumericOutOfRange(text());
    }
    if lower.contains("scalar subquery returned more than one row") {
        return Error::SubqueryRows;
    }
    if lower.contains("regex parse error") {
        let reason = message.lines().last().unwrap_or(message).trim();
        return Error::InvalidRegex(format!("invalid regular expression: {reason}"));
    }
    if lower.contains("negative count not allowed") || lower.contains("overlay start position") {
        return Error::SubstringError(text());
    }
    if lower.contains("error parsing timestamp") || lower.contains("error parsing date") {
        return Error::InvalidDatetime {
            message: text(),
            detail: None,
        };
    }
    if lower.contains("step can't be 0") {
        return Error::InvalidParameter("step size cannot equal zero".into());
    }
    if lower.contains("failed to match any signature") {
        let name = message.split('\'').nth(1).unwrap_or("a function");
        return Error::UndefinedFunction {
            name: format!("{name}(…) with these argument types"),
        };
    }
    const INVALID_ARGUMENTS: &[&str] = &[
        "negative number",
        "out of range",
        "granularity",
        "not supported",
        "not recognized",
        "invalid unicode scalar value",
        "must not be zero",
        "must be at least",
        "requires a positive integer",
    ];
    if INVALID_ARGUMENTS.iter().any(|p| lower.contains(p)) {
        return Error::InvalidParameter(text());
    }
    if lower.contains("cast") || lower.contains("parse") {
        return Error::InvalidText {
            message: text(),
            detail: None,
        };
    }
    Error::Internal(text())
}

/// Postgres messages start lowercase; DataFusion's and Arrow's often do not.
pub fn lowercase_first(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) if !chars.clone().next().is_some_and(char::is_uppercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => message.to_string(),
    }
}

/// The text a panic carries (its `&str` or `String` payload), for the error it becomes.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_use_postgres_wording() {
        let error = |sql: &str| {
            Error::from(
                sqlparser::parser::Parser::parse_sql(
                    &sqlparser::dialect::PostgreSqlDialect {},
                    sql,
                )
                .unwrap_err(),
            )
            .to_string()
        };
        assert_eq!(
            error("SELEC 1"),
            "syntax error at or near \"SELEC\": expected an SQL statement"
        );
        assert!(error("SELECT 1 +").starts_with("syntax error at end of input"));
    }

    #[test]
    fn classifies_datafusion_errors() {
        let e = Error::from(DataFusionError::Plan(
            "table 'sluice.public.nope' not found".into(),
        ));
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(e.to_string(), "relation \"nope\" does not exist");

        let e = Error::from(DataFusionError::NotImplemented("UPDATE".into()));
        assert_eq!(e.sqlstate(), "0A000");

        let inner = Error::DuplicateRelation {
            kind: "table",
            name: "t".into(),
        };
        let e = Error::from(DataFusionError::from(inner).context("while inserting"));
        assert_eq!(e.sqlstate(), "42P07");

        // Execution errors a user's arguments cause, as DataFusion words them.
        for (message, code) in [
            ("unsupported date_trunc granularity: 'foo'", "22023"),
            ("date part 'FOO' not supported", "22023"),
            (
                "Error parsing timestamp from 'x' using format '%Y'",
                "22007",
            ),
            ("step can't be 0 for function generate_series", "22023"),
            ("invalid Unicode scalar value: -1", "22023"),
            ("field position must not be zero", "22023"),
            ("negative count not allowed: -1", "22011"),
            ("overlay start position must be at least 1: 0", "22011"),
            ("NTILE requires a positive integer", "22023"),
            (
                "Cast error: Cannot cast string 'x' to value of Int32 type",
                "22P02",
            ),
        ] {
            let e = Error::from(DataFusionError::Execution(message.into()));
            assert_eq!(e.sqlstate(), code, "{message}");
        }
        let regex = DataFusionError::External(
            "regex parse error:\n    (\n    ^\nerror: unclosed group".into(),
        );
        assert_eq!(
            Error::from(regex).to_string(),
            "invalid regular expression: error: unclosed group"
        );
        let signature = DataFusionError::Internal(
            "Function 'md5' failed to match any signature, errors: …".into(),
        );
        assert_eq!(Error::from(signature).sqlstate(), "42883");
        let parameter = DataFusionError::Internal(
            "Placeholder '$2' was not provided a value for execution.".into(),
        );
        let parquet = DataFusionError::ParquetError(Box::new(
            datafusion::parquet::errors::ParquetError::General(
                "Failed to fetch metadata for file t.parquet: Object Store error: Generic S3 \
                 error: Error performing GET http://s3/t.parquet - HTTP error: error sending \
                 request"
                    .into(),
            ),
        ));
        assert_eq!(Error::from(parquet).sqlstate(), "58030");
        let page = DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(
            object_store::Error::Generic {
                store: "S3",
                source: "Error performing GET http://s3/t.parquet - HTTP error".into(),
            },
        ))));
        assert_eq!(Error::from(page).sqlstate(), "58030");
        let e = Error::from(parameter);
        assert_eq!(
            (e.to_string().as_str(), e.sqlstate()),
            ("there is no parameter $2", "42P02")
        );
        // What is left is ours to fix: XX000.
        let e = Error::from(DataFusionError::Execution(
            "a state we never expected".into(),
        ));
        assert_eq!(e.sqlstate(), "XX000");
    }

    #[test]
    fn lowercases_only_sentences() {
        assert_eq!(lowercase_first("Cannot cast."), "cannot cast");
        assert_eq!(lowercase_first("SQL error"), "SQL error");
    }
}
