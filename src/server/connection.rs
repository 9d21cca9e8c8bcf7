//! One Postgres connection's socket, from accept to close, with what Postgres bounds before login.
//!
//! pgwire's `process_socket` decodes every message with its after-login limits (a 1 GiB Query)
//! during authentication too, and waits 60 s for a login: six clients that sent a startup packet
//! and then a Query header announcing a gigabyte made the server buffer 2 GB. Here the same loop
//! runs over a socket wrapped in [`PreLogin`], which reads message frames as they arrive until the
//! login completes and refuses, with `08P01` as Postgres does, a startup packet over 10 000 bytes
//! or any later message over 64 KiB. `authentication_timeout` bounds the whole login, and a
//! message pgwire cannot decode (or panics on) ends the connection with `08P01`, not silently.
//! After login, `idle_in_transaction_session_timeout` closes a connection left inside a
//! transaction block (25P03).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::process_message;
use pgwire::tokio::server::{MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Framed, FramedParts};

use crate::pg::settings;

/// The largest startup packet Postgres accepts (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_PACKET: usize = 10_000;
/// The largest message before login: a password or SASL message (`PG_MAX_AUTH_TOKEN_LENGTH`).
const MAX_LOGIN_MESSAGE: usize = 65_535;

/// Serves one connection until it closes, the client logs out, or its login takes longer than
/// `login_timeout`. `login_slot` is held until the login completes.
pub async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<H>,
    login_timeout: Duration,
    mut login_slot: Option<OwnedSemaphorePermit>,
) -> io::Result<()> {
    let deadline = tokio::time::sleep(login_timeout);
    tokio::pin!(deadline);
    let negotiated = tokio::select! {
        () = &mut deadline => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    let Some(socket) = negotiated else {
        return Ok(());
    };
    let parts = socket.into_parts();
    let mut guarded = FramedParts::new(PreLogin::new(parts.io), parts.codec);
    guarded.read_buf = parts.read_buf;
    guarded.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(guarded);
    // What TLS negotiation read ahead has not passed the check yet.
    let read_ahead = socket.read_buffer().to_vec();
    if let Err(e) = socket.get_mut().track(&read_ahead) {
        return refuse(&mut socket, malformed(&e.to_string())).await;
    }

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let logging_in = logging_in(&socket);
        if !logging_in {
            socket.get_mut().logged_in();
            login_slot.take();
        }
        let idle_limit = idle_in_transaction_timeout(&socket);
        // pgwire's decoder has panicked on malformed messages; that ends this connection only.
        let next = std::panic::AssertUnwindSafe(socket.next()).catch_unwind();
        let message = match (logging_in, idle_limit) {
            (true, _) => tokio::select! {
                () = &mut deadline => {
                    let error = fatal("08P01", "authentication timed out: the login took too long");
                    return refuse(&mut socket, error).await;
                }
                message = next => message,
            },
            (false, Some(limit)) => tokio::select! {
                () = tokio::time::sleep(limit) => {
                    let error = fatal(
                        "25P03",
                        "terminating connection due to idle-in-transaction timeout",
                    );
                    return refuse(&mut socket, error).await;
                }
                message = next => message,
            },
            (false, None) => next.await,
        };
        let message = match message {
            Ok(Some(Ok(message))) => message,
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return refuse(&mut socket, malformed(&e.to_string())).await,
            Err(_) => return refuse(&mut socket, malformed("the message cannot be decoded")).await,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        // pgwire's authentication ignores anything else, and the client would wait for an
        // answer until the timeout.
        let login_message = matches!(
            message,
            PgWireFrontendMessage::Startup(_)
                | PgWireFrontendMessage::PasswordMessageFamily(_)
                | PgWireFrontendMessage::CancelRequest(_)
                | PgWireFrontendMessage::SslNegotiation(_)
        );
        if logging_in && !login_message {
            let error = fatal("08P01", "expected a password or SASL response before login");
            return refuse(&mut socket, error).await;
        }
        let wait_for_sync = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await;
        if let Err(mut e) = processed {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, wait_for_sync).await?;
        }
    }
}

fn logging_in<T, S>(socket: &Framed<T, PgWireMessageServerCodec<S>>) -> bool
where
    T: 'static,
{
    matches!(
        socket.state(),
        PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
    )
}

/// `idle_in_transaction_session_timeout`, when the connection is inside a transaction block.
fn idle_in_transaction_timeout<T: 'static, S>(
    socket: &Framed<T, PgWireMessageServerCodec<S>>,
) -> Option<Duration> {
    if socket.transaction_status() == TransactionStatus::Idle {
        return None;
    }
    settings::timeout(socket.metadata(), "idle_in_transaction_session_timeout").flatten()
}

fn fatal(code: &str, message: &str) -> ErrorInfo {
    ErrorInfo::new("FATAL".into(), code.into(), message.into())
}

fn malformed(reason: &str) -> ErrorInfo {
    fatal("08P01", &format!("invalid frontend message: {reason}"))
}

