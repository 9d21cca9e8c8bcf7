//! Who may connect: the startup of each Postgres connection, with or without a password, and
//! the TLS listener settings.
//!
//! `auth = none` lets in whoever reaches the port (the embedded default, on loopback only: see
//! [`crate::config`]). `auth = scram-sha-256` runs Postgres' SASL exchange ([`super::scram`])
//! against the users of the config file and the roles of the catalog; a wrong password and an
//! unknown user fail alike, after the full exchange, with Postgres' 28P01 wording, so a client
//! cannot tell which names exist. A role made with NOLOGIN is refused with 28000. Over TLS the
//! certificate is also offered for channel binding (SCRAM-SHA-256-PLUS), which libpq uses when
//! it can.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::backends::Full;
use super::scram::{self, Exchange, Failure, Verifier};
use super::session::Session;
use crate::catalog::roles::Roles;
use crate::config::{Access, AuthMethod};
use crate::error::{Error, Result};
use crate::metrics;
use crate::pg::settings;

/// The login settings every connection shares, prepared once at startup.
pub struct Gate {
    auth: AuthMethod,
    /// The config's users and their verifiers.
    users: HashMap<String, Verifier>,
    /// The TLS certificate's `tls-server-end-point` hash, for SCRAM channel binding.
    certificate_hash: Option<Vec<u8>>,
    tls_required: bool,
    pids: RandomPidSecretKeyGenerator,
    /// The catalog's roles, once the database is open.
    roles: OnceLock<Arc<Roles>>,
}

impl Gate {
    /// Reads the certificate and key and derives each user's SCRAM verifier.
    pub fn new(access: &Access) -> Result<(Self, Option<TlsAcceptor>)> {
        let (certificate_hash, acceptor) = match &access.tls {
            Some((cert, key)) => {
                let (pem, acceptor) = tls_acceptor(cert, key)?;
                let hash = scram::certificate_hash(&pem);
                if hash.is_none() {
                    // Without channel binding plain SCRAM still works; log and go on.
                    tracing::warn!(
                        "TLS certificate's signature algorithm unusable for SCRAM channel binding"
                    );
                }
                (hash, Some(acceptor))
            }
            None => (None, None),
        };
        let users = access
            .users
            .iter()
            .map(|(name, password)| (name.clone(), Verifier::new(password)))
            .collect();
        let gate = Gate {
            auth: access.auth,
            users,
            certificate_hash,
            tls_required: access.tls_required,
            pids: RandomPidSecretKeyGenerator::default(),
            roles: OnceLock::new(),
        };
        Ok((gate, acceptor))
    }

    /// The startup handler of one new connection.
    pub fn login(self: &Arc<Self>, session: Arc<Session>) -> Login {
        Login {
            session,
            gate: Arc::clone(self),
            scram: Mutex::new(None),
        }
    }

    /// Lets the catalog's roles log in too.
    pub fn set_roles(&self, roles: Arc<Roles>) {
        let _ = self.roles.set(roles);
    }

