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
            metabaseSync(conn);
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

    // Metabase's connection test and sync (0.50 to 0.57, src/metabase/driver/postgres.clj and
    // sql_jdbc/sync), with its parameters, on a connection set up as its pool does.
    static final String MB_TABLES = """
            SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = ?) AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ ?) AND ("n"."nspname" <> ?) AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN (?)) ORDER BY "type" ASC, "schema" ASC, "name" ASC""";
    static final String MB_PRIVILEGES = """
            with table_privileges as (
             select
               NULL as role,
               t.schemaname as schema,
               t.objectname as table,
               pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
               pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
               pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
               pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
             from (
               select schemaname, tablename as objectname from pg_catalog.pg_tables
               union
               select schemaname, viewname as objectname from pg_catalog.pg_views
               union
               select schemaname, matviewname as objectname from pg_catalog.pg_matviews
             ) t
             where t.schemaname !~ '^pg_'
               and t.schemaname <> 'information_schema'
               and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
            )
            select t.*
            from table_privileges t""";
    static final String MB_ENUMS = """
            SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)""";
    static final String MB_FIELDS = """
            SELECT "c"."column_name" AS "name", CASE WHEN "c"."udt_schema" IN ('public', 'pg_catalog') THEN FORMAT('%s', "c"."udt_name") ELSE FORMAT('"%s"."%s"', "c"."udt_schema", "c"."udt_name") END AS "database-type", "c"."ordinal_position" - 1 AS "database-position", "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", "pk"."column_name" IS NOT NULL AS "pk?", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", (("column_default" IS NULL) OR (LOWER("column_default") = 'null')) AND ("is_nullable" = 'NO') AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO')) AS "database-required", (("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO') AS "database-is-auto-increment" FROM "information_schema"."columns" AS "c" LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" FROM "information_schema"."table_constraints" AS "tc" INNER JOIN "information_schema"."key_column_usage" AS "kc" ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") AND ("tc"."table_name" = "kc"."table_name") WHERE "tc"."constraint_type" = 'PRIMARY KEY') AS "pk" ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") AND ("c"."column_name" = "pk"."column_name") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND ("c"."table_schema" IN (?)) UNION ALL SELECT "pa"."attname" AS "name", CASE WHEN "ptn"."nspname" IN ('public', 'pg_catalog') THEN FORMAT('%s', "pt"."typname") ELSE FORMAT('"%s"."%s"', "ptn"."nspname", "pt"."typname") END AS "database-type", "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required", FALSE AS "database-is-auto-increment" FROM "pg_catalog"."pg_class" AS "pc" INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" WHERE ("pc"."relkind" = 'm') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" IN (?)) ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC""";
    static final String MB_FKS = """
            SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" FROM "pg_constraint" AS "c" INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND ("c"."contype" = 'f'::char) AND ("fk_column"."attnum" = ANY(c.conkey)) AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_ns"."nspname" IN (?)) ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC""";
    static final String MB_INDEXES = """
            SELECT "tmp"."table-schema", "tmp"."table-name", TRIM(BOTH '"' FROM PG_CATALOG.PG_GET_INDEXDEF("tmp"."ci_oid", "tmp"."pos", FALSE)) AS "field-name" FROM (SELECT "n"."nspname" AS "table-schema", "ct"."relname" AS "table-name", "ci"."oid" AS "ci_oid", (INFORMATION_SCHEMA._PG_EXPANDARRAY("i"."indkey"))."n" AS "pos" FROM "pg_catalog"."pg_class" AS "ct" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "ct"."relnamespace" = "n"."oid" INNER JOIN "pg_catalog"."pg_index" AS "i" ON "ct"."oid" = "i"."indrelid" INNER JOIN "pg_catalog"."pg_class" AS "ci" ON "ci"."oid" = "i"."indexrelid" WHERE (PG_CATALOG.PG_GET_EXPR("i"."indpred", "i"."indrelid") IS NULL) AND n.nspname !~ '^information_schema|catalog_history|pg_') AS "tmp" WHERE "tmp"."pos" = ?""";

    static PreparedStatement prepare(Connection conn, String sql, Object... params) throws SQLException {
        PreparedStatement ps = conn.prepareStatement(sql);
        for (int i = 0; i < params.length; i++) {
            if (params[i] instanceof Long l) ps.setLong(i + 1, l);
            else ps.setString(i + 1, (String) params[i]);
        }
        return ps;
    }

    static void metabaseSync(Connection conn) throws SQLException {
        conn.setTransactionIsolation(Connection.TRANSACTION_READ_UNCOMMITTED);
        try (PreparedStatement ps = prepare(conn, "SELECT 1")) {
            check(rows(ps.executeQuery(), "?column?").equals(List.of(List.of("1"))), "connection test");
        }
        try (PreparedStatement ps = prepare(conn, "show timezone;")) {
            check(rows(ps.executeQuery(), "TimeZone").equals(List.of(List.of("UTC"))), "time zone");
        }
        try (PreparedStatement ps = prepare(conn, MB_TABLES, 0L, "^pg_", "information_schema", "public")) {
            List<List<String>> tables = rows(ps.executeQuery(), "schema", "name", "type", "description");
            check(tables.equals(List.of(
                    Arrays.asList("public", "demo_clicks_10s", "MATERIALIZED VIEW", null),
                    Arrays.asList("public", "demo_clicks", "TABLE", null),
                    Arrays.asList("public", "jdbc_sales", "TABLE", null))), "metabase tables " + tables);
        }
        try (PreparedStatement ps = prepare(conn, MB_PRIVILEGES)) {
            List<List<String>> privileges = rows(ps.executeQuery(), "schema", "table", "select");
            check(privileges.contains(List.of("public", "demo_clicks_10s", "t"))
                    && privileges.contains(List.of("public", "demo_clicks", "t")), "metabase privileges " + privileges);
        }
        try (PreparedStatement ps = prepare(conn, MB_ENUMS)) {
            check(rows(ps.executeQuery(), "typname").isEmpty(), "no enums");
        }
        try (PreparedStatement ps = prepare(conn, MB_FIELDS, "public", "public")) {
            List<List<String>> fields = rows(ps.executeQuery(), "table-name", "name", "database-type", "database-position", "pk?");
            List<List<String>> view = fields.stream().filter(f -> f.get(0).equals("demo_clicks_10s")).toList();
            check(view.equals(List.of(
                    List.of("demo_clicks_10s", "window_start", "timestamptz", "0", "f"),
                    List.of("demo_clicks_10s", "window_end", "timestamptz", "1", "f"),
                    List.of("demo_clicks_10s", "action", "text", "2", "f"),
                    List.of("demo_clicks_10s", "events", "int8", "3", "f"),
                    List.of("demo_clicks_10s", "revenue", "float8", "4", "f"),
                    List.of("demo_clicks_10s", "users", "int8", "5", "f"))), "metabase view fields " + view);
            check(fields.size() == 16, "each column once: " + fields);
        }
        try (PreparedStatement ps = prepare(conn, MB_FKS, "public")) {
            check(rows(ps.executeQuery(), "fk-column-name").isEmpty(), "no foreign keys");
        }
        try (PreparedStatement ps = prepare(conn, MB_INDEXES, 1L)) {
            check(rows(ps.executeQuery(), "table-name", "field-name").isEmpty(), "no indexes");
        }
        conn.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
    }
}
