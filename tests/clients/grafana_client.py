"""What Grafana's PostgreSQL data source (10.x to 12.x) sends, replayed with psycopg 3: the health
check, version detection, the table/column/schema pickers (simple protocol, and the extended
protocol of the newer schema API), and a time-series panel with its macros expanded. Answers are
checked against rows computed here. The SQL is copied from Grafana's postgresMetaQuery.ts,
schema.go and macros.go."""
import datetime
import sys
from collections import Counter

import psycopg
from psycopg import pq

port = int(sys.argv[1])
conn = psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)

start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
events = [(i, start + datetime.timedelta(seconds=5 * i), float(i % 17)) for i in range(3000)]
conn.execute("CREATE TABLE grafana_events (id BIGINT, ts TIMESTAMPTZ, value DOUBLE PRECISION)")
with conn.cursor() as cur:
    with cur.copy("COPY grafana_events FROM STDIN") as copy:
        for row in events:
            copy.write_row(row)

# Save & test: lib/pq pings with ";", pgx with "-- ping"; both must get EmptyQueryResponse.
for ping in [";", "-- ping"]:
    cur = conn.execute(ping)
    assert cur.pgresult.status == pq.ExecStatus.EMPTY_QUERY, (ping, cur.pgresult.status)

assert conn.execute("SELECT current_setting('server_version_num')::int/100 as version").fetchone()[0] == 1500
assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchall() == []

SCHEMA_CONSTRAINT = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""
EXCLUDED = """('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')"""

# Table picker, 11.4 to 12.x: tables, views and (unlike Postgres) materialized views.
tables = [r[0] for r in conn.execute(f"""SELECT
    CASE WHEN {SCHEMA_CONSTRAINT}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN {EXCLUDED}
    ORDER BY CASE WHEN {SCHEMA_CONSTRAINT} THEN 0 ELSE 1 END, 1""")]
# Relations on the search_path come bare, as Postgres lists them; others qualified.
assert {"grafana_events", "demo_clicks", "demo_clicks_10s", "sluice_catalog.sources"} <= set(tables), tables
# Table picker, 10.x.
old = [r[0] for r in conn.execute(f"""select quote_ident(table_name) as "table" from information_schema.tables
    where quote_ident(table_schema) not in {EXCLUDED}
      and {SCHEMA_CONSTRAINT}""")]
assert {"grafana_events", "demo_clicks"} <= set(old), old

# Column picker with the picked name as Grafana quotes it.
for picked in ["demo_clicks_10s", "public.demo_clicks_10s"]:
    part = "'" + picked.replace("'", "''") + "'"
    columns = conn.execute(f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({part}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({part}))[1]
          AND quote_ident(table_name) = (parse_ident({part}))[2]
        ELSE quote_ident(table_name) = {part}
          AND {SCHEMA_CONSTRAINT}
      END""").fetchall()
    if picked.startswith("public."):
        assert columns[:4] == [
            ("window_start", "timestamp with time zone"),
            ("window_end", "timestamp with time zone"),
            ("action", "text"),
            ("events", "bigint"),
        ], columns

# Schema picker and per-schema tables (main).
schemas = [r[0] for r in conn.execute("""SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast')
    ORDER BY schema_name""")]
assert schemas == ["public", "sluice_catalog"], schemas
per_schema = [r[0] for r in conn.execute("""SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1""")]
assert per_schema == sorted(per_schema) and "demo_clicks_10s" in per_schema

# The schema API over the extended protocol with bind parameters, binary results (pgx's way).
with conn.cursor(binary=True) as cur:
    cur.execute("""SELECT table_name FROM information_schema.tables
		 WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name""".replace("$1", "%s"), ["public"], prepare=True)
    listed = [r[0] for r in cur.fetchall()]
    assert {"grafana_events", "demo_clicks", "demo_clicks_10s"} <= set(listed), listed
    cur.execute("""SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = %s AND table_name = %s
		 ORDER BY ordinal_position""", ["public", "grafana_events"], prepare=True)
    assert cur.fetchall() == [
        ("id", "bigint", "int8", 64, 0),
        ("ts", "timestamp with time zone", "timestamptz", None, None),
        ("value", "double precision", "float8", 53, None),
    ]

# A time-series panel: $__timeGroupAlias(ts,'1m'), $__timeFilter(ts), as macros.go expands them.
lo, hi = start + datetime.timedelta(minutes=30), start + datetime.timedelta(hours=3)
rows = conn.execute(f"""SELECT floor(extract(epoch from ts)/60)*60 AS "time", count(*) AS events, avg(value) AS value
FROM grafana_events
WHERE ts BETWEEN '{lo:%Y-%m-%dT%H:%M:%SZ}' AND '{hi:%Y-%m-%dT%H:%M:%SZ}'
GROUP BY 1
ORDER BY 1""").fetchall()
inside = [(ts, v) for _, ts, v in events if lo <= ts <= hi]
counts = Counter(int(ts.timestamp()) // 60 * 60 for ts, _ in inside)
assert [(int(t), n) for t, n, _ in rows] == sorted(counts.items()), rows[:3]
sums = Counter()
for ts, v in inside:
    sums[int(ts.timestamp()) // 60 * 60] += v
for t, n, avg in rows:
    assert abs(avg - sums[int(t)] / n) < 1e-9
# $__unixEpochFilter on an epoch column, and $__timeFrom()/$__timeTo() as literals.
n = conn.execute(f"""SELECT count(*) FROM grafana_events
WHERE extract(epoch from ts) >= {int(lo.timestamp())} AND extract(epoch from ts) <= {int(hi.timestamp())}
  AND ts >= '{lo:%Y-%m-%dT%H:%M:%SZ}' AND ts <= '{hi:%Y-%m-%dT%H:%M:%SZ}'""").fetchone()[0]
assert n == len(inside), (n, len(inside))
print("grafana ok")
