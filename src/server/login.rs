//! Who may connect: the startup of each Postgres connection, with or without a password, and
//! the TLS listener settings.
//!
//! `auth = none` lets in whoever reaches the port (the embedded default, on loopback only: see
//! [`crate::config`]). `auth = scram-sha-256` runs Postgres' SASL exchange with pgwire's SCRAM
//! implementation against the users of the config file; a wrong password and an unknown user
//! fail alike, after the full exchange, with Postgres' 28P01 wording, so a client cannot tell
//! which names exist. Over TLS the certificate is also offered for channel binding
//! (SCRAM-SHA-256-PLUS), which libpq uses when it can.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::session::Session;
use crate::config::{Access, AuthMethod};
use crate::error::{Error, Result};
use crate::metrics;

/// The login settings every connection shares, prepared once at startup.
pub struct Gate {
    auth: AuthMethod,
    passwords: Arc<Passwords>,
    /// The certificate chain as PEM, for SCRAM channel binding.
    certificate: Option<Vec<u8>>,
    tls_required: bool,
    pids: Arc<RandomPidSecretKeyGenerator>,
}

impl Gate {
    /// Reads the certificate and key and derives each user's SCRAM secret.
    pub fn new(access: &Access) -> Result<(Self, Option<TlsAcceptor>)> {
        let (certificate, acceptor) = match &access.tls {
            Some((cert, key)) => {
                let (pem, acceptor) = tls_acceptor(cert, key)?;
                (Some(pem), Some(acceptor))
            }
            None => (None, None),
        };
        let gate = Gate {
            auth: access.auth,
            passwords: Arc::new(Passwords::new(&access.users)),
            certificate,
            tls_required: access.tls_required,
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
        };
        Ok((gate, acceptor))
    }

    /// The startup handler of one new connection.
    pub fn login(self: &Arc<Self>, session: Arc<Session>) -> Login {
        Login {
            session,
            gate: Arc::clone(self),
            sasl: OnceLock::new(),
        }
    }

    /// A SCRAM exchange; with channel binding only over TLS, as libpq refuses it otherwise.
    fn sasl(&self, secure: bool) -> Sasl {
        let mut scram = ScramAuth::new(Arc::clone(&self.passwords) as Arc<dyn AuthSource>);
        scram.set_iterations(SCRAM_ITERATIONS);
        if let Some(pem) = self.certificate.as_ref().filter(|_| secure) {
            // Without channel binding plain SCRAM still works; log and go on.
            if let Err(e) = scram.configure_certificate(pem) {
                tracing::warn!(error = %e, "TLS certificate unusable for SCRAM channel binding");
            }
        }
        SASLAuthStartupHandler::new(Arc::new(server_parameters()))
            .with_scram(scram)
            .with_pid_secret_key_generator(Arc::clone(&self.pids) as Arc<dyn PidSecretKeyGenerator>)
    }
}

/// Builds the TLS acceptor; returns the certificate PEM too, for channel binding.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<(Vec<u8>, TlsAcceptor)> {
    let unreadable = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::Config(format!(
            "cannot read TLS {what} \"{}\": {e}",
            path.display()
        ))
    };
    let pem = std::fs::read(cert).map_err(|e| unreadable("certificate", cert, &e))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable("certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(unreadable("certificate", cert, &"no certificate in it"));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable("key", key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
        })
        .map_err(|e| {
            Error::Config(format!(
                "TLS certificate \"{}\" and key \"{}\" do not work together: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok((pem, TlsAcceptor::from(Arc::new(config))))
}

/// The parameters a Postgres server reports after login (`server_version` and the formats).
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = crate::pg::settings::server_version();
    parameters
}

/// Each user's SCRAM secret: a random salt and the password salted with it.
#[derive(Debug)]
struct Passwords {
    users: HashMap<String, Password>,
}

impl Passwords {
    fn new(users: &std::collections::BTreeMap<String, String>) -> Self {
        let users = users
            .iter()
            .map(|(name, password)| (name.clone(), salted(password)))
            .collect();
        Passwords { users }
    }
}

fn salted(password: &str) -> Password {
    let salt = rand::random::<[u8; 16]>().to_vec();
    let secret = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
    Password::new(Some(salt), secret)
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // An unknown user gets a secret no password matches, so the exchange runs to its end
        // and fails exactly as a wrong password does.
        let user = login.user().unwrap_or_default();
        Ok(self.users.get(user).cloned().unwrap_or_else(|| {
            let unguessable: [u8; 32] = rand::random();
            salted(&String::from_utf8_lossy(&unguessable))
        }))
    }
}

type Sasl = SASLAuthStartupHandler<DefaultServerParameterProvider>;

/// The startup of one connection: TLS check, login, then the connection's cancel key.
pub struct Login {
    session: Arc<Session>,
    gate: Arc<Gate>,
    /// The SCRAM exchange in progress, made at the startup message once TLS is known.
    sasl: OnceLock<Sasl>,
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(_) = &message
            && self.session.no_room()
        {
            return Err(too_many_clients(client));
        }
        if let PgWireFrontendMessage::Startup(_) = &message
            && self.gate.tls_required
            && !client.is_secure()
        {
            metrics::LOGINS_FAILED.add(1);
            return Err(fatal(
                "28000",
                "connection without TLS refused: this server requires sslmode=require or stronger"
                    .into(),
            ));
        }
        match self.gate.auth {
            AuthMethod::None => {
                if let PgWireFrontendMessage::Startup(startup) = &message {
                    protocol_negotiation(client, startup).await?;
                    save_startup_parameters_to_metadata(client, startup);
                    let (pid, secret) = self.gate.pids.generate(client);
                    client.set_pid_and_secret_key(pid, secret);
                    finish_authentication(client, &server_parameters()).await?;
                }
            }
            AuthMethod::ScramSha256 => {
                let secure = client.is_secure();
                self.sasl
                    .get_or_init(|| self.gate.sasl(secure))
                    .on_startup(client, message)
                    .await
                    .map_err(|e| match e {
                        // pgwire names the user of the SCRAM message, which libpq leaves empty.
                        PgWireError::InvalidPassword(_) => {
                            let user = client.metadata().get("user").map_or("", String::as_str);
                            metrics::LOGINS_FAILED.add(1);
                            tracing::warn!(user, peer = %client.socket_addr(), "password authentication failed");
                            fatal(
                                "28P01",
                                format!("password authentication failed for user \"{user}\""),
                            )
                        }
                        other => other,
                    })?;
            }
        }
        // Others may have logged in since the startup message.
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            && !self.session.started(client)
        {
            return Err(too_many_clients(client));
        }
        Ok(())
    }
}

fn too_many_clients<C: ClientInfo>(client: &C) -> PgWireError {
    metrics::CONNECTIONS_REFUSED.add(1);
    tracing::warn!(peer = %client.socket_addr(), "connection refused: too many connections");
    fatal("53300", "sorry, too many clients already".into())
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}
