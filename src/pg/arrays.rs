//! Text as an array the way Postgres reads it: `'{1,2,NULL}'::int[]`, `'{a,"b c"}'::text[]`.
//!
//! Arrow's cast from text to a list casts the whole string as one element, so `'{a,b}'::text[]`
//! was the one-element array `{"{a,b}"}` and `'{1,2}'::int[]` an error; and DataFusion refuses
//! to compare an array column with a quoted literal (psql's `\dp` writes `polroles <> '{0}'`).
//! [`ArrayText`] replaces every text-to-array cast, written or added by type coercion, with
//! [`array_in`]'s parse of Postgres' one-dimensional array syntax (quoting, backslash escapes,
//! unquoted `NULL`); [`ArrayLiteralComparisons`] reads a quoted literal compared with an array
//! as a cast to the array's type.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// Postgres' `array_isspace`: ASCII white space only.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Why `text` is not an array: Postgres' message and its DETAIL.
#[derive(Debug, PartialEq)]
pub struct Malformed {
    pub message: String,
    pub detail: &'static str,
}

/// The elements of one array value in Postgres' text form, `None` for NULL. Only one
/// dimension and no explicit bounds (`[1:2]={…}`): those are refused.
pub fn parse(text: &str) -> std::result::Result<Vec<Option<String>>, Malformed> {
    let malformed = |detail: &'static str| Malformed {
        message: format!("malformed array literal: \"{text}\""),
        detail,
    };
    let body = text.trim_matches(is_space);
    let body = body
        .strip_prefix('{')
        .ok_or_else(|| malformed("Array value must start with \"{\" or dimension information."))?
        .strip_suffix('}')
        .ok_or_else(|| malformed("Unexpected end of input."))?;
    let mut elements = Vec::new();
    if body.trim_matches(is_space).is_empty() {
        return Ok(elements);
    }
    let mut chars = body.chars().peekable();
    loop {
        while chars.next_if(|c| is_space(*c)).is_some() {}
        let mut value = String::new();
        // Bytes up to here were quoted or escaped: trailing space is trimmed only after them.
        let mut kept = 0;
        match chars.peek() {
            Some('"') => {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => value.push(
                            chars
                                .next()
                                .ok_or_else(|| malformed("Unexpected end of input."))?,
                        ),
                        Some(c) => value.push(c),
                        None => return Err(malformed("Unexpected end of input.")),
                    }
                }
                kept = value.len().max(1);
                while chars.next_if(|c| is_space(*c)).is_some() {}
            }
            Some('{') => return Err(malformed("Multidimensional arrays are not supported.")),
            _ => {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    match c {
                        '\\' => {
                            value.push(
                                chars
                                    .next()
                                    .ok_or_else(|| malformed("Unexpected end of input."))?,
                            );
                            kept = value.len();
                        }
                        '"' => return Err(malformed("Unexpected array element.")),
                        '{' | '}' => {
                            return Err(malformed("Unexpected \"{\" or \"}\" character."));
                        }
                        c => value.push(c),
                    }
                }
                let trimmed = kept + value[kept..].trim_end_matches(is_space).len();
                value.truncate(trimmed);
                if value.is_empty() {
                    return Err(malformed("Unexpected \",\" character."));
                }
            }
        }
        // Only a bare NULL is NULL: `"NULL"` and `\NULL` are the text.
        let null = kept == 0 && value.eq_ignore_ascii_case("null");
        elements.push((!null).then_some(value));
        match chars.next() {
            None => return Ok(elements),
            Some(',') => {}
            Some(_) => return Err(malformed("Expected \",\" or \"}\" character.")),
        }
    }
}

/// `array_in(text)`: text parsed as an array of `element`s.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayIn {
    element: FieldRef,
    signature: Signature,
}

fn array_in(element: FieldRef) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ArrayIn {
        element,
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    }))
}

