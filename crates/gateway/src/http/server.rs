//! The HTTP server: our own accept loop over hyper's HTTP/1 connections, with the limits axum's
//! `serve` does not have. Without them, clients that trickle a request head (or never send one)
//! held their connections forever, a few hundred of them exhausted the file descriptors so that
//! Safaricom's callbacks could no longer be accepted, and one half-sent head delayed a graceful
//! stop until the client gave up.
//!
//! * **Header-read timeout** (`HTTP_HEADER_READ_TIMEOUT`): a new connection must deliver a whole
//!   request head within it; so must a kept-alive one, counted from the head's first byte.
//! * **Idle timeout** (`HTTP_IDLE_TIMEOUT`): a kept-alive connection waiting for its next
//!   request is closed after it; so is one whose client stops reading an answer.
//! * **Connection cap** (`HTTP_MAX_CONNECTIONS`, never more than the file-descriptor limit
//!   leaves room for): at the cap, no new connection is accepted until one closes; the kernel
//!   queues the newcomers, so a callback waits (at most about a header timeout, since that is
//!   how long a stalled connection can hold its place) instead of being refused.
//! * **Shutdown deadline** (`HTTP_SHUTDOWN_GRACE`): on stop, the listener closes, idle
//!   connections close, requests in flight are finished; whatever is still open at the
//!   deadline is closed.
//!
//! A request's own handler time is bounded separately (the router's timeout layer).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use crate::config::ServerLimits;

impl ServerLimits {
    /// The connection cap, lowered to what the process's file-descriptor limit leaves room for
    /// (a quarter of it, at least 32, kept for the database, Daraja, SMTP and log files).
    pub fn effective_max_connections(&self) -> usize {
        match open_files_limit() {
            Some(limit) => {
                let room = limit.saturating_sub((limit / 4).max(32)).max(1);
                if room < self.max_connections as u64 {
                    tracing::warn!(
                        configured = self.max_connections,
                        open_files_limit = limit,
                        using = room,
                        "HTTP_MAX_CONNECTIONS lowered to what the open-files limit leaves room for"
                    );
                }
                self.max_connections.min(room as usize).max(1)
            }
            None => self.max_connections.max(1),
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process (Linux: `/proc/self/limits`).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops as the module says.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let max_connections = limits.effective_max_connections();
    let permits = Arc::new(Semaphore::new(max_connections));
    let closing = CancellationToken::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // At the cap, stop accepting: the kernel queues newcomers until a connection closes.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors (or memory): wait for some to free up.
                    tracing::warn!(%error, "accepting a connection failed; trying again shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            closing.clone(),
            permit,
        ));
    }
    drop(listener);
    closing.cancel();
    let open = connections.len();
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            still_open = connections.len(),
            was_open = open,
            grace = ?limits.shutdown_grace,
            "HTTP_SHUTDOWN_GRACE reached; closing the connections still open"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    closing: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(ConnectionClock::new(Instant::now()));
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
    });
    let service_clock = clock.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let router = router.clone();
        let in_flight = InFlight::start(service_clock.clone());
        request.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let response = router.oneshot(request.map(Body::new)).await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = closing.cancelled(), if !asked_to_close => {
                asked_to_close = true;
                connection.as_mut().graceful_shutdown();
            }
            reason = clock.expired(limits) => {
                tracing::debug!(reason, "HTTP connection closed");
                return;
            }
        }
    }
}

/// What a connection is doing, as its timeouts need to know.
struct ConnectionClock {
    state: Mutex<ClockState>,
}

struct ClockState {
    /// Requests handed to the router and not answered yet.
    in_flight: usize,
    /// When the request head being read began (the connection's start for its first one).
    head_started: Option<Instant>,
    /// When the connection last became idle (its start, or its last answer).
    idle_since: Instant,
    /// Since when the client has not taken what we write.
    write_blocked_since: Option<Instant>,
}

