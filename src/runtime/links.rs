//! Outgoing connections: a per-peer byte buffer that the protocol thread appends frames to, sent by
//! the protocol thread itself when the socket has room, and by a writer thread per peer otherwise.
//!
//! Why a buffer and not a queue of frames: the protocol thread must never block on a socket, and a
//! buffer turns "many small frames while the socket is busy" into one large write, which is where the
//! throughput on loopback comes from. Appending is a short lock on the buffer, never a wait for the
//! network.
//!
//! Why the protocol thread sends first: waking a writer thread for every burst costs two context
//! switches and tens of microseconds of latency, while the socket's send buffer is nearly always
//! empty enough to take the whole burst at once. So after each drain of its input the protocol thread
//! calls [`Outgoing::send_now`]: one `send` with `MSG_DONTWAIT` (a per-call non-blocking send through
//! `socket2`). It never waits, and it leaves the socket blocking for the reader thread that shares
//! it (`set_nonblocking` would make that reader's blocking reads fail). What the socket does not take
//! at once stays buffered and the writer thread is woken to write it with ordinary blocking writes.
//! A send timeout instead would make the protocol thread wait up to that timeout on a full socket.
//!
//! A peer that stops reading makes its buffer grow; [`Outgoing::stalled_for_ms`] tells the heartbeat
//! thread how long the writer has been unable to make progress, and a stall past the failure timeout is
//! reported as a suspicion (the buffer stays bounded by flow control in the meantime).
//!
//! # Invariants
//! - bytes are written in the order they were appended: the protocol thread sends only while the
//!   writer is not writing and sends from the buffer's front, under the buffer's lock;
//! - after [`Outgoing::close`], the writer writes what is buffered and then shuts the connection down;
//! - a write error ends the writer and is reported to the protocol thread as an event, never a panic
//!   (a failed non-blocking send leaves the bytes to the writer, which meets the same error).

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::hops::{Stage, WriteProbe};
use crate::wire::{self, Frame};

/// The most bytes one write call carries before the writer marks progress (see
/// [`Outgoing::stalled_for_ms`]).
const WRITE_SLICE_LEN: usize = 1024 * 1024;

/// Milliseconds since a fixed start, shared by the threads of one member.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock { start: Instant::now() }
    }
    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// When a peer was last heard from, stamped by its reader thread on every frame.
#[derive(Debug, Default)]
pub struct LastHeard(AtomicU64);

impl LastHeard {
    /// Records that the peer was heard at `now_ms`.
    pub fn stamp(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
    /// When the peer was last heard.
    pub fn get_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    closing: bool,
    /// The writer thread took bytes and is writing them: nobody else may send now.
    writing: bool,
    /// When the writer last finished a write or found the buffer empty.
    progress_ms: u64,
    /// With a hop probe only: the seqs of the sampled data frames in `bytes`.
    probed: Vec<u64>,
}

/// The outgoing side of one connection.
#[derive(Debug)]
pub struct Outgoing {
    buffer: Mutex<Buffer>,
    wake: Condvar,
    clock: Clock,
    /// The same socket as the writer's, for the protocol thread's non-blocking sends; `None` if it
    /// could not be cloned (then the writer thread sends everything).
    direct: Option<TcpStream>,
    /// `tom-bench --breakdown` only (see [`super::hops`]); `None`: no cost.
    probe: Option<WriteProbe>,
}

impl Outgoing {
    /// Starts the writer thread for `stream`. `on_error` is called (from the writer thread) if a write
    /// fails; it turns the error into an event for the protocol thread.
    pub fn start(
        stream: TcpStream,
        clock: Clock,
        name: String,
        on_error: impl FnOnce(std::io::Error) + Send + 'static,
    ) -> std::io::Result<(Arc<Outgoing>, JoinHandle<()>)> {
        Outgoing::start_probed(stream, clock, name, None, on_error)
    }

