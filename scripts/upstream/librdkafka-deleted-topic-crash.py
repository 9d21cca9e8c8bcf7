#!/usr/bin/env python3
"""Reproducer for an upstream report: librdkafka dies with SIGSEGV when a consumed topic is
deleted on a tansu 0.6 broker. Not filed yet (this project's machines reach only the package
registries); file it with this script and its output at github.com/confluentinc/librdkafka,
and the Fetch answer part at github.com/tansu-io/tansu.

What happens: after DeleteTopics, tansu 0.6.0 answers the consumer's Fetch (v16, topic ids)
with an all-zero topic id, error UNKNOWN_TOPIC_ID and a CurrentLeader tagged field. librdkafka
(2.12.1 as built by rdkafka-sys, and 2.16.0 as shipped by confluent-kafka) takes the
CurrentLeader into a metadata update op for a topic it cannot name, and compares the NULL name
in rd_kafka_metadata_update_op / rd_kafka_metadata_cache_find (strcmp on NULL): SIGSEGV in
librdkafka's main thread, taking the whole process. A client must not crash on a broker's
malformed or unexpected answer; tansu should answer a deleted topic as Kafka does
(UNKNOWN_TOPIC_ID without a leader for an unknown id).

SluiceDB contains the crash by running each Kafka source's client in its own process
(src/source/kafka_process.rs); tests/integration/kafka.rs has the test that deletes a topic.

Usage, with a tansu 0.6.0 broker listening on 127.0.0.1:9092 (scripts/kafka-server start) and
confluent-kafka installed:
    python3 scripts/upstream/librdkafka-deleted-topic-crash.py [bootstrap]
Prints the exit status of a child consumer: -11 (SIGSEGV) reproduces the bug.
"""
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"


def consume(topic):
    """Runs in the child: reads `topic` until killed, reporting each record count."""
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "repro",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.time() + 30
    while time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen += 1
            print(f"read {seen}", flush=True)
    print("no crash within 30 s", flush=True)


def main():
    if len(sys.argv) > 2 and sys.argv[2] == "--consume":
        consume(sys.argv[3])
        return
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    topic = f"repro-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    for i in range(10):
        producer.produce(topic, value=f'{{"id": {i}}}')
    producer.flush(10)
    child = subprocess.Popen([sys.executable, __file__, BOOTSTRAP, "--consume", topic],
                             stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.strip() == "read 10":
            break
    admin.delete_topics([topic])[topic].result(10)
    status = child.wait(60)
    print(f"consumer exit status after DeleteTopics: {status}"
          f"{' (SIGSEGV: reproduced)' if status == -11 else ''}")


if __name__ == "__main__":
    main()
