//! The offline path (`pcapdump read`): one pass over a memory-mapped capture file, the filter evaluated
//! in place, matching records cut to the snap length and printed as brief lines or written as pcap.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::brief::{BriefFormatter, PacketMeta};
use crate::clock::Clock;
use crate::filter::Filter;
use crate::limits::MAX_SNAPLEN;
use crate::packet::LinkType;
use crate::pcap::{encode_record, AtomicFile, CaptureFile, Cursor, PcapWriter, ReadError, Record};

/// Brief lines are gathered into chunks of this size before each write.
const LINE_CHUNK: usize = 1 << 20;

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
        match (self.filter, r.link) {
            (Some(f), LinkType::Other(link)) if !f.is_empty() => Err(OfflineError::UndecodedLink {
                path: path.into(),
                record: r.number,
                link,
            }),
            (filter, _) => Ok(filter.is_none_or(|f| f.matches(r.data, r.link))),
        }
    }

    /// The first `snaplen` bytes of `data`.
    #[inline]
    pub fn cut<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        &data[..data.len().min(self.snaplen as usize)]
    }
}

/// The matching records of a file one at a time, for a caller that cannot keep a borrow of the file
/// between two records (an iterator in Python). It owns its file and its selection.
pub struct RecordReader {
    file: CaptureFile,
    cursor: Cursor,
    filter: Option<Filter>,
    snaplen: u32,
    /// Matching records still to hand out (`count`).
    remaining: Option<u64>,
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
            remaining: count,
        }
    }

    /// The next matching record and its data cut to the snap length, handed to `take`; `None` at the
    /// end of the file or once `count` records were handed out.
    pub fn next_with<T>(
        &mut self,
        take: impl FnOnce(&Record, &[u8]) -> T,
    ) -> Option<Result<T, OfflineError>> {
        if self.remaining == Some(0) {
            return None;
        }
        let sel = Selection::new(self.filter.as_ref(), Some(self.snaplen), None);
        loop {
            let r = match self.file.next_record(&mut self.cursor)? {
                Ok(r) => r,
                Err(e) => return Some(Err(e.into())),
            };
            match sel.keeps(self.file.path(), &r) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => return Some(Err(e)),
            }
            if let Some(n) = self.remaining.as_mut() {
                *n -= 1;
            }
            return Some(Ok(take(&r, sel.cut(r.data))));
        }
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

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("'{path}': cannot write: {source}")]
    Write { path: String, source: io::Error },
    #[error("'{path}': record {record} has link type {found}, but a pcap file holds one link type ({first}); split the capture by interface first")]
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
    /// The reader of our output went away (e.g. `| head`): not an error worth a message.
    #[error("output closed")]
    OutputClosed,
}

/// Print brief lines (or JSON lines) of the selected records to `out`, times written by `clock`.
pub fn print_lines(
    file: &CaptureFile,
    sel: &Selection,
    json: bool,
    clock: Clock,
    out: &mut dyn Write,
) -> Result<Summary, OfflineError> {
    let mut fmt = BriefFormatter::with_clock(clock);
    let mut buf = Vec::with_capacity(LINE_CHUNK + 4096);
    let mut sum = Summary::default();
    let flush = |buf: &mut Vec<u8>, out: &mut dyn Write| -> Result<(), OfflineError> {
        out.write_all(buf).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => OfflineError::OutputClosed,
            _ => OfflineError::Write {
                path: "standard output".into(),
                source: e,
            },
        })?;
        buf.clear();
        Ok(())
    };
    let result = for_each_selected(file, sel, &mut sum, |r, data| {
        let meta = PacketMeta::from(r);
        if json {
            fmt.json(&mut buf, &meta, data);
        } else {
            fmt.text(&mut buf, &meta, data);
        }
        if buf.len() >= LINE_CHUNK {
            flush(&mut buf, out)?;
        }
        Ok(())
    });
    // Lines before a damaged record are still shown, then the error.
    flush(&mut buf, out)?;
    out.flush().map_err(|e| OfflineError::Write {
        path: "standard output".into(),
        source: e,
    })?;
    result.map(|_| sum)
}

