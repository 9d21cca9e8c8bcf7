//! The materialized view statements: `CREATE MATERIALIZED VIEW … [EMIT ON WINDOW CLOSE]`,
//! `DROP MATERIALIZED VIEW`, `SHOW MATERIALIZED VIEWS`, `SHOW CREATE MATERIALIZED VIEW` and
//! `EXPLAIN CREATE MATERIALIZED VIEW`, plus the rewrites of Flink's syntax: window table
//! functions (`TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`) into RisingWave's
//! (`TUMBLE(t, ts, size)`), and lookup joins (`t FOR SYSTEM_TIME AS OF PROCTIME()`, which
//! Postgres' grammar lacks) into the table function `lookup(t)`.

use std::ops::ControlFlow;

use sqlparser::ast::{Query, TableFactor, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::parser::{peek_word, table_name};
use super::source::parse_options;
use super::{AlterView, CreateView, Statement, normalize_ident};
use crate::error::{Error, Result};

const WINDOW_FUNCTIONS: [&str; 4] = ["tumble", "hop", "cumulate", "session"];

/// Parses a view statement if one starts here; `None` leaves the parser untouched.
pub fn parse_view_statement(parser: &mut Parser) -> Result<Option<Statement>> {
    let view_at = |n| peek_word(parser, n, "materialized") && peek_word(parser, n + 1, "view");
    if parser.peek_keyword(Keyword::CREATE) && view_at(1) {
        skip(parser, 3);
        return parse_create_view(parser).map(|c| Some(Statement::CreateView(c)));
    }
    if parser.peek_keyword(Keyword::EXPLAIN) && peek_word(parser, 1, "create") && view_at(2) {
        skip(parser, 4);
        return parse_create_view(parser).map(|c| Some(Statement::ExplainView(c)));
    }
    if parser.peek_keyword(Keyword::DROP) && view_at(1) {
        skip(parser, 3);
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = parser
            .parse_comma_separated(|p| p.parse_object_name(false))?
            .iter()
            .map(table_name)
            .collect::<Result<Vec<_>>>()?;
        let cascade = parser.parse_one_of_keywords(&[Keyword::CASCADE, Keyword::RESTRICT])
            == Some(Keyword::CASCADE);
        return Ok(Some(Statement::DropView {
            names,
            if_exists,
            cascade,
        }));
    }
    if parser.peek_keyword(Keyword::ALTER) && view_at(1) {
        skip(parser, 3);
        let name = table_name(&parser.parse_object_name(false)?)?;
        let action = if parser.parse_keyword(Keyword::SET) {
            let options = view_options(parse_options(parser)?)?;
            if options.state_ttl.is_some() {
                return Err(Error::unsupported(
                    "changing state.ttl of a materialized view",
                    Some("Create the view again WITH (state.ttl = …)."),
                ));
            }
            AlterView::Retention(Some(options.retention.ok_or_else(|| {
                Error::Syntax("ALTER MATERIALIZED VIEW … SET needs (retention = …)".into())
            })?))
        } else if parser.parse_keyword(Keyword::RESET) {
            parser.expect_token(&Token::LParen)?;
            let option = parser.parse_identifier()?.value.to_ascii_lowercase();
            parser.expect_token(&Token::RParen)?;
            if option != "retention" {
                return Err(unknown_option(&option));
            }
            AlterView::Retention(None)
        } else if peek_word(parser, 0, "rebuild") {
            parser.next_token();
            AlterView::Rebuild
        } else {
            return Err(Error::Syntax(format!(
                "syntax error at or near \"{}\": expected SET, RESET or REBUILD",
                parser.peek_token().token
            )));
        };
        return Ok(Some(Statement::AlterView { name, action }));
    }
    if parser.peek_keyword(Keyword::SHOW)
        && peek_word(parser, 1, "materialized")
        && peek_word(parser, 2, "views")
    {
        skip(parser, 3);
        return Ok(Some(Statement::ShowViews));
    }
    if parser.peek_keyword(Keyword::SHOW) && peek_word(parser, 1, "create") && view_at(2) {
        skip(parser, 4);
        let name = table_name(&parser.parse_object_name(false)?)?;
        return Ok(Some(Statement::ShowCreateView(name)));
    }
    Ok(None)
}

fn skip(parser: &mut Parser, tokens: usize) {
    for _ in 0..tokens {
        parser.next_token();
    }
}

/// After `CREATE MATERIALIZED VIEW`.
fn parse_create_view(parser: &mut Parser) -> Result<CreateView> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = table_name(&parser.parse_object_name(false)?)?;
    if parser.peek_token().token == Token::LParen {
        return Err(Error::unsupported(
            "a column list on CREATE MATERIALIZED VIEW",
            Some("Name the columns with AS in the SELECT list."),
        ));
    }
    let mut options = ViewOptions::default();
    if parser.parse_keyword(Keyword::WITH) {
        options = view_options(parse_options(parser)?)?;
    }
    parser.expect_keyword(Keyword::AS)?;
    let mut query = parser.parse_query()?;
    lowercase_window_functions(&mut query);
    let emit_on_close = if peek_word(parser, 0, "emit") {
        parser.next_token();
        parser.expect_keywords(&[Keyword::ON, Keyword::WINDOW, Keyword::CLOSE])?;
        true
    } else {
        false
    };
    if options == ViewOptions::default() && parser.parse_keyword(Keyword::WITH) {
        options = view_options(parse_options(parser)?)?;
    }
    Ok(CreateView {
        name,
        if_not_exists,
        query,
        emit_on_close,
        retention: options.retention,
        state_ttl: options.state_ttl,
    })
}

