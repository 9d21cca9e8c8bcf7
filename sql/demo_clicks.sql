-- The demo pipeline `sluicedb serve --demo` starts: a stream of click events (clicks, views,
-- purchases) from the built-in generator, about 200 a second, kept so psql can query it.
CREATE SOURCE IF NOT EXISTS demo_clicks (
  event_id BIGINT,
  user_id BIGINT,
  page VARCHAR,
  action VARCHAR,
  amount DOUBLE PRECISION,
  ts TIMESTAMPTZ,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'datagen',
  rows.per.second = '200',
  fields.event_id.kind = 'sequence',
  fields.user_id.min = '1', fields.user_id.max = '5000',
  fields.page.values = '/home,/search,/product/1,/product/2,/product/3,/cart,/checkout',
  fields.action.values = 'view,view,view,click,click,purchase',
  fields.amount.min = '5', fields.amount.max = '250',
  fields.ts.max_out_of_orderness = '3s',
  retain = 'true'
);

-- Clicks, views and purchases per action in 10-second windows, fresh every second: open
-- windows show partial counts, closed ones (5 s after their end) are final and in Parquet.
CREATE MATERIALIZED VIEW IF NOT EXISTS demo_clicks_10s AS
SELECT window_start, window_end, action,
       count(*) AS events, sum(amount) AS revenue, count(DISTINCT user_id) AS users
FROM TUMBLE(demo_clicks, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end, action;

-- Try, from psql -h 127.0.0.1 -p 5480:
SELECT * FROM demo_clicks_10s ORDER BY window_start DESC, action LIMIT 9;

SELECT action, count(*) AS events, count(DISTINCT user_id) AS users
FROM demo_clicks
GROUP BY action
ORDER BY events DESC;

SELECT count(*) AS events_so_far FROM demo_clicks;