/// Write the selected records to a pcap file at `dest`; on any error nothing is left at `dest`.
///
/// Two threads: this one walks the file and runs the filter, a writer thread hands the kept records to
/// the kernel. A record already laid out as we would write it (classic pcap, µs, little-endian, not cut)
/// is written straight from the mapped file, with neighbours joined into one piece; others are encoded.
/// Write the selected records to a pcap file at `dest`, and hand the file back to be committed (or
/// dropped, which leaves nothing) by the caller: a Ctrl-C during the write must leave no file.
pub fn write_pcap(
    file: &CaptureFile,
    sel: &Selection,
    dest: &Path,
) -> Result<(Summary, AtomicFile), OfflineError> {
    let shown = dest.display().to_string();
    let write_err = |source| OfflineError::Write {
        path: shown.clone(),
        source,
    };
    let link = file.link_type().unwrap_or(LinkType::Ethernet);
    let out = AtomicFile::create_or_stream(dest).map_err(write_err)?;
    let mut writer = PcapWriter::new(out, link, sel.snaplen).map_err(write_err)?;
    let mut sum = Summary::default();
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    let scanned = std::thread::scope(|scope| {
        let out = writer.get_mut();
        let drain = scope.spawn(move || -> io::Result<()> {
            for mut batch in full_rx {
                batch.write_to(out)?;
                batch.clear();
                // The scanner may have finished and gone: then the batch is simply dropped.
                let _ = empty_tx.send(batch);
            }
            Ok(())
        });
        let mut batch = Batch::default();
        let scanned = for_each_selected(file, sel, &mut sum, |r, data| {
            if r.link != link {
                return Err(OfflineError::MixedLinkTypes {
                    path: file.path().into(),
                    record: r.number,
                    first: link.number(),
                    found: r.link.number(),
                });
            }
            match file.stored_pcap_record(r) {
                Some(raw) if data.len() == r.data.len() && r.wirelen as usize >= data.len() => {
                    batch.push_mapped(raw)
                }
                _ => batch.push_encoded(r.ts_ns, data, r.wirelen, sel.snaplen),
            }
            if batch.bytes >= BATCH_BYTES {
                let next = empty_rx.try_recv().unwrap_or_default();
                if full_tx.send(std::mem::replace(&mut batch, next)).is_err() {
                    // The writer stopped on an error, which is reported below.
                    return Err(OfflineError::OutputClosed);
                }
            }
            Ok(())
        });
        if scanned.is_ok() {
            let _ = full_tx.send(batch);
        }
        drop(full_tx);
        let drained = drain.join().expect("the writer thread does not panic");
        match (scanned, drained) {
            // Pages of the input past its new end: the kernel's copy for writev faults (EFAULT), and
            // the write fails because the input was cut, which is what to say.
            (_, Err(_)) if file.was_cut() => Err(OfflineError::Read(ReadError {
                path: file.path().into(),
                kind: crate::pcap::ReadErrorKind::CutWhileReading,
            })),
            // A write error stops the scan too: report the write error, not its echo.
            (_, Err(e)) => Err(write_err(e)),
            (Err(e), Ok(())) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    });
    scanned?;
    Ok((sum, writer.into_inner()))
}

/// Kept records are handed to the writer thread in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;
const BATCHES_IN_FLIGHT: usize = 4;
/// The kernel takes at most this many pieces per writev (IOV_MAX on Linux).
const MAX_IOVECS: usize = 1024;

/// A stretch of output: bytes of the mapped input file, or bytes encoded into the batch.
enum Piece<'f> {
    Mapped(&'f [u8]),
    Encoded(std::ops::Range<usize>),
}

#[derive(Default)]
struct Batch<'f> {
    pieces: Vec<Piece<'f>>,
    encoded: Vec<u8>,
    bytes: usize,
}

impl<'f> Batch<'f> {
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

    fn push_encoded(&mut self, ts_ns: u64, data: &[u8], wirelen: u32, snaplen: u32) {
        let start = self.encoded.len();
        encode_record(&mut self.encoded, ts_ns, data, wirelen, snaplen);
        self.bytes += self.encoded.len() - start;
        match self.pieces.last_mut() {
            Some(Piece::Encoded(range)) if range.end == start => range.end = self.encoded.len(),
            _ => self.pieces.push(Piece::Encoded(start..self.encoded.len())),
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
                Piece::Encoded(range) => io::IoSlice::new(&self.encoded[range.clone()]),
            }));
            out.write_direct_vectored(&mut slices)?;
        }
        Ok(())
    }
}

fn for_each_selected<'f>(
    file: &'f CaptureFile,
    sel: &Selection,
    sum: &mut Summary,
    mut each: impl FnMut(&Record<'f>, &'f [u8]) -> Result<(), OfflineError>,
) -> Result<(), OfflineError> {
    if sel.count == Some(0) {
        return Ok(());
    }
    // A helper maps the file's pages ahead of us, so this thread spends its time on records.
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| file.prefault(&done));
        let walked = walk_selected(file, sel, sum, &mut each);
        done.store(true, Ordering::Relaxed);
        walked
    })
}

fn walk_selected<'f>(
    file: &'f CaptureFile,
    sel: &Selection,
    sum: &mut Summary,
    each: &mut impl FnMut(&Record<'f>, &'f [u8]) -> Result<(), OfflineError>,
) -> Result<(), OfflineError> {
    for r in file.records() {
        let r = r?;
        sum.read += 1;
        if !sel.keeps(file.path(), &r)? {
            continue;
        }
        let data = sel.cut(r.data);
        each(&r, data)?;
        sum.matched += 1;
        sum.bytes += data.len() as u64;
        if sel.count == Some(sum.matched) {
            break;
        }
    }
    Ok(())
}
