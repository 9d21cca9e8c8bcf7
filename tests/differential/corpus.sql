-- A corpus of read-only statements that SluiceDB must answer as PostgreSQL 15 does: column
-- names, type OIDs and bytes, over the simple and the extended protocol, text and binary
-- (tests/clients/differential.py, run by tests/integration/differential.rs). Differences
-- accepted on purpose are in accepted.txt beside this file, each with its reason.
-- Statements end with ';' at the end of a line; each '--' line starts a section.

-- setup
CREATE TABLE diff_t (id INT NOT NULL, name TEXT, score DOUBLE PRECISION, amount NUMERIC(10,2),
  ok BOOLEAN, day DATE, at TIMESTAMPTZ, big BIGINT, small SMALLINT, note VARCHAR);
INSERT INTO diff_t VALUES
  (1, 'alpha', 1.5, 10.25, true, '2024-01-01', '2024-01-01 10:00:00+00', 10000000000, 1, 'a b'),
  (2, 'beta', NULL, 20.50, false, '2024-01-02', '2024-01-02 11:30:00+00', -5, 2, ''),
  (3, NULL, -2.25, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 'gamma', 100, 0.01, true, '2024-02-29', '2024-02-29 23:59:59.5+00', 0, -3, 'x,y'),
  (5, 'beta', 3.0, 5.00, false, '2023-12-31', '2023-12-31 00:00:00+00', 7, 4, 'q"uote');
CREATE TABLE diff_k (id INT PRIMARY KEY, name TEXT, qty INT);
INSERT INTO diff_k VALUES (1, 'one', 10), (2, 'two', 20), (3, NULL, 30);

-- keyed tables: UPDATE and DELETE by key or condition, their counts and errors
UPDATE diff_k SET qty = qty + 1 WHERE id <= 2;
SELECT * FROM diff_k ORDER BY id;
UPDATE diff_k SET name = upper(name), qty = qty * 2 WHERE name IS NOT NULL;
SELECT id, name, qty FROM diff_k WHERE qty > 20 ORDER BY id;
UPDATE diff_k SET qty = 0 WHERE id = 99;
DELETE FROM diff_k WHERE id = 99;
DELETE FROM diff_k WHERE qty > 1000000000;
SELECT count(*), sum(qty) FROM diff_k;
INSERT INTO diff_k VALUES (NULL, 'x', 1);
UPDATE diff_k SET id = NULL WHERE id = 1;
UPDATE diff_k SET nope = 1;
UPDATE diff_k SET qty = 'many';

-- literals
SELECT 1;
SELECT -1;
SELECT 0;
SELECT 2147483647;
SELECT 2147483648;
SELECT -2147483648;
SELECT 9223372036854775807;
SELECT 1.5;
SELECT -0.5;
SELECT 0.000001;
SELECT 123456789.123456789;
SELECT 1e3;
SELECT 1.5e-3;
SELECT 'text';
SELECT '';
SELECT 'it''s';
SELECT E'a\\tb';
SELECT true;
SELECT false;
SELECT NULL;
SELECT DATE '2024-02-29';
SELECT TIME '12:34:56';
SELECT TIME '12:34:56.789';
SELECT TIMESTAMP '2024-01-01 00:00:31';
SELECT TIMESTAMP '2024-01-01 00:00:31.5';
SELECT TIMESTAMPTZ '2024-01-01 00:00:31+00';
SELECT TIMESTAMPTZ '2024-06-01 12:00:00+02';
SELECT INTERVAL '1 day';
SELECT INTERVAL '90 minutes';
SELECT INTERVAL '1 year 2 months';
SELECT INTERVAL '-1 day';
SELECT INTERVAL '1 day -1 hour';
SELECT INTERVAL '0 seconds';
SELECT INTERVAL '1.5 seconds';
SELECT ARRAY[1, 2, 3];
SELECT ARRAY['a', 'b c'];
SELECT ARRAY[1.5, 2.5];
SELECT ARRAY[true, NULL];
SELECT '\xdeadbeef'::bytea;
SELECT ARRAY[]::int[];
SELECT 1, 'a', true;
SELECT 1 AS one, 2 AS two;
SELECT 'a' AS "Mixed Case";
SELECT NULL::int;
SELECT NULL::text;
SELECT NULL::date;

-- casts
SELECT 1::text;
SELECT '42'::int;
SELECT '42'::bigint;
SELECT '42'::smallint;
SELECT '-7'::int;
SELECT ' 42 '::int;
SELECT 'abc'::int;
SELECT '2147483648'::int;
SELECT 3.7::int;
SELECT -3.7::int;
SELECT 2.5::int;
SELECT 3.5::int;
SELECT '1.5'::float8;
SELECT '1.5'::numeric;
SELECT 1.005::numeric(10,2);
SELECT 12.345::numeric(10,1);
SELECT '12.5'::numeric(4,2);
SELECT 1::float8;
SELECT 1::float4;
SELECT 0.1::float4;
SELECT 0.1::float8;
SELECT 'NaN'::float8;
SELECT 'inf'::float8;
SELECT '-Infinity'::float8;
SELECT 1e300::float8 * 10;
SELECT 'true'::boolean;
SELECT 'yes'::boolean;
SELECT 'f'::boolean;
SELECT 'on'::boolean;
SELECT '0'::boolean;
SELECT 'maybe'::boolean;
SELECT 1::boolean;
SELECT true::int;
SELECT true::text;
SELECT '2024-01-01'::date;
SELECT '2024-13-01'::date;
SELECT '2024-01-01 10:00'::timestamp;
SELECT '2024-01-01 10:00+02'::timestamptz;
SELECT '2024-01-01'::timestamp;
SELECT DATE '2024-01-01'::timestamp;
SELECT TIMESTAMP '2024-01-01 10:30:00'::date;
SELECT TIMESTAMP '2024-01-01 10:30:00'::time;
SELECT TIMESTAMPTZ '2024-01-01 10:30:00+00'::timestamp;
SELECT '10:00'::time;
SELECT '1 hour'::interval;
SELECT 'P1D'::interval;
SELECT '1 day 2 hours'::interval::text;
SELECT 12345::text;
SELECT 1.50::text;
SELECT CAST(1 AS double precision);
SELECT CAST('5' AS integer);
SELECT CAST(2.5 AS decimal(5,2));
SELECT CAST(NULL AS text);
SELECT 'abc'::varchar(2);
SELECT 'abc'::char(5);
SELECT 'abc'::text::varchar;
SELECT 123::varchar;
SELECT 'x'::name;
SELECT '  padded  '::text;

