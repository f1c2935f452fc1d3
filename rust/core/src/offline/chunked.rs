//! `read` of a large classic pcap file on every core. This thread reads the file in buffers of about
//! `CHUNK_BYTES` (as `cat` would: no page tables to fill and empty, memory a few buffers whatever the
//! file's size) and cuts each at its last whole record by skimming the headers of bytes it has just
//! read (`pcap/chunks.rs`); worker threads filter each chunk and turn it into output (brief lines, or
//! pieces of a pcap file); this thread hands the outputs on in the file's order.
//!
//! Where the skim meets a record that is not well formed, or the file ends inside a record, the chunks
//! end, and the caller reads on from there with the general parser, which says what is wrong as it
//! always did.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Mutex};

use super::{OfflineError, Summary};
use crate::pcap::{
    CaptureFile, ChunkRecords, Cursor, PcapLayout, ReadError, ReadErrorKind, MAX_PCAP_RECORD,
    PCAP_HEADER_LEN,
};

/// Bytes read per chunk: large enough that handing a chunk around costs nothing beside its records,
/// small enough that a few in flight stay in the processor's caches. Larger than any record.
const CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(CHUNK_BYTES > MAX_PCAP_RECORD);
/// Records per chunk at most, so that a chunk's output stays a few megabytes (a JSON line of a record of
/// a few bytes is a few hundred). It binds only for records under 48 bytes.
const CHUNK_RECORDS: u64 = 16_384;
/// Below this size, one thread reads the file: the others would not have started by its end.
const PARALLEL_MIN_BYTES: usize = 4 * CHUNK_BYTES;
/// Worker threads at most, whatever the machine.
const MAX_WORKERS: usize = 8;
/// Chunks read ahead of the output, per thread, and in all.
const IN_FLIGHT_PER_WORKER: usize = 3;
const MAX_IN_FLIGHT: usize = 12;

/// How a file is read in chunks.
struct Plan<'f> {
    file: &'f File,
    layout: PcapLayout,
    /// The file's length when it was opened: what the general parser would read.
    len: usize,
    chunk_bytes: usize,
    /// Worker threads besides this one.
    workers: usize,
}

impl<'f> Plan<'f> {
    /// The plan for `file` read with no count: `None` when it is not a mapped classic pcap file, is
    /// small, or this machine has one core.
    pub fn for_file(file: &'f CaptureFile, count: Option<u64>) -> Option<Plan<'f>> {
        let (source, layout, len) = file.pcap_source()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_WORKERS);
        let (chunk_bytes, min_len, threads) = (CHUNK_BYTES, PARALLEL_MIN_BYTES, threads);
        #[cfg(test)]
        let (chunk_bytes, min_len, threads) = tests::SMALL_CHUNKS
            .get()
            .map_or((chunk_bytes, min_len, threads), |small| (small, 0, 3));
        // This thread reads, and works too while it would otherwise wait: one worker fewer.
        (count.is_none() && threads > 1 && len >= min_len).then_some(Plan {
            file: source,
            layout,
            len,
            chunk_bytes,
            workers: threads - 1,
        })
    }
}

/// Whole records read from the file: the first `len` bytes of `bytes`, from byte `offset` of the file,
/// `records` of them, the first numbered `first`. (The buffer keeps its length between uses, so that
/// it is never cleared again before a read.)
pub(super) struct Chunk {
    pub bytes: Vec<u8>,
    pub len: usize,
    pub offset: usize,
    pub first: u64,
    pub records: u64,
    pub layout: PcapLayout,
}

impl Chunk {
    pub fn records(&self) -> ChunkRecords<'_> {
        self.layout
            .records(&self.bytes[..self.len], self.offset, self.first)
    }
}

/// What a chunk is turned into, on a worker thread.
pub(super) trait ChunkWork: Sync {
    /// A worker's own state (a formatter with its caches).
    type Worker;
    /// The output of one chunk, handed to `emit` in the file's order.
    type Out: Send;
    fn worker(&self) -> Self::Worker;
    fn fresh(&self) -> Self::Out;
    /// Put what the records of `chunk` come to in `out`; the summary counts them. Gives back a buffer
    /// for the reader to fill again (the chunk's own, when `out` does not keep it).
    fn work(
        &self,
        worker: &mut Self::Worker,
        chunk: Chunk,
        out: &mut Self::Out,
    ) -> (Result<Summary, OfflineError>, Vec<u8>);
}

/// Where the chunks ended: at the end of the file, or where the general parser takes over (the offset
/// of a record and its number).
struct Walked {
    sum: Summary,
    rest: Option<(usize, u64)>,
}

