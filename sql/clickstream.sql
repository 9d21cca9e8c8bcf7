-- Clickstream events loaded with COPY, then the questions an analytics dashboard asks.
-- Load rows with psql's \copy, for example:  \copy clicks FROM 'clicks.csv' CSV HEADER
CREATE TABLE IF NOT EXISTS clicks (
  event_id BIGINT NOT NULL,
  user_id BIGINT,
  page VARCHAR,
  action VARCHAR,
  amount DOUBLE PRECISION,
  ts TIMESTAMPTZ,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) APPEND ONLY;

INSERT INTO clicks VALUES
  (1, 10, '/home', 'view', NULL, '2024-06-01 12:00:00+00'),
  (2, 10, '/product/7', 'click', NULL, '2024-06-01 12:00:03+00'),
  (3, 11, '/product/7', 'purchase', 49.90, '2024-06-01 12:00:04+00'),
  (4, 12, '/home', 'view', NULL, '2024-06-01 12:00:09+00');

SELECT date_bin(INTERVAL '10 seconds', ts) AS window_start, action,
       count(*) AS events, sum(amount) AS revenue, count(DISTINCT user_id) AS users
FROM clicks
GROUP BY 1, 2
ORDER BY 1, 2;
