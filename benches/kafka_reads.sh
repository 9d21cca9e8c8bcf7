#!/usr/bin/env bash
# Kafka reads: a SluiceDB source (and a view counting its rows) over a 4-partition topic of
# EVENTS JSON click events (default 2 000 000), against a plain librdkafka consumer
# (confluent-kafka, every message's value touched) fetching the same topic from the same broker
# in the same run. Each is timed from its start (connect, assign, fetch) to the last event read;
# RUNS times each (default 3), alternating, and the medians compared. The backlog is the largest
# burst a source meets, so each run also gives the peak resident memory of the server and its
# reader process while reading it (bounded buffers: it should not grow with EVENTS).
# Needs the release binary (`cargo build --release`), the test broker and S3 server
# (scripts/kafka-server, scripts/s3-server: started here and stopped at the end) and
# `.venv/bin/pip install -r benches/requirements.txt`. Listens on 127.0.0.1:5495.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000000}
RUNS=${RUNS:-3}
dir=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  scripts/kafka-server stop
  scripts/s3-server stop >/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
eval "$(scripts/s3-server start)"
eval "$(scripts/kafka-server start)"
topic=clicks_$(date +%s)

# Produces the events, then prints the plain consumer's time for reading them all.
.venv/bin/python - "$SLUICEDB_TEST_KAFKA" "$topic" "$EVENTS" <<'PY'
import json, random, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
broker, topic, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": broker})
admin.create_topics([NewTopic(topic, 4, 1)])[topic].result()
producer = Producer({"bootstrap.servers": broker, "linger.ms": 50, "batch.num.messages": 10000,
                     "queue.buffering.max.messages": 1000000})
rng = random.Random(7)
actions = ["view", "view", "click", "purchase"]
base = 1_767_225_600_000
for i in range(events):
    value = (f'{{"event_id":{i},"user_id":{rng.randrange(100000)},"page":"/page/{rng.randrange(1000)}",'
             f'"action":"{actions[rng.randrange(4)]}","amount":{rng.randrange(500)}.{rng.randrange(100):02},'
             f'"ts":{base + i}}}')
    while True:
        try:
            producer.produce(topic, value.encode(), partition=i % 4)
            break
        except BufferError:
            producer.poll(0.1)
producer.flush()
PY
echo "$EVENTS events in $topic (4 partitions)"

plain() {
  .venv/bin/python - "$SLUICEDB_TEST_KAFKA" "$topic" "$EVENTS" <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
broker, topic, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
consumer = Consumer({"bootstrap.servers": broker, "group.id": "plain", "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(4)])
read = size = 0
while read < events:
    for message in consumer.consume(num_messages=10000, timeout=1.0):
        if message.error() is None:
            size += len(message.value())
            read += 1
elapsed = time.perf_counter() - started
consumer.close()
print(f"{elapsed:.3f}")
PY
}

target/release/sluicedb serve --storage "$dir/data" --pg-listen 127.0.0.1:5495 \
  --http-listen 127.0.0.1:5494 >"$dir/server.log" 2>&1 &
server=$!
sql() { psql -h 127.0.0.1 -p 5495 -U postgres -d sluice -tAc "$1"; }
for _ in $(seq 1 60); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done

# Resident memory of the server and its reader processes, in KiB.
rss() { ps -o rss= --pid "$server" --ppid "$server" | awk '{s += $1} END {print s}'; }

# A source and a view counting its rows; the time until the view has counted every event. The
# memory before and at its peak goes to $dir/rss_<run>.
sluice() {
  local run=$1
  local started before peak=0 now
  before=$(rss)
  started=$(date +%s.%N)
  sql "CREATE SOURCE clicks_$run (event_id BIGINT, user_id BIGINT, page VARCHAR, action VARCHAR,
         amount DOUBLE PRECISION, ts TIMESTAMPTZ)
       WITH (connector = 'kafka', topic = '$topic',
         properties.bootstrap.server = '$SLUICEDB_TEST_KAFKA', scan.startup.mode = 'earliest')
       FORMAT PLAIN ENCODE JSON;
       CREATE MATERIALIZED VIEW counted_$run AS SELECT action, count(*) AS events
         FROM clicks_$run GROUP BY action" >/dev/null
  while [ "$(sql "SELECT coalesce(sum(events), 0) FROM counted_$run")" -lt "$EVENTS" ]; do
    now=$(rss)
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.05
  done
  echo "$(date +%s.%N) - $started" | bc
  echo "$((before / 1024)) $((peak / 1024))" >"$dir/rss_$run"
  sql "DROP MATERIALIZED VIEW counted_$run; DROP SOURCE clicks_$run" >/dev/null
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$dir/plain"; : >"$dir/sluice"
for run in $(seq 1 "$RUNS"); do
  p=$(plain); s=$(sluice "$run")
  read -r before peak <"$dir/rss_$run"
  echo "run $run: plain consumer $p s, SluiceDB view $s s; server + reader RSS $before MiB before, peak $peak MiB"
  echo "$p" >>"$dir/plain"; echo "$s" >>"$dir/sluice"
done
p=$(median <"$dir/plain"); s=$(median <"$dir/sluice")
awk -v n="$EVENTS" -v p="$p" -v s="$s" 'BEGIN {
  printf "plain librdkafka consumer (confluent-kafka): %.0f k events/s (median of runs)\n", n / p / 1e3
  printf "SluiceDB source + view: %.0f k events/s (median of runs)\n", n / s / 1e3
  printf "Kafka reads SluiceDB / plain consumer: %.2fx (target 0.95x)\n", p / s
}'
