//! Catalog functions that psql, pgjdbc, DBeaver and Metabase call while describing objects,
//! where every object here has the same answer.
//!
//! - Visibility (`pg_type_is_visible`, `pg_function_is_visible`, …): true — there is one
//!   search path and nothing is hidden by it.
//! - Comments (`obj_description`, `col_description`, `shobj_description`): NULL — there is no
//!   `COMMENT ON`.
//! - Index definitions (`pg_get_indexdef`): NULL — there are no indexes.
//! - Sizes by oid (`pg_table_size`, `pg_indexes_size`, `pg_database_size`): NULL, "unknown";
//!   `sluice_catalog.files` has the real bytes per relation.
//! - `pg_size_pretty(bytes)`: computed, with Postgres' units and rounding.
//!
//! They take any argument types, since clients pass oids as int4, int8 or text literals alike.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

/// A function whose answer does not depend on its arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    signature: Signature,
    value: ScalarValue,
}

impl Constant {
    fn udf(name: &'static str, arities: &[usize], value: ScalarValue) -> ScalarUDF {
        let signature = Signature::one_of(
            arities
                .iter()
                .map(|n| match n {
                    0 => TypeSignature::Nullary,
                    n => TypeSignature::Any(*n),
                })
                .collect(),
            Volatility::Stable,
        );
        ScalarUDF::new_from_impl(Constant {
            name,
            signature,
            value,
        })
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(
            match args
                .args
                .iter()
                .any(|a| matches!(a, ColumnarValue::Array(_)))
            {
                true => ColumnarValue::Array(self.value.to_array_of_size(args.number_rows)?),
                false => ColumnarValue::Scalar(self.value.clone()),
            },
        )
    }
}

pub fn register(ctx: &SessionContext) {
    let yes = ScalarValue::Boolean(Some(true));
    for name in [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_operator_is_visible",
        "pg_opclass_is_visible",
        "pg_collation_is_visible",
        "pg_conversion_is_visible",
        "pg_ts_config_is_visible",
    ] {
        ctx.register_udf(Constant::udf(name, &[1], yes.clone()));
    }
    let no_text = ScalarValue::Utf8(None);
    ctx.register_udf(Constant::udf("obj_description", &[1, 2], no_text.clone()));
    ctx.register_udf(Constant::udf("col_description", &[2], no_text.clone()));
    ctx.register_udf(Constant::udf("shobj_description", &[2], no_text.clone()));
    // There are no indexes (SQLAlchemy 2's index reflection calls it over an empty pg_index).
    ctx.register_udf(Constant::udf("pg_get_indexdef", &[1, 3], no_text));
    let unknown_size = ScalarValue::Int64(None);
    for name in [
        "pg_table_size",
        "pg_indexes_size",
        "pg_database_size",
        "pg_tablespace_size",
    ] {
        ctx.register_udf(Constant::udf(name, &[1], unknown_size.clone()));
    }
    // There are no advisory locks; pools release them all when they take a connection back.
    ctx.register_udf(Constant::udf(
        "pg_advisory_unlock_all",
        &[0],
        ScalarValue::Utf8(None),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(SizePretty {
        signature: Signature::any(1, Volatility::Immutable),
    }));
}

/// `pg_size_pretty(bigint)`: bytes, kB, MB, GB, TB with Postgres' rounding (half up, a unit
/// taken once the number reaches 10 240 of the one below).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SizePretty {
    signature: Signature,
}

impl ScalarUDFImpl for SizePretty {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let sizes = args.args[0].to_array(args.number_rows)?;
        let sizes = cast(&sizes, &DataType::Int64)?;
        let sizes = sizes
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        let pretty: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
        let pretty: ArrayRef = Arc::new(pretty);
        super::functions::scalar_if_scalar(&args.args, pretty)
    }
}

fn size_pretty(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes.unsigned_abs() < 10 * 1024 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes;
    for (i, unit) in UNITS.iter().enumerate() {
        // Halve with rounding half away from zero, as Postgres' half_rounded().
        let rounded = |n: i64, shift: u32| {
            let half = if n >= 0 { 1 } else { -1 };
            ((n >> (shift - 1)) + half) / 2
        };
        let scaled = rounded(size, 10);
        if scaled.unsigned_abs() < 10 * 1024 || i == UNITS.len() - 1 {
            return format!("{scaled} {unit}");
        }
        size >>= 10;
    }
    unreachable!("the last unit returns")
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        // Values checked against PostgreSQL 15's pg_size_pretty.
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10_239), "10239 bytes");
        assert_eq!(size_pretty(10_240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(10_737_418_240), "10 GB");
    }
}
