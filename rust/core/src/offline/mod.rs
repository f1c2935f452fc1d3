//! The offline path (`pcapdump read`): one pass over a capture (a memory-mapped file, or a stream read as
//! it arrives), the filter evaluated in place, matching records cut to the snap length and printed as
//! brief lines or written as pcap.

mod chunked;

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::brief::{BriefFormatter, PacketMeta};
use crate::clock::Clock;
use crate::filter::Filter;
use crate::limits::MAX_SNAPLEN;
use crate::packet::LinkType;
use crate::pcap::{
    encode_record, AtomicFile, CaptureFile, ChunkRecords, Cursor, Frame, InterfaceBlock,
    PcapWriter, PcapngWriter, ReadError, ReadErrorKind, Record, Section, Waiter,
};
use chunked::{read_in_chunks, Chunk, ChunkWork};

/// Brief lines are gathered into chunks of this size before each write.
const LINE_CHUNK: usize = 1 << 20;
/// Records between two looks at Ctrl-C in a file read by one thread: a few milliseconds of work.
const INTERRUPT_EVERY: u64 = 1 << 16;

#[derive(Clone, Copy, Debug)]
pub struct Selection<'a> {
    pub filter: Option<&'a Filter>,
    /// Keep at most this many bytes of each packet (1 … 262144).
    pub snaplen: u32,
    /// Stop after this many matching packets.
    pub count: Option<u64>,
}

impl Default for Selection<'_> {
    fn default() -> Self {
        Selection {
            filter: None,
            snaplen: MAX_SNAPLEN,
            count: None,
        }
    }
}

impl<'a> Selection<'a> {
    /// A selection by the filter (none: every record), the snap length (none: whole packets) and the
    /// count (none: no limit).
    pub fn new(filter: Option<&'a Filter>, snaplen: Option<u32>, count: Option<u64>) -> Self {
        Selection {
            filter,
            snaplen: snaplen.unwrap_or(MAX_SNAPLEN),
            count,
        }
    }

    /// Whether the filter keeps `r`, a record of the file at `path`. Over a link type we do not decode,
    /// filter words would silently match nothing: that is an error instead.
    #[inline]
    pub fn keeps(&self, path: &str, r: &Record) -> Result<bool, OfflineError> {
        self.can_read(path, r.link, r.number)?;
        Ok(self.filter.is_none_or(|f| f.matches(r.data, r.link)))
    }

    /// Whether the filter words can look into `link` (the link type of record `record` of the file at
    /// `path`): with words, a link type we do not decode is an error.
    #[inline]
    fn can_read(&self, path: &str, link: LinkType, record: u64) -> Result<(), OfflineError> {
        match (self.filter, link) {
            (Some(f), LinkType::Other(link)) if !f.is_empty() => Err(OfflineError::UndecodedLink {
                path: path.into(),
                record,
                link,
            }),
            _ => Ok(()),
        }
    }

    /// The first `snaplen` bytes of `data`.
    #[inline]
    pub fn cut<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        &data[..data.len().min(self.snaplen as usize)]
    }

    /// The records of `chunk` the filter keeps, with their data cut to the snap length, to `each`; all
    /// are counted in the summary.
    #[inline]
    fn each_kept<'b>(
        &self,
        path: &str,
        chunk: &ChunkRecords<'b>,
        mut each: impl FnMut(Frame<'b>, Record<'b>, &'b [u8]),
    ) -> Result<Summary, OfflineError> {
        let mut sum = Summary::default();
        let link = chunk.link();
        // One link type for the whole file: looked at once, not for each record.
        self.can_read(path, link, chunk.first())?;
        let filter = self.filter.filter(|f| !f.is_empty());
        for (number, frame) in (chunk.first()..).zip(chunk.frames()) {
            sum.read += 1;
            if filter.is_some_and(|f| !f.matches(frame.data, link)) {
                continue;
            }
            let data = self.cut(frame.data);
            sum.keep(data);
            each(frame, chunk.record(frame, number), data);
        }
        Ok(sum)
    }

    /// Count `r` as read, and when the filter keeps it, as matched: its data cut to the snap length.
    #[inline]
    fn take<'d>(
        &self,
        path: &str,
        r: &Record<'d>,
        sum: &mut Summary,
    ) -> Result<Option<&'d [u8]>, OfflineError> {
        sum.read += 1;
        if self.filter.is_some() && !self.keeps(path, r)? {
            return Ok(None);
        }
        let data = self.cut(r.data);
        sum.keep(data);
        Ok(Some(data))
    }
}

