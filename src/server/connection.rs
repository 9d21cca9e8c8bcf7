//! One Postgres connection's socket, from accept to close, with what Postgres bounds before login.
//!
//! pgwire's `process_socket` decodes every message with its after-login limits (a 1 GiB Query)
//! during authentication too, and waits 60 s for a login: six clients that sent a startup packet
//! and then a Query header announcing a gigabyte made the server buffer 2 GB. Here the same loop
//! runs over a socket wrapped in [`Frames`], which follows message frames as they arrive: until
//! the login completes it refuses, with `08P01` as Postgres does, a startup packet over 10 000
//! bytes or any later message over 64 KiB; after it, it checks that the text of each Query and
//! Parse is UTF-8, which pgwire's decoder would silently replace (Postgres: `22021`). `authentication_timeout` bounds the whole login, and a
//! message pgwire cannot decode (or panics on) ends the connection with `08P01`, not silently.
//! After login, `idle_in_transaction_session_timeout` closes a connection left inside a
//! transaction block (25P03).

use std::collections::VecDeque;
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
    let mut guarded = FramedParts::new(Frames::new(parts.io), parts.codec);
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
        let has_text = matches!(
            message,
            PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Parse(_)
        );
        if has_text && let Some(invalid) = socket.get_mut().invalid_text() {
            let error = ErrorInfo::new(
                "ERROR".into(),
                "22021".into(),
                format!("invalid byte sequence for encoding \"UTF8\": {invalid}"),
            );
            let error = pgwire::error::PgWireError::UserError(Box::new(error));
            process_error(&mut socket, error, wait_for_sync).await?;
            continue;
        }
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
    socket: &mut Framed<Frames<MaybeTls>, PgWireMessageServerCodec<S>>,
    error: ErrorInfo,
) -> io::Result<()> {
    tracing::debug!(peer = %socket.socket_addr(), code = %error.code, message = %error.message, "connection refused");
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(error.into()))
        .await;
    socket.close().await.or(Ok(()))
}

/// A socket that follows the frames of the messages it reads: it checks the length of every
/// message until the login completes, and the text of Query and Parse messages after it.
pub struct Frames<T> {
    inner: T,
    frame: Frame,
    logged_in: bool,
    /// Per Query or Parse read so far and not yet taken: its first invalid bytes, if any.
    texts: VecDeque<Option<String>>,
}

/// Where the reader is in the stream of messages.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Reading the 4-byte length of an untyped packet (startup, SSL or cancel request): `have`
    /// bytes of it so far.
    UntypedHeader { have: usize, len: [u8; 4], kind: u8 },
    /// Reading the type byte (`kind`) and 4-byte length of a message.
    TypedHeader { have: usize, len: [u8; 4], kind: u8 },
    /// Reading the rest of a message; `typed` tells what comes after it, `text` checks its text.
    Body {
        left: usize,
        typed: bool,
        text: Option<TextCheck>,
    },
}

/// The UTF-8 check of one message's text, fed as it arrives.
#[derive(Debug, Clone, Copy)]
struct TextCheck {
    /// Bytes of a character that may continue in the next chunk.
    pending: [u8; 3],
    pending_len: usize,
    /// NUL bytes after which the text ends (a Parse's name and query; then binary OIDs).
    strings_left: Option<u8>,
    invalid: Option<([u8; 4], usize)>,
}

impl TextCheck {
    fn of(kind: u8) -> Option<Self> {
        let strings_left = match kind {
            b'Q' => None,
            b'P' => Some(2),
            _ => return None,
        };
        Some(TextCheck {
            pending: [0; 3],
            pending_len: 0,
            strings_left,
            invalid: None,
        })
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.invalid.is_some() || self.strings_left == Some(0) {
            return;
        }
        let mut text = bytes;
        if let Some(left) = self.strings_left.as_mut() {
            let mut end = text.len();
            for (i, _) in text.iter().enumerate().filter(|(_, b)| **b == 0) {
                *left -= 1;
                if *left == 0 {
                    end = i;
                    break;
                }
            }
            text = &text[..end];
        }
        let mut joined = self.pending[..self.pending_len].to_vec();
        joined.extend_from_slice(text);
        self.pending_len = 0;
        match std::str::from_utf8(&joined) {
            Ok(_) => {}
            Err(e) => {
                let start = e.valid_up_to();
                let bad = match e.error_len() {
                    Some(n) => n,
                    // A character cut at the chunk's end, unless the text ends here.
                    None if self.strings_left != Some(0) => {
                        let tail = &joined[start..];
                        self.pending[..tail.len()].copy_from_slice(tail);
                        self.pending_len = tail.len();
                        return;
                    }
                    None => joined.len() - start,
                };
                self.fail(&joined[start..start + bad]);
            }
        }
    }

