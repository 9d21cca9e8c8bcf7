//! Postgres' functions over `bytea`, where DataFusion's take text only or differ.
//!
//! `sluice_catalog.rejected_rows.raw` is the record a source could not decode, as bytes; users
//! look into it with `length`, `octet_length`, `encode(raw, 'escape')` and
//! `convert_from(raw, 'UTF8')`, which DataFusion refused (its `length` of a binary failed on
//! the first byte that is not UTF-8 with XX000) or lacks. `length` and `encode` of text keep
//! DataFusion's own; `encode`'s `base64` is Postgres' (padded, a newline every 76 characters)
//! and `escape` is added.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::error::Error;

/// Replaces `length` and `octet_length` with versions that take bytea too (DataFusion's for
/// text), and `encode`; adds `convert_from` and `convert_to`.
pub fn register(ctx: &SessionContext) {
    let binary = [
        DataType::Binary,
        DataType::LargeBinary,
        DataType::BinaryView,
    ];
    for (name, kind) in [
        ("length", Kind::Length),
        ("octet_length", Kind::OctetLength),
    ] {
        if let Ok(inner) = ctx.udf(name) {
            let mut signatures: Vec<TypeSignature> = binary
                .iter()
                .map(|b| TypeSignature::Exact(vec![b.clone()]))
                .collect();
            signatures.push(inner.signature().type_signature.clone());
            ctx.register_udf(ScalarUDF::new_from_impl(ByteaFunction {
                kind,
                signature: Signature::one_of(signatures, Volatility::Immutable),
                text: Some(inner),
            }));
        }
    }
    let bytes_and_name = binary
        .iter()
        .chain([&DataType::Utf8])
        .map(|b| TypeSignature::Exact(vec![b.clone(), DataType::Utf8]))
        .collect();
    let text_and_name = vec![TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8])];
    for (kind, signatures) in [
        (Kind::Encode, bytes_and_name),
        (Kind::ConvertTo, text_and_name),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(ByteaFunction {
            kind,
            signature: Signature::one_of(signatures, Volatility::Immutable),
            text: None,
        }));
    }
    let convert_from = binary
        .iter()
        .map(|b| TypeSignature::Exact(vec![b.clone(), DataType::Utf8]))
        .collect();
    ctx.register_udf(ScalarUDF::new_from_impl(ByteaFunction {
        kind: Kind::ConvertFrom,
        signature: Signature::one_of(convert_from, Volatility::Immutable),
        text: None,
    }));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Length,
    OctetLength,
    Encode,
    ConvertFrom,
    ConvertTo,
}

/// One of the functions; `text` is DataFusion's own, which answers for text arguments.
#[derive(Debug)]
struct ByteaFunction {
    kind: Kind,
    signature: Signature,
    text: Option<Arc<ScalarUDF>>,
}

impl PartialEq for ByteaFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for ByteaFunction {}

impl std::hash::Hash for ByteaFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

impl ByteaFunction {
    /// DataFusion's function, when the call is for it rather than for us.
    fn delegate(&self, args: &[DataType]) -> Option<&ScalarUDF> {
        self.text
            .as_deref()
            .filter(|_| !args.first().is_some_and(is_binary))
    }
}