-- arithmetic
SELECT 1 + 2;
SELECT 7 - 10;
SELECT 6 * 7;
SELECT 7 / 2;
SELECT -7 / 2;
SELECT 7 % 3;
SELECT -7 % 3;
SELECT 7.0 / 2;
SELECT 1 / 3.0;
SELECT 1.0 / 3.0, 100.0 / 3.0, 2.0 / 7, -2.0 / 3;
SELECT 1 / 30000000.0, 0.05 / 7;
SELECT 12345678901234567890.123 / 7;
SELECT 1.50 / 3, 1.005 * 2, 7.25 % 2;
SELECT 2.5 / 0.0;
SELECT 9223372036854775808, -9223372036854775809, 9223372036854775808 + 1;
SELECT 1e300, 1e-5, 2.5e2;
SELECT 1.5 * x, x / 4.0 FROM (VALUES (2), (3)) AS v(x);
SELECT x / 3 FROM (VALUES (3.00), (6.00)) AS v(x);
SELECT x / 3 FROM (VALUES (1.00), (100.00)) AS v(x);
SELECT ceil(x), floor(x), trunc(x), trunc(x, 1) FROM (VALUES (2.75), (-2.75), (9.99)) AS v(x);
SELECT sum(x), min(x), max(x) FROM (VALUES (1.25), (2.5)) AS v(x);
SELECT 2 ^ 10;
SELECT 2.0 ^ 0.5;
SELECT 1 / 0;
SELECT 1.0 / 0;
SELECT 1 % 0;
SELECT 2147483647 + 1;
SELECT 9223372036854775807 + 1;
SELECT -2147483648 * -1;
SELECT abs(-5);
SELECT abs(-5.5);
SELECT round(2.5);
SELECT round(-2.5);
SELECT round(2.345, 2);
SELECT round(2.5::float8);
SELECT trunc(2.7);
SELECT trunc(-2.7);
SELECT trunc(2.789, 1);
SELECT ceil(2.1);
SELECT floor(-2.1);
SELECT ceil(2.1::float8);
SELECT sign(-3);
SELECT sign(0.0);
SELECT sqrt(16);
SELECT sqrt(2);
SELECT sqrt(-1);
SELECT cbrt(27);
SELECT power(2, 3);
SELECT exp(1);
SELECT ln(10);
SELECT log(100);
SELECT log(2, 8);
SELECT mod(10, 3);
SELECT mod(-10, 3);
SELECT pi();
SELECT degrees(pi());
SELECT radians(180);
SELECT sin(0);
SELECT cos(0);
SELECT greatest(1, 5, 3);
SELECT least(1, 5, 3);
SELECT greatest(1, NULL, 3);
SELECT 10 / 4 * 4;
SELECT 10.0 / 4 * 4;
SELECT 1 + 1.5;
SELECT 1 + 1.5::float8;
SELECT 0.1 + 0.2;
SELECT 0.1::float8 + 0.2::float8;
SELECT 3 * 1.1;
SELECT -(-5);
SELECT +5;
SELECT 5 & 3;
SELECT 5 | 3;
SELECT 5 # 3;
SELECT ~5;
SELECT 1 << 4;
SELECT 256 >> 2;
SELECT gcd(12, 18);
SELECT lcm(4, 6);
SELECT factorial(5);
SELECT div(7, 2);
SELECT width_bucket(5.35, 0.024, 10.06, 5);
SELECT scale(1.500);

-- null handling
SELECT NULL = NULL;
SELECT NULL IS NULL;
SELECT 1 IS NOT NULL;
SELECT NULL + 1;
SELECT 'a' || NULL;
SELECT coalesce(NULL, 2, 3);
SELECT coalesce(NULL, NULL);
SELECT nullif(1, 1);
SELECT nullif(1, 2);
SELECT NULL IS DISTINCT FROM NULL;
SELECT 1 IS DISTINCT FROM NULL;
SELECT 1 IS NOT DISTINCT FROM 1;
SELECT NULL AND false;
SELECT NULL OR true;
SELECT NOT NULL::boolean;
SELECT NULL::int IN (1, 2);
SELECT 1 IN (1, NULL);
SELECT 2 IN (1, NULL);
SELECT concat('a', NULL, 'b');
SELECT CASE WHEN NULL THEN 1 ELSE 2 END;
SELECT CASE NULL WHEN NULL THEN 1 ELSE 2 END;
SELECT length(NULL);
SELECT upper(NULL);
SELECT true IS TRUE;
SELECT NULL::boolean IS UNKNOWN;
SELECT count(*), count(name), count(score) FROM diff_t;
SELECT sum(score), avg(score) FROM diff_t WHERE score IS NULL;
SELECT id FROM diff_t WHERE name IS NULL ORDER BY id;
SELECT id, coalesce(name, '?') FROM diff_t ORDER BY id;

