//! `numeric` arithmetic as Postgres does it, where DataFusion's decimals differ.
//!
//! A decimal literal (`1.5`) is `numeric`, as in Postgres (the session parses them with
//! `parse_float_as_decimal`); before, it was a double, so `0.1 + 0.2` was 0.30000000000000004
//! and `SELECT 1.5` described float8. Two things then had to follow Postgres:
//!
//! - **Division** keeps at least 16 significant digits in Postgres (`1.0 / 3.0` is
//!   0.33333333333333333333, `7.0 / 2` is 3.5000000000000000); DataFusion's keeps 4 more digits
//!   than the dividend (0.33333). [`NumericDivision`] turns every decimal `/` into
//!   [`NumericDiv`], which rounds half away from zero at Postgres' scale. Postgres picks that
//!   scale per value (from the leading digits of both operands); an Arrow column has one scale,
//!   so a quotient of constants gets exactly Postgres' scale, and any other quotient gets the
//!   one Postgres gives when both operands have the same magnitude: 16 digits, or more when an
//!   operand has more.
//! - **ceil, floor and trunc** of a numeric give scale 0 (`trunc(x, n)`: scale n), where
//!   DataFusion keeps the input's (`ceil(2.1)` was 3.0): [`IntegralRounding`].
//!
//! `round(x, n)` and `abs` already match.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Decimal128Array};
use datafusion::arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DECIMAL128_MAX_SCALE, DataType, Field, FieldRef, i256,
};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{
    BinaryExpr, Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

use crate::pg::coercion::rewrite_expressions;

/// The fewest significant digits Postgres gives a quotient (`NUMERIC_MIN_SIG_DIGITS`).
const MIN_SIGNIFICANT_DIGITS: i32 = 16;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(NumericDiv::new()));
    for inner in [
        datafusion::functions::math::ceil(),
        datafusion::functions::math::floor(),
        datafusion::functions::math::trunc(),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(IntegralRounding::new(inner)));
    }
}

/// Replaces `a / b` of two decimals by [`NumericDiv`]. Runs after type coercion, which has
/// made both operands decimals (`7.0 / 2` divides by `CAST(2 AS DECIMAL(10, 0))`).
#[derive(Debug, Default)]
pub struct NumericDivision;

impl AnalyzerRule for NumericDivision {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, numeric_division)
    }

    fn name(&self) -> &str {
        "postgres_numeric_division"
    }
}

fn numeric_division(expr: Expr, schema: &DFSchema) -> Transformed<Expr> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Divide,
        right,
    }) = &expr
    else {
        return Transformed::no(expr);
    };
    let is_decimal = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Decimal128(..)));
    if !is_decimal(left) || !is_decimal(right) {
        return Transformed::no(expr);
    }
    // A constant operand is folded here, so that the quotient's scale can be Postgres'.
    let constant = |e: &Expr| match e {
        Expr::Cast(Cast { expr, field }) => match expr.as_ref() {
            Expr::Literal(value, _) => value
                .cast_to(field.data_type())
                .map_or_else(|_| e.clone(), |v| Expr::Literal(v, None)),
            _ => e.clone(),
        },
        _ => e.clone(),
    };
    let divide = Arc::new(ScalarUDF::new_from_impl(NumericDiv::new()));
    Transformed::yes(Expr::ScalarFunction(
        datafusion::logical_expr::expr::ScalarFunction::new_udf(
            divide,
            vec![constant(left), constant(right)],
        ),
    ))
}

/// `numeric / numeric`, rounded half away from zero at Postgres' scale.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NumericDiv {
    signature: Signature,
}

impl NumericDiv {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NumericDiv {
    fn name(&self) -> &str {
        "numeric_div"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(
            "numeric_div is typed from its arguments".into(),
        ))
    }

