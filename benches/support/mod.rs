//! What the benches share: a source's definition and records as the Kafka reader hands them to
//! the decoder, a view planned by the server's planner, and the DuckDB reference run over the
//! same events. Each bench uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluicedb::catalog::source::SourceDef;
use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::database::Database;
use sluicedb::source::decode::Record;
use sluicedb::sql::Statement;
use sluicedb::sql::parser::parse;
use sluicedb::stream::plan::ViewPlan;

/// The source `CREATE SOURCE …` (`sql`) defines, with `options`.
pub fn source_def(sql: &str, options: &[(&str, &str)]) -> SourceDef {
    let Some(Statement::CreateSource(create)) = parse(sql).unwrap().pop() else {
        unreachable!()
    };
    SourceDef {
        id: 1,
        name: create.name,
        columns: create.columns,
        watermark: create.watermark,
        includes: create.includes,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        created_at_ms: 1_767_225_600_000,
        primary_key: Vec::new(),
    }
}

/// The bench's size: its first numeric argument (`cargo bench --bench b -- N`), else `default`.
pub fn size_arg(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A chunk of payloads as the Kafka reader hands them to the decoder.
pub fn records(chunk: &[Vec<u8>]) -> Vec<Record<'_>> {
    chunk
        .iter()
        .map(|p| Record {
            offset: 0,
            timestamp_ms: None,
            key: None,
            payload: Some(p),
        })
        .collect()
}

/// The streaming plan of `query`, made by the server's planner after `setup` (tables of the
/// same shape as the events).
pub fn plan(setup: &str, query: &str, emit_on_close: bool) -> ViewPlan {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            storage: Some(dir.path().to_str().unwrap().to_string()),
            ..Default::default()
        };
        let db = Database::open(args.resolve(AwsEnv::default()).unwrap())
            .await
            .unwrap();
        db.execute_script(setup).await.unwrap();
        let emit = if emit_on_close {
            " EMIT ON WINDOW CLOSE"
        } else {
            ""
        };
        let Some(Statement::CreateView(view)) =
            parse(&format!("CREATE MATERIALIZED VIEW v AS {query}{emit}"))
                .unwrap()
                .pop()
        else {
            unreachable!()
        };
        let plan = db.plan_view("v", &view.query, emit_on_close).await.unwrap();
        db.shutdown().await;
        plan
    })
}

/// Writes each set of events as a JSON-lines file and runs `benches/duckdb_reference.py` with
/// `mode` and the files, if DuckDB is installed in `.venv`. Prints what it prints and returns
/// its rates: each `NAME in DuckDB …: R M events/s` line as (NAME, R in events/s).
pub fn duckdb_reference(mode: &str, sets: &[(&str, &[Vec<u8>])]) -> Vec<(String, f64)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let has_duckdb = std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_duckdb {
        println!("DuckDB reference skipped: .venv/bin/pip install -r benches/requirements.txt");
        return Vec::new();
    }
    let dir = root.join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (name, payloads) in sets {
        let file = dir.join(format!("{name}-{}.jsonl", payloads.len()));
        let mut text = Vec::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
        for p in *payloads {
            text.extend_from_slice(p);
            text.push(b'\n');
        }
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let output = std::process::Command::new(&python)
        .arg(root.join("benches/duckdb_reference.py"))
        .arg(mode)
        .args(&files)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success());
    for file in files {
        let _ = std::fs::remove_file(&file);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(" in DuckDB")?;
            let rate = rest.split_once("): ")?.1.split_once(" M events/s")?.0;
            Some((name.to_string(), rate.parse::<f64>().ok()? * 1e6))
        })
        .collect()
}

/// Prints `NAME SluiceDB / DuckDB: R x (target T x)` for each of `ours` DuckDB measured too.
pub fn print_ratios(ours: &[(&str, f64, f64)], duckdb: &[(String, f64)]) {
    for (name, rate, target) in ours {
        if let Some((_, reference)) = duckdb.iter().find(|(n, _)| n == name) {
            println!(
                "{name} SluiceDB / DuckDB: {:.2}x (target {target:.1}x)",
                rate / reference
            );
        }
    }
}
