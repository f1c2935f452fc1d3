//! `stream`: one capture's packets written as pcapng to a pipe (Wireshark, ssh) as they come, each
//! handed over at once. The capture thread never waits for the reader: packets go through the capture
//! buffer (a ring), and a reader that falls a whole buffer behind loses the oldest of them, counted as
//! the capture's `live_dropped`. Writes never block either: the descriptor is made non-blocking for the
//! stream, so a Ctrl-C, a stop or a reader that went away is seen within a wait slice.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::buffer::Cursor;
use super::session::{Capture, State, StopReason};
use crate::limits::{STREAM_BATCH, STREAM_DRAIN_GRACE, WAIT_SLICE};
use crate::pcap::{
    encode_packet_into, encode_stats, packet_block_len, InterfaceBlock, PcapngWriter, Section,
};

/// Why a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The capture stopped (count, duration, interface removed, or a stop) and every packet it kept
    /// was written.
    Stopped(StopReason),
    /// The reader closed its end (Wireshark stopped, `head` had enough, the SSH session closed).
    ReaderGone,
    /// The capture stopped but the reader took nothing for a while: the rest was not written.
    ReaderStuck,
}

impl StreamEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Stopped(reason) => reason.as_str(),
            StreamEnd::ReaderGone => "reader gone",
            StreamEnd::ReaderStuck => "reader stopped reading",
        }
    }
}

/// What a stream wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streamed {
    /// Packets written whole.
    pub packets: u64,
    pub end: StreamEnd,
}

impl Capture {
    /// Write a pcapng section (header, this capture's interface block), then each packet of this
    /// capture after `cursor` as it is stored, until the capture stops (then its statistics block) or
    /// the reader goes away; the capture is stopped when the stream ends. `tick` is called after each
    /// wait of at most `WAIT_SLICE` (a Ctrl-C can be looked at); when it returns false the capture
    /// is stopped and what it kept is still written.
    pub fn stream_pcapng(
        &self,
        cursor: &mut Cursor,
        fd: BorrowedFd<'_>,
        section: &Section,
        tick: &mut dyn FnMut() -> bool,
    ) -> io::Result<Streamed> {
        let mut out = Output::new(fd)?;
        let ended = self.stream_into(&mut out, cursor, section, tick);
        self.stop();
        ended
    }

    fn stream_into(
        &self,
        out: &mut Output<'_>,
        cursor: &mut Cursor,
        section: &Section,
        tick: &mut dyn FnMut() -> bool,
    ) -> io::Result<Streamed> {
        let mut streamed = Streamed {
            packets: 0,
            end: StreamEnd::ReaderGone,
        };
        let mut header = PcapngWriter::new(Vec::new(), section)?;
        header.add_interface(&InterfaceBlock {
            name: &self.config().iface,
            link: self.link(),
            snaplen: self.config().snaplen,
            filter: self.program(),
        })?;
        let mut pending = header.into_inner();
        // While the reader takes nothing: look at Ctrl-C, and wait on (the capture runs, or it has
        // stopped and the reader took something lately), else give up on the reader.
        let mut waiting = |idle: Duration| {
            if !tick() {
                self.request_stop();
            }
            self.state() == State::Running || idle < STREAM_DRAIN_GRACE
        };
        let mut looked = Instant::now();
        loop {
            // Under steady traffic nothing waits: Ctrl-C is still looked at every slice.
            if looked.elapsed() >= WAIT_SLICE {
                waiting(Duration::ZERO);
                looked = Instant::now();
            }
            // The state is read before the buffer: a capture seen stopped has stored its last packet.
            let state = self.state();
            let batch = self.take_batch(cursor, &mut pending);
            if let (0, State::Stopped(reason)) = (batch, state) {
                let mut stats = self.interface_stats(streamed.packets);
                let s = self.stats();
                stats.buffer_drops = Some(s.buffer_full_drops + s.live_dropped);
                encode_stats(&mut pending, 0, &stats);
                streamed.end = match out.write_all(&pending, &mut waiting)? {
                    Written::All => StreamEnd::Stopped(reason),
                    Written::ReaderGone => StreamEnd::ReaderGone,
                    Written::GaveUp => StreamEnd::ReaderStuck,
                };
                return Ok(streamed);
            }
            match out.write_all(&pending, &mut waiting)? {
                Written::All => streamed.packets += batch,
                Written::ReaderGone => return Ok(streamed),
                Written::GaveUp => {
                    streamed.end = StreamEnd::ReaderStuck;
                    return Ok(streamed);
                }
            }
            pending.clear();
            if batch > 0 {
                continue;
            }
            if out.reader_gone() {
                return Ok(streamed);
            }
            self.wait_stored(cursor, WAIT_SLICE);
            waiting(Duration::ZERO);
            looked = Instant::now();
        }
    }