-- strings
SELECT length('hello');
SELECT length('héllo');
SELECT char_length('abc');
SELECT character_length('abc');
SELECT octet_length('héllo');
SELECT bit_length('abc');
SELECT upper('abc');
SELECT lower('ABC');
SELECT initcap('hello world');
SELECT substring('hello' from 2 for 3);
SELECT substring('hello', 2);
SELECT substr('hello', 2, 2);
SELECT position('l' in 'hello');
SELECT strpos('hello', 'lo');
SELECT replace('hello', 'l', 'L');
SELECT trim('  x  ');
SELECT trim(both 'x' from 'xxaxx');
SELECT ltrim('  x');
SELECT rtrim('x  ');
SELECT btrim('xyx', 'x');
SELECT lpad('5', 3, '0');
SELECT rpad('5', 3, '*');
SELECT lpad('hello', 2);
SELECT concat('a', 1, true);
SELECT concat_ws('-', 'a', 'b', NULL, 'c');
SELECT 'a' || 'b' || 'c';
SELECT 'a' || 1;
SELECT 1 || 'a';
SELECT left('hello', 2);
SELECT right('hello', 2);
SELECT left('hello', -1);
SELECT repeat('ab', 3);
SELECT reverse('abc');
SELECT split_part('a,b,c', ',', 2);
SELECT split_part('a,b,c', ',', 5);
SELECT md5('abc');
SELECT ascii('A');
SELECT chr(65);
SELECT starts_with('hello', 'he');
SELECT translate('hello', 'el', 'ip');
SELECT to_hex(255);
SELECT to_hex(-1);
SELECT regexp_replace('abc123', '[0-9]+', 'X');
SELECT regexp_replace('aaa', 'a', 'b', 'g');
SELECT 'abc' LIKE 'a%';
SELECT 'abc' LIKE 'A%';
SELECT 'abc' ILIKE 'A%';
SELECT 'a_c' LIKE 'a\_c';
SELECT 'abc' NOT LIKE '%d';
SELECT 'abc' ~ 'b';
SELECT 'abc' ~* 'B';
SELECT 'abc' !~ 'z';
SELECT quote_ident('abc');
SELECT quote_ident('Abc');
SELECT quote_ident('a b');
SELECT quote_literal('it''s');
SELECT quote_nullable(NULL);
SELECT format('%s-%s', 'a', 1);
SELECT format('%I', 'Tab');
SELECT format('%L', 'x');
SELECT 'abc' < 'abd';
SELECT 'B' < 'a';
SELECT 'abc' = 'abc ';
SELECT lower('ÀÉ');
SELECT upper('straße');
SELECT encode('abc'::bytea, 'hex');
SELECT decode('616263', 'hex');
SELECT encode('abc'::bytea, 'base64');
SELECT string_to_array('a,b,c', ',');
SELECT array_to_string(ARRAY[1, 2, 3], '-');
SELECT sha256('abc'::bytea);
SELECT overlay('hello' placing 'XX' from 2 for 3);
SELECT uuid_nil() IS NULL;
SELECT name, upper(name), length(name) FROM diff_t ORDER BY id;
SELECT id, note FROM diff_t WHERE note LIKE '%,%' ORDER BY id;
SELECT string_agg(name, ',' ORDER BY id) FROM diff_t;
SELECT note FROM diff_t ORDER BY id;

