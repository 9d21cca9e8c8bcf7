//! The source decode path on one core: JSON click events (~100 bytes each) → Arrow batches of
//! the declared schema, in chunks of 4 096 records as the Kafka reader hands them over, by the
//! fast path and by the general (arrow-json) one. For scale, the same bytes parsed by bare
//! serde_json into a typed struct (no Arrow arrays built) — the decode path's target is 90 % of
//! that — and into `serde_json::Value`, and the datagen connector making the same schema.
//!
//! `cargo bench --bench decode_throughput [-- EVENTS]` (default 1 000 000) prints events/s.

mod support;

use std::time::{Duration, Instant};

use sluicedb::catalog::source::SourceDef;
use sluicedb::source::datagen::DatagenSettings;
use sluicedb::source::decode::{JsonDecoder, Record};

const CHUNK: usize = 4_096;
const RUNS: usize = 5;

fn source_def(options: &[(&str, &str)]) -> SourceDef {
    support::source_def(
        "CREATE SOURCE clicks (event_id BIGINT, user_id BIGINT, page VARCHAR, action VARCHAR, \
         amount DOUBLE PRECISION, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
         WITH (connector = 'kafka') FORMAT PLAIN ENCODE JSON",
        options,
    )
}

/// The event as a typed struct: the fastest a row-at-a-time serde path can go.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Click<'a> {
    event_id: i64,
    user_id: i64,
    page: &'a str,
    action: &'a str,
    amount: f64,
    ts: i64,
}

fn events(n: usize) -> Vec<Vec<u8>> {
    let actions = ["click", "view", "purchase"];
    (0..n)
        .map(|i| {
            format!(
                r#"{{"event_id":{i},"user_id":{},"page":"/product/{}","action":"{}","amount":{}.{:02},"ts":{}}}"#,
                i % 50_000,
                i % 500,
                actions[i % 3],
                i % 1000,
                i % 100,
                1_767_225_600_000u64 + i as u64
            )
            .into_bytes()
        })
        .collect()
}

/// Best of `RUNS` runs of `f` over `n` events, in events per second.
fn best_rate(n: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let produced = f();
        best = best.min(start.elapsed());
        assert_eq!(produced, n);
    }
    n as f64 / best.as_secs_f64()
}

fn main() {
    let n = support::size_arg(1_000_000);
    let payloads = events(n);
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    println!(
        "{n} click events, {:.1} bytes each on average",
        bytes as f64 / n as f64
    );
    let records = Record::of_payloads(&payloads);

    let rate_of = |mut decoder: JsonDecoder| {
        best_rate(n, || {
            records
                .chunks(CHUNK)
                .map(|chunk| {
                    let decoded = decoder.decode(0, chunk).unwrap();
                    assert!(decoded.rejected.is_empty());
                    decoded.batch.num_rows()
                })
                .sum()
        })
    };
    let decode = rate_of(JsonDecoder::new(&source_def(&[])));
    println!(
        "decode to Arrow (fast path): {:>6.2} M events/s per core ({:.0} MB/s)",
        decode / 1e6,
        decode * bytes as f64 / n as f64 / 1e6
    );
    let general = rate_of(JsonDecoder::new(&source_def(&[])).general_only());
    println!(
        "decode to Arrow (arrow-json): {:>5.2} M events/s per core",
        general / 1e6
    );

    // The ceiling: arrow-json alone, one decode call per chunk, no per-record checks, no
    // timestamp conversion (it stays an integer column).
    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
        ["event_id", "user_id", "page", "action", "amount", "ts"]
            .iter()
            .zip([
                datafusion::arrow::datatypes::DataType::Int64,
                datafusion::arrow::datatypes::DataType::Int64,
                datafusion::arrow::datatypes::DataType::Utf8,
                datafusion::arrow::datatypes::DataType::Utf8,
                datafusion::arrow::datatypes::DataType::Float64,
                datafusion::arrow::datatypes::DataType::Int64,
            ])
            .map(|(name, t)| datafusion::arrow::datatypes::Field::new(*name, t, true))
            .collect::<Vec<_>>(),
    ));
    let chunks: Vec<Vec<u8>> = payloads.chunks(CHUNK).map(|c| c.concat()).collect();
    let mut raw = datafusion::arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(CHUNK + 1)
        .build_decoder()
        .unwrap();
    let ceiling = best_rate(n, || {
        chunks
            .iter()
            .map(|chunk| {
                raw.decode(chunk).unwrap();
                raw.flush().unwrap().map_or(0, |b| b.num_rows())
            })
            .sum()
    });
    println!(
        "arrow-json alone (ceiling):  {:>6.2} M events/s per core",
        ceiling / 1e6
    );

    let typed = best_rate(n, || {
        payloads
            .iter()
            .map(|p| serde_json::from_slice::<Click<'_>>(p).map_or(0, |_| 1))
            .sum()
    });
    println!(
        "serde_json to a struct (bare): {:>4.2} M events/s per core",
        typed / 1e6
    );
    println!(
        "decode path / bare typed serde_json: {:.2}x (target 0.90x)",
        decode / typed
    );

    let serde = best_rate(n, || {
        payloads
            .iter()
            .map(|p| serde_json::from_slice::<serde_json::Value>(p).map_or(0, |_| 1))
            .sum()
    });
    println!(
        "serde_json to Value (bare):  {:>6.2} M events/s per core",
        serde / 1e6
    );

    let def = source_def(&[
        ("connector", "datagen"),
        ("fields.event_id.kind", "sequence"),
        ("fields.action.values", "click,view,purchase"),
    ]);
    let datagen = DatagenSettings::from_options(&def, &def.options).unwrap();
    let block = datagen.block_rows() as usize;
    let generate = best_rate(n, || {
        (0..n.div_ceil(block))
            .map(|b| {
                let from = (b * block) as u64;
                let to = ((b + 1) * block).min(n) as u64;
                datagen.rows_range(from, to).unwrap().num_rows()
            })
            .sum()
    });
    println!(
        "datagen to Arrow:            {:>6.2} M rows/s per core",
        generate / 1e6
    );
}
