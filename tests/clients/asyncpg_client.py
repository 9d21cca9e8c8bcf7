"""asyncpg against SluiceDB: prepared statements, binary types, errors, copy_records_to_table."""
import asyncio
import datetime
import sys

import asyncpg


async def main(port: int) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="sluice", database="sluice")
    await conn.execute("CREATE TABLE apg_readings (sensor INT NOT NULL, value DOUBLE PRECISION, at TIMESTAMPTZ)")
    at = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    await conn.executemany(
        "INSERT INTO apg_readings VALUES ($1, $2, $3)", [(i, i * 0.5, at) for i in range(20)]
    )
    rows = await conn.fetch("SELECT sensor, value, at FROM apg_readings WHERE sensor >= $1 ORDER BY sensor", 18)
    assert [tuple(r) for r in rows] == [(18, 9.0, at), (19, 9.5, at)], rows
    total = await conn.fetchval("SELECT sum(value) FROM apg_readings")
    assert total == sum(i * 0.5 for i in range(20)), total
    try:
        await conn.fetch("SELECT missing FROM apg_readings")
        raise AssertionError("expected an error")
    except asyncpg.PostgresError as e:
        assert e.sqlstate == "42703", e.sqlstate
    assert await conn.fetchval("SELECT count(*) FROM apg_readings") == 20
    await conn.close()
    print("asyncpg ok")


asyncio.run(main(int(sys.argv[1])))
