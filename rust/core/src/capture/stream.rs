//! `stream`: one capture's packets written as pcapng to a pipe (Wireshark, ssh) as they come, each
//! handed over at once. The capture thread never waits for the reader: packets go through the capture
//! buffer (a ring), and a reader that falls a whole buffer behind loses the oldest of them, counted as
//! the capture's `live_dropped`. Writes never block either (a pipe is written through a description of
//! its own, made non-blocking), so a Ctrl-C, a stop or a reader that went away is seen within a wait
//! slice.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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
    /// A second stop came while the reader was still taking what the capture kept: the rest was not
    /// written.
    GivenUp,
}

impl StreamEnd {
    /// The ends that leave packets the capture kept undelivered, or the capture without its interface:
    /// a stream that ends so has failed.
    pub const FAILURES: [StreamEnd; 3] = [
        StreamEnd::ReaderStuck,
        StreamEnd::GivenUp,
        StreamEnd::Stopped(StopReason::InterfaceGone),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Stopped(reason) => reason.as_str(),
            StreamEnd::ReaderGone => "reader gone",
            StreamEnd::ReaderStuck => "reader stopped reading",
            StreamEnd::GivenUp => "stopped again before the reader took everything",
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
    /// is stopped and what it kept is still written, unless a stop is asked for again.
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
        // Where each packet of `pending` ends: a write cut short still counts the packets it carried.
        let mut ends = Vec::new();
        // While the reader takes nothing: look at Ctrl-C, and wait on (the capture runs, or it has
        // stopped and the reader took something lately and no second stop came), else give up.
        let mut waiting = |idle: Duration| {
            if !tick() {
                self.request_stop();
            }
            if self.stop_requests() >= 2 {
                return Some(StreamEnd::GivenUp);
            }
            let keep_on = self.state() == State::Running || idle < STREAM_DRAIN_GRACE;
            (!keep_on).then_some(StreamEnd::ReaderStuck)
        };
        let mut looked = Instant::now();
        loop {
            // Under steady traffic nothing waits: Ctrl-C is still looked at every slice.
            if looked.elapsed() >= WAIT_SLICE {
                if let Some(end) = waiting(Duration::ZERO).filter(|e| *e == StreamEnd::GivenUp) {
                    streamed.end = end;
                    return Ok(streamed);
                }
                looked = Instant::now();
            }
            // The state is read before the buffer: a capture seen stopped has stored its last packet.
            let state = self.state();
            let batch = self.take_batch(cursor, &mut pending, &mut ends);
            let last = if let (0, State::Stopped(reason)) = (batch, state) {
                let mut stats = self.interface_stats(streamed.packets);
                let s = self.stats();
                stats.buffer_drops = Some(s.buffer_full_drops + s.live_dropped);
                encode_stats(&mut pending, 0, &stats);
                Some(reason)
            } else {
                None
            };
            let (written, bytes) = out.write_all(&pending, &mut waiting)?;
            streamed.packets += ends.iter().filter(|&&end| end <= bytes).count() as u64;
            match (written, last) {
                (Written::All, Some(reason)) => {
                    streamed.end = StreamEnd::Stopped(reason);
                    return Ok(streamed);
                }
                (Written::All, None) => {}
                (Written::ReaderGone, _) => return Ok(streamed),
                (Written::GaveUp(end), _) => {
                    streamed.end = end;
                    return Ok(streamed);
                }
            }
            pending.clear();
            ends.clear();
            if batch > 0 {
                continue;
            }
            if out.reader_gone() {
                return Ok(streamed);
            }
            self.wait_stored(cursor, WAIT_SLICE);
            if let Some(StreamEnd::GivenUp) = waiting(Duration::ZERO) {
                streamed.end = StreamEnd::GivenUp;
                return Ok(streamed);
            }
            looked = Instant::now();
        }
    }

    /// This capture's packets after `cursor`, encoded onto `pending` up to about `STREAM_BATCH`
    /// bytes, under one lock of the buffer, with where each ends in `ends`: how many.
    fn take_batch(&self, cursor: &mut Cursor, pending: &mut Vec<u8>, ends: &mut Vec<usize>) -> u64 {
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
            ends.push(pending.len());
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
    GaveUp(StreamEnd),
}

/// Where the stream writes, without ever blocking. A pipe is written through a description of its own
/// (opened again through /proc), made non-blocking: the one the caller shares with others (a shell
/// pipeline's standard output) keeps its flags, even if this process is killed. A socket is made
/// non-blocking for the stream and put back; a file never blocks.
struct Output<'a> {
    fd: BorrowedFd<'a>,
    /// The pipe's own description, when `fd` is a pipe.
    own: Option<OwnedFd>,
    /// A socket's flags, to put back.
    restore: Option<libc::c_int>,
}

impl<'a> Output<'a> {
    fn new(fd: BorrowedFd<'a>) -> io::Result<Output<'a>> {
        let kind = File::from(fd.try_clone_to_owned()?).metadata()?.file_type();
        let mut out = Output {
            fd,
            own: None,
            restore: None,
        };
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            match reopen_nonblocking(fd) {
                Ok(own) => out.own = Some(own),
                // No reader any more: the first write says so (EPIPE), without blocking.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                Err(e) => return Err(e),
            }
        } else if kind.is_socket() {
            // SAFETY: fcntl on a descriptor the caller keeps open for the stream's lifetime.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
            if flags < 0
                || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }
                    < 0
            {
                return Err(io::Error::last_os_error());
            }
            out.restore = Some(flags);
        }
        Ok(out)
    }

    fn raw(&self) -> libc::c_int {
        self.own
            .as_ref()
            .map_or(self.fd.as_raw_fd(), |o| o.as_fd().as_raw_fd())
    }

    /// The reader closed its end: poll says so without writing anything.
    fn reader_gone(&self) -> bool {
        self.poll(Duration::ZERO) & (libc::POLLERR | libc::POLLHUP) != 0
    }

    fn poll(&self, timeout: Duration) -> libc::c_short {
        let mut p = libc::pollfd {
            fd: self.raw(),
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

    /// Write `bytes` whole, and say how much went out. While the reader has no room, wait for it in
    /// slices, as long as `waiting(time since it last took something)` gives no reason to stop.
    fn write_all(
        &mut self,
        bytes: &[u8],
        waiting: &mut dyn FnMut(Duration) -> Option<StreamEnd>,
    ) -> io::Result<(Written, usize)> {
        let mut done = 0;
        let mut progress = Instant::now();
        while done < bytes.len() {
            let rest = &bytes[done..];
            // SAFETY: writes from a slice we hold to a descriptor open for the stream's lifetime.
            let n = unsafe { libc::write(self.raw(), rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                done += n as usize;
                progress = Instant::now();
                continue;
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EPIPE | libc::ECONNRESET) => return Ok((Written::ReaderGone, done)),
                Some(libc::EINTR) => {}
                Some(code) if code == libc::EAGAIN || code == libc::EWOULDBLOCK => {
                    let revents = self.poll(WAIT_SLICE);
                    if revents & libc::POLLOUT == 0 && revents & libc::POLLERR != 0 {
                        return Ok((Written::ReaderGone, done));
                    }
                }
                _ => return Err(e),
            }
            if let Some(end) = waiting(progress.elapsed()) {
                return Ok((Written::GaveUp(end), done));
            }
        }
        Ok((Written::All, done))
    }
}

/// A description of the pipe `fd` of its own, write-only and non-blocking.
fn reopen_nonblocking(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the descriptor returned is ours to own.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Drop for Output<'_> {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            // SAFETY: as in `new`.
            unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, flags) };
        }
    }
}
