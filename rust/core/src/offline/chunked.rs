//! `read` of a large classic pcap file on every core. The file is cut into blocks of a few megabytes
//! at fixed places (`ChunkWork::BLOCK_BYTES`); each worker thread reads a block into a buffer of its
//! own with `pread` (as `cat` would: no page tables to fill and empty, memory a few buffers whatever
//! the file's size), filters its records and turns them into output (brief lines, or pieces of a pcap
//! file); this thread hands the outputs on in the file's order.
//!
//! Records do not start at the blocks' edges, and only the end of the records before tells where they
//! do: the workers pass that place on from block to block (`Chain`). A worker reads its block first,
//! then waits for the place its records start, skims their headers to the first record that starts in
//! the next block (reading on to the end of a record that crosses into it), passes that on, and only
//! then filters. The skim is a load per record on bytes just read, so the others wait little.
//!
//! Where the skim meets a record that is not well formed, or the file ends inside a record, the chain
//! ends there, and the caller reads on from that record with the general parser, which says what is
//! wrong as it always did.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Condvar, Mutex, MutexGuard};

use super::{OfflineError, Summary};
use crate::pcap::{
    CaptureFile, ChunkRecords, Cursor, PcapLayout, ReadError, ReadErrorKind, MAX_PCAP_RECORD,
    PCAP_HEADER_LEN, RECORD_HEADER,
};

/// Read past a block's end with it, so that the record that crosses into the next block is usually
/// whole without a second read.
const OVERLAP: usize = 2048;
/// Blocks are read into the same place of a page of their buffer as of the file's. The kernel's copy
/// into a buffer shifted from its source by a few bytes runs several times slower on some processors
/// (five times, on this project's AMD machines, for shifts of 1 to 32 bytes).
const PAGE: usize = 4096;
/// Below this size, one thread reads the file: the others would not have started by its end.
const PARALLEL_MIN_BYTES: usize = 4 << 20;
/// Worker threads at most, whatever the machine.
const MAX_WORKERS: usize = 8;
/// Blocks read ahead of the output, per worker, and in all.
const IN_FLIGHT_PER_WORKER: usize = 3;
const MAX_IN_FLIGHT: usize = 12;

/// How a file is read in blocks.
struct Plan<'f> {
    file: &'f File,
    layout: PcapLayout,
    /// The file's length when it was opened: what the general parser would read.
    len: usize,
    block_bytes: usize,
    workers: usize,
}

impl<'f> Plan<'f> {
    /// The plan for `file` read with no count: `None` when it is not a mapped classic pcap file, is
    /// small, or this machine has one core.
    pub fn for_file(
        file: &'f CaptureFile,
        count: Option<u64>,
        block_bytes: usize,
    ) -> Option<Plan<'f>> {
        let (source, layout, len) = file.pcap_source()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_WORKERS);
        let (min_len, threads) = (PARALLEL_MIN_BYTES, threads);
        #[cfg(test)]
        let (block_bytes, min_len, threads) = tests::SMALL_CHUNKS
            .get()
            .map_or((block_bytes, min_len, threads), |small| (small, 0, 3));
        // A worker per core, and this thread waiting for their outputs and writing them: it has little
        // else to do, and a worker that also wrote would hold the others' outputs back.
        (count.is_none() && threads > 1 && len >= min_len).then_some(Plan {
            file: source,
            layout,
            len,
            block_bytes,
            workers: threads,
        })
    }

    fn blocks(&self) -> usize {
        self.len.div_ceil(self.block_bytes)
    }

    /// The file's bytes in block `block` (the first starts after the file's header).
    fn bounds(&self, block: usize) -> (usize, usize) {
        let start = (block * self.block_bytes).max(PCAP_HEADER_LEN);
        (start, ((block + 1) * self.block_bytes).min(self.len))
    }
}

/// Whole records read from the file: `bytes[start..len]`, from byte `offset` of the file, the first
/// numbered `first`. (The buffer keeps its length between uses, so that it is never
/// cleared again before a read.)
pub(super) struct Chunk {
    pub bytes: Vec<u8>,
    pub start: usize,
    pub len: usize,
    pub offset: usize,
    pub first: u64,
    pub layout: PcapLayout,
}

impl Chunk {
    pub fn records(&self) -> ChunkRecords<'_> {
        self.layout
            .records(&self.bytes[..self.len], self.start, self.offset, self.first)
    }
}