/// The matching records of a file one at a time, for a caller that cannot keep a borrow of the file
/// between two records (an iterator in Python). It owns its file and its selection.
pub struct RecordReader {
    file: CaptureFile,
    cursor: Cursor,
    filter: Option<Filter>,
    snaplen: u32,
    count: Option<u64>,
    sum: Summary,
}

impl RecordReader {
    pub fn new(
        file: CaptureFile,
        filter: Option<Filter>,
        snaplen: Option<u32>,
        count: Option<u64>,
    ) -> RecordReader {
        RecordReader {
            cursor: file.cursor(),
            file,
            filter,
            snaplen: snaplen.unwrap_or(MAX_SNAPLEN),
            count,
            sum: Summary::default(),
        }
    }

    /// Whether the file is a stream: the next record may keep the caller waiting.
    pub fn is_stream(&self) -> bool {
        self.file.is_stream()
    }

    /// The next matching record and its data cut to the snap length; `None` at the end of the file or
    /// once `count` records were handed out. `waiter` is asked while a stream is silent.
    pub fn next_packet(
        &mut self,
        waiter: &mut dyn Waiter,
    ) -> Option<Result<(Record<'_>, &[u8]), OfflineError>> {
        let sel = Selection::new(self.filter.as_ref(), Some(self.snaplen), self.count);
        next_selected(&self.file, &mut self.cursor, &sel, &mut self.sum, waiter)
    }
}

