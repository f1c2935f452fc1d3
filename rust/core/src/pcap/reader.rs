//! Read pcap (microsecond or nanosecond, either byte order) and pcapng (SHB, IDB, EPB, SPB, OPB, either
//! byte order) from a memory map: records are slices of the file, nothing is copied. Pipes and devices,
//! which cannot be mapped, are read to their end first.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::guard::MapGuard;
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
    #[error("file ends inside record {record} at byte {offset}; the capture was cut short")]
    Truncated { record: u64, offset: usize },
    #[error("record {record} at byte {offset} claims {len} bytes, more than the {max}-byte limit")]
    Oversized {
        record: u64,
        offset: usize,
        len: u32,
        max: u32,
    },
    #[error("malformed pcapng block at byte {offset}: {reason}")]
    BadBlock { offset: usize, reason: &'static str },
    #[error("record {record} names interface {id}, which the file never described")]
    UnknownInterface { record: u64, id: u32 },
    #[error("the file was cut short while it was being read (another program truncated it)")]
    CutWhileReading,
    #[error("interrupted")]
    Interrupted,
    #[error("more than {limit} bytes through a pipe, more than can be held in memory; save it to a file and read that")]
    TooLargeToHold { limit: usize },
}

/// One captured packet, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// 1-based position in the file: Wireshark's frame number.
    pub number: u64,
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub wirelen: u32,
    pub link: LinkType,
    pub iface: Option<&'a str>,
    pub direction: Option<Direction>,
}

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link: LinkType,
    },
    Pcapng,
}

pub struct CaptureFile {
    bytes: Bytes,
    format: Format,
    path: String,
}

/// A regular file is mapped; a pipe or a device (`-`, `/dev/stdin`, `<(zcat x.pcap.gz)`) cannot be, and
/// is read to its end into memory instead.
enum Bytes {
    /// The guard is dropped before the map: the fields drop in order. The file is kept to ask its size.
    Mapped(MapGuard, Mmap, File),
    Read(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(_, map, _) => map,
            Bytes::Read(bytes) => bytes,
        }
    }

    fn was_cut(&self) -> bool {
        matches!(self, Bytes::Mapped(guard, ..) if guard.was_cut())
    }

    /// Whether the file now ends at or before `offset`: the zeros the map shows past a new end, within
    /// the last page the file still has, raise no fault. Asked only where a header is all zeros.
    fn cut_before(&self, offset: usize) -> bool {
        match self {
            Bytes::Mapped(_, _, file) => file.metadata().is_ok_and(|m| m.len() <= offset as u64),
            Bytes::Read(_) => false,
        }
    }
}

/// How long one wait for a pipe lasts before `interrupted` is asked again.
const STREAM_WAIT_MS: i32 = 100;
/// A capture's first four bytes: enough to refuse what is not one (`/dev/zero`, `/dev/urandom`) before
/// reading any further.
const MAGIC_LEN: usize = 4;

/// Read a pipe or device to its end, asking `interrupted` while it is silent; the first bytes must be a
/// capture's magic number.
fn read_stream(
    from: &mut dyn std::io::Read,
    fd: Option<i32>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Bytes, ReadErrorKind> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut asked = std::time::Instant::now();
    let most = stream_limit();
    loop {
        if let Some(fd) = fd {
            wait_readable(fd, interrupted)?;
        }
        // A pipe that never pauses is asked about Ctrl-C all the same.
        if asked.elapsed() >= std::time::Duration::from_millis(STREAM_WAIT_MS as u64) {
            if interrupted() {
                return Err(ReadErrorKind::Interrupted);
            }
            asked = std::time::Instant::now();
        }
        // Before the magic is in, ask for no more than it: a device that never ends is refused at once.
        let want = if bytes.len() < MAGIC_LEN {
            MAGIC_LEN - bytes.len()
        } else {
            chunk.len()
        };
        let n = match from.read(&mut chunk[..want]) {
            Ok(n) => n,
            // A pipe opened without waiting for its writer: nothing yet, wait again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(e) => return Err(ReadErrorKind::Io(e)),
        };
        if n == 0 {
            return Ok(Bytes::Read(bytes));
        }
        if bytes.len() + n > most || bytes.try_reserve(n).is_err() {
            return Err(ReadErrorKind::TooLargeToHold { limit: most });
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() == MAGIC_LEN && bytes.len() - n < MAGIC_LEN {
            detect_magic(&bytes)?;
        }
    }
}

/// What a pipe may bring before reading stops: half the machine's memory (a pipe is held whole, it
/// cannot be mapped).
fn stream_limit() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if pages > 0 && size > 0 {
            return (pages as usize).saturating_mul(size as usize) / 2;
        }
    }
    usize::MAX / 2
}