-- dates and times
SELECT date_trunc('hour', TIMESTAMP '2024-01-01 10:45:30');
SELECT date_trunc('day', TIMESTAMPTZ '2024-01-01 10:45:30+00');
SELECT date_trunc('month', DATE '2024-02-29');
SELECT date_trunc('week', TIMESTAMP '2024-01-03 10:00:00');
SELECT date_trunc('year', TIMESTAMP '2024-05-05 00:00:00');
SELECT date_trunc('quarter', TIMESTAMP '2024-05-05 00:00:00');
SELECT extract(year FROM TIMESTAMP '2024-01-02 03:04:05');
SELECT extract(month FROM DATE '2024-02-29');
SELECT extract(day FROM DATE '2024-02-29');
SELECT extract(hour FROM TIMESTAMP '2024-01-02 03:04:05');
SELECT extract(minute FROM TIMESTAMP '2024-01-02 03:04:05');
SELECT extract(second FROM TIMESTAMP '2024-01-02 03:04:05.5');
SELECT extract(epoch FROM TIMESTAMPTZ '2024-01-01 00:00:00+00');
SELECT extract(dow FROM DATE '2024-01-07');
SELECT extract(doy FROM DATE '2024-12-31');
SELECT extract(week FROM DATE '2024-01-01');
SELECT extract(quarter FROM DATE '2024-05-01');
SELECT date_part('year', TIMESTAMP '2024-01-02 03:04:05');
SELECT date_part('epoch', TIMESTAMP '2024-01-01 00:00:01');
SELECT DATE '2024-01-31' + 1;
SELECT DATE '2024-03-01' - 1;
SELECT DATE '2024-03-01' - DATE '2024-02-01';
SELECT DATE '2024-01-01' + INTERVAL '1 month';
SELECT TIMESTAMP '2024-01-31 00:00:00' + INTERVAL '1 month';
SELECT TIMESTAMP '2024-01-01 00:00:00' + INTERVAL '90 minutes';
SELECT TIMESTAMP '2024-01-02' - TIMESTAMP '2024-01-01';
SELECT TIMESTAMP '2024-01-02 03:00' - TIMESTAMP '2024-01-01 01:30';
SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' - INTERVAL '1 hour';
SELECT INTERVAL '1 hour' + INTERVAL '30 minutes';
SELECT INTERVAL '1 hour' * 3;
SELECT INTERVAL '1 day' / 2;
SELECT INTERVAL '2 hours' - INTERVAL '3 hours';
SELECT -INTERVAL '1 day';
SELECT INTERVAL '25 hours';
SELECT INTERVAL '1 day' = INTERVAL '24 hours';
SELECT TIMESTAMP '2024-01-01' < TIMESTAMP '2024-01-02';
SELECT DATE '2024-01-01' = TIMESTAMP '2024-01-01 00:00:00';
SELECT make_date(2024, 2, 29);
SELECT make_date(2023, 2, 29);
SELECT to_timestamp(0);
SELECT to_timestamp(1700000000.5);
SELECT date_bin(INTERVAL '15 minutes', TIMESTAMP '2024-01-01 10:37:00', TIMESTAMP '2024-01-01 00:00:00');
SELECT now() IS NOT NULL;
SELECT current_date IS NOT NULL;
SELECT now() - now();
SELECT TIMESTAMPTZ '2024-07-01 12:00:00+02';
SELECT TIMESTAMP '2024-01-01 00:00:00' AT TIME ZONE 'UTC';
SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' AT TIME ZONE 'UTC';
SELECT '2024-01-01'::date IN ('2024-01-01'::date);
SELECT TIME '10:00' + INTERVAL '90 minutes';
SELECT age(TIMESTAMP '2024-03-01', TIMESTAMP '2024-01-01');
SELECT to_char(TIMESTAMP '2024-01-02 03:04:05', 'YYYY-MM-DD HH24:MI:SS');
SELECT to_char(DATE '2024-01-02', 'YYYY/MM/DD');
SELECT to_date('2024-01-02', 'YYYY-MM-DD');
SELECT to_timestamp('2024-01-02 03:04:05', 'YYYY-MM-DD HH24:MI:SS');
SELECT isfinite(DATE '2024-01-01');
SELECT justify_hours(INTERVAL '27 hours');
SELECT justify_days(INTERVAL '35 days');
SELECT DATE '0001-01-01' - 1;
SELECT TIMESTAMP '1999-12-31 23:59:59.999999';
SELECT TIMESTAMP '2024-01-01 00:00:00.000001';
SELECT id, day, at FROM diff_t ORDER BY id;
SELECT id, date_trunc('month', at) FROM diff_t WHERE at IS NOT NULL ORDER BY id;
SELECT id, extract(year FROM day) FROM diff_t ORDER BY id;
SELECT min(at), max(at), min(day), max(day) FROM diff_t;
SELECT id FROM diff_t WHERE at >= '2024-01-02' ORDER BY id;
SELECT id FROM diff_t WHERE day BETWEEN '2024-01-01' AND '2024-01-31' ORDER BY id;
SELECT id, at + INTERVAL '1 day' FROM diff_t ORDER BY id;
SELECT id, day - 1 FROM diff_t ORDER BY id;

-- json
SELECT '{"a": 1}'::json;
SELECT '{"a": 1}'::jsonb;
SELECT '{"a": 1}'::json ->> 'a';
SELECT '{"a": {"b": 2}}'::json -> 'a';
SELECT '[1, 2, 3]'::json ->> 1;
SELECT json_build_object('a', 1, 'b', 'x');
SELECT to_json('text'::text);
SELECT json_typeof('[1]'::json);
SELECT jsonb_array_length('[1, 2]'::jsonb);
SELECT '{"a": 1}'::jsonb ? 'a';
SELECT row_to_json(ROW(1, 'a'));
SELECT json_agg(x) FROM (VALUES (1), (2)) AS v(x);

-- arrays
SELECT array_length(ARRAY[1, 2, 3], 1);
SELECT cardinality(ARRAY[1, 2]);
SELECT array_append(ARRAY[1, 2], 3);
SELECT array_prepend(0, ARRAY[1, 2]);
SELECT array_cat(ARRAY[1], ARRAY[2, 3]);
SELECT ARRAY[1, 2] || ARRAY[3];
SELECT ARRAY[1, 2] || 3;
SELECT (ARRAY[10, 20, 30])[2];
SELECT (ARRAY[10, 20, 30])[5];
SELECT (ARRAY[10, 20, 30])[2:3];
SELECT array_position(ARRAY['a', 'b'], 'b');
SELECT array_remove(ARRAY[1, 2, 1], 1);
SELECT array_replace(ARRAY[1, 2, 1], 1, 9);
SELECT array_lower(ARRAY[1, 2], 1);
SELECT array_upper(ARRAY[1, 2], 1);
SELECT array_ndims(ARRAY[1, 2]);
SELECT array_dims(ARRAY[1, 2]);
SELECT 2 = ANY(ARRAY[1, 2, 3]);
SELECT 4 = ANY(ARRAY[1, 2, 3]);
SELECT 2 <> ALL(ARRAY[1, 3]);
SELECT ARRAY[1, 2] = ARRAY[1, 2];
SELECT ARRAY[1, 2] < ARRAY[1, 3];
SELECT ARRAY[1, 2] @> ARRAY[2];
SELECT ARRAY[1] && ARRAY[1, 2];
SELECT ARRAY[[1, 2], [3, 4]];
SELECT array_to_string(ARRAY['a', NULL, 'c'], ',', '*');
SELECT ARRAY['x', NULL]::text[];
SELECT ARRAY[NULL]::int[];
SELECT ARRAY[1.5::float8, 2];
SELECT ARRAY[DATE '2024-01-01'];
SELECT ARRAY[TIMESTAMP '2024-01-01 10:00:00'];
SELECT unnest(ARRAY[1, 2, 3]);
SELECT x FROM unnest(ARRAY['a', 'b']) AS x ORDER BY x;
SELECT array_agg(id ORDER BY id) FROM diff_t;
SELECT array_agg(name ORDER BY id) FROM diff_t;
SELECT id FROM diff_t WHERE id = ANY(ARRAY[2, 4]) ORDER BY id;
SELECT generate_series(1, 3);
SELECT * FROM generate_series(1, 10, 3);
SELECT g FROM generate_series(1, 3) g;
SELECT count(*) FROM generate_series(1, 1000);
SELECT '{1,2,NULL}'::int[];
SELECT CAST('{a,"b c",NULL}' AS text[]);
SELECT '{}'::text[];
SELECT '{"x\"y", z ,"NULL"}'::text[];
SELECT '{1.5, 2}'::float8[];
SELECT ARRAY[1, 2] = '{1,2}';
SELECT '{1,x}'::int[];
SELECT '{1'::int[];
SELECT ARRAY(SELECT id FROM diff_t WHERE id > 10);
SELECT ARRAY(SELECT id FROM diff_t WHERE id > 2 ORDER BY id DESC);
SELECT d.id, ARRAY(SELECT e.id FROM diff_t e WHERE e.name = d.name ORDER BY 1) FROM diff_t d ORDER BY 1;
SELECT ARRAY(SELECT max(id) FROM diff_t);
SELECT 2.5::float8::int, 3.5::float8::int, (-2.5)::float8::int, 2.6::float8::int, (-0.5)::float8::int, 1.5::float4::int;
SELECT CAST(2.5 AS numeric)::int, CAST(-2.5 AS numeric)::int;
SELECT ARRAY(SELECT id * 2 AS y FROM diff_t ORDER BY y DESC);
SELECT ARRAY(SELECT DISTINCT name FROM diff_t WHERE id > 10);
SELECT '{a\ , \NULL,\ , "" }'::text[];
SELECT '{"up date"'::text[];
SELECT '{1} x'::int[];