/// The next record `sel` keeps and its data cut to the snap length, counted in `sum`; `None` at the
/// end of the input, or as soon as `sel.count` records were kept (nothing more is read).
fn next_selected<'a>(
    file: &'a CaptureFile,
    cursor: &'a mut Cursor,
    sel: &Selection,
    sum: &mut Summary,
    waiter: &mut dyn Waiter,
) -> Option<Result<(Record<'a>, &'a [u8]), OfflineError>> {
    if sel.count.is_some_and(|n| sum.matched >= n) {
        return None;
    }
    loop {
        // A mapped file never waits: Ctrl-C is asked every so many records instead.
        if sum.read % INTERRUPT_EVERY == INTERRUPT_EVERY - 1 && waiter.interrupted() {
            return Some(Err(ReadError {
                path: file.path().into(),
                kind: ReadErrorKind::Interrupted,
            }
            .into()));
        }
        if let Err(e) = file.advance(cursor, waiter)? {
            return Some(Err(e.into()));
        }
        match sel.take(file.path(), &file.current(cursor)?, sum) {
            Ok(None) => continue,
            Ok(Some(_)) => {}
            Err(e) => return Some(Err(e)),
        }
        // Borrowed again, for as long as the caller keeps it, once it is known to be handed out.
        let cursor: &'a Cursor = cursor;
        let r = file.current(cursor)?;
        return Some(Ok((r, sel.cut(r.data))));
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read from the file.
    pub read: u64,
    /// Records that matched (and were printed or written).
    pub matched: u64,
    /// Bytes of packet data kept (after the snap length).
    pub bytes: u64,
}

impl Summary {
    /// Count a matching record, `data` as kept.
    #[inline]
    fn keep(&mut self, data: &[u8]) {
        self.matched += 1;
        self.bytes += data.len() as u64;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("'{path}': cannot write: {source}")]
    Write { path: String, source: io::Error },
    #[error("'{path}': record {record} has link type {found}, but a pcap file holds one link type ({first}); write pcapng (-pcapng), which keeps each interface's")]
    MixedLinkTypes {
        path: String,
        record: u64,
        first: u32,
        found: u32,
    },
    #[error("'{path}': filter words cannot look into link type {link} (record {record}); they read Ethernet, Linux cooked, raw IP and BSD loopback frames")]
    UndecodedLink {
        path: String,
        record: u64,
        link: u32,
    },
    /// The input ended early (`is_cut`); the packets before it were written, and the file kept.
    #[error("{cut}; kept {kept} of the {read} packets before the cut in '{out}'")]
    CutShort {
        cut: ReadError,
        out: String,
        kept: u64,
        read: u64,
    },
    /// The reader of our output went away (e.g. `| head`): not an error worth a message.
    #[error("output closed")]
    OutputClosed,
}

impl OfflineError {
    /// A failure to write to `path`; the reader of a pipe going away (`| head`) is no error.
    pub fn writing(path: &str, source: io::Error) -> OfflineError {
        match source.kind() {
            io::ErrorKind::BrokenPipe => OfflineError::OutputClosed,
            _ => OfflineError::Write {
                path: path.into(),
                source,
            },
        }
    }
}

/// Print brief lines (or JSON lines) of the selected records to `out`, times written by `clock`. From a
/// stream, the lines gathered are written whenever it falls silent, and `interrupted` is asked while it
/// is. A large classic pcap file is formatted on every core, in chunks printed in order.
pub fn print_lines(
    file: &CaptureFile,
    sel: &Selection,
    json: bool,
    clock: Clock,
    out: &mut dyn Write,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Summary, OfflineError> {
    let mut sum = Summary::default();
    let mut cursor = file.cursor();
    let work = LineWork {
        sel,
        json,
        clock: &clock,
        path: file.path(),
    };
    let path = file.path();
    // Asked by the walk after each chunk, and by a write of its lines that a signal interrupts.
    let asked = std::cell::RefCell::new(interrupted);
    let ask = || (asked.borrow_mut())();
    let mut emit = |mut chunk: Vec<u8>| {
        write_lines(out, &chunk, path, &mut || ask())?;
        chunk.clear();
        Ok(Some(chunk))
    };
    let count = sel.count;
    if read_in_chunks(
        file,
        count,
        &work,
        &mut emit,
        &mut || ask(),
        &mut sum,
        &mut cursor,
    )? {
        return Ok(sum);
    }
    let mut fmt = BriefFormatter::with_clock(clock);
    let mut lines = Lines {
        buf: Vec::with_capacity(LINE_CHUNK + 4096),
        out,
        path,
        interrupted: asked.into_inner(),
        failed: None,
    };
    let result = with_prefault(file, || loop {
        let (r, data) = match next_selected(file, &mut cursor, sel, &mut sum, &mut lines) {
            None => break Ok(()),
            Some(Ok(selected)) => selected,
            Some(Err(e)) => break Err(e),
        };
        fmt.push(&mut lines.buf, &PacketMeta::from(&r), data, json);
        if lines.buf.len() >= LINE_CHUNK {
            if let Err(e) = lines.write() {
                break Err(e);
            }
        }
    });
    // A write that failed while the stream was silent stopped the reading: that is what to say.
    if let Some(e) = lines.failed.take() {
        return Err(e);
    }
    // Lines before a damaged record are still shown, then the error.
    lines.write()?;
    result.map(|_| sum)
}

/// Brief lines on their way to the output.
struct Lines<'o> {
    buf: Vec<u8>,
    out: &'o mut dyn Write,
    path: &'o str,
    interrupted: &'o mut dyn FnMut() -> bool,
    /// Why a write while the input was silent failed.
    failed: Option<OfflineError>,
}

impl Lines<'_> {
    /// Write and flush the lines gathered.
    fn write(&mut self) -> Result<(), OfflineError> {
        let written = write_lines(self.out, &self.buf, self.path, self.interrupted);
        self.buf.clear();
        written
    }
}

