//! The types of a prepared statement's `$n` parameters, as Postgres infers them.
//!
//! DataFusion infers a parameter's type from what it is compared with or inserted into. Postgres
//! also takes it from a cast (`$1::bigint`, `$1::oid[]`), and drivers depend on that: asyncpg's
//! type lookup sends `any($1::oid[])` and encodes its argument by the type the server describes,
//! and among arrays it can encode only `text[]` and `oid[]` before it has looked anything up.
//! Likewise from a function's argument (`pg_cancel_backend($1)` is a bigint). A parameter
//! none of these types is described as `unknown` and read as text.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan, TypeSignature};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{PgWireError, PgWireResult};
use sqlparser::ast::{DataType as SqlType, Expr, Value, visit_expressions};

use super::encode;
use crate::catalog::types::ColumnType;
use crate::error::Error;
use crate::sql::Statement;

/// One parameter: the Arrow type to read it as (if known) and the type described to clients.
#[derive(Debug, Clone)]
pub struct Parameter {
    arrow: Option<DataType>,
    wire: Type,
}

impl Parameter {
    /// A parameter read as `arrow`, described as its Postgres type.
    fn of(arrow: DataType) -> PgWireResult<Self> {
        Ok(Parameter {
            wire: encode::pg_type(&arrow)?,
            arrow: Some(arrow),
        })
    }
}

/// `$3` → 3.
fn placeholder_number(id: &str) -> Option<usize> {
    id.trim_start_matches('$').parse().ok()
}

/// The parameters of `statement`, in order, planned as `plan`.
pub fn parameters(
    statement: &Statement,
    plan: Option<&LogicalPlan>,
) -> PgWireResult<Vec<Parameter>> {
    let Some(plan) = plan else {
        return Ok(Vec::new());
    };
    let inferred = plan
        .get_parameter_types()
        .map_err(|e| PgWireError::from(Error::from(e)))?;
    let mut numbered: Vec<(usize, Option<DataType>)> = inferred
        .into_iter()
        .filter_map(|(id, t)| Some((placeholder_number(&id)?, t)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    // For the parameters DataFusion left untyped: a cast's type, else a function argument's.
    let mut fallback = HashMap::new();
    if numbered.iter().any(|(_, t)| t.is_none()) {
        if let Statement::Standard(stmt) = statement {
            fallback = cast_types(stmt);
        }
        for (n, arrow) in argument_types(plan) {
            if let Ok(parameter) = Parameter::of(arrow) {
                fallback.entry(n).or_insert(parameter);
            }
        }
    }
    numbered
        .into_iter()
        .map(|(n, arrow)| match (arrow, fallback.get(&n)) {
            (Some(arrow), _) => Parameter::of(arrow),
            (None, Some(parameter)) => Ok(parameter.clone()),
            (None, None) => Ok(Parameter {
                arrow: None,
                wire: Type::UNKNOWN,
            }),
        })
        .collect()
}

/// The types described to the client in ParameterDescription.
pub fn described(parameters: &[Parameter]) -> Vec<Type> {
    parameters.iter().map(|p| p.wire.clone()).collect()
}

/// The values a Bind carries, read by the parameters' types.
pub fn values(
    portal: &Portal<impl Clone>,
    parameters: &[Parameter],
) -> PgWireResult<Option<ParamValues>> {
    if parameters.is_empty() {
        return Ok(None);
    }
    let arrow: Vec<Option<&DataType>> = parameters.iter().map(|p| p.arrow.as_ref()).collect();
    // An oid array has the layout of an int4 array, which arrow-pg reads.
    let wire: Vec<Type> = parameters
        .iter()
        .map(|p| match &p.wire {
            t if *t == Type::OID_ARRAY => Type::INT4_ARRAY,
            t => t.clone(),
        })
        .collect();
    let wire: Vec<Option<&Type>> = wire.iter().map(Some).collect();
    arrow_pg::datatypes::df::deserialize_parameters_with_server_types(portal, &arrow, &wire)
        .map(Some)
}

/// `$n` → its type, for parameters passed straight to a function of one signature
/// (`pg_cancel_backend($1)`, `current_setting($1)`).
fn argument_types(plan: &LogicalPlan) -> Vec<(usize, DataType)> {
    let mut types = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let LogicalExpr::ScalarFunction(call) = e
                    && let TypeSignature::Exact(exact) = &call.func.signature().type_signature
                {
                    for (arg, arrow) in call.args.iter().zip(exact) {
                        if let LogicalExpr::Placeholder(p) = arg
                            && let Some(n) = placeholder_number(&p.id)
                        {
                            types.push((n, arrow.clone()));
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    types
}

/// `$n` → its type, for parameters the SQL casts (`$1::oid[]`, `CAST($2 AS bigint)`).
fn cast_types(statement: &sqlparser::ast::Statement) -> HashMap<usize, Parameter> {
    let mut types = HashMap::new();
    let _ = visit_expressions(statement, |expr| {
        if let Expr::Cast {
            expr, data_type, ..
        } = expr
            && let Expr::Value(value) = expr.as_ref()
            && let Value::Placeholder(id) = &value.value
            && let Some(n) = placeholder_number(id)
            && let Some(parameter) = cast_type(data_type)
        {
            types.entry(n).or_insert(parameter);
        }
        ControlFlow::<()>::Continue(())
    });
    types
}

fn cast_type(sql_type: &SqlType) -> Option<Parameter> {
    let is_oid = |t: &SqlType| matches!(t, SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("oid"));
    if is_oid(sql_type) {
        return Some(Parameter {
            arrow: Some(DataType::Int32),
            wire: Type::OID,
        });
    }
    if let SqlType::Array(element) = sql_type
        && let sqlparser::ast::ArrayElemTypeDef::SquareBracket(element, _)
        | sqlparser::ast::ArrayElemTypeDef::AngleBracket(element) = element
        && is_oid(element)
    {
        return Some(Parameter {
            arrow: Some(DataType::new_list(DataType::Int32, true)),
            wire: Type::OID_ARRAY,
        });
    }
    Parameter::of(ColumnType::from_sql(sql_type).ok()?.arrow).ok()
}
