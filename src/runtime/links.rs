//! Outgoing connections: a per-peer byte buffer that the protocol thread appends frames to, sent by
//! the protocol thread itself when the socket has room, and by a writer thread otherwise, started only
//! then and ended once it has been idle for a while.
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
//! at once stays buffered for a writer thread, which writes it with ordinary blocking writes. The
//! heartbeat thread's [`Outgoing::push`] sends the same way.
//!
//! Why writer threads come and go: with the direct send, a writer is needed only while a peer reads
//! slower than this member writes (saturation, a big transfer, a peer that stopped). A thread per peer
//! kept for the member's whole life would be idle nearly always, and a member of N would hold N of
//! them. A writer ends after `WRITER_IDLE_MS` (200 ms) without bytes; the next refused send starts
//! another.
//!
//! A peer that stops reading makes its buffer grow; [`Outgoing::stalled_for_ms`] tells the heartbeat
//! thread how long the writer has been unable to make progress, and a stall past the failure timeout is
//! reported as a suspicion (the buffer stays bounded by flow control in the meantime).
//!
//! # Invariants
//! - bytes are written in the order they were appended: a sender sends only while the writer is not
//!   writing, from the buffer's front, under the buffer's lock;
//! - at most one writer thread runs per connection (`writer_running`, set and cleared under the lock);
//!   bytes left in the buffer always have a writer running, or the connection is broken;
//! - after [`Outgoing::close`], what is buffered is written and the connection is shut down;
//! - a write error closes the connection and is reported to the protocol thread once, as an event,
//!   never a panic (a failed non-blocking send leaves the bytes to the writer, which meets the same
//!   error).

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

/// When a peer was last heard from, stamped by its reader thread on every read that brings bytes.
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

/// The writer threads a member's connections started and that may still run: a stop waits for them
/// to write what is queued (see `Member::stop`), then joins them.
pub type WriterThreads = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// How long a writer thread waits for more bytes after its buffer ran dry before it ends. Long enough
/// that a saturated peer keeps its writer between bursts, short enough that an idle member has no
/// writer threads.
const WRITER_IDLE_MS: u64 = 200;

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    closing: bool,
    /// The writer thread took bytes and is writing them: nobody else may send now.
    writing: bool,
    /// A writer thread runs (writing, or waiting for bytes until it has been idle too long).
    writer_running: bool,
    /// When the writer last finished a write or found the buffer empty.
    progress_ms: u64,
    /// With a hop probe only: the seqs of the sampled data frames in `bytes`.
    probed: Vec<u64>,
}

/// Called once, from whichever thread meets a write error first: turns it into an event.
type OnError = Box<dyn FnOnce(std::io::Error) + Send>;

/// The outgoing side of one connection.
pub struct Outgoing {
    buffer: Mutex<Buffer>,
    wake: Condvar,
    clock: Clock,
    /// The writing end: the senders' non-blocking sends and the writer thread's blocking writes.
    stream: TcpStream,
    /// The writer thread's name.
    name: String,
    on_error: Mutex<Option<OnError>>,
    writers: WriterThreads,
    /// `tom-bench --breakdown` only (see [`super::hops`]); `None`: no cost.
    probe: Option<WriteProbe>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("name", &self.name)
            .field("buffer", &*self.buffer.lock())
            .finish_non_exhaustive()
    }
}

impl Outgoing {
    /// The outgoing side of `stream`; no thread runs until the socket refuses bytes. A writer thread
    /// it starts registers in `writers`. `on_error` is called (once, from the thread that meets it)
    /// if a write fails; it turns the error into an event for the protocol thread.
    pub fn start(
        stream: TcpStream,
        clock: Clock,
        name: String,
        writers: WriterThreads,
        on_error: impl FnOnce(std::io::Error) + Send + 'static,
    ) -> Arc<Outgoing> {
        Outgoing::start_probed(stream, clock, name, writers, None, on_error)
    }

