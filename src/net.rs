//! Socket plumbing shared by the helper and the members: binding a listener by probing ports,
//! connecting with bounded retries, reading or writing one frame before a deadline, and the accept loop
//! that serves each connection on its own thread.
//!
//! # Invariants
//! - The socket that won the port probe *is* the listener: there is no close-and-rebind window in which
//!   another process could take the port. `SO_REUSEADDR` is set (so a port in `TIME_WAIT` after a crash
//!   can be bound again at once); `SO_REUSEPORT` never is, so two live listeners never share a port.
//! - Every stream has `TCP_NODELAY`: frames are small and latency-bound, and writers batch on their own.
//! - A handshake read has a *total* deadline, not a per-read timeout, so a peer trickling one byte at a
//!   time cannot hold a handshake thread longer than the deadline. The read timeout is cleared when the
//!   stream is handed on, because the runtime's readers block without one.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::warn;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::wire::{self, Frame, ReadError};

/// Ports tried upward from the first port before giving up, unless configured otherwise.
pub const PORT_SPAN_DEFAULT: u16 = 100;

/// Connections a listener queues before `accept`: enough for a whole group dialling at once.
const LISTEN_BACKLOG: i32 = 128;

/// Binds a TCP listener on `host`, trying `first_port`, `first_port + 1`, … for `port_span` ports and
/// keeping the first that is free. `first_port = 0` lets the system pick one port.
///
/// `host` is an IP address or a host name ("0.0.0.0" listens on every interface).
pub fn bind_probing(host: &str, first_port: u16, port_span: u16) -> Result<TcpListener> {
    let ip = resolve(host, 0)?
        .first()
        .map(|addr| addr.ip())
        .ok_or_else(|| Error::InvalidConfig(format!("bind host {host:?} has no address")))?;
    if first_port == 0 {
        return Ok(bind_one(SocketAddr::new(ip, 0))?);
    }
    for offset in 0..port_span.max(1) {
        let Some(port) = first_port.checked_add(offset) else {
            break;
        };
        match bind_one(SocketAddr::new(ip, port)) {
            Ok(listener) => return Ok(listener),
            // Taken, or reserved for another user: the next port may be free.
            Err(error) if matches!(error.kind(), io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied) => {}
            Err(error) => return Err(Error::Io(error)),
        }
    }
    Err(Error::PortsExhausted {
        first: first_port,
        span: port_span.max(1),
    })
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Every address of `host:port` (`host` an IP address or a host name).
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

/// Splits `HOST:PORT` (IPv6 literals in brackets: `[::1]:9999`).
pub fn split_host_port(addr: &str) -> Result<(String, u16)> {
    let invalid = || Error::InvalidConfig(format!("{addr:?} is not HOST:PORT"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_string(), port))
}

/// Connects to `host:port`, trying each of its addresses for at most `timeout`, and sets `TCP_NODELAY`.
pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in resolve(host, port)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
}

/// How often and how long to try a connection.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (at least one is made).
    pub attempts: u32,
    /// Pause between two attempts.
    pub interval_ms: u64,
    /// Longest wait for one attempt.
    pub connect_timeout_ms: u64,
}

/// [`connect`] with up to `retry.attempts` attempts, logging each failure with `what` (e.g. "helper").
/// Returns the last error when every attempt failed.
pub fn connect_retrying(host: &str, port: u16, retry: Retry, what: &str) -> io::Result<TcpStream> {
    let attempts = retry.attempts.max(1);
    let mut attempt = 1;
    loop {
        match connect(host, port, Duration::from_millis(retry.connect_timeout_ms)) {
            Ok(stream) => return Ok(stream),
            Err(error) if attempt >= attempts => return Err(error),
            Err(error) => {
                warn!("cannot reach {what} at {host}:{port} (attempt {attempt} of {attempts}): {error}; retrying");
                std::thread::sleep(Duration::from_millis(retry.interval_ms));
                attempt += 1;
            }
        }
    }
}

