//! Session settings, as Postgres keeps them per connection: `SET`, `RESET`, `SHOW`, `DISCARD
//! ALL`, and the per-connection answers of `current_setting()`, `current_user` and
//! `pg_backend_pid()`.
//!
//! Drivers and pools send these constantly (`SET extra_float_digits = 3`, `SET application_name`,
//! `SHOW TRANSACTION ISOLATION LEVEL`, `DISCARD ALL` when a pooled connection is returned), and
//! they must never touch another connection: values live in the connection's metadata, where
//! pgwire's formatting also reads `DateStyle`, `bytea_output` and `extra_float_digits`. Unknown
//! names fail with 42704 as in Postgres, except dotted custom names (`myapp.tenant`), which
//! Postgres accepts too.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use pgwire::types::format::FormatOptions;
use sqlparser::ast::{
    CastKind, CloseCursor, DataType as SqlType, DiscardObject, Expr, Function, Ident, Reset,
    SelectItem, Set, SetExpr, SetSessionAuthorizationParamKind, Statement as SqlStatement, Value,
    visit_expressions, visit_expressions_mut,
};

use crate::database::Output;
use crate::error::{Error, Result};
use crate::pg::functions::PG_COMPAT_VERSION;

/// Every setting a client may SET or SHOW, with its default, as Postgres spells them.
/// `server_version` and friends are read-only, as in Postgres.
const SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("block_size", "8192"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("DateStyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("idle_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("IntervalStyle", "postgres"),
    ("is_superuser", "on"),
    ("jit", "off"),
    ("lc_collate", "en_US.UTF-8"),
    ("lc_ctype", "en_US.UTF-8"),
    ("lc_messages", "en_US.UTF-8"),
    ("lc_monetary", "en_US.UTF-8"),
    ("lc_numeric", "en_US.UTF-8"),
    ("lc_time", "en_US.UTF-8"),
    ("lock_timeout", "0"),
    ("max_function_args", "100"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("row_security", "on"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", ""),
    ("server_version_num", ""),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("synchronize_seqscans", "on"),
    ("TimeZone", "UTC"),
    ("transaction_deferrable", "off"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
    ("work_mem", "4MB"),
    ("xmloption", "content"),
];

const READ_ONLY: &[&str] = &[
    "block_size",
    "integer_datetimes",
    "is_superuser",
    "lc_collate",
    "lc_ctype",
    "max_function_args",
    "max_identifier_length",
    "max_index_keys",
    "server_encoding",
    "server_version",
    "server_version_num",
];

/// Settings a Postgres server reports to the client (ParameterStatus) whenever they change.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "standard_conforming_strings",
    "TimeZone",
];

/// `server_version` as reported at startup and by SHOW.
pub fn server_version() -> String {
    format!(
        "{PG_COMPAT_VERSION} (SluiceDB {})",
        env!("CARGO_PKG_VERSION")
    )
}

fn server_version_num() -> String {
    let mut parts = PG_COMPAT_VERSION
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major * 10_000 + minor).to_string()
}

/// The canonical spelling of a setting name, if it is one.
fn canonical(name: &str) -> Option<&'static str> {
    let name = name.trim_matches('"');
    if name.eq_ignore_ascii_case("timezone") || name.eq_ignore_ascii_case("time zone") {
        return Some("TimeZone");
    }
    SETTINGS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name))
}

/// The key a setting is kept under in the connection's metadata (pgwire's, lower case).
/// `SET ROLE name` and `SET SESSION AUTHORIZATION name`: to one's own role they change
/// nothing; to another, which needs a membership (none exist) or a superuser, they are
/// refused, since a statement always runs as the role that logged in.
fn switch_role(metadata: &HashMap<String, String>, role: &Ident) -> Result<Applied> {
    let name = crate::sql::normalize_ident(role);
    if metadata.get("user") == Some(&name) {
        return Ok(Applied {
            output: Output::command("SET"),
            report: Vec::new(),
        });
    }
    match metadata.get(SUPERUSER_KEY).map(String::as_str) {
        Some("on") => Err(Error::unsupported(
            "SET ROLE to another role",
            Some("Connect as that role."),
        )),
        _ => Err(Error::InsufficientPrivilege(format!(
            "permission denied to set role \"{name}\""
        ))),
    }
}

