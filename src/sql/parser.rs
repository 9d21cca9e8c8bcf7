//! Parses SQL text into [`Statement`]s with sqlparser's Postgres dialect plus our DDL.
//!
//! Our statements are recognised by their leading keywords and parsed with sqlparser's own
//! building blocks (column definitions, expressions), never with regexes. Everything else is a
//! standard statement, handed to [`crate::pg::rewrite`] for Postgres' rewrites.

use sqlparser::ast::{BinaryOperator, ColumnOption, Expr, ObjectName, ObjectNamePart};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::interval::interval_ms;
use super::{ColumnDef, CreateSource, CreateTable, Statement, Watermark, normalize_ident};
use crate::catalog::types::ColumnType;
use crate::error::{Error, Result};

/// Parses every statement of `sql`; empty input gives an empty list. Standard statements come
/// out with Postgres' rewrites applied ([`crate::pg::rewrite`]).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let rewritten = super::view::rewrite_flink(sql);
    let sql = rewritten.as_deref().unwrap_or(sql);
    let mut statements = crate::pg::rewrite::standard_statements(sql, parse_with_extensions(sql)?);
    for statement in &mut statements {
        if let Statement::Standard(s) = statement {
            super::view::lowercase_window_functions(s.as_mut());
        }
    }
    Ok(statements)
}

/// The statements of `sql`, each as its own text, all checked to parse (a syntax error anywhere
/// runs none of them, as in Postgres) but not kept: a Query message of 100 000 statements held
/// 1.4 GB of syntax trees. Each text is [`parse`]d again when its turn comes.
pub fn split(sql: &str) -> Result<Vec<String>> {
    let rewritten = super::view::rewrite_flink(sql);
    let sql = rewritten.as_deref().unwrap_or(sql);
    let mut offsets = LineOffsets::new(sql);
    let mut parser = new_parser(sql)?;
    let mut texts = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let first = parser.peek_token();
        if first.token == Token::EOF {
            return Ok(texts);
        }
        let mut statement = parse_one(&mut parser)?;
        super::depth::bound(&mut statement)?;
        drop(statement);
        let next = parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return parser
                .expected("end of statement", next)
                .map_err(Error::from);
        }
        let start = offsets.byte(first.span.start);
        let end = match next.token {
            Token::EOF => sql.len(),
            _ => offsets.byte(next.span.start),
        };
        texts.push(sql[start..end.max(start)].to_string());
    }
}

/// Byte offsets of sqlparser's line and column locations (1-based, columns in characters),
/// asked for in increasing order: each answer walks on from the last, so a long one-line
/// input costs linear time, not quadratic.
struct LineOffsets<'a> {
    sql: &'a str,
    starts: Vec<usize>,
    /// The last location answered: (line, column, byte).
    last: (u64, u64, usize),
}

impl<'a> LineOffsets<'a> {
    fn new(sql: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineOffsets {
            sql,
            starts,
            last: (1, 1, 0),
        }
    }

    fn byte(&mut self, at: sqlparser::tokenizer::Location) -> usize {
        let (line, column, byte) = self.last;
        let (from_column, from_byte) = match at.line == line && at.column >= column {
            true => (column, byte),
            false => {
                let start = usize::try_from(at.line.saturating_sub(1))
                    .ok()
                    .and_then(|l| self.starts.get(l));
                match start {
                    Some(&start) => (1, start),
                    None => return self.sql.len(),
                }
            }
        };
        let skip = usize::try_from(at.column.saturating_sub(from_column)).unwrap_or(usize::MAX);
        let found = self.sql[from_byte..]
            .char_indices()
            .nth(skip)
            .map_or(self.sql.len(), |(i, _)| from_byte + i);
        self.last = (at.line, at.column, found);
        found
    }
}

/// A parser of `sql` that allows nesting (`NOT NOT …`, parentheses) as deep as
/// [`super::depth::MAX_DEPTH`]: sqlparser's default of 50 refused what Postgres answers, and its
/// recursion grows its stack on the heap, so only the depth bound after parsing matters.
fn new_parser(sql: &str) -> Result<Parser<'static>> {
    Ok(Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(super::depth::MAX_DEPTH)
        .try_with_sql(sql)?)
}