/// Write and flush `lines` to standard output, the lines of the file at `path`. A write that a signal
/// interrupts asks `interrupted`: an output that takes nothing (a pipe nobody reads) would otherwise hold
/// Ctrl-C back until it takes data again. (A signal ends a write into a pipe short, or, when the write
/// had taken nothing yet, with EINTR.)
fn write_lines(
    out: &mut dyn Write,
    mut lines: &[u8],
    path: &str,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<(), OfflineError> {
    let failed = |e| OfflineError::writing("standard output", e);
    while !lines.is_empty() {
        let cut_short = match out.write(lines) {
            Ok(0) => return Err(failed(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                lines = &lines[n..];
                !lines.is_empty()
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => return Err(failed(e)),
        };
        if cut_short && interrupted() {
            return Err(OfflineError::Read(ReadError {
                path: path.into(),
                kind: ReadErrorKind::Interrupted,
            }));
        }
    }
    out.flush().map_err(failed)
}

/// Brief lines of the records of a chunk, for `walk_chunks`.
struct LineWork<'s> {
    sel: &'s Selection<'s>,
    json: bool,
    clock: &'s Clock,
    path: &'s str,
}

impl ChunkWork for LineWork<'_> {
    /// 32768 records at most, and a JSON line of a record of a few bytes is 256 bytes: 8 MB.
    const BLOCK_BYTES: usize = 512 << 10;
    type Worker = BriefFormatter;
    type Out = Vec<u8>;

    fn worker(&self) -> BriefFormatter {
        BriefFormatter::with_clock(self.clock.clone())
    }

    fn fresh(&self) -> Vec<u8> {
        Vec::with_capacity(LINE_CHUNK)
    }

    fn work(
        &self,
        fmt: &mut BriefFormatter,
        chunk: Chunk,
        out: &mut Vec<u8>,
    ) -> (Result<Summary, OfflineError>, Vec<u8>) {
        let formatted = self
            .sel
            .each_kept(self.path, &chunk.records(), |_, r, data| {
                fmt.push(out, &PacketMeta::from(&r), data, self.json)
            });
        (formatted, chunk.bytes)
    }
}

impl Waiter for Lines<'_> {
    fn interrupted(&mut self) -> bool {
        (self.interrupted)()
    }

    /// The stream is silent: whoever watches sees the lines of the packets that came.
    fn idle(&mut self) -> bool {
        if self.buf.is_empty() {
            return false;
        }
        match self.write() {
            Ok(()) => false,
            Err(e) => {
                self.failed = Some(e);
                true
            }
        }
    }
}

/// What `write_pcap` wrote, to be committed (or dropped, which leaves nothing) by the caller.
pub struct Written {
    pub summary: Summary,
    pub file: AtomicFile,
    /// The input ended early (`is_cut`): what came before it is in `file`, complete.
    pub cut: Option<ReadError>,
}