/// Reads one frame of at most `len_max` bytes from `stream`, all of it before `deadline`.
/// A missed deadline is a [`ReadError::Io`] of kind `TimedOut`. Reads no byte past the frame.
pub fn read_frame_before(
    stream: &TcpStream,
    deadline: Instant,
    len_max: usize,
) -> std::result::Result<Frame, ReadError> {
    let mut reader = DeadlineReader { stream, deadline };
    let result = wire::read_frame(&mut reader, len_max);
    if let Err(error) = stream.set_read_timeout(None) {
        return Err(ReadError::Io(error));
    }
    result
}

/// Writes one frame to `stream`, giving up after `timeout` (a peer that does not read cannot hold us).
pub fn write_frame(stream: &TcpStream, frame: &Frame, timeout: Duration) -> io::Result<()> {
    let mut bytes = Vec::new();
    wire::encode(frame, &mut bytes);
    stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let result = (&*stream).write_all(&bytes);
    stream.set_write_timeout(None)?;
    result
}

/// A stream whose every read waits at most until one fixed deadline.
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        match (&*self.stream).read(buf) {
            // A socket read timeout shows up as WouldBlock on Unix and TimedOut on Windows.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
            }
            other => other,
        }
    }
}

/// The shared state of an accept loop: a stop flag, and a count of connections still in their
/// handshake, capped so that idle strangers cannot pile up threads without bound.
#[derive(Debug)]
pub struct Listening {
    local_addr: SocketAddr,
    stop: AtomicBool,
    pending: AtomicUsize,
    pending_max: usize,
}

impl Listening {
    /// State for a listener bound to `local_addr`, allowing `pending_max` pending handshakes.
    pub fn new(local_addr: SocketAddr, pending_max: usize) -> Arc<Listening> {
        Arc::new(Listening {
            local_addr,
            stop: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            pending_max,
        })
    }

    /// The listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True once [`Listening::set_stopped`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Marks the loop stopped; it notices at its next `accept` (see [`Listening::wake`]).
    pub fn set_stopped(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// `accept` has no timeout: a connection of our own wakes it to see the stop flag.
    pub fn wake(&self) {
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
    }
}

/// One connection counted as pending; dropping it ends the count (handshake judged, or failed).
#[derive(Debug)]
pub struct PendingSlot(Arc<Listening>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections until `listening` is stopped, running `serve` for each on its own thread named
/// `thread_name`. Beyond the pending cap, a connection is closed at once and logged under `label`.
pub fn accept_loop<F>(listener: TcpListener, listening: Arc<Listening>, label: &str, thread_name: &str, serve: F)
where
    F: Fn(TcpStream, SocketAddr, PendingSlot) + Send + Clone + 'static,
{
    loop {
        let accepted = listener.accept();
        if listening.is_stopped() {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: give running handshakes time to finish.
                warn!("{label}: accept failed: {error}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if listening.pending.fetch_add(1, Ordering::SeqCst) >= listening.pending_max {
            listening.pending.fetch_sub(1, Ordering::SeqCst);
            warn!("{label}: refused {peer}: too many pending handshakes");
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let slot = PendingSlot(Arc::clone(&listening));
        let serve = serve.clone();
        let spawned = std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || serve(stream, peer, slot));
        if let Err(error) = spawned {
            warn!("{label}: cannot serve {peer}: {error}");
        }
    }
}

/// Sends a refusal (best effort, bounded by `timeout`), logs it under `label`, and closes the stream.
pub fn refuse(stream: &TcpStream, peer: SocketAddr, reason: &str, label: &str, timeout: Duration) {
    warn!("{label}: refused {peer}: {reason}");
    let refusal = Frame::Refuse {
        reason: reason.to_string(),
    };
    let _ = write_frame(stream, &refusal, timeout);
    let _ = stream.shutdown(Shutdown::Both);
}
