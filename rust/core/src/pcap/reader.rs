//! Read pcap (microsecond or nanosecond, either byte order) and pcapng (SHB, IDB, EPB, SPB, OPB, either
//! byte order). A regular file is memory-mapped: records are slices of the map, nothing is copied. A pipe,
//! a FIFO, a device or standard input cannot be mapped; it is read through a window instead: more is read
//! only when the next record is not complete in it, and what was handed out before is dropped, so a
//! record comes out as soon as it has arrived and memory stays within one record and one read, whatever
//! the length of the stream. A gzip-compressed input, file or stream, is inflated as it is read and goes
//! through a window too (`gzip.rs`). Both go through one parser, which works on a view of the input at
//! absolute offsets and says when the view ends too early.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use memmap2::Mmap;

use super::chunks::{PcapLayout, PCAP_HEADER_LEN};
use super::guard::MapGuard;
use super::gzip;
use super::MAX_RECORD;
use crate::packet::{Direction, LinkType};

#[derive(Debug, thiserror::Error)]
#[error("'{path}': {kind}")]
pub struct ReadError {
    pub path: String,
    pub kind: ReadErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadErrorKind {
    #[error("no such file")]
    NotFound,
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    #[error("empty file (expected a pcap or pcapng capture)")]
    Empty,
    #[error("is a folder (expected a pcap or pcapng capture)")]
    Folder,
    #[error("not a pcap or pcapng file (starts with 0x{0:08x})")]
    NotCapture(u32),
    /// gzip data that inflates to something else (its first four bytes; `None`: to nothing).
    #[error("gzip data, but not of a pcap or pcapng file ({})", inflated_start(*.0))]
    NotCaptureInside(Option<u32>),
    #[error("file ends inside record {record} at byte {offset}; the capture was cut short")]
    Truncated { record: u64, offset: usize },
    #[error("record {record} at byte {offset} claims {len} bytes, more than the {max}-byte limit")]
    Oversized {
        record: u64,
        offset: usize,
        len: u32,
        max: u32,
    },
    /// A pcapng block from a stream larger than a stream's window holds (a packet block's data is
    /// limited by `Oversized`; this is about its options, or an interface or section block).
    #[error("pcapng block at byte {offset} claims {len} bytes, more than the {max} bytes a stream may hold at once; save it to a file and read that")]
    BlockTooLarge {
        offset: usize,
        len: usize,
        max: usize,
    },
    #[error("malformed pcapng block at byte {offset}: {reason}")]
    BadBlock { offset: usize, reason: &'static str },
    #[error("record {record} names interface {id}, which the file never described")]
    UnknownInterface { record: u64, id: u32 },
    #[error("the file was cut short while it was being read (another program truncated it)")]
    CutWhileReading,
    /// The gzip data ended before its end: the packets before are good, the rest is lost.
    #[error("the gzip data ends early, after {inflated} bytes of the capture; the .gz file was cut short")]
    GzipCut { inflated: usize },
    /// The decoder refused the gzip data (a bad header, a deflate error, a checksum that differs).
    #[error("the gzip data is damaged after {inflated} bytes of the capture ({reason})")]
    GzipDamaged { inflated: usize, reason: String },
    #[error("interrupted")]
    Interrupted,
}

fn inflated_start(magic: Option<u32>) -> String {
    match magic {
        Some(m) => format!("it inflates to bytes starting with 0x{m:08x}"),
        None => "it inflates to nothing".into(),
    }
}

/// One captured packet, borrowed from the file's map or from a stream's window.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// 1-based position in the file: Wireshark's frame number.
    pub number: u64,
    /// Where the record (its header, or its pcapng block) starts in the input.
    pub offset: usize,
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub wirelen: u32,
    pub link: LinkType,
    pub iface: Option<&'a str>,
    pub direction: Option<Direction>,
}

/// What a reader of a stream asks and tells its caller while it waits for input. A closure
/// `FnMut() -> bool` is a waiter that only answers `interrupted`.
pub trait Waiter {
    /// Whether to give up (Ctrl-C): asked every 100 ms while a stream is silent, and every 100 ms
    /// while it flows.
    fn interrupted(&mut self) -> bool;

    /// The stream has nothing more for now, and the reader is about to wait for it: the moment to hand
    /// on what was gathered (lines, packets to write). `true` stops the reading, as an interruption.
    fn idle(&mut self) -> bool {
        false
    }
}

impl<F: FnMut() -> bool> Waiter for F {
    fn interrupted(&mut self) -> bool {
        self()
    }
}

#[derive(Clone, Copy)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link: LinkType,
    },
    Pcapng,
}

pub struct CaptureFile {
    input: Input,
    format: Format,
    path: String,
    /// How far the reader of a mapped file has gone, published every `KEPT_BEHIND` bytes: the helper
    /// that maps pages ahead of it stays within `PREFAULT_AHEAD` of this.
    progress: AtomicUsize,
}

/// A regular file is mapped; a pipe or a device (`-`, `/dev/stdin`, `<(zcat x.pcap.gz)`) cannot be, and
/// is read through a window as its bytes arrive.
enum Input {
    /// The guard is dropped before the map: the fields drop in order. The file is kept to ask its size.
    Mapped(MapGuard, Mmap, File),
    Stream(Stream),
}

impl Input {
    /// Whether the file now ends at or before `offset`: the zeros the map shows past a new end, within
    /// the last page the file still has, raise no fault. Asked only where a header is all zeros.
    fn cut_before(&self, offset: usize) -> bool {
        match self {
            Input::Mapped(_, _, file) => file.metadata().is_ok_and(|m| m.len() <= offset as u64),
            Input::Stream(_) => false,
        }
    }
}

/// Where the bytes of a stream come from.
struct Stream {
    /// The input's bytes, inflated when it is gzip. Reading it never waits on `fd`: where that has
    /// nothing yet, the read says `WouldBlock` (see `Polled`).
    from: Mutex<Box<dyn Read + Send>>,
    /// The descriptor under `from`, to wait on interruptibly (`None`: a regular file, or a system
    /// where reads block).
    fd: Option<i32>,
    /// `from` inflates gzip data: its failures say where the compressed data is cut or damaged.
    gzip: bool,
    /// The bytes read while opening (the magic, and pcap's file header): the window the stream's one
    /// cursor starts with.
    head: Mutex<Option<Window>>,
}

/// How long one wait for a stream lasts before `interrupted` is asked again.
const STREAM_WAIT_MS: i32 = 100;
/// A capture's first four bytes: enough to refuse what is not one (`/dev/zero`, `/dev/urandom`) before
/// reading any further.
const MAGIC_LEN: usize = 4;
/// What one read of a stream asks for (a pipe gives what it holds, at most its buffer: 64 KiB).
const READ_CHUNK: usize = 256 << 10;
/// The longest block held from a stream: a packet of the largest size, with room for its options.
pub const MAX_BLOCK: usize = MAX_RECORD as usize + (64 << 10);
/// What a section may describe: interface names are kept up to this many bytes (a name is 15 on Linux,
/// 255 anywhere), and at most this many interfaces, so a stream's memory stays bounded whatever it says.
const MAX_IFACE_NAME: usize = 256;
const MAX_INTERFACES: usize = 65_536;

/// The largest length up to `max` that ends on a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

impl Stream {
    /// Read at most `want` bytes at the end of `into`'s filled part (`into.buf[into.end..]`); 0 at the
    /// end of the stream. Before waiting for a silent stream, `waiter.idle()`; while waiting, and
    /// every 100 ms of a stream that never pauses, `waiter.interrupted()`.
    ///
    /// The read comes first and the wait only when it finds nothing: a decoder may have bytes to give
    /// from what it holds while its descriptor is silent.
    fn read_into(
        &self,
        into: &mut Window,
        want: usize,
        waiter: &mut dyn Waiter,
    ) -> Result<usize, ReadErrorKind> {
        into.make_room(want);
        loop {
            // A stream that never pauses is asked about Ctrl-C all the same.
            if into.asked.elapsed() >= Duration::from_millis(STREAM_WAIT_MS as u64) {
                if waiter.interrupted() {
                    return Err(ReadErrorKind::Interrupted);
                }
                into.asked = Instant::now();
            }
            let read = self
                .from
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .read(&mut into.buf[into.end..into.end + want]);
            match read {
                Ok(n) => {
                    into.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Nothing yet (also: a pipe opened before its writer).
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if waiter.idle() {
                        return Err(ReadErrorKind::Interrupted);
                    }
                    if let Some(fd) = self.fd {
                        wait_readable(fd, waiter)?;
                    }
                }
                Err(e) if self.gzip => return Err(gzip::failure(e, into.limit())),
                Err(e) => return Err(ReadErrorKind::Io(e)),
            }
        }
    }
}