impl ConnectionClock {
    fn new(now: Instant) -> Self {
        ConnectionClock {
            state: Mutex::new(ClockState {
                in_flight: 0,
                head_started: Some(now),
                idle_since: now,
                write_blocked_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_some(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
        }
    }

    fn write_blocked(&self) {
        self.lock()
            .write_blocked_since
            .get_or_insert_with(Instant::now);
    }

    fn wrote_some(&self) {
        self.lock().write_blocked_since = None;
    }

    /// The earliest deadline that applies now, and which limit it is.
    fn deadline(&self, limits: ServerLimits) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        let mut deadlines = Vec::with_capacity(2);
        if let Some(since) = s.write_blocked_since {
            deadlines.push((since + limits.idle_timeout, "the client stopped reading"));
        }
        if s.in_flight == 0 {
            match s.head_started {
                Some(started) => deadlines.push((
                    started + limits.header_read_timeout,
                    "HTTP_HEADER_READ_TIMEOUT: no whole request head in time",
                )),
                None => deadlines.push((
                    s.idle_since + limits.idle_timeout,
                    "HTTP_IDLE_TIMEOUT: no request in time",
                )),
            }
        }
        deadlines.into_iter().min_by_key(|(at, _)| *at)
    }

    /// Resolves when a limit is passed, with which; never while the limits are kept.
    async fn expired(&self, limits: ServerLimits) -> &'static str {
        loop {
            match self.deadline(limits) {
                Some((at, reason)) if at <= Instant::now() => return reason,
                Some((at, _)) => tokio::time::sleep_until(at).await,
                // A request in flight: its handler's own timeout bounds it; look again later.
                None => {
                    tokio::time::sleep(limits.idle_timeout.min(limits.header_read_timeout)).await
                }
            }
        }
    }
}

/// A request being answered; the connection is not idle while one is.
struct InFlight(Arc<ConnectionClock>);

impl InFlight {
    fn start(clock: Arc<ConnectionClock>) -> Self {
        {
            let mut s = clock.lock();
            s.in_flight += 1;
            s.head_started = None;
        }
        InFlight(clock)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }
}

/// The TCP stream, telling the clock when bytes move.
struct Watched {
    inner: TcpStream,
    clock: Arc<ConnectionClock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read_some();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Watched {
    fn note_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => self.clock.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.clock.wrote_some(),
            Poll::Ready(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
            shutdown_grace: Duration::from_secs(1),
        }
    }

    /// `at` is `expected` from `from`, give or take the time the test itself takes.
    fn about(at: Instant, from: Instant, expected: Duration) -> bool {
        let d = at.saturating_duration_since(from);
        d >= expected && d <= expected + Duration::from_secs(5)
    }

    #[test]
    fn a_new_connection_must_send_its_head_in_time() {
        let start = Instant::now();
        let clock = ConnectionClock::new(start);
        let (at, reason) = clock.deadline(limits()).unwrap();
        assert_eq!(at, start + Duration::from_secs(10));
        assert!(reason.starts_with("HTTP_HEADER_READ_TIMEOUT:"));
        // Bytes of the head do not move the deadline: a trickle is cut off all the same.
        clock.read_some();
        assert_eq!(clock.deadline(limits()).unwrap().0, at);
    }

    #[test]
    fn a_request_in_flight_has_no_connection_deadline_and_idleness_follows_it() {
        let clock = Arc::new(ConnectionClock::new(Instant::now()));
        let request = InFlight::start(clock.clone());
        assert_eq!(clock.deadline(limits()), None);
        drop(request);
        let answered = Instant::now();
        let (at, reason) = clock.deadline(limits()).unwrap();
        assert!(about(
            at,
            answered - Duration::from_secs(1),
            Duration::from_secs(59)
        ));
        assert!(reason.contains("IDLE"));
        // The next request's first byte starts its head timer.
        clock.read_some();
        let (at, reason) = clock.deadline(limits()).unwrap();
        assert!(about(at, answered, Duration::from_secs(10)));
        assert!(reason.starts_with("HTTP_HEADER_READ_TIMEOUT:"));
    }

    #[test]
    fn a_client_that_stops_reading_is_cut_off() {
        let clock = Arc::new(ConnectionClock::new(Instant::now()));
        let _request = InFlight::start(clock.clone());
        let blocked = Instant::now();
        clock.write_blocked();
        let (at, reason) = clock.deadline(limits()).unwrap();
        assert!(about(at, blocked, Duration::from_secs(60)));
        assert!(reason.contains("stopped reading"));
        clock.wrote_some();
        assert_eq!(clock.deadline(limits()), None);
    }

    #[test]
    fn the_cap_leaves_room_for_other_files() {
        let huge = ServerLimits {
            max_connections: usize::MAX,
            ..limits()
        };
        let limit = open_files_limit().expect("Linux tells the open-files limit");
        let cap = huge.effective_max_connections() as u64;
        assert!(cap < limit && cap >= 1, "{cap} of {limit}");
        assert_eq!(
            limits().effective_max_connections(),
            8,
            "a small cap is kept"
        );
    }
}
