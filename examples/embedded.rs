//! Runs SluiceDB inside your own program on a temporary folder, then talks to it over the
//! Postgres protocol like any client: `cargo run --example embedded`.

use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::server::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let args = ServeArgs {
        storage: Some(dir.path().to_string_lossy().into_owned()),
        pg_listen: Some("127.0.0.1:0".parse()?),
        http_listen: Some("127.0.0.1:0".parse()?),
        ..Default::default()
    };
    let server = Server::start(args.resolve(AwsEnv::default())?).await?;
    let addr = server.pg_addr();
    println!(
        "serving on {addr}; connect with: psql -h {} -p {} -U sluice -d sluice",
        addr.ip(),
        addr.port()
    );

    let (client, connection) = tokio_postgres::connect(
        &format!("host={} port={} user=sluice", addr.ip(), addr.port()),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE pages (page TEXT, views BIGINT)")
        .await?;
    for (page, views) in [("/home", 120i64), ("/pricing", 45), ("/docs", 80)] {
        client
            .execute("INSERT INTO pages VALUES ($1, $2)", &[&page, &views])
            .await?;
    }
    for row in client
        .query("SELECT page, views FROM pages ORDER BY views DESC", &[])
        .await?
    {
        let (page, views): (String, i64) = (row.get(0), row.get(1));
        println!("{page:<10} {views}");
    }
    server.shutdown().await;
    Ok(())
}
