//! Tables fed by change records on the real broker: an upsert topic and a Debezium topic, fed
//! seeded random inserts, updates and deletes (and bad records) in rounds. After every round
//! each table equals the model the test keeps of it, each view equals the same query run by
//! DataFusion in batch mode over the tables, and the rejected records are exactly the bad ones
//! sent — through two `kill -9`s, one while the records of a round are still being read.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_postgres::Client;

use crate::kafka::{create_topic, producer, unique_topic, wait_read};
use crate::support::{self, kafka_target, query_i64};
use crate::views::{assert_views_running, sorted_rows};

const BY_STATUS: &str = "SELECT status, count(*) AS n, sum(amount) AS total, min(amount) AS lo, \
                         max(amount) AS hi, count(DISTINCT customer_id) AS customers \
                         FROM orders GROUP BY status";

/// Each view, and the same query over the tables (`by_status` as a subquery).
fn views() -> Vec<(&'static str, String, String)> {
    let same = |name, sql: &str| (name, sql.to_string(), sql.to_string());
    let hist = "SELECT n, count(*) AS statuses FROM by_status GROUP BY n";
    vec![
        same("by_status", BY_STATUS),
        same(
            "totals",
            "SELECT count(*) AS n, sum(amount) AS total FROM orders",
        ),
        same("statuses", "SELECT DISTINCT status FROM orders"),
        same(
            "top_orders",
            "SELECT id, amount FROM orders ORDER BY amount DESC, id LIMIT 3",
        ),
        same(
            "top_per_status",
            "SELECT * FROM (SELECT status, id, amount, ROW_NUMBER() OVER (PARTITION BY status \
             ORDER BY amount DESC, id) AS rn FROM orders) WHERE rn <= 2",
        ),
        (
            "hist",
            hist.to_string(),
            hist.replace("FROM by_status", &format!("FROM ({BY_STATUS})")),
        ),
        // Windows over rows that change: an update that moves a row's time moves it between
        // windows.
        same(
            "per_10s",
            "SELECT window_start, window_end, status, count(*) AS n, sum(amount) AS total \
             FROM TUMBLE(orders, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, status",
        ),
        same(
            "per_30s_hop",
            "SELECT window_start, count(*) AS n, max(amount) AS hi \
             FROM HOP(orders, ts, INTERVAL '10' SECOND, INTERVAL '30' SECOND) GROUP BY window_start",
        ),
        same("dear", "SELECT sku, price FROM prices WHERE price > 50"),
        same(
            "price_stats",
            "SELECT count(*) AS n, sum(price) AS total, max(price) AS hi FROM prices",
        ),
    ]
}

