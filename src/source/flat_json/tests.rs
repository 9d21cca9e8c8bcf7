//! The fast path alone: what it takes and what it declines.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};

use super::*;
use crate::sql::{Statement, parser::parse};

fn decoder() -> FlatDecoder {
    let sql = "CREATE SOURCE s (id BIGINT NOT NULL, n INT, page VARCHAR, amount DOUBLE PRECISION, \
               ok BOOLEAN, ts TIMESTAMPTZ) WITH (connector = 'kafka')";
    let Some(Statement::CreateSource(c)) = parse(sql).unwrap().pop() else {
        panic!()
    };
    FlatDecoder::try_new(&c.columns).unwrap()
}

fn decode(decoder: &mut FlatDecoder, payloads: &[&str]) -> Option<RecordBatch> {
    let records = Record::of_payloads(payloads);
    let indices: Vec<usize> = (0..records.len()).collect();
    decoder.decode(&records, &indices)
}

#[test]
fn plain_objects_become_rows() {
    let mut d = decoder();
    let batch = decode(
        &mut d,
        &[
            r#"{"id": 1, "n": -2, "page": "/a", "amount": 0.1, "ok": true, "ts": 1767225600000}"#,
            r#" {"ts": "2026-01-01T00:00:01Z", "extra": {"amount": 2.5}, "id": 2,
                "page": "caf\u00e9 \/x", "amount": 3} "#,
            r#"{"id": 3, "page": null, "n": null, "ok": false, "ts": "1767225600002"}"#,
        ],
    )
    .unwrap();
    assert_eq!(batch.num_rows(), 3);
    let ids = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 2, 3]);
    let n = batch.column(1).as_primitive::<Int32Type>();
    assert_eq!((n.value(0), n.null_count()), (-2, 2));
    let pages = batch.column(2).as_string::<i32>();
    assert_eq!(pages.value(1), "café /x");
    assert!(pages.is_null(2));
    let amounts = batch.column(3).as_primitive::<Float64Type>();
    assert_eq!((amounts.value(0), amounts.value(1)), (0.1, 3.0));
    let ok = batch.column(4).as_boolean();
    assert!(ok.value(0) && ok.is_null(1) && !ok.value(2));
    let ts = batch.column(5).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        ts.values(),
        &[
            1_767_225_600_000_000,
            1_767_225_601_000_000,
            1_767_225_600_002_000
        ]
    );
    assert_eq!(ts.timezone(), Some("+00:00"));
}

/// Each of these makes the chunk go the general way, and leaves the decoder ready for the next.
#[test]
fn anything_else_is_declined() {
    let mut d = decoder();
    // Bytes that are not UTF-8: in text, in a key of no column, in a value skipped, in a
    // timestamp, and in an escaped string.
    for bytes in [
        &b"{\"id\": 1, \"page\": \"\xff\"}"[..],
        b"{\"id\": 1, \"\xc3\": 2}",
        b"{\"id\": 1, \"other\": [\"\xc3(\"]}",
        b"{\"id\": 1, \"ts\": \"2026\xff\"}",
        b"{\"id\": 1, \"page\": \"\\n\xe2\x82\"}",
    ] {
        let payloads = [bytes];
        let records = Record::of_payloads(&payloads);
        assert!(d.decode(&records, &[0]).is_none());
    }
    for odd in [
        r#"{"id": "1"}"#,
        r#"{"id": 1.5}"#,
        r#"{"id": 1e3}"#,
        r#"{"id": 9223372036854775808}"#,
        r#"{"id": 1, "n": 2147483648}"#,
        r#"{"id": 1, "page": 5}"#,
        r#"{"id": 1, "page": ["a"]}"#,
        r#"{"id": 1, "amount": "1.5"}"#,
        r#"{"id": 1, "ok": "true"}"#,
        r#"{"id": 1, "ts": 1767225600000.5}"#,
        r#"{"id": 1, "ts": "yesterday"}"#,
        r#"{"id": 1, "id": 2}"#,
        r#"{"n": 1}"#,
        r#"{"id": null}"#,
        r#"[1]"#,
        r#"{"id": 1} {"id": 2}"#,
        r#"{"id": 1"#,
        r#"{"id": 1,}"#,
        r#"{"id": 01}"#,
        r#"{"id": -}"#,
        r#"{"id": 1, "amount": 1.}"#,
        r#"{"id": 1, "amount": .5}"#,
        r#"{"id": 1, "amount": 1e}"#,
        r#"{"id": 1, "amount": 1e999}"#,
        r#"{"id": 1, "ok": tru}"#,
        r#"{"id": 1, "ok": truex}"#,
        r#"{"id": 1 "n": 2}"#,
        r#"{"id" 1}"#,
        r#"{id: 1}"#,
        r#"{"id": 1, "page": "a\ud800"}"#,
        r#"{"id": 1, "page": "a\udc00\ud800"}"#,
        r#"{"id": 1, "page": "a\x"}"#,
        r#"{"id": 1, "page": "a\u12"}"#,
        "{\"id\": 1, \"page\": \"tab\tinside\"}",
        r#"{"id": 1, "other": [1, 2,]}"#,
        r#"{"id": 1, "other": {"a" 1}}"#,
        r#"{"id": 1, "other": {1: 1}}"#,
        r#"{"id": 1, "other": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    ] {
        let plain = r#"{"id": 7}"#;
        assert!(decode(&mut d, &[plain, odd]).is_none(), "{odd}");
        let again = decode(&mut d, &[plain]).unwrap();
        assert_eq!(again.num_rows(), 1, "after {odd}");
    }
}