/// Where login records whether the connection's role is a superuser.
const SUPERUSER_KEY: &str = "is_superuser";

/// Records at login whether the connection's role is a superuser (`SHOW is_superuser`).
pub fn set_superuser(metadata: &mut HashMap<String, String>, superuser: bool) {
    let value = if superuser { "on" } else { "off" };
    metadata.insert(SUPERUSER_KEY.to_string(), value.to_string());
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The default of a known setting.
pub fn default_value(name: &str) -> Option<String> {
    let name = canonical(name)?;
    Some(match name {
        "server_version" => server_version(),
        "server_version_num" => server_version_num(),
        _ => SETTINGS.iter().find(|(n, _)| *n == name)?.1.to_string(),
    })
}

/// Every setting with its default and whether it can be changed, for `pg_settings`.
pub fn defaults() -> impl Iterator<Item = (&'static str, String, bool)> {
    SETTINGS.iter().map(|(name, _)| {
        (
            *name,
            default_value(name).unwrap_or_default(),
            READ_ONLY.contains(name),
        )
    })
}

/// The value a connection sees: what it set (or sent at startup), else the default.
pub fn current(metadata: &HashMap<String, String>, name: &str) -> Option<String> {
    let known = canonical(name);
    // Read-only, but the connection's own: set at login.
    if known == Some("is_superuser") {
        return metadata
            .get(SUPERUSER_KEY)
            .cloned()
            .or_else(|| default_value(name));
    }
    let name = known.map_or_else(|| name.to_string(), str::to_string);
    if known.is_none_or(|n| !READ_ONLY.contains(&n))
        && let Some(value) = metadata.get(&key(&name))
    {
        return Some(value.clone());
    }
    known.and_then(default_value)
}

/// Settings that are durations, in milliseconds when given without a unit.
const TIMEOUTS: &[&str] = &[
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "lock_timeout",
];

/// A timeout setting of the connection, if it was set (to zero for none).
pub fn timeout(metadata: &HashMap<String, String>, name: &str) -> Option<Option<Duration>> {
    let value = metadata.get(&key(canonical(name)?))?;
    parse_timeout(value)
}

/// Postgres' reading of a duration setting: `2000` (ms), `2s`, `'1 min'`; zero for none.
fn parse_timeout(value: &str) -> Option<Option<Duration>> {
    let value = value.trim();
    let duration = match value.parse::<f64>() {
        Ok(ms) if (0.0..=f64::from(i32::MAX)).contains(&ms) => Duration::from_millis(ms as u64),
        Ok(_) => return None,
        Err(_) => crate::source::options::parse_duration(value, value).ok()?,
    };
    Some((!duration.is_zero()).then_some(duration))
}

/// How the connection's results are spelled: pgwire's options from its settings, and its
/// `TimeZone` (which pgwire's reading leaves at UTC).
pub fn format_options(metadata: &HashMap<String, String>) -> FormatOptions {
    let mut options = FormatOptions::from_client_metadata(metadata);
    if let Some(zone) = current(metadata, "TimeZone") {
        options.time_zone = zone;
    }
    options
}

/// What a settings statement changed, for the caller to report.
pub struct Applied {
    pub output: Output,
    /// Reported settings whose value changed: (name, new value).
    pub report: Vec<(String, String)>,
}

/// Runs `SET`, `RESET`, `SHOW` and `DISCARD`; `None` for any other statement.
pub fn apply(
    statement: &SqlStatement,
    metadata: &mut HashMap<String, String>,
) -> Option<Result<Applied>> {
    let command = |tag| Applied {
        output: Output::Command { tag, rows: None },
        report: Vec::new(),
    };
    let result = match statement {
        SqlStatement::Set(set) => set_statement(set, metadata),
        SqlStatement::Reset(reset) => match &reset.reset {
            Reset::ALL => {
                let report = reset_all(metadata);
                Ok(Applied {
                    output: Output::Command {
                        tag: "RESET",
                        rows: None,
                    },
                    report,
                })
            }
            // Back to the role that logged in, which every statement runs as anyway.
            Reset::ConfigurationParameter(name)
                if ["role", "session_authorization"]
                    .contains(&name.to_string().to_ascii_lowercase().as_str()) =>
            {
                Ok(command("RESET"))
            }
            Reset::ConfigurationParameter(name) => {
                let name = name.to_string();
                writable(&name).map(|name| {
                    metadata.remove(&key(&name));
                    Applied {
                        report: reported(&name, metadata),
                        ..command("RESET")
                    }
                })
            }
        },
        SqlStatement::Discard { object_type } => {
            let report = match object_type {
                DiscardObject::ALL => reset_all(metadata),
                _ => Vec::new(),
            };
            let tag = match object_type {
                DiscardObject::ALL => "DISCARD ALL",
                DiscardObject::PLANS => "DISCARD PLANS",
                DiscardObject::SEQUENCES => "DISCARD SEQUENCES",
                DiscardObject::TEMP => "DISCARD TEMP",
            };
            Ok(Applied {
                report,
                ..command(tag)
            })
        }
        // There are no cursors (no DECLARE) and no LISTEN; closing all cursors and stopping
        // listening are what connection pools send when they take a connection back.
        SqlStatement::Close {
            cursor: CloseCursor::All,
        } => Ok(command("CLOSE CURSOR ALL")),
        SqlStatement::Close {
            cursor: CloseCursor::Specific { name },
        } => Err(Error::UndefinedCursor(name.value.clone())),
        SqlStatement::UNLISTEN { .. } => Ok(command("UNLISTEN")),
        SqlStatement::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|w| w.value.to_lowercase()).collect();
            show(&words.join(" "), metadata).map(|output| Applied {
                output,
                report: Vec::new(),
            })
        }
        _ => return None,
    };
    Some(result)
}

