//! `numeric` in Postgres' binary form, as Postgres itself writes it: base-10000 digits without
//! leading or trailing zero digits. arrow-pg goes through `rust_decimal`, which keeps trailing
//! zero digits (0.5000000000000000 as five digits where Postgres sends one: the same value,
//! other bytes) and holds only 28 significant digits, where a decimal column holds 38.

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};

/// One decimal value (`value` · 10^-`scale`, `scale` ≥ 0).
#[derive(Debug)]
pub struct BinaryNumeric {
    pub value: Option<i128>,
    pub scale: i8,
}

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;

impl ToSql for BinaryNumeric {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let Some(value) = self.value else {
            return Ok(IsNull::Yes);
        };
        let scale = usize::try_from(self.scale)?;
        let (weight, digits) = base_10000_digits(value.unsigned_abs(), scale);
        out.put_u16(u16::try_from(digits.len())?);
        out.put_i16(weight);
        out.put_u16(if value < 0 { NEGATIVE } else { POSITIVE });
        out.put_u16(u16::try_from(scale)?);
        for digit in digits {
            out.put_u16(digit);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    postgres_types::to_sql_checked!();
}

/// The weight of the first digit and the digits, without leading and trailing zero digits;
/// (0, []) for zero.
fn base_10000_digits(magnitude: u128, scale: usize) -> (i16, Vec<u16>) {
    let text = magnitude.to_string();
    let (whole, fraction) = match text.len().checked_sub(scale) {
        Some(split) => (text[..split].to_string(), text[split..].to_string()),
        None => (String::new(), format!("{text:0>scale$}")),
    };
    // Groups of four decimal digits aligned on the decimal point.
    let whole = format!("{}{whole}", "0".repeat((4 - whole.len() % 4) % 4));
    let fraction = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
    let whole_groups = whole.len() / 4;
    let groups = whole
        .as_bytes()
        .chunks(4)
        .chain(fraction.as_bytes().chunks(4))
        .map(|g| g.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
        .collect::<Vec<_>>();
    let Some(first) = groups.iter().position(|&g| g != 0) else {
        return (0, Vec::new());
    };
    let last = groups.iter().rposition(|&g| g != 0).unwrap_or(first);
    let weight = i16::try_from(whole_groups).unwrap_or(i16::MAX)
        - 1
        - i16::try_from(first).unwrap_or(i16::MAX);
    (weight, groups[first..=last].to_vec())
}

/// Only sent in binary form (text goes through [`crate::pg::text`]).
impl ToSqlText for BinaryNumeric {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        _options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_postgres_base_10000_digits() {
        // As Postgres 15 sends 0.5000000000000000, 12.50, 123456.789, 0.00001, 10000, 0.
        assert_eq!(
            base_10000_digits(5_000_000_000_000_000, 16),
            (-1, vec![5000])
        );
        assert_eq!(base_10000_digits(1250, 2), (0, vec![12, 5000]));
        assert_eq!(base_10000_digits(123_456_789, 3), (1, vec![12, 3456, 7890]));
        assert_eq!(base_10000_digits(1, 5), (-2, vec![1000]));
        assert_eq!(base_10000_digits(10_000, 0), (1, vec![1]));
        assert_eq!(base_10000_digits(0, 2), (0, vec![]));
    }
}