    /// [`Outgoing::start`], stamping when the bytes of sampled data frames were written.
    pub(crate) fn start_probed(
        stream: TcpStream,
        clock: Clock,
        name: String,
        writers: WriterThreads,
        probe: Option<WriteProbe>,
        on_error: impl FnOnce(std::io::Error) + Send + 'static,
    ) -> Arc<Outgoing> {
        Arc::new(Outgoing {
            buffer: Mutex::new(Buffer {
                progress_ms: clock.now_ms(),
                ..Buffer::default()
            }),
            wake: Condvar::new(),
            clock,
            stream,
            name,
            on_error: Mutex::new(Some(Box::new(on_error))),
            writers,
            probe,
        })
    }

    /// Appends one frame and sends it as far as the socket takes it without waiting. Never waits for
    /// the network. For threads other than the protocol thread (heartbeats).
    pub fn push(self: &Arc<Self>, frame: &Frame) {
        let mut buffer = self.buffer.lock();
        if buffer.closing {
            return;
        }
        if buffer.bytes.is_empty() {
            buffer.progress_ms = self.clock.now_ms();
        }
        wire::encode(frame, &mut buffer.bytes);
        if let Some(probe) = &self.probe {
            probe.sampled_seqs(frame, &mut buffer.probed);
        }
        self.send_locked(&mut buffer);
    }

    /// Appends frames already encoded (`frame` is what they encode, for the hop probe), without
    /// sending: the protocol thread calls [`Outgoing::send_now`] once it has appended a whole drain's
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

    /// Sends what is buffered now, as far as the socket takes it without waiting, and leaves the rest
    /// to the writer thread (started if none runs). Called by the protocol thread after appending.
    pub fn send_now(self: &Arc<Self>) {
        let mut buffer = self.buffer.lock();
        if !buffer.bytes.is_empty() && !buffer.closing {
            self.send_locked(&mut buffer);
        }
    }

