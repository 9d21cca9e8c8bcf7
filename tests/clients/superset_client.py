"""What Apache Superset 6 sends, replayed with its own stack (SQLAlchemy 1.4 + psycopg2, see
scripts/setup-test-env): the connection test, SQL Lab's schema/table/column listing with full
table reflection, a SQL Lab query, and chart SQL, each answer checked against rows computed here."""
import datetime
import sys
import time
from collections import Counter

import psycopg2
import psycopg2.extras
from sqlalchemy import MetaData, Table, create_engine, inspect, text
from sqlalchemy.pool import NullPool

port = int(sys.argv[1])
url = f"postgresql+psycopg2://sluice@127.0.0.1:{port}/sluice"
engine = create_engine(url, poolclass=NullPool)  # Superset makes a NullPool engine per operation

# Rows of our own, so every chart answer can be computed here too.
start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
events = [(i, ["view", "click", "purchase"][i % 3], start + datetime.timedelta(seconds=7 * i)) for i in range(2000)]
raw = psycopg2.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice")
raw.autocommit = True
cur = raw.cursor()
cur.execute("CREATE TABLE superset_events (id BIGINT NOT NULL, action TEXT, ts TIMESTAMPTZ)")
psycopg2.extras.execute_values(cur, "INSERT INTO superset_events VALUES %s", events, page_size=1000)
cur.execute("FLUSH")

# "Test connection": the dialect's handshake, then do_ping's SELECT 1.
with engine.connect() as conn:
    assert conn.execute(text("SELECT 1")).scalar() == 1
    assert engine.dialect.server_version_info[:1] == (15,), engine.dialect.server_version_info
    assert engine.dialect.default_schema_name == "public"

# SQL Lab's lists (SQLAlchemy 1.4 lists materialized views among views).
inspector = inspect(engine)
assert {"public", "sluice_catalog"} <= set(inspector.get_schema_names())
tables = set(inspector.get_table_names("public")) | set(inspector.get_foreign_table_names("public"))
assert {"superset_events", "demo_clicks"} <= tables, tables
assert "demo_clicks_10s" in inspector.get_view_names("public")
columns = {c["name"]: c for c in inspector.get_columns("demo_clicks_10s", "public")}
assert list(columns)[:3] == ["window_start", "window_end", "action"], list(columns)
assert columns["window_start"]["type"].timezone is True
assert str(columns["events"]["type"]) == "BIGINT" and str(columns["action"]["type"]) == "TEXT"
own = {c["name"]: c for c in inspector.get_columns("superset_events", "public")}
assert own["id"]["nullable"] is False and own["action"]["nullable"] is True
for name in ["superset_events", "demo_clicks_10s"]:
    # Table metadata, in SQL Lab's order, then the full reflection of "create dataset".
    assert inspector.get_pk_constraint(name, "public")["constrained_columns"] == []
    assert inspector.get_foreign_keys(name, "public") == []
    assert inspector.get_indexes(name, "public") == []
    assert inspector.get_table_comment(name, "public") == {"text": None}
    reflected = Table(name, MetaData(), autoload_with=engine, schema="public")
    assert [c.name for c in reflected.columns] == [c["name"] for c in inspector.get_columns(name, "public")]

# SQL Lab: the schema prequery, the backend pid for "stop", the query with LIMIT + 1.
conn = engine.raw_connection()
cur = conn.cursor()
cur.execute('set search_path = "public"')
cur.execute("SELECT pg_backend_pid()")
assert cur.fetchone()[0] > 0
cur.execute("SELECT\n  *\nFROM superset_events\nLIMIT 1001")
assert len(cur.fetchall()) == 1001
assert [d[0] for d in cur.description] == ["id", "action", "ts"]
cur.execute("SELECT\n  ts\nFROM public.superset_events\nWHERE\n  FALSE\nLIMIT 1")
assert cur.fetchall() == []
conn.rollback()

# A time-series chart, minute grain, as sqlglot formats it.
lo, hi = start + datetime.timedelta(minutes=10), start + datetime.timedelta(hours=2)
cur.execute(f"""SELECT
  DATE_TRUNC('MINUTE', ts) AS ts,
  COUNT(*) AS count
FROM public.superset_events
WHERE
  ts >= TO_TIMESTAMP('{lo:%Y-%m-%d %H:%M:%S.%f}', 'YYYY-MM-DD HH24:MI:SS.US')
  AND ts < TO_TIMESTAMP('{hi:%Y-%m-%d %H:%M:%S.%f}', 'YYYY-MM-DD HH24:MI:SS.US')
GROUP BY
  DATE_TRUNC('MINUTE', ts)
ORDER BY
  count DESC, ts
LIMIT 10000""")
expected = Counter(ts.replace(second=0) for _, _, ts in events if lo <= ts < hi)
got = {ts: n for ts, n in cur.fetchall()}
assert got == dict(expected), (len(got), len(expected))

# The 5-minute grain and the epoch conversion, both interval arithmetic.
cur.execute("""SELECT
  DATE_TRUNC('HOUR', ts) + INTERVAL '5 MINUTES' * FLOOR(EXTRACT(MINUTE FROM ts) / 5) AS ts,
  COUNT(*) AS count
FROM superset_events
GROUP BY 1""")
expected = Counter(ts.replace(minute=ts.minute - ts.minute % 5, second=0) for _, _, ts in events)
assert {ts: n for ts, n in cur.fetchall()} == dict(expected)
cur.execute("SELECT (CAST('epoch' AS TIMESTAMP) + id * INTERVAL '1 SECOND') AS t FROM superset_events WHERE id = 86400")
assert cur.fetchall() == []
cur.execute("SELECT (CAST('epoch' AS TIMESTAMP) + id * INTERVAL '1 SECOND') AS t FROM superset_events WHERE id = 1999")
assert cur.fetchone()[0] == datetime.datetime(1970, 1, 1, 0, 33, 19), "epoch + 1999 s"
conn.rollback()

# "Stop query" in SQL Lab: another connection terminates the query's backend by its pid, as
# PostgresEngineSpec.cancel_query does; the query's connection is closed with 57P01.
victim = engine.raw_connection()
victim_cursor = victim.cursor()
victim_cursor.execute("SELECT pg_backend_pid()")
pid = victim_cursor.fetchone()[0]
victim.rollback()
cur.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
assert cur.fetchall() == [("idle",)]
cur.execute(f"SELECT pg_terminate_backend({pid})")
assert cur.fetchone()[0] is True
conn.rollback()
time.sleep(0.2)  # the server closes it as it gets the request; the client learns on its next use
try:
    victim_cursor.execute("SELECT 1")
    raise AssertionError("the terminated connection still answers")
except psycopg2.OperationalError:
    pass
print("superset ok")