/// Write the selected records to a pcap file at `dest`, and hand the file back to be committed (or
/// dropped, which leaves nothing) by the caller: a Ctrl-C during the write must leave no file. Input
/// that ends early (inside a record, or a .gz cut short) is not a reason to lose the packets before it:
/// they are written, and the cut is handed back beside the file. Any other error leaves nothing.
///
/// Two threads: this one walks the input and runs the filter, a writer thread hands the kept records to
/// the kernel. A record already laid out as we would write it (classic pcap, µs, little-endian, not cut)
/// is written straight from a mapped file, with neighbours joined into one piece; others are encoded.
/// From a stream, what was kept is handed to the writer whenever the stream falls silent.
pub fn write_pcap(
    file: &CaptureFile,
    sel: &Selection,
    dest: &Path,
    mut interrupted: &mut dyn FnMut() -> bool,
) -> Result<Written, OfflineError> {
    let shown = dest.display().to_string();
    let out = create_output(dest, &shown)?;
    let write_err = |source| OfflineError::writing(&shown, source);
    let mut cursor = file.cursor();
    // The link type of the first interface: for pcapng, read as far as its description.
    let first = file.first_link(&mut cursor, &mut interrupted);
    let link = first
        .as_ref()
        .ok()
        .copied()
        .flatten()
        .unwrap_or(LinkType::Ethernet);
    let mut writer = PcapWriter::new(out, link, sel.snaplen).map_err(write_err)?;
    let mut sum = Summary::default();
    let scanned = match first {
        Err(e) => Err(e.into()),
        Ok(_) => scan(
            file,
            &mut cursor,
            sel,
            link,
            &mut sum,
            writer.get_mut(),
            interrupted,
            &shown,
        ),
    };
    let cut = match scanned {
        Ok(()) => None,
        Err(OfflineError::Read(e)) if is_cut(&e) => Some(e),
        Err(e) => return Err(e),
    };
    Ok(Written {
        summary: sum,
        file: writer.into_inner(),
        cut,
    })
}

/// Write the selected records as pcapng at `dest`, keeping the input's interfaces (one interface block
/// for each name and link type, in the order they first appear; a classic pcap input is one unnamed
/// interface) and each packet's direction; otherwise as `write_pcap`, cut input included. Into a pipe
/// the packets are handed on whenever the input falls silent.
pub fn write_pcapng(
    file: &CaptureFile,
    sel: &Selection,
    dest: &Path,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Written, OfflineError> {
    let shown = dest.display().to_string();
    let out = create_output(dest, &shown)?;
    let buffered = io::BufWriter::with_capacity(BATCH_BYTES, out);
    let write_err = |source| OfflineError::writing(&shown, source);
    let mut waiter = Flushing {
        writer: PcapngWriter::new(buffered, &Section::here()).map_err(write_err)?,
        interrupted,
        failed: None,
    };
    let mut ifaces: Vec<(Option<String>, LinkType)> = Vec::new();
    let mut cursor = file.cursor();
    let mut sum = Summary::default();
    let scanned = loop {
        let (r, data) = match next_selected(file, &mut cursor, sel, &mut sum, &mut waiter) {
            None => break Ok(()),
            Some(Ok(selected)) => selected,
            Some(Err(e)) => break Err(e),
        };
        let known = ifaces
            .iter()
            .position(|(name, link)| name.as_deref() == r.iface && *link == r.link);
        let id = match known {
            Some(id) => id,
            None => {
                let block = InterfaceBlock {
                    name: r.iface.unwrap_or(""),
                    link: r.link,
                    snaplen: sel.snaplen,
                    filter: None,
                };
                if let Err(e) = waiter.writer.add_interface(&block) {
                    break Err(write_err(e));
                }
                ifaces.push((r.iface.map(str::to_owned), r.link));
                ifaces.len() - 1
            }
        };
        let written =
            waiter
                .writer
                .write_packet(id as u32, r.ts_ns, data, r.wirelen, r.direction, None);
        if let Err(e) = written {
            break Err(write_err(e));
        }
    };
    if let Some(e) = waiter.failed.take() {
        return Err(write_err(e));
    }
    let cut = match scanned {
        Ok(()) => None,
        Err(OfflineError::Read(e)) if is_cut(&e) => Some(e),
        Err(e) => return Err(e),
    };
    let file = waiter
        .writer
        .into_inner()
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?;
    Ok(Written {
        summary: sum,
        file,
        cut,
    })
}

/// The output of `read -w`, `shown` as its path in messages. A pipe with no reader is an error here,
/// not the quiet end of a reader that went away during the write.
fn create_output(dest: &Path, shown: &str) -> Result<AtomicFile, OfflineError> {
    AtomicFile::create_or_stream(dest).map_err(|source| OfflineError::Write {
        path: shown.into(),
        source,
    })
}

/// Asks about Ctrl-C, and hands what was written on when the input falls silent (a pipe's reader sees
/// each packet then, not when a buffer fills).
struct Flushing<'i, W: Write> {
    writer: PcapngWriter<W>,
    interrupted: &'i mut dyn FnMut() -> bool,
    failed: Option<io::Error>,
}