/// Seeded chunks of plain records — integers up to 19 digits, floats short and long and with
/// exponents, strings with escapes, timestamps as numbers and as text, keys in any order, left
/// out, NULL or unknown — are taken by the fast path and give the rows, bit for bit, that the
/// general path gives.
#[test]
fn plain_chunks_decode_as_the_general_path_does() {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let sql = "CREATE SOURCE s (id BIGINT NOT NULL, n INT, page VARCHAR, amount DOUBLE PRECISION, \
               ok BOOLEAN, ts TIMESTAMPTZ) WITH (connector = 'kafka')";
    let Some(Statement::CreateSource(c)) = parse(sql).unwrap().pop() else {
        panic!()
    };
    let def = crate::catalog::source::SourceDef {
        id: 1,
        name: c.name,
        columns: c.columns,
        watermark: None,
        includes: Vec::new(),
        options: Default::default(),
        created_at_ms: 0,
        primary_key: Vec::new(),
    };
    let mut fast = FlatDecoder::try_new(&def.columns).unwrap();
    let mut general = super::super::decode::JsonDecoder::new(&def).general_only();
    for seed in 0..40u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let payloads: Vec<String> = (0..rng.random_range(1..200))
            .map(|_| {
                let digits = rng.random_range(1..=15u32);
                let scale = rng.random_range(0..digits);
                let mantissa = rng.random_range(0..10i64.pow(digits));
                // Short decimals, and the long and exponent forms serde_json alone might round
                // otherwise.
                let float = match rng.random_range(0..4) {
                    0 => format!(
                        "{}",
                        rng.random::<f64>() * 10f64.powi(rng.random_range(-30..30))
                    ),
                    1 => format!("{:e}", rng.random::<f64>() * 1e-300),
                    2 => format!("0.{}", rng.random_range(10u64.pow(17)..u64::MAX)),
                    _ => format!(
                        "{}{}.{:0>width$}",
                        if rng.random_bool(0.3) { "-" } else { "" },
                        mantissa / 10i64.pow(scale.max(1)),
                        mantissa % 10i64.pow(scale.max(1)),
                        width = scale.max(1) as usize
                    ),
                };
                let ts = match rng.random_bool(0.5) {
                    true => rng.random_range(0..4_000_000_000_000i64).to_string(),
                    false => format!(
                        "\"2026-0{}-1{}T0{}:00:00.{}Z\"",
                        rng.random_range(1..10),
                        rng.random_range(0..10),
                        rng.random_range(0..10),
                        rng.random_range(0..999_999)
                    ),
                };
                let mut members = vec![
                    format!("\"id\": {}", rng.random_range(i64::MIN..i64::MAX)),
                    format!("\"n\": {}", rng.random_range(i32::MIN..i32::MAX)),
                    format!("\"page\": \"/p\\u00e9\\\"{}\\n\"", rng.random_range(0..100)),
                    format!("\"amount\": {float}"),
                    format!("\"ok\": {}", rng.random_bool(0.5)),
                    format!("\"ts\": {ts}"),
                    "\"extra\": {\"a\": [1.5e300, \"x\", {}]}".to_string(),
                ];
                // Keys may come escaped.
                if rng.random_bool(0.1) {
                    members[3] = members[3].replacen("\"amount\"", "\"am\\u006funt\"", 1);
                }
                members.shuffle(&mut rng);
                // Anything but the id may be left out or NULL.
                members.retain(|m| m.starts_with("\"id\"") || rng.random_bool(0.8));
                for m in members.iter_mut() {
                    if !m.starts_with("\"id\"") && rng.random_bool(0.1) {
                        let key = m.split(':').next().unwrap().to_string();
                        *m = format!("{key}: null");
                    }
                }
                format!("{{{}}}", members.join(", "))
            })
            .collect();
        let records = Record::of_payloads(&payloads);
        let indices: Vec<usize> = (0..records.len()).collect();
        let expected = general.decode(0, &records).unwrap();
        assert!(expected.rejected.is_empty(), "{:?}", expected.rejected);
        let Some(batch) = fast.decode(&records, &indices) else {
            let odd = (0..records.len()).find(|&i| fast.decode(&records, &[i]).is_none());
            panic!("seed {seed}: declined {:?}", odd.map(|i| &payloads[i]));
        };
        assert_eq!(batch, expected.batch, "seed {seed}");
    }
}

/// Short decimals divided exactly are what the standard library's full parse gives, bit for
/// bit; longer ones and exponents are left to it.
#[test]
fn short_decimals_are_correctly_rounded() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for _ in 0..200_000 {
        let digits = rng.random_range(1..=15u32);
        let text = format!(
            "{:0>width$}",
            rng.random_range(0..10u64.pow(digits)),
            width = digits as usize
        );
        let point = rng.random_range(1..=text.len());
        let sign = if rng.random_bool(0.5) { "-" } else { "" };
        let number = match point == text.len() {
            true => format!("{sign}{text}"),
            false => format!("{sign}{}.{}", &text[..point], &text[point..]),
        };
        // Leading zeros only before a point, as JSON allows.
        if number.trim_start_matches('-').starts_with("0")
            && !number.contains(".")
            && number.trim_start_matches('-') != "0"
        {
            continue;
        }
        let fast = short_decimal(number.as_bytes()).unwrap();
        assert_eq!(
            fast.to_bits(),
            number.parse::<f64>().unwrap().to_bits(),
            "{number}"
        );
    }
    for long in ["1234567890.1234567", "1e5", "0.1E-3"] {
        assert_eq!(short_decimal(long.as_bytes()), None, "{long}");
    }
}