    /// This capture's packets after `cursor`, encoded onto `pending` up to about `STREAM_BATCH`
    /// bytes, under one lock of the buffer: how many.
    fn take_batch(&self, cursor: &mut Cursor, pending: &mut Vec<u8>) -> u64 {
        let b = self.buffer().lock();
        let (mut missed, mut taken) = (0, 0);
        while pending.len() < STREAM_BATCH {
            let Some(p) = b.next(cursor, &mut missed) else {
                break;
            };
            if p.iface != self.iface() {
                continue;
            }
            let start = pending.len();
            pending.resize(start + packet_block_len(p.data.len()), 0);
            let n = encode_packet_into(
                &mut pending[start..],
                0,
                p.ts_ns,
                p.data,
                p.wirelen,
                Some(p.direction),
            );
            pending.truncate(start + n);
            taken += 1;
        }
        drop(b);
        if missed > 0 {
            self.add_live_dropped(missed);
        }
        taken
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    All,
    ReaderGone,
    GaveUp,
}

/// The stream's descriptor, non-blocking while the stream lasts (its flags are put back after).
struct Output<'a> {
    fd: BorrowedFd<'a>,
    flags: libc::c_int,
}

impl<'a> Output<'a> {
    fn new(fd: BorrowedFd<'a>) -> io::Result<Output<'a>> {
        // SAFETY: fcntl on a descriptor the caller keeps open for the stream's lifetime.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Output { fd, flags })
    }

    /// The reader closed its end: poll says so without writing anything.
    fn reader_gone(&self) -> bool {
        self.poll(Duration::ZERO) & (libc::POLLERR | libc::POLLHUP) != 0
    }

    fn poll(&self, timeout: Duration) -> libc::c_short {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one pollfd we own. An error (EINTR) reads as "nothing happened".
        let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
        if n > 0 {
            p.revents
        } else {
            0
        }
    }

    /// Write `bytes` whole. While the reader has no room, wait for it in slices, as long as
    /// `waiting(time since it last took something)` says so.
    fn write_all(
        &mut self,
        mut bytes: &[u8],
        waiting: &mut dyn FnMut(Duration) -> bool,
    ) -> io::Result<Written> {
        let mut progress = Instant::now();
        while !bytes.is_empty() {
            // SAFETY: writes from a slice we hold to a descriptor the caller keeps open.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n > 0 {
                bytes = &bytes[n as usize..];
                progress = Instant::now();
                continue;
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EPIPE | libc::ECONNRESET) => return Ok(Written::ReaderGone),
                Some(libc::EINTR) => {}
                Some(code) if code == libc::EAGAIN || code == libc::EWOULDBLOCK => {
                    let revents = self.poll(WAIT_SLICE);
                    if revents & libc::POLLOUT == 0 && revents & libc::POLLERR != 0 {
                        return Ok(Written::ReaderGone);
                    }
                }
                _ => return Err(e),
            }
            if !waiting(progress.elapsed()) {
                return Ok(Written::GaveUp);
            }
        }
        Ok(Written::All)
    }
}

impl Drop for Output<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, self.flags) };
    }
}