impl<W: Write> Waiter for Flushing<'_, W> {
    fn interrupted(&mut self) -> bool {
        (self.interrupted)()
    }

    fn idle(&mut self) -> bool {
        match self.writer.flush() {
            Ok(()) => false,
            Err(e) => {
                self.failed = Some(e);
                true
            }
        }
    }
}

/// The input ended early: inside a record, or inside its gzip data; everything before is sound. (Not:
/// another program cut a mapped file while we read it.)
fn is_cut(e: &ReadError) -> bool {
    matches!(
        e.kind,
        ReadErrorKind::Truncated { .. } | ReadErrorKind::GzipCut { .. }
    )
}

#[allow(clippy::too_many_arguments)]
fn scan(
    file: &CaptureFile,
    cursor: &mut Cursor,
    sel: &Selection,
    link: LinkType,
    sum: &mut Summary,
    out: &mut AtomicFile,
    interrupted: &mut dyn FnMut() -> bool,
    shown: &str,
) -> Result<(), OfflineError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let drain = scope.spawn(move || -> io::Result<()> {
            for mut batch in full_rx {
                batch.write_to(out)?;
                batch.release_mapped(file);
                batch.clear();
                // The scanner may have finished and gone: then the batch is simply dropped.
                let _ = empty_tx.send(batch);
            }
            Ok(())
        });
        let mut batches = Batches {
            batch: Batch::default(),
            full_tx,
            empty_rx,
            interrupted,
        };
        let scanned = (|| {
            let work = BatchWork {
                sel,
                path: file.path(),
                batch: std::marker::PhantomData,
            };
            let (full_tx, empty_rx) = (&batches.full_tx, &batches.empty_rx);
            let mut emit = |batch| match full_tx.send(batch) {
                Ok(()) => Ok(empty_rx.try_recv().ok()),
                Err(_) => Err(OfflineError::OutputClosed),
            };
            let count = sel.count;
            let interrupted = &mut *batches.interrupted;
            if read_in_chunks(file, count, &work, &mut emit, interrupted, sum, cursor)? {
                return Ok(());
            }
            with_prefault(file, || loop {
                let (r, data) = match next_selected(file, cursor, sel, sum, &mut batches) {
                    None => break Ok(()),
                    Some(Ok(selected)) => selected,
                    Some(Err(e)) => break Err(e),
                };
                if r.link != link {
                    break Err(OfflineError::MixedLinkTypes {
                        path: file.path().into(),
                        record: r.number,
                        first: link.number(),
                        found: r.link.number(),
                    });
                }
                batches.batch.push_record(file, &r, data, sel.snaplen);
                // A writer that stopped on an error says why below.
                if batches.batch.bytes >= BATCH_BYTES && !batches.hand_over() {
                    break Err(OfflineError::OutputClosed);
                }
            })
        })();
        let keep = match &scanned {
            Ok(()) => true,
            Err(OfflineError::Read(e)) => is_cut(e),
            Err(_) => false,
        };
        if keep {
            batches.hand_over();
        }
        drop(batches);
        let drained = drain.join().expect("the writer thread does not panic");
        match (scanned, drained) {
            // Pages of the input past its new end: the kernel's copy for writev faults (EFAULT), and
            // the write fails because the input was cut, which is what to say.
            (_, Err(_)) if file.was_cut() => Err(OfflineError::Read(ReadError {
                path: file.path().into(),
                kind: ReadErrorKind::CutWhileReading,
            })),
            // A write error stops the scan too: report the write error, not its echo.
            (_, Err(source)) => Err(OfflineError::writing(shown, source)),
            (scanned, Ok(())) => scanned,
        }
    })
}

