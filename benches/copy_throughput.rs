//! COPY FROM STDIN throughput, end to end: a client streams rows over the Postgres protocol, the
//! server decodes, casts, writes Parquet and commits a manifest. Then a full scan of the same rows.
//!
//! `cargo bench --bench copy_throughput [-- ROWS]` (default 1 000 000 rows) prints rows/s.

use std::time::Instant;

use futures::SinkExt;
use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::server::Server;

const CREATE: &str = "CREATE TABLE clicks (event_id BIGINT NOT NULL, user_id BIGINT, page TEXT, \
                      action TEXT, amount DOUBLE PRECISION, ts TIMESTAMPTZ)";
const CHUNK_ROWS: usize = 10_000;

fn rows(from: usize, to: usize) -> bytes::Bytes {
    let actions = ["click", "view", "purchase"];
    let mut text = String::with_capacity((to - from) * 64);
    for i in from..to {
        let ts_s = 1_700_000_000 + i / 100;
        text.push_str(&format!(
            "{i}\t{}\t/page/{}\t{}\t{}.{:02}\t{}\n",
            i % 50_000,
            i % 200,
            actions[i % 3],
            i % 1000,
            i % 100,
            chrono::DateTime::from_timestamp(ts_s as i64, 0)
                .unwrap()
                .to_rfc3339()
        ));
    }
    bytes::Bytes::from(text)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let args = ServeArgs {
        storage: Some(dir.path().to_string_lossy().into_owned()),
        pg_listen: Some("127.0.0.1:0".parse()?),
        http_listen: Some("127.0.0.1:0".parse()?),
        log: Some("warn".into()),
        ..Default::default()
    };
    let server = Server::start(args.resolve(AwsEnv::default())?).await?;
    let addr = server.pg_addr();
    let (client, connection) = tokio_postgres::connect(
        &format!("host={} port={} user=bench", addr.ip(), addr.port()),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    client.batch_execute(CREATE).await?;

    let chunks: Vec<bytes::Bytes> = (0..total)
        .step_by(CHUNK_ROWS)
        .map(|from| rows(from, (from + CHUNK_ROWS).min(total)))
        .collect();
    let payload_bytes: usize = chunks.iter().map(|c| c.len()).sum();
    let started = Instant::now();
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY clicks FROM STDIN")
        .await?;
    let mut sink = Box::pin(sink);
    for chunk in chunks {
        sink.send(chunk).await?;
    }
    let copied = sink.as_mut().finish().await?;
    let copy_s = started.elapsed().as_secs_f64();
    assert_eq!(copied as usize, total);

    let started = Instant::now();
    let row = client
        .query_one(
            "SELECT count(*), sum(amount), count(DISTINCT user_id) FROM clicks",
            &[],
        )
        .await?;
    let scan_s = started.elapsed().as_secs_f64();
    let counted: i64 = row.get(0);
    assert_eq!(counted as usize, total);

    println!(
        "copy_in  {total} rows  {:.0} MiB text  {copy_s:.2} s  {:.0} rows/s",
        payload_bytes as f64 / 1048576.0,
        total as f64 / copy_s
    );
    println!(
        "scan     {total} rows  {scan_s:.2} s  {:.0} rows/s  (count, sum, count distinct)",
        total as f64 / scan_s
    );
    server.shutdown().await;
    Ok(())
}
