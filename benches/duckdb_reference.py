"""The batch reference for benches/window_throughput.rs: DuckDB runs W1 and W2 over the same
click events, read from a JSON-lines file, on every core. Prints events/s, best of three, for
reading and aggregating together (as SluiceDB decodes and aggregates together).

Usage: .venv/bin/python benches/duckdb_reference.py clicks.jsonl
"""

import sys
import time

import duckdb

W1 = """
SELECT time_bucket(INTERVAL '10 seconds', ts) AS window_start, action,
       count(*) AS events, sum(amount) AS revenue, count(DISTINCT user_id) AS users
FROM clicks GROUP BY ALL
"""

# Every event in its 6 hopping windows: window starts are the 10 s buckets 0..50 s before it.
W2 = """
SELECT time_bucket(INTERVAL '10 seconds', ts) - INTERVAL (o.i * 10) SECOND AS window_start,
       page, count(*) AS views
FROM clicks, range(6) AS o(i) GROUP BY ALL
"""

SOURCE = """
(SELECT event_id, user_id, page, action, amount, make_timestamp(ts * 1000) AS ts
 FROM read_json('{path}', format = 'newline_delimited', columns = {{
   event_id: 'BIGINT', user_id: 'BIGINT', page: 'VARCHAR', action: 'VARCHAR',
   amount: 'DOUBLE', ts: 'BIGINT'}}))
"""


def main() -> None:
    path = sys.argv[1]
    con = duckdb.connect()
    events = con.sql(f"SELECT count(*) FROM read_json('{path}', format = 'newline_delimited')").fetchone()[0]
    source = SOURCE.format(path=path)
    print(f"DuckDB {duckdb.__version__} batch reference over {events} events in {path}:")
    for name, query in (("W1", W1), ("W2", W2)):
        sql = f"WITH clicks AS {source} SELECT count(*), sum({'events' if name == 'W1' else 'views'}) FROM ({query})"
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            windows, counted = con.sql(sql).fetchone()
            best = min(best, time.perf_counter() - started)
        expected = events if name == "W1" else 6 * events
        assert counted == expected, (name, counted, expected)
        print(f"{name} in DuckDB (read JSON + aggregate, batch): {events / best / 1e6:.2f} M events/s, {windows} windows")


if __name__ == "__main__":
    main()
