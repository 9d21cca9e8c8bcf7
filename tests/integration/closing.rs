//! Windows over a table whose rows change, closed by the table's watermark. Until a window
//! closes, an update moves a row between windows and a delete takes it back; once the watermark
//! passes the window's end, its row is final and later changes to it are late: counted, kept
//! in `late_rows`, not applied.
//!
//! The oracle is the test's own: it predicts the watermark from the times it wrote, and after
//! every statement that moves it runs each view's query in batch over the table and freezes
//! the rows of the windows that just closed. After every `FLUSH` a view must equal its frozen
//! rows (plus, without EMIT ON WINDOW CLOSE, the batch rows of the windows still open), and
//! its late rows must number the changes the test sent into closed windows — through a kill -9.
//! Windows closed this way hand on a watermark on their bounds (the input's, less the longest
//! window): a view windowing over the closed windows closes its own with it.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Client;

use crate::support;
use crate::views::{assert_views_running, sorted_rows};

/// 2026-01-01T00:00:00Z: times are seconds after it, and windows line up with it.
const BASE: i64 = 1_767_225_600;
const DELAY: i64 = 5;

struct View {
    name: &'static str,
    query: &'static str,
    size: i64,
    slide: i64,
    emit_on_close: bool,
    /// The rows of closed windows, as they were when each closed.
    frozen: Vec<String>,
    late: usize,
}

impl View {
    /// The ends of the windows holding time `t`.
    fn ends(&self, t: i64) -> Vec<i64> {
        let last_start = t.div_euclid(self.slide) * self.slide;
        (0..self.size / self.slide)
            .map(|i| last_start - i * self.slide + self.size)
            .collect()
    }

    /// The batch result, each row keyed by its window's end.
    async fn batch(&self, client: &Client) -> Vec<(i64, String)> {
        let sql = format!(
            "SELECT CAST(extract(epoch FROM window_end) AS BIGINT) - {BASE} AS e, * FROM ({}) q",
            self.query
        );
        sorted_rows(client, &sql)
            .await
            .into_iter()
            .map(|row| {
                let (end, rest) = row.split_once('|').unwrap();
                (end.parse().unwrap(), rest.to_string())
            })
            .collect()
    }
}