fn parse_with_extensions(sql: &str) -> Result<Vec<Statement>> {
    let mut parser = new_parser(sql)?;
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            return Ok(statements);
        }
        let mut statement = parse_one(&mut parser)?;
        super::depth::bound(&mut statement)?;
        statements.push(statement);
        let next = parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return parser
                .expected("end of statement", next)
                .map_err(Error::from);
        }
    }
}

fn parse_one(parser: &mut Parser) -> Result<Statement> {
    if peek_word(parser, 0, "flush") {
        parser.next_token();
        return Ok(Statement::Flush);
    }
    if let Some(statement) = super::source::parse_source_statement(parser)? {
        return Ok(statement);
    }
    if let Some(statement) = super::view::parse_view_statement(parser)? {
        return Ok(statement);
    }
    if parser.peek_keyword(Keyword::CREATE) && peek_word(parser, 1, "table") {
        parser.next_token();
        parser.next_token();
        return parse_create_table(parser);
    }
    Ok(Statement::Standard(Box::new(parser.parse_statement()?)))
}

pub(super) fn peek_word(parser: &Parser, n: usize, word: &str) -> bool {
    matches!(&parser.peek_nth_token_ref(n).token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

/// After `CREATE TABLE`: a table, or with `WITH (connector = …)` a table whose rows a
/// connector's change records keep (a source with a primary key, to the engine).
fn parse_create_table(parser: &mut Parser) -> Result<Statement> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = table_name(&parser.parse_object_name(false)?)?;
    if parser.parse_keyword(Keyword::AS) {
        return Err(Error::unsupported(
            "CREATE TABLE … AS",
            Some("Create the table with its columns, then INSERT INTO … SELECT."),
        ));
    }
    let Columns {
        columns,
        watermark,
        primary_key,
    } = parse_columns(parser, "table", &name)?;
    let append_only = if peek_word(parser, 0, "append") {
        parser.next_token();
        parser.expect_keyword(Keyword::ONLY)?;
        true
    } else {
        false
    };
    if append_only && !primary_key.is_empty() {
        return Err(Error::InvalidTableDefinition(format!(
            "table \"{name}\" cannot be APPEND ONLY and have a primary key: its rows change \
             by key"
        )));
    }
    if parser.parse_keyword(Keyword::WITH) {
        if primary_key.is_empty() || append_only {
            return Err(Error::unsupported(
                "a table fed by a connector without a primary key",
                Some(
                    "Declare the PRIMARY KEY its change records update rows by, or CREATE \
                     SOURCE for events that are only appended.",
                ),
            ));
        }
        let (options, format) = super::source::parse_connector(parser)?;
        return Ok(Statement::CreateSource(CreateSource {
            name,
            if_not_exists,
            columns,
            watermark,
            includes: Vec::new(),
            options,
            format,
            primary_key,
        }));
    }
    Ok(Statement::CreateTable(CreateTable {
        name,
        if_not_exists,
        columns,
        watermark,
        append_only,
        primary_key,
    }))
}

/// The column list of a table or source.
pub(super) struct Columns {
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<Watermark>,
    /// Its `PRIMARY KEY` columns (`NOT NULL`, as in Postgres), in key order; empty: none.
    pub primary_key: Vec<String>,
}

/// `(column definitions…, [WATERMARK FOR col AS expr], [PRIMARY KEY (cols)])` of a table or
/// source named `name`: at least one column, no name twice, a watermark on an existing
/// timestamp column, one primary key (a column's `PRIMARY KEY` or the clause) of existing
/// columns.
pub(super) fn parse_columns(parser: &mut Parser, kind: &str, name: &str) -> Result<Columns> {
    parser.expect_token(&Token::LParen)?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut watermark_sql = None;
    let mut primary_key: Option<Vec<String>> = None;
    let mut set_key = |key: Vec<String>| match primary_key.replace(key) {
        Some(_) => Err(Error::InvalidTableDefinition(format!(
            "multiple primary keys for {kind} \"{name}\" are not allowed"
        ))),
        None => Ok(()),
    };
    loop {
        if matches!(
            parser.peek_token_ref().token,
            Token::Word(ref w) if w.keyword == Keyword::PRIMARY || w.keyword == Keyword::CONSTRAINT
        ) {
            match parser.parse_optional_table_constraint()? {
                Some(sqlparser::ast::TableConstraint::PrimaryKey(key)) => set_key(
                    key.columns
                        .iter()
                        .map(|c| match &c.column.expr {
                            Expr::Identifier(ident) => Ok(normalize_ident(ident)),
                            other => Err(Error::Syntax(format!(
                                "a primary key is made of columns, not {other}"
                            ))),
                        })
                        .collect::<Result<_>>()?,
                )?,
                other => {
                    return Err(Error::unsupported(
                        format!(
                            "constraint {}",
                            other.map(|c| c.to_string()).unwrap_or_default()
                        ),
                        Some("Tables accept a PRIMARY KEY, NULL and NOT NULL."),
                    ));
                }
            }
        } else if peek_word(parser, 0, "watermark")
            && parser.peek_nth_token_ref(1).token != Token::Comma
        {
            parser.next_token();
            parser.expect_keyword(Keyword::FOR)?;
            let column = normalize_ident(&parser.parse_identifier()?);
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            if watermark_sql.replace((column, expr)).is_some() {
                return Err(Error::Syntax(format!(
                    "a {kind} can have only one WATERMARK clause"
                )));
            }
        } else {
            let (column, key) = column_def(parser.parse_column_def()?)?;
            if key {
                set_key(vec![column.name.clone()])?;
            }
            columns.push(column);
        }
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        parser.expect_token(&Token::RParen)?;
        break;
    }
    if columns.is_empty() {
        return Err(Error::Syntax(format!(
            "{kind} \"{name}\" must have at least one column"
        )));
    }
    check_unique(&columns)?;
    let watermark = watermark_sql
        .map(|(column, expr)| watermark(&columns, column, &expr))
        .transpose()?;
    let primary_key = primary_key.unwrap_or_default();
    for (i, key) in primary_key.iter().enumerate() {
        if primary_key[..i].contains(key) {
            return Err(Error::DuplicateColumn { name: key.clone() });
        }
        let column = columns
            .iter_mut()
            .find(|c| &c.name == key)
            .ok_or_else(|| Error::UndefinedColumn { name: key.clone() })?;
        column.nullable = false;
    }
    Ok(Columns {
        columns,
        watermark,
        primary_key,
    })
}

/// Fails with 42701 if two columns share a name.
pub fn check_unique(columns: &[ColumnDef]) -> Result<()> {
    for (i, column) in columns.iter().enumerate() {
        if columns[..i].iter().any(|c| c.name == column.name) {
            return Err(Error::DuplicateColumn {
                name: column.name.clone(),
            });
        }
    }
    Ok(())
}

/// `public.t` and `t` name the same table; other schemas do not exist for tables yet.
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(normalize_ident(ident)),
            ObjectNamePart::Function(_) => Err(Error::Syntax(format!("invalid table name {name}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == "public" => Ok(table.clone()),
        _ => Err(Error::unsupported(
            format!("table name {name}"),
            Some("Tables live in the schema \"public\"; write the name without another schema."),
        )),
    }
}

/// A column, and whether it is declared `PRIMARY KEY`.
fn column_def(def: sqlparser::ast::ColumnDef) -> Result<(ColumnDef, bool)> {
    let name = normalize_ident(&def.name);
    let column_type = ColumnType::from_sql(&def.data_type)?;
    let mut nullable = true;
    let mut key = false;
    for option in def.options {
        match option.option {
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Null => nullable = true,
            ColumnOption::PrimaryKey(_) => key = true,
            other => {
                return Err(Error::unsupported(
                    format!("column option {other}"),
                    Some("Columns accept PRIMARY KEY, NULL and NOT NULL."),
                ));
            }
        }
    }
    Ok((
        ColumnDef {
            name,
            column_type,
            nullable,
        },
        key,
    ))
}

/// Checks `WATERMARK FOR column AS column [- INTERVAL …]`.
fn watermark(columns: &[ColumnDef], column: String, expr: &Expr) -> Result<Watermark> {
    let Some(def) = columns.iter().find(|c| c.name == column) else {
        return Err(Error::UndefinedColumn { name: column });
    };
    if !def.column_type.is_timestamp() {
        return Err(Error::DatatypeMismatch {
            message: format!(
                "watermark column \"{column}\" must be timestamp or timestamptz, not {}",
                def.column_type.pg_name
            ),
            hint: None,
        });
    }
    let names_column =
        |e: &Expr| matches!(e, Expr::Identifier(id) if normalize_ident(id) == column);
    let delay_ms = match expr {
        e if names_column(e) => 0,
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if names_column(left) => interval_ms(right)?,
        other => {
            return Err(Error::unsupported(
                format!("watermark expression {other}"),
                Some("Write WATERMARK FOR ts AS ts - INTERVAL '5' SECOND."),
            ));
        }
    };
    Ok(Watermark {
        column,
        delay_ms,
        expr_sql: expr.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> Result<CreateTable> {
        match parse(sql)?.pop() {
            Some(Statement::CreateTable(c)) => Ok(c),
            other => panic!("not a CREATE TABLE: {other:?}"),
        }
    }

    #[test]
    fn parses_create_table_with_watermark_and_append_only() {
        let t = create(
            "CREATE TABLE Readings (sensor_id INT NOT NULL, value DOUBLE PRECISION, ts TIMESTAMPTZ, \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) APPEND ONLY",
        )
        .unwrap();
        assert_eq!(t.name, "readings");
        assert_eq!(t.columns.len(), 3);
        assert!(!t.columns[0].nullable);
        assert!(t.append_only);
        let w = t.watermark.unwrap();
        assert_eq!((w.column.as_str(), w.delay_ms), ("ts", 5_000));
    }

    #[test]
    fn reports_errors_with_their_class() {
        assert_eq!(
            create("CREATE TABLE t (a int, a int)")
                .unwrap_err()
                .sqlstate(),
            "42701"
        );
        assert_eq!(
            create("CREATE TABLE t (a int, WATERMARK FOR b AS b)")
                .unwrap_err()
                .sqlstate(),
            "42703"
        );
        assert_eq!(
            create("CREATE TABLE t (a int, WATERMARK FOR a AS a)")
                .unwrap_err()
                .sqlstate(),
            "42804"
        );
        assert_eq!(
            parse("CREATE TABLE t (a int").unwrap_err().sqlstate(),
            "42601"
        );
        assert_eq!(parse("SELEC 1").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn splits_into_texts_checked_but_not_kept() {
        let sql = "SELECT 1;; CREATE TABLE t (a INT);\n  SELECT 'é;', \"x\"\n FROM t ; FLUSH";
        assert_eq!(
            split(sql).unwrap(),
            [
                "SELECT 1",
                "CREATE TABLE t (a INT)",
                "SELECT 'é;', \"x\"\n FROM t ",
                "FLUSH"
            ]
        );
        assert!(split("SELECT 1; SELEC 2").is_err());
        assert!(split("").unwrap().is_empty());
    }

    #[test]
    fn splits_mixed_statements() {
        let statements = parse("SELECT 1; FLUSH; CREATE TABLE t (a int);;").unwrap();
        assert_eq!(statements.len(), 3);
        assert!(matches!(statements[1], Statement::Flush));
        assert!(parse("  ;  ").unwrap().is_empty());
    }

    /// Fuzz target: no statement text makes parsing panic or overflow a stack (every one
    /// parses or is an error with a SQLSTATE). `scripts/fuzz` runs it longer.
    #[test]
    fn fuzz_parse() {
        use crate::sql::mutate::{Edit, mutated};
        bolero::check!()
            .with_type::<(u16, Vec<Edit>)>()
            .for_each(|(index, edits)| {
                if let Err(e) = parse(&mutated(*index, edits)) {
                    assert_ne!(e.sqlstate(), "XX000", "{e}");
                }
            });
    }
}