/// What the test sent, applied as Postgres would: the tables' rows and the bad records.
#[derive(Default)]
struct Model {
    /// id → (customer_id, amount in cents, status).
    orders: BTreeMap<i64, (i64, i64, &'static str)>,
    prices: BTreeMap<String, f64>,
    bad: i64,
    /// Records sent per topic.
    sent: [i64; 2],
}

const STATUSES: [&str; 4] = ["new", "paid", "shipped", "returned"];

impl Model {
    /// A random Debezium record for `orders` (its key, its value), applied to the model.
    fn order_event(&mut self, rng: &mut ChaCha8Rng) -> (i64, Option<String>) {
        let row = |id: i64, (customer, cents, status): (i64, i64, &str), rng: &mut ChaCha8Rng| {
            let amount = match rng.random_bool(0.5) {
                true => format!("\"{}.{:02}\"", cents / 100, cents % 100),
                false => format!("{}.{:02}", cents / 100, cents % 100),
            };
            format!(
                r#"{{"id": {id}, "customer_id": {customer}, "amount": {amount}, "status": "{status}", "ts": {}}}"#,
                // An update of the amount moves the row's time.
                1_767_225_600_000i64 + cents * 3
            )
        };
        let random_row = |rng: &mut ChaCha8Rng| {
            (
                rng.random_range(0..20),
                rng.random_range(100..100_000),
                STATUSES[rng.random_range(0..STATUSES.len())],
            )
        };
        let existing: Vec<i64> = self.orders.keys().copied().collect();
        let pick = |rng: &mut ChaCha8Rng| existing[rng.random_range(0..existing.len())];
        let choice = rng.random_range(0..100);
        if choice < 6 {
            // Bad: no op, an update or delete of a row never seen, not JSON.
            self.bad += 1;
            let unseen = 1_000_000 + rng.random_range(0..1000);
            let value = match choice % 4 {
                0 => r#"{"after": {"id": 1}}"#.to_string(),
                1 => format!(
                    r#"{{"op": "u", "before": null, "after": {}}}"#,
                    row(unseen, random_row(rng), rng)
                ),
                2 => format!(r#"{{"op": "d", "before": {{"id": {unseen}}}, "after": null}}"#),
                _ => "{\"op\": \"c\", \"after\": ".to_string(),
            };
            return (unseen, Some(value));
        }
        if existing.is_empty() || choice < 40 {
            let id = self.orders.keys().next_back().map_or(1, |k| k + 1);
            let fields = random_row(rng);
            self.orders.insert(id, fields);
            let op = if choice % 5 == 0 { "r" } else { "c" };
            let value = format!(
                r#"{{"before": null, "after": {}, "op": "{op}", "source": {{"db": "shop"}}, "ts_ms": 1}}"#,
                row(id, fields, rng)
            );
            // Kafka Connect's JSON with schemas wraps the envelope in "payload".
            return match choice % 3 {
                0 => (
                    id,
                    Some(format!(r#"{{"schema": {{}}, "payload": {value}}}"#)),
                ),
                _ => (id, Some(value)),
            };
        }
        let id = pick(rng);
        if choice < 80 {
            let old = self.orders[&id];
            let mut new = random_row(rng);
            if rng.random_bool(0.5) {
                new.0 = old.0;
            }
            self.orders.insert(id, new);
            let before = match rng.random_bool(0.5) {
                true => row(id, old, rng),
                false => "null".into(),
            };
            let value = format!(
                r#"{{"before": {before}, "after": {}, "op": "u"}}"#,
                row(id, new, rng)
            );
            return (id, Some(value));
        }
        if choice < 95 {
            self.orders.remove(&id);
            let value = format!(r#"{{"before": {{"id": {id}}}, "after": null, "op": "d"}}"#);
            return (id, Some(value));
        }
        // A tombstone: skipped.
        (id, None)
    }

    /// A random upsert record for `prices` (its key, its value), applied to the model.
    fn price_event(&mut self, rng: &mut ChaCha8Rng) -> (String, String, Option<String>) {
        let sku = format!("sku-{}", rng.random_range(0..40));
        let key = match rng.random_bool(0.5) {
            true => format!("\"{sku}\""),
            false => format!(r#"{{"sku": "{sku}"}}"#),
        };
        let choice = rng.random_range(0..100);
        if choice < 5 {
            // Bad: the key names another row than the value.
            self.bad += 1;
            let value = format!(r#"{{"sku": "{sku}-other", "price": 1}}"#);
            return (sku, key, Some(value));
        }
        if choice < 25 {
            self.prices.remove(&sku);
            return (sku, key, None);
        }
        // Quarters, so sums are exact in floating point whatever the order.
        let price = rng.random_range(0..400) as f64 / 4.0;
        self.prices.insert(sku.clone(), price);
        let value = format!(r#"{{"sku": "{sku}", "price": {price}}}"#);
        (sku, key, Some(value))
    }
}

/// Sends (partition, key, value) records and waits for their delivery.
pub(crate) async fn send(
    producer: &FutureProducer,
    topic: &str,
    records: &[(i32, String, Option<String>)],
) {
    let deliveries: Vec<_> = records
        .iter()
        .map(|(partition, key, value)| {
            let mut record = FutureRecord::<String, String>::to(topic)
                .partition(*partition)
                .key(key);
            if let Some(value) = value {
                record = record.payload(value);
            }
            producer.send_result(record).map_err(|(e, _)| e).unwrap()
        })
        .collect();
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// The tables equal the model, the views their batch queries, the rejected records the bad
/// ones; returns the rows compared.
async fn check(client: &Client, model: &Model, round: usize) -> usize {
    let orders = sorted_rows(
        client,
        "SELECT id, customer_id, CAST(amount AS TEXT), status FROM orders",
    )
    .await;
    let mut expected: Vec<String> = model
        .orders
        .iter()
        .map(|(id, (customer, cents, status))| {
            format!(
                "{id}|{customer}|{}.{:02}|{status}",
                cents / 100,
                cents % 100
            )
        })
        .collect();
    expected.sort();
    assert_eq!(orders, expected, "orders after round {round}");
    let prices = sorted_rows(client, "SELECT sku, CAST(price * 4 AS BIGINT) FROM prices").await;
    let mut expected_prices: Vec<String> = model
        .prices
        .iter()
        .map(|(sku, price)| format!("{sku}|{}", (price * 4.0) as i64))
        .collect();
    expected_prices.sort();
    assert_eq!(prices, expected_prices, "prices after round {round}");
    let mut compared = orders.len() + prices.len();
    for (name, _, batch) in views() {
        let streamed = sorted_rows(client, &format!("SELECT * FROM {name}")).await;
        let expected = sorted_rows(client, &batch).await;
        assert_eq!(streamed, expected, "view {name} after round {round}");
        compared += expected.len();
    }
    let rejected = query_i64(
        client,
        "SELECT count(*) FROM sluice_catalog.rejected_rows WHERE source IN ('orders', 'prices')",
    )
    .await;
    assert_eq!(rejected, model.bad, "rejected records after round {round}");
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upsert_and_debezium_tables_follow_their_topics_through_kill_9() {
    let Some(kafka) = kafka_target() else { return };
    let topics = [unique_topic("orders"), unique_topic("prices")];
    for topic in &topics {
        create_topic(&kafka, topic, 2).await;
    }
    // Compaction folds the tables' changelog files by key as they come.
    let (_dir, mut server, mut client) = support::start_killable_with(
        "",
        &[
            "--compaction-interval",
            "1s",
            "--compaction-target-size",
            "1MB",
        ],
    )
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let with = |topic: &str| {
        format!(
            "WITH (connector = 'kafka', topic = '{topic}', properties.bootstrap.server = \
             '{kafka}', scan.startup.mode = 'earliest')"
        )
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT, amount NUMERIC(12,2), \
             status VARCHAR, ts TIMESTAMPTZ) {} FORMAT DEBEZIUM ENCODE JSON;
             CREATE TABLE prices (sku VARCHAR PRIMARY KEY, price DOUBLE PRECISION) {} \
             FORMAT UPSERT ENCODE JSON;",
            with(&topics[0]),
            with(&topics[1])
        ))
        .await
        .unwrap();
    for (name, query, _) in views() {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let producer = producer(&kafka, "5");
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut model = Model::default();
    let (rounds, mut compared) = (10, 0);
    for round in 1..=rounds {
        let mut orders = Vec::new();
        let mut prices = Vec::new();
        for _ in 0..rng.random_range(20..120) {
            let (id, value) = model.order_event(&mut rng);
            orders.push(((id % 2) as i32, id.to_string(), value));
        }
        for _ in 0..rng.random_range(10..60) {
            let (sku, key, value) = model.price_event(&mut rng);
            let partition = sku.bytes().map(i32::from).sum::<i32>() % 2;
            prices.push((partition, key, value));
        }
        send(&producer, &topics[0], &orders).await;
        send(&producer, &topics[1], &prices).await;
        model.sent[0] += orders.len() as i64;
        model.sent[1] += prices.len() as i64;
        if round == 7 {
            // Killed while the round's records are read: they are read again from the last
            // checkpoint's offsets, applied once.
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        wait_read(&client, &["orders"], model.sent[0]).await;
        wait_read(&client, &["prices"], model.sent[1]).await;
        client.batch_execute("FLUSH").await.unwrap();
        compared += check(&client, &model, round).await;
        if round == 4 {
            // Killed after a checkpoint: the tables replay their changelogs, the views resume.
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
            compared += check(&client, &model, round).await;
        }
    }
    // Views created now backfill from the folded files.
    let compactions = "SELECT count(*) FROM sluice_catalog.checkpoints WHERE kind = \
                       'compaction' AND reason IN ('source orders', 'source prices')";
    let folds = support::wait_for(Duration::from_secs(30), "a compaction", || {
        let client = &client;
        async move { Some(query_i64(client, compactions).await).filter(|n| *n > 0) }
    })
    .await;
    let late = [
        (
            "late_orders",
            "SELECT status, count(*) AS n, sum(amount) AS total, max(customer_id) AS top \
             FROM orders GROUP BY status",
        ),
        (
            "late_prices",
            "SELECT count(*) AS n, round(sum(price), 6) AS total FROM prices",
        ),
    ];
    for (name, query) in late {
        client
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap();
    }
    client.batch_execute("FLUSH").await.unwrap();
    for (name, query) in late {
        let streamed = sorted_rows(&client, &format!("SELECT * FROM {name}")).await;
        assert_eq!(streamed, sorted_rows(&client, query).await, "view {name}");
        compared += streamed.len();
    }
    assert_views_running(&client).await;
    eprintln!(
        "change-record tables: {rounds} rounds, {} + {} records ({} bad), {} views, {compared} \
         rows compared with the model and batch queries, {folds} compactions folded the tables' \
         files before two more views backfilled from them",
        model.sent[0],
        model.sent[1],
        model.bad,
        views().len()
    );
}