/// A descriptor whose reads never wait: `WouldBlock` while it has nothing to read, so that the waiting
/// is done by `Stream::read_into`, which asks about Ctrl-C meanwhile.
struct Polled {
    from: Box<dyn Read + Send>,
    fd: i32,
}

impl Read for Polled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !poll_fd(self.fd, 0) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.from.read(buf)
    }
}

/// The part of a stream held in memory: `buf[start..end]` are the stream's bytes from offset `base`.
/// Bytes before the cursor's record are dropped when more room is needed.
struct Window {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: usize,
    /// The stream has ended: no more bytes will come.
    ended: bool,
    /// When `interrupted` was last asked.
    asked: Instant,
}

impl Window {
    fn new() -> Window {
        Window {
            buf: Vec::new(),
            start: 0,
            end: 0,
            base: 0,
            ended: false,
            asked: Instant::now(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn view(&self) -> View<'_> {
        View {
            bytes: self.bytes(),
            base: self.base,
            ended: self.ended,
            mapped: false,
        }
    }

    /// The offset just past the bytes held.
    fn limit(&self) -> usize {
        self.base + (self.end - self.start)
    }

    /// Drop the bytes before offset `from` (the cursor has moved past them).
    fn consume_to(&mut self, from: usize) {
        let n = from.saturating_sub(self.base).min(self.end - self.start);
        self.start += n;
        self.base += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Room for `want` more bytes after `end`: the bytes held move to the front first, and the buffer
    /// grows only when what is held and `want` do not fit.
    fn make_room(&mut self, want: usize) {
        if self.buf.len() - self.end >= want {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        (self.start, self.end) = (0, self.end - self.start);
        if self.buf.len() - self.end < want {
            // Exactly what is needed: the window's size is what bounds memory.
            self.buf.reserve_exact(self.end + want - self.buf.len());
            self.buf.resize(self.end + want, 0);
        }
    }

    /// Read until the bytes up to offset `until` are held, or the stream ends. `greedy`: read as much
    /// as a read gives (else exactly what is missing, for the magic number).
    fn fill(
        &mut self,
        stream: &Stream,
        until: usize,
        greedy: bool,
        waiter: &mut dyn Waiter,
    ) -> Result<(), ReadErrorKind> {
        while self.limit() < until && !self.ended {
            let missing = until - self.limit();
            let want = if greedy {
                missing.max(READ_CHUNK)
            } else {
                missing
            };
            if stream.read_into(self, want, waiter)? == 0 {
                self.ended = true;
            }
        }
        Ok(())
    }

    /// Read and drop the stream's bytes up to offset `until`; whether it went that far.
    fn skip_to(
        &mut self,
        stream: &Stream,
        until: usize,
        waiter: &mut dyn Waiter,
    ) -> Result<bool, ReadErrorKind> {
        loop {
            self.consume_to(until);
            if self.base == until {
                return Ok(true);
            }
            if self.ended {
                return Ok(false);
            }
            if stream.read_into(self, READ_CHUNK, waiter)? == 0 {
                self.ended = true;
            }
        }
    }

    /// Bring in what `short` asks for (the cursor's record starts at `from`).
    fn provide(
        &mut self,
        stream: &Stream,
        from: usize,
        short: &Short,
        waiter: &mut dyn Waiter,
    ) -> Result<(), ReadErrorKind> {
        if short.skip {
            if !self.skip_to(stream, short.until, waiter)? {
                return Err(ReadErrorKind::Truncated {
                    record: short.record,
                    offset: short.offset,
                });
            }
            return Ok(());
        }
        if short.until - short.offset > MAX_BLOCK {
            return Err(ReadErrorKind::BlockTooLarge {
                offset: short.offset,
                len: short.until - short.offset,
                max: MAX_BLOCK,
            });
        }
        self.consume_to(from);
        self.fill(stream, short.until, true, waiter)
    }
}

/// Whether `fd` has something to read (or its end, or an error the read will report) within
/// `timeout_ms`.
#[cfg(unix)]
fn poll_fd(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    let signalled =
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
    n != 0 && !signalled
}

#[cfg(not(unix))]
fn poll_fd(_: i32, _: i32) -> bool {
    true
}

/// Wait until `fd` has something to read (or its end), asking `interrupted` every so often.
fn wait_readable(fd: i32, waiter: &mut dyn Waiter) -> Result<(), ReadErrorKind> {
    while !poll_fd(fd, STREAM_WAIT_MS) {
        if waiter.interrupted() {
            return Err(ReadErrorKind::Interrupted);
        }
    }
    Ok(())
}

const PCAP_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

impl CaptureFile {
    /// Open `path` (`-`: standard input).
    pub fn open(path: &Path) -> Result<CaptureFile, ReadError> {
        CaptureFile::open_interruptible(path, &mut || false)
    }

    /// Open `path`; while a pipe or device is silent, `interrupted` is asked every 100 ms whether to
    /// give up (Ctrl-C).
    pub fn open_interruptible(
        path: &Path,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<CaptureFile, ReadError> {
        let shown = path.display().to_string();
        let err = |kind| ReadError {
            path: shown.clone(),
            kind,
        };
        if path == Path::new("-") {
            let (from, fd) = stdin().map_err(|e| err(ReadErrorKind::Io(e)))?;
            return CaptureFile::from_stream(shown.clone(), from, fd, interrupted);
        }
        let file = open_without_waiting(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err(ReadErrorKind::NotFound),
            _ => err(ReadErrorKind::Io(e)),
        })?;
        let meta = file.metadata().map_err(|e| err(ReadErrorKind::Io(e)))?;
        if meta.is_dir() {
            return Err(err(ReadErrorKind::Folder));
        }
        // What cannot be mapped (a FIFO, a device, an empty file) is read as a stream.
        if !(meta.is_file() && meta.len() > 0) {
            let fd = raw_fd(&file);
            return CaptureFile::from_stream(shown.clone(), Box::new(file), fd, interrupted);
        }
        // SAFETY: the map is read-only; a file truncated under us by another process would raise
        // SIGBUS on the pages past its new end, which the guard turns into zeros and a mark that the
        // reader checks. It guards the map before its first byte is read.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| err(ReadErrorKind::Io(e)))?;
        let guard = MapGuard::register(map.as_ptr(), map.len());
        let format = match guard.is_registered().then(|| mapped_format(&guard, &map)) {
            Some(Ok(Some(format))) => format,
            Some(Err(kind)) => return Err(err(kind)),
            // Compressed: inflated as it is read, through a window (the file's position is still 0).
            // Or every guard is in use (that many files read at once): this one is read as a stream,
            // which no cut can crash.
            Some(Ok(None)) | None => {
                drop((guard, map));
                return CaptureFile::from_stream(shown.clone(), Box::new(file), None, interrupted);
            }
        };
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(CaptureFile {
            input: Input::Mapped(guard, map, file),
            format,
            path: shown,
            progress: AtomicUsize::new(0),
        })
    }

    /// A capture read from `from` as it arrives, named `path` in messages; `fd` is the descriptor
    /// `from` reads, if it may keep us waiting. Only its start is read here: its first four bytes must
    /// be a capture's magic number before more is read. gzip data is inflated, and the magic looked for
    /// in what it inflates to.
    fn from_stream(
        path: String,
        from: Box<dyn Read + Send>,
        fd: Option<i32>,
        mut interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<CaptureFile, ReadError> {
        let from: Box<dyn Read + Send> = match fd {
            Some(fd) => Box::new(Polled { from, fd }),
            None => from,
        };
        let mut stream = Stream {
            from: Mutex::new(from),
            fd,
            gzip: false,
            head: Mutex::new(None),
        };
        let mut head = Window::new();
        let format = (|| {
            // Before the magic is in, ask for no more than it: a device that never ends is refused at
            // once.
            head.fill(&stream, MAGIC_LEN, false, &mut interrupted)?;
            if gzip::is_gzip(head.bytes()) {
                let from = stream.from.get_mut().unwrap_or_else(|e| e.into_inner());
                let rest = std::mem::replace(from, Box::new(std::io::empty()));
                *from = gzip::inflate(head.bytes().to_vec(), rest);
                stream.gzip = true;
                head = Window::new();
                head.fill(&stream, MAGIC_LEN, false, &mut interrupted)?;
            }
            if head.bytes().is_empty() {
                return Err(if stream.gzip {
                    ReadErrorKind::NotCaptureInside(None)
                } else {
                    ReadErrorKind::Empty
                });
            }
            if let Magic::Pcap { .. } = detect_magic(head.bytes())? {
                head.fill(&stream, PCAP_HEADER_LEN, true, &mut interrupted)?;
            }
            detect(head.bytes())
        })()
        .map_err(|kind| ReadError {
            path: path.clone(),
            kind: match kind {
                ReadErrorKind::NotCapture(magic) if stream.gzip => {
                    ReadErrorKind::NotCaptureInside(Some(magic))
                }
                kind => kind,
            },
        })?;
        *stream.head.lock().unwrap_or_else(|e| e.into_inner()) = Some(head);
        Ok(CaptureFile {
            input: Input::Stream(stream),
            format,
            path,
            progress: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the input is a stream (read as it arrives) rather than a mapped file.
    pub fn is_stream(&self) -> bool {
        matches!(self.input, Input::Stream(_))
    }

    /// Whether another program cut the file while it was mapped: a page past the new end was touched,
    /// or the file is now shorter than its map.
    pub fn was_cut(&self) -> bool {
        match &self.input {
            Input::Mapped(guard, map, _) => {
                guard.was_cut() || self.input.cut_before(map.len().saturating_sub(1))
            }
            Input::Stream(_) => false,
        }
    }

    /// Map the file's pages into our page tables ahead of the reader, a piece at a time, until done or
    /// `stop` is set, never more than `PREFAULT_AHEAD` past where the reader is. Run on another thread,
    /// it takes the page faults off the reader's path; the pages themselves are already in the page
    /// cache (or are read in now). A no-op for a stream.
    pub fn prefault(&self, stop: &AtomicBool) {
        const PIECE: usize = 4 << 20;
        let Input::Mapped(_, map, _) = &self.input else {
            return;
        };
        // From where the reader starts (a cursor made by `cursor_at` starts inside the file).
        let mut at = 0;
        while at < map.len() && !stop.load(Ordering::Relaxed) {
            // Never behind the reader: pages mapped there again would stay, since the reader releases
            // only what it passes from now on (a reader of large records outruns this helper).
            let reader = self.progress.load(Ordering::Relaxed);
            at = at.max(reader & !(PAGE - 1));
            if at >= reader + PREFAULT_AHEAD {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let len = PIECE.min(map.len() - at);
            #[cfg(target_os = "linux")]
            if map
                .advise_range(memmap2::Advice::PopulateRead, at, len)
                .is_err()
            {
                return; // an old kernel (before 5.14): the reader faults the pages in itself
            }
            at += len;
        }
    }

    /// Take the pages from the start of `first` to the end of `last`, slices of this file's map (`last`
    /// not before `first`), out of our page tables, as `release_behind` does behind the reader: the
    /// kernel's copy of them for a write mapped them again, each with its neighbours (fault-around),
    /// behind the reader's window. Nothing for slices of anything else.
    pub fn release_spanning(&self, first: &[u8], last: &[u8]) {
        /// What a fault maps around the faulting page, at most (the kernel's `fault_around_bytes`).
        const FAULT_AROUND: usize = 64 << 10;
        let Input::Mapped(_, map, _) = &self.input else {
            return;
        };
        let offset = |p: *const u8| (p as usize).checked_sub(map.as_ptr() as usize);
        let (Some(start), Some(end)) = (offset(first.as_ptr()), offset(last.as_ptr_range().end))
        else {
            return;
        };
        if start <= end && end <= map.len() {
            let end = end.next_multiple_of(FAULT_AROUND);
            release_range(map, start & !(FAULT_AROUND - 1)..end);
        }
    }

    /// A mapped classic pcap file, to be read in buffers on several threads: the file, its layout,
    /// and its length when it was opened (what the map holds, and the general parser reads).
    pub fn pcap_source(&self) -> Option<(&File, PcapLayout, usize)> {
        match (&self.input, self.format) {
            (
                Input::Mapped(_, map, file),
                Format::Pcap {
                    big_endian,
                    nanos,
                    link,
                },
            ) => Some((
                file,
                PcapLayout {
                    big_endian,
                    nanos,
                    link,
                },
                map.len(),
            )),
            _ => None,
        }
    }

    /// A cursor at the record of a mapped classic pcap file that starts at `offset` and is numbered
    /// `number` (where a walk in chunks left off).
    pub fn cursor_at(&self, offset: usize, number: u64) -> Cursor {
        let mut cursor = self.cursor();
        debug_assert!(self.pcap_source().is_some() && offset >= PCAP_HEADER_LEN);
        let state = &mut cursor.state;
        state.offset = offset;
        state.prefetched = offset;
        state.released = offset.saturating_sub(KEPT_BEHIND) & !(PAGE - 1);
        state.number = number - 1;
        self.progress.store(offset, Ordering::Relaxed);
        cursor
    }

    /// The whole record (16-byte header and data) of `record`, as stored in a mapped file, when it is
    /// laid out exactly as our pcap writer would write it: classic pcap, microseconds, little-endian.
    /// It lives as long as the file, not only as the cursor's record.
    pub fn stored_pcap_record(&self, record: &Record) -> Option<&[u8]> {
        let Format::Pcap {
            big_endian: false,
            nanos: false,
            ..
        } = self.format
        else {
            return None;
        };
        let Input::Mapped(_, map, _) = &self.input else {
            return None;
        };
        map.get(record.offset..record.offset + 16 + record.data.len())
    }

    /// The link type of a pcap file, or of the first interface of a pcapng file (`None`: it describes
    /// none). For pcapng, `cursor` is moved up to that interface's description, before any packet.
    pub fn first_link(
        &self,
        cursor: &mut Cursor,
        waiter: &mut dyn Waiter,
    ) -> Result<Option<LinkType>, ReadError> {
        if let Format::Pcap { link, .. } = self.format {
            return Ok(Some(link));
        }
        if cursor.state.first_link.is_none() && !cursor.state.done {
            if let Parsed::Failed(kind) = self.step(cursor, waiter, true) {
                return Err(self.error(kind));
            }
        }
        Ok(cursor.state.first_link)
    }

    /// A cursor at the first record. A stream has one cursor: only the first one made reads it.
    pub fn cursor(&self) -> Cursor {
        let (offset, big_endian) = match self.format {
            Format::Pcap { big_endian, .. } => (PCAP_HEADER_LEN, big_endian),
            Format::Pcapng => (0, false),
        };
        self.progress.store(offset, Ordering::Relaxed);
        let window = match &self.input {
            Input::Mapped(..) => None,
            Input::Stream(stream) => {
                let head = stream.head.lock().unwrap_or_else(|e| e.into_inner()).take();
                debug_assert!(head.is_some(), "a stream has one cursor");
                head
            }
        };
        Cursor {
            state: State {
                offset,
                prefetched: offset,
                released: 0,
                big_endian,
                number: 0,
                ifaces: Vec::new(),
                first_link: None,
                // A stream read already: this cursor finds nothing.
                done: self.is_stream() && window.is_none(),
                current: None,
            },
            window,
        }
    }

    fn error(&self, kind: ReadErrorKind) -> ReadError {
        ReadError {
            path: self.path.clone(),
            kind,
        }
    }

    /// Move `cursor` to the next record: `None` at the end of the input or after an error. The record
    /// is then `current(cursor)`.
    #[inline]
    pub fn advance(
        &self,
        cursor: &mut Cursor,
        waiter: &mut dyn Waiter,
    ) -> Option<Result<(), ReadError>> {
        if cursor.state.done {
            cursor.state.current = None;
            return None;
        }
        let parsed = self.step(cursor, waiter, false);
        if let Parsed::Packet = parsed {
            if let Input::Mapped(_, map, _) = &self.input {
                release_behind(map, &mut cursor.state, &self.progress);
            }
            return Some(Ok(()));
        }
        cursor.state.current = None;
        match parsed {
            Parsed::Packet | Parsed::End => None,
            Parsed::Failed(kind) => Some(Err(self.error(kind))),
            // A view at the end of the input is never short, and a stream's is filled until it is not.
            Parsed::Short(short) => Some(Err(self.error(ReadErrorKind::Truncated {
                record: short.record,
                offset: short.offset,
            }))),
        }
    }

    /// The record `advance` moved `cursor` to.
    #[inline]
    pub fn current<'a>(&'a self, cursor: &'a Cursor) -> Option<Record<'a>> {
        let raw = cursor.state.current.as_ref()?;
        let (bytes, base) = match (&self.input, &cursor.window) {
            (Input::Mapped(_, map, _), _) => (&map[..], 0),
            (Input::Stream(_), Some(w)) => (w.bytes(), w.base),
            (Input::Stream(_), None) => return None,
        };
        let data = raw.offset + raw.head as usize - base;
        Some(Record {
            number: cursor.state.number,
            offset: raw.offset,
            ts_ns: raw.ts_ns,
            data: &bytes[data..data + raw.len as usize],
            wirelen: raw.wirelen,
            link: raw.link,
            iface: cursor
                .state
                .ifaces
                .get(raw.iface as usize)
                .and_then(|i| i.name.as_deref()),
            direction: raw.direction,
        })
    }

    /// The next record: `advance`, then `current`.
    pub fn next_record<'a>(
        &'a self,
        cursor: &'a mut Cursor,
        waiter: &mut dyn Waiter,
    ) -> Option<Result<Record<'a>, ReadError>> {
        match self.advance(cursor, waiter)? {
            Ok(()) => self.current(cursor).map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    /// Every record (or error) in turn, to `each`, from a new cursor.
    pub fn for_each_record(&self, mut each: impl FnMut(Result<Record<'_>, ReadError>)) {
        let mut cursor = self.cursor();
        while let Some(r) = self.next_record(&mut cursor, &mut || false) {
            each(r);
        }
    }

    /// Parse at the cursor; a stream's window is filled (or skipped through) until the parser has what
    /// it needs. `peek`: stop at the first interface description, or before a packet.
    #[inline(always)]
    fn step(&self, cursor: &mut Cursor, waiter: &mut dyn Waiter, peek: bool) -> Parsed {
        match &self.input {
            Input::Mapped(guard, map, _) => {
                // Checked before each record is trusted, and so also after the last one was read.
                if guard.was_cut() {
                    cursor.state.done = true;
                    return Parsed::Failed(ReadErrorKind::CutWhileReading);
                }
                let view = View {
                    bytes: map,
                    base: 0,
                    ended: true,
                    mapped: true,
                };
                self.parse(view, &mut cursor.state, peek)
            }
            Input::Stream(stream) => self.step_stream(stream, cursor, waiter, peek),
        }
    }

    #[inline(never)]
    fn step_stream(
        &self,
        stream: &Stream,
        cursor: &mut Cursor,
        waiter: &mut dyn Waiter,
        peek: bool,
    ) -> Parsed {
        let Some(window) = &mut cursor.window else {
            return Parsed::End;
        };
        loop {
            let short = match self.parse(window.view(), &mut cursor.state, peek) {
                Parsed::Short(short) => short,
                parsed => return parsed,
            };
            match window.provide(stream, cursor.state.offset, &short, waiter) {
                Ok(()) if short.skip => cursor.state.offset = short.until,
                Ok(()) => {}
                Err(kind) => {
                    cursor.state.done = true;
                    return Parsed::Failed(kind);
                }
            }
        }
    }

    #[inline(always)]
    fn parse(&self, view: View<'_>, state: &mut State, peek: bool) -> Parsed {
        let mut step = Step {
            view,
            s: state,
            input: &self.input,
        };
        match self.format {
            Format::Pcap { nanos, link, .. } => step.next_pcap(nanos, link),
            Format::Pcapng => step.next_block(peek),
        }
    }
}

/// What the start of a guarded map says: a capture's format, or `None` for gzip data. A file cut under
/// the map meanwhile reads as zeros there, and is said to have been cut.
fn mapped_format(guard: &MapGuard, map: &[u8]) -> Result<Option<Format>, ReadErrorKind> {
    let format = if gzip::is_gzip(map) {
        Ok(None)
    } else {
        detect(map).map(Some)
    };
    if guard.was_cut() {
        return Err(ReadErrorKind::CutWhileReading);
    }
    format
}

/// Open for reading without blocking in `open` itself: a FIFO with no writer yet would hold the call
/// there, out of reach of Ctrl-C. The wait happens when the stream is read instead, which is
/// interruptible.
fn open_without_waiting(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

#[cfg(unix)]
fn raw_fd(file: &File) -> Option<i32> {
    use std::os::fd::AsRawFd;
    Some(file.as_raw_fd())
}

#[cfg(not(unix))]
fn raw_fd(_: &File) -> Option<i32> {
    None
}

/// Standard input, read straight from its descriptor (a copy of it): no buffer of our own that a wait
/// on the descriptor would not see.
#[cfg(unix)]
fn stdin() -> std::io::Result<(Box<dyn Read + Send>, Option<i32>)> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let file = File::from(fd);
    let raw = file.as_raw_fd();
    Ok((Box::new(file), Some(raw)))
}

#[cfg(not(unix))]
fn stdin() -> std::io::Result<(Box<dyn Read + Send>, Option<i32>)> {
    Ok((Box::new(std::io::stdin()), None))
}

/// What the first four bytes say: pcapng, or pcap in which byte order and time resolution.
enum Magic {
    Pcapng,
    Pcap { big_endian: bool, nanos: bool },
}

fn detect_magic(b: &[u8]) -> Result<Magic, ReadErrorKind> {
    let first = u32::from_le_bytes(
        b.get(0..4)
            .ok_or(ReadErrorKind::Truncated {
                record: 0,
                offset: 0,
            })?
            .try_into()
            .unwrap(),
    );
    Ok(match first {
        PCAPNG_SHB => Magic::Pcapng,
        PCAP_MICROS => Magic::Pcap {
            big_endian: false,
            nanos: false,
        },
        PCAP_NANOS => Magic::Pcap {
            big_endian: false,
            nanos: true,
        },
        m if m.swap_bytes() == PCAP_MICROS => Magic::Pcap {
            big_endian: true,
            nanos: false,
        },
        m if m.swap_bytes() == PCAP_NANOS => Magic::Pcap {
            big_endian: true,
            nanos: true,
        },
        m => return Err(ReadErrorKind::NotCapture(m.swap_bytes())),
    })
}

fn detect(b: &[u8]) -> Result<Format, ReadErrorKind> {
    let (big_endian, nanos) = match detect_magic(b)? {
        Magic::Pcapng => return Ok(Format::Pcapng),
        Magic::Pcap { big_endian, nanos } => (big_endian, nanos),
    };
    if b.len() < PCAP_HEADER_LEN {
        return Err(ReadErrorKind::Truncated {
            record: 0,
            offset: b.len(),
        });
    }
    let link = read_u32(b, 20, big_endian) & 0x0fff_ffff;
    Ok(Format::Pcap {
        big_endian,
        nanos,
        link: LinkType::from_number(link & 0xffff),
    })
}

#[inline]
pub(super) fn read_u32(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let v: [u8; 4] = b[at..at + 4].try_into().unwrap();
    if big_endian {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

#[inline]
fn read_u16(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let v: [u8; 2] = b[at..at + 2].try_into().unwrap();
    if big_endian {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

#[derive(Clone, Debug)]
struct Iface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp unit: 10^-n seconds, or 2^-n when `binary`.
    resolution: u8,
    binary: bool,
    offset_secs: i64,
    /// The interface's name (`if_name`), when it is text.
    name: Option<Box<str>>,
}

impl Iface {
    fn to_ns(&self, ticks: u64) -> u64 {
        let ns = if self.binary {
            ((ticks as u128 * 1_000_000_000) >> self.resolution.min(127)) as u64
        } else if self.resolution <= 9 {
            ticks.saturating_mul(10u64.pow(9 - self.resolution as u32))
        } else {
            ticks / 10u64.saturating_pow(self.resolution as u32 - 9)
        };
        (ns as i64).saturating_add(self.offset_secs.saturating_mul(1_000_000_000)) as u64
    }
}

/// Where a reader is in a capture: owns no borrow, so it can live beside the file (e.g. in a Python
/// object). For a stream it holds the window of bytes read and not yet consumed.
pub struct Cursor {
    state: State,
    /// A stream's window (`None` for a mapped file).
    window: Option<Window>,
}

/// What the parser knows between two records.
struct State {
    /// The offset of the next record or block.
    offset: usize,
    /// Bytes before this offset have been asked of the cache already (see `prefetch_ahead`).
    prefetched: usize,
    /// A mapped file's pages before this offset are out of our page tables (see `release_behind`).
    released: usize,
    big_endian: bool,
    number: u64,
    ifaces: Vec<Iface>,
    /// The link type of the first interface described, in any section.
    first_link: Option<LinkType>,
    done: bool,
    /// The record last found (numbered `number`).
    current: Option<Raw>,
}

/// The bytes the parser may look at: `bytes[i]` is the input's byte at offset `base + i`.
#[derive(Clone, Copy)]
struct View<'v> {
    bytes: &'v [u8],
    base: usize,
    /// Nothing follows `bytes`: a record that does not fit was cut.
    ended: bool,
    /// The view is a mapped file (its bytes are worth prefetching).
    mapped: bool,
}

/// A record the parser found, by offsets: `current` turns it into a `Record` borrowing the bytes. Kept
/// small: it is written for every record.
#[derive(Clone, Copy, Debug)]
struct Raw {
    /// Where the record starts.
    offset: usize,
    ts_ns: u64,
    /// Where its packet data starts, from `offset`.
    head: u32,
    len: u32,
    wirelen: u32,
    /// Index of the interface in the cursor's list (`u32::MAX`: none).
    iface: u32,
    link: LinkType,
    direction: Option<Direction>,
}

/// The view ends before the bytes up to `until`, which the next record (`record`, starting at
/// `offset`) needs; `skip`: a block the parser ignores, whose bytes need only be read past.
#[derive(Clone, Copy, Debug)]
struct Short {
    until: usize,
    record: u64,
    offset: usize,
    skip: bool,
}

/// What the parser made of the bytes at the cursor. A packet is the cursor's record (`State::current`).
enum Parsed {
    Packet,
    End,
    Failed(ReadErrorKind),
    Short(Short),
}

struct Step<'v, 's> {
    view: View<'v>,
    s: &'s mut State,
    input: &'v Input,
}

impl Step<'_, '_> {
    fn fail(&mut self, kind: ReadErrorKind) -> Parsed {
        self.s.done = true;
        Parsed::Failed(kind)
    }

    /// The next record needs the bytes up to `until`: more of the stream, or at the end of the input,
    /// the record was cut.
    fn short(&mut self, until: usize, record: u64, offset: usize, skip: bool) -> Parsed {
        if self.view.ended {
            return self.fail(ReadErrorKind::Truncated { record, offset });
        }
        Parsed::Short(Short {
            until,
            record,
            offset,
            skip,
        })
    }

    /// Where the cursor is in the view; the view never starts after it.
    #[inline]
    fn at(&self) -> usize {
        self.s.offset - self.view.base
    }

    #[inline]
    fn next_pcap(&mut self, nanos: bool, link: LinkType) -> Parsed {
        let b = self.view.bytes;
        let (at, offset) = (self.at(), self.s.offset);
        if at == b.len() && self.view.ended {
            return Parsed::End;
        }
        if self.view.mapped {
            prefetch_ahead(b, at, &mut self.s.prefetched);
        }
        let number = self.s.number + 1;
        if b.len() - at < 16 {
            return self.short(offset + 16, number, offset, false);
        }
        let be = self.s.big_endian;
        let caplen = read_u32(b, at + 8, be);
        if caplen == 0 && b[at..at + 16] == [0; 16] && self.input.cut_before(offset) {
            return self.fail(ReadErrorKind::CutWhileReading);
        }
        if caplen > MAX_RECORD {
            return self.fail(ReadErrorKind::Oversized {
                record: number,
                offset,
                len: caplen,
                max: MAX_RECORD,
            });
        }
        let end = at + 16 + caplen as usize;
        if end > b.len() {
            return self.short(offset + 16 + caplen as usize, number, offset, false);
        }
        let secs = read_u32(b, at, be) as u64;
        let frac = read_u32(b, at + 4, be) as u64;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1_000 };
        self.s.number = number;
        self.s.offset = offset + 16 + caplen as usize;
        self.s.current = Some(Raw {
            offset,
            ts_ns,
            head: 16,
            len: caplen,
            wirelen: read_u32(b, at + 12, be),
            iface: u32::MAX,
            link,
            direction: cooked_direction(&b[at + 16..end], link),
        });
        Parsed::Packet
    }

    /// Walk pcapng blocks until the next packet. `peek`: stop, without reading it, before a packet
    /// block, and after the first interface description.
    fn next_block(&mut self, peek: bool) -> Parsed {
        loop {
            let b = self.view.bytes;
            let (at, offset) = (self.at(), self.s.offset);
            if at == b.len() && self.view.ended {
                return Parsed::End;
            }
            if b.len() - at < 12 {
                return self.short(offset + 12, self.s.number + 1, offset, false);
            }
            let raw_type = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            if b[at..at + 8] == [0; 8] && self.input.cut_before(offset) {
                return self.fail(ReadErrorKind::CutWhileReading);
            }
            let section = raw_type == PCAPNG_SHB;
            let be = if section {
                let bom = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap());
                match bom {
                    PCAPNG_BOM => false,
                    b if b.swap_bytes() == PCAPNG_BOM => true,
                    _ => {
                        return self.fail(ReadErrorKind::BadBlock {
                            offset,
                            reason: "bad byte-order magic",
                        })
                    }
                }
            } else {
                self.s.big_endian
            };
            let block_type = read_u32(b, at, be);
            let total = read_u32(b, at + 4, be) as usize;
            if total < 12 || !total.is_multiple_of(4) {
                return self.fail(ReadErrorKind::BadBlock {
                    offset,
                    reason: "block length is not a multiple of 4 of at least 12",
                });
            }
            let packet = matches!(block_type, 2 | 3 | 6);
            if packet && peek {
                return Parsed::End;
            }
            if total > b.len() - at {
                // A packet too long is said as such once its length is in view, whether or not the
                // rest ever comes.
                if matches!(block_type, 2 | 6) && b.len() - at >= 28 {
                    let caplen = read_u32(b, at + 20, be);
                    if caplen > MAX_RECORD {
                        return self.fail(ReadErrorKind::Oversized {
                            record: self.s.number + 1,
                            offset,
                            len: caplen,
                            max: MAX_RECORD,
                        });
                    }
                }
                let skip = !section && !packet && block_type != 1;
                let record = self.s.number + packet as u64;
                return self.short(offset + total, record, offset, skip);
            }
            if section {
                self.s.big_endian = be;
                self.s.ifaces.clear();
            }
            let body = &b[at + 8..at + total - 4];
            self.s.offset = offset + total;
            match block_type {
                1 => match parse_idb(body, be) {
                    Some(_) if self.s.ifaces.len() >= MAX_INTERFACES => {
                        return self.fail(ReadErrorKind::BadBlock {
                            offset,
                            reason: "more interfaces in one section than any capture has",
                        });
                    }
                    Some(iface) => {
                        self.s.first_link.get_or_insert(iface.link);
                        self.s.ifaces.push(iface);
                        if peek {
                            return Parsed::End;
                        }
                    }
                    None => {
                        return self.fail(ReadErrorKind::BadBlock {
                            offset,
                            reason: "interface description too short",
                        })
                    }
                },
                2 | 3 | 6 => {
                    self.s.number += 1;
                    return self.packet_block(block_type, body, offset);
                }
                _ => {}
            }
        }
    }

    /// A packet block whose `body` (the block less its type, length and trailing length) is in view;
    /// the block starts at `offset`. An error ends the reading, as everywhere.
    fn packet_block(&mut self, kind: u32, body: &[u8], offset: usize) -> Parsed {
        match self.packet(kind, body, offset) {
            Ok(raw) => {
                self.s.current = Some(raw);
                Parsed::Packet
            }
            Err(kind) => self.fail(kind),
        }
    }

    fn packet(&self, kind: u32, body: &[u8], offset: usize) -> Result<Raw, ReadErrorKind> {
        let be = self.s.big_endian;
        let bad = |reason| Err(ReadErrorKind::BadBlock { offset, reason });
        let (iface_id, ticks, caplen, wirelen, data_at) = match kind {
            6 | 2 => {
                if body.len() < 20 {
                    return bad("packet block too short");
                }
                let id = if kind == 6 {
                    read_u32(body, 0, be)
                } else {
                    read_u16(body, 0, be) as u32
                };
                let ticks = ((read_u32(body, 4, be) as u64) << 32) | read_u32(body, 8, be) as u64;
                (
                    id,
                    ticks,
                    read_u32(body, 12, be),
                    read_u32(body, 16, be),
                    20,
                )
            }
            _ => {
                if body.len() < 4 {
                    return bad("simple packet block too short");
                }
                let wirelen = read_u32(body, 0, be);
                let snap = self.s.ifaces.first().map_or(0, |i| i.snaplen);
                let mut caplen = wirelen.min((body.len() - 4) as u32);
                if snap != 0 {
                    caplen = caplen.min(snap);
                }
                (0, 0, caplen, wirelen, 4)
            }
        };
        let number = self.s.number;
        if caplen > MAX_RECORD {
            return Err(ReadErrorKind::Oversized {
                record: number,
                offset,
                len: caplen,
                max: MAX_RECORD,
            });
        }
        let Some(iface) = self.s.ifaces.get(iface_id as usize) else {
            return Err(ReadErrorKind::UnknownInterface {
                record: number,
                id: iface_id,
            });
        };
        let Some(data) = body.get(data_at..data_at + caplen as usize) else {
            return bad("packet data runs past the block");
        };
        let options = body
            .get(data_at + (caplen as usize).next_multiple_of(4)..)
            .unwrap_or(&[]);
        let direction = if kind == 6 {
            option(options, be, 2)
                .filter(|v| v.len() >= 4)
                .and_then(|v| match read_u32(v, 0, be) & 3 {
                    1 => Some(Direction::In),
                    2 => Some(Direction::Out),
                    _ => None,
                })
        } else {
            None
        };
        Ok(Raw {
            offset,
            ts_ns: iface.to_ns(ticks),
            head: 8 + data_at as u32,
            len: caplen,
            wirelen,
            iface: iface_id,
            link: iface.link,
            direction: direction.or_else(|| cooked_direction(data, iface.link)),
        })
    }
}

/// How much of a mapped file behind the reader stays in its page tables (see `release_behind`).
const KEPT_BEHIND: usize = 16 << 20;
/// How far ahead of the reader the helper maps pages (see `CaptureFile::prefault`).
const PREFAULT_AHEAD: usize = 32 << 20;
const PAGE: usize = 4096;

/// Take the pages a cursor has left well behind out of our page tables, and publish how far it is. A
/// file read front to back then costs this process a window of resident memory, not its size (a table
/// of a 10 GB file would otherwise hold 10 GB resident as well).
fn release_behind(map: &Mmap, state: &mut State, progress: &AtomicUsize) {
    let upto = state.offset.saturating_sub(KEPT_BEHIND) & !(PAGE - 1);
    if upto < state.released + KEPT_BEHIND {
        return;
    }
    release_range(map, state.released..upto);
    state.released = upto;
    progress.store(state.offset, Ordering::Relaxed);
}

/// `range` must start on a page; its end is cut to the map's.
fn release_range(map: &Mmap, range: Range<usize>) {
    #[cfg(unix)]
    {
        let (start, end) = (range.start, range.end.min(map.len()));
        if start >= end {
            return;
        }
        // SAFETY: the map is a read-only view of a file. MADV_DONTNEED drops our page-table entries
        // for the range; every later read of it finds the file's bytes again, so no reference into
        // the map (a record still in use, a batch `read -w` writes from) sees anything else.
        let dropped = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
        // Refused, the pages simply stay: nothing is lost but memory.
        let _ = dropped;
    }
    #[cfg(not(unix))]
    let _ = (map, range);
}

/// How far ahead of the reader the cache is asked for the file's bytes.
const PREFETCH_DISTANCE: usize = 8192;
const CACHE_LINE: usize = 64;

/// Ask the cache for the bytes a little ahead of `at`. Records form a chain (each header gives the next
/// one's offset), so the hardware cannot run ahead of us; we can, since the file is read in order.
#[inline]
pub(super) fn prefetch_ahead(b: &[u8], at: usize, prefetched: &mut usize) {
    let until = (at + PREFETCH_DISTANCE).min(b.len());
    while *prefetched < until {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `prefetched < b.len()`, so the pointer is inside the mapping; prefetch never faults.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().add(*prefetched) as *const i8);
        }
        *prefetched += CACHE_LINE;
    }
}

/// The packet type of a Linux cooked header says whether the packet was sent or received.
pub(super) fn cooked_direction(data: &[u8], link: LinkType) -> Option<Direction> {
    let packet_type = match link {
        LinkType::LinuxSll => u16::from_be_bytes([*data.first()?, *data.get(1)?]) as u8,
        LinkType::LinuxSll2 => *data.get(10)?,
        _ => return None,
    };
    Some(if packet_type == 4 {
        Direction::Out
    } else {
        Direction::In
    })
}

fn parse_idb(body: &[u8], be: bool) -> Option<Iface> {
    if body.len() < 8 {
        return None;
    }
    let options = &body[8..];
    let mut iface = Iface {
        link: LinkType::from_number(read_u16(body, 0, be) as u32),
        snaplen: read_u32(body, 4, be),
        resolution: 6,
        binary: false,
        offset_secs: 0,
        name: option(options, be, 2)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|s| s.trim_end_matches('\0'))
            .map(|s| s[..floor_char_boundary(s, MAX_IFACE_NAME)].into()),
    };
    if let Some(&r) = option(options, be, 9).and_then(|v| v.first()) {
        iface.binary = r & 0x80 != 0;
        iface.resolution = r & 0x7f;
    }
    if let Some(v) = option(options, be, 14).filter(|v| v.len() >= 8) {
        let raw: [u8; 8] = v[..8].try_into().unwrap();
        iface.offset_secs = if be {
            i64::from_be_bytes(raw)
        } else {
            i64::from_le_bytes(raw)
        };
    }
    Some(iface)
}

/// The value of option `code` in a pcapng options list.
fn option(mut options: &[u8], be: bool, code: u16) -> Option<&[u8]> {
    while options.len() >= 4 {
        let (c, len) = (read_u16(options, 0, be), read_u16(options, 2, be) as usize);
        if c == 0 {
            return None;
        }
        let value = options.get(4..4 + len)?;
        if c == code {
            return Some(value);
        }
        options = options.get(4 + len.next_multiple_of(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::PcapWriter;
    use proptest::prelude::*;

    /// Gives its bytes in pieces of the sizes given, in turn; past the end, `then` (end or failure).
    struct Pieces {
        bytes: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
        /// Reading past `stop` is a test failure (a reader that should not have asked for more).
        stop: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(
                self.at < self.stop || self.at == self.bytes.len(),
                "read too far"
            );
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let n = size.min(buf.len()).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn stream(bytes: &[u8], sizes: &[usize]) -> Result<CaptureFile, ReadError> {
        let from = Pieces {
            bytes: bytes.to_vec(),
            at: 0,
            sizes: sizes.to_vec(),
            turn: 0,
            stop: usize::MAX,
        };
        CaptureFile::from_stream("-".into(), Box::new(from), None, &mut || false)
    }

    fn mapped(bytes: &[u8]) -> Result<CaptureFile, ReadError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "pcapdump-window-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).unwrap();
        let file = CaptureFile::open(&path);
        std::fs::remove_file(&path).unwrap();
        file
    }

    /// Everything a reader says about its input: each record as text, then how it ended.
    fn outcome(file: Result<CaptureFile, ReadError>) -> Vec<String> {
        let file = match file {
            Ok(file) => file,
            Err(e) => return vec![format!("open: {:?}", e.kind)],
        };
        let mut said = Vec::new();
        file.for_each_record(|r| {
            said.push(match r {
                Ok(r) => format!(
                    "{} @{} {} {:?} {} {:?} {:?} {:?}",
                    r.number, r.offset, r.ts_ns, r.data, r.wirelen, r.link, r.iface, r.direction
                ),
                Err(e) => format!("error: {}", e.kind),
            })
        });
        said
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), LinkType::LinuxSll, 262_144).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write(i as u64 * 1_000_123, f, f.len() as u32 + 3)
                .unwrap();
        }
        w.into_inner()
    }

    /// The same frames as pcap in the other byte order, in nanoseconds.
    fn pcap_big_endian(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [PCAP_NANOS, 0x0004_0002, 0, 0, 262_144, 1] {
            out.extend(v.to_be_bytes());
        }
        out.truncate(PCAP_HEADER_LEN);
        for (i, f) in frames.iter().enumerate() {
            for v in [i as u32, 999_999_999, f.len() as u32, f.len() as u32] {
                out.extend(v.to_be_bytes());
            }
            out.extend(f);
        }
        out
    }

    fn block(be: bool, kind: u32, body: &[u8]) -> Vec<u8> {
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let n = (12 + body.len()) as u32;
        [&u32b(kind)[..], &u32b(n), &body, &u32b(n)].concat()
    }

    /// pcapng in either byte order: two named interfaces, EPBs on both (one with a direction option),
    /// an SPB, and blocks the reader ignores; `filler` bytes in one of those.
    fn pcapng(be: bool, frames: &[Vec<u8>], filler: usize) -> Vec<u8> {
        let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let opt = |code: u16, value: &[u8]| {
            let mut o = [&u16b(code)[..], &u16b(value.len() as u16), value].concat();
            o.resize(o.len().next_multiple_of(4), 0);
            o
        };
        let mut out = block(
            be,
            PCAPNG_SHB,
            &[&u32b(PCAPNG_BOM)[..], &u16b(1), &u16b(0), &[0xff; 8]].concat(),
        );
        for (link, name) in [(1u16, "eth0"), (113, "any")] {
            let body = [
                &u16b(link)[..],
                &[0, 0],
                &u32b(0),
                &opt(2, name.as_bytes()),
                &opt(9, &[3]),
                &opt(0, &[]),
            ]
            .concat();
            out.extend(block(be, 1, &body));
        }
        out.extend(block(be, 0x0bad, &vec![7; filler]));
        for (i, f) in frames.iter().enumerate() {
            let len = u32b(f.len() as u32);
            let mut body = [
                &u32b(i as u32 % 2)[..],
                &u32b(0),
                &u32b(i as u32 * 7),
                &len,
                &len,
                f,
            ]
            .concat();
            body.resize(body.len().next_multiple_of(4), 0);
            if i % 3 == 0 {
                body.extend(opt(2, &u32b(2)));
                body.extend(opt(0, &[]));
            }
            out.extend(block(be, 6, &body));
            if i % 4 == 1 {
                out.extend(block(be, 3, &[&u32b(f.len() as u32)[..], f].concat()));
                out.extend(block(be, 5, &[0; 12]));
            }
        }
        out
    }

    fn frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..90), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Read through a window, in pieces of any size, a capture says what it says mapped: the same
        /// records, then the same end (the same error where it is damaged or cut).
        #[test]
        fn a_stream_in_any_pieces_reads_as_the_mapped_file(
            frames in frames(),
            kind in 0..4u8,
            filler in 0..40usize,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<prop::sample::Index>(),
            whole in any::<bool>(),
            sizes in prop::collection::vec(1..70usize, 1..5),
        ) {
            let mut bytes = match kind {
                0 => pcap(&frames),
                1 => pcap_big_endian(&frames),
                2 => pcapng(false, &frames, filler),
                _ => pcapng(true, &frames, filler),
            };
            if !whole {
                for (at, value) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let from_map = if bytes.is_empty() {
                vec![format!("open: {:?}", ReadErrorKind::Empty)]
            } else {
                outcome(mapped(&bytes))
            };
            let from_stream = outcome(stream(&bytes, &sizes));
            // A stream does not hold a block longer than its window; a file has it whole, or is cut.
            if from_stream.last().is_some_and(|l| l.contains("a stream may hold")) {
                prop_assert!(from_map.last().is_some_and(|l| l.starts_with("error")));
                prop_assert_eq!(&from_map[..from_map.len() - 1], &from_stream[..from_stream.len() - 1]);
            } else {
                prop_assert_eq!(&from_map, &from_stream);
            }
            if whole {
                prop_assert_eq!(from_stream.len(), frames.len() + if kind >= 2 { (frames.len() + 2) / 4 } else { 0 });
                prop_assert!(from_stream.iter().all(|l| !l.starts_with("error")));
            }
        }

        /// Arbitrary bytes never panic through a window either.
        #[test]
        fn arbitrary_bytes_in_pieces_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            sizes in prop::collection::vec(1..50usize, 1..4),
        ) {
            outcome(stream(&bytes, &sizes));
        }
    }

    #[test]
    fn a_file_cut_to_nothing_right_after_it_was_mapped_is_said_to_be_cut() {
        let path =
            std::env::temp_dir().join(format!("pcapdump-cut-at-open-{}", std::process::id()));
        std::fs::write(&path, pcap(&captures(50))).unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: as in `CaptureFile::open`: read-only, and guarded before any byte is read.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        let guard = MapGuard::register(map.as_ptr(), map.len());
        assert!(guard.is_registered());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        // Its first byte is past the file's new end: a fault the guard takes, not a crash.
        assert!(matches!(
            mapped_format(&guard, &map),
            Err(ReadErrorKind::CutWhileReading)
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn big_endian_pcapng_names_and_directions_come_through_a_stream() {
        let said = outcome(stream(&pcapng(true, &[vec![1; 20], vec![2; 20]], 0), &[5]));
        assert!(said[0].contains("Some(\"eth0\") Some(Out)"), "{said:?}");
        assert!(said[1].contains("Some(\"any\")"), "{said:?}");
    }

    #[test]
    fn a_record_is_handed_out_as_soon_as_it_is_complete() {
        let bytes = pcap(&[vec![1; 100], vec![2; 100]]);
        let first_end = PCAP_HEADER_LEN + 16 + 100;
        let from = Pieces {
            bytes,
            at: 0,
            sizes: vec![first_end],
            turn: 0,
            // The second record is not there yet: asking for it would wait.
            stop: first_end,
        };
        let file =
            CaptureFile::from_stream("-".into(), Box::new(from), None, &mut || false).unwrap();
        let mut cursor = file.cursor();
        let r = file
            .next_record(&mut cursor, &mut || false)
            .unwrap()
            .unwrap();
        assert_eq!((r.number, r.data), (1, &[1u8; 100][..]));
    }

    /// Memory held for a stream stays within a record and a read, however long the stream.
    #[test]
    fn a_long_stream_is_read_in_a_bounded_window() {
        let frames: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1000]).collect();
        let compressed = gzip::compress(&pcap(&frames));
        for bytes in [pcap(&frames), pcapng(false, &frames, 0), compressed] {
            let file = stream(&bytes, &[65536, 1000, 7]).unwrap();
            let mut cursor = file.cursor();
            let (mut n, mut most) = (0, 0);
            while let Some(r) = file.next_record(&mut cursor, &mut || false) {
                r.unwrap();
                n += 1;
                most = most.max(cursor.window.as_ref().unwrap().buf.capacity());
            }
            assert!(n >= 20_000);
            assert!(most <= 2 * READ_CHUNK, "{most} bytes held");
        }
    }

    /// A block the reader ignores is read past, not held, however long; one it needs is refused past
    /// the window's size.
    #[test]
    fn long_ignored_blocks_are_skipped_and_long_needed_ones_refused() {
        let frames = vec![vec![9; 60]; 3];
        let bytes = pcapng(false, &frames, 5 << 20);
        let file = stream(&bytes, &[100_000]).unwrap();
        let mut cursor = file.cursor();
        let mut n = 0;
        while let Some(r) = file.next_record(&mut cursor, &mut || false) {
            assert_eq!(r.unwrap().data, &[9; 60][..]);
            n += 1;
        }
        assert_eq!(n, 4); // three EPBs and an SPB
        assert!(cursor.window.as_ref().unwrap().buf.capacity() <= 2 * READ_CHUNK);
        // The same filler cut short: the block that was being skipped is where the input ends.
        let cut = &bytes[..bytes.len() / 2];
        let said = outcome(stream(cut, &[100_000]));
        assert_eq!(said, outcome(mapped(cut)));
        assert!(
            said[0].contains("file ends inside record 0 at byte"),
            "{said:?}"
        );
        // An interface description longer than a stream's window.
        let mut big = block(
            false,
            PCAPNG_SHB,
            &[&PCAPNG_BOM.to_le_bytes()[..], &[1, 0, 0, 0], &[0xff; 8]].concat(),
        );
        big.extend(block(
            false,
            1,
            &[&[1, 0, 0, 0, 0, 0, 0, 0][..], &vec![0; MAX_BLOCK]].concat(),
        ));
        let said = outcome(stream(&big, &[100_000]));
        assert_eq!(said.len(), 1);
        assert!(
            said[0].contains("more than the") && said[0].contains("save it to a file"),
            "{said:?}"
        );
    }

    /// A capture of each kind with `n` records, as written (plain).
    fn captures(n: usize) -> Vec<Vec<u8>> {
        let frames: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 40 + i % 50]).collect();
        vec![
            pcap(&frames),
            pcap_big_endian(&frames),
            pcapng(false, &frames, 10),
            pcapng(true, &frames, 10),
        ]
    }

    #[test]
    fn a_gzip_file_or_stream_reads_as_the_plain_capture() {
        for plain in captures(30) {
            let expected = outcome(mapped(&plain));
            assert!(expected.iter().all(|l| !l.starts_with("error")));
            let whole = gzip::compress(&plain);
            assert_eq!(outcome(mapped(&whole)), expected);
            assert_eq!(outcome(stream(&whole, &[1, 7, 300])), expected);
            // Members one after another, split anywhere, read as one capture.
            let split = plain.len() / 3;
            let members = [
                gzip::compress(&plain[..split]),
                gzip::compress(&plain[split..]),
            ]
            .concat();
            assert_eq!(outcome(mapped(&members)), expected);
            assert!(mapped(&members).unwrap().is_stream());
        }
    }

    #[test]
    fn a_cut_gzip_gives_every_record_before_the_cut_then_says_so() {
        for plain in captures(2000) {
            let expected = outcome(mapped(&plain));
            let whole = gzip::compress(&plain);
            let said = outcome(mapped(&whole[..whole.len() / 2]));
            let (last, records) = said.split_last().unwrap();
            assert!(!records.is_empty() && records.len() < expected.len());
            assert_eq!(records, &expected[..records.len()]);
            assert!(
                last.starts_with("error: the gzip data ends early, after ")
                    && last.ends_with(" bytes of the capture; the .gz file was cut short"),
                "{last}"
            );
        }
    }

    #[test]
    fn gzip_of_something_else_is_refused_at_the_open() {
        let said = outcome(mapped(&gzip::compress(b"hello, not a capture")));
        assert_eq!(
            said,
            [format!("open: NotCaptureInside(Some({}))", 0x6865_6c6c)]
        );
        let e = mapped(&gzip::compress(b"")).err().unwrap();
        assert_eq!(
            e.kind.to_string(),
            "gzip data, but not of a pcap or pcapng file (it inflates to nothing)"
        );
        let e = stream(&gzip::compress(b"hello"), &[3]).err().unwrap();
        assert_eq!(
            e.kind.to_string(),
            "gzip data, but not of a pcap or pcapng file (it inflates to bytes starting with 0x68656c6c)"
        );
    }

    #[test]
    fn damaged_gzip_is_named_as_such() {
        let plain = &captures(50)[0];
        let mut bad = gzip::compress(plain);
        // The stored checksum: every record inflates, the member's end does not check out.
        let at = bad.len() - 6;
        bad[at] ^= 0xff;
        let said = outcome(mapped(&bad));
        let last = said.last().unwrap();
        assert!(
            last.starts_with("error: the gzip data is damaged after ") && last.contains("checksum"),
            "{last}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// gzip data cut anywhere gives the plain capture's first records, then one error; changed
        /// anywhere as well, it gives at most one error, and never a panic.
        #[test]
        fn cut_or_changed_gzip_gives_the_first_records_then_one_error(
            frames in frames(),
            kind in 0..4u8,
            cut in any::<prop::sample::Index>(),
            flip in prop::option::of((any::<prop::sample::Index>(), 1..=255u8)),
            sizes in prop::collection::vec(1..70usize, 1..5),
        ) {
            let plain = match kind {
                0 => pcap(&frames),
                1 => pcap_big_endian(&frames),
                2 => pcapng(false, &frames, 3),
                _ => pcapng(true, &frames, 3),
            };
            let expected = outcome(mapped(&plain));
            let mut bytes = gzip::compress(&plain);
            if let Some((at, x)) = flip {
                // Past the magic, which decides whether this is gzip at all.
                let i = 2 + at.index(bytes.len() - 2);
                bytes[i] ^= x;
            }
            let len = 2 + cut.index(bytes.len() - 1);
            bytes.truncate(len);
            let said = outcome(stream(&bytes, &sizes));
            let errors = said.iter().filter(|l| l.starts_with("error") || l.starts_with("open")).count();
            prop_assert!(errors <= 1, "{:?}", said);
            if flip.is_none() {
                let records = &said[..said.len() - errors];
                prop_assert_eq!(records, &expected[..records.len()]);
                if len < gzip::compress(&plain).len() {
                    prop_assert_eq!(errors, 1);
                    let last = said.last().unwrap();
                    prop_assert!(last.contains("the gzip data ends early") || last.contains("GzipCut"), "{}", last);
                } else {
                    prop_assert_eq!(&said, &expected);
                }
            }
        }
    }

    #[test]
    fn a_gzip_stream_gives_what_it_holds_while_its_pipe_is_silent() {
        // Many records in a few compressed bytes: one write fills the decoder, whose output is more
        // than one read of the window takes; the writer then holds the pipe open and says nothing.
        let frames: Vec<Vec<u8>> = (0..3000).map(|i| vec![(i % 7) as u8; 300]).collect();
        let compressed = gzip::compress(&pcap(&frames));
        assert!(compressed.len() < 32 << 10);
        let (read, mut write) = std::io::pipe().unwrap();
        use std::io::Write;
        write
            .write_all(&compressed[..compressed.len() - 8])
            .unwrap();
        use std::os::fd::AsRawFd;
        let fd = read.as_raw_fd();
        let file =
            CaptureFile::from_stream("-".into(), Box::new(read), Some(fd), &mut || false).unwrap();
        let mut cursor = file.cursor();
        // All but the last records have come in full; none needs the pipe to say more.
        let started = Instant::now();
        let mut asked = 0;
        let mut waiter = || {
            asked += 1;
            asked > 20
        };
        let mut n = 0;
        let last = loop {
            match file.next_record(&mut cursor, &mut waiter).unwrap() {
                Ok(r) => {
                    assert_eq!(r.data, &frames[n][..]);
                    n += 1;
                }
                Err(e) => break e,
            }
        };
        assert!(n >= 2990, "{n} records before the wait");
        assert!(matches!(last.kind, ReadErrorKind::Interrupted));
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(write);
    }

    #[test]
    fn the_first_link_is_found_before_any_packet_is_read() {
        let bytes = pcapng(false, &[vec![1; 10], vec![2; 10]], 0);
        for file in [stream(&bytes, &[3]).unwrap(), mapped(&bytes).unwrap()] {
            let mut cursor = file.cursor();
            let link = file.first_link(&mut cursor, &mut || false).unwrap();
            assert_eq!(link, Some(LinkType::Ethernet));
            let r = file
                .next_record(&mut cursor, &mut || false)
                .unwrap()
                .unwrap();
            assert_eq!((r.number, r.data), (1, &[1u8; 10][..]));
        }
    }

    #[test]
    fn a_silent_stream_is_asked_about_ctrl_c_and_idle_before_it_waits() {
        // A pipe whose writer holds it open and says nothing after one record.
        let (read, mut write) = std::io::pipe().unwrap();
        use std::io::Write;
        write.write_all(&pcap(&[vec![1; 10]])).unwrap();
        use std::os::fd::AsRawFd;
        let fd = read.as_raw_fd();
        let file =
            CaptureFile::from_stream("-".into(), Box::new(read), Some(fd), &mut || false).unwrap();
        struct Watch {
            idle: u32,
            asked: u32,
        }
        impl Waiter for Watch {
            fn interrupted(&mut self) -> bool {
                self.asked += 1;
                self.asked >= 2
            }
            fn idle(&mut self) -> bool {
                self.idle += 1;
                false
            }
        }
        let mut watch = Watch { idle: 0, asked: 0 };
        let mut cursor = file.cursor();
        assert!(file.next_record(&mut cursor, &mut watch).unwrap().is_ok());
        let started = Instant::now();
        let e = file
            .next_record(&mut cursor, &mut watch)
            .unwrap()
            .unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::Interrupted));
        assert_eq!((watch.idle, watch.asked), (1, 2));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(write);
    }
}