/// Tells the client why, then closes.
async fn refuse<S: 'static>(
    socket: &mut Framed<PreLogin<MaybeTls>, PgWireMessageServerCodec<S>>,
    error: ErrorInfo,
) -> io::Result<()> {
    tracing::debug!(peer = %socket.socket_addr(), code = %error.code, message = %error.message, "connection refused");
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(error.into()))
        .await;
    socket.close().await.or(Ok(()))
}

/// A socket that checks the length of every message it reads until the login completes.
pub struct PreLogin<T> {
    inner: T,
    frame: Frame,
}

/// Where the reader is in the stream of messages.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Reading the 4-byte length of an untyped packet (startup, SSL or cancel request): `have`
    /// bytes of it so far.
    UntypedHeader { have: usize, len: [u8; 4] },
    /// Reading the type byte and 4-byte length of a message.
    TypedHeader { have: usize, len: [u8; 4] },
    /// Skipping the rest of a message; `typed` tells what comes after it.
    Body { left: usize, typed: bool },
    /// Logged in: nothing is checked any more.
    Open,
}

impl<T> PreLogin<T> {
    fn new(inner: T) -> Self {
        PreLogin {
            inner,
            frame: Frame::UntypedHeader {
                have: 0,
                len: [0; 4],
            },
        }
    }

    fn logged_in(&mut self) {
        self.frame = Frame::Open;
    }

    /// Follows the frames through `bytes`, refusing a message longer than allowed.
    fn track(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let (typed, mut have, mut len) = match self.frame {
                Frame::Open => return Ok(()),
                Frame::Body { left, typed } => {
                    let n = left.min(bytes.len());
                    bytes = &bytes[n..];
                    self.frame = match left - n {
                        0 => next_header(typed),
                        left => Frame::Body { left, typed },
                    };
                    continue;
                }
                Frame::UntypedHeader { have, len } => (false, have, len),
                Frame::TypedHeader { have, len } => (true, have, len),
            };
            // A typed header starts with the type byte, which the length does not count.
            let header = 4 + usize::from(typed);
            let n = (header - have).min(bytes.len());
            for &b in &bytes[..n] {
                if have + 4 >= header {
                    len[have + 4 - header] = b;
                }
                have += 1;
            }
            bytes = &bytes[n..];
            if have < header {
                self.frame = match typed {
                    true => Frame::TypedHeader { have, len },
                    false => Frame::UntypedHeader { have, len },
                };
                continue;
            }
            let length = i32::from_be_bytes(len);
            let limit = match typed {
                true => MAX_LOGIN_MESSAGE,
                false => MAX_STARTUP_PACKET,
            };
            let length = usize::try_from(length)
                .ok()
                .filter(|l| (4..=limit).contains(l))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a message of {length} bytes before login (at most {limit})"),
                    )
                })?;
            // After a startup packet come typed messages; after an SSL or GSS request
            // (8 bytes), another untyped packet.
            let typed = typed || length > 8;
            self.frame = match length - 4 {
                0 => next_header(typed),
                left => Frame::Body { left, typed },
            };
        }
        Ok(())
    }
}

fn next_header(typed: bool) -> Frame {
    match typed {
        true => Frame::TypedHeader {
            have: 0,
            len: [0; 4],
        },
        false => Frame::UntypedHeader {
            have: 0,
            len: [0; 4],
        },
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PreLogin<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && !matches!(self.frame, Frame::Open)
        {
            self.track(&buf.filled()[before..])?;
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PreLogin<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(len: u32) -> Vec<u8> {
        let mut packet = len.to_be_bytes().to_vec();
        packet.extend(std::iter::repeat_n(0, len as usize - 4));
        packet
    }

    fn typed(kind: u8, len: u32) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend(len.to_be_bytes());
        message.extend(std::iter::repeat_n(0, len as usize - 4));
        message
    }

    #[test]
    fn follows_frames_in_any_chunking_and_refuses_big_messages() {
        let ok: Vec<u8> = [
            startup(8),
            startup(90),
            typed(b'p', 100),
            typed(b'p', 65_535),
        ]
        .concat();
        for chunk in [1, 3, 7, 1000, ok.len()] {
            let mut reader = PreLogin::new(());
            for piece in ok.chunks(chunk) {
                reader.track(piece).unwrap();
            }
            assert!(matches!(reader.frame, Frame::TypedHeader { have: 0, .. }));
        }
        let too_big = [startup(90), typed(b'Q', 0x3FFF_FFF0)].concat();
        let mut reader = PreLogin::new(());
        // Refused at the header, before a byte of the body arrives.
        assert!(reader.track(&too_big[..95]).is_err());
        let mut reader = PreLogin::new(());
        assert!(reader.track(&10_001u32.to_be_bytes()).is_err());
        let mut reader = PreLogin::new(());
        assert!(reader.track(&[0, 0, 0, 2]).is_err(), "a length under 4");
        // After login nothing is checked.
        let mut reader = PreLogin::new(());
        reader.track(&startup(90)).unwrap();
        reader.logged_in();
        reader.track(&typed(b'Q', 0x3FFF_FFF0)[..5]).unwrap();
    }
}
