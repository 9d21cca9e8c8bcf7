//! The network front: the Postgres listener, the HTTP listener, and orderly shutdown.
//!
//! [`Server::start`] binds both listeners (port 0 picks a free port, as tests do) and serves
//! until [`Server::shutdown`]: new connections are refused, commits in flight finish, and a
//! statement still writing is cut before its commit, so it leaves nothing visible.

pub mod backends;
pub mod cancel;
pub mod connection;
pub mod copy_in;
pub mod copy_out;
pub mod encode;
pub mod hangup;
pub mod http;
pub mod login;
pub mod numeric;
pub mod parameters;
pub mod scram;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::{ClientInfo, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::database::Database;
use crate::error::{Error, Result};
use crate::metrics;
use login::Gate;
use session::{ConnectionHandlers, Session};
use tokio_rustls::TlsAcceptor;

/// How long a terminated connection's running statement has to send its FATAL error.
/// The fewest connections that may be logging in at once, whatever `max_connections` is.
const MIN_LOGIN_SLOTS: usize = 256;

const TERMINATE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The demo pipeline of `serve --demo`.
const DEMO_SQL: &str = include_str!("../sql/demo_clicks.sql");

/// A running server.
pub struct Server {
    pg_addr: SocketAddr,
    http_addr: SocketAddr,
    db: Arc<Database>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the database and starts listening.
    pub async fn start(config: Config) -> Result<Self> {
        let pg = bind(config.pg_listen, "Postgres").await?;
        let http = bind(config.http_listen, "HTTP").await?;
        let pg_addr = pg.local_addr().map_err(|e| Error::Config(e.to_string()))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| Error::Config(e.to_string()))?;
        let max_connections = config.max_connections;
        let login_timeout = config.authentication_timeout;
        let (gate, tls) = Gate::new(&config.access)?;
        let gate = Arc::new(gate);
        let demo = config.demo;
        // Clients that connect while storage opens (slowly, when the store is down) hear why.
        let (opened, opening) = tokio::sync::oneshot::channel();
        let starting = tokio::spawn(refuse_while_starting(pg, tls.clone(), opening));
        let db = Database::open(config).await;
        let _ = opened.send(());
        let pg = starting
            .await
            .map_err(|e| Error::Internal(format!("the listener task failed: {e}")))?;
        let db = db?;
        gate.set_roles(Arc::clone(db.roles()));
        if demo {
            db.execute_script(DEMO_SQL).await?;
            tracing::info!(
                source = "demo_clicks",
                "demo pipeline running; try: psql -h {} -p {} -c 'SELECT action, count(*) FROM demo_clicks GROUP BY action'",
                pg_addr.ip(),
                pg_addr.port()
            );
        }
        let (stop, stopped) = watch::channel(false);
        let pg_task = tokio::spawn(accept_pg(
            pg,
            Arc::clone(&db),
            Listener {
                max_connections,
                login_timeout,
                gate: Arc::clone(&gate),
                tls,
            },
            stopped.clone(),
        ));
        let http_router = http::router(Arc::clone(&db), gate);
        let http_task = tokio::spawn(async move {
            let mut stopped = stopped;
            let serve = axum::serve(http, http_router).with_graceful_shutdown(async move {
                while stopped.changed().await.is_ok() && !*stopped.borrow() {}
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "http listener stopped");
            }
        });
        tracing::info!(%pg_addr, %http_addr, "sluicedb is ready");
        Ok(Server {
            pg_addr,
            http_addr,
            db,
            stop,
            tasks: vec![pg_task, http_task],
        })
    }

    pub fn pg_addr(&self) -> SocketAddr {
        self.pg_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops accepting, waits for commits in flight, and returns the last committed epoch.
    pub async fn shutdown(self) -> u64 {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        self.db.shutdown().await;
        let epoch = self.db.storage().flush().await;
        tracing::info!(epoch, "sluicedb stopped");
        epoch
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen for {what} on {addr}: {e}")))
}

/// What every accepted Postgres connection shares.
struct Listener {
    max_connections: usize,
    login_timeout: std::time::Duration,
    gate: Arc<Gate>,
    tls: Option<TlsAcceptor>,
}

/// How long a connection refused at accept may take to read its error.
const REFUSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn accept_pg(
    listener: TcpListener,
    db: Arc<Database>,
    shared: Listener,
    mut stopped: watch::Receiver<bool>,
) {
    let Listener {
        max_connections,
        login_timeout,
        gate,
        tls,
    } = shared;
    let backends = db.backends();
    // Connections that have not logged in yet have slots of their own, so sockets that connect
    // and say nothing cannot take the logged-in ones (`max_connections`, counted by `backends`).
    let logins = max_connections.saturating_mul(2).max(MIN_LOGIN_SLOTS);
    let login_slots = Arc::new(Semaphore::new(logins));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(login_slot) = Arc::clone(&login_slots).try_acquire_owned() else {
            metrics::CONNECTIONS_REFUSED.add(1);
            tracing::warn!(%peer, logins, "connection refused: too many connections logging in");
            refuse(socket, tls.clone(), TOO_MANY_CONNECTIONS);
            continue;
        };
        let session = Session::new(Arc::clone(&db), Arc::clone(&backends));
        let login = Arc::new(gate.login(Arc::clone(&session)));
        let handlers = Arc::new(ConnectionHandlers {
            session: Arc::clone(&session),
            login,
        });
        let tls = tls.clone();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        tokio::spawn(async move {
            let connection =
                connection::serve(socket, tls, handlers, login_timeout, Some(login_slot));
            tokio::pin!(connection);
            let closed = tokio::select! {
                closed = &mut connection => closed,
                () = hangup::cancel_on_hangup(fd, &session) => Ok(()),
                () = session.terminated() => match session.is_running() {
                    true => tokio::time::timeout(TERMINATE_GRACE, &mut connection)
                        .await
                        .unwrap_or(Ok(())),
                    false => Ok(()),
                }
            };
            if let Err(e) = closed {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
}

/// Answers a connection's startup with a FATAL error, so the client reports why instead of a
/// dropped socket: 53300 over `max_connections`, 57P03 while the database opens.
#[derive(Clone, Copy)]
struct Refusal {
    code: &'static str,
    message: &'static str,
}

const TOO_MANY_CONNECTIONS: Refusal = Refusal {
    code: "53300",
    message: "sorry, too many clients already",
};

const STARTING_UP: Refusal = Refusal {
    code: "57P03",
    message: "the database system is starting up",
};

#[async_trait]
impl StartupHandler for Refusal {
    async fn on_startup<C>(
        &self,
        _client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let info = ErrorInfo::new("FATAL".into(), self.code.into(), self.message.into());
        Err(PgWireError::UserError(Box::new(info)))
    }
}

impl PgWireServerHandlers for Refusal {
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(*self)
    }
}

/// Answers the connection's startup with `refusal`, then closes it.
fn refuse(socket: tokio::net::TcpStream, tls: Option<TlsAcceptor>, refusal: Refusal) {
    tokio::spawn(connection::serve(
        socket,
        tls,
        Arc::new(refusal),
        REFUSAL_TIMEOUT,
        None,
    ));
}

/// Refuses every connection with 57P03 until `opened` fires, then hands the listener back.
async fn refuse_while_starting(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut opened: tokio::sync::oneshot::Receiver<()>,
) -> TcpListener {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut opened => return listener,
        };
        if let Ok((socket, _)) = accepted {
            refuse(socket, tls.clone(), STARTING_UP);
        }
    }
}
