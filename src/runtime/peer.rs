//! The reader side of a connection: one blocking thread per connection that decodes frames and feeds
//! them to the protocol thread.
//!
//! The reader is where "heard from" is recorded: every frame, heartbeat or not, stamps the peer's
//! [`LastHeard`] before anything else, so a protocol thread that is busy with a backlog never makes a
//! live peer look silent. Reads block without a timeout: a timeout in the middle of a frame would break
//! the framing; silence is measured by the heartbeat thread instead.
//!
//! # Invariants
//! - frames reach the protocol thread in the order they arrived on the connection;
//! - the reader ends on end-of-file, on a read or decode error (both reported as [`Signal::Closed`]), or
//!   when the protocol thread is gone; it never panics on bad bytes.

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use super::hops::ReadProbe;
use super::links::{Clock, LastHeard};
use super::{ConnId, Signal};
use crate::wire::{self, Frame, ReadError};

/// Read buffer per connection: large enough that a burst of small frames costs one system call.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Starts the reader thread of connection `conn`.
pub fn spawn_reader(
    stream: TcpStream,
    conn: ConnId,
    heard: Arc<LastHeard>,
    clock: Clock,
    signals: Sender<Signal>,
    name: String,
) -> std::io::Result<JoinHandle<()>> {
    spawn_reader_probed(stream, conn, heard, clock, signals, name, None)
}

/// [`spawn_reader`], stamping when sampled data frames were decoded.
pub(crate) fn spawn_reader_probed(
    stream: TcpStream,
    conn: ConnId,
    heard: Arc<LastHeard>,
    clock: Clock,
    signals: Sender<Signal>,
    name: String,
    probe: Option<ReadProbe>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
        loop {
            match wire::read_frame(&mut reader, wire::FRAME_LEN_MAX) {
                Ok(frame) => {
                    if let Some(probe) = &probe {
                        probe.read(&frame);
                    }
                    heard.stamp(clock.now_ms());
                    if matches!(frame, Frame::Heartbeat) {
                        continue;
                    }
                    if signals.send(Signal::Frame { conn, frame }).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let reason = match error {
                        ReadError::Eof => "connection closed".to_string(),
                        other => other.to_string(),
                    };
                    let _ = signals.send(Signal::Closed { conn, reason });
                    return;
                }
            }
        }
    })
}