/// The rows a settings statement returns, as a plan to describe at Parse.
pub fn describe(statement: &SqlStatement) -> Option<LogicalPlan> {
    let columns = match statement {
        SqlStatement::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|w| w.value.to_lowercase()).collect();
            show_columns(&words.join(" "))
        }
        SqlStatement::Set(_)
        | SqlStatement::Reset(_)
        | SqlStatement::Discard { .. }
        | SqlStatement::Close { .. }
        | SqlStatement::UNLISTEN { .. } => vec![],
        _ => return None,
    };
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let schema = text_schema(&columns);
    let schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
    Some(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(schema),
    }))
}

fn set_statement(set: &Set, metadata: &mut HashMap<String, String>) -> Result<Applied> {
    let (name, value) = match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = variable.to_string();
            let value = values
                .iter()
                .map(setting_text)
                .collect::<Vec<_>>()
                .join(", ");
            (name, value)
        }
        Set::SetTimeZone { value, .. } => ("TimeZone".to_string(), setting_text(value)),
        Set::SetNames { charset_name, .. } => {
            ("client_encoding".to_string(), charset_name.value.clone())
        }
        Set::SetRole {
            role_name: Some(role),
            ..
        } => return switch_role(metadata, role),
        Set::SetSessionAuthorization(param) => {
            if let SetSessionAuthorizationParamKind::User(role) = &param.kind {
                return switch_role(metadata, role);
            }
            return Ok(Applied {
                output: Output::command("SET"),
                report: Vec::new(),
            });
        }
        // Every transaction here is read-only work at read committed; accepting the request
        // is what Postgres does for these levels. `SET ROLE NONE` is the role one has.
        Set::SetTransaction { .. } | Set::SetRole { .. } => {
            return Ok(Applied {
                output: Output::Command {
                    tag: "SET",
                    rows: None,
                },
                report: Vec::new(),
            });
        }
        other => {
            return Err(Error::unsupported(other.to_string(), None));
        }
    };
    let name = writable(&name)?;
    let value = if value.eq_ignore_ascii_case("default") {
        metadata.remove(&key(&name));
        None
    } else {
        Some(value)
    };
    if let Some(value) = value {
        // Whole hours (`SET TIME ZONE -5`) are Postgres' too; any other value must name a zone.
        if name == "TimeZone"
            && value.trim().parse::<f64>().is_err()
            && super::text::known_zone(&value).is_none()
        {
            return Err(Error::InvalidParameter(format!(
                "invalid value for parameter \"TimeZone\": \"{value}\""
            )));
        }
        if TIMEOUTS.contains(&name.as_str()) && parse_timeout(&value).is_none() {
            return Err(Error::InvalidParameter(format!(
                "invalid value for parameter \"{name}\": \"{value}\""
            )));
        }
        metadata.insert(key(&name), value);
    }
    Ok(Applied {
        output: Output::Command {
            tag: "SET",
            rows: None,
        },
        report: reported(&name, metadata),
    })
}

