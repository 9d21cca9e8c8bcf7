// pgjdbc (as Metabase, Tableau and DBeaver use it) against SluiceDB running the demo pipeline:
// prepared statements with parameters (server-side after the fifth run), result types, an
// error's SQLSTATE; the DatabaseMetaData calls Metabase's sync and DBeaver's navigator make
// (schemas, tables with the materialized view, columns with types and nullability, keys and
// indexes), read-only transactions, fetch sizes, row limits, isValid, and DBeaver's and
// Metabase's own catalog queries.
// Run as a single-file program: java -cp /usr/share/java/postgresql.jar JdbcClient.java PORT
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/sluice";
        try (Connection conn = DriverManager.getConnection(url, "sluice", "")) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jdbc_sales (id BIGINT NOT NULL, region VARCHAR, amount NUMERIC(10,2), at TIMESTAMPTZ)");
            }
            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_sales VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < 8; i++) {
                    insert.setLong(1, i);
                    insert.setString(2, i % 2 == 0 ? "north" : "south");
                    insert.setBigDecimal(3, new BigDecimal(i + ".50"));
                    insert.setTimestamp(4, Timestamp.valueOf("2024-02-0" + (1 + i % 5) + " 10:00:00"));
                    check(insert.executeUpdate() == 1, "one row inserted");
                }
            }
            try (PreparedStatement query = conn.prepareStatement(
                    "SELECT region, count(*) AS n, sum(amount) AS total FROM jdbc_sales WHERE id >= ? GROUP BY region ORDER BY region")) {
                for (int run = 0; run < 6; run++) {
                    query.setLong(1, 2);
                    try (ResultSet rs = query.executeQuery()) {
                        check(rs.next() && rs.getString("region").equals("north") && rs.getLong("n") == 3, "north row");
                        check(rs.getBigDecimal("total").compareTo(new BigDecimal("13.50")) == 0, "north total " + rs.getBigDecimal("total"));
                        check(rs.next() && rs.getString(1).equals("south") && rs.getLong(2) == 3, "south row");
                        check(!rs.next(), "two rows");
                    }
                }
            }
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM jdbc_missing");
                throw new AssertionError("expected an error");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_sales")) {
                check(rs.next() && rs.getLong(1) == 8, "count after error");
            }
            metadata(conn);
            sessions(conn);
            toolQueries(conn);
        }
        System.out.println("jdbc ok");
    }

    static List<List<String>> rows(ResultSet rs, String... columns) throws SQLException {
        List<List<String>> rows = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                List<String> row = new ArrayList<>();
                for (String c : columns) row.add(rs.getString(c));
                rows.add(row);
            }
        }
        return rows;
    }

    // What Metabase's sync and DBeaver's navigator ask through DatabaseMetaData.
    static void metadata(Connection conn) throws SQLException {
        DatabaseMetaData md = conn.getMetaData();
        check(md.getDatabaseProductName().equals("PostgreSQL"), md.getDatabaseProductName());
        check(md.getDatabaseMajorVersion() == 15, "major version " + md.getDatabaseMajorVersion());
        check(md.getDatabaseProductVersion().startsWith("15."), md.getDatabaseProductVersion());
        List<List<String>> schemas = rows(md.getSchemas(), "TABLE_SCHEM");
        check(schemas.contains(List.of("public")) && schemas.contains(List.of("sluice_catalog")), "schemas " + schemas);
        List<List<String>> tables = rows(md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW"}),
                "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE");
        check(tables.contains(List.of("public", "demo_clicks", "TABLE")), "tables " + tables);
        check(tables.contains(List.of("public", "jdbc_sales", "TABLE")), "tables " + tables);
        check(tables.contains(List.of("public", "demo_clicks_10s", "MATERIALIZED VIEW")), "tables " + tables);
        List<List<String>> views = rows(md.getTables(null, "public", "%", new String[] {"MATERIALIZED VIEW"}), "TABLE_NAME");
        check(views.equals(List.of(List.of("demo_clicks_10s"))), "materialized views " + views);
        List<List<String>> columns = rows(md.getColumns(null, "public", "demo_clicks_10s", "%"),
                "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "ORDINAL_POSITION");
        check(columns.equals(List.of(
                List.of("window_start", "timestamptz", "" + Types.TIMESTAMP, "1"),
                List.of("window_end", "timestamptz", "" + Types.TIMESTAMP, "2"),
                List.of("action", "text", "" + Types.VARCHAR, "3"),
                List.of("events", "int8", "" + Types.BIGINT, "4"),
                List.of("revenue", "float8", "" + Types.DOUBLE, "5"),
                List.of("users", "int8", "" + Types.BIGINT, "6"))), "view columns " + columns);
        // pg_attribute knows a column's Arrow type: a varchar column reads as text, and a
        // numeric's precision and scale are not in atttypmod (information_schema has both).
        List<List<String>> sales = rows(md.getColumns(null, "public", "jdbc_sales", "%"),
                "COLUMN_NAME", "TYPE_NAME", "IS_NULLABLE", "NULLABLE");
        check(sales.equals(List.of(
                List.of("id", "int8", "NO", "" + DatabaseMetaData.columnNoNulls),
                List.of("region", "text", "YES", "" + DatabaseMetaData.columnNullable),
                List.of("amount", "numeric", "YES", "" + DatabaseMetaData.columnNullable),
                List.of("at", "timestamptz", "YES", "" + DatabaseMetaData.columnNullable))), "table columns " + sales);
        // No keys or indexes exist; each listing has its columns and no rows.
        ResultSet keys = md.getPrimaryKeys(null, "public", "demo_clicks");
        check(keys.findColumn("COLUMN_NAME") > 0 && !keys.next(), "no primary key");
        ResultSet imported = md.getImportedKeys(null, "public", "demo_clicks");
        check(imported.findColumn("FKCOLUMN_NAME") > 0 && !imported.next(), "no foreign keys");
        ResultSet indexes = md.getIndexInfo(null, "public", "demo_clicks", false, true);
        check(indexes.findColumn("INDEX_NAME") > 0 && !indexes.next(), "no indexes");
    }

    // A pool's validation, Metabase's read-only transactions with a fetch size, row limits.
    static void sessions(Connection conn) throws SQLException {
        check(conn.isValid(5), "isValid");
        try (Statement st = conn.createStatement()) {
            st.execute("SET extra_float_digits = 3");
            try (ResultSet rs = st.executeQuery("SHOW TRANSACTION ISOLATION LEVEL")) {
                check(rs.next() && rs.getString(1).equals("read committed"), "isolation level");
            }
        }
        check(conn.getTransactionIsolation() == Connection.TRANSACTION_READ_COMMITTED, "isolation");
        conn.setAutoCommit(false);
        conn.setReadOnly(true);
        try (Statement st = conn.createStatement()) {
            st.setFetchSize(3);
            List<List<String>> fetched = rows(st.executeQuery("SELECT event_id FROM demo_clicks ORDER BY event_id LIMIT 10"), "event_id");
            check(fetched.size() == 10 && fetched.get(9).get(0).equals("10"), "fetched in batches " + fetched);
        }
        conn.commit();
        conn.setReadOnly(false);
        conn.setAutoCommit(true);
        try (Statement st = conn.createStatement()) {
            st.setMaxRows(4);
            check(rows(st.executeQuery("SELECT event_id FROM demo_clicks LIMIT 10"), "event_id").size() == 4, "max rows");
        }
        try (Statement st = conn.createStatement()) {
            st.execute("BEGIN READ ONLY");
            check(rows(st.executeQuery("SELECT 1 AS one"), "one").equals(List.of(List.of("1"))), "in a read-only transaction");
            st.execute("COMMIT");
        }
    }

    // DBeaver's catalog queries when it connects and opens a table.
    static void toolQueries(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            check(rows(st.executeQuery("SELECT current_schema(),session_user"), "current_schema", "session_user")
                    .equals(List.of(List.of("public", "sluice"))), "current_schema, session_user");
            check(rows(st.executeQuery("SHOW search_path"), "search_path").equals(List.of(List.of("\"$user\", public"))), "search_path");
            check(rows(st.executeQuery("select setting from pg_catalog.pg_settings where name='max_index_keys'"), "setting")
                    .equals(List.of(List.of("32"))), "max_index_keys");
            List<List<String>> databases = rows(st.executeQuery(
                    "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datallowconn AND NOT datistemplate OR db.datname = 'sluice' ORDER BY db.datname"),
                    "datname");
            check(databases.contains(List.of("sluice")), "databases " + databases);
            List<List<String>> namespaces = rows(st.executeQuery(
                    "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass ORDER BY nspname"),
                    "oid", "nspname");
            String publicOid = namespaces.stream().filter(r -> r.get(1).equals("public")).findFirst().orElseThrow().get(0);
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT c.oid,c.*,d.description FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass WHERE c.relnamespace=? AND c.relkind not in ('i','I','c') ORDER BY c.relname")) {
                ps.setLong(1, Long.parseLong(publicOid));
                List<List<String>> classes = rows(ps.executeQuery(), "relname", "relkind");
                check(classes.contains(List.of("demo_clicks_10s", "m")) && classes.contains(List.of("demo_clicks", "r")), "classes " + classes);
            }
            List<List<String>> attributes = rows(st.executeQuery(
                    "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description FROM pg_catalog.pg_attribute a INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid) LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum) LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid) WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.relname = 'demo_clicks_10s' ORDER BY a.attnum"),
                    "attname");
            check(attributes.equals(List.of(List.of("window_start"), List.of("window_end"), List.of("action"),
                    List.of("events"), List.of("revenue"), List.of("users"))), "attributes " + attributes);
        }
    }
}
