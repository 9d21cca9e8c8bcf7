//! Kafka sources against a real Kafka-protocol broker (tansu, started by scripts/kafka-server):
//! exactly-once arrival, rejected records, startup modes, idle partitions and late rows, the
//! Flink spelling, `bad_data = 'fail'`, and a broker killed and restarted mid-stream.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::{
    connect, http_get, kafka_target, query_i64, s3_target, start_server, wait_for,
};

/// Waits until the readers of `sources` together are past `sent` records.
pub(crate) async fn wait_read(client: &tokio_postgres::Client, sources: &[&str], sent: i64) {
    let names: Vec<String> = sources.iter().map(|s| format!("'{s}'")).collect();
    let sql = format!(
        "SELECT CAST(coalesce(sum(current_offset), 0) AS BIGINT) FROM sluice_catalog.sources \
         WHERE source IN ({})",
        names.join(", ")
    );
    wait_for(
        Duration::from_secs(60),
        &format!("{} to read {sent} records", sources.join(" and ")),
        || async { (query_i64(client, &sql).await >= sent).then_some(()) },
    )
    .await;
}

pub(crate) fn unique_topic(name: &str) -> String {
    crate::support::unique_prefix(name)
}

pub(crate) async fn create_topic(kafka: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

pub(crate) fn producer(kafka: &str, linger_ms: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("linger.ms", linger_ms)
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap()
}

/// Sends every (partition, payload) and returns where each landed, in input order.
pub(crate) async fn produce(
    producer: &FutureProducer,
    topic: &str,
    messages: &[(i32, String)],
) -> Vec<(i32, i64)> {
    let mut landed = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(5_000) {
        let deliveries: Vec<_> = chunk
            .iter()
            .map(|(partition, payload)| {
                producer
                    .send_result(
                        FutureRecord::<(), String>::to(topic)
                            .partition(*partition)
                            .payload(payload),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap()
            })
            .collect();
        for delivery in deliveries {
            let delivered = delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            landed.push((delivered.partition, delivered.offset));
        }
    }
    landed
}

pub(crate) const CLICK_COLUMNS: &str = "event_id BIGINT NOT NULL, user_id BIGINT, page VARCHAR, action VARCHAR, \
     amount DOUBLE PRECISION, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND";

/// A click event; `ts_ms` goes out as epoch milliseconds or ISO-8601, alternately.
pub(crate) fn click(id: i64, ts_ms: i64) -> String {
    let actions = ["click", "view", "purchase"];
    let ts = if id % 2 == 0 {
        ts_ms.to_string()
    } else {
        format!(
            "\"{}\"",
            chrono::DateTime::from_timestamp_millis(ts_ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        )
    };
    format!(
        r#"{{"event_id": {id}, "user_id": {}, "page": "/p/{}", "action": "{}", "amount": {}.5, "ts": {ts}, "ignored": true}}"#,
        id % 1000,
        id % 37,
        actions[(id % 3) as usize],
        id % 100
    )
}

async fn source_rows(client: &tokio_postgres::Client, source: &str) -> i64 {
    query_i64(
        client,
        &format!(
            "SELECT CAST(coalesce(sum(rows_in), 0) + coalesce(sum(rejected_rows), 0) AS BIGINT) \
             FROM sluice_catalog.sources WHERE source = '{source}'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_events_arrive_exactly_once_and_bad_records_are_kept() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("clicks");
    create_topic(&kafka, &topic, 4).await;
    const EVENTS: i64 = 100_000;
    let base_ms = 1_767_225_600_000;
    let is_malformed = |id: i64| id % 997 == 13;
    let is_wrong_typed = |id: i64| id % 1009 == 7;
    let messages: Vec<(i32, String)> = (0..EVENTS)
        .map(|id| {
            let payload = if is_malformed(id) {
                format!("{{\"event_id\": {id}, \"user_id\": ")
            } else if is_wrong_typed(id) {
                format!(r#"{{"event_id": {id}, "user_id": "not a number", "ts": {base_ms}}}"#)
            } else {
                click(id, base_ms + id)
            };
            ((id % 4) as i32, payload)
        })
        .collect();
    let landed = produce(&producer(&kafka, "5"), &topic, &messages).await;
    let bad: BTreeSet<(i32, i64)> = (0..EVENTS)
        .filter(|&id| is_malformed(id) || is_wrong_typed(id))
        .map(|id| landed[id as usize])
        .collect();
    let good: Vec<i64> = (0..EVENTS)
        .filter(|&id| !is_malformed(id) && !is_wrong_typed(id))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    let server = start_server(storage).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE clicks ({CLICK_COLUMNS}) \
             INCLUDE partition AS kafka_partition INCLUDE offset AS kafka_offset \
             WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{kafka}', \
                   scan.startup.mode = 'earliest', retain = 'true') \
             FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    wait_for(Duration::from_secs(120), "all events to arrive", || async {
        (source_rows(&client, "clicks").await == EVENTS).then_some(())
    })
    .await;
    client.batch_execute("FLUSH").await.unwrap();

    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), CAST(sum(event_id) AS BIGINT), \
                    count(*) FILTER (WHERE kafka_partition <> event_id % 4), \
                    count(*) FILTER (WHERE CAST(round(extract(epoch FROM ts) * 1000) AS BIGINT) <> 1767225600000 + event_id) \
             FROM clicks",
            &[],
        )
        .await
        .unwrap();
    let expected_sum: i64 = good.iter().sum();
    assert_eq!(row.get::<_, i64>(0), good.len() as i64);
    assert_eq!(
        row.get::<_, i64>(1),
        good.len() as i64,
        "an event arrived twice"
    );
    assert_eq!(row.get::<_, i64>(2), expected_sum);
    assert_eq!(row.get::<_, i64>(3), 0, "rows carry their partition");
    assert_eq!(row.get::<_, i64>(4), 0, "both timestamp spellings decode");
    // Every row's offset is the one the broker gave its event.
    let offsets = client
        .query(
            "SELECT event_id, kafka_partition, kafka_offset FROM clicks WHERE event_id % 101 = 0",
            &[],
        )
        .await
        .unwrap();
    for r in &offsets {
        let id: i64 = r.get(0);
        assert_eq!(landed[id as usize], (r.get(1), r.get(2)), "event {id}");
    }

    let rejected: BTreeSet<(i32, i64)> = client
        .query(
            "SELECT partition, \"offset\" FROM sluice_catalog.rejected_rows WHERE source = 'clicks'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rejected, bad,
        "the rejected records are exactly the bad ones"
    );
    let sample = client
        .query_one(
            "SELECT raw_text, error FROM sluice_catalog.rejected_rows \
             WHERE source = 'clicks' AND raw_text LIKE '%not a number%' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert!(sample.get::<_, String>(0).starts_with("{\"event_id\""));
    // The raw bytes read as Postgres bytea does.
    let readable = query_i64(
        &client,
        "SELECT count(*) FROM sluice_catalog.rejected_rows WHERE source = 'clicks' \
         AND convert_from(raw, 'UTF8') = raw_text AND length(raw) = octet_length(raw_text) \
         AND encode(raw, 'escape') = raw_text",
    )
    .await;
    assert_eq!(readable, bad.len() as i64);
    assert!(
        sample.get::<_, String>(1).contains("user_id"),
        "{}",
        sample.get::<_, String>(1)
    );
    let reported = query_i64(
        &client,
        "SELECT CAST(sum(rejected_rows) AS BIGINT) FROM sluice_catalog.sources WHERE source = 'clicks'",
    )
    .await;
    assert_eq!(reported, bad.len() as i64);
    // Caught up: the broker's high watermark (from librdkafka's statistics) is our offset.
    wait_for(
        Duration::from_secs(20),
        "lag 0 on every partition",
        || async {
            (query_i64(
                &client,
                "SELECT CAST(count(lag) * 1000 + sum(lag) AS BIGINT) FROM sluice_catalog.sources \
             WHERE source = 'clicks'",
            )
            .await
                == 4_000)
                .then_some(())
        },
    )
    .await;
    // The same numbers in Prometheus format, per source and partition.
    let metrics = tokio::task::spawn_blocking({
        let addr = server.http_addr();
        move || http_get(addr, "/metrics")
    })
    .await
    .unwrap();
    let rows_in: i64 = client
        .query_one(
            "SELECT rows_in FROM sluice_catalog.sources WHERE source = 'clicks' AND partition = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        metrics.contains(&format!(
            "sluicedb_source_rows_total{{source=\"clicks\",partition=\"2\"}} {rows_in}\n"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("sluicedb_source_lag_records{source=\"clicks\",partition=\"0\"} 0\n"));

    // A restart resumes after the committed offsets: new events arrive, none twice.
    drop(client);
    server.shutdown().await;
    let more: Vec<(i32, String)> = (EVENTS..EVENTS + 1_000)
        .map(|id| ((id % 4) as i32, click(id, base_ms + id)))
        .collect();
    produce(&producer(&kafka, "5"), &topic, &more).await;
    let server = start_server(storage).await;
    let client = connect(server.pg_addr()).await;
    wait_for(
        Duration::from_secs(60),
        "events after the restart",
        || async {
            (query_i64(
                &client,
                "SELECT count(*) FROM clicks WHERE event_id >= 100000",
            )
            .await
                == 1_000)
                .then_some(())
        },
    )
    .await;
    client.batch_execute("FLUSH").await.unwrap();
    let row = client
        .query_one("SELECT count(*), count(DISTINCT event_id) FROM clicks", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), good.len() as i64 + 1_000);
    assert_eq!(row.get::<_, i64>(1), good.len() as i64 + 1_000);
    let rejected_again = query_i64(
        &client,
        "SELECT count(*) FROM sluice_catalog.rejected_rows WHERE source = 'clicks'",
    )
    .await;
    assert_eq!(rejected_again, bad.len() as i64, "rejections are kept once");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn startup_modes_earliest_latest_and_timestamp() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("modes");
    create_topic(&kafka, &topic, 1).await;
    // One record per produce request, seconds apart, so the broker's per-batch times and
    // offsets are exact.
    let producer = producer(&kafka, "0");
    let mut cut_ms = 0;
    for id in 0..3 {
        if id == 2 {
            // The broker may keep batch times at whole seconds: keep clear of the cut.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            cut_ms = chrono::Utc::now().timestamp_millis();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        produce(&producer, &topic, &[(0, format!(r#"{{"id": {id}}}"#))]).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    let with = |mode: &str| {
        format!(
            "WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{kafka}', \
             retain = 'true', {mode}) FORMAT PLAIN ENCODE JSON"
        )
    };
    client
        .batch_execute(&format!(
            "CREATE SOURCE s_earliest (id INT) {}; \
             CREATE SOURCE s_latest (id INT) {}; \
             CREATE SOURCE s_time (id INT) {}",
            with("scan.startup.mode = 'earliest'"),
            with("scan.startup.mode = 'latest'"),
            with(&format!(
                "scan.startup.mode = 'timestamp', scan.startup.timestamp.millis = '{cut_ms}'"
            )),
        ))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "partitions to be assigned",
        || async {
            (query_i64(
                &client,
                "SELECT count(*) FROM sluice_catalog.sources WHERE status = 'running'",
            )
            .await
                == 3)
                .then_some(())
        },
    )
    .await;
    for id in 3..5 {
        produce(&producer, &topic, &[(0, format!(r#"{{"id": {id}}}"#))]).await;
    }
    let ids = |source: &'static str| {
        let client = &client;
        async move {
            client.batch_execute("FLUSH").await.unwrap();
            client
                .query(&format!("SELECT id FROM {source} ORDER BY id"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect::<Vec<_>>()
        }
    };
    wait_for(Duration::from_secs(30), "all five records", || async {
        (ids("s_earliest").await.len() == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ids("s_earliest").await, vec![0, 1, 2, 3, 4]);
    assert_eq!(ids("s_latest").await, vec![3, 4]);
    assert_eq!(ids("s_time").await, vec![2, 3, 4]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_partitions_release_the_watermark_and_late_rows_are_counted() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("idle");
    create_topic(&kafka, &topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE idle ({CLICK_COLUMNS}) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', source.idle_timeout = '3s') \
             FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let base_ms = now_ms - 60_000;
    let producer = producer(&kafka, "0");
    let events: Vec<(i32, String)> = (0..10)
        .map(|i| (0, click(i, base_ms + i * 1_000)))
        .collect();
    produce(&producer, &topic, &events).await;
    let watermark = "SELECT CAST(round(extract(epoch FROM max(source_watermark)) * 1000) AS BIGINT) \
                     FROM sluice_catalog.sources WHERE source = 'idle'";
    // Partition 1 is silent: until it idles out, it holds the watermark back.
    wait_for(Duration::from_secs(20), "events of partition 0", || async {
        (source_rows(&client, "idle").await == 10).then_some(())
    })
    .await;
    let expected = base_ms + 9_000 - 5_000;
    let reached = wait_for(Duration::from_secs(20), "the watermark", || async {
        let w = query_i64(&client, watermark).await;
        (w >= 0).then_some(w)
    })
    .await;
    assert_eq!(reached, expected);
    let idle = client
        .query_one(
            "SELECT idle FROM sluice_catalog.sources WHERE source = 'idle' AND partition = 1",
            &[],
        )
        .await
        .unwrap();
    assert!(idle.get::<_, bool>(0));
    // An event behind the watermark is late: counted, and the watermark does not move back.
    produce(&producer, &topic, &[(0, click(100, base_ms - 3_600_000))]).await;
    wait_for(Duration::from_secs(20), "the late row", || async {
        (query_i64(
            &client,
            "SELECT CAST(sum(late_rows) AS BIGINT) FROM sluice_catalog.sources WHERE source = 'idle'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(query_i64(&client, watermark).await, expected);
    // An event an hour in the future does not advance it either.
    produce(&producer, &topic, &[(0, click(101, now_ms + 3_600_000))]).await;
    wait_for(Duration::from_secs(20), "the future row", || async {
        (source_rows(&client, "idle").await == 12).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(query_i64(&client, watermark).await, expected);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flink_spelling_makes_the_same_source_and_bad_data_fail_stops_it() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("flink");
    create_topic(&kafka, &topic, 1).await;
    let producer = producer(&kafka, "0");
    let records: Vec<(i32, String)> = [r#"{"a": 1}"#, r#"{"a": 2}"#, r#"{"a": "#, r#"{"a": 4}"#]
        .iter()
        .map(|p| (0, p.to_string()))
        .collect();
    produce(&producer, &topic, &records).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE rw (a INT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{kafka}', \
                   scan.startup.mode = 'timestamp', scan.startup.timestamp.millis = '0', \
                   properties.client.rack = 'r1', properties.ssl.key.password = 'hunter2') \
                   FORMAT PLAIN ENCODE JSON; \
             CREATE SOURCE flink (a INT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{kafka}', \
                   'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '0', \
                   'properties.client.rack' = 'r1', 'properties.ssl.key.password' = 'hunter2', \
                   'format' = 'json'); \
             CREATE SOURCE strict (a INT) WITH (connector = 'kafka', topic = '{topic}', \
                   properties.bootstrap.server = '{kafka}', bad_data = 'fail') FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    let show = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(&format!("SHOW CREATE SOURCE {name}"), &[])
                .await
                .unwrap();
            row.get::<_, String>(1).replacen(name, "x", 1)
        }
    };
    let shown = show("rw").await;
    assert_eq!(shown, show("flink").await);
    assert!(
        !shown.contains("hunter2") && shown.contains("properties.ssl.key.password = '******'"),
        "{shown}"
    );
    let (status, error) = wait_for(
        Duration::from_secs(30),
        "the strict source to fail",
        || async {
            let row = client
                .query_one(
                    "SELECT status, last_error FROM sluice_catalog.sources WHERE source = 'strict'",
                    &[],
                )
                .await
                .unwrap();
            let status: String = row.get(0);
            (status == "failed").then(|| (status, row.get::<_, Option<String>>(1)))
        },
    )
    .await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(
        error.contains("bad_data = 'fail'") && error.contains("offset 2"),
        "{error}"
    );
    server.shutdown().await;
}

/// A broker of this test's own (the shared one must stay up for the other tests), keeping its
/// topics in the S3 test server so that a restart keeps them.
struct OwnBroker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnBroker {
    fn start(port: u16, dir: tempfile::TempDir) -> Option<Self> {
        let mut broker = OwnBroker {
            child: None,
            port,
            dir,
        };
        broker.spawn()?;
        Some(broker)
    }

    fn spawn(&mut self) -> Option<()> {
        let tansu = std::env::var("SLUICEDB_TEST_TANSU").ok()?;
        let s3 = s3_target()?;
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu)
            .current_dir(self.dir.path())
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &s3.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .args(["broker", "--cluster-id", &format!("restart-{}", self.port)])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &format!("s3://{}/", s3.bucket)])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tansu did not start");
    }

    /// Sends `signal` (`STOP`, `CONT`) to the broker.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A broker of this test's own on a free port, or `None` where tansu is not installed (never
/// in CI).
fn own_broker() -> Option<(OwnBroker, String)> {
    kafka_target()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(broker) = OwnBroker::start(port, tempfile::tempdir().unwrap()) else {
        assert!(
            !crate::support::in_ci(),
            "SLUICEDB_TEST_TANSU and S3 are required"
        );
        return None;
    };
    Some((broker, format!("127.0.0.1:{port}")))
}

/// Records `{"id": i}` for each i of `range`, all to partition 0.
fn ids(range: std::ops::Range<i64>) -> Vec<(i32, String)> {
    range.map(|i| (0, format!(r#"{{"id": {i}}}"#))).collect()
}

/// Source `ids (id BIGINT)` over `topic`, keeping its events, from the earliest offset.
async fn create_ids_source(client: &tokio_postgres::Client, topic: &str, kafka: &str) {
    client
        .batch_execute(&format!(
            "CREATE SOURCE ids (id BIGINT) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest', \
             retain = 'true') FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
}

/// A server whose source `ids` has read ids `0..n` of a new one-partition topic on `kafka`:
/// the topic, the server's folder, the server and a connection.
async fn reading_ids(
    kafka: &str,
    name: &str,
    n: i64,
) -> (
    String,
    tempfile::TempDir,
    sluicedb::server::Server,
    tokio_postgres::Client,
) {
    let topic = unique_topic(name);
    create_topic(kafka, &topic, 1).await;
    produce(&producer(kafka, "5"), &topic, &ids(0..n)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    create_ids_source(&client, &topic, kafka).await;
    wait_for(Duration::from_secs(30), "the first ids", || async {
        (query_i64(&client, "SELECT count(*) FROM ids").await == n).then_some(())
    })
    .await;
    (topic, dir, server, client)
}

/// A frozen broker (SIGSTOP: connections open, nothing answered). Before, the source said
/// `running` for about 19 s, until a request timed out. Now it says `retrying`, naming the
/// broker, within seconds; it reads on after SIGCONT, every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_shows_retrying_and_nothing_is_lost() {
    let Some((broker, kafka)) = own_broker() else {
        return;
    };
    let (topic, _dir, server, client) = reading_ids(&kafka, "frozen", 1_000).await;
    let count = "SELECT count(*) FROM ids";
    let status = "SELECT status, coalesce(last_error, '') FROM sluice_catalog.sources \
                  WHERE source = 'ids'";
    broker.signal("STOP");
    let frozen = std::time::Instant::now();
    let error = wait_for(Duration::from_secs(15), "the source to retry", || async {
        let row = client.query_one(status, &[]).await.unwrap();
        (row.get::<_, String>(0) == "retrying").then(|| row.get::<_, String>(1))
    })
    .await;
    eprintln!(
        "retrying {:?} after the broker froze: {error}",
        frozen.elapsed()
    );
    assert!(error.contains("has not answered"), "{error}");
    // When the broker last answered: over 5 s ago now, within seconds again after the thaw.
    let silent_for = "SELECT CAST(extract(epoch FROM now() - last_fetch) AS DOUBLE PRECISION) \
                      FROM sluice_catalog.sources WHERE source = 'ids'";
    let silent: f64 = client.query_one(silent_for, &[]).await.unwrap().get(0);
    assert!(silent > 4.0, "the broker answered {silent} s ago");
    // Monitoring sees it too.
    let metrics = http_get(server.http_addr(), "/metrics");
    for line in [
        "sluicedb_source_status{source=\"ids\",status=\"retrying\"} 1\n",
        "sluicedb_source_status{source=\"ids\",status=\"running\"} 0\n",
        "sluicedb_source_errors_total{source=\"ids\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    // Queries answer meanwhile.
    assert_eq!(query_i64(&client, count).await, 1_000);
    broker.signal("CONT");
    produce(&producer(&kafka, "5"), &topic, &ids(1_000..2_000)).await;
    wait_for(
        Duration::from_secs(60),
        "every id after the thaw",
        || async {
            let row = client.query_one(status, &[]).await.unwrap();
            let running = row.get::<_, String>(0) == "running";
            (running && query_i64(&client, count).await == 2_000).then_some(())
        },
    )
    .await;
    let distinct = "SELECT count(DISTINCT id) FROM ids";
    assert_eq!(query_i64(&client, distinct).await, 2_000);
    let metrics = http_get(server.http_addr(), "/metrics");
    let running = "sluicedb_source_status{source=\"ids\",status=\"running\"} 1\n";
    assert!(metrics.contains(running), "{metrics}");
    // (librdkafka's statistics come every second.)
    wait_for(Duration::from_secs(10), "a recent answer", || async {
        let silent: f64 = client.query_one(silent_for, &[]).await.unwrap().get(0);
        (silent < 3.0).then_some(())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_loses_nothing_and_reads_nothing_twice() {
    let Some((mut broker, kafka)) = own_broker() else {
        return;
    };
    let topic = unique_topic("restart");
    create_topic(&kafka, &topic, 2).await;
    let base_ms = 1_767_225_600_000;
    let batch = |from: i64| -> Vec<(i32, String)> {
        (from..from + 3_000)
            .map(|id| ((id % 2) as i32, click(id, base_ms + id)))
            .collect()
    };
    produce(&producer(&kafka, "5"), &topic, &batch(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE restart ({CLICK_COLUMNS}) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', retain = 'true', \
             properties.reconnect.backoff.max.ms = '1000') FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    wait_for(Duration::from_secs(60), "the first events", || async {
        (source_rows(&client, "restart").await == 3_000).then_some(())
    })
    .await;

    broker.kill();
    let error = wait_for(Duration::from_secs(60), "the source to report the outage", || async {
        let row = client
            .query_one(
                "SELECT max(status), max(last_error) FROM sluice_catalog.sources WHERE source = 'restart'",
                &[],
            )
            .await
            .unwrap();
        let status: Option<String> = row.get(0);
        (status.as_deref() == Some("retrying")).then(|| row.get::<_, Option<String>>(1))
    })
    .await;
    assert!(error.is_some_and(|e| !e.is_empty()));
    // The server keeps serving meanwhile.
    assert_eq!(query_i64(&client, "SELECT 1::bigint").await, 1);

    broker.spawn().unwrap();
    produce(&producer(&kafka, "5"), &topic, &batch(3_000)).await;
    wait_for(
        Duration::from_secs(120),
        "the events after the restart",
        || async { (source_rows(&client, "restart").await == 6_000).then_some(()) },
    )
    .await;
    client.batch_execute("FLUSH").await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), min(event_id), max(event_id) FROM restart",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 6_000);
    assert_eq!(row.get::<_, i64>(1), 6_000);
    assert_eq!((row.get::<_, i64>(2), row.get::<_, i64>(3)), (0, 5_999));
    let status = client
        .query_one(
            "SELECT max(status) FROM sluice_catalog.sources WHERE source = 'restart'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        status.get::<_, Option<String>>(0).as_deref(),
        Some("running")
    );
    server.shutdown().await;
}

async fn delete_topic(kafka: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(&[topic], &options).await.unwrap() {
        result.unwrap();
    }
}

/// Creates `topic` (one partition) again once the broker has forgotten its deletion.
async fn recreate_topic(kafka: &str, topic: &str) {
    wait_for(
        Duration::from_secs(30),
        "the topic to be re-created",
        || async {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", kafka)
                .create()
                .unwrap();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let created = admin
                .create_topics(
                    &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
                    &options,
                )
                .await
                .unwrap();
            created.into_iter().all(|r| r.is_ok()).then_some(())
        },
    )
    .await;
}

/// `ALTER SOURCE ids RESET OFFSETS TO EARLIEST`, then waits until `ids` holds `rows` rows.
async fn reset_to_earliest(client: &tokio_postgres::Client, rows: i64) {
    client
        .batch_execute("ALTER SOURCE ids RESET OFFSETS TO EARLIEST")
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "the re-created topic's ids",
        || async { (query_i64(client, "SELECT count(*) FROM ids").await == rows).then_some(()) },
    )
    .await;
}

/// The broker holds fewer records than a source read (its topic was re-created while the
/// server was down). Before, the source skipped every record below its position: status
/// `running`, lag 0, nothing logged. Now the partition stops and says why (status, error,
/// negative lag, /metrics) until `ALTER SOURCE … RESET OFFSETS` says where to go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offset_out_of_range_stops_its_partition_until_reset() {
    let Some(kafka) = kafka_target() else { return };
    let (topic, dir, server, client) = reading_ids(&kafka, "recreated", 50).await;
    let count = "SELECT count(*) FROM ids";
    // Nothing to reset while every partition reads.
    let error = client
        .batch_execute("ALTER SOURCE ids RESET OFFSETS TO EARLIEST")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "55000", "{error:?}");
    server.shutdown().await;

    // The topic comes back with 10 records: offsets 0 to 9, where the source read up to 50.
    delete_topic(&kafka, &topic).await;
    recreate_topic(&kafka, &topic).await;
    produce(&producer(&kafka, "5"), &topic, &ids(1_000..1_010)).await;
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    let status = "SELECT status, last_error, lag FROM sluice_catalog.sources WHERE source = 'ids'";
    let row = wait_for(Duration::from_secs(30), "the partition to stop", || async {
        let row = client.query_one(status, &[]).await.unwrap();
        (row.get::<_, String>(0) == "stopped").then_some(row)
    })
    .await;
    let error: String = row.get(1);
    assert!(
        error.contains("re-created or restored") && error.contains("RESET OFFSETS"),
        "{error}"
    );
    // Negative: the broker holds fewer records than the source read.
    assert_eq!(row.get::<_, Option<i64>>(2), Some(10 - 50));
    let metrics = http_get(server.http_addr(), "/metrics");
    assert!(
        metrics.contains("sluicedb_source_partition_stopped{source=\"ids\",partition=\"0\"} 1\n"),
        "{metrics}"
    );
    // Nothing was skipped or re-read meanwhile.
    assert_eq!(query_i64(&client, count).await, 50);
    reset_to_earliest(&client, 60).await;
    let row = client.query_one(status, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "running");
    assert_eq!(row.get::<_, Option<String>>(1), None);
    // Each id once: the first 50 and the new 10.
    let sum = "SELECT CAST(sum(id) AS BIGINT) FROM ids";
    assert_eq!(
        query_i64(&client, sum).await,
        (0..50).sum::<i64>() + (1_000..1_010).sum::<i64>()
    );
    server.shutdown().await;
}

/// This test process's `sluicedb kafka-reader` children reading `topic`.
fn reader_processes(topic: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut readers = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if parent == Some(me) && cmdline.contains("kafka-reader") && cmdline.contains(topic) {
            readers.push(pid);
        }
    }
    readers
}

/// A reader process that dies (killed here) takes only itself: its source shows `retrying`
/// naming the signal, queries answer, and a new reader goes on from what the source had taken
/// in — every id once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_kafka_reader_is_started_again_and_loses_nothing() {
    let Some(kafka) = kafka_target() else { return };
    let (topic, _dir, server, client) = reading_ids(&kafka, "killed-reader", 5_000).await;
    let count = "SELECT count(*) FROM ids";
    let readers = reader_processes(&topic);
    assert_eq!(
        readers.len(),
        1,
        "one reader process per kafka source: {readers:?}"
    );
    Command::new("kill")
        .args(["-KILL", &readers[0].to_string()])
        .status()
        .unwrap();
    let status = "SELECT status, coalesce(last_error, '') FROM sluice_catalog.sources \
                  WHERE source = 'ids'";
    let error = wait_for(Duration::from_secs(10), "the source to retry", || async {
        let row = client.query_one(status, &[]).await.unwrap();
        (row.get::<_, String>(0) == "retrying").then(|| row.get::<_, String>(1))
    })
    .await;
    assert!(error.contains("SIGKILL"), "{error}");
    assert_eq!(query_i64(&client, count).await, 5_000);
    produce(&producer(&kafka, "5"), &topic, &ids(5_000..8_000)).await;
    wait_for(
        Duration::from_secs(60),
        "every id from a new reader",
        || async {
            let row = client.query_one(status, &[]).await.unwrap();
            let running = row.get::<_, String>(0) == "running";
            (running && query_i64(&client, count).await == 8_000).then_some(())
        },
    )
    .await;
    let distinct = "SELECT count(DISTINCT id) FROM ids";
    assert_eq!(query_i64(&client, distinct).await, 8_000);
    let readers_after = reader_processes(&topic);
    assert_eq!(readers_after.len(), 1, "{readers_after:?}");
    assert_ne!(readers_after, readers);
    server.shutdown().await;
    wait_for(
        Duration::from_secs(10),
        "the reader to end with its server",
        || async { reader_processes(&topic).is_empty().then_some(()) },
    )
    .await;
}

/// Deleting the topic a source reads made librdkafka crash (SIGSEGV: tansu answers a fetch of
/// a deleted topic with a zero topic id and a current leader, and librdkafka looks that topic
/// up by a NULL name), and with it the whole server. Now only that source's reader dies: the
/// source says so, another source reads on, queries answer. When the topic comes back with
/// fewer records than were read, the partition stops until `RESET OFFSETS`, then reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_topic_under_a_source_leaves_the_server_and_other_sources_running() {
    let Some(kafka) = kafka_target() else { return };
    let doomed = unique_topic("deleted");
    let other = unique_topic("kept");
    create_topic(&kafka, &doomed, 1).await;
    create_topic(&kafka, &other, 1).await;
    produce(&producer(&kafka, "5"), &doomed, &ids(0..1_000)).await;
    produce(&producer(&kafka, "5"), &other, &ids(0..1_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path().to_str().unwrap()).await;
    let client = connect(server.pg_addr()).await;
    create_ids_source(&client, &doomed, &kafka).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE kept (id BIGINT) WITH (connector = 'kafka', topic = '{other}', \
             properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest', \
             retain = 'true') FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "both sources", || async {
        let both = query_i64(&client, "SELECT count(*) FROM ids").await == 1_000
            && query_i64(&client, "SELECT count(*) FROM kept").await == 1_000;
        both.then_some(())
    })
    .await;
    delete_topic(&kafka, &doomed).await;
    let status = "SELECT status, coalesce(last_error, '') FROM sluice_catalog.sources \
                  WHERE source = 'ids'";
    let error = wait_for(
        Duration::from_secs(20),
        "the source to say its reader died",
        || async {
            let row = client.query_one(status, &[]).await.unwrap();
            let error = row.get::<_, String>(1);
            (row.get::<_, String>(0) != "running" && !error.is_empty()).then_some(error)
        },
    )
    .await;
    eprintln!("after its topic was deleted: {error}");
    produce(&producer(&kafka, "5"), &other, &ids(1_000..2_000)).await;
    wait_for(
        Duration::from_secs(30),
        "the other source to read on",
        || async { (query_i64(&client, "SELECT count(*) FROM kept").await == 2_000).then_some(()) },
    )
    .await;
    assert_eq!(query_i64(&client, "SELECT count(*) FROM ids").await, 1_000);

    // The topic comes back, holding fewer records than the source read: the new reader stops
    // the partition and says why, rather than skip the new records as redeliveries.
    recreate_topic(&kafka, &doomed).await;
    produce(&producer(&kafka, "5"), &doomed, &ids(5_000..5_010)).await;
    let error = wait_for(
        Duration::from_secs(60),
        "the partition to stop past the re-created topic's end",
        || async {
            let row = client.query_one(status, &[]).await.unwrap();
            (row.get::<_, String>(0) == "stopped").then(|| row.get::<_, String>(1))
        },
    )
    .await;
    assert!(error.contains("re-created or restored"), "{error}");
    reset_to_earliest(&client, 1_010).await;
    // Each id once: the first topic's and the new one's; the other source untouched.
    let sum = "SELECT CAST(sum(id) AS BIGINT) FROM ids";
    assert_eq!(
        query_i64(&client, sum).await,
        (0..1_000).sum::<i64>() + (5_000..5_010).sum::<i64>()
    );
    assert_eq!(
        query_i64(&client, "SELECT count(DISTINCT id) FROM kept").await,
        2_000
    );
    server.shutdown().await;
}

/// A view's own reader of a source that keeps nothing reads the topic only until it has caught
/// up with the source's reader; then it takes the source's rows, and one reader process per
/// topic is left. Ids arrive while it catches up, after it joined and after a restart (where it
/// resumes from its own offsets and joins again): at every look the view has each id at most
/// once, and in the end each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_views_reader_joins_its_sources_and_every_id_counts_once() {
    let Some(kafka) = kafka_target() else { return };
    let topic = unique_topic("joining-reader");
    create_topic(&kafka, &topic, 4).await;
    let producer = producer(&kafka, "5");
    let ids = |range: std::ops::Range<i64>| -> Vec<(i32, String)> {
        range
            .map(|i| ((i % 4) as i32, format!(r#"{{"id": {i}}}"#)))
            .collect()
    };
    produce(&producer, &topic, &ids(0..20_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap();
    let server = start_server(storage).await;
    let client = connect(server.pg_addr()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE ids (id BIGINT) WITH (connector = 'kafka', topic = '{topic}', \
             properties.bootstrap.server = '{kafka}', scan.startup.mode = 'earliest') \
             FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    // The view's reader starts behind the source's, and ids arrive while it catches up: the
    // source's waits for it, so it joins ahead and drops the rows it already has.
    wait_read(&client, &["ids"], 20_000).await;
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW counted AS \
             SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM ids",
        )
        .await
        .unwrap();
    produce(&producer, &topic, &ids(20_000..40_000)).await;
    wait_counted_once(&client, 40_000).await;
    wait_one_reader(&topic).await;
    produce(&producer, &topic, &ids(40_000..45_000)).await;
    wait_counted_once(&client, 45_000).await;

    server.shutdown().await;
    produce(&producer, &topic, &ids(45_000..50_000)).await;
    let server = start_server(storage).await;
    let client = connect(server.pg_addr()).await;
    produce(&producer, &topic, &ids(50_000..55_000)).await;
    wait_counted_once(&client, 55_000).await;
    wait_one_reader(&topic).await;
    server.shutdown().await;
}

/// Waits until view `counted` has ids 0..n once each; fails at once if it has any id twice.
async fn wait_counted_once(client: &tokio_postgres::Client, n: i64) {
    let what = format!("ids 0..{n} in the view");
    wait_for(Duration::from_secs(60), &what, || async {
        let row = client
            .query_opt("SELECT n, d, s FROM counted", &[])
            .await
            .unwrap();
        // The view's one row is there from the start, its sum NULL until ids arrive.
        let (count, distinct, sum): (i64, i64, Option<i64>) =
            row.map_or((0, 0, None), |r| (r.get(0), r.get(1), r.get(2)));
        let sum = sum.unwrap_or(0);
        assert_eq!(count, distinct, "an id counted twice");
        (count == n && sum == n * (n - 1) / 2).then_some(())
    })
    .await;
}

/// Waits until one reader process of `topic` is left: a view's reader joined the source's.
async fn wait_one_reader(topic: &str) {
    wait_for(
        Duration::from_secs(30),
        "the view's reader to join",
        || async { (reader_processes(topic).len() == 1).then_some(()) },
    )
    .await;
}