/// The name to store a SET under, or why it cannot be set.
fn writable(name: &str) -> Result<String> {
    match canonical(name) {
        Some(name) if READ_ONLY.contains(&name) => Err(Error::CantChangeSetting(name.to_string())),
        Some(name) => Ok(name.to_string()),
        None if name.contains('.') => Ok(name.to_ascii_lowercase()),
        None => Err(Error::UnknownSetting(name.to_string())),
    }
}

fn reported(name: &str, metadata: &HashMap<String, String>) -> Vec<(String, String)> {
    match canonical(name).filter(|n| REPORTED.contains(n)) {
        Some(name) => vec![(
            name.to_string(),
            current(metadata, name).unwrap_or_default(),
        )],
        None => Vec::new(),
    }
}

/// Forgets every SET of the connection; the startup's `user` and `database` stay.
fn reset_all(metadata: &mut HashMap<String, String>) -> Vec<(String, String)> {
    let before: Vec<(String, String)> = REPORTED
        .iter()
        .map(|n| (n.to_string(), current(metadata, n).unwrap_or_default()))
        .collect();
    metadata.retain(|k, _| {
        !(SETTINGS.iter().any(|(n, _)| key(n) == *k) || k.contains('.') || k == "timezone")
    });
    before
        .into_iter()
        .filter_map(|(name, old)| {
            let new = current(metadata, &name).unwrap_or_default();
            (new != old).then_some((name, new))
        })
        .collect()
}

/// The columns `SHOW what` returns: Postgres names the one column after the setting.
fn show_columns(what: &str) -> Vec<String> {
    let columns = match what {
        "all" => {
            return ["name", "setting", "description"]
                .map(String::from)
                .to_vec();
        }
        "transaction isolation level" => "transaction_isolation",
        name => canonical(name).unwrap_or(name),
    };
    vec![columns.to_string()]
}

fn show(what: &str, metadata: &HashMap<String, String>) -> Result<Output> {
    let columns = show_columns(what);
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows = match what {
        "all" => SETTINGS
            .iter()
            .map(|(name, _)| {
                vec![
                    name.to_string(),
                    current(metadata, name).unwrap_or_default(),
                    String::new(),
                ]
            })
            .collect(),
        "transaction isolation level" => {
            vec![vec![
                current(metadata, "transaction_isolation").unwrap_or_default(),
            ]]
        }
        name => vec![vec![
            current(metadata, name).ok_or_else(|| Error::UnknownSetting(name.into()))?,
        ]],
    };
    rows_output(&columns, rows)
}