    /// Called by name, as Postgres' `numeric_div(numeric, numeric)`: integers become numerics.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let numeric = |t: &DataType| match t {
            DataType::Decimal128(..) => Ok(t.clone()),
            t if t.is_integer() => Ok(DataType::Decimal128(20, 0)),
            other => Err(DataFusionError::from(
                crate::error::Error::UndefinedFunction {
                    name: format!("numeric_div({other}, …)"),
                },
            )),
        };
        match arg_types {
            [a, b] => Ok(vec![numeric(a)?, numeric(b)?]),
            _ => Err(DataFusionError::from(
                crate::error::Error::UndefinedFunction {
                    name: format!("numeric_div with {} arguments", arg_types.len()),
                },
            )),
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let (_, s1) = decimal_parts(args.arg_fields[0].data_type())?;
        let (_, s2) = decimal_parts(args.arg_fields[1].data_type())?;
        let constants = match args.scalar_arguments {
            [
                Some(ScalarValue::Decimal128(Some(a), _, _)),
                Some(ScalarValue::Decimal128(Some(b), _, _)),
            ] => Some((*a, *b)),
            _ => None,
        };
        let scale = quotient_scale(constants, s1, s2);
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(DECIMAL128_MAX_PRECISION, scale),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (_, s1) = decimal_parts(args.arg_fields[0].data_type())?;
        let (_, s2) = decimal_parts(args.arg_fields[1].data_type())?;
        let (precision, scale) = decimal_parts(args.return_field.data_type())?;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [dividends, divisors] = [0, 1].map(|i| {
            arrays[i]
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .cloned()
        });
        let (Some(dividends), Some(divisors)) = (dividends, divisors) else {
            return Err(DataFusionError::Internal(
                "numeric_div takes two decimals".into(),
            ));
        };
        let quotients = dividends
            .iter()
            .zip(divisors.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => divide(a, s1, b, s2, scale).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Decimal128Array>>()?
            .with_precision_and_scale(precision, scale)?;
        crate::pg::functions::scalar_if_scalar(&args.args, Arc::new(quotients))
    }
}

fn decimal_parts(data_type: &DataType) -> Result<(u8, i8)> {
    match data_type {
        DataType::Decimal128(precision, scale) => Ok((*precision, *scale)),
        other => Err(DataFusionError::Internal(format!(
            "numeric_div takes decimals, not {other}"
        ))),
    }
}

/// Postgres' `select_div_scale`: 16 significant digits from the quotient's estimated leading
/// base-10000 digit, and never fewer decimals than an operand has. Without the values, the
/// estimate of operands of the same magnitude (leading digits first ≥ second).
fn quotient_scale(values: Option<(i128, i128)>, s1: i8, s2: i8) -> i8 {
    let quotient_weight = match values {
        Some((a, b)) => {
            let (w1, d1) = leading_digit(a, s1);
            let (w2, d2) = leading_digit(b, s2);
            w1 - w2 - i32::from(d1 <= d2)
        }
        None => 0,
    };
    let scale = (MIN_SIGNIFICANT_DIGITS - quotient_weight * 4)
        .max(i32::from(s1))
        .max(i32::from(s2))
        .clamp(0, i32::from(DECIMAL128_MAX_SCALE));
    i8::try_from(scale).unwrap_or(DECIMAL128_MAX_SCALE)
}

/// The weight (power of 10000) and value of the first non-zero base-10000 digit of
/// `value · 10^-scale`, as Postgres' numeric stores it; (0, 0) for zero.
fn leading_digit(value: i128, scale: i8) -> (i32, i128) {
    let digits = value.unsigned_abs().to_string();
    if value == 0 {
        return (0, 0);
    }
    let length = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // The power of ten of the leading decimal digit, and of the base-10000 digit holding it.
    let exponent = length - 1 - i32::from(scale);
    let weight = exponent.div_euclid(4);
    let leading = usize::try_from(exponent - weight * 4 + 1).unwrap_or(1);
    let first = digits[..leading.min(digits.len())]
        .parse::<i128>()
        .unwrap_or(0)
        * 10_i128.pow(u32::try_from(leading.saturating_sub(digits.len())).unwrap_or(0));
    (weight, first)
}