impl ScalarUDFImpl for ByteaFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Length => "length",
            Kind::OctetLength => "octet_length",
            Kind::Encode => "encode",
            Kind::ConvertFrom => "convert_from",
            Kind::ConvertTo => "convert_to",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if let Some(text) = self.delegate(args) {
            return text.return_type(args);
        }
        Ok(match self.kind {
            Kind::Length | Kind::OctetLength => DataType::Int32,
            Kind::Encode | Kind::ConvertFrom => DataType::Utf8,
            Kind::ConvertTo => DataType::Binary,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(|a| a.data_type()).collect();
        if let Some(text) = self.delegate(&types) {
            return text.invoke_with_args(args);
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let values: ArrayRef = match self.kind {
            Kind::Length | Kind::OctetLength => {
                let bytes = binary(&arrays[0])?;
                Arc::new(
                    bytes
                        .iter()
                        .map(|b| b.map(|b| b.len() as i32))
                        .collect::<Int32Array>(),
                )
            }
            Kind::Encode => {
                let (bytes, formats) = (binary(&arrays[0])?, text(&arrays[1])?);
                let encoded = each_row(&bytes, &formats, |i| {
                    encode(bytes.value(i), formats.value(i))
                })?;
                Arc::new(StringArray::from(encoded))
            }
            Kind::ConvertFrom => {
                let (bytes, encodings) = (binary(&arrays[0])?, text(&arrays[1])?);
                let converted = each_row(&bytes, &encodings, |i| {
                    convert_from(bytes.value(i), encodings.value(i))
                })?;
                Arc::new(StringArray::from(converted))
            }
            Kind::ConvertTo => {
                let (strings, encodings) = (text(&arrays[0])?, text(&arrays[1])?);
                let converted = each_row(&strings, &encodings, |i| {
                    convert_to(strings.value(i), encodings.value(i))
                })?;
                Arc::new(BinaryArray::from_iter(converted))
            }
        };
        crate::pg::functions::scalar_if_scalar(&args.args, values)
    }
}

/// `f` of every row of two arguments; NULL where either is NULL, as these functions are strict.
fn each_row<T>(
    first: &dyn Array,
    second: &dyn Array,
    f: impl Fn(usize) -> Result<T, Error>,
) -> Result<Vec<Option<T>>> {
    (0..first.len())
        .map(|i| match first.is_null(i) || second.is_null(i) {
            true => Ok(None),
            false => f(i).map(Some).map_err(DataFusionError::from),
        })
        .collect()
}

fn binary(array: &ArrayRef) -> Result<BinaryArray> {
    Ok(cast(array, &DataType::Binary)?.as_binary::<i32>().clone())
}

fn text(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// `encode(bytes, format)` for `escape` and `base64` as Postgres writes them.
fn encode(bytes: &[u8], format: &str) -> Result<String, Error> {
    match format.to_ascii_lowercase().as_str() {
        "escape" => {
            let mut text = String::with_capacity(bytes.len());
            for &b in bytes {
                match b {
                    b'\\' => text.push_str("\\\\"),
                    0 | 0x80..=0xff => text.push_str(&format!("\\{b:03o}")),
                    _ => text.push(char::from(b)),
                }
            }
            Ok(text)
        }
        "base64" => {
            let encoded = STANDARD.encode(bytes);
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|line| std::str::from_utf8(line).unwrap_or_default())
                .collect();
            Ok(lines.join("\n"))
        }
        "hex" => Ok(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        other => Err(Error::InvalidParameter(format!(
            "unrecognized encoding: \"{other}\""
        ))),
    }
}

/// The encodings `convert_from` and `convert_to` know: UTF-8 (and SQL_ASCII, which Postgres
/// checks as the database's) and LATIN1.
enum Encoding {
    Utf8,
    Latin1,
}

fn encoding(name: &str, direction: &str) -> Result<Encoding, Error> {
    let normalized: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    match normalized.as_str() {
        "UTF8" | "UNICODE" | "SQLASCII" => Ok(Encoding::Utf8),
        "LATIN1" | "ISO88591" => Ok(Encoding::Latin1),
        _ => Err(Error::InvalidParameter(format!(
            "invalid {direction} encoding name \"{name}\""
        ))),
    }
}

fn convert_from(bytes: &[u8], name: &str) -> Result<String, Error> {
    match encoding(name, "source")? {
        Encoding::Utf8 => match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => Ok(text.to_string()),
            Ok(text) => Err(invalid_bytes(
                &text.as_bytes()[text.find('\0').unwrap_or(0)..][..1],
            )),
            Err(e) => {
                let start = e.valid_up_to();
                let end = start + e.error_len().unwrap_or(bytes.len() - start);
                Err(invalid_bytes(&bytes[start..end]))
            }
        },
        Encoding::Latin1 => match bytes.iter().position(|&b| b == 0) {
            Some(at) => Err(invalid_bytes(&bytes[at..at + 1])),
            None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        },
    }
}

fn convert_to(text: &str, name: &str) -> Result<Vec<u8>, Error> {
    match encoding(name, "destination")? {
        Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
        Encoding::Latin1 => text
            .chars()
            .map(|c| {
                u8::try_from(u32::from(c)).map_err(|_| Error::InvalidParameter(format!(
                    "character with byte sequence {} in encoding \"UTF8\" has no equivalent in encoding \"LATIN1\"",
                    shown(c.encode_utf8(&mut [0; 4]).as_bytes())
                )))
            })
            .collect(),
    }
}

fn invalid_bytes(bytes: &[u8]) -> Error {
    Error::InvalidEncoding {
        message: format!(
            "invalid byte sequence for encoding \"UTF8\": {}",
            shown(bytes)
        ),
        detail: None,
    }
}

/// Bytes as Postgres' messages show them: `0xe2 0x82`.
fn shown(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_encoded_and_converted_as_postgres_does() {
        assert_eq!(
            encode(b"a\\b\x00\xff ~", "escape").unwrap(),
            "a\\\\b\\000\\377 ~"
        );
        assert_eq!(encode(b"abc", "BASE64").unwrap(), "YWJj");
        let long = encode(&[0u8; 60], "base64").unwrap();
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), [76, 4]);
        assert_eq!(encode(b"\x00\xff", "hex").unwrap(), "00ff");
        assert_eq!(encode(b"x", "rot13").unwrap_err().sqlstate(), "22023");

        assert_eq!(convert_from("café".as_bytes(), "utf-8").unwrap(), "café");
        assert_eq!(convert_from(b"caf\xe9", "LATIN1").unwrap(), "café");
        let bad = convert_from(b"ok\xff\xfe", "UTF8").unwrap_err();
        assert_eq!(
            (bad.sqlstate(), bad.to_string().as_str()),
            ("22021", "invalid byte sequence for encoding \"UTF8\": 0xff")
        );
        assert_eq!(
            convert_from(b"a\x00", "UTF8").unwrap_err().sqlstate(),
            "22021"
        );
        assert_eq!(
            convert_from(b"a", "EBCDIC").unwrap_err().sqlstate(),
            "22023"
        );
        assert_eq!(convert_to("café", "LATIN1").unwrap(), b"caf\xe9");
        assert!(convert_to("€", "LATIN1").is_err());
    }
}
