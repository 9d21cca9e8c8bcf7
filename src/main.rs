//! The `sluicedb` command line: reads flags, environment and `sluicedb.toml`, starts tracing,
//! and runs the server until Ctrl-C or SIGTERM. The only place that reads the environment.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluicedb::config::{AwsEnv, ServeArgs};
use sluicedb::server::Server;

#[derive(Parser)]
#[command(
    name = "sluicedb",
    version,
    about = "A SQL-first streaming database served over the Postgres wire protocol"
)]
struct Cli {
    /// Config file; its keys are the long flag names with underscores
    /// [default: ./sluicedb.toml when present]
    #[arg(long, env = "SLUICEDB_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server: Postgres protocol, HTTP, storage.
    Serve(Box<ServeArgs>),
    /// A Kafka source's reader, started by the server (see `source/kafka_process.rs`); its
    /// arguments only name the source and topic for `ps`.
    #[command(hide = true)]
    KafkaReader {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        names: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let flags = match cli.command {
        Command::Serve(flags) => *flags,
        Command::KafkaReader { .. } => {
            return Ok(sluicedb::source::kafka_process::serve_reader()?);
        }
    };
    let file = match &cli.config {
        Some(path) => ServeArgs::from_toml_file(path)?,
        None if std::path::Path::new("sluicedb.toml").exists() => {
            ServeArgs::from_toml_file(std::path::Path::new("sluicedb.toml"))?
        }
        None => ServeArgs::default(),
    };
    let mut config = flags.or(file).resolve(aws_env())?;
    config.kafka_reader = Some(sluicedb::source::kafka_process::ReaderProcess {
        binary: std::env::current_exe().context("cannot find the sluicedb binary")?,
        log: config.log.clone(),
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log).context("invalid --log filter")?,
        )
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(sluicedb::THREAD_STACK_SIZE)
        .enable_all()
        .build()?;
    // On a worker, not on the main thread: start-up plans stored views, which needs the
    // workers' stack.
    runtime.block_on(async {
        tokio::spawn(async {
            let server = Server::start(config).await?;
            wait_for_signal().await?;
            tracing::info!("shutting down");
            server.shutdown().await;
            Ok(())
        })
        .await?
    })
}

fn aws_env() -> AwsEnv {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    AwsEnv {
        endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")),
        region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
        access_key_id: var("AWS_ACCESS_KEY_ID"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        allow_http: var("AWS_ALLOW_HTTP").map(|v| v == "true" || v == "1"),
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