/// `a·10^-s1 / b·10^-s2` at `scale`, rounded half away from zero.
fn divide(a: i128, s1: i8, b: i128, s2: i8, scale: i8) -> Result<i128> {
    if b == 0 {
        return Err(DataFusionError::ArrowError(
            Box::new(ArrowError::DivideByZero),
            None,
        ));
    }
    let overflow = || {
        DataFusionError::ArrowError(
            Box::new(ArrowError::ArithmeticOverflow(
                "numeric field overflow".into(),
            )),
            None,
        )
    };
    let shift = i32::from(scale) - i32::from(s1) + i32::from(s2);
    let shift = u32::try_from(shift).map_err(|_| overflow())?;
    let dividend = i256::from_i128(a)
        .checked_mul(
            i256::from_i128(10)
                .checked_pow(shift)
                .ok_or_else(overflow)?,
        )
        .ok_or_else(overflow)?;
    let divisor = i256::from_i128(b);
    let quotient = dividend.wrapping_div(divisor);
    let remainder = dividend.wrapping_rem(divisor);
    let twice = remainder.wrapping_abs().wrapping_mul(i256::from_i128(2));
    let quotient = match twice >= divisor.wrapping_abs() {
        true if (dividend < i256::ZERO) != (divisor < i256::ZERO) => quotient - i256::ONE,
        true => quotient + i256::ONE,
        false => quotient,
    };
    let max = i256::from_i128(10).checked_pow(u32::from(DECIMAL128_MAX_PRECISION));
    match (quotient.to_i128(), max) {
        (Some(q), Some(max)) if quotient.wrapping_abs() < max => Ok(q),
        _ => Err(overflow()),
    }
}

/// `ceil`, `floor` and `trunc` of a decimal at scale 0 (`trunc(x, n)`: at scale n), as in
/// Postgres; DataFusion's keep the input's scale, and fail where the result needs one more
/// integer digit (`ceil(9.99)` of a `numeric(3, 2)`). Other argument types go to DataFusion's
/// function (`inner`) unchanged.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntegralRounding {
    inner: Arc<ScalarUDF>,
    direction: Direction,
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Direction {
    Up,
    Down,
    TowardZero,
}

impl IntegralRounding {
    fn new(inner: Arc<ScalarUDF>) -> Self {
        let direction = match inner.name() {
            "ceil" => Direction::Up,
            "floor" => Direction::Down,
            _ => Direction::TowardZero,
        };
        Self { inner, direction }
    }
}

impl ScalarUDFImpl for IntegralRounding {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let DataType::Decimal128(precision, scale) = *args.arg_fields[0].data_type() else {
            return self.inner.return_field_from_args(args);
        };
        let kept = match args.scalar_arguments.get(1) {
            None => 0,
            Some(Some(digits)) => match digits.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) => {
                    i8::try_from(n.clamp(0, i64::from(scale.max(0)))).unwrap_or(scale)
                }
                _ => scale,
            },
            Some(None) => scale,
        };
        // ceil(9.9) is 10: one more integer digit than the input may have.
        let integer_digits = i16::from(precision) - i16::from(scale) + 1;
        let precision =
            (integer_digits + i16::from(kept)).clamp(1, i16::from(DECIMAL128_MAX_PRECISION));
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Decimal128(
                u8::try_from(precision).unwrap_or(DECIMAL128_MAX_PRECISION),
                kept,
            ),
            args.arg_fields[0].is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (DataType::Decimal128(_, scale), DataType::Decimal128(precision, kept)) = (
            args.arg_fields[0].data_type(),
            args.return_field.data_type(),
        ) else {
            return self.inner.invoke_with_args(args);
        };
        let (scale, precision, kept) = (*scale, *precision, *kept);
        let arrays = ColumnarValue::values_to_arrays(&args.args[..1])?;
        let Some(values) = arrays[0].as_any().downcast_ref::<Decimal128Array>() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes a decimal",
                self.name()
            )));
        };
        let drop = u32::try_from(i32::from(scale) - i32::from(kept)).unwrap_or(0);
        let unit = 10_i128.pow(drop);
        let rounded = values
            .iter()
            .map(|v| v.map(|v| round_to_unit(v, unit, self.direction)))
            .collect::<Decimal128Array>()
            .with_precision_and_scale(precision, kept)?;
        crate::pg::functions::scalar_if_scalar(&args.args, Arc::new(rounded))
    }
}

