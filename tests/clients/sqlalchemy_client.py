"""SQLAlchemy 2 over psycopg: dialect start-up, parameters, and reflection as Superset on
SQLAlchemy 2, pandas' read_sql_table and DBeaver-like tools use it (columns with their types and
nullability, keys, indexes, comments, a whole Table autoloaded)."""
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
# information_schema's and sluice_catalog's views are not on the search path.
assert inspector.get_view_names() == [], inspector.get_view_names()
columns = inspector.get_columns("sa_pages")
assert [(c["name"], type(c["type"]).__name__, c["nullable"], c["default"]) for c in columns] == [
    ("page", "TEXT", True, None),
    ("views", "BIGINT", True, None),
    ("ts", "TIMESTAMP", True, None),
], columns
assert columns[2]["type"].timezone, columns[2]
assert inspector.get_pk_constraint("sa_pages")["constrained_columns"] == []
assert inspector.get_foreign_keys("sa_pages") == []
assert inspector.get_indexes("sa_pages") == []
assert inspector.get_unique_constraints("sa_pages") == []
assert inspector.get_table_comment("sa_pages") == {"text": None}
table = sa.Table("sa_pages", sa.MetaData(), autoload_with=engine)
assert list(table.columns.keys()) == ["page", "views", "ts"]
with engine.connect() as conn:
    assert conn.execute(sa.select(sa.func.sum(table.c.views))).scalar() == 100
print("sqlalchemy ok")
