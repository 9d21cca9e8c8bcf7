"""Every column type SluiceDB stores and returns, round-tripped through four drivers: rows go in
as SQL literals (psql's way, bytea as '\\x…'), as psycopg text and binary parameters, as
asyncpg's binary parameters and through COPY; they come back through psycopg in text and binary
form, asyncpg (binary codecs), pg8000 (text) and a prepared statement of each. Every value read
must equal the value written. Then the types only queries produce (interval, time, arrays of
each type) in text and binary form."""
import asyncio
import datetime
import decimal
import math
import sys

import asyncpg
import pg8000.native
import psycopg

port = int(sys.argv[1])
UTC = datetime.timezone.utc
conn = psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)

COLUMNS = [
    ("i2", "SMALLINT"), ("i4", "INTEGER"), ("i8", "BIGINT"), ("f4", "REAL"), ("f8", "DOUBLE PRECISION"),
    ("n", "NUMERIC(20,3)"), ("s", "TEXT"), ("v", "VARCHAR"), ("b", "BOOLEAN"), ("d", "DATE"),
    ("ts", "TIMESTAMP"), ("tz", "TIMESTAMPTZ"), ("by", "BYTEA"),
]
ROWS = [
    (-32768, -2147483648, -9223372036854775808, 1.5, 0.1, decimal.Decimal("-123456789.125"),
     'héllo ✓ "q" \\ tab\tnl\n', "", True, datetime.date(2024, 2, 29),
     datetime.datetime(2024, 1, 1, 12, 34, 56, 789012),
     datetime.datetime(2024, 1, 1, 10, 34, 56, 789012, tzinfo=UTC), b"\x00\xff\x10\\x"),
    (32767, 2147483647, 9223372036854775807, float("inf"), float("nan"), decimal.Decimal("0.001"),
     "", "x", False, datetime.date(1970, 1, 1), datetime.datetime(1999, 12, 31, 23, 59, 59, 999999),
     datetime.datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC), b""),
    (0, 0, 0, -0.25, -1e308, decimal.Decimal("-99999999999.875"), "a", "ü" * 100, True,
     datetime.date(3000, 1, 1), datetime.datetime(2000, 1, 1), datetime.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
     bytes(range(256))),
    (None,) * len(COLUMNS),
]
names = ", ".join(c for c, _ in COLUMNS)


def literal(value, sql_type):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"'{value!r}'::{sql_type.lower()}" if not math.isfinite(value) else repr(value)
    if isinstance(value, bytes):
        return "'\\x" + value.hex() + "'"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (bytes, bytearray, memoryview)) and isinstance(b, (bytes, bytearray, memoryview)):
        return bytes(a) == bytes(b)
    return a == b and type(a) is type(b) or (a is None and b is None)


def check(rows, how, inserted_by):
    rows = sorted(rows, key=lambda r: (r[0] is None, r[0]))
    want = sorted(ROWS, key=lambda r: (r[0] is None, r[0]))
    assert len(rows) == len(want), (how, inserted_by, rows)
    for got, exp in zip(rows, want):
        for (name, _), g, e in zip(COLUMNS, got, exp):
            if isinstance(e, datetime.datetime) and e.tzinfo is not None and g is not None:
                g = g.astimezone(UTC)
            assert same(g, e), (how, inserted_by, name, g, e)


def table(name):
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in COLUMNS)})")
    return name


# In: literals in one multi-row INSERT.
lit = table("types_literals")
values = ",\n".join("(" + ", ".join(literal(v, t) for v, (_, t) in zip(row, COLUMNS)) + ")" for row in ROWS)
conn.execute(f"INSERT INTO {lit} VALUES {values}")
# In: psycopg parameters, text (%s, as text with the type's oid) and binary (%b).
for kind, mark in [("text", "%t"), ("binary", "%b")]:
    name = table(f"types_psycopg_{kind}")
    with conn.cursor() as cur:
        for row in ROWS:
            cur.execute(f"INSERT INTO {name} VALUES ({', '.join([mark] * len(COLUMNS))})", row)
# In: COPY FROM STDIN, text format.
copied = table("types_copy")
with conn.cursor() as cur, cur.copy(f"COPY {copied} FROM STDIN") as copy:
    for row in ROWS:
        copy.write_row(row)