    /// The non-blocking send, unless the writer thread is writing (bytes go out in order); what the
    /// socket does not take, or an error, is the writer's.
    fn send_locked(self: &Arc<Self>, buffer: &mut Buffer) {
        if !buffer.writing {
            // The bytes start leaving now (a failed attempt leaves them to the writer, and this stays
            // the first stamp: the hop after it then includes the wait for the writer).
            if let Some(probe) = &self.probe {
                probe.stamp(Stage::Drained, &buffer.probed);
            }
            // An error (the socket full: WouldBlock; or broken) leaves the bytes to the writer, which
            // meets a broken socket's error again and reports it.
            if let Ok(sent) = send_without_waiting(&self.stream, &buffer.bytes) {
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
        self.wake_writer(buffer);
    }

    /// Wakes the writer thread, or starts one if none runs. A thread that cannot be started is a
    /// write error: the connection is then closed like a broken one.
    fn wake_writer(self: &Arc<Self>, buffer: &mut Buffer) {
        if buffer.writer_running {
            self.wake.notify_one();
            return;
        }
        buffer.writer_running = true;
        let writer = Arc::clone(self);
        let spawned = std::thread::Builder::new().name(self.name.clone()).spawn(move || {
            if let Err(error) = writer.drain() {
                writer.report(error);
            }
        });
        match spawned {
            Ok(handle) => {
                let mut writers = self.writers.lock();
                // Writers that ended (idle, or their connection closed) are forgotten here.
                writers.retain(|thread| !thread.is_finished());
                writers.push(handle);
            }
            Err(error) => {
                buffer.writer_running = false;
                buffer.closing = true;
                let _ = self.stream.shutdown(Shutdown::Both);
                self.report(error);
            }
        }
    }

    fn report(&self, error: std::io::Error) {
        if let Some(on_error) = self.on_error.lock().take() {
            on_error(error);
        }
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.buffer.lock().bytes.len()
    }

    /// True while a writer thread runs for this connection.
    pub fn has_writer_thread(&self) -> bool {
        self.buffer.lock().writer_running
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
    pub fn close(self: &Arc<Self>) {
        let mut buffer = self.buffer.lock();
        if buffer.closing {
            return;
        }
        buffer.closing = true;
        if buffer.writer_running {
            self.wake.notify_one();
            return;
        }
        if !buffer.bytes.is_empty() {
            self.send_locked(&mut buffer);
        }
        if buffer.bytes.is_empty() && !buffer.writer_running {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    /// Writes `batch` in slices of at most [`WRITE_SLICE_LEN`], marking progress after each: a batch
    /// may hold hundreds of MiB (a view change's payloads, a full window of big messages), and writing it
    /// to a live peer may take longer than the failure timeout. Progress is bytes moving, not batches
    /// done, so only a peer that really stops reading is taken for stuck.
    fn write_marking_progress(&self, batch: &[u8]) -> std::io::Result<()> {
        for slice in batch.chunks(WRITE_SLICE_LEN) {
            (&self.stream).write_all(slice)?;
            self.buffer.lock().progress_ms = self.clock.now_ms();
        }
        Ok(())
    }

    /// The writer thread: blocking writes of whatever is buffered until the buffer has stayed empty
    /// for [`WRITER_IDLE_MS`] (the thread ends; the next refused send starts another) or the
    /// connection closes (it writes what is left and shuts the socket down).
    fn drain(&self) -> std::io::Result<()> {
        let mut batch = Vec::new();
        let mut probed = Vec::new();
        let idle = std::time::Duration::from_millis(WRITER_IDLE_MS);
        loop {
            {
                let mut buffer = self.buffer.lock();
                while buffer.bytes.is_empty() && !buffer.closing {
                    if self.wake.wait_for(&mut buffer, idle).timed_out() && buffer.bytes.is_empty() && !buffer.closing {
                        buffer.writer_running = false;
                        return Ok(());
                    }
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
            let result = self.write_marking_progress(&batch);
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
                let mut buffer = self.buffer.lock();
                buffer.closing = true;
                buffer.writer_running = false;
                let _ = self.stream.shutdown(Shutdown::Both);
                return Err(error);
            }
        }
        self.buffer.lock().writer_running = false;
        let _ = self.stream.shutdown(Shutdown::Both);
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
        let writers = WriterThreads::default();
        let outgoing = Outgoing::start(
            writing,
            Clock::new(),
            "slow-peer-writer".into(),
            writers.clone(),
            |_| {},
        );
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
        for writer in std::mem::take(&mut *writers.lock()) {
            writer.join().expect("writer");
        }
        assert!(
            longest_stall_ms < 800,
            "the writer looked stuck for {longest_stall_ms} ms while its peer read steadily"
        );
    }

    /// Bytes the socket refuses start a writer thread, which writes them all and ends once idle; a
    /// close with bytes still buffered writes them before the end of file. A connection that only
    /// ever gets small frames never has a writer.
    #[test]
    fn a_writer_thread_runs_only_while_the_socket_refuses_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let writing = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut reading, _) = listener.accept().expect("accept");
        let writers = WriterThreads::default();
        let outgoing = Outgoing::start(writing, Clock::new(), "lazy-writer".into(), writers.clone(), |_| {});
        let small = Frame::Heartbeat;
        outgoing.push(&small);
        assert!(
            !outgoing.has_writer_thread(),
            "a small frame the socket took started a writer"
        );
        let big = Frame::StatusReport {
            report: "y".repeat(32 * 1024 * 1024),
        };
        outgoing.push(&big);
        assert!(
            outgoing.has_writer_thread(),
            "32 MiB nobody reads yet did not start a writer"
        );
        let mut expected = Vec::new();
        wire::encode(&small, &mut expected);
        wire::encode(&big, &mut expected);
        let mut received = vec![0u8; expected.len()];
        reading.read_exact(&mut received).expect("read");
        assert!(received == expected, "the bytes arrived changed or out of order");
        let idle_by = Instant::now() + Duration::from_secs(10);
        while outgoing.has_writer_thread() && Instant::now() < idle_by {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!outgoing.has_writer_thread(), "the writer did not end once idle");
        outgoing.push(&big);
        outgoing.close();
        let mut rest = Vec::new();
        reading.read_to_end(&mut rest).expect("read to the end of file");
        let mut last = Vec::new();
        wire::encode(&big, &mut last);
        assert!(
            rest == last,
            "a close lost what was buffered ({} of {} bytes)",
            rest.len(),
            last.len()
        );
        for writer in std::mem::take(&mut *writers.lock()) {
            writer.join().expect("writer");
        }
    }
}
