#!/usr/bin/env bash
# Dashboard reads of a live view while it ingests: pgbench (16 clients, extended and simple
# protocol) runs a Grafana-style query over a TUMBLE 10 s view holding a day of windows, fed by a
# datagen source at RATE rows/s (default 100 000), and reports tps, p50/p99 latency and the
# ingestion rate with and without the readers, next to `SELECT 1` as the protocol's own cost.
# Event time starts five days back and runs at 1000x real time (10 ms per row), so the view holds
# a day of windows (34 560 rows) after about 90 s, most in committed files, the newest in memory,
# and its windows keep closing while the bench runs.
# Needs the release binary (`cargo build --release`) and PostgreSQL 15's pgbench
# (scripts/setup-test-env installs postgresql-15). Listens on 127.0.0.1:5497.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-100000}
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
dir=$(mktemp -d)
target/release/sluicedb serve --storage "$dir/data" --pg-listen 127.0.0.1:5497 \
  --http-listen 127.0.0.1:5496 >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server; rm -rf "$dir"' EXIT
sql() { psql -h 127.0.0.1 -p 5497 -U postgres -d sluice -tAc "$1"; }
for _ in $(seq 1 60); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
start=$(date -u -d "-5 days" +%Y-%m-%dT%H:%M:%SZ)
sql "CREATE SOURCE clicks (ts TIMESTAMPTZ, user_id BIGINT, action VARCHAR, amount DOUBLE PRECISION,
       WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
     WITH (connector = 'datagen', rows.per.second = '$RATE', fields.ts.kind = 'event_time',
       fields.ts.step = '10ms', fields.ts.start = '$start', fields.action.values = 'view,click,buy,share',
       fields.user_id.kind = 'random', fields.user_id.min = '1', fields.user_id.max = '100000')" >/dev/null
sql "CREATE MATERIALIZED VIEW clicks_10s AS SELECT window_start, action, count(*) AS events,
       sum(amount) AS revenue FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND)
     GROUP BY window_start, action" >/dev/null
echo "SELECT window_start AS time, action, events, revenue FROM clicks_10s ORDER BY 1 DESC LIMIT 360;" >"$dir/query.sql"
echo "SELECT 1;" >"$dir/one.sql"
rows_in() { sql "SELECT sum(rows_in) FROM sluice_catalog.sources WHERE source = 'clicks'"; }
view_rows() { sql "SELECT count(*) FROM clicks_10s"; }
until [ "$(view_rows)" -ge 34560 ]; do sleep 2; done
echo "view rows at the start: $(view_rows)"
a=$(rows_in); sleep 30; b=$(rows_in)
echo "ingestion alone: $(( (b - a) / 30 )) rows/s"
mkdir "$dir/logs"
for mode in extended simple; do
  a=$(rows_in)
  (cd "$dir/logs" && "$PGBENCH" -n -h 127.0.0.1 -p 5497 -U postgres -c 16 -j 2 -T 30 -M $mode \
    -f "$dir/query.sql" --log --log-prefix=$mode sluice) >"$dir/$mode.txt" 2>&1
  b=$(rows_in)
  tps=$(grep -oP 'tps = \K[0-9.]+' "$dir/$mode.txt")
  cat "$dir"/logs/$mode.* | awk '{print $3}' | sort -n | awk -v m=$mode -v t="$tps" \
    '{a[NR]=$1} END {printf "view query, 16 clients, %s: %.0f tps, p50 %.1f ms, p99 %.1f ms\n", m, t, a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}'
  echo "ingestion during it: $(( (b - a) / 30 )) rows/s"
done
"$PGBENCH" -n -h 127.0.0.1 -p 5497 -U postgres -c 1 -T 20 -M extended -f "$dir/query.sql" sluice 2>&1 \
  | grep -oP 'latency average = \K.*' | sed 's/^/view query, 1 client: /'
"$PGBENCH" -n -h 127.0.0.1 -p 5497 -U postgres -c 16 -j 2 -T 20 -M extended -f "$dir/one.sql" sluice 2>&1 \
  | grep -oP 'tps = \K[0-9.]+' | sed 's/^/SELECT 1, 16 clients: /; s/$/ tps/'
echo "view rows at the end: $(view_rows)"
