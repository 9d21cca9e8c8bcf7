"""psycopg 3 against SluiceDB: parameters, types, errors, a COPY, and the connection after an error."""
import datetime
import decimal
import sys

import psycopg

port = int(sys.argv[1])
with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True) as conn:
    conn.execute(
        "CREATE TABLE py_orders (id BIGINT NOT NULL, item TEXT, price NUMERIC(10,2), paid BOOLEAN, at TIMESTAMPTZ)"
    )
    at = datetime.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=datetime.timezone.utc)
    with conn.cursor() as cur:
        for i in range(10):
            cur.execute(
                "INSERT INTO py_orders VALUES (%s, %s, %s, %s, %s)",
                (i, f"item-{i}", decimal.Decimal(f"{i}.25"), i % 2 == 0, at),
            )
        with cur.copy("COPY py_orders (id, item) FROM STDIN") as copy:
            for i in range(10, 1010):
                copy.write_row((i, f"copied-{i}"))
        cur.execute("SELECT count(*), sum(id) FROM py_orders")
        assert cur.fetchone() == (1010, sum(range(1010))), "count after insert and copy"
        cur.execute("SELECT id, item, price, paid, at FROM py_orders WHERE id = %s", (3,))
        row = cur.fetchone()
        assert row == (3, "item-3", decimal.Decimal("3.25"), False, at), row
        # Binary results.
        cur.execute("SELECT id, item FROM py_orders WHERE id < %s ORDER BY id", (2,), binary=True)
        assert cur.fetchall() == [(0, "item-0"), (1, "item-1")]
        try:
            cur.execute("SELECT * FROM no_such_table")
            raise AssertionError("expected an error")
        except psycopg.errors.UndefinedTable as e:
            assert e.sqlstate == "42P01", e.sqlstate
        cur.execute("SELECT 1 + %s", (41,))
        assert cur.fetchone()[0] == 42
# A transaction (psycopg's default) opens with BEGIN and ends with COMMIT.
with psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice") as conn:
    assert conn.execute("SELECT count(*) FROM py_orders").fetchone()[0] == 1010
    conn.commit()
print("psycopg ok")