/// The batch being filled, and the way to the writer thread.
struct Batches<'f, 'i> {
    batch: Batch<'f>,
    full_tx: mpsc::SyncSender<Batch<'f>>,
    empty_rx: mpsc::Receiver<Batch<'f>>,
    interrupted: &'i mut dyn FnMut() -> bool,
}

impl Batches<'_, '_> {
    /// Hand the batch to the writer thread, and start another (one it wrote already, if any); false
    /// when the writer has stopped.
    fn hand_over(&mut self) -> bool {
        let next = self.empty_rx.try_recv().unwrap_or_default();
        self.full_tx
            .send(std::mem::replace(&mut self.batch, next))
            .is_ok()
    }
}

impl Waiter for Batches<'_, '_> {
    fn interrupted(&mut self) -> bool {
        (self.interrupted)()
    }

    /// The stream is silent: what was kept goes on to the output now (a pipe's reader sees it).
    fn idle(&mut self) -> bool {
        self.batch.bytes > 0 && !self.hand_over()
    }
}

/// A record kept from a chunk shorter than this, and not next to the one before, is copied into the
/// batch rather than written from the chunk as a piece of its own.
const COPIED_BELOW: usize = 512;
/// Kept records are handed to the writer thread in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;
const BATCHES_IN_FLIGHT: usize = 4;
/// The kernel takes at most this many pieces per writev (IOV_MAX on Linux).
const MAX_IOVECS: usize = 1024;

/// A stretch of output: bytes of the mapped input file, of the input read into the batch, or encoded
/// into the batch.
enum Piece<'f> {
    Mapped(&'f [u8]),
    Input(std::ops::Range<usize>),
    Encoded(std::ops::Range<usize>),
}

#[derive(Default)]
struct Batch<'f> {
    pieces: Vec<Piece<'f>>,
    /// Bytes of the input file read into memory (a chunk's buffer), which `Input` pieces are of.
    input: Vec<u8>,
    encoded: Vec<u8>,
    bytes: usize,
}

/// The pcap output of the records of a chunk, for `walk_chunks`: the batch keeps the chunk's bytes,
/// and records stored as we write them go out straight from there.
struct BatchWork<'s, 'f> {
    sel: &'s Selection<'s>,
    path: &'s str,
    /// Its batches are those of the mapped file's writer.
    batch: std::marker::PhantomData<Batch<'f>>,
}

impl<'f> ChunkWork for BatchWork<'_, 'f> {
    /// The output is at most the block (its records, or a part of them, some encoded again).
    const BLOCK_BYTES: usize = 2 << 20;
    type Worker = ();
    type Out = Batch<'f>;

    fn worker(&self) {}

    fn fresh(&self) -> Batch<'f> {
        Batch::default()
    }

    fn work(
        &self,
        _: &mut (),
        chunk: Chunk,
        out: &mut Batch<'f>,
    ) -> (Result<Summary, OfflineError>, Vec<u8>) {
        let as_ours = chunk.layout.is_written_as_ours();
        let records = chunk.records();
        let pieces = self.sel.each_kept(self.path, &records, |frame, r, data| {
            if as_ours && data.len() == r.data.len() && r.wirelen as usize >= data.len() {
                let (at, stored) = records.stored(frame);
                out.push_stored(at, stored);
            } else {
                out.push_encoded(r.ts_ns, data, r.wirelen, self.sel.snaplen);
            }
        });
        // The batch keeps the chunk's bytes, and gives the reader the buffer it held before.
        let held = std::mem::replace(&mut out.input, chunk.bytes);
        (pieces, held)
    }
}