-- aggregates
SELECT count(*) FROM diff_t;
SELECT count(id) FROM diff_t;
SELECT count(DISTINCT name) FROM diff_t;
SELECT sum(id) FROM diff_t;
SELECT sum(big) FROM diff_t;
SELECT sum(small) FROM diff_t;
SELECT sum(score) FROM diff_t;
SELECT sum(amount) FROM diff_t;
SELECT avg(id) FROM diff_t;
SELECT avg(score) FROM diff_t;
SELECT avg(amount) FROM diff_t;
SELECT min(id) FROM diff_t;
SELECT max(id) FROM diff_t;
SELECT min(name) FROM diff_t;
SELECT max(name) FROM diff_t;
SELECT min(amount) FROM diff_t;
SELECT max(score) FROM diff_t;
SELECT bool_and(ok) FROM diff_t;
SELECT bool_or(ok) FROM diff_t;
SELECT every(ok) FROM diff_t;
SELECT string_agg(name, '|' ORDER BY name) FROM diff_t;
SELECT stddev(score) FROM diff_t;
SELECT stddev_pop(score) FROM diff_t;
SELECT variance(id) FROM diff_t;
SELECT var_pop(id) FROM diff_t;
SELECT count(*) FILTER (WHERE ok) FROM diff_t;
SELECT sum(id) FILTER (WHERE id > 2) FROM diff_t;
SELECT count(DISTINCT ok) FROM diff_t;
SELECT max(day) FROM diff_t;
SELECT sum(id)::float8 / count(*) FROM diff_t;
SELECT bit_and(id) FROM diff_t;
SELECT bit_or(id) FROM diff_t;
SELECT corr(id, score) FROM diff_t;
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY id) FROM diff_t;
SELECT mode() WITHIN GROUP (ORDER BY name) FROM diff_t;
SELECT min(at) FROM diff_t;
SELECT count(1) FROM diff_t;
SELECT sum(1) FROM diff_t;
SELECT avg(1) FROM diff_t;
SELECT sum(NULL::int) FROM diff_t;
SELECT count(*) FROM diff_t WHERE false;
SELECT sum(id) FROM diff_t WHERE false;
SELECT max(name) FROM diff_t WHERE false;
SELECT sum(x) FROM (VALUES (1), (2), (NULL)) AS v(x);
SELECT avg(x) FROM (VALUES (1), (2)) AS v(x);
SELECT avg(x) FROM (VALUES (1.0), (2.0)) AS v(x);
SELECT sum(x) FROM (VALUES (2147483647), (1)) AS v(x);
SELECT count(*), sum(g), avg(g) FROM generate_series(1, 100) g;

