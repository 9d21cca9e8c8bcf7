//! `pg_get_function_result(oid)` and `pg_get_function_arguments(oid)`, which psql's `\df`,
//! pgAdmin and DBeaver show for every function they list.
//!
//! Both are read off datafusion-pg-catalog's `pg_proc` (Postgres' own rows) once at start:
//! result `SETOF t` for set-returning functions, `TABLE(name t, …)` for table-mode outputs,
//! `record` for OUT parameters; arguments with their modes (`OUT`, `INOUT`, `VARIADIC`) and
//! names. Argument defaults are left out: `pg_proc` keeps them as node trees, which only
//! Postgres can print. That table spells its array columns as `[26, 20]` and `['i', 'o']`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

/// What the two functions answer for one function's oid.
struct Described {
    result: String,
    arguments: String,
}

/// Registers both functions over the `pg_proc` and `pg_type` of `ctx`.
pub async fn register(ctx: &SessionContext) -> Result<()> {
    // format_type knows the types of columns; pseudo-types (`record`, `"any"`) and arrays of
    // catalog types (`aclitem[]`) are named from pg_type as Postgres names them.
    let types = rows(
        ctx,
        "SELECT t.oid, format_type(t.oid, NULL), t.typname, e.typname \
         FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem",
    )
    .await?;
    let type_names: HashMap<i32, String> = types
        .into_iter()
        .filter_map(|row| {
            let [oid, formatted, name, element] = row.as_slice() else {
                return None;
            };
            let name = match formatted.as_deref() {
                // The one pseudo-type named by a reserved word, quoted as Postgres quotes it.
                Some("any") => "\"any\"".to_string(),
                Some(f) if !f.starts_with("oid(") && f != "???" => f.to_string(),
                _ => match (name.as_deref()?.strip_prefix('_'), element) {
                    (Some(_), Some(element)) => format!("{}[]", crate::sql::quote_ident(element)),
                    _ => crate::sql::quote_ident(name.as_deref()?),
                },
            };
            Some((oid.as_deref()?.parse().ok()?, name))
        })
        .collect();
    let type_name = |oid: &str| {
        oid.parse()
            .ok()
            .and_then(|oid: i32| type_names.get(&oid).cloned())
            .unwrap_or_else(|| "-".to_string())
    };
    let functions = rows(
        ctx,
        "SELECT oid, CAST(proretset AS TEXT), CAST(prorettype AS TEXT), proargtypes, \
         proallargtypes, proargmodes, proargnames FROM pg_catalog.pg_proc",
    )
    .await?;
    let mut described = HashMap::with_capacity(functions.len());
    for row in functions {
        let [oid, set, result, inputs, all, modes, names] = row.as_slice() else {
            continue;
        };
        let Some(oid) = oid.as_deref().and_then(|o| o.parse::<i32>().ok()) else {
            continue;
        };
        let types = match list(all) {
            all if !all.is_empty() => all,
            _ => inputs
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(String::from)
                .collect(),
        };
        let modes = list(modes);
        let names = list(names);
        let parameter = |i: usize| {
            let name = names.get(i).filter(|n| !n.is_empty());
            let type_name = type_name(&types[i]);
            match name {
                Some(name) => format!("{} {type_name}", crate::sql::quote_ident(name)),
                None => type_name,
            }
        };
        let mode = |i: usize| modes.get(i).map_or("i", String::as_str);
        let arguments: Vec<String> = (0..types.len())
            .filter(|&i| mode(i) != "t")
            .map(|i| {
                let prefix = match mode(i) {
                    "o" => "OUT ",
                    "b" => "INOUT ",
                    "v" => "VARIADIC ",
                    _ => "",
                };
                format!("{prefix}{}", parameter(i))
            })
            .collect();
        let table: Vec<String> = (0..types.len())
            .filter(|&i| mode(i) == "t")
            .map(parameter)
            .collect();
        let result = match (table.is_empty(), set.as_deref() == Some("true")) {
            (false, _) => format!("TABLE({})", table.join(", ")),
            (true, true) => format!("SETOF {}", type_name(result.as_deref().unwrap_or(""))),
            (true, false) => type_name(result.as_deref().unwrap_or("")),
        };
        described.insert(
            oid,
            Described {
                result,
                arguments: arguments.join(", "),
            },
        );
    }
    let described = Arc::new(described);
    ctx.register_udf(lookup("pg_get_function_result", &described, |d| &d.result));
    ctx.register_udf(lookup("pg_get_function_arguments", &described, |d| {
        &d.arguments
    }));
    Ok(())
}

/// A function of an oid answering `field` of its description, NULL for an unknown oid.
fn lookup(
    name: &str,
    described: &Arc<HashMap<i32, Described>>,
    field: fn(&Described) -> &String,
) -> ScalarUDF {
    let described = Arc::clone(described);
    SimpleScalarUDF::new_with_signature(
        name,
        Signature::any(1, Volatility::Stable),
        DataType::Utf8,
        Arc::new(move |args: &[ColumnarValue]| {
            let oids = ColumnarValue::values_to_arrays(args)?;
            let oids = cast(&oids[0], &DataType::Int32)?;
            let answers: StringArray = oids
                .as_primitive::<Int32Type>()
                .iter()
                .map(|oid| oid.and_then(|oid| described.get(&oid)).map(field))
                .collect();
            crate::pg::functions::scalar_if_scalar(args, Arc::new(answers))
        }),
    )
    .into()
}

/// Every row of `sql`'s answer, as text.
async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let columns = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        (!c.is_null(i)).then(|| c.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The items of one of `pg_proc`'s array columns (`[26, 20]`, `['i', 'o']`).
fn list(text: &Option<String>) -> Vec<String> {
    let Some(inner) = text
        .as_deref()
        .and_then(|t| t.trim().strip_prefix('['))
        .and_then(|t| t.strip_suffix(']'))
    else {
        return Vec::new();
    };
    if inner.trim().is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('\'').to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_pg_proc_lists() {
        assert_eq!(super::list(&Some("[1034, 26]".into())), ["1034", "26"]);
        assert_eq!(super::list(&Some("['i', 'o']".into())), ["i", "o"]);
        assert!(super::list(&None).is_empty());
        assert!(super::list(&Some(String::new())).is_empty());
    }
}
