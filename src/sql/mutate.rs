//! Inputs for the SQL fuzz targets: the project's sqllogictest statements, mutated.
//!
//! Random bytes almost never get past the tokenizer; statements that tools and tests really
//! send, with bytes deleted, replaced, repeated and spliced and with SQL's own pieces put in,
//! reach the parser's and planner's corners. bolero drives the edits (random under
//! `cargo test`, coverage-guided under `scripts/fuzz`).

use std::sync::OnceLock;

/// Pieces of SQL an edit may put in.
const PIECES: &[&str] = &[
    "(",
    ")",
    ",",
    "'",
    "\"",
    "::int",
    "::text[]",
    "$1",
    "NOT ",
    " OR x = 1",
    " AND ",
    "SELECT ",
    " FROM ",
    " WHERE ",
    " GROUP BY 1",
    " ORDER BY 2",
    " UNION ALL ",
    " JOIN t ON true",
    "TUMBLE(t, ts, INTERVAL '1' SECOND)",
    "(SELECT 1)",
    "ARRAY[",
    "]",
    "[1]",
    "::regclass",
    " IS NULL",
    "CASE WHEN ",
    " THEN ",
    " END",
    "count(DISTINCT ",
    "1e400",
    "-",
    "*",
    "/ 0",
    "INTERVAL '1' DAY",
    "TIMESTAMP '",
    "E'\\x",
    "--",
    "/*",
    ";",
    "\u{0}",
    "é",
    "WITH RECURSIVE r AS (",
];

/// Every statement of `tests/slt/*.slt` (the lines after `statement …` and `query …`).
pub fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        let mut statements = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.starts_with("statement") || line.starts_with("query") {
                    let body: Vec<&str> = lines
                        .by_ref()
                        .take_while(|l| !l.trim().is_empty() && *l != "----")
                        .collect();
                    statements.push(body.join("\n"));
                }
            }
        }
        statements.push("SELECT 1".into());
        statements
    })
}

/// One edit: where (a fraction of the text's length), what, and with which byte or piece.
pub type Edit = (u16, u8, u8);

/// Statement `index` of the corpus with `edits` applied.
pub fn mutated(index: u16, edits: &[Edit]) -> String {
    let corpus = corpus();
    let mut text = corpus[usize::from(index) % corpus.len()]
        .as_bytes()
        .to_vec();
    for &(at, kind, value) in edits.iter().take(16) {
        let at = usize::from(at) * (text.len() + 1) / (usize::from(u16::MAX) + 1);
        match kind % 6 {
            0 if at < text.len() => {
                text.remove(at);
            }
            1 => text.insert(at, value),
            2 if at < text.len() => text[at] = value,
            3 => {
                let piece = PIECES[usize::from(value) % PIECES.len()];
                text.splice(at..at, piece.bytes());
            }
            // A span of the statement repeated, up to a few KiB.
            4 if text.len() < 4096 => {
                let end = (at + usize::from(value) + 1).min(text.len());
                let span = text[at.min(end)..end].to_vec();
                text.splice(end..end, span);
            }
            // The tail of another statement.
            5 => {
                let other = corpus[usize::from(value) % corpus.len()].as_bytes();
                let from = other.len() / 2;
                text.truncate(at);
                text.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_the_slt_statements_and_edits_stay_in_bounds() {
        assert!(corpus().len() > 100, "{} statements", corpus().len());
        assert_eq!(mutated(0, &[]), corpus()[0]);
        for kind in 0..6 {
            for at in [0, 1, u16::MAX / 2, u16::MAX] {
                let _ = mutated(3, &[(at, kind, 255), (at, kind, 0)]);
            }
        }
    }
}