/// Read `file` in chunks when it is worth it (`Plan::for_file`), counting in `sum`: `work` on the
/// plan's threads, `emit` on this one in the file's order (it may hand an output back to be filled
/// again). True when that read it all; else `cursor` is where the one-thread walk takes over (at its
/// start, when nothing was read in chunks). `interrupted` is asked after each chunk. An error stops the
/// walk at that chunk: the outputs before it were emitted, none after.
pub(super) fn read_in_chunks<W: ChunkWork>(
    file: &CaptureFile,
    count: Option<u64>,
    work: &W,
    emit: &mut dyn FnMut(W::Out) -> Result<Option<W::Out>, OfflineError>,
    interrupted: &mut dyn FnMut() -> bool,
    sum: &mut Summary,
    cursor: &mut Cursor,
) -> Result<bool, OfflineError> {
    let Some(plan) = Plan::for_file(file, count) else {
        return Ok(false);
    };
    let walked = walk_chunks(file.path(), plan, work, emit, interrupted)?;
    *sum = walked.sum;
    match walked.rest {
        None => Ok(true),
        Some((offset, number)) => {
            *cursor = file.cursor_at(offset, number);
            Ok(false)
        }
    }
}

fn walk_chunks<W: ChunkWork>(
    path: &str,
    plan: Plan<'_>,
    work: &W,
    emit: &mut dyn FnMut(W::Out) -> Result<Option<W::Out>, OfflineError>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Walked, OfflineError> {
    let (job_tx, job_rx) = mpsc::channel::<(usize, Chunk)>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel();
    let outs: Mutex<Vec<W::Out>> = Mutex::new(Vec::new());
    let buffers: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..plan.workers {
            let (job_rx, done_tx, outs, buffers) = (&job_rx, done_tx.clone(), &outs, &buffers);
            scope.spawn(move || {
                let mut worker = work.worker();
                loop {
                    // A worker waiting for a job holds the lock, the others wait behind it; the
                    // sender gone ends them all.
                    let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((index, chunk)) = job else { return };
                    let done = run_job(work, &mut worker, chunk, outs, buffers);
                    if done_tx.send((index, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut feed = Feed {
            path,
            plan: &plan,
            buffers: &buffers,
            job_tx: Some(job_tx),
            next: (PCAP_HEADER_LEN, 1),
            carry: Vec::new(),
            sent: 0,
            rest: None,
            failed: None,
        };
        let mut sum = Summary::default();
        let mut waiting = BTreeMap::new();
        let mut own = work.worker();
        let walked = (|| {
            for index in 0.. {
                feed.top_up(index);
                if index == feed.sent {
                    return feed.failed.take().map_or(Ok(()), Err);
                }
                let (records, out, got) = loop {
                    if let Some(done) = waiting.remove(&index) {
                        break done;
                    }
                    // Rather than wait, take a chunk no worker has started. A worker waiting for jobs
                    // holds the lock: then there is none to take.
                    let job = job_rx.try_lock().ok().and_then(|jobs| jobs.try_recv().ok());
                    let (i, done) = match job {
                        Some((i, chunk)) => (i, run_job(work, &mut own, chunk, &outs, &buffers)),
                        None => done_rx.recv().expect("a worker answers every job"),
                    };
                    waiting.insert(i, done);
                };
                let got: Summary = got?;
                debug_assert_eq!(got.read, records);
                sum.read += got.read;
                sum.matched += got.matched;
                sum.bytes += got.bytes;
                if let Some(out) = emit(out)? {
                    outs.lock().unwrap_or_else(|e| e.into_inner()).push(out);
                }
                if interrupted() {
                    return Err(read_error(path, ReadErrorKind::Interrupted));
                }
            }
            unreachable!()
        })();
        // Workers finish the chunk in hand and go.
        feed.job_tx = None;
        walked.map(|()| Walked {
            sum,
            rest: feed.rest,
        })
    })
}

/// A chunk's number of records, output and summary.
type Done<O> = (u64, O, Result<Summary, OfflineError>);

fn run_job<W: ChunkWork>(
    work: &W,
    worker: &mut W::Worker,
    chunk: Chunk,
    outs: &Mutex<Vec<W::Out>>,
    buffers: &Mutex<Vec<Vec<u8>>>,
) -> Done<W::Out> {
    let records = chunk.records;
    let reused = outs.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut out = reused.unwrap_or_else(|| work.fresh());
    let (sum, buffer) = work.work(worker, chunk, &mut out);
    buffers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(buffer);
    (records, out, sum)
}

fn read_error(path: &str, kind: ReadErrorKind) -> OfflineError {
    OfflineError::Read(ReadError {
        path: path.into(),
        kind,
    })
}

/// The reading: chunks cut ahead of the output and sent to the workers.
struct Feed<'p, 'f> {
    path: &'p str,
    plan: &'p Plan<'f>,
    buffers: &'p Mutex<Vec<Vec<u8>>>,
    job_tx: Option<mpsc::Sender<(usize, Chunk)>>,
    /// Where the next chunk starts in the file, and its first record's number.
    next: (usize, u64),
    /// The start of a record that did not end in the last buffer.
    carry: Vec<u8>,
    /// Chunks sent so far.
    sent: usize,
    rest: Option<(usize, u64)>,
    /// A read that failed: said once the chunks before it are out.
    failed: Option<OfflineError>,
}

impl Feed<'_, '_> {
    /// Keep the chunks up to `emitted` + the in-flight allowance sent, until the chunks end.
    fn top_up(&mut self, emitted: usize) {
        let budget = ((self.plan.workers + 1) * IN_FLIGHT_PER_WORKER).min(MAX_IN_FLIGHT);
        while self.job_tx.is_some() && self.sent < emitted + budget {
            match self.read_chunk() {
                Ok(Some(chunk)) => {
                    self.next = (chunk.offset + chunk.len, chunk.first + chunk.records);
                    let sent = self.job_tx.as_ref().map(|tx| tx.send((self.sent, chunk)));
                    if !matches!(sent, Some(Ok(()))) {
                        self.job_tx = None;
                        return;
                    }
                    self.sent += 1;
                }
                Ok(None) => self.job_tx = None,
                Err(e) => {
                    self.failed = Some(e);
                    self.job_tx = None;
                }
            }
        }
    }

    /// The next chunk: the bytes carried over and what follows them, up to the last whole record.
    /// `None` once the chunks end (then `rest` says where the general parser takes over, if anywhere).
    fn read_chunk(&mut self) -> Result<Option<Chunk>, OfflineError> {
        let (offset, first) = self.next;
        let mut bytes = self
            .buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let want = self.plan.chunk_bytes.min(self.plan.len - offset);
        if bytes.len() < want {
            bytes.resize(self.plan.chunk_bytes, 0);
        }
        bytes[..self.carry.len()].copy_from_slice(&self.carry);
        let mut filled = self.carry.len();
        while filled < want {
            match self
                .plan
                .file
                .read_at(&mut bytes[filled..want], (offset + filled) as u64)
            {
                Ok(0) => break, // the file is shorter than it was: the general parser says so
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(self.path, ReadErrorKind::Io(e))),
            }
        }
        let (len, records) = self.plan.layout.skim(&bytes[..filled], CHUNK_RECORDS);
        if records == 0 {
            // Nothing whole here: the end of the file, or a record for the general parser to name
            // (cut, not well formed, or the file shrank since it was opened).
            self.rest = (offset < self.plan.len).then_some((offset, first));
            return Ok(None);
        }
        self.carry.clear();
        self.carry.extend_from_slice(&bytes[len..filled]);
        Ok(Some(Chunk {
            bytes,
            len,
            offset,
            first,
            records,
            layout: self.plan.layout,
        }))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;
    use std::path::{Path, PathBuf};

    use crate::clock::{Clock, Zone};
    use crate::filter::Filter;
    use crate::offline::{print_lines, write_pcap, OfflineError, Selection};
    use crate::pcap::CaptureFile;

    thread_local! {
        /// Chunks of this many bytes, whatever the file's size: the chunked walk is tested on small
        /// files against the one-thread walk of the same file.
        pub static SMALL_CHUNKS: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// A classic pcap file of `n` frames of varied sizes and kinds (UDP, TCP, VLAN-tagged).
    fn capture(n: usize, big_endian: bool, nanos: bool) -> Vec<u8> {
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut out = u32b(magic).to_vec();
        let (major, minor) = if big_endian {
            ([0, 2], [0, 4])
        } else {
            ([2, 0], [4, 0])
        };
        out.extend_from_slice(&major);
        out.extend_from_slice(&minor);
        for v in [0, 0, 262_144, 1] {
            out.extend_from_slice(&u32b(v));
        }
        for i in 0..n {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            if i % 4 == 1 {
                f.extend_from_slice(&[0x81, 0, 0, 100]);
            }
            let proto = if i % 3 == 0 { 6 } else { 17 };
            let payload = (i * 131) % 1400;
            f.extend_from_slice(&[8, 0, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&[198, 18, 0, (i % 5) as u8, 198, 18, 1, 1]);
            f.extend_from_slice(&((40000 + i % 1000) as u16).to_be_bytes());
            f.extend_from_slice(&[
                0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xfa, 0xf0, 0, 0, 0, 0,
            ]);
            f.resize(f.len() + payload, b'x');
            let frac = if nanos {
                (i as u32 * 7919) % 1_000_000_000
            } else {
                (i as u32 * 7919) % 1_000_000
            };
            for v in [
                1_700_000_000 + i as u32 / 100,
                frac,
                f.len() as u32,
                f.len() as u32 + (i % 2) as u32,
            ] {
                out.extend_from_slice(&u32b(v));
            }
            out.extend_from_slice(&f);
        }
        out
    }

    fn scratch(tag: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("pcapdump-chunks-{}-{tag}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The lines (or the error) and the written file (or the error) of `path`, read in chunks of
    /// `chunks` bytes, or by one thread (`None`).
    fn read(
        path: &Path,
        words: &str,
        snaplen: Option<u32>,
        json: bool,
        chunks: Option<usize>,
    ) -> (String, String) {
        SMALL_CHUNKS.set(chunks);
        let filter = Filter::parse_str(words).unwrap();
        // A count no file reaches keeps the one-thread walk.
        let count = chunks.is_none().then_some(u64::MAX);
        let sel = Selection::new(Some(&filter), snaplen, count);
        let file = CaptureFile::open(path).unwrap();
        let mut out = Vec::new();
        let clock = Clock::new(Zone::Utc, true);
        let lines = print_lines(&file, &sel, json, clock, &mut out, &mut || false);
        let lines = format!(
            "{}{:?}",
            String::from_utf8(out).unwrap(),
            lines.map(|s| (s.read, s.matched, s.bytes))
        );
        let dest = path.with_extension(format!("out{}", chunks.unwrap_or(0)));
        let written = match write_pcap(&file, &sel, &dest, &mut || false) {
            Ok(w) => {
                let summary = w.summary;
                let cut = w.cut.map(|c| c.to_string());
                w.file.commit().unwrap();
                let bytes = std::fs::read(&dest).unwrap();
                std::fs::remove_file(&dest).unwrap();
                format!(
                    "{:?} {cut:?} {:x?}",
                    (summary.read, summary.matched, summary.bytes),
                    bytes
                )
            }
            Err(e) => format!("error {e}"),
        };
        SMALL_CHUNKS.set(None);
        (lines, written)
    }

    fn agree(tag: &str, bytes: &[u8]) {
        let path = scratch(tag, bytes);
        for (words, snaplen, json) in [
            ("", None, false),
            ("tcp", None, true),
            ("ipsrc 198.18.0.3 udp", Some(60), false),
            ("vlan 100", None, false),
        ] {
            let one = read(&path, words, snaplen, json, None);
            for chunks in [300, 4096, 65_536] {
                assert_eq!(
                    read(&path, words, snaplen, json, Some(chunks)),
                    one,
                    "{tag}: '{words}', chunks of {chunks}"
                );
            }
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn chunks_print_and_write_what_one_thread_does() {
        for (tag, be, nanos) in [
            ("le", false, false),
            ("be", true, false),
            ("ns", false, true),
        ] {
            agree(tag, &capture(3000, be, nanos));
        }
    }

    #[test]
    fn a_damaged_or_cut_file_gives_the_same_records_then_the_same_error() {
        let whole = capture(3000, false, false);
        // Cut inside the last record.
        agree("cut", &whole[..whole.len() - 5]);
        // An oversized record in the middle.
        let mut bytes = whole.clone();
        let mut at = 24;
        for _ in 0..1700 {
            at += 16 + u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        }
        bytes[at + 8..at + 12].copy_from_slice(&1_000_000u32.to_le_bytes());
        agree("oversized", &bytes);
        // An all-zero header: a record of nothing, which the general parser reads on from.
        let mut bytes = whole;
        bytes[at..at + 16].fill(0);
        agree("zeros", &bytes);
    }

    #[test]
    fn filter_words_over_an_undecoded_link_type_are_refused_in_chunks_too() {
        let mut bytes = capture(500, false, false);
        bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
        let path = scratch("link", &bytes);
        let (lines, written) = read(&path, "tcp", None, false, Some(4096));
        assert_eq!(
            (lines.clone(), written.clone()),
            read(&path, "tcp", None, false, None)
        );
        assert!(
            lines.contains("UndecodedLink") && written.contains("link type 147"),
            "{lines} {written}"
        );
        std::fs::remove_file(&path).unwrap();
        let _: Option<OfflineError> = None;
    }
}
