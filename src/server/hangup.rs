//! A client that goes away while its statement runs cancels the statement.
//!
//! The connection loop reads the socket only between statements, so a killed `psql` used to
//! leave its query running (a recursive CTE burned a core forever). Postgres notices only with
//! `client_connection_check_interval`; here every connection is checked the same way, with
//! `poll(POLLRDHUP)` on its socket a few times a second while a statement runs.

use std::os::fd::RawFd;
use std::time::Duration;

use super::session::Session;

/// How often a running statement's socket is looked at.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Cancels `session`'s running statement once the peer of `socket` has closed it. Never returns:
/// it ends with the connection it is polled beside.
pub async fn cancel_on_hangup(socket: RawFd, session: &Session) {
    let mut interval = tokio::time::interval(CHECK_INTERVAL);
    loop {
        interval.tick().await;
        if session.is_running() && peer_closed(socket) {
            tracing::debug!("client gone: its statement is cancelled");
            session.cancel();
        }
    }
}

/// Whether the peer closed its end (or the socket failed).
fn peer_closed(socket: RawFd) -> bool {
    let mut watched = libc::pollfd {
        fd: socket,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `watched` is one valid pollfd and the zero timeout makes poll only look. The fd is
    // the connection's socket, owned by the connection future this one is polled beside, so it
    // is open whenever this runs.
    let ready = unsafe { libc::poll(&mut watched, 1, 0) };
    ready > 0 && watched.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