/// Wait until `fd` has something to read (or its end), asking `interrupted` every so often.
#[cfg(unix)]
fn wait_readable(fd: i32, interrupted: &mut dyn FnMut() -> bool) -> Result<(), ReadErrorKind> {
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, STREAM_WAIT_MS) };
        let signalled =
            n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        if n != 0 && !signalled {
            return Ok(()); // readable, at its end, or an error the read will report
        }
        if interrupted() {
            return Err(ReadErrorKind::Interrupted);
        }
    }
}

#[cfg(not(unix))]
fn wait_readable(_: i32, _: &mut dyn FnMut() -> bool) -> Result<(), ReadErrorKind> {
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
        let bytes = if path == Path::new("-") {
            read_stream(&mut std::io::stdin().lock(), stdin_fd(), interrupted).map_err(err)?
        } else {
            let file = open_without_waiting(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => err(ReadErrorKind::NotFound),
                _ => err(ReadErrorKind::Io(e)),
            })?;
            let meta = file.metadata().map_err(|e| err(ReadErrorKind::Io(e)))?;
            if meta.is_dir() {
                return Err(err(ReadErrorKind::Folder));
            }
            // An empty file cannot be mapped; read, it is empty all the same, and said so below.
            if meta.is_file() && meta.len() > 0 {
                // SAFETY: the map is read-only; a file truncated under us by another process would
                // raise SIGBUS on the pages past its new end, which the guard turns into zeros and a
                // mark that the reader checks.
                let map = unsafe { Mmap::map(&file) }.map_err(|e| err(ReadErrorKind::Io(e)))?;
                #[cfg(unix)]
                let _ = map.advise(memmap2::Advice::Sequential);
                Bytes::Mapped(MapGuard::register(map.as_ptr(), map.len()), map, file)
            } else {
                let fd = raw_fd(&file);
                read_stream(&mut { file }, fd, interrupted).map_err(err)?
            }
        };
        if bytes.as_slice().is_empty() {
            return Err(err(ReadErrorKind::Empty));
        }
        let format = detect(bytes.as_slice()).map_err(err)?;
        Ok(CaptureFile {
            bytes,
            format,
            path: shown,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether another program cut the file while it was mapped: a page past the new end was touched,
    /// or the file is now shorter than its map.
    pub fn was_cut(&self) -> bool {
        self.bytes.was_cut() || self.bytes.cut_before(self.bytes().len().saturating_sub(1))
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Map the file's pages into our page tables ahead of the reader, a chunk at a time, until done or
    /// `stop` is set. Run on another thread, it takes the page faults off the reader's path; the pages
    /// themselves are already in the page cache (or are read in now). A no-op where unsupported.
    pub fn prefault(&self, stop: &std::sync::atomic::AtomicBool) {
        #[cfg(target_os = "linux")]
        if let Bytes::Mapped(_, map, _) = &self.bytes {
            const CHUNK: usize = 32 << 20;
            let mut at = 0;
            while at < map.len() && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let len = CHUNK.min(map.len() - at);
                if map
                    .advise_range(memmap2::Advice::PopulateRead, at, len)
                    .is_err()
                {
                    return; // an old kernel (before 5.14): the reader faults the pages in itself
                }
                at += len;
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = stop;
    }

    /// The whole record (16-byte header and data) of `record`, as stored in the file, when it is laid out
    /// exactly as our pcap writer would write it: classic pcap, microseconds, little-endian.
    pub fn stored_pcap_record(&self, record: &Record) -> Option<&[u8]> {
        let Format::Pcap {
            big_endian: false,
            nanos: false,
            ..
        } = self.format
        else {
            return None;
        };
        let base = self.bytes().as_ptr() as usize;
        let start = (record.data.as_ptr() as usize)
            .checked_sub(base)?
            .checked_sub(16)?;
        self.bytes().get(start..start + 16 + record.data.len())
    }

    /// The link type of a pcap file, or of the first interface of a pcapng file.
    pub fn link_type(&self) -> Option<LinkType> {
        match self.format {
            Format::Pcap { link, .. } => Some(link),
            Format::Pcapng => {
                let mut cursor = self.cursor();
                while cursor.ifaces.is_empty()
                    && self.next_record(&mut cursor).is_some_and(|r| r.is_ok())
                {}
                cursor.ifaces.first().map(|i| i.link)
            }
        }
    }

    pub fn records(&self) -> Records<'_> {
        Records {
            file: self,
            cursor: self.cursor(),
        }
    }
}

/// Open for reading without blocking in `open` itself: a FIFO with no writer yet would hold the call
/// there, out of reach of Ctrl-C. The wait happens in `read_stream` instead, which is interruptible.
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

fn stdin_fd() -> Option<i32> {
    cfg!(unix).then_some(0)
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
    if b.len() < 24 {
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
fn read_u32(b: &[u8], at: usize, big_endian: bool) -> u32 {
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
    /// Byte range of the interface name in the file.
    name: Option<(usize, usize)>,
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

/// Where a reader is in a file: owns no borrow, so it can live beside the file (e.g. in a Python object).
#[derive(Clone, Debug)]
pub struct Cursor {
    offset: usize,
    /// Bytes before this offset have been asked of the cache already (see `prefetch_ahead`).
    prefetched: usize,
    big_endian: bool,
    number: u64,
    ifaces: Vec<Iface>,
    done: bool,
}

pub struct Records<'a> {
    file: &'a CaptureFile,
    cursor: Cursor,
}

impl CaptureFile {
    pub fn cursor(&self) -> Cursor {
        let (offset, big_endian) = match self.format {
            Format::Pcap { big_endian, .. } => (24, big_endian),
            Format::Pcapng => (0, false),
        };
        Cursor {
            offset,
            prefetched: offset,
            big_endian,
            number: 0,
            ifaces: Vec::new(),
            done: false,
        }
    }

    /// The record at `cursor`, which moves past it; `None` at the end of the file or after an error.
    pub fn next_record(&self, cursor: &mut Cursor) -> Option<Result<Record<'_>, ReadError>> {
        if cursor.done {
            return None;
        }
        let mut step = Step {
            file: self,
            bytes: self.bytes(),
            c: cursor,
        };
        // Checked before each record is trusted, and so also after the last one was read.
        if self.bytes.was_cut() {
            return step.fail(ReadErrorKind::CutWhileReading);
        }
        match self.format {
            Format::Pcap { .. } => step.next_pcap(),
            Format::Pcapng => step.next_block(),
        }
    }
}

struct Step<'a, 'c> {
    file: &'a CaptureFile,
    bytes: &'a [u8],
    c: &'c mut Cursor,
}

impl<'a> Step<'a, '_> {
    fn fail(&mut self, kind: ReadErrorKind) -> Option<Result<Record<'a>, ReadError>> {
        self.c.done = true;
        Some(Err(ReadError {
            path: self.file.path.clone(),
            kind,
        }))
    }

    fn name(&self, iface: &Iface) -> Option<&'a str> {
        let (at, len) = iface.name?;
        std::str::from_utf8(&self.bytes[at..at + len])
            .ok()
            .map(|s| s.trim_end_matches('\0'))
    }

    fn next_pcap(&mut self) -> Option<Result<Record<'a>, ReadError>> {
        let Format::Pcap { nanos, link, .. } = self.file.format else {
            unreachable!()
        };
        let b = self.bytes;
        let at = self.c.offset;
        if at == b.len() {
            return None;
        }
        prefetch_ahead(b, at, &mut self.c.prefetched);
        self.c.number += 1;
        if b.len() - at < 16 {
            return self.fail(ReadErrorKind::Truncated {
                record: self.c.number,
                offset: at,
            });
        }
        let be = self.c.big_endian;
        let caplen = read_u32(b, at + 8, be);
        if caplen == 0 && b[at..at + 16] == [0; 16] && self.file.bytes.cut_before(at) {
            return self.fail(ReadErrorKind::CutWhileReading);
        }
        if caplen > MAX_RECORD {
            return self.fail(ReadErrorKind::Oversized {
                record: self.c.number,
                offset: at,
                len: caplen,
                max: MAX_RECORD,
            });
        }
        let end = at + 16 + caplen as usize;
        if end > b.len() {
            return self.fail(ReadErrorKind::Truncated {
                record: self.c.number,
                offset: at,
            });
        }
        let secs = read_u32(b, at, be) as u64;
        let frac = read_u32(b, at + 4, be) as u64;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1_000 };
        let data = &b[at + 16..end];
        self.c.offset = end;
        Some(Ok(Record {
            number: self.c.number,
            ts_ns,
            data,
            wirelen: read_u32(b, at + 12, be),
            link,
            iface: None,
            direction: cooked_direction(data, link),
        }))
    }

    /// Walk pcapng blocks until the next packet; `Ok(None)` at the end of the file.
    fn next_block(&mut self) -> Option<Result<Record<'a>, ReadError>> {
        loop {
            let b = self.bytes;
            let at = self.c.offset;
            if at == b.len() {
                return None;
            }
            if b.len() - at < 12 {
                return self.fail(ReadErrorKind::Truncated {
                    record: self.c.number + 1,
                    offset: at,
                });
            }
            let raw_type = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            if b[at..at + 8] == [0; 8] && self.file.bytes.cut_before(at) {
                return self.fail(ReadErrorKind::CutWhileReading);
            }
            if raw_type == PCAPNG_SHB {
                let bom = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap());
                self.c.big_endian = match bom {
                    PCAPNG_BOM => false,
                    b if b.swap_bytes() == PCAPNG_BOM => true,
                    _ => {
                        return self.fail(ReadErrorKind::BadBlock {
                            offset: at,
                            reason: "bad byte-order magic",
                        })
                    }
                };
                self.c.ifaces.clear();
            }
            let be = self.c.big_endian;
            let block_type = read_u32(b, at, be);
            let total = read_u32(b, at + 4, be) as usize;
            if total < 12 || total % 4 != 0 {
                return self.fail(ReadErrorKind::BadBlock {
                    offset: at,
                    reason: "block length is not a multiple of 4 of at least 12",
                });
            }
            if total > b.len() - at {
                let record = self.c.number
                    + if matches!(block_type, 2 | 3 | 6) {
                        1
                    } else {
                        0
                    };
                return self.fail(ReadErrorKind::Truncated { record, offset: at });
            }
            let body = &b[at + 8..at + total - 4];
            self.c.offset = at + total;
            match block_type {
                1 => match parse_idb(body, at + 8, be) {
                    Some(iface) => self.c.ifaces.push(iface),
                    None => {
                        return self.fail(ReadErrorKind::BadBlock {
                            offset: at,
                            reason: "interface description too short",
                        })
                    }
                },
                2 | 3 | 6 => {
                    self.c.number += 1;
                    return Some(self.packet_block(block_type, body, at));
                }
                _ => {}
            }
        }
    }

    fn packet_block(
        &mut self,
        kind: u32,
        body: &'a [u8],
        at: usize,
    ) -> Result<Record<'a>, ReadError> {
        let be = self.c.big_endian;
        let err = |kind| ReadError {
            path: self.file.path.clone(),
            kind,
        };
        let bad = |reason| err(ReadErrorKind::BadBlock { offset: at, reason });
        let (iface_id, ticks, caplen, wirelen, data_at) = match kind {
            6 | 2 => {
                if body.len() < 20 {
                    return Err(bad("packet block too short"));
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
                    return Err(bad("simple packet block too short"));
                }
                let wirelen = read_u32(body, 0, be);
                let snap = self.c.ifaces.first().map_or(0, |i| i.snaplen);
                let mut caplen = wirelen.min((body.len() - 4) as u32);
                if snap != 0 {
                    caplen = caplen.min(snap);
                }
                (0, 0, caplen, wirelen, 4)
            }
        };
        if caplen > MAX_RECORD {
            return Err(err(ReadErrorKind::Oversized {
                record: self.c.number,
                offset: at,
                len: caplen,
                max: MAX_RECORD,
            }));
        }
        let Some(iface) = self.c.ifaces.get(iface_id as usize) else {
            return Err(err(ReadErrorKind::UnknownInterface {
                record: self.c.number,
                id: iface_id,
            }));
        };
        let data = body
            .get(data_at..data_at + caplen as usize)
            .ok_or_else(|| bad("packet data runs past the block"))?;
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
        Ok(Record {
            number: self.c.number,
            ts_ns: iface.to_ns(ticks),
            data,
            wirelen,
            link: iface.link,
            iface: self.name(iface),
            direction: direction.or_else(|| cooked_direction(data, iface.link)),
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, ReadError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.file.next_record(&mut self.cursor)
    }
}

/// How far ahead of the reader the cache is asked for the file's bytes.
const PREFETCH_DISTANCE: usize = 8192;
const CACHE_LINE: usize = 64;

/// Ask the cache for the bytes a little ahead of `at`. Records form a chain (each header gives the next
/// one's offset), so the hardware cannot run ahead of us; we can, since the file is read in order.
#[inline]
fn prefetch_ahead(b: &[u8], at: usize, prefetched: &mut usize) {
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
fn cooked_direction(data: &[u8], link: LinkType) -> Option<Direction> {
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

/// `body_at`: where the body starts in the file, to record the name as a range of it.
fn parse_idb(body: &[u8], body_at: usize, be: bool) -> Option<Iface> {
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
        name: option(options, be, 2).map(|v| {
            (
                v.as_ptr() as usize - body.as_ptr() as usize + body_at,
                v.len(),
            )
        }),
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
