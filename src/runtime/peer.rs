//! The reader side of a connection: one blocking thread per connection that decodes frames and feeds
//! them to the protocol thread.
//!
//! The reader is where "heard from" is recorded: every read that brings bytes, a heartbeat, any frame
//! or part of one, stamps the peer's [`LastHeard`] before anything else. So a protocol thread that is
//! busy with a backlog never makes a live peer look silent, and neither does a long frame still
//! arriving: a sponsor's snapshot chunk (up to 4 MiB) on a slow link, with the sponsor's promise and
//! heartbeats queued behind it on the same connection, is progress, not silence (issue 26,
//! behaviour 2). Reads block without a timeout: a timeout in the middle of a frame would break
//! the framing; silence is measured by the heartbeat thread instead.
//!
//! # Invariants
//! - frames reach the protocol thread in the order they arrived on the connection;
//! - the reader ends on end-of-file, on a read or decode error (both reported as [`Signal::Closed`]), or
//!   when the protocol thread is gone; it never panics on bad bytes.

use std::io::{BufReader, Read};
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
        let stamping = Stamping { stream, heard, clock };
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stamping);
        loop {
            match wire::read_frame(&mut reader, wire::FRAME_LEN_MAX) {
                Ok(frame) => {
                    if let Some(probe) = &probe {
                        probe.read(&frame);
                    }
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

/// A connection's bytes, stamping "heard from" on every read that brings some.
struct Stamping {
    stream: TcpStream,
    heard: Arc<LastHeard>,
    clock: Clock,
}

impl Read for Stamping {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.stream.read(buf)?;
        if read > 0 {
            self.heard.stamp(self.clock.now_ms());
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::*;

    /// Part of a long frame is hearing from the peer (a snapshot chunk on a slow link is progress).
    #[test]
    fn part_of_a_frame_is_heard_before_the_frame_is_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let heard = Arc::new(LastHeard::default());
        let clock = Clock::new();
        let (signals, frames) = crossbeam_channel::unbounded();
        let reader = spawn_reader(stream, 1, heard.clone(), clock, signals, "test-reader".into()).unwrap();
        let mut bytes = Vec::new();
        wire::encode(
            &Frame::StatusReport {
                report: "x".repeat(100_000),
            },
            &mut bytes,
        );
        std::thread::sleep(Duration::from_millis(20));
        writer.write_all(&bytes[..bytes.len() / 2]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while heard.get_ms() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(heard.get_ms() >= 20, "half a frame was heard");
        assert!(frames.try_recv().is_err(), "and no frame is whole yet");
        writer.write_all(&bytes[bytes.len() / 2..]).unwrap();
        assert!(matches!(
            frames.recv_timeout(Duration::from_secs(10)),
            Ok(Signal::Frame { conn: 1, .. })
        ));
        drop(writer);
        reader.join().unwrap();
    }
}