/// The options a view takes, durations as written ('30 days').
#[derive(Debug, Default, PartialEq)]
struct ViewOptions {
    retention: Option<String>,
    state_ttl: Option<String>,
}

fn view_options(options: Vec<(String, String)>) -> Result<ViewOptions> {
    let mut parsed = ViewOptions::default();
    for (key, value) in options {
        let slot = match key.as_str() {
            "retention" => &mut parsed.retention,
            "state.ttl" => &mut parsed.state_ttl,
            _ => return Err(unknown_option(&key)),
        };
        crate::source::options::parse_duration(&key, &value)?;
        *slot = Some(value);
    }
    Ok(parsed)
}

fn unknown_option(key: &str) -> Error {
    Error::InvalidParameter(format!(
        "unrecognized parameter \"{key}\" for a materialized view: the options are retention and state.ttl"
    ))
}

/// Parses a stored view query (kept as sqlparser printed it).
pub fn parse_query(text: &str) -> Result<Box<sqlparser::ast::Query>> {
    let rewritten = rewrite_flink(text);
    let text = rewritten.as_deref().unwrap_or(text);
    let mut query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)?
        .parse_query()?;
    lowercase_window_functions(&mut query);
    Ok(query)
}

/// The text of the subquery `alias` names in `query` (a derived table's or a `WITH` query's),
/// to show what a view's part runs.
pub fn subquery(query: &Query, alias: &str) -> Option<String> {
    struct Find<'a>(&'a str);
    impl Visitor for Find<'_> {
        type Break = String;

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
            match query
                .with
                .iter()
                .flat_map(|with| &with.cte_tables)
                .find(|cte| normalize_ident(&cte.alias.name) == self.0)
            {
                Some(cte) => ControlFlow::Break(cte.query.to_string()),
                None => ControlFlow::Continue(()),
            }
        }

        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
            match factor {
                TableFactor::Derived {
                    subquery,
                    alias: Some(alias),
                    ..
                } if normalize_ident(&alias.name) == self.0 => {
                    ControlFlow::Break(subquery.to_string())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    match query.visit(&mut Find(alias)) {
        ControlFlow::Break(text) => Some(text),
        ControlFlow::Continue(()) => None,
    }
}

/// DataFusion looks table functions up by their name as written; ours are registered in
/// lowercase, and `TUMBLE(…)` must find `tumble`.
pub fn lowercase_window_functions<V: sqlparser::ast::VisitMut>(statement: &mut V) {
    let _ = sqlparser::ast::visit_relations_mut(statement, |name| {
        if let [sqlparser::ast::ObjectNamePart::Identifier(ident)] = name.0.as_mut_slice()
            && ident.quote_style.is_none()
            && WINDOW_FUNCTIONS
                .iter()
                .any(|f| ident.value.eq_ignore_ascii_case(f))
        {
            ident.value = ident.value.to_ascii_lowercase();
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Rewrites Flink's window table functions and lookup joins ([`rewrite_flink_windows`],
/// [`rewrite_lookups`]); `None` when the text has neither.
pub fn rewrite_flink(sql: &str) -> Option<String> {
    match rewrite_flink_windows(sql) {
        Some(windows) => rewrite_lookups(&windows).or(Some(windows)),
        None => rewrite_lookups(sql),
    }
}

/// Rewrites `relation FOR SYSTEM_TIME AS OF PROCTIME()` (Flink's and RisingWave's lookup
/// join) into `lookup(relation)`, or `None` when the text has none.
fn rewrite_lookups(sql: &str) -> Option<String> {
    if !sql.to_ascii_lowercase().contains("system_time") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let is_word =
        |t: &Token, word: &str| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case(word));
    let clause = |at: usize| {
        let expected: [&dyn Fn(&Token) -> bool; 7] = [
            &|t| is_word(t, "for"),
            &|t| is_word(t, "system_time"),
            &|t| is_word(t, "as"),
            &|t| is_word(t, "of"),
            &|t| is_word(t, "proctime"),
            &|t| *t == Token::LParen,
            &|t| *t == Token::RParen,
        ];
        let mut i = at;
        for check in expected {
            while matches!(tokens.get(i), Some(Token::Whitespace(_))) {
                i += 1;
            }
            if !tokens.get(i).is_some_and(check) {
                return None;
            }
            i += 1;
        }
        Some(i)
    };
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut found = false;
    let mut i = 0;
    while i < tokens.len() {
        if let Some(end) = clause(i) {
            // The relation's name is what came last: words joined by periods.
            while matches!(out.last(), Some(Token::Whitespace(_))) {
                out.pop();
            }
            let mut start = out.len();
            while start > 0
                && matches!(out[start - 1], Token::Word(_) | Token::Period)
                && (start == out.len()
                    || !matches!(
                        (&out[start - 1], &out[start]),
                        (Token::Word(_), Token::Word(_))
                    ))
            {
                start -= 1;
            }
            if start == out.len() {
                return None;
            }
            let name: Vec<Token> = out.drain(start..).collect();
            out.push(Token::make_word("lookup", None));
            out.push(Token::LParen);
            out.extend(name);
            out.push(Token::RParen);
            found = true;
            i = end;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    found.then(|| out.iter().map(ToString::to_string).collect())
}

/// Rewrites Flink's window table functions into RisingWave's form, or `None` when the text has
/// none: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), …))` → `TUMBLE(t, ts, …)`; a session's
/// `PARTITION BY` is dropped (sessions are per GROUP BY key).
fn rewrite_flink_windows(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("descriptor") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let significant =
        |from: usize| (from..tokens.len()).find(|&i| !matches!(tokens[i], Token::Whitespace(_)));
    let is_word = |i: Option<usize>, word: &str| {
        i.is_some_and(
            |i| matches!(&tokens[i], Token::Word(w) if w.value.eq_ignore_ascii_case(word)),
        )
    };
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut drop_closing: Vec<usize> = Vec::new(); // paren depths whose `)` is removed
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        // TABLE ( <window fn> (  → <window fn> (
        if is_word(Some(i), "table")
            && let Some(open) = significant(i + 1)
            && tokens[open] == Token::LParen
            && let Some(function) = significant(open + 1)
            && WINDOW_FUNCTIONS.iter().any(|f| is_word(Some(function), f))
        {
            depth += 1;
            drop_closing.push(depth);
            i = function;
            continue;
        }
        // `TABLE t` as a window function argument → `t`
        if is_word(Some(i), "table")
            && out
                .iter()
                .rev()
                .find(|t| !matches!(t, Token::Whitespace(_)))
                .is_some_and(|t| matches!(t, Token::LParen | Token::Comma))
        {
            i = significant(i + 1)?;
            continue;
        }
        // DESCRIPTOR ( x ) → x
        if is_word(Some(i), "descriptor")
            && let Some(open) = significant(i + 1)
            && tokens[open] == Token::LParen
        {
            let column = significant(open + 1)?;
            let close = significant(column + 1)?;
            if tokens[close] != Token::RParen {
                return None;
            }
            out.push(tokens[column].clone());
            i = close + 1;
            continue;
        }
        // SESSION(TABLE t PARTITION BY a, b, DESCRIPTOR(ts), …): the keys are dropped.
        if is_word(Some(i), "partition")
            && is_word(significant(i + 1), "by")
            && !drop_closing.is_empty()
        {
            while i < tokens.len() && !is_word(Some(i), "descriptor") {
                i += 1;
            }
            out.push(Token::Comma);
            out.push(Token::Whitespace(Whitespace::Space));
            continue;
        }
        match token {
            Token::LParen => depth += 1,
            Token::RParen => {
                if drop_closing.last() == Some(&depth) {
                    drop_closing.pop();
                    depth -= 1;
                    i += 1;
                    continue;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        out.push(token.clone());
        i += 1;
    }
    Some(out.iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_flink_windows() {
        let flink = "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), \
                     INTERVAL '10' SECOND)) GROUP BY window_start, window_end";
        assert_eq!(
            rewrite_flink_windows(flink).unwrap(),
            "SELECT window_start, count(*) FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end"
        );
        let hop = "FROM TABLE(\n  HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '1' MINUTE))";
        assert_eq!(
            rewrite_flink_windows(hop).unwrap(),
            "FROM HOP(clicks, ts, INTERVAL '5' SECOND, INTERVAL '1' MINUTE)"
        );
        let session = "FROM TABLE(SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '5' MINUTE))";
        assert_eq!(
            rewrite_flink_windows(session).unwrap(),
            "FROM SESSION(clicks , ts, INTERVAL '5' MINUTE)"
        );
        assert!(rewrite_flink_windows("SELECT 1").is_none());
    }

    #[test]
    fn rewrites_lookup_joins() {
        assert_eq!(
            rewrite_flink(
                "SELECT e.id, u.country FROM events e JOIN public.users FOR SYSTEM_TIME AS OF \
                 PROCTIME() AS u ON e.uid = u.id"
            )
            .unwrap(),
            "SELECT e.id, u.country FROM events e JOIN lookup(public.users) AS u ON e.uid = u.id"
        );
        assert_eq!(
            rewrite_flink(
                "SELECT * FROM e JOIN users for system_time as of proctime ( ) u ON true"
            )
            .unwrap(),
            "SELECT * FROM e JOIN lookup(users) u ON true"
        );
        assert!(rewrite_flink("SELECT 'for system_time' FROM t").is_none());
    }
}