-- group by, order by, limit
SELECT name, count(*) FROM diff_t GROUP BY name ORDER BY name;
SELECT name, count(*) FROM diff_t GROUP BY name ORDER BY name NULLS FIRST;
SELECT ok, count(*), sum(id) FROM diff_t GROUP BY ok ORDER BY ok;
SELECT name, sum(amount) FROM diff_t GROUP BY 1 ORDER BY 1 DESC;
SELECT name, count(*) AS n FROM diff_t GROUP BY name HAVING count(*) > 1;
SELECT id, name FROM diff_t ORDER BY name DESC, id;
SELECT id, name FROM diff_t ORDER BY name DESC NULLS LAST, id;
SELECT id FROM diff_t ORDER BY id LIMIT 2;
SELECT id FROM diff_t ORDER BY id LIMIT 2 OFFSET 2;
SELECT id FROM diff_t ORDER BY id OFFSET 4;
SELECT id FROM diff_t ORDER BY id LIMIT 0;
SELECT id FROM diff_t ORDER BY id FETCH FIRST 1 ROWS ONLY;
SELECT DISTINCT name FROM diff_t ORDER BY name;
SELECT DISTINCT ok FROM diff_t ORDER BY ok;
SELECT id, score FROM diff_t ORDER BY score;
SELECT id, score FROM diff_t ORDER BY score DESC;
SELECT id * 2 AS double FROM diff_t ORDER BY double DESC;
SELECT id % 2 AS parity, count(*) FROM diff_t GROUP BY id % 2 ORDER BY parity;
SELECT date_trunc('month', day) AS m, count(*) FROM diff_t GROUP BY m ORDER BY m;
SELECT name, id, row_number() OVER (PARTITION BY name ORDER BY id) FROM diff_t ORDER BY id;
SELECT id, sum(id) OVER (ORDER BY id) FROM diff_t ORDER BY id;
SELECT id, rank() OVER (ORDER BY ok) FROM diff_t ORDER BY id;
SELECT id, lag(id) OVER (ORDER BY id), lead(id) OVER (ORDER BY id) FROM diff_t ORDER BY id;
SELECT id, first_value(name) OVER (ORDER BY id) FROM diff_t ORDER BY id;
SELECT id, count(*) OVER () FROM diff_t ORDER BY id;
SELECT CASE WHEN id < 3 THEN 'low' ELSE 'high' END AS bucket, count(*) FROM diff_t GROUP BY 1 ORDER BY 1;
SELECT name FROM diff_t GROUP BY name ORDER BY count(*) DESC, name;
SELECT * FROM diff_t ORDER BY id;
SELECT * FROM diff_t WHERE id = 4;
SELECT diff_t.* FROM diff_t ORDER BY id LIMIT 1;
SELECT t.id, t.name FROM diff_t AS t ORDER BY t.id;
SELECT id FROM diff_t WHERE name IN ('alpha', 'gamma') ORDER BY id;
SELECT id FROM diff_t WHERE name NOT IN ('alpha') ORDER BY id;
SELECT id FROM diff_t WHERE score > 1 AND ok ORDER BY id;
SELECT id FROM diff_t WHERE score > 1 OR ok ORDER BY id;
SELECT id FROM diff_t WHERE NOT ok ORDER BY id;
SELECT id FROM diff_t WHERE ok = 'f' ORDER BY id;
SELECT id FROM diff_t WHERE amount > 10 ORDER BY id;
SELECT id FROM diff_t WHERE big > 5 ORDER BY id;
SELECT VALUES_t.* FROM (VALUES (1, 'a'), (2, 'b')) AS VALUES_t(x, y) ORDER BY x;
VALUES (1, 'a'), (2, 'b');
VALUES (1), (NULL);
SELECT * FROM (VALUES (1.5), (2)) AS v(x);

-- subqueries and set operations
SELECT id FROM diff_t WHERE id IN (SELECT id FROM diff_t WHERE ok) ORDER BY id;
SELECT id FROM diff_t WHERE id NOT IN (SELECT id FROM diff_t WHERE ok) ORDER BY id;
SELECT id FROM diff_t t WHERE EXISTS (SELECT 1 FROM diff_t u WHERE u.name = t.name AND u.id <> t.id) ORDER BY id;
SELECT (SELECT max(id) FROM diff_t);
SELECT id, (SELECT count(*) FROM diff_t u WHERE u.id < t.id) FROM diff_t t ORDER BY id;
SELECT count(*) FROM (SELECT DISTINCT name FROM diff_t) AS d;
WITH c AS (SELECT name, count(*) AS n FROM diff_t GROUP BY name) SELECT * FROM c ORDER BY n DESC, name;
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r;
SELECT 1 UNION SELECT 2 ORDER BY 1;
SELECT 1 UNION ALL SELECT 1;
SELECT 1 INTERSECT SELECT 1;
SELECT 1 EXCEPT SELECT 2;
SELECT name FROM diff_t UNION SELECT 'delta' ORDER BY 1;
SELECT a.id, b.id FROM diff_t a JOIN diff_t b ON a.name = b.name AND a.id < b.id;
SELECT a.id, b.name FROM diff_t a LEFT JOIN diff_t b ON b.id = a.id + 1 ORDER BY a.id;
SELECT count(*) FROM diff_t a CROSS JOIN diff_t b;
SELECT 1 WHERE EXISTS (SELECT 1);
SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM diff_t WHERE false);
SELECT max(s) FROM (SELECT sum(id) AS s FROM diff_t GROUP BY name) AS x;
SELECT id FROM diff_t WHERE score = (SELECT max(score) FROM diff_t);
SELECT count(*), (SELECT count(*) FROM diff_t WHERE ok) FROM diff_t;

