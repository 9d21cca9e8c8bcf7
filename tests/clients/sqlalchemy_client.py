"""SQLAlchemy (as Superset uses it) over psycopg: dialect start-up, table listing, parameters.

Column reflection (json_build_object over pg_sequence and pg_collation) is not answered yet.
"""
import sys

import sqlalchemy as sa

port = int(sys.argv[1])
engine = sa.create_engine(f"postgresql+psycopg://sluice@127.0.0.1:{port}/sluice")
with engine.connect() as conn:
    conn.execute(sa.text("CREATE TABLE sa_pages (page TEXT, views BIGINT, ts TIMESTAMPTZ)"))
    conn.execute(
        sa.text("INSERT INTO sa_pages VALUES (:page, :views, now())"),
        [{"page": f"/p{i}", "views": i * 10} for i in range(5)],
    )
    result = conn.execute(sa.text("SELECT page, views FROM sa_pages WHERE views > :v ORDER BY views"), {"v": 15})
    assert [tuple(r) for r in result] == [("/p2", 20), ("/p3", 30), ("/p4", 40)]
    conn.commit()
inspector = sa.inspect(engine)
assert "sa_pages" in inspector.get_table_names(), inspector.get_table_names()
print("sqlalchemy ok")
