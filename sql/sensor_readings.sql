-- IoT readings fed over the wire: a table with event time and a watermark, a few rows, a query.
-- Run it with: psql -h 127.0.0.1 -p 5480 -U sluice -d sluice -f sql/sensor_readings.sql
CREATE TABLE IF NOT EXISTS readings (
  sensor_id INT NOT NULL,
  value DOUBLE PRECISION,
  unit VARCHAR,
  ts TIMESTAMPTZ,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) APPEND ONLY;

INSERT INTO readings VALUES
  (1, 21.5, 'celsius', '2024-06-01 12:00:00+00'),
  (1, 21.7, 'celsius', '2024-06-01 12:00:05+00'),
  (2, 19.0, 'celsius', '2024-06-01 12:00:01+00'),
  (2, 18.6, 'celsius', '2024-06-01 12:00:07+00');

FLUSH;

SELECT sensor_id, count(*) AS readings, avg(value) AS avg_value, max(ts) AS last_seen
FROM readings
GROUP BY sensor_id
ORDER BY sensor_id;