impl ScalarUDFImpl for ArrayIn {
    fn name(&self) -> &str {
        "array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::clone(&self.element)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text = match &args.args[0] {
            ColumnarValue::Scalar(scalar) => scalar.to_array()?,
            ColumnarValue::Array(array) => Arc::clone(array),
        };
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| ArrowError::CastError("array input is not text".into()))?;
        let mut offsets = vec![0usize];
        let mut values: Vec<Option<String>> = Vec::new();
        for value in text {
            if let Some(value) = value {
                let elements = parse(value).map_err(|e| {
                    DataFusionError::External(Box::new(crate::error::Error::InvalidText {
                        message: e.message,
                        detail: Some(e.detail.to_string()),
                    }))
                })?;
                values.extend(elements);
            }
            offsets.push(values.len());
        }
        let values: ArrayRef = Arc::new(StringArray::from(values));
        let values = match self.element.data_type() {
            DataType::Binary => crate::pg::bytea::parse_array(&values, false)?,
            element => cast_with_options(
                &values,
                element,
                &CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )?,
        };
        let list = ListArray::try_new(
            Arc::clone(&self.element),
            OffsetBuffer::from_lengths(offsets.windows(2).map(|w| w[1] - w[0])),
            values,
            text.nulls().cloned(),
        )?;
        let list: ArrayRef = Arc::new(list);
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&list, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(list),
        })
    }
}

#[derive(Debug, Default)]
pub struct ArrayText;

impl AnalyzerRule for ArrayText {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        crate::pg::coercion::rewrite_expressions(plan, array_text)
    }

    fn name(&self) -> &str {
        "postgres_array_text"
    }
}

fn array_text(expr: Expr, schema: &DFSchema) -> Transformed<Expr> {
    match &expr {
        Expr::Cast(Cast { expr: input, field }) => {
            let DataType::List(element) = field.data_type() else {
                return Transformed::no(expr);
            };
            let is_text = input.get_type(schema).is_ok_and(|t| {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            });
            if !is_text || matches!(element.data_type(), DataType::List(_)) {
                return Transformed::no(expr);
            }
            let Ok(text) = input.as_ref().clone().cast_to(&DataType::Utf8, schema) else {
                return Transformed::no(expr);
            };
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                array_in(Arc::clone(element)),
                vec![text],
            )))
        }
        _ => Transformed::no(expr),
    }
}

/// Reads a quoted literal compared with an array as an array of the other side's type, while
/// the query is planned: DataFusion refuses to compare a list with text before any analyzer
/// rule could see the comparison.
#[derive(Debug, Default)]
pub struct ArrayLiteralComparisons;

impl ExprPlanner for ArrayLiteralComparisons {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use sqlparser::ast::BinaryOperator as Op;
        let RawBinaryExpr { op, left, right } = expr;
        let comparison = matches!(
            op,
            Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq
        );
        let list_type = |e: &Expr| {
            e.get_type(schema)
                .ok()
                .filter(|t| matches!(t, DataType::List(_)))
        };
        let quoted = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
        let (left, right) = match (comparison, list_type(&left), list_type(&right)) {
            (true, Some(t), None) if quoted(&right) => {
                (left, Expr::Cast(Cast::new(Box::new(right), t)))
            }
            (true, None, Some(t)) if quoted(&left) => {
                (Expr::Cast(Cast::new(Box::new(left), t)), right)
            }
            _ => (left, right),
        };
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn elements(text: &str) -> Vec<Option<&str>> {
        // Leaked for brevity: tests only.
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| e.map(|s| &*Box::leak(s.into_boxed_str())))
            .collect()
    }

    #[test]
    fn reads_postgres_array_syntax() {
        assert_eq!(elements("{1,2,NULL}"), [Some("1"), Some("2"), None]);
        assert_eq!(
            elements(" { a , \"b c\" , \"NULL\" } "),
            [Some("a"), Some("b c"), Some("NULL")]
        );
        assert_eq!(
            elements(r#"{"a\"b",c\,d,"x\\y"}"#),
            [Some("a\"b"), Some("c,d"), Some("x\\y")]
        );
        assert_eq!(elements("{}"), Vec::<Option<&str>>::new());
        assert_eq!(elements("{\"\"}"), [Some("")]);
        // Escaped characters keep their space; an escaped NULL is text; Unicode space is data.
        assert_eq!(
            elements(r"{a\ , \NULL,\ }"),
            [Some("a "), Some("NULL"), Some(" ")]
        );
        assert_eq!(elements("{\u{a0}x}"), [Some("\u{a0}x")]);
    }

    #[test]
    fn refuses_what_postgres_refuses() {
        for bad in [
            "1,2",
            "{1,2",
            "{1,,2}",
            "{a\"b}",
            "{\"a}",
            "{{1},{2}}",
            "{1}x",
            "{\"a\" b}",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(
                error.message.starts_with("malformed array literal"),
                "{bad}: {error:?}"
            );
        }
        assert_eq!(parse("{1").unwrap_err().detail, "Unexpected end of input.");
    }
}