impl<'f> Batch<'f> {
    /// `r`, its data cut to `data`: straight from the map when it is stored as we would write it
    /// (classic pcap, µs, little-endian, not cut), else encoded.
    #[inline]
    fn push_record(&mut self, file: &'f CaptureFile, r: &Record, data: &[u8], snaplen: u32) {
        match file.stored_pcap_record(r) {
            Some(raw) if data.len() == r.data.len() && r.wirelen as usize >= data.len() => {
                self.push_mapped(raw)
            }
            _ => self.push_encoded(r.ts_ns, data, r.wirelen, snaplen),
        }
    }

    fn push_mapped(&mut self, raw: &'f [u8]) {
        self.bytes += raw.len();
        if let Some(Piece::Mapped(last)) = self.pieces.last_mut() {
            // Records next to each other in the file go out as one piece.
            if last.as_ptr_range().end == raw.as_ptr() {
                // SAFETY: both slices lie in the same mapping and `raw` starts where `last` ends.
                *last =
                    unsafe { std::slice::from_raw_parts(last.as_ptr(), last.len() + raw.len()) };
                return;
            }
        }
        self.pieces.push(Piece::Mapped(raw));
    }

    /// `stored`, a record as we write it, at `at` in the buffer this batch will hold as its `input`:
    /// written from there, or copied when it is small and alone (many small pieces would cost the
    /// kernel more than the copy).
    fn push_stored(&mut self, at: usize, stored: &[u8]) {
        let range = at..at + stored.len();
        self.bytes += stored.len();
        match self.pieces.last_mut() {
            // Records next to each other in the input go out as one piece.
            Some(Piece::Input(last)) if last.end == range.start => last.end = range.end,
            _ if stored.len() < COPIED_BELOW => {
                let start = self.encoded.len();
                self.encoded.extend_from_slice(stored);
                self.extend_encoded(start);
            }
            _ => self.pieces.push(Piece::Input(range)),
        }
    }

    fn extend_encoded(&mut self, start: usize) {
        match self.pieces.last_mut() {
            Some(Piece::Encoded(range)) if range.end == start => range.end = self.encoded.len(),
            _ => self.pieces.push(Piece::Encoded(start..self.encoded.len())),
        }
    }

    fn push_encoded(&mut self, ts_ns: u64, data: &[u8], wirelen: u32, snaplen: u32) {
        let start = self.encoded.len();
        encode_record(&mut self.encoded, ts_ns, data, wirelen, snaplen);
        self.bytes += self.encoded.len() - start;
        self.extend_encoded(start);
    }

    /// Out of our page tables again: the pages of the mapped file the kernel's copy of this batch
    /// mapped (behind the reader, which released them once already).
    fn release_mapped(&self, file: &CaptureFile) {
        let mut mapped = self.pieces.iter().filter_map(|p| match p {
            Piece::Mapped(bytes) => Some(*bytes),
            _ => None,
        });
        if let Some(first) = mapped.next() {
            file.release_spanning(first, mapped.next_back().unwrap_or(first));
        }
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.encoded.clear();
        self.bytes = 0;
    }

    fn write_to(&self, out: &mut AtomicFile) -> io::Result<()> {
        let mut slices = Vec::with_capacity(MAX_IOVECS);
        for group in self.pieces.chunks(MAX_IOVECS) {
            slices.clear();
            slices.extend(group.iter().map(|p| match p {
                Piece::Mapped(bytes) => io::IoSlice::new(bytes),
                Piece::Input(range) => io::IoSlice::new(&self.input[range.clone()]),
                Piece::Encoded(range) => io::IoSlice::new(&self.encoded[range.clone()]),
            }));
            out.write_direct_vectored(&mut slices)?;
        }
        Ok(())
    }
}

/// Run `walk` over `file` while, for a mapped file, a helper maps its pages ahead of us, so that this
/// thread spends its time on records.
fn with_prefault<T>(file: &CaptureFile, walk: impl FnOnce() -> T) -> T {
    if file.is_stream() {
        return walk();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| file.prefault(&done));
        let walked = walk();
        done.store(true, Ordering::Relaxed);
        walked
    })
}