    fn fail(&mut self, bytes: &[u8]) {
        let mut kept = [0; 4];
        let n = bytes.len().min(4);
        kept[..n].copy_from_slice(&bytes[..n]);
        self.invalid = Some((kept, n));
    }

    /// At the message's end: its first invalid bytes as Postgres shows them (`0xff 0xfe`).
    fn finish(mut self) -> Option<String> {
        if self.pending_len > 0 && self.invalid.is_none() {
            let pending = self.pending;
            self.fail(&pending[..self.pending_len]);
        }
        let (bytes, n) = self.invalid?;
        Some(
            bytes[..n]
                .iter()
                .map(|b| format!("0x{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

impl<T> Frames<T> {
    fn new(inner: T) -> Self {
        Frames {
            inner,
            frame: Frame::UntypedHeader {
                have: 0,
                len: [0; 4],
                kind: 0,
            },
            logged_in: false,
            texts: VecDeque::new(),
        }
    }

    /// From now on messages may be as long as pgwire takes them.
    fn logged_in(&mut self) {
        self.logged_in = true;
    }

    /// Whether the Query or Parse just decoded had text that is not UTF-8: its first invalid
    /// bytes.
    fn invalid_text(&mut self) -> Option<String> {
        self.texts.pop_front().flatten()
    }

    /// Follows the frames through `bytes`, refusing a message longer than allowed.
    fn track(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let (typed, mut have, mut len, mut kind) = match self.frame {
                Frame::Body {
                    left,
                    typed,
                    mut text,
                } => {
                    let n = left.min(bytes.len());
                    if let Some(text) = text.as_mut() {
                        text.feed(&bytes[..n]);
                    }
                    bytes = &bytes[n..];
                    self.frame = match left - n {
                        0 => {
                            if let Some(text) = text {
                                self.texts.push_back(text.finish());
                            }
                            next_header(typed)
                        }
                        left => Frame::Body { left, typed, text },
                    };
                    continue;
                }
                Frame::UntypedHeader { have, len, kind } => (false, have, len, kind),
                Frame::TypedHeader { have, len, kind } => (true, have, len, kind),
            };
            // A typed header starts with the type byte, which the length does not count.
            let header = 4 + usize::from(typed);
            let n = (header - have).min(bytes.len());
            for &b in &bytes[..n] {
                if have + 4 >= header {
                    len[have + 4 - header] = b;
                } else {
                    kind = b;
                }
                have += 1;
            }
            bytes = &bytes[n..];
            if have < header {
                self.frame = match typed {
                    true => Frame::TypedHeader { have, len, kind },
                    false => Frame::UntypedHeader { have, len, kind },
                };
                continue;
            }
            let length = i32::from_be_bytes(len);
            let limit = match (self.logged_in, typed) {
                (true, _) => i32::MAX as usize,
                (false, true) => MAX_LOGIN_MESSAGE,
                (false, false) => MAX_STARTUP_PACKET,
            };
            let length = usize::try_from(length)
                .ok()
                .filter(|l| (4..=limit).contains(l))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        match self.logged_in {
                            true => format!("a message length of {length} bytes"),
                            false => format!(
                                "a message of {length} bytes before login (at most {limit})"
                            ),
                        },
                    )
                })?;
            // After a startup packet come typed messages; after an SSL or GSS request
            // (8 bytes), another untyped packet.
            let typed = typed || length > 8;
            let text = match self.logged_in && typed {
                true => TextCheck::of(kind),
                false => None,
            };
            self.frame = match length - 4 {
                0 => {
                    if let Some(text) = text {
                        self.texts.push_back(text.finish());
                    }
                    next_header(typed)
                }
                left => Frame::Body { left, typed, text },
            };
        }
        Ok(())
    }
}

fn next_header(typed: bool) -> Frame {
    let (have, len, kind) = (0, [0; 4], 0);
    match typed {
        true => Frame::TypedHeader { have, len, kind },
        false => Frame::UntypedHeader { have, len, kind },
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Frames<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            self.track(&buf.filled()[before..])?;
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Frames<T> {
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
            let mut reader = Frames::new(());
            for piece in ok.chunks(chunk) {
                reader.track(piece).unwrap();
            }
            assert!(matches!(reader.frame, Frame::TypedHeader { have: 0, .. }));
        }
        let too_big = [startup(90), typed(b'Q', 0x3FFF_FFF0)].concat();
        let mut reader = Frames::new(());
        // Refused at the header, before a byte of the body arrives.
        assert!(reader.track(&too_big[..95]).is_err());
        let mut reader = Frames::new(());
        assert!(reader.track(&10_001u32.to_be_bytes()).is_err());
        let mut reader = Frames::new(());
        assert!(reader.track(&[0, 0, 0, 2]).is_err(), "a length under 4");
        // After login nothing is checked.
        let mut reader = Frames::new(());
        reader.track(&startup(90)).unwrap();
        reader.logged_in();
        reader.track(&typed(b'Q', 0x3FFF_FFF0)[..5]).unwrap();
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend((body.len() as u32 + 4).to_be_bytes());
        message.extend(body);
        message
    }

    #[test]
    fn finds_invalid_utf8_in_queries_and_parses_in_any_chunking() {
        let stream: Vec<u8> = [
            message(b'Q', "SELECT 'é€😀'\0".as_bytes()),
            message(b'Q', b"SELECT '\xff\xfe'\0"),
            message(b'd', b"\xff binary copy data"),
            // A Parse's text is its two strings; the parameter types after them are binary.
            message(b'P', b"\0SELECT $1\0\0\x01\x00\x00\x00\xa0"),
            message(b'P', b"s\xe2\x82\0SELECT 1\0\0\0"),
            message(b'Q', b"SELECT '\xe2\x82'\0"),
        ]
        .concat();
        let expected = [
            None,
            Some("0xff"),
            None,
            Some("0xe2 0x82"),
            Some("0xe2 0x82"),
        ];
        for chunk in [1, 2, 3, 5, stream.len()] {
            let mut reader = Frames::new(());
            reader.track(&startup(90)).unwrap();
            reader.logged_in();
            let mut found = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.track(piece).unwrap();
                while let Some(text) = reader.texts.pop_front() {
                    found.push(text);
                }
            }
            let expected: Vec<Option<String>> =
                expected.iter().map(|e| e.map(str::to_string)).collect();
            assert_eq!(found, expected, "chunks of {chunk}");
        }
    }