# In: asyncpg's binary parameters; out: asyncpg (binary for every type), plain and prepared.
async def with_asyncpg(tables):
    a = await asyncpg.connect(host="127.0.0.1", port=port, user="sluice", database="sluice")
    name = table("types_asyncpg")
    params = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
    await a.executemany(f"INSERT INTO {name} VALUES ({params})", ROWS)
    for t in tables + [name]:
        check([tuple(r) for r in await a.fetch(f"SELECT {names} FROM {t}")], "asyncpg", t)
        statement = await a.prepare(f"SELECT {names} FROM {t} WHERE i2 IS NULL OR i2 >= $1")
        check([tuple(r) for r in await statement.fetch(-32768)], "asyncpg prepared", t)
    # The statement cache: the same text again binds the statement prepared the first time.
    counted = "SELECT count(*) FROM types_asyncpg WHERE i8 >= $1"
    assert [await a.fetchval(counted, v) for v in (-1, 1, -(2**63))] == [2, 1, 3]
    assert len(a._stmt_cache) >= 1
    await a.close()
    # A pool resets each connection it gets back (advisory unlock, CLOSE ALL, UNLISTEN *,
    # RESET ALL) and hands it out again.
    pool = await asyncpg.create_pool(host="127.0.0.1", port=port, user="sluice", database="sluice",
                                     min_size=1, max_size=2)
    for _ in range(3):
        async with pool.acquire() as c:
            await c.execute("SET application_name = 'pooled'")
            assert await c.fetchval(counted, 1) == 1
    async with pool.acquire() as c:
        assert await c.fetchval("SHOW application_name") != "pooled"
    await pool.close()
    return name


tables = [lit, "types_psycopg_text", "types_psycopg_binary", copied]
tables.append(asyncio.run(with_asyncpg(tables)))

# Out: psycopg text and binary, each plain and server-side prepared.
for t in tables:
    for binary in (False, True):
        for prepare in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute(f"SELECT {names} FROM {t}", prepare=prepare)
                how = f"psycopg {'binary' if binary else 'text'}{' prepared' if prepare else ''}"
                check(cur.fetchall(), how, t)

# Out: pg8000 (text results, its own parser for each type).
p8 = pg8000.native.Connection("sluice", host="127.0.0.1", port=port, database="sluice")
for t in tables:
    rows = p8.run(f"SELECT {names} FROM {t}")
    check([tuple(r) for r in rows], "pg8000", t)
assert p8.run("SELECT count(*) FROM types_copy WHERE s = :s", s="a") == [[1]]
p8.close()

# Types only queries return, in text and binary form.
EXPRESSIONS = [
    ("INTERVAL '1 day 2 hours 3.5 seconds'", datetime.timedelta(days=1, seconds=7203.5)),
    ("INTERVAL '-1 second'", datetime.timedelta(seconds=-1)),
    ("CAST('12:34:56.5' AS TIME)", datetime.time(12, 34, 56, 500000)),
    ("ARRAY[1, 2, NULL]", [1, 2, None]),
    ("ARRAY['a', NULL, 'b c']", ["a", None, "b c"]),
    ("ARRAY[true, false]", [True, False]),
    ("ARRAY[1.5, -2.5]", [1.5, -2.5]),
    ("ARRAY[DATE '2024-02-29']", [datetime.date(2024, 2, 29)]),
    ("CAST(-0.001 AS NUMERIC(10,3))", decimal.Decimal("-0.001")),
    ("CAST(5 AS TINYINT)", 5),
    ("CAST(-5 AS TINYINT)", -5),
    ("arrow_cast(1.5, 'Float16')", 1.5),
    ("arrow_cast(CAST(12345.67 AS DECIMAL(10, 2)), 'Decimal256(20, 2)')", decimal.Decimal("12345.67")),
    ("arrow_cast(200, 'UInt8')", 200),
    ("arrow_cast(4000000000, 'UInt32')", 4000000000),
    ("CAST(NULL AS BIGINT)", None),
    ("DATE '2024-03-01' - DATE '2024-02-01'", 29),
]
for sql, want in EXPRESSIONS:
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            got = cur.execute(f"SELECT {sql} AS x").fetchone()[0]
            assert got == want and type(got) is type(want), (sql, "binary" if binary else "text", got, want)


async def asyncpg_expressions():
    a = await asyncpg.connect(host="127.0.0.1", port=port, user="sluice", database="sluice")
    for sql, want in EXPRESSIONS:
        got = await a.fetchval(f"SELECT {sql} AS x")
        assert got == want and type(got) is type(want), (sql, "asyncpg", got, want)
    await a.close()


asyncio.run(asyncpg_expressions())
print(f"types ok: {len(COLUMNS)} column types x {len(tables)} ways in x 7 ways out, {len(EXPRESSIONS)} expressions")