SELECT id, id IN (SELECT id FROM diff_t WHERE ok) FROM diff_t ORDER BY id;
SELECT id, id NOT IN (SELECT id FROM diff_t WHERE ok) AS outside FROM diff_t ORDER BY id;
SELECT name FROM diff_t ORDER BY CASE WHEN id IN (SELECT id FROM diff_t WHERE ok) THEN 0 ELSE 1 END, id;
SELECT id FROM diff_t ORDER BY (SELECT max(id) FROM diff_t) - id LIMIT 3;
SELECT s FROM string_to_array('a,b', ',') s;
SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END FROM generate_series(array_lower(string_to_array(current_setting('search_path'), ','), 1), array_upper(string_to_array(current_setting('search_path'), ','), 1)) AS i, string_to_array(current_setting('search_path'), ',') s ORDER BY 1;
-- catalog and settings, as tools send them
SELECT current_database();
SELECT current_schema();
SELECT current_user;
SELECT session_user;
SELECT current_user, session_user;
SELECT current_setting('TimeZone');
SELECT current_setting('DateStyle');
SELECT current_setting('server_encoding');
SELECT current_setting('client_encoding');
SELECT current_setting('standard_conforming_strings');
SELECT current_setting('integer_datetimes');
SELECT current_setting('nope');
SELECT current_setting('nope', true);
SHOW TimeZone;
SHOW DateStyle;
SHOW standard_conforming_strings;
SHOW search_path;
SHOW nope;
SHOW transaction_isolation;
SHOW IntervalStyle;
SHOW max_identifier_length;
SELECT pg_backend_pid() > 0;
SELECT version() LIKE 'PostgreSQL 15.%';
SELECT pg_encoding_to_char(6);
SELECT format_type(23, NULL);
SELECT format_type(25, NULL);
SELECT format_type(1184, NULL);
SELECT format_type(1700, NULL);
SELECT to_regtype('integer');
SELECT 'diff_t'::regclass::oid > 0;
SELECT pg_table_is_visible('diff_t'::regclass);
SELECT relname FROM pg_class c WHERE pg_table_is_visible(c.oid) AND relname IN ('tables', 'columns', 'schemata', 'diff_t') ORDER BY 1;
SELECT has_table_privilege('diff_t', 'SELECT');
SELECT has_schema_privilege('public', 'USAGE');
SELECT has_database_privilege(current_database(), 'CONNECT');
SELECT obj_description('diff_t'::regclass, 'pg_class');
SELECT col_description('diff_t'::regclass, 1);
SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_name = 'diff_t';
SELECT table_catalog IS NOT NULL, table_schema, table_name, table_type FROM information_schema.tables WHERE table_name = 'diff_t';
SELECT column_name, data_type, is_nullable, ordinal_position FROM information_schema.columns WHERE table_name = 'diff_t' ORDER BY ordinal_position;
SELECT column_name, udt_name, character_maximum_length, numeric_precision, numeric_scale FROM information_schema.columns WHERE table_name = 'diff_t' ORDER BY ordinal_position;
SELECT schema_name FROM information_schema.schemata WHERE schema_name IN ('public', 'information_schema', 'pg_catalog') ORDER BY 1;
SELECT relname, relkind FROM pg_class WHERE relname = 'diff_t';
SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'diff_t';
SELECT a.attname, a.attnum, a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = 'diff_t' AND a.attnum > 0 ORDER BY a.attnum;
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = 'diff_t'::regclass AND a.attnum > 0 ORDER BY a.attnum;
SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = 'diff_t'::regclass AND a.attnum > 0 ORDER BY a.attnum;
SELECT oid, typname, typlen FROM pg_type WHERE typname IN ('bool', 'int2', 'int4', 'int8', 'float4', 'float8', 'numeric', 'text', 'varchar', 'date', 'timestamp', 'timestamptz', 'interval', 'bytea', 'json', 'uuid') ORDER BY oid;
SELECT typname, typtype, typcategory FROM pg_type WHERE oid IN (16, 20, 25, 1043, 1184) ORDER BY oid;
SELECT nspname FROM pg_namespace WHERE nspname IN ('public', 'pg_catalog', 'information_schema') ORDER BY nspname;
SELECT datname FROM pg_database WHERE datname = current_database();
SELECT count(*) FROM pg_index i WHERE i.indrelid = 'diff_t'::regclass;
SELECT count(*) FROM pg_constraint WHERE conrelid = 'diff_t'::regclass;
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = 'public' ORDER BY 2;
SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(diff_t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;
SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;
SELECT viewname FROM pg_views WHERE schemaname = 'public' ORDER BY 1;
SELECT matviewname FROM pg_matviews ORDER BY 1;
SELECT count(*) > 0 FROM pg_settings;
SELECT name, setting FROM pg_settings WHERE name = 'max_index_keys';
SELECT pg_get_userbyid(10) IS NOT NULL;
SELECT pg_size_pretty(12345::bigint);
SELECT pg_size_pretty(1073741824::bigint);
SELECT pg_get_serial_sequence('diff_t', 'id');
SELECT rolname FROM pg_roles WHERE rolname = current_user;
SELECT 1 FROM pg_am WHERE false;
SELECT typname FROM pg_type WHERE typname = 'int4';
SELECT oid::regtype FROM pg_type WHERE oid = 23;
SELECT 'int4'::regtype::oid;
SELECT array_lower(string_to_array('a,b', ','), 1);
SELECT set_config('application_name', 'diff', false);
SELECT current_setting('application_name') IS NOT NULL;
SELECT quote_ident('Diff') || '.' || quote_ident('t');
SELECT pg_catalog.lower('ABC');
SELECT pg_catalog.pg_get_expr(NULL, 0);
SELECT pg_catalog.version() IS NOT NULL;
SELECT pg_is_in_recovery();
SELECT pg_postmaster_start_time() IS NOT NULL;
SELECT inet_server_addr() IS NULL;
SELECT txid_current() IS NOT NULL;
SELECT current_schemas(false);
SELECT current_schemas(true);
SELECT quote_ident('user'), quote_ident('select'), quote_ident('name'), quote_ident('current_date');
SELECT (SELECT count(*) FROM pg_class c WHERE c.relnamespace IN (SELECT n.oid FROM pg_namespace n WHERE n.nspname = 'public') AND c.relname = 'diff_t') AS n;
SELECT d.id, (SELECT e.name FROM diff_t e WHERE e.id = d.id + 1) FROM diff_t d ORDER BY 1;
SELECT d.id, (SELECT e.id FROM diff_t e WHERE e.name = d.name) FROM diff_t d ORDER BY 1;
SELECT d.id, (SELECT e.id FROM diff_t e WHERE e.name = d.name ORDER BY e.id DESC LIMIT 1) FROM diff_t d ORDER BY 1;
SELECT d.id FROM diff_t d WHERE (SELECT e.score FROM diff_t e WHERE e.id = d.id) > 2 ORDER BY 1;
SELECT t.typname, (SELECT n.nspname FROM pg_namespace n WHERE n.oid = t.typnamespace) FROM pg_type t WHERE t.oid IN (23, 25) ORDER BY 1;
SELECT r.rolname, ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON m.roleid = b.oid WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r WHERE r.rolname = 'pg_monitor';
SELECT rolname, rolsuper, rolcanlogin, rolpassword FROM pg_roles WHERE rolname = 'postgres';
SELECT pg_get_function_result(1342), pg_get_function_arguments(1342);
SELECT pg_get_function_result(1707), pg_get_function_arguments(1707);
SELECT pg_get_function_result(1067), pg_get_function_arguments(1067);
SELECT pg_get_function_result(1689), pg_get_function_arguments(1689);
SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
, r.rolreplication
, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;
SELECT n.nspname as "Schema",
  pg_catalog.format_type(t.oid, NULL) AS "Name",
  pg_catalog.obj_description(t.oid, 'pg_type') as "Description"
FROM pg_catalog.pg_type t
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE (t.typrelid = 0 OR (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid))
  AND NOT EXISTS(SELECT 1 FROM pg_catalog.pg_type el WHERE el.oid = t.typelem AND el.typarray = t.oid)
      AND n.nspname <> 'pg_catalog'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_type_is_visible(t.oid)
ORDER BY 1, 2;
SELECT n.nspname as "Schema",
  p.proname as "Name",
  pg_catalog.pg_get_function_result(p.oid) as "Result data type",
  pg_catalog.pg_get_function_arguments(p.oid) as "Argument data types",
 CASE p.prokind
  WHEN 'a' THEN 'agg'
  WHEN 'w' THEN 'window'
  WHEN 'p' THEN 'proc'
  ELSE 'func'
 END as "Type"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname OPERATOR(pg_catalog.~) '^(abs)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_function_is_visible(p.oid)
ORDER BY 1, 2, 4;
SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' END as "Type",
  pg_catalog.array_to_string(c.relacl, E'\n') AS "Access privileges",
  pg_catalog.array_to_string(ARRAY(
    SELECT attname || E':\n  ' || pg_catalog.array_to_string(attacl, E'\n  ')
    FROM pg_catalog.pg_attribute a
    WHERE attrelid = c.oid AND NOT attisdropped AND attacl IS NOT NULL
  ), E'\n') AS "Column privileges",
  pg_catalog.array_to_string(ARRAY(
    SELECT polname
    || CASE WHEN NOT polpermissive THEN
       E' (RESTRICTIVE)'
       ELSE '' END
    || CASE WHEN polcmd != '*' THEN
           E' (' || polcmd::pg_catalog.text || E'):'
       ELSE E':'
       END
    || CASE WHEN polqual IS NOT NULL THEN
           E'\n  (u): ' || pg_catalog.pg_get_expr(polqual, polrelid)
       ELSE E''
       END
    || CASE WHEN polwithcheck IS NOT NULL THEN
           E'\n  (c): ' || pg_catalog.pg_get_expr(polwithcheck, polrelid)
       ELSE E''
       END    || CASE WHEN polroles <> '{0}' THEN
           E'\n  to: ' || pg_catalog.array_to_string(
               ARRAY(
                   SELECT rolname
                   FROM pg_catalog.pg_roles
                   WHERE oid = ANY (polroles)
                   ORDER BY 1
               ), E', ')
       ELSE E''
       END
    FROM pg_catalog.pg_policy pol
    WHERE polrelid = c.oid), E'\n')
    AS "Policies"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','v','m','S','f','p')
  AND n.nspname !~ '^pg_' AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1, 2;
SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = 'diff_t'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- bytea, as rejected_rows.raw is read
SELECT length('\xff00'::bytea), octet_length('\xff00'::bytea), length('héllo'), octet_length('héllo');
SELECT encode('\xff005c41'::bytea, 'escape'), encode('\x00ff'::bytea, 'hex'), encode('abc'::bytea, 'base64');
SELECT encode(convert_to(repeat('sluice', 20), 'UTF8'), 'base64');
SELECT convert_from('\xc3a9'::bytea, 'UTF8'), convert_from('\xe9'::bytea, 'LATIN1'), convert_to('é', 'LATIN1');
SELECT length(NULL::bytea), encode(NULL::bytea, 'hex'), convert_from(NULL::bytea, 'UTF8');

-- errors
SET TimeZone = 'Nowhere/Special';
SELECT * FROM no_such_table;
SELECT no_such_column FROM diff_t;
SELECT no_such_function(1);
SELEC 1;
SELECT 1 +;
SELECT 'a' + 1;
SELECT id FROM diff_t GROUP BY name;
SELECT sum(name) FROM diff_t;
SELECT 1/0;
SELECT 'x'::date;
SELECT '2024-02-30'::date;
SELECT ARRAY[1, 'a'];
SELECT (SELECT id FROM diff_t);
SELECT 1 FROM diff_t a, diff_t a;
SELECT id FROM diff_t ORDER BY 9;
SELECT * FROM diff_t LIMIT -1;
SELECT 'a' LIKE 'a' ESCAPE 'ab';
SELECT convert_from('\xff00'::bytea, 'UTF8');
SELECT convert_from('abc'::bytea, 'EBCDIC');
SELECT encode('abc'::bytea, 'rot13');