fn at(t: i64) -> String {
    chrono::DateTime::from_timestamp(BASE + t, 0)
        .unwrap()
        .to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_over_a_changing_table_close_with_its_watermark_and_later_changes_are_late() {
    let (_dir, mut server, mut client) = support::start_killable(&format!(
        "CREATE TABLE orders (id INT PRIMARY KEY, amount BIGINT, ts TIMESTAMPTZ, \
         WATERMARK FOR ts AS ts - INTERVAL '{DELAY}' SECOND)"
    ))
    .await;
    let addr = ([127, 0, 0, 1], server.pg_port).into();
    let mut views = vec![
        View {
            name: "per_10s",
            query: "SELECT window_start, window_end, count(*) AS n, sum(amount) AS total, \
                    max(amount) AS top FROM TUMBLE(orders, ts, INTERVAL '10' SECOND) \
                    GROUP BY window_start, window_end",
            size: 10,
            slide: 10,
            emit_on_close: false,
            frozen: Vec::new(),
            late: 0,
        },
        View {
            name: "per_20s_closed",
            query: "SELECT window_start, window_end, count(*) AS n, sum(amount) AS total, \
                    count(DISTINCT amount) AS amounts \
                    FROM HOP(orders, ts, INTERVAL '10' SECOND, INTERVAL '20' SECOND) \
                    GROUP BY window_start, window_end",
            size: 20,
            slide: 10,
            emit_on_close: true,
            frozen: Vec::new(),
            late: 0,
        },
    ];
    for view in &views {
        let emit = if view.emit_on_close {
            " EMIT ON WINDOW CLOSE"
        } else {
            ""
        };
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW {} AS {}{emit}",
                view.name, view.query
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", view.name));
    }
    // Windows over the closed windows, closed by the watermark the view over the table hands
    // on: its own less its longest window (20 s).
    let (over, over_size, over_delay) = ("per_30s_of_20s", 30, 20);
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW {over} AS SELECT window_start, count(*) AS windows, \
             sum(n) AS n FROM TUMBLE(per_20s_closed, window_start, INTERVAL '{over_size}' \
             SECOND) GROUP BY window_start EMIT ON WINDOW CLOSE"
        ))
        .await
        .unwrap();
    let mut over_closed = 0;
    // The model: id -> (amount, time).
    let mut model: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let (mut now, mut next_id, mut max_time) = (0i64, 0i64, None::<i64>);
    let (rounds, mut statements, mut closed) = (24, 0, 0);
    for round in 1..=rounds {
        for _ in 0..rng.random_range(2..7) {
            statements += 1;
            now += rng.random_range(0..4);
            // The rows the statement deletes and inserts, by time.
            let mut changes: Vec<i64> = Vec::new();
            let ids: Vec<i64> = model.keys().copied().collect();
            let pick = ids.get(rng.random_range(0..ids.len().max(1))).copied();
            let sql = match (rng.random_range(0..10), pick) {
                (0..5, _) | (_, None) => {
                    let rows: Vec<String> = (0..rng.random_range(1..6))
                        .map(|_| {
                            let (id, amount) = (next_id, rng.random_range(1..50i64));
                            let time = now - rng.random_range(0..15);
                            next_id += 1;
                            model.insert(id, (amount, time));
                            changes.push(time);
                            format!("({id}, {amount}, '{}')", at(time))
                        })
                        .collect();
                    format!("INSERT INTO orders VALUES {}", rows.join(", "))
                }
                (5..7, Some(id)) => {
                    let row = model.get_mut(&id).unwrap();
                    let bonus = rng.random_range(1..9i64);
                    row.0 += bonus;
                    changes.extend([row.1, row.1]);
                    format!("UPDATE orders SET amount = amount + {bonus} WHERE id = {id}")
                }
                (7..9, Some(id)) => {
                    let row = model.get_mut(&id).unwrap();
                    let mut time = now - rng.random_range(0..15);
                    if time == row.1 {
                        time += 1;
                    }
                    changes.extend([row.1, time]);
                    row.1 = time;
                    format!("UPDATE orders SET ts = '{}' WHERE id = {id}", at(time))
                }
                (_, Some(id)) => {
                    changes.push(model.remove(&id).unwrap().1);
                    format!("DELETE FROM orders WHERE id = {id}")
                }
            };
            let before = max_time.map(|m| m - DELAY);
            for view in &mut views {
                for &time in &changes {
                    let ends = view.ends(time);
                    view.late += ends
                        .iter()
                        .filter(|&&e| before.is_some_and(|w| e <= w))
                        .count();
                }
            }
            client.batch_execute(&sql).await.unwrap();
            max_time = changes.iter().copied().chain(max_time).max();
            let after = max_time.map(|m| m - DELAY);
            if after > before {
                for view in &mut views {
                    for (end, row) in view.batch(&client).await {
                        if before.is_none_or(|w| end > w) && after.is_some_and(|w| end <= w) {
                            view.frozen.push(row);
                            closed += 1;
                        }
                    }
                }
            }
        }
        if round == rounds / 2 {
            server.stop("KILL");
            server.restart();
            client = support::connect(addr).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        let watermark = max_time.map(|m| m - DELAY);
        for view in &views {
            let mut expected = view.frozen.clone();
            if !view.emit_on_close {
                let open = view.batch(&client).await.into_iter();
                expected.extend(
                    open.filter(|(e, _)| watermark.is_none_or(|w| *e > w))
                        .map(|r| r.1),
                );
            }
            expected.sort();
            let streamed = sorted_rows(&client, &format!("SELECT * FROM {}", view.name)).await;
            assert_eq!(streamed, expected, "view {} after round {round}", view.name);
            let late = sorted_rows(
                &client,
                &format!(
                    "SELECT count(*) FROM sluice_catalog.late_rows WHERE view = '{}'",
                    view.name
                ),
            )
            .await;
            assert_eq!(
                late,
                vec![view.late.to_string()],
                "late rows of {} after round {round}",
                view.name
            );
        }
        // Equal to the same windows over the closed windows in batch, for the windows whose
        // end that watermark passed.
        if let Some(through) = watermark.map(|w| w - over_delay) {
            let expected = sorted_rows(
                &client,
                &format!(
                    "SELECT * FROM (SELECT date_bin(INTERVAL '{over_size}' SECOND, window_start, \
                     TIMESTAMPTZ '{}') AS s, count(*) AS windows, sum(n) AS n \
                     FROM per_20s_closed GROUP BY 1) q \
                     WHERE s + INTERVAL '{over_size}' SECOND <= TIMESTAMPTZ '{}'",
                    at(0),
                    at(through)
                ),
            )
            .await;
            let streamed = sorted_rows(&client, &format!("SELECT * FROM {over}")).await;
            assert_eq!(streamed, expected, "view {over} after round {round}");
            over_closed = streamed.len();
        }
        assert_views_running(&client).await;
    }
    assert!(over_closed >= 3, "{over} closed {over_closed} windows");
    let late: Vec<usize> = views.iter().map(|v| v.late).collect();
    assert!(
        closed > 20 && late.iter().all(|&n| n > 10),
        "too easy: {closed} closed, {late:?} late"
    );
    eprintln!(
        "closing windows: {rounds} rounds, {statements} statements, {closed} windows closed, \
         {late:?} late changes, {} rows at the end; {over_closed} windows over closed windows",
        model.len()
    );
}