    /// [`Outgoing::start`], stamping when the bytes of sampled data frames were written.
    pub(crate) fn start_probed(
        stream: TcpStream,
        clock: Clock,
        name: String,
        probe: Option<WriteProbe>,
        on_error: impl FnOnce(std::io::Error) + Send + 'static,
    ) -> std::io::Result<(Arc<Outgoing>, JoinHandle<()>)> {
        let outgoing = Arc::new(Outgoing {
            buffer: Mutex::new(Buffer {
                progress_ms: clock.now_ms(),
                ..Buffer::default()
            }),
            wake: Condvar::new(),
            clock,
            direct: stream.try_clone().ok(),
            probe,
        });
        let writer = Arc::clone(&outgoing);
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            if let Err(error) = writer.drain_into(stream) {
                on_error(error);
            }
        })?;
        Ok((outgoing, handle))
    }

    /// Appends one frame and wakes the writer. Never waits for the network. For threads other than
    /// the protocol thread (heartbeats).
    pub fn push(&self, frame: &Frame) {
        let mut buffer = self.buffer.lock();
        if buffer.closing {
            return;
        }
        let was_empty = buffer.bytes.is_empty();
        wire::encode(frame, &mut buffer.bytes);
        if let Some(probe) = &self.probe {
            probe.sampled_seqs(frame, &mut buffer.probed);
        }
        if was_empty {
            buffer.progress_ms = self.clock.now_ms();
        }
        self.wake.notify_one();
    }

    /// Appends frames already encoded (`frame` is what they encode, for the hop probe), without waking
    /// anyone: the protocol thread calls [`Outgoing::send_now`] once it has appended a whole drain's
    /// frames.
    pub fn append(&self, encoded: &[u8], frame: &Frame) {
        let mut buffer = self.buffer.lock();
        if buffer.closing {
            return;
        }
        if buffer.bytes.is_empty() {
            buffer.progress_ms = self.clock.now_ms();
        }
        buffer.bytes.extend_from_slice(encoded);
        if let Some(probe) = &self.probe {
            probe.sampled_seqs(frame, &mut buffer.probed);
        }
    }

    /// Sends what is buffered now, as far as the socket takes it without waiting, and wakes the
    /// writer thread for the rest. Called by the protocol thread after appending.
    pub fn send_now(&self) {
        let mut buffer = self.buffer.lock();
        if buffer.bytes.is_empty() {
            return;
        }
        if let (Some(stream), false, false) = (&self.direct, buffer.writing, buffer.closing) {
            // The bytes start leaving now (a failed attempt leaves them to the writer, and this stays
            // the first stamp: the hop after it then includes the wait for the writer).
            if let Some(probe) = &self.probe {
                probe.stamp(Stage::Drained, &buffer.probed);
            }
            // An error (the socket full: WouldBlock; or broken) leaves the bytes to the writer.
            if let Ok(sent) = send_without_waiting(stream, &buffer.bytes) {
                buffer.bytes.drain(..sent);
                buffer.progress_ms = self.clock.now_ms();
                if buffer.bytes.is_empty() {
                    if let Some(probe) = &self.probe {
                        probe.stamp(Stage::Written, &buffer.probed);
                    }
                    buffer.probed.clear();
                    return;
                }
            }
        }
        self.wake.notify_one();
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.buffer.lock().bytes.len()
    }

    /// How long bytes have been waiting without the writer making progress (0 if nothing waits).
    pub fn stalled_for_ms(&self) -> u64 {
        let buffer = self.buffer.lock();
        if buffer.bytes.is_empty() {
            0
        } else {
            self.clock.now_ms().saturating_sub(buffer.progress_ms)
        }
    }

    /// Writes what is buffered, then shuts the connection down; later frames are dropped.
    pub fn close(&self) {
        self.buffer.lock().closing = true;
        self.wake.notify_one();
    }

    /// Writes `batch` in slices of at most [`WRITE_SLICE_LEN`], marking progress after each: a batch
    /// may hold hundreds of MiB (a view change's payloads, a full window of big messages), and writing it
    /// to a live peer may take longer than the failure timeout. Progress is bytes moving, not batches
    /// done, so only a peer that really stops reading is taken for stuck.
    fn write_marking_progress(&self, stream: &mut TcpStream, batch: &[u8]) -> std::io::Result<()> {
        for slice in batch.chunks(WRITE_SLICE_LEN) {
            stream.write_all(slice)?;
            self.buffer.lock().progress_ms = self.clock.now_ms();
        }
        Ok(())
    }

    fn drain_into(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut batch = Vec::new();
        let mut probed = Vec::new();
        loop {
            {
                let mut buffer = self.buffer.lock();
                while buffer.bytes.is_empty() && !buffer.closing {
                    self.wake.wait(&mut buffer);
                }
                if buffer.bytes.is_empty() {
                    break;
                }
                std::mem::swap(&mut buffer.bytes, &mut batch);
                buffer.writing = true;
                if self.probe.is_some() {
                    std::mem::swap(&mut buffer.probed, &mut probed);
                }
            }
            if let Some(probe) = &self.probe {
                probe.stamp(Stage::Drained, &probed);
            }
            let result = self.write_marking_progress(&mut stream, &batch);
            if let (Some(probe), true) = (&self.probe, result.is_ok()) {
                probe.stamp(Stage::Written, &probed);
                probed.clear();
            }
            batch.clear();
            // Keep the allocation for the next batch, but do not hold on to a burst's worth of memory.
            if batch.capacity() > 1 << 20 {
                batch = Vec::new();
            }
            {
                let mut buffer = self.buffer.lock();
                buffer.progress_ms = self.clock.now_ms();
                buffer.writing = false;
            }
            if let Err(error) = result {
                self.buffer.lock().closing = true;
                let _ = stream.shutdown(Shutdown::Both);
                return Err(error);
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
        Ok(())
    }
}

/// One `send` that never waits: `MSG_DONTWAIT` makes this call alone non-blocking, so the reader
/// thread's blocking reads on the same socket are untouched; `MSG_NOSIGNAL` turns a closed peer into
/// an error instead of a signal, as std's own writes do.
#[cfg(target_os = "linux")]
fn send_without_waiting(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    const MSG_DONTWAIT: i32 = 0x40;
    const MSG_NOSIGNAL: i32 = 0x4000;
    socket2::SockRef::from(stream).send_with_flags(bytes, MSG_DONTWAIT | MSG_NOSIGNAL)
}

/// Elsewhere the writer thread sends everything.
#[cfg(not(target_os = "linux"))]
fn send_without_waiting(_stream: &TcpStream, _bytes: &[u8]) -> std::io::Result<usize> {
    Err(std::io::ErrorKind::WouldBlock.into())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// A peer that reads steadily, if slowly, is never taken for one that stopped reading: a batch of
    /// 24 MiB takes about two seconds to drain here, yet the writer's stall stays far below that.
    #[test]
    fn a_peer_that_reads_slowly_but_steadily_is_never_taken_for_stuck() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let writing = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut reading, _) = listener.accept().expect("accept");
        let (outgoing, writer) =
            Outgoing::start(writing, Clock::new(), "slow-peer-writer".into(), |_| {}).expect("writer");
        let frame = Frame::StatusReport {
            report: "x".repeat(1024 * 1024),
        };
        let frames = 24;
        for _ in 0..frames {
            outgoing.push(&frame);
        }
        let mut expected = Vec::new();
        wire::encode(&frame, &mut expected);
        let total = expected.len() * frames;
        let reader = std::thread::spawn(move || {
            let mut chunk = vec![0u8; 256 * 1024];
            let mut read = 0;
            while read < total + 1 {
                read += reading.read(&mut chunk).expect("read");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Heartbeats keep coming while the batch drains, as they do in a member: they wait behind it.
        let mut longest_stall_ms = 0;
        let mut polls = 0u64;
        while !reader.is_finished() {
            if polls % 5 == 0 {
                outgoing.push(&Frame::Heartbeat);
            }
            polls += 1;
            longest_stall_ms = longest_stall_ms.max(outgoing.stalled_for_ms());
            std::thread::sleep(Duration::from_millis(10));
        }
        reader.join().expect("reader");
        outgoing.close();
        writer.join().expect("writer");
        assert!(
            longest_stall_ms < 800,
            "the writer looked stuck for {longest_stall_ms} ms while its peer read steadily"
        );
    }
}