fn text_schema(columns: &[&str]) -> Arc<Schema> {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

fn rows_output(columns: &[&str], rows: Vec<Vec<String>>) -> Result<Output> {
    let schema = text_schema(columns);
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)?;
    let stream = futures::stream::iter([Ok(batch)]);
    Ok(Output::Rows(Box::pin(RecordBatchStreamAdapter::new(
        schema, stream,
    ))))
}

/// A SET value as text: `'UTC'` → `UTC`, `3` → `3`, `"$user"` stays quoted as Postgres shows it.
fn setting_text(value: &Expr) -> String {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) if ident.quote_style.is_none() => ident.value.clone(),
        other => other.to_string(),
    }
}

/// Who is asking: what per-connection functions answer.
pub struct Caller<'a> {
    pub user: &'a str,
    pub pid: i32,
    pub metadata: &'a HashMap<String, String>,
}

/// Replaces calls whose answer depends on the connection (`current_user`, `session_user`,
/// `pg_backend_pid()`, `current_setting('name')`) by their values; `None` when there are none.
pub fn bind_caller(statement: &SqlStatement, caller: &Caller) -> Option<SqlStatement> {
    // Every statement passes here: look before cloning it.
    let calls_caller = visit_expressions(statement, |expr| match caller_value(expr, caller) {
        Some(_) => ControlFlow::Break(()),
        None => ControlFlow::Continue(()),
    });
    if calls_caller.is_continue() {
        return None;
    }
    let mut bound = statement.clone();
    // A value selected as such keeps the function's name, as its column in Postgres does.
    if let SqlStatement::Query(query) = &mut bound
        && let SetExpr::Select(select) = query.body.as_mut()
    {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && let Some(value) = caller_value(expr, caller)
            {
                let name = crate::pg::names::postgres_expr_name(expr);
                *item = SelectItem::ExprWithAlias {
                    expr: value,
                    alias: Ident::with_quote('"', name),
                };
            }
        }
    }
    let _ = visit_expressions_mut(&mut bound, |expr| {
        if let Some(value) = caller_value(expr, caller) {
            *expr = value;
        }
        ControlFlow::<()>::Continue(())
    });
    Some(bound)
}

fn caller_value(expr: &Expr, caller: &Caller) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = crate::pg::compat::function_name(function)?;
    let args = crate::pg::compat::unnamed_args(function)?;
    let text = |s: String| Expr::value(Value::SingleQuotedString(s));
    match (name.as_str(), args.as_slice()) {
        ("current_user" | "session_user" | "user" | "current_role", []) => {
            Some(text(caller.user.to_string()))
        }
        // An integer, as the function is (and as Describe said before the statement was bound).
        ("pg_backend_pid", []) => Some(Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(Expr::value(Value::Number(caller.pid.to_string(), false))),
            data_type: SqlType::Integer(None),
            array: false,
            format: None,
        }),
        // Its value; the setting itself changes after the statement is bound (`set_configs`).
        ("set_config", _) => set_config_call(function).map(|(_, value, _)| text(value)),
        ("current_setting", [name, ..]) => {
            let Expr::Value(v) = name else { return None };
            let Value::SingleQuotedString(name) = &v.value else {
                return None;
            };
            let missing_ok =
                matches!(args.get(1), Some(Expr::Value(v)) if v.value == Value::Boolean(true));
            match current(caller.metadata, name) {
                Some(value) => Some(text(value)),
                None if missing_ok => Some(Expr::value(Value::Null)),
                // Left alone, the shared function raises the error Postgres gives.
                None => None,
            }
        }
        _ => None,
    }
}

/// Applies the `set_config('name', 'value', is_local)` calls of a statement, as Postgres does
/// while running it: `is_local` (for the current transaction only) changes nothing past the
/// statement, as there are no multi-statement transactions here. Returns the reported settings
/// that changed.
pub fn set_configs(
    statement: &SqlStatement,
    metadata: &mut HashMap<String, String>,
) -> Result<Vec<(String, String)>> {
    let mut calls = Vec::new();
    let _ = visit_expressions(statement, |expr| {
        if let Expr::Function(function) = expr
            && crate::pg::compat::function_name(function).as_deref() == Some("set_config")
            && let Some(call) = set_config_call(function)
        {
            calls.push(call);
        }
        ControlFlow::<()>::Continue(())
    });
    let mut report = Vec::new();
    for (name, value, is_local) in calls {
        let name = writable(&name)?;
        if !is_local {
            metadata.insert(key(&name), value);
            report.extend(reported(&name, metadata));
        }
    }
    Ok(report)
}

