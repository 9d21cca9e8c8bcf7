"""The batch reference for the view benches: DuckDB runs the same queries over the same events,
read from JSON-lines files, on every core. Prints events/s, best of three, for reading and
computing together (as SluiceDB decodes and computes together).

Usage: .venv/bin/python benches/duckdb_reference.py windows clicks.jsonl
       .venv/bin/python benches/duckdb_reference.py join impressions.jsonl clicks.jsonl
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


# J1 of benches/join_throughput.rs: each click with the impression it came from, at most a
# minute before it.
J1 = """
SELECT count(*), sum(c.click_id - i.imp_id)
FROM impressions i JOIN clicks c
  ON c.imp_id = i.imp_id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL 1 MINUTE
"""

IMPRESSIONS = """
(SELECT imp_id, ad_id, make_timestamp(ts * 1000) AS ts
 FROM read_json('{path}', format = 'newline_delimited', columns = {{
   imp_id: 'BIGINT', ad_id: 'BIGINT', ts: 'BIGINT'}}))
"""

CLICKS = """
(SELECT click_id, imp_id, make_timestamp(ts * 1000) AS ts
 FROM read_json('{path}', format = 'newline_delimited', columns = {{
   click_id: 'BIGINT', imp_id: 'BIGINT', ts: 'BIGINT'}}))
"""


def join(impressions: str, clicks: str) -> None:
    con = duckdb.connect()
    events = sum(
        con.sql(f"SELECT count(*) FROM read_json('{p}', format = 'newline_delimited')").fetchone()[0]
        for p in (impressions, clicks)
    )
    sql = (
        f"WITH impressions AS {IMPRESSIONS.format(path=impressions)}, "
        f"clicks AS {CLICKS.format(path=clicks)} {J1}"
    )
    print(f"DuckDB {duckdb.__version__} batch reference over {events} events:")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        joined, _ = con.sql(sql).fetchone()
        best = min(best, time.perf_counter() - started)
    print(f"J1 in DuckDB (read JSON + join, batch): {events / best / 1e6:.2f} M events/s, {joined} joined rows")


def windows(path: str) -> None:
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
    {"windows": lambda: windows(sys.argv[2]), "join": lambda: join(sys.argv[2], sys.argv[3])}[sys.argv[1]]()
