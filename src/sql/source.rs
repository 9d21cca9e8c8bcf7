//! The source statements: `CREATE SOURCE`, `DROP SOURCE`, `SHOW SOURCES`, `SHOW CREATE SOURCE`,
//! `ALTER SOURCE … RESET OFFSETS TO EARLIEST | LATEST`.
//!
//! RisingWave's grammar is canonical; Flink's spellings parse too. The `WITH (…)` keys are kept
//! as written (lowercased); `source::options` resolves aliases and checks values, so the parser
//! stays a grammar and nothing more.

use sqlparser::ast::ObjectName;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::parser::{Columns, parse_columns, peek_word, table_name};
use super::{CreateSource, Include, IncludeKind, Statement, normalize_ident};
use crate::error::{Error, Result};
use crate::source::kafka::ResetTo;

/// Parses a source statement if one starts here; `None` leaves the parser untouched.
pub fn parse_source_statement(parser: &mut Parser) -> Result<Option<Statement>> {
    let source_at = |n| peek_word(parser, n, "source");
    if parser.peek_keyword(Keyword::CREATE) && source_at(1) {
        parser.next_token();
        parser.next_token();
        return parse_create_source(parser).map(|c| Some(Statement::CreateSource(c)));
    }
    if parser.peek_keyword(Keyword::DROP) && source_at(1) {
        parser.next_token();
        parser.next_token();
        return parse_drop_source(parser).map(Some);
    }
    if parser.peek_keyword(Keyword::ALTER) && source_at(1) {
        parser.next_token();
        parser.next_token();
        return parse_reset_offsets(parser).map(Some);
    }
    if parser.peek_keyword(Keyword::SHOW) && peek_word(parser, 1, "sources") {
        parser.next_token();
        parser.next_token();
        return Ok(Some(Statement::ShowSources));
    }
    if parser.peek_keyword(Keyword::SHOW) && peek_word(parser, 1, "create") && source_at(2) {
        for _ in 0..3 {
            parser.next_token();
        }
        let name = source_name(&parser.parse_object_name(false)?)?;
        return Ok(Some(Statement::ShowCreateSource(name)));
    }
    Ok(None)
}

/// Sources share the `public` schema with tables.
fn source_name(name: &ObjectName) -> Result<String> {
    table_name(name)
}

/// After `CREATE SOURCE`.
fn parse_create_source(parser: &mut Parser) -> Result<CreateSource> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = source_name(&parser.parse_object_name(false)?)?;
    let Columns {
        columns,
        watermark,
        primary_key,
    } = parse_columns(parser, "source", &name)?;
    if !primary_key.is_empty() {
        return Err(Error::unsupported(
            "a primary key on a source",
            Some("A source's events are appended; declare the key on a table."),
        ));
    }
    let mut includes = Vec::new();
    while parser.parse_keyword(Keyword::INCLUDE) {
        let word = parser.parse_identifier()?;
        let kind = match word.value.to_ascii_lowercase().as_str() {
            "partition" => IncludeKind::Partition,
            "offset" => IncludeKind::Offset,
            "timestamp" => IncludeKind::Timestamp,
            "key" => IncludeKind::Key,
            other => {
                return Err(Error::unsupported(
                    format!("INCLUDE {other}"),
                    Some("A source can INCLUDE partition, offset, timestamp or key."),
                ));
            }
        };
        let column = if parser.parse_keyword(Keyword::AS) {
            normalize_ident(&parser.parse_identifier()?)
        } else {
            format!("kafka_{}", kind.keyword())
        };
        includes.push(Include { kind, column });
    }
    parser.expect_keyword(Keyword::WITH)?;
    let (options, format) = parse_connector(parser)?;
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        watermark,
        includes,
        options,
        format,
        primary_key: Vec::new(),
    })
}

/// `FORMAT upsert ENCODE json` as (`upsert`, `json`).
type FormatEncode = (String, String);
/// `WITH (…)` as (key, value) pairs, in order.
type Options = Vec<(String, String)>;

