//! The listener every HTTP server of the engine serves on.

use axum::serve::{ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};

/// `listener`, with `TCP_NODELAY` on every connection it accepts. `axum::serve` leaves Nagle's
/// algorithm on: a response written in two segments (head, then body) then waits for the
/// peer's delayed acknowledgement of the first, up to 40 ms, on every request of a kept-alive
/// connection. A socket that refuses the option is served anyway.
pub fn without_delay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(|stream: &mut TcpStream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
    })
}
