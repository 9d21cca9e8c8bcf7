// pgjdbc (as Metabase, Tableau and DBeaver use it) against SluiceDB: prepared statements with
// parameters (server-side after the fifth run), result types, and an error's SQLSTATE.
// Run as a single-file program: java -cp /usr/share/java/postgresql.jar JdbcClient.java PORT
import java.math.BigDecimal;
import java.sql.*;

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
        }
        System.out.println("jdbc ok");
    }
}