/// After `WITH`: the connector's `(options…)` and `FORMAT … ENCODE …`, if given.
pub(super) fn parse_connector(parser: &mut Parser) -> Result<(Options, Option<FormatEncode>)> {
    let options = parse_options(parser)?;
    let format = if parser.parse_keyword(Keyword::FORMAT) {
        let format = parser.parse_identifier()?.value.to_ascii_lowercase();
        if !peek_word(parser, 0, "encode") {
            return parser
                .expected("ENCODE", parser.peek_token())
                .map_err(Error::from);
        }
        parser.next_token();
        let encode = parser.parse_identifier()?.value.to_ascii_lowercase();
        Some((format, encode))
    } else {
        None
    };
    Ok((options, format))
}

/// `(key = value, …)`: a key is a quoted string or dotted words (`properties.bootstrap.server`),
/// a value a string, a number or a word.
pub(super) fn parse_options(parser: &mut Parser) -> Result<Options> {
    parser.expect_token(&Token::LParen)?;
    let mut options: Vec<(String, String)> = Vec::new();
    if parser.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key = match parser.next_token().token {
            Token::SingleQuotedString(key) => key,
            Token::Word(word) => {
                let mut key = word.value;
                while parser.consume_token(&Token::Period) {
                    match parser.next_token().token {
                        Token::Word(w) => key = format!("{key}.{}", w.value),
                        Token::Number(n, _) => key = format!("{key}.{n}"),
                        other => {
                            return Err(Error::Syntax(format!(
                                "syntax error at or near \"{other}\" in an option name"
                            )));
                        }
                    }
                }
                key
            }
            other => {
                return Err(Error::Syntax(format!(
                    "syntax error at or near \"{other}\": expected an option name"
                )));
            }
        };
        let key = key.to_ascii_lowercase();
        parser.expect_token(&Token::Eq)?;
        let value = match parser.next_token().token {
            Token::SingleQuotedString(v) => v,
            Token::Number(n, _) => n,
            Token::Minus => match parser.next_token().token {
                Token::Number(n, _) => format!("-{n}"),
                other => {
                    return Err(Error::Syntax(format!(
                        "syntax error at or near \"{other}\": expected a value for \"{key}\""
                    )));
                }
            },
            Token::Word(w) => w.value,
            other => {
                return Err(Error::Syntax(format!(
                    "syntax error at or near \"{other}\": expected a value for \"{key}\""
                )));
            }
        };
        if options.iter().any(|(k, _)| *k == key) {
            return Err(Error::Syntax(format!(
                "option \"{key}\" specified more than once"
            )));
        }
        options.push((key, value));
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        parser.expect_token(&Token::RParen)?;
        return Ok(options);
    }
}

/// After `ALTER SOURCE`: `name RESET OFFSETS TO EARLIEST | LATEST`.
fn parse_reset_offsets(parser: &mut Parser) -> Result<Statement> {
    let name = source_name(&parser.parse_object_name(false)?)?;
    let expected = |parser: &mut Parser, what: &str| {
        Error::Syntax(format!(
            "syntax error at or near \"{}\": expected {what}",
            parser.peek_token().token
        ))
    };
    if !(parser.parse_keyword(Keyword::RESET) && peek_word(parser, 0, "offsets")) {
        return Err(expected(parser, "RESET OFFSETS TO EARLIEST | LATEST"));
    }
    parser.next_token();
    if !parser.parse_keyword(Keyword::TO) {
        return Err(expected(parser, "TO"));
    }
    let to = match parser
        .peek_token()
        .token
        .to_string()
        .to_ascii_lowercase()
        .as_str()
    {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        _ => return Err(expected(parser, "EARLIEST or LATEST")),
    };
    parser.next_token();
    Ok(Statement::ResetSourceOffsets { name, to })
}