/// What a chunk is turned into, on a worker thread.
pub(super) trait ChunkWork: Sync {
    /// Bytes per block: large enough that handing a block around costs little beside its records
    /// (each is a few wake-ups of threads), small enough that the outputs of the blocks in flight stay
    /// a few tens of megabytes.
    const BLOCK_BYTES: usize;
    /// A worker's own state (a formatter with its caches).
    type Worker;
    /// The output of one chunk, handed to `emit` in the file's order.
    type Out: Send;
    fn worker(&self) -> Self::Worker;
    fn fresh(&self) -> Self::Out;
    /// Put what the records of `chunk` come to in `out`; the summary counts them. Gives back a buffer
    /// for a worker to fill again (the chunk's own, when `out` does not keep it).
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
    let Some(plan) = Plan::for_file(file, count, W::BLOCK_BYTES) else {
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

/// What a worker made of a block.
enum Done<O> {
    Made {
        records: u64,
        out: O,
        sum: Result<Summary, OfflineError>,
        /// The records ended in this block: at the end of the file (`None`), or at a record for the
        /// general parser (its offset and number).
        ended: Option<Option<(usize, u64)>>,
    },
    /// The records ended in an earlier block.
    After,
}

fn walk_chunks<W: ChunkWork>(
    path: &str,
    plan: Plan<'_>,
    work: &W,
    emit: &mut dyn FnMut(W::Out) -> Result<Option<W::Out>, OfflineError>,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Walked, OfflineError> {
    let (done_tx, done_rx) = mpsc::channel();
    let outs: Mutex<Vec<W::Out>> = Mutex::new(Vec::new());
    let buffers: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let blocks = plan.blocks();
    let gate = Gate::new(
        blocks,
        (plan.workers * IN_FLIGHT_PER_WORKER).min(MAX_IN_FLIGHT),
    );
    let chain = Chain::new();
    let reader = BlockReader {
        path,
        plan: &plan,
        chain: &chain,
    };
    std::thread::scope(|scope| {
        for _ in 0..plan.workers {
            let done_tx = done_tx.clone();
            let (outs, buffers, reader, gate, chain) = (&outs, &buffers, &reader, &gate, &chain);
            scope.spawn(move || {
                // A worker that panics ends the walk, which then panics too, rather than leave the
                // others waiting for it.
                let _ends = EndsOnPanic(gate, chain);
                let mut worker = work.worker();
                while let Some(block) = gate.next() {
                    let done = reader.run(block, work, &mut worker, outs, buffers);
                    if done_tx.send((block, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut sum = Summary::default();
        let mut waiting = BTreeMap::new();
        let walked = (|| {
            for index in 0..blocks {
                let done = loop {
                    if let Some(done) = waiting.remove(&index) {
                        break done;
                    }
                    let (i, done) = done_rx.recv().expect("a worker answers every block");
                    waiting.insert(i, done);
                };
                let Done::Made {
                    records,
                    out,
                    sum: got,
                    ended,
                } = done
                else {
                    unreachable!("the block that ends the records ends the walk");
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
                if let Some(rest) = ended {
                    return Ok(rest);
                }
                gate.emitted(index + 1);
            }
            unreachable!("the last block ends the records")
        })();
        // Workers finish the block in hand and go.
        gate.close();
        chain.close();
        walked.map(|rest| Walked { sum, rest })
    })
}

fn read_error(path: &str, kind: ReadErrorKind) -> OfflineError {
    OfflineError::Read(ReadError {
        path: path.into(),
        kind,
    })
}

struct EndsOnPanic<'a>(&'a Gate, &'a Chain);

impl Drop for EndsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
            self.1.close();
        }
    }
}

/// A state the workers wait on, until it lets them go on or is closed (the walk ended early). A change
/// wakes the waiting only when some wait: most changes find none, and a wake-up is a system call.
struct Waited<T> {
    state: Mutex<Waiting<T>>,
    moved: Condvar,
}

struct Waiting<T> {
    value: T,
    closed: bool,
    waiting: usize,
}

impl<T> Waited<T> {
    fn new(value: T) -> Waited<T> {
        Waited {
            state: Mutex::new(Waiting {
                value,
                closed: false,
                waiting: 0,
            }),
            moved: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `ready` makes of the state once it makes something of it; `None` once closed.
    fn wait_until<R>(&self, mut ready: impl FnMut(&mut T) -> Option<R>) -> Option<R> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(answer) = ready(&mut state.value) {
                return Some(answer);
            }
            state.waiting += 1;
            state = self.moved.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
    }

    fn change(&self, change: impl FnOnce(&mut T)) {
        let mut state = self.lock();
        change(&mut state.value);
        if state.waiting > 0 {
            self.moved.notify_all();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.moved.notify_all();
    }
}

/// The blocks handed to the workers: each takes the next, no further ahead of the output than the
/// budget allows.
struct Gate {
    /// The next block to take, and the number of blocks whose output is out.
    taken: Waited<(usize, usize)>,
    blocks: usize,
    budget: usize,
}

impl Gate {
    fn new(blocks: usize, budget: usize) -> Gate {
        Gate {
            taken: Waited::new((0, 0)),
            blocks,
            budget,
        }
    }

    /// The next block to read, once the output is near enough; `None` once there are none, or the
    /// walk ended.
    fn next(&self) -> Option<usize> {
        let next = self.taken.wait_until(|(next, emitted)| {
            if *next >= self.blocks {
                return Some(None);
            }
            (*next < *emitted + self.budget).then(|| {
                *next += 1;
                Some(*next - 1)
            })
        });
        next.flatten()
    }

    fn emitted(&self, blocks: usize) {
        self.taken.change(|(_, emitted)| *emitted = blocks);
    }

    fn close(&self) {
        self.taken.close();
    }
}

/// Where the records of the next block start, passed on from block to block.
struct Chain(Waited<Link>);

#[derive(Clone, Copy)]
enum Link {
    /// The records from block `block` on start at byte `offset` of the file, with number `number`.
    At {
        block: usize,
        offset: usize,
        number: u64,
    },
    /// The records ended in block `block`: later blocks have none.
    Ended { block: usize },
}

impl Chain {
    fn new() -> Chain {
        Chain(Waited::new(Link::At {
            block: 0,
            offset: PCAP_HEADER_LEN,
            number: 1,
        }))
    }

    /// Block `block`'s turn: where its records start, or `None` when they ended before it (or the walk
    /// did). The turn ends when it is passed on (the records go on, or they end), however the worker
    /// leaves.
    fn wait_for(&self, block: usize) -> Turn<'_> {
        let start = self.0.wait_until(|link| match *link {
            Link::At {
                block: b,
                offset,
                number,
            } if b == block => Some(Some((offset, number))),
            Link::Ended { block: b } if b < block => Some(None),
            _ => None,
        });
        Turn {
            chain: self,
            block,
            start: start.flatten(),
        }
    }

    fn pass(&self, link: Link) {
        self.0.change(|l| *l = link);
    }

    fn close(&self) {
        self.0.close();
    }
}

/// A block's turn in the chain. Dropped without being passed on (a worker that panicked), it ends the
/// records, so that no other worker waits for ever.
struct Turn<'c> {
    chain: &'c Chain,
    block: usize,
    start: Option<(usize, u64)>,
}

impl Turn<'_> {
    fn go_on(mut self, offset: usize, number: u64) {
        self.start = None;
        self.chain.pass(Link::At {
            block: self.block + 1,
            offset,
            number,
        });
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.start.is_some() {
            self.chain.pass(Link::Ended { block: self.block });
        }
    }
}

/// A block's bytes read into a buffer: the file's bytes from `from` are at `at`, `filled` marks the
/// end of those read.
struct Read {
    bytes: Vec<u8>,
    from: usize,
    at: usize,
    filled: usize,
}

impl Read {
    /// The buffer's place of file offset `offset`.
    fn index(&self, offset: usize) -> usize {
        self.at + offset - self.from
    }

    fn offset(&self, index: usize) -> usize {
        self.from + index - self.at
    }
}

struct BlockReader<'a, 'f> {
    path: &'a str,
    plan: &'a Plan<'f>,
    chain: &'a Chain,
}

impl BlockReader<'_, '_> {
    fn run<W: ChunkWork>(
        &self,
        block: usize,
        work: &W,
        worker: &mut W::Worker,
        outs: &Mutex<Vec<W::Out>>,
        buffers: &Mutex<Vec<Vec<u8>>>,
    ) -> Done<W::Out> {
        let buffer = buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (start, end) = self.plan.bounds(block);
        let read = self.read(buffer.unwrap_or_default(), start, end);
        let turn = self.chain.wait_for(block);
        let Some((offset, number)) = turn.start else {
            return Done::After;
        };
        let reused = outs.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut out = reused.unwrap_or_else(|| work.fresh());
        let cut = read
            .map_err(|e| read_error(self.path, ReadErrorKind::Io(e)))
            .and_then(|mut read| self.cut(&mut read, offset, end).map(|cut| (read, cut)));
        let (read, cut) = match cut {
            Ok(done) => done,
            // Dropped, the turn ends the records in this block.
            Err(e) => {
                return Done::Made {
                    records: 0,
                    out,
                    sum: Err(e),
                    ended: Some(None),
                }
            }
        };
        let after = number + cut.records;
        let ended = match cut.next {
            Next::Records(next) if next < self.plan.len => {
                turn.go_on(next, after);
                None
            }
            Next::Records(_) => Some(None),
            Next::Parser(at) => Some(Some((at, after))),
        };
        let chunk = Chunk {
            bytes: read.bytes,
            start: cut.start,
            len: cut.end,
            offset,
            first: number,
            layout: self.plan.layout,
        };
        let (sum, buffer) = work.work(worker, chunk, &mut out);
        buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer);
        Done::Made {
            records: cut.records,
            out,
            sum,
            ended,
        }
    }

    /// The block's bytes from `start` to `end`, and a little past it, read into `bytes`.
    fn read(&self, mut bytes: Vec<u8>, start: usize, end: usize) -> std::io::Result<Read> {
        let size = PAGE + self.plan.block_bytes + OVERLAP + MAX_PCAP_RECORD;
        if bytes.len() < size {
            // Zeroed by the allocator: pages never written stay out of memory.
            bytes = vec![0; size];
        }
        let at = (start % PAGE + PAGE - bytes.as_ptr() as usize % PAGE) % PAGE;
        let mut read = Read {
            bytes,
            from: start,
            at,
            filled: at,
        };
        self.read_to(&mut read, (end + OVERLAP).min(self.plan.len))?;
        Ok(read)
    }

    /// Read on to file offset `until` (short at the file's end, when it shrank since it was opened).
    fn read_to(&self, read: &mut Read, until: usize) -> std::io::Result<()> {
        let end = read.index(until);
        while read.filled < end {
            let at = read.offset(read.filled) as u64;
            match self
                .plan
                .file
                .read_at(&mut read.bytes[read.filled..end], at)
            {
                Ok(0) => break,
                Ok(n) => read.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The records of the block that ends at file offset `end`, the first at `offset`, reading on to
    /// the end of the last one when it crosses into the next block.
    fn cut(&self, read: &mut Read, offset: usize, end: usize) -> Result<Cut, OfflineError> {
        if offset >= end {
            // A record of an earlier block covers this one.
            return Ok(Cut {
                start: read.at,
                end: read.at,
                records: 0,
                next: Next::Records(offset),
            });
        }
        let layout = self.plan.layout;
        let first = read.index(offset);
        // Short of the block when the file shrank since it was opened, even short of `first`.
        let in_block = read.index(end).min(read.filled).max(first);
        let (len, mut records) = layout.skim(&read.bytes[first..in_block], u64::MAX);
        let mut at = first + len;
        if read.offset(at) < end {
            // A record that crosses into the next block, or one the skim does not take: read on to its
            // end, if it has one, and skim it alone.
            let read_on = |read: &mut Read, n: usize| {
                let until = (read.offset(at) + n).min(self.plan.len);
                self.read_to(read, until)
                    .map_err(|e| read_error(self.path, ReadErrorKind::Io(e)))
            };
            let have = |read: &Read| at..read.filled.max(at);
            read_on(read, RECORD_HEADER)?;
            if let Some(n) = layout.record_len(&read.bytes[have(read)]) {
                read_on(read, n.min(MAX_PCAP_RECORD))?;
            }
            match layout.skim(&read.bytes[have(read)], 1) {
                // Whole, and it does cross into the next block.
                (n, _) if n > 0 && read.offset(at + n) >= end => {
                    at += n;
                    records += 1;
                }
                // Not whole, not well formed, or short of the block's end: the file changed while
                // this block was read (cut, then written again).
                _ => {
                    return Ok(Cut {
                        start: first,
                        end: at,
                        records,
                        next: Next::Parser(read.offset(at)),
                    })
                }
            }
        }
        Ok(Cut {
            start: first,
            end: at,
            records,
            next: Next::Records(read.offset(at)),
        })
    }
}

/// A block's records: `bytes[start..end]` of its buffer, and where the next ones are.
struct Cut {
    start: usize,
    end: usize,
    records: u64,
    next: Next,
}

/// Where the records after a block's are.
enum Next {
    /// At this offset of the file (its end, when they end there).
    Records(usize),
    /// At a record for the general parser (cut, not well formed, or the file shrank).
    Parser(usize),
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
    fn a_file_that_shrank_after_it_was_opened_ends_as_in_the_one_thread_walk() {
        let bytes = capture(3000, false, false);
        let results: Vec<_> = [None, Some(4096), Some(65_536)]
            .into_iter()
            .map(|chunks| {
                let path = scratch("shrank", &bytes);
                let file = CaptureFile::open(&path).unwrap();
                // Cut inside a record, past the first blocks, before any is read.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(200_000)
                    .unwrap();
                SMALL_CHUNKS.set(chunks);
                let count = chunks.is_none().then_some(u64::MAX);
                let sel = Selection::new(None, None, count);
                let mut out = Vec::new();
                let clock = Clock::new(Zone::Utc, true);
                let lines = print_lines(&file, &sel, false, clock, &mut out, &mut || false);
                let dest = path.with_extension("out");
                let written = write_pcap(&file, &sel, &dest, &mut || false)
                    .map(|w| (w.summary.read, w.summary.matched));
                SMALL_CHUNKS.set(None);
                std::fs::remove_file(&path).unwrap();
                let _ = std::fs::remove_file(&dest);
                format!(
                    "{} {:?} {:?}",
                    out.len(),
                    lines.map(|s| s.read).map_err(|e| e.to_string()),
                    written.map_err(|e| e.to_string())
                )
            })
            .collect();
        assert!(results[0].contains("cut short"), "{}", results[0]);
        assert_eq!(results[1], results[0]);
        assert_eq!(results[2], results[0]);
    }

    /// The plan of `file` read in blocks of `block_bytes`.
    fn plan_in_blocks(file: &CaptureFile, block_bytes: usize) -> super::Plan<'_> {
        SMALL_CHUNKS.set(Some(block_bytes));
        let plan = super::Plan::for_file(file, None, 0).unwrap();
        SMALL_CHUNKS.set(None);
        plan
    }

    #[test]
    fn a_block_read_short_of_where_its_records_start_goes_to_the_general_parser() {
        let path = scratch("short", &capture(3000, false, false));
        let file = CaptureFile::open(&path).unwrap();
        let plan = plan_in_blocks(&file, 4096);
        let chain = super::Chain::new();
        let reader = super::BlockReader {
            path: "short",
            plan: &plan,
            chain: &chain,
        };
        let (start, end) = plan.bounds(3);
        let mut read = reader.read(Vec::new(), start, end).unwrap();
        // The file shrank after the block before was read, and while this one was: the records would
        // start past what was read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((start + 10) as u64)
            .unwrap();
        read.filled = read.at + 10;
        let cut = reader.cut(&mut read, start + 100, end).unwrap();
        assert_eq!(cut.records, 0);
        assert!(matches!(cut.next, super::Next::Parser(at) if at == start + 100));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_block_read_short_then_whole_again_goes_to_the_general_parser() {
        let bytes = capture(3000, false, false);
        let path = scratch("regrown", &bytes);
        let file = CaptureFile::open(&path).unwrap();
        let plan = plan_in_blocks(&file, 65_536);
        let chain = super::Chain::new();
        let reader = super::BlockReader {
            path: "regrown",
            plan: &plan,
            chain: &chain,
        };
        let (start, end) = plan.bounds(2);
        let mut offset = 24;
        while offset < start {
            offset += 16
                + u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap()) as usize;
        }
        let mut read = reader.read(Vec::new(), start, end).unwrap();
        // The file was cut in the middle of the block while it was read, then written again: what
        // follows the short read is whole, but the block's records are not all there.
        read.filled = read.at + (end - start) / 2;
        let cut = reader.cut(&mut read, offset, end).unwrap();
        assert!(
            matches!(cut.next, super::Next::Parser(at) if at < end),
            "records go on at {:?}",
            match cut.next {
                super::Next::Records(at) | super::Next::Parser(at) => at,
            }
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn blocks_are_read_into_the_same_place_of_a_page_as_of_the_file() {
        let path = scratch("pages", &capture(3000, false, false));
        let file = CaptureFile::open(&path).unwrap();
        // Blocks of a few pages and a little more, so that most start inside a page.
        let plan = plan_in_blocks(&file, 3 * super::PAGE + 100);
        let chain = super::Chain::new();
        let reader = super::BlockReader {
            path: "pages",
            plan: &plan,
            chain: &chain,
        };
        let mut bytes = Vec::new();
        for block in 0..plan.blocks() {
            let (start, end) = plan.bounds(block);
            let read = reader.read(bytes, start, end).unwrap();
            let at = read.bytes.as_ptr() as usize + read.at;
            assert_eq!(at % super::PAGE, start % super::PAGE, "block {block}");
            // Buffers go round, at another place each time.
            bytes = if block % 2 == 0 {
                read.bytes
            } else {
                Vec::new()
            };
        }
        std::fs::remove_file(&path).unwrap();
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