/// `value` divided by `unit`, rounded in `direction` (a decimal of scale s to scale s - log(unit)).
fn round_to_unit(value: i128, unit: i128, direction: Direction) -> i128 {
    let (quotient, remainder) = (value / unit, value % unit);
    match direction {
        Direction::Up if remainder > 0 => quotient + 1,
        Direction::Down if remainder < 0 => quotient - 1,
        _ => quotient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_digits_are_base_10000_digits() {
        assert_eq!(leading_digit(10, 1), (0, 1)); // 1.0
        assert_eq!(leading_digit(30, 1), (0, 3)); // 3.0
        assert_eq!(leading_digit(1000, 1), (0, 100)); // 100.0
        assert_eq!(leading_digit(123_456, 0), (1, 12)); // 12|3456
        assert_eq!(leading_digit(5, 2), (-1, 500)); // 0.05 = 0.0500
        assert_eq!(leading_digit(-7, 5), (-2, 7000)); // 0.00007 = 0.0000|7000
        assert_eq!(leading_digit(0, 3), (0, 0));
    }

    #[test]
    fn quotients_of_constants_have_postgres_scales() {
        // SELECT 1.0 / 3.0, 100.0 / 3.0, 2.0 / 7, 7.0 / 2, 1 / 30000000.0 in Postgres 15.
        assert_eq!(quotient_scale(Some((10, 30)), 1, 1), 20);
        assert_eq!(quotient_scale(Some((1000, 30)), 1, 1), 16);
        assert_eq!(quotient_scale(Some((20, 7)), 1, 0), 20);
        assert_eq!(quotient_scale(Some((70, 2)), 1, 0), 16);
        assert_eq!(quotient_scale(Some((1, 300_000_000)), 0, 1), 24);
        assert_eq!(quotient_scale(None, 2, 0), 16);
        assert_eq!(quotient_scale(None, 20, 0), 20);
    }

    #[test]
    fn rounds_to_whole_units() {
        assert_eq!(round_to_unit(275, 100, Direction::Up), 3);
        assert_eq!(round_to_unit(-275, 100, Direction::Up), -2);
        assert_eq!(round_to_unit(275, 100, Direction::Down), 2);
        assert_eq!(round_to_unit(-275, 100, Direction::Down), -3);
        assert_eq!(round_to_unit(-275, 10, Direction::TowardZero), -27);
        assert_eq!(round_to_unit(999, 1, Direction::Up), 999);
    }

    #[test]
    fn divides_rounding_half_away_from_zero() {
        assert_eq!(
            divide(10, 1, 30, 1, 20).ok(),
            Some(33_333_333_333_333_333_333)
        );
        assert_eq!(divide(20, 1, 30, 1, 4).ok(), Some(6667)); // 0.6667
        assert_eq!(divide(-20, 1, 30, 1, 4).ok(), Some(-6667));
        assert_eq!(divide(20, 1, -30, 1, 4).ok(), Some(-6667));
        assert_eq!(divide(1, 0, 8, 0, 2).ok(), Some(13)); // 0.125 → 0.13
        assert_eq!(divide(-1, 0, 8, 0, 2).ok(), Some(-13));
        assert!(divide(1, 0, 0, 0, 2).is_err());
        assert!(divide(i128::MAX / 10, 0, 1, 0, 16).is_err());
    }
}