/// After `DROP SOURCE`.
fn parse_drop_source(parser: &mut Parser) -> Result<Statement> {
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let mut names = vec![source_name(&parser.parse_object_name(false)?)?];
    while parser.consume_token(&Token::Comma) {
        names.push(source_name(&parser.parse_object_name(false)?)?);
    }
    let cascade = parser.parse_one_of_keywords(&[Keyword::CASCADE, Keyword::RESTRICT])
        == Some(Keyword::CASCADE);
    Ok(Statement::DropSource {
        names,
        if_exists,
        cascade,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::parse;

    fn create(sql: &str) -> CreateSource {
        match parse(sql).unwrap().pop() {
            Some(Statement::CreateSource(c)) => c,
            other => panic!("not a CREATE SOURCE: {other:?}"),
        }
    }

    #[test]
    fn parses_offset_resets() {
        for (sql, want) in [
            (
                "ALTER SOURCE s RESET OFFSETS TO EARLIEST",
                ResetTo::Earliest,
            ),
            (
                "alter source public.s reset offsets to latest",
                ResetTo::Latest,
            ),
        ] {
            match parse(sql).unwrap().pop() {
                Some(Statement::ResetSourceOffsets { name, to }) => {
                    assert_eq!((name.as_str(), to), ("s", want))
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        for sql in [
            "ALTER SOURCE s RESET OFFSETS TO NOWHERE",
            "ALTER SOURCE s SET x",
        ] {
            assert_eq!(parse(sql).unwrap_err().sqlstate(), "42601", "{sql}");
        }
    }

    #[test]
    fn parses_risingwave_syntax() {
        let c = create(
            "CREATE SOURCE clicks (event_id BIGINT, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             INCLUDE partition AS kafka_partition INCLUDE offset AS kafka_offset INCLUDE timestamp \
             WITH (connector = 'kafka', topic = 'clicks', properties.bootstrap.server = '127.0.0.1:9092', \
                   scan.startup.mode = 'earliest', datagen.rows = 10) FORMAT PLAIN ENCODE JSON",
        );
        assert_eq!(c.name, "clicks");
        assert_eq!(c.watermark.unwrap().delay_ms, 5_000);
        assert_eq!(c.includes.len(), 3);
        assert_eq!(c.includes[2].column, "kafka_timestamp");
        assert_eq!(
            c.options[2],
            (
                "properties.bootstrap.server".to_string(),
                "127.0.0.1:9092".to_string()
            )
        );
        assert_eq!(c.options[4], ("datagen.rows".to_string(), "10".to_string()));
        assert_eq!(c.format, Some(("plain".into(), "json".into())));
    }

    #[test]
    fn parses_flink_quoted_keys_and_drop_and_show() {
        let c = create("CREATE SOURCE s (a INT) WITH ('connector'='kafka', 'Format'='json')");
        assert_eq!(c.options[1], ("format".to_string(), "json".to_string()));
        assert!(c.format.is_none());
        let statements =
            parse("DROP SOURCE IF EXISTS a, b CASCADE; SHOW SOURCES; SHOW CREATE SOURCE public.a")
                .unwrap();
        assert!(
            matches!(&statements[0], Statement::DropSource { names, if_exists: true, cascade: true } if names.len() == 2)
        );
        assert!(matches!(statements[1], Statement::ShowSources));
        assert!(matches!(&statements[2], Statement::ShowCreateSource(n) if n == "a"));
    }

    #[test]
    fn rejects_bad_option_lists() {
        for sql in [
            "CREATE SOURCE s (a INT) WITH (connector = 'kafka', connector = 'datagen')",
            "CREATE SOURCE s (a INT) WITH (connector 'kafka')",
            "CREATE SOURCE s (a INT) WITH (connector = 'kafka') FORMAT PLAIN JSON",
        ] {
            assert_eq!(parse(sql).unwrap_err().sqlstate(), "42601", "{sql}");
        }
    }
}
