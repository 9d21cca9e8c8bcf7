//! The members of a JSON object, each as the bytes of its value, found without decoding them.
//!
//! A Debezium envelope carries rows (`before`, `after`) that the source's row decoder reads,
//! so the envelope itself is only split into its members' bytes. serde_json's `RawValue`
//! would do this, but its feature flag recompiles serde_json and everything built on it
//! (arrow-json among them), which measurably slowed the JSON event path (5–8 % on
//! `window_throughput`). Here serde_json still parses every key and skips every value (with
//! its nesting limit and its errors); only the object's own punctuation is read by hand.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Deserializer;

/// The values of `names` in the JSON object `bytes`, as their bytes; `None` for a member
/// that is absent or null. Other members are checked and skipped; a name given twice is an
/// error, as in a `#[derive(Deserialize)]` struct.
pub fn members<'a, const N: usize>(
    bytes: &'a [u8],
    names: [&str; N],
) -> Result<[Option<&'a [u8]>; N], String> {
    let mut found = [None; N];
    let mut seen = [false; N];
    let mut pos = skip_whitespace(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    pos = skip_whitespace(bytes, pos + 1);
    if bytes.get(pos) == Some(&b'}') {
        pos += 1;
    } else {
        loop {
            let (name, end) = one::<String>(bytes, pos)?;
            pos = skip_whitespace(bytes, end);
            if bytes.get(pos) != Some(&b':') {
                return Err(format!("expected ':' at byte {pos}"));
            }
            let start = skip_whitespace(bytes, pos + 1);
            let (IgnoredAny, end) = one::<IgnoredAny>(bytes, start)?;
            if let Some(i) = names.iter().position(|n| *n == name) {
                if std::mem::replace(&mut seen[i], true) {
                    return Err(format!("duplicate field `{name}`"));
                }
                let value = &bytes[start..end];
                found[i] = (value != b"null").then_some(value);
            }
            pos = skip_whitespace(bytes, end);
            match bytes.get(pos) {
                Some(b',') => pos = skip_whitespace(bytes, pos + 1),
                Some(b'}') => {
                    pos += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' at byte {pos}")),
            }
        }
    }
    match skip_whitespace(bytes, pos) == bytes.len() {
        true => Ok(found),
        false => Err(format!("trailing characters at byte {pos}")),
    }
}

/// The one JSON value starting at `bytes[start]`, and the offset where it ends.
fn one<'de, T: Deserialize<'de>>(bytes: &'de [u8], start: usize) -> Result<(T, usize), String> {
    let mut values = Deserializer::from_slice(&bytes[start..]).into_iter::<T>();
    match values.next() {
        Some(Ok(value)) => Ok((value, start + values.byte_offset())),
        Some(Err(e)) => Err(format!("{e} (from byte {start})")),
        None => Err("unexpected end of JSON".into()),
    }
}

fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(found: [Option<&[u8]>; 2]) -> [Option<&str>; 2] {
        found.map(|v| v.map(|v| std::str::from_utf8(v).unwrap()))
    }

    #[test]
    fn finds_the_named_values_and_skips_the_rest() {
        let json = br#" { "skip": {"a": "}", "b": [1, {"c": "\"{"}]},
            "after" : {"id": 1, "name": "x,}"} , "\u006fp": "c", "n": -1.5e3 } "#;
        let found = members(json, ["after", "op"]).unwrap();
        assert_eq!(
            text(found),
            [Some(r#"{"id": 1, "name": "x,}"}"#), Some(r#""c""#)]
        );
        assert_eq!(text(members(b"{}", ["after", "op"]).unwrap()), [None, None]);
        let nulls = members(br#"{"after":null,"op":7}"#, ["after", "op"]).unwrap();
        assert_eq!(text(nulls), [None, Some("7")]);
    }

    #[test]
    fn every_member_the_parser_sees_is_found_with_the_same_value() {
        let json = br#"{"a":[1,2,{"x":null}],"b":"s\n\u00e9","c":true,"d":{"e":{"f":{}}},"g":12345678901234567890.125}"#;
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(json).unwrap();
        let found = members(json, ["a", "b", "c", "d", "g"]).unwrap();
        for (name, value) in ["a", "b", "c", "d", "g"].iter().zip(found) {
            let value: serde_json::Value = serde_json::from_slice(value.unwrap()).unwrap();
            assert_eq!(value, parsed[*name], "{name}");
        }
        // The bytes are the sender's: a number keeps every digit.
        assert_eq!(found_text(json, "g"), "12345678901234567890.125");
    }

    fn found_text(json: &[u8], name: &str) -> String {
        String::from_utf8(members(json, [name]).unwrap()[0].unwrap().to_vec()).unwrap()
    }

    #[test]
    fn malformed_objects_are_errors_not_panics() {
        let bad: Vec<&[u8]> = vec![
            b"",
            b"[]",
            b"\"op\"",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"{\"a\":1}}",
            b"{\"a\":tru}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":1 \"b\":2}",
            b"{\"op\":\"c\",\"op\":\"d\"}",
        ];
        for json in bad {
            assert!(
                members(json, ["a", "op"]).is_err(),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        // Skipping does not recurse, so nesting deeper than any stack is only long.
        let deep = format!(
            "{{\"a\":{}{},\"op\":1}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(members(deep.as_bytes(), ["op"]).unwrap(), [Some(&b"1"[..])]);
    }
}