    /// Whether `user` and `password` are the credentials of a user who may log in (HTTP
    /// Basic).
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        self.may_log_in(user) && self.verifier(user).matches(password)
    }

    /// Whether `user` may log in: any name but a role made with NOLOGIN.
    fn may_log_in(&self, user: &str) -> bool {
        let catalog_role = self.roles.get().and_then(|roles| roles.login(user));
        catalog_role.is_none_or(|(login, _)| login)
    }

    /// Whether the listeners ask for credentials.
    pub fn requires_password(&self) -> bool {
        self.auth == AuthMethod::ScramSha256
    }

    /// `user`'s verifier; an unknown user, or a role without a password, gets one no password
    /// matches.
    fn verifier(&self, user: &str) -> Verifier {
        if let Some(verifier) = self.users.get(user) {
            return verifier.clone();
        }
        self.roles
            .get()
            .and_then(|roles| roles.login(user))
            .and_then(|(_, password)| Verifier::parse(password.as_deref()?))
            .unwrap_or_else(Verifier::unguessable)
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
    watch_expiry(cert, &pem);
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

/// Certificates expire while servers run for months: a warning at start when the certificate
/// is not valid now or ends within [`EXPIRY_WARNING_DAYS`], and its end in /metrics
/// (`sluicedb_tls_certificate_expiry_seconds`) for alerts later.
fn watch_expiry(path: &std::path::Path, pem: &[u8]) {
    let Some(certificate) = x509_certificate::CapturedX509Certificate::from_pem_multiple(pem)
        .ok()
        .and_then(|c| c.into_iter().next())
    else {
        return;
    };
    let (from, until) = (
        certificate.validity_not_before(),
        certificate.validity_not_after(),
    );
    metrics::TLS_CERTIFICATE_EXPIRY.set(until.timestamp());
    if let Some(warning) = expiry_warning(from, until, chrono::Utc::now()) {
        tracing::warn!(certificate = %path.display(), "{warning}");
    }
}

const EXPIRY_WARNING_DAYS: i64 = 30;

fn expiry_warning(
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let refused = "clients that verify it (sslmode=verify-ca or verify-full) refuse to connect";
    if until < now {
        return Some(format!(
            "the TLS certificate expired on {}: {refused}",
            until.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if from > now {
        return Some(format!(
            "the TLS certificate is not valid before {}: {refused}",
            from.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    let left = until - now;
    (left < chrono::Duration::days(EXPIRY_WARNING_DAYS)).then(|| {
        format!(
            "the TLS certificate expires on {} (in {} days); renew it and restart",
            until.format("%Y-%m-%d %H:%M UTC"),
            left.num_days()
        )
    })
}

/// The parameters a Postgres server reports after login (`server_version` and the formats).
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = crate::pg::settings::server_version();
    parameters
}

/// The startup of one connection: TLS check, login, then the connection's cancel key.
pub struct Login {
    session: Arc<Session>,
    gate: Arc<Gate>,
    /// The SCRAM exchange in progress, once the client's first message is answered.
    scram: Mutex<Option<Exchange>>,
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
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                if self.session.no_room() {
                    return Err(too_many_clients(client, Full::All));
                }
                if self.gate.tls_required && !client.is_secure() {
                    metrics::LOGINS_FAILED.add(1);
                    return Err(fatal(
                        "28000",
                        "connection without TLS refused: this server requires sslmode=require or stronger"
                            .into(),
                    ));
                }
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                match self.gate.auth {
                    AuthMethod::None => self.finish(client).await?,
                    AuthMethod::ScramSha256 => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        let mut mechanisms = vec![scram::SCRAM_SHA_256.to_owned()];
                        if self.certificate_hash(client).is_some() {
                            mechanisms.push(scram::SCRAM_SHA_256_PLUS.to_owned());
                        }
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                                mechanisms,
                            )))
                            .await?;
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message)
                if self.gate.auth == AuthMethod::ScramSha256 =>
            {
                self.on_sasl(client, message).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Login {
    /// One SASL message: the client's first (answered with the server's first) or its final
    /// (checked, then the login finishes).
    async fn on_sasl<C>(&self, client: &mut C, message: PasswordMessageFamily) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let pending = self.scram.lock().expect("scram lock").take();
        let reply = match pending {
            None => {
                let first = message.into_sasl_initial_response()?;
                let verifier = self.gate.verifier(&user);
                let (exchange, reply) = Exchange::start(
                    &first.auth_method,
                    first.data.as_deref().unwrap_or_default(),
                    verifier,
                    self.certificate_hash(client),
                )
                .map_err(|failure| self.refused(client, &user, failure))?;
                *self.scram.lock().expect("scram lock") = Some(exchange);
                Authentication::SASLContinue(reply.into())
            }
            Some(exchange) => {
                let last = message.into_sasl_response()?;
                let reply = exchange
                    .finish(&last.data)
                    .map_err(|failure| self.refused(client, &user, failure))?;
                Authentication::SASLFinal(reply.into())
            }
        };
        let done = matches!(reply, Authentication::SASLFinal(_));
        client
            .send(PgWireBackendMessage::Authentication(reply))
            .await?;
        if done {
            self.finish(client).await?;
        }
        Ok(())
    }

    /// The certificate hash to bind to, over TLS only (libpq refuses binding otherwise).
    fn certificate_hash<C: ClientInfo>(&self, client: &C) -> Option<&[u8]> {
        self.gate
            .certificate_hash
            .as_deref()
            .filter(|_| client.is_secure())
    }

    /// Gives the connection its cancel key and reports the server's parameters; refuses it if
    /// others took the last slot meanwhile.
    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        if !self.gate.may_log_in(&user) {
            metrics::LOGINS_FAILED.add(1);
            return Err(fatal(
                "28000",
                format!("role \"{user}\" is not permitted to log in"),
            ));
        }
        let (pid, secret) = self.gate.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret);
        let superuser = self.session.is_superuser(&user);
        if let Err(full) = self.session.started(client, superuser) {
            return Err(too_many_clients(client, full));
        }
        settings::set_superuser(client.metadata_mut(), superuser);
        let mut parameters = server_parameters();
        parameters.is_superuser = superuser;
        finish_authentication(client, &parameters).await
    }

    fn refused<C: ClientInfo>(&self, client: &C, user: &str, failure: Failure) -> PgWireError {
        metrics::LOGINS_FAILED.add(1);
        match failure {
            Failure::WrongPassword => {
                tracing::warn!(user, peer = %client.socket_addr(), "password authentication failed");
                fatal(
                    "28P01",
                    format!("password authentication failed for user \"{user}\""),
                )
            }
            Failure::ChannelBinding(reason) => fatal("28000", reason.into()),
            Failure::Malformed(reason) => {
                fatal("08P01", format!("malformed SCRAM message: {reason}"))
            }
        }
    }
}

fn too_many_clients<C: ClientInfo>(client: &C, full: Full) -> PgWireError {
    metrics::CONNECTIONS_REFUSED.add(1);
    tracing::warn!(peer = %client.socket_addr(), reason = full.message(), "connection refused");
    fatal("53300", full.message().into())
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_of_certificates_expired_expiring_or_not_yet_valid() {
        let day = chrono::Duration::days(1);
        let now = chrono::Utc::now();
        let warning = |from, until| expiry_warning(from, until, now);
        assert_eq!(warning(now - day * 100, now + day * 300), None);
        assert!(
            warning(now - day * 100, now - day)
                .unwrap()
                .contains("expired on")
        );
        assert!(
            warning(now - day, now + day * 10)
                .unwrap()
                .contains("in 10 days")
        );
        assert!(
            warning(now + day, now + day * 100)
                .unwrap()
                .contains("not valid before")
        );
    }
}