    /// Fuzz target: however a byte stream is cut into reads, the frames followed, the limits
    /// refused and the invalid text found are the same, and nothing panics.
    #[test]
    fn fuzz_frames() {
        type Followed = (std::result::Result<(), String>, VecDeque<Option<String>>);
        fn follow<'a>(logged_in: bool, mut pieces: impl Iterator<Item = &'a [u8]>) -> Followed {
            let mut reader = Frames::new(());
            if logged_in {
                reader.track(&startup(90)).unwrap();
                reader.logged_in();
            }
            let outcome = pieces.try_for_each(|piece| reader.track(piece));
            (outcome.map_err(|e| e.to_string()), reader.texts)
        }
        bolero::check!()
            .with_type::<(bool, Vec<u8>, Vec<u8>)>()
            .for_each(|(logged_in, stream, cuts)| {
                let whole = follow(*logged_in, std::iter::once(stream.as_slice()));
                let mut rest = stream.as_slice();
                let mut cut = cuts.iter().map(|&n| usize::from(n).max(1));
                let pieces = std::iter::from_fn(|| {
                    if rest.is_empty() {
                        return None;
                    }
                    let n = cut.next().unwrap_or(rest.len()).min(rest.len());
                    let (piece, after) = rest.split_at(n);
                    rest = after;
                    Some(piece)
                });
                let chunked = follow(*logged_in, pieces);
                // A refused stream stops at the refusal; both must refuse alike.
                assert_eq!(whole.0, chunked.0);
                if whole.0.is_ok() {
                    assert_eq!(whole.1, chunked.1);
                }
            });
    }
}