/// `set_config('name', 'value', is_local)` with constant arguments; other calls are left to the
/// shared function, which refuses them.
fn set_config_call(function: &Function) -> Option<(String, String, bool)> {
    let args = crate::pg::compat::unnamed_args(function)?;
    let [Expr::Value(name), Expr::Value(value), Expr::Value(is_local)] = args.as_slice() else {
        return None;
    };
    let (Value::SingleQuotedString(name), Value::SingleQuotedString(value)) =
        (&name.value, &value.value)
    else {
        return None;
    };
    let Value::Boolean(is_local) = is_local.value else {
        return None;
    };
    Some((name.clone(), value.clone(), is_local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_postgres_reads_them() {
        let ms = |n| Some(Some(Duration::from_millis(n)));
        assert_eq!(parse_timeout("2000"), ms(2000));
        assert_eq!(parse_timeout("2s"), ms(2000));
        assert_eq!(parse_timeout("1 min"), ms(60_000));
        assert_eq!(parse_timeout("0"), Some(None));
        for bad in ["soon", "-1", "1 fortnight", "99999999999"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }

    fn run(sql: &str, metadata: &mut HashMap<String, String>) -> Result<Applied> {
        let statement = crate::sql::parser::parse(sql).unwrap().pop().unwrap();
        let crate::sql::Statement::Standard(statement) = statement else {
            panic!("{sql} is not a standard statement")
        };
        apply(&statement, metadata).expect("a settings statement")
    }

    #[test]
    fn set_show_reset_stay_in_the_connection() {
        let mut metadata = HashMap::new();
        assert_eq!(
            current(&metadata, "server_version_num").unwrap(),
            server_version_num()
        );
        assert!(server_version_num().starts_with("15"));
        let applied = run("SET application_name = 'superset'", &mut metadata).unwrap();
        assert_eq!(
            applied.report,
            vec![("application_name".into(), "superset".into())]
        );
        run("SET TIME ZONE 'Europe/Paris'", &mut metadata).unwrap();
        run("set search_path to public", &mut metadata).unwrap();
        run("SET extra_float_digits = 3", &mut metadata).unwrap();
        run("SET myapp.tenant = 'a'", &mut metadata).unwrap();
        assert_eq!(current(&metadata, "timezone").unwrap(), "Europe/Paris");
        assert_eq!(current(&metadata, "search_path").unwrap(), "public");
        assert_eq!(metadata["extra_float_digits"], "3");
        assert_eq!(current(&metadata, "myapp.tenant").unwrap(), "a");
        run("RESET search_path", &mut metadata).unwrap();
        assert_eq!(
            current(&metadata, "search_path").unwrap(),
            "\"$user\", public"
        );
        let discarded = run("DISCARD ALL", &mut metadata).unwrap();
        assert!(
            discarded
                .report
                .contains(&("TimeZone".into(), "UTC".into()))
        );
        assert!(metadata.is_empty(), "{metadata:?}");
    }

    #[test]
    fn unknown_and_read_only_settings_fail_as_in_postgres() {
        let mut metadata = HashMap::new();
        let unknown = run("SET no_such_thing = 1", &mut metadata).err().unwrap();
        assert_eq!(unknown.sqlstate(), "42704");
        let read_only = run("SET server_version = '1'", &mut metadata)
            .err()
            .unwrap();
        assert_eq!(read_only.sqlstate(), "55P02");
        assert!(run("SHOW no_such_thing", &mut metadata).is_err());
    }
}
