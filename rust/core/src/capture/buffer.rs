//! The capture buffer: one allocation of the configured size, records back to back.
//!
//! Linear mode keeps the first packets: once one does not fit, the buffer is full and every later packet
//! is counted as a `buffer_full` drop, so what is stored is an unbroken stretch of time. Ring mode (the
//! flight recorder) overwrites the oldest whole records instead and counts them as `overwritten`.
//!
//! Offsets grow without bound (`u64`) and are reduced modulo the capacity only to touch memory, so
//! "how full" is `tail - head` and a reader's place survives wrap-arounds. A record never straddles the
//! end of the array: the rest of the array is skipped, marked by a pad header when there is room for one.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::brief::PacketMeta;
use crate::packet::{Direction, LinkType};
use memmap2::{MmapMut, MmapOptions};

use super::CaptureError;
use crate::bytes::copy_short;
use crate::pcap::{
    encode_commented_packet, encode_packet_into, encode_record_into, packet_block_len, AtomicFile,
    InterfaceBlock, PcapWriter, PcapngWriter, Section, MAX_RECORD,
};

/// One interface of a capture buffer, by name and link type: what a walk over several interfaces
/// tells apart each packet with.
pub struct BufferIface<'a> {
    pub id: IfaceId,
    pub name: &'a str,
    pub link: LinkType,
}

impl BufferIface<'_> {
    /// How a brief line (or a table row, or a conversation) sees a packet of this interface: indexed
    /// by its number in `show`.
    pub fn meta<'p>(&'p self, p: &StoredPacket) -> PacketMeta<'p> {
        PacketMeta {
            index: p.seq + 1,
            ts_ns: p.ts_ns,
            iface: Some(self.name),
            direction: Some(p.direction),
            wirelen: p.wirelen,
            link: self.link,
        }
    }
}

/// ts_ns u64, wirelen u32, caplen u32, interface u16, direction u8, then padding to 8-byte alignment.
const HEADER: usize = 24;
const ALIGN: usize = 8;
/// How far past a new record `push` asks for memory ahead of use.
const PREFETCH_AHEAD: usize = 512;
/// The caplen of a pad header: nothing more is stored before the end of the array.
const PAD: u32 = u32::MAX;

/// How much of a new buffer is committed at a time.
const COMMIT_STEP: usize = 64 << 20;

/// Commit the memory now, a step at a time. One `MAP_POPULATE` of gigabytes holds the process's memory
/// map lock for seconds, and every other thread that needs it (to start a thread, to map memory) waits:
/// the agent could not even take a `status` meanwhile. Between steps, they get their turn.
fn commit(mem: &mut MmapMut) {
    let base = mem.as_mut_ptr();
    let len = mem.len();
    let mut at = 0;
    while at < len {
        let step = COMMIT_STEP.min(len - at);
        // SAFETY: the range lies inside our fresh anonymous mapping; populating it changes no content.
        #[cfg(target_os = "linux")]
        let populated =
            unsafe { libc::madvise(base.add(at).cast(), step, libc::MADV_POPULATE_WRITE) } == 0;
        #[cfg(not(target_os = "linux"))]
        let populated = false;
        if !populated {
            // Older kernels: touch each page (they are zero; writing a zero keeps them so).
            let mut page = 0;
            while page < step {
                // SAFETY: inside the mapping, which is ours and writable.
                unsafe { base.add(at + page).write_volatile(0) };
                page += 4096;
            }
        }
        at += step;
    }
}

/// Bytes a packet of `caplen` bytes takes in the buffer, header included.
pub fn record_size(caplen: usize) -> usize {
    HEADER + caplen.div_ceil(ALIGN) * ALIGN
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferMode {
    Linear,
    Ring,
}

/// Index of an interface in the buffer's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceId(u16);

/// Per-interface accounting. `packets` and `bytes` count every packet ever stored (bytes as stored,
/// after the snap length); `held` is how many are in the buffer now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounts {
    pub packets: u64,
    pub bytes: u64,
    pub held: u64,
    pub held_bytes: u64,
    pub buffer_full_drops: u64,
    pub overwritten: u64,
}

#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub link: LinkType,
    pub counts: IfaceCounts,
}

/// A packet as stored in the buffer.
#[derive(Clone, Copy, Debug)]
pub struct StoredPacket<'a> {
    /// Position in the order of arrival over all interfaces, from 0.
    pub seq: u64,
    pub ts_ns: u64,
    pub wirelen: u32,
    pub iface: IfaceId,
    pub direction: Direction,
    pub data: &'a [u8],
}

/// What became of a packet offered to the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// Linear mode and full, or (ring mode) bigger than the whole buffer.
    Dropped,
}

/// A reader's place: the sequence number of the next record and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    seq: u64,
    at: u64,
}

impl Cursor {
    /// The sequence number of the packet this cursor reads next.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

pub struct CaptureBuffer {
    mem: MmapMut,
    mode: BufferMode,
    head: u64,
    tail: u64,
    first_seq: u64,
    next_seq: u64,
    /// Linear mode: a packet did not fit, so no later one is stored either.
    full: bool,
    ifaces: Vec<Interface>,
}

impl CaptureBuffer {
    /// `capacity` is rounded down to a multiple of 8 bytes. The memory is committed now, as a capture
    /// appliance's buffer is: faulting pages in one by one while packets arrive would cost the capture
    /// thread time when it has least of it.
    pub fn new(capacity: usize, mode: BufferMode) -> io::Result<CaptureBuffer> {
        let capacity = (capacity / ALIGN * ALIGN).max(ALIGN);
        let mut mem = MmapOptions::new().len(capacity).map_anon()?;
        commit(&mut mem);
        Ok(CaptureBuffer {
            mem,
            mode,
            head: 0,
            tail: 0,
            first_seq: 0,
            next_seq: 0,
            full: false,
            ifaces: Vec::new(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.mem.len()
    }

    pub fn mode(&self) -> BufferMode {
        self.mode
    }

    /// Bytes taken by stored records (headers and skipped ends included).
    pub fn used(&self) -> usize {
        (self.tail - self.head) as usize
    }

    /// Records held now, over all interfaces.
    pub fn len(&self) -> u64 {
        self.next_seq - self.first_seq
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence number the next stored packet will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The interface's id, registering it on first use. A name keeps its id for the buffer's life; its
    /// link type may change only while none of its packets are held (one file, one link type per
    /// interface: packets of two link types are never mixed under one name).
    pub fn interface(&mut self, name: &str, link: LinkType) -> Result<IfaceId, CaptureError> {
        if let Some(i) = self.ifaces.iter().position(|f| f.name == name) {
            let known = &mut self.ifaces[i];
            if known.link != link && known.counts.held > 0 {
                return Err(CaptureError::LinkChanged {
                    iface: name.to_owned(),
                    held: known.counts.held,
                    was: known.link.number(),
                    now: link.number(),
                });
            }
            known.link = link;
            return Ok(IfaceId(i as u16));
        }
        self.ifaces.push(Interface {
            name: name.to_owned(),
            link,
            counts: IfaceCounts::default(),
        });
        Ok(IfaceId((self.ifaces.len() - 1) as u16))
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.ifaces
    }

    pub fn iface(&self, id: IfaceId) -> &Interface {
        &self.ifaces[id.0 as usize]
    }

    pub fn find_interface(&self, name: &str) -> Option<IfaceId> {
        self.ifaces
            .iter()
            .position(|f| f.name == name)
            .map(|i| IfaceId(i as u16))
    }

    /// Store one packet whose bytes are the concatenation of `parts` (so a header can be put in front
    /// without copying twice). Inlined: a capture thread calls it for every packet.
    #[inline(always)]
    pub fn push(
        &mut self,
        iface: IfaceId,
        ts_ns: u64,
        wirelen: u32,
        direction: Direction,
        parts: &[&[u8]],
    ) -> Pushed {
        let caplen: usize = parts.iter().map(|p| p.len()).sum();
        let size = record_size(caplen);
        let cap = self.mem.len() as u64;
        let fits = match self.mode {
            BufferMode::Linear => {
                self.full = self.full || self.tail + size as u64 > cap;
                !self.full
            }
            BufferMode::Ring => (size as u64) <= cap && self.make_room(size as u64),
        };
        if !fits {
            self.ifaces[iface.0 as usize].counts.buffer_full_drops += 1;
            return Pushed::Dropped;
        }
        // A linear buffer never wraps: no division on its path.
        let at = match self.mode {
            BufferMode::Linear => self.tail as usize,
            BufferMode::Ring => (self.tail % cap) as usize,
        };
        // The lines a few records on are asked for now, so that storing into them does not wait.
        #[cfg(target_arch = "x86_64")]
        if let Some(ahead) = self.mem.get(at + PREFETCH_AHEAD) {
            // SAFETY: the address is inside the buffer; a prefetch never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    ahead as *const u8 as *const i8,
                )
            };
        }
        // One bounds check for the whole record, then plain copies into it.
        let record = &mut self.mem[at..at + HEADER + caplen];
        let (head, mut rest) = record.split_at_mut(HEADER);
        head.copy_from_slice(&encode_header(
            ts_ns,
            wirelen,
            caplen as u32,
            iface,
            direction,
        ));
        for part in parts {
            let (dst, after) = rest.split_at_mut(part.len());
            copy_short(dst, part);
            rest = after;
        }
        self.tail += size as u64;
        self.next_seq += 1;
        let c = &mut self.ifaces[iface.0 as usize].counts;
        c.packets += 1;
        c.bytes += caplen as u64;
        c.held += 1;
        c.held_bytes += caplen as u64;
        Pushed::Stored
    }

    /// Ring mode: evict the oldest records until `size` contiguous bytes are free at the tail.
    fn make_room(&mut self, size: u64) -> bool {
        let cap = self.mem.len() as u64;
        loop {
            if self.is_empty() {
                // Start again at the beginning of the array: a big record then always fits.
                self.tail = self.tail.div_ceil(cap) * cap;
                self.head = self.tail;
            }
            let to_end = cap - self.tail % cap;
            let skip = if to_end < size { to_end } else { 0 };
            if cap - (self.tail - self.head) >= skip + size {
                if skip >= HEADER as u64 {
                    let at = (self.tail % cap) as usize;
                    self.mem[at + 8..at + 16]
                        .copy_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
                }
                self.tail += skip;
                return true;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let cap = self.mem.len() as u64;
        let at = (self.head % cap) as usize;
        let to_end = cap as usize - at;
        match self.read_header(at) {
            None => self.head += to_end as u64,
            Some(h) => {
                self.head += record_size(h.caplen as usize) as u64;
                self.first_seq += 1;
                let c = &mut self.ifaces[h.iface.0 as usize].counts;
                c.overwritten += 1;
                c.held -= 1;
                c.held_bytes -= h.caplen as u64;
            }
        }
    }

    /// Drop every stored packet; interfaces and their totals stay. A linear buffer starts again at the
    /// beginning of its array (a ring does at its next packet).
    pub fn wipe(&mut self) {
        self.head = match self.mode {
            BufferMode::Linear => 0,
            BufferMode::Ring => self.tail,
        };
        self.tail = self.head;
        self.first_seq = self.next_seq;
        self.full = false;
        for f in &mut self.ifaces {
            f.counts.held = 0;
            f.counts.held_bytes = 0;
        }
    }

    /// A cursor at the oldest stored packet.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            seq: self.first_seq,
            at: self.head,
        }
    }

    /// A cursor after the newest stored packet: it sees only packets stored from now on.
    pub fn cursor_at_end(&self) -> Cursor {
        Cursor {
            seq: self.next_seq,
            at: self.tail,
        }
    }

    /// The packet at `cursor`, moving it on. Packets overwritten since the cursor was last moved are
    /// skipped and added to `missed`.
    pub fn next(&self, cursor: &mut Cursor, missed: &mut u64) -> Option<StoredPacket<'_>> {
        // At the oldest packet, the cursor's place is the head's: an emptied buffer starts again at the
        // beginning of its array, away from where a cursor placed at the end before stands.
        if cursor.seq <= self.first_seq {
            *missed += self.first_seq - cursor.seq;
            *cursor = self.cursor();
        }
        let cap = self.mem.len() as u64;
        while cursor.seq < self.next_seq {
            // A division per packet shows in `write`: skip it while offsets have not wrapped (always,
            // in a linear buffer).
            let at = if cursor.at < cap {
                cursor.at
            } else {
                cursor.at % cap
            } as usize;
            let Some(h) = self.read_header(at) else {
                cursor.at += (cap as usize - at) as u64;
                continue;
            };
            cursor.at += record_size(h.caplen as usize) as u64;
            cursor.seq += 1;
            return Some(StoredPacket {
                seq: cursor.seq - 1,
                ts_ns: h.ts_ns,
                wirelen: h.wirelen,
                iface: h.iface,
                direction: h.direction,
                data: &self.mem[at + HEADER..at + HEADER + h.caplen as usize],
            });
        }
        None
    }

    /// The position (from 1, as `show` numbers them) among the held packets of `iface` of its packet
    /// stored `ordinal`-th; `None` once it is no longer held. The held packets of an interface are the
    /// newest it stored (a ring drops the oldest, `wipe` all), so no walk is needed.
    pub fn held_position(&self, iface: IfaceId, ordinal: u64) -> Option<u64> {
        let counts = self.iface(iface).counts;
        let before_held = counts.packets - counts.held;
        (before_held < ordinal && ordinal <= counts.packets).then(|| ordinal - before_held)
    }

    /// Move `lane` to the next packet of `iface` stored before `end`, or end it (`None`). Returns that
    /// packet's (timestamp, sequence number), or `(u64::MAX, u64::MAX)` for an ended lane.
    fn settle(
        &self,
        lane: &mut Option<Cursor>,
        iface: IfaceId,
        end: u64,
        missed: &mut u64,
    ) -> (u64, u64) {
        while let Some(cursor) = lane {
            let mut ahead = *cursor;
            match self.next(&mut ahead, missed) {
                Some(p) if p.seq < end && p.iface == iface => {
                    // `next` may have moved the cursor past overwritten packets: stand at this one.
                    *cursor = Cursor {
                        seq: p.seq,
                        at: ahead.at - record_size(p.data.len()) as u64,
                    };
                    return (p.ts_ns, p.seq);
                }
                Some(p) if p.seq < end => *cursor = ahead,
                _ => *lane = None,
            }
        }
        (u64::MAX, u64::MAX)
    }

    /// The header at `at`, or `None` where the rest of the array is skipped.
    fn read_header(&self, at: usize) -> Option<Header> {
        if self.mem.len() - at < HEADER {
            return None;
        }
        let h = &self.mem[at..at + HEADER];
        let word = |r: std::ops::Range<usize>| u32::from_ne_bytes(h[r].try_into().unwrap());
        // The pad marker sits where caplen is; a real record has wirelen ≥ 0 and caplen ≤ 256 KiB.
        let caplen = word(12..16);
        if caplen == PAD {
            return None;
        }
        Some(Header {
            ts_ns: u64::from_ne_bytes(h[0..8].try_into().unwrap()),
            wirelen: word(8..12),
            caplen,
            iface: IfaceId(u16::from_ne_bytes([h[16], h[17]])),
            direction: if h[18] == 1 {
                Direction::Out
            } else {
                Direction::In
            },
        })
    }
}

fn encode_header(
    ts_ns: u64,
    wirelen: u32,
    caplen: u32,
    iface: IfaceId,
    direction: Direction,
) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..8].copy_from_slice(&ts_ns.to_ne_bytes());
    h[8..12].copy_from_slice(&wirelen.to_ne_bytes());
    h[12..16].copy_from_slice(&caplen.to_ne_bytes());
    h[16..18].copy_from_slice(&iface.0.to_ne_bytes());
    h[18] = matches!(direction, Direction::Out) as u8;
    h
}

struct Header {
    ts_ns: u64,
    wirelen: u32,
    caplen: u32,
    iface: IfaceId,
    direction: Direction,
}

/// The buffer as shared by capture threads and readers: a lock, and a signal when packets arrive.
pub struct SharedBuffer {
    buffer: Mutex<CaptureBuffer>,
    arrived: Condvar,
}

/// Packets are copied out of the shared buffer this many bytes at a time: a capture thread never waits
/// long for the lock while a big buffer is written, and the chunk is still in cache for the kernel's copy.
/// Fewer, larger writes cost the kernel less: 256 KiB against 64 KiB saved about 5 ns per small packet.
const COPY_CHUNK: usize = 1 << 18;

/// What `SharedBuffer::write_pcap` wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub packets: u64,
    pub bytes: u64,
}

impl SharedBuffer {
    pub fn new(buffer: CaptureBuffer) -> SharedBuffer {
        SharedBuffer {
            buffer: Mutex::new(buffer),
            arrived: Condvar::new(),
        }
    }

    /// A buffer of `kb` KB (1024 bytes each), committed now.
    pub fn allocate(kb: u64, mode: BufferMode) -> Result<SharedBuffer, CaptureError> {
        let size = usize::try_from(kb.saturating_mul(1024)).unwrap_or(usize::MAX);
        CaptureBuffer::new(size, mode)
            .map(SharedBuffer::new)
            .map_err(|source| CaptureError::Buffer { kb, source })
    }

    pub fn lock(&self) -> MutexGuard<'_, CaptureBuffer> {
        // A panic while holding the lock leaves records whole (headers are written before `tail` moves).
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wake readers waiting in `wait`.
    pub fn notify(&self) {
        self.arrived.notify_all();
    }

    /// Wait, with the lock released, until packets are stored or `timeout` passes.
    pub fn wait<'a>(
        &'a self,
        guard: MutexGuard<'a, CaptureBuffer>,
        timeout: Duration,
    ) -> MutexGuard<'a, CaptureBuffer> {
        match self.arrived.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    /// Walk the packets of `iface` held now, oldest first, a chunk at a time. `copy` is called for each
    /// packet with the lock held and says how many bytes it kept; once about `COPY_CHUNK` bytes are
    /// kept, the lock is released and `flush` is called. `copy` should only copy: capture threads wait.
    pub fn walk<S>(
        &self,
        iface: IfaceId,
        state: &mut S,
        mut copy: impl FnMut(&mut S, &StoredPacket) -> usize,
        mut flush: impl FnMut(&mut S) -> io::Result<()>,
    ) -> io::Result<()> {
        let (mut cursor, end) = {
            let b = self.lock();
            (b.cursor(), b.next_seq())
        };
        let mut missed = 0;
        loop {
            {
                let b = self.lock();
                let mut kept = 0;
                while kept < COPY_CHUNK && cursor.seq < end {
                    // `None` only once the cursor has passed `end`.
                    let Some(p) = b.next(&mut cursor, &mut missed) else {
                        break;
                    };
                    if p.iface == iface && p.seq < end {
                        kept += copy(state, &p);
                    }
                }
            }
            flush(state)?;
            if cursor.seq >= end {
                return Ok(());
            }
        }
    }

    /// Walk the packets of several interfaces held now as one timeline: a k-way merge by timestamp
    /// (ties in arrival order) of one cursor per interface over the buffer itself, nothing copied but
    /// what `copy` keeps. Each interface's packets keep their order of arrival, which is its kernel
    /// ring's, in time. `copy` gets the packet's place in `ifaces`; otherwise as `walk`.
    pub fn walk_merged<S>(
        &self,
        ifaces: &[IfaceId],
        state: &mut S,
        mut copy: impl FnMut(&mut S, usize, &StoredPacket) -> usize,
        mut flush: impl FnMut(&mut S) -> io::Result<()>,
    ) -> io::Result<()> {
        if let [only] = ifaces {
            // One interface is its own timeline: the plain walk reads each record once.
            return self.walk(*only, state, |s, p| copy(s, 0, p), flush);
        }
        let (start, end) = {
            let b = self.lock();
            (b.cursor(), b.next_seq())
        };
        // Each lane's cursor stands at its interface's next packet; `None` once it has none left. Its
        // head (timestamp, sequence number) is kept beside it: choosing the next packet reads nothing.
        let mut lanes: Vec<Option<Cursor>> = vec![Some(start); ifaces.len()];
        let mut heads: Vec<(u64, u64)> = vec![(u64::MAX, u64::MAX); ifaces.len()];
        let mut missed = 0;
        loop {
            {
                let b = self.lock();
                // Between chunks a ring may have overwritten what a lane stood at: settle each again.
                for i in 0..ifaces.len() {
                    heads[i] = b.settle(&mut lanes[i], ifaces[i], end, &mut missed);
                }
                let mut kept = 0;
                while kept < COPY_CHUNK {
                    let Some((i, _)) = heads.iter().enumerate().min_by_key(|&(_, head)| *head)
                    else {
                        break; // no interface at all
                    };
                    let Some(cursor) = lanes[i].as_mut() else {
                        break; // the smallest head is an ended lane's: every lane has ended
                    };
                    let p = b
                        .next(cursor, &mut missed)
                        .expect("a settled lane has a packet");
                    kept += copy(state, i, &p);
                    heads[i] = b.settle(&mut lanes[i], ifaces[i], end, &mut missed);
                }
            }
            flush(state)?;
            if lanes.iter().all(Option::is_none) {
                return Ok(());
            }
        }
    }

    /// Write the packets of `ifaces` held now, merged in time order, as a pcapng section into `out`:
    /// one interface block each, from `blocks` (in the same order). Returns what was written of each
    /// interface and the writer, to add statistics blocks and commit (or drop, which leaves nothing).
    /// `comment` goes on the packet of that sequence number (the one a trigger fired on).
    pub fn write_pcapng(
        &self,
        ifaces: &[IfaceId],
        blocks: &[InterfaceBlock],
        section: &Section,
        comment: Option<(u64, &str)>,
        out: AtomicFile,
    ) -> io::Result<(Vec<Written>, PcapngWriter<AtomicFile>)> {
        let mut writer = PcapngWriter::new(out, section)?;
        for block in blocks {
            writer.add_interface(block)?;
        }
        let snaplens: Vec<u32> = blocks.iter().map(|b| b.snaplen).collect();
        let room = comment.map_or(0, |(_, text)| text.len() + 16);
        let chunk = vec![0u8; COPY_CHUNK + packet_block_len(MAX_RECORD as usize) + room];
        let mut commented = Vec::new();
        let mut state = (
            writer,
            chunk,
            0usize,
            vec![Written::default(); ifaces.len()],
        );
        self.walk_merged(
            ifaces,
            &mut state,
            |(_, chunk, filled, written), i, p| {
                let data = &p.data[..p.data.len().min(snaplens[i] as usize)];
                let n = match comment {
                    Some((seq, text)) if seq == p.seq => {
                        commented.clear();
                        let dir = Some(p.direction);
                        encode_commented_packet(
                            &mut commented,
                            i as u32,
                            p.ts_ns,
                            data,
                            p.wirelen,
                            dir,
                            text,
                        );
                        chunk[*filled..*filled + commented.len()].copy_from_slice(&commented);
                        commented.len()
                    }
                    _ => encode_packet_into(
                        &mut chunk[*filled..],
                        i as u32,
                        p.ts_ns,
                        data,
                        p.wirelen,
                        Some(p.direction),
                    ),
                };
                *filled += n;
                written[i].packets += 1;
                written[i].bytes += data.len() as u64;
                n
            },
            |(writer, chunk, filled, _)| {
                writer.get_mut().write_direct(&chunk[..*filled])?;
                *filled = 0;
                Ok(())
            },
        )?;
        let (writer, _, _, written) = state;
        Ok((written, writer))
    }

    /// Write the packets of `iface` held now as a pcap file into `out`, and hand `out` back to be
    /// committed (or dropped, which leaves nothing) by the caller.
    pub fn write_pcap(
        &self,
        iface: IfaceId,
        out: AtomicFile,
        snaplen: u32,
    ) -> io::Result<(Written, AtomicFile)> {
        let link = self.lock().iface(iface).link;
        let writer = PcapWriter::new(out, link, snaplen)?;
        // The walk hands over a chunk once it holds COPY_CHUNK bytes: room for one more record.
        let chunk = vec![0u8; COPY_CHUNK + MAX_RECORD as usize + 16];
        let mut state = (writer, chunk, 0usize, Written::default());
        self.walk(
            iface,
            &mut state,
            |(_, chunk, filled, written), p| {
                let n =
                    encode_record_into(&mut chunk[*filled..], p.ts_ns, p.data, p.wirelen, snaplen);
                *filled += n;
                written.packets += 1;
                written.bytes += (n - 16) as u64;
                n
            },
            |(writer, chunk, filled, _)| {
                writer.get_mut().write_direct(&chunk[..*filled])?;
                *filled = 0;
                Ok(())
            },
        )?;
        let (writer, _, _, written) = state;
        Ok((written, writer.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8, len: usize) -> Vec<u8> {
        vec![n; len]
    }

    fn held(b: &CaptureBuffer) -> Vec<(u64, u8, usize)> {
        let mut c = b.cursor();
        let mut missed = 0;
        let mut out = Vec::new();
        while let Some(p) = b.next(&mut c, &mut missed) {
            out.push((p.seq, p.data[0], p.data.len()));
        }
        assert_eq!(missed, 0);
        out
    }

    #[test]
    fn a_name_changes_link_type_only_while_none_of_its_packets_are_held() {
        let mut b = CaptureBuffer::new(3 * record_size(100), BufferMode::Linear).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        b.push(i, 1, 100, Direction::In, &[&frame(1, 100)]);
        let refused = b.interface("int", LinkType::LinuxSll2).unwrap_err();
        assert!(matches!(
            refused,
            CaptureError::LinkChanged {
                held: 1,
                was: 1,
                now: 276,
                ..
            }
        ));
        assert_eq!(b.iface(i).link, LinkType::Ethernet);
        assert_eq!(b.interface("int", LinkType::Ethernet).unwrap(), i);
        b.wipe();
        assert_eq!(b.interface("int", LinkType::LinuxSll2).unwrap(), i);
        assert_eq!(b.iface(i).link, LinkType::LinuxSll2);
    }

    #[test]
    fn linear_keeps_the_first_packets_and_counts_the_rest() {
        let mut b = CaptureBuffer::new(3 * record_size(100), BufferMode::Linear).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        for n in 0..5 {
            b.push(i, n as u64, 100, Direction::In, &[&frame(n, 100)]);
        }
        // A small packet that would fit is still dropped: the stored packets stay an unbroken stretch.
        let small = b.push(i, 9, 10, Direction::In, &[&frame(9, 10)]);
        assert_eq!(small, Pushed::Dropped);
        assert_eq!(held(&b), vec![(0, 0, 100), (1, 1, 100), (2, 2, 100)]);
        let c = b.iface(i).counts;
        assert_eq!((c.packets, c.buffer_full_drops, c.overwritten), (3, 3, 0));
    }

    /// Two interfaces whose packets reach the buffer in batches, out of time order between them.
    fn two_interfaces(mode: BufferMode, capacity: usize) -> (SharedBuffer, IfaceId, IfaceId) {
        let mut b = CaptureBuffer::new(capacity, mode).unwrap();
        let int = b.interface("int", LinkType::Ethernet).unwrap();
        let ext = b.interface("ext", LinkType::Ethernet).unwrap();
        // int's batch (times 10, 30, 50), then ext's (20, 40, 60), then int's (70), then ext's (65).
        for (iface, ts, dir) in [
            (int, 10, Direction::In),
            (int, 30, Direction::In),
            (int, 50, Direction::In),
            (ext, 20, Direction::Out),
            (ext, 40, Direction::Out),
            (ext, 60, Direction::Out),
            (int, 70, Direction::In),
            (ext, 65, Direction::Out),
        ] {
            b.push(iface, ts, 100, dir, &[&frame(ts as u8, 100)]);
        }
        (SharedBuffer::new(b), int, ext)
    }

    fn merged(shared: &SharedBuffer, ifaces: &[IfaceId]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        shared
            .walk_merged(
                ifaces,
                &mut out,
                |out, i, p| {
                    out.push((i, p.ts_ns));
                    p.data.len()
                },
                |_| Ok(()),
            )
            .unwrap();
        out
    }

    #[test]
    fn a_packets_held_position_follows_from_its_ordinal() {
        // Room for five records; int stores its 1st…5th packets, interleaved with ext's.
        let mut b = CaptureBuffer::new(5 * record_size(100) + 8, BufferMode::Ring).unwrap();
        let int = b.interface("int", LinkType::Ethernet).unwrap();
        let ext = b.interface("ext", LinkType::Ethernet).unwrap();
        for n in 0..10u8 {
            let iface = if n % 2 == 0 { int } else { ext };
            b.push(iface, n as u64, 100, Direction::In, &[&frame(n, 100)]);
        }
        // Walked, int's held packets are its newest: their positions are 1, 2, ….
        let (mut c, mut missed, mut held) = (b.cursor(), 0, Vec::new());
        while let Some(p) = b.next(&mut c, &mut missed) {
            if p.iface == int {
                held.push(p.ts_ns / 2 + 1); // the ordinal of int's packet n is n / 2 + 1
            }
        }
        assert!(!held.is_empty() && held.len() < 5);
        for (position, &ordinal) in held.iter().enumerate() {
            assert_eq!(b.held_position(int, ordinal), Some(position as u64 + 1));
        }
        assert_eq!(b.held_position(int, held[0] - 1), None); // overwritten
        assert_eq!(b.held_position(int, 6), None); // never stored
        b.wipe();
        assert_eq!(b.held_position(int, *held.last().unwrap()), None);
    }

    #[test]
    fn a_merged_walk_is_one_timeline_of_the_chosen_interfaces() {
        let (shared, int, ext) = two_interfaces(BufferMode::Linear, 64 * 1024);
        assert_eq!(
            merged(&shared, &[int, ext]),
            vec![
                (0, 10),
                (1, 20),
                (0, 30),
                (1, 40),
                (0, 50),
                (1, 60),
                (1, 65),
                (0, 70)
            ]
        );
        assert_eq!(
            merged(&shared, &[ext]),
            vec![(0, 20), (0, 40), (0, 60), (0, 65)]
        );
        assert_eq!(merged(&shared, &[]), vec![]);
    }

    #[test]
    fn a_merged_walk_of_a_ring_starts_at_the_oldest_packet_kept() {
        // Room for five records: the oldest are overwritten.
        let (shared, int, ext) = two_interfaces(BufferMode::Ring, 5 * record_size(100) + 8);
        let mut kept: Vec<(usize, u64, u64)> = Vec::new();
        {
            let b = shared.lock();
            let (mut c, mut missed) = (b.cursor(), 0);
            while let Some(p) = b.next(&mut c, &mut missed) {
                kept.push((usize::from(p.iface == int), p.ts_ns, p.seq));
            }
        }
        assert!(kept.len() < 8 && kept.len() >= 4, "{kept:?}");
        kept.sort_by_key(|&(_, ts, seq)| (ts, seq));
        let expected: Vec<(usize, u64)> = kept.iter().map(|&(i, ts, _)| (1 - i, ts)).collect();
        assert_eq!(merged(&shared, &[int, ext]), expected);
    }

    #[test]
    fn pcapng_of_two_interfaces_reads_back_merged_with_names_and_directions() {
        let (shared, int, ext) = two_interfaces(BufferMode::Linear, 64 * 1024);
        let dest = std::env::temp_dir().join(format!("merged-{}.pcapng", std::process::id()));
        let blocks = [("ext", 64), ("int", 262144)].map(|(name, snaplen)| InterfaceBlock {
            name,
            link: LinkType::Ethernet,
            snaplen,
            filter: None,
        });
        let section = Section::here();
        let (written, writer) = shared
            .write_pcapng(
                &[ext, int],
                &blocks,
                &section,
                None,
                AtomicFile::create(&dest).unwrap(),
            )
            .unwrap();
        writer.into_inner().commit().unwrap();
        assert_eq!(
            written,
            vec![
                Written {
                    packets: 4,
                    bytes: 4 * 64
                },
                Written {
                    packets: 4,
                    bytes: 4 * 100
                }
            ]
        );
        let file = crate::pcap::CaptureFile::open(&dest).unwrap();
        let mut got = Vec::new();
        file.for_each_record(|r| {
            let r = r.unwrap();
            got.push((
                r.iface.unwrap().to_owned(),
                r.direction.unwrap(),
                r.ts_ns,
                r.data.len(),
            ));
        });
        std::fs::remove_file(&dest).unwrap();
        let int_ = |ts| ("int".to_owned(), Direction::In, ts, 100);
        let ext_ = |ts| ("ext".to_owned(), Direction::Out, ts, 64);
        assert_eq!(
            got,
            vec![
                int_(10),
                ext_(20),
                int_(30),
                ext_(40),
                int_(50),
                ext_(60),
                ext_(65),
                int_(70)
            ]
        );
    }

    #[test]
    fn ring_overwrites_the_oldest_whole_records() {
        let mut b = CaptureBuffer::new(3 * record_size(100) + 40, BufferMode::Ring).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        for n in 0..10u8 {
            assert_eq!(
                b.push(i, n as u64, 100, Direction::In, &[&frame(n, 100)]),
                Pushed::Stored
            );
        }
        assert_eq!(held(&b), vec![(7, 7, 100), (8, 8, 100), (9, 9, 100)]);
        let c = b.iface(i).counts;
        assert_eq!(
            (c.packets, c.held, c.overwritten, c.buffer_full_drops),
            (10, 3, 7, 0)
        );
    }

    #[test]
    fn ring_with_mixed_sizes_wraps_without_splitting_records() {
        let mut b = CaptureBuffer::new(1000, BufferMode::Ring).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        let j = b.interface("ext", LinkType::Ethernet).unwrap();
        let mut expect_total = 0;
        for n in 0..200u32 {
            let len = (n as usize * 37) % 300 + 1;
            let id = if n % 3 == 0 { j } else { i };
            b.push(
                id,
                n as u64,
                len as u32,
                Direction::Out,
                &[&frame(n as u8, len)],
            );
            expect_total += 1;
            let got = held(&b);
            // The newest is always there, records are whole and in order, and the sizes add up.
            assert_eq!(got.last().unwrap().1, n as u8);
            assert!(got.windows(2).all(|w| w[0].0 + 1 == w[1].0));
            let sum: usize = got.iter().map(|g| record_size(g.2)).sum();
            assert!(sum <= b.used() && b.used() <= b.capacity());
        }
        let counts: u64 = b
            .interfaces()
            .iter()
            .map(|f| f.counts.held + f.counts.overwritten)
            .sum();
        assert_eq!(counts, expect_total);
    }

    #[test]
    fn ring_drops_a_packet_bigger_than_the_buffer() {
        let mut b = CaptureBuffer::new(256, BufferMode::Ring).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        assert_eq!(
            b.push(i, 0, 300, Direction::In, &[&frame(1, 300)]),
            Pushed::Dropped
        );
        assert_eq!(b.iface(i).counts.buffer_full_drops, 1);
        // A record taking the whole buffer still fits, from any starting point.
        b.push(i, 0, 8, Direction::In, &[&frame(2, 8)]);
        assert_eq!(
            b.push(i, 0, 232, Direction::In, &[&frame(3, 232)]),
            Pushed::Stored
        );
        assert_eq!(held(&b), vec![(1, 3, 232)]);
    }

    #[test]
    fn a_slow_reader_is_told_what_it_missed() {
        let mut b = CaptureBuffer::new(2 * record_size(64), BufferMode::Ring).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        let mut c = b.cursor();
        for n in 0..5u8 {
            b.push(i, 0, 64, Direction::In, &[&frame(n, 64)]);
        }
        let mut missed = 0;
        let p = b.next(&mut c, &mut missed).unwrap();
        assert_eq!((p.seq, p.data[0], missed), (3, 3, 3));
    }

    #[test]
    fn a_full_linear_buffer_takes_packets_again_after_a_wipe() {
        let mut b = CaptureBuffer::new(4096, BufferMode::Linear).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        while b.push(i, 1, 100, Direction::In, &[&[1; 100]]) == Pushed::Stored {}
        // A reader that follows new packets, placed before the wipe.
        let mut follower = b.cursor_at_end();
        b.wipe();
        for n in 0..3 {
            assert_eq!(b.push(i, 2, 60, Direction::In, &[&[n; 60]]), Pushed::Stored);
        }
        let c = b.iface(i).counts;
        assert_eq!((c.held, c.buffer_full_drops), (3, 1));
        let mut missed = 0;
        for n in 0..3 {
            let p = b.next(&mut follower, &mut missed).unwrap();
            assert_eq!((p.ts_ns, p.data), (2, &[n; 60][..]));
        }
        assert!(b.next(&mut follower, &mut missed).is_none());
        assert_eq!(missed, 0);
    }

    #[test]
    fn a_reader_at_the_end_of_an_emptied_ring_reads_what_comes_next() {
        let mut b = CaptureBuffer::new(4096, BufferMode::Ring).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        b.push(i, 1, 100, Direction::In, &[&[1; 100]]);
        b.wipe();
        let mut follower = b.cursor_at_end();
        // The ring, empty, starts again at the beginning of its array.
        b.push(i, 2, 60, Direction::In, &[&[7; 60]]);
        let p = b.next(&mut follower, &mut 0).unwrap();
        assert_eq!((p.ts_ns, p.data), (2, &[7; 60][..]));
    }

    #[test]
    fn parts_are_stored_as_one_packet_and_wipe_empties() {
        let mut b = CaptureBuffer::new(4096, BufferMode::Linear).unwrap();
        let i = b.interface("int", LinkType::Ethernet).unwrap();
        b.push(i, 5, 70, Direction::Out, &[&[1, 2], &[3], &[4, 5, 6]]);
        let mut c = b.cursor();
        let p = b.next(&mut c, &mut 0).unwrap();
        assert_eq!(
            (p.data, p.direction, p.wirelen),
            (&[1, 2, 3, 4, 5, 6][..], Direction::Out, 70)
        );
        b.wipe();
        assert!(b.is_empty());
        assert_eq!(b.iface(i).counts.packets, 1);
        assert_eq!(b.interface("int", LinkType::Ethernet).unwrap(), i);
    }

    #[test]
    fn write_pcap_writes_one_interfaces_held_packets_across_chunks_and_wraps() {
        // Several chunks' worth, a wrapped ring, two interfaces, sizes on both sides of the short
        // copies' limits, and a snap length cut at write time.
        let mut b = CaptureBuffer::new(600_000, BufferMode::Ring).unwrap();
        let (int, ext) = (
            b.interface("int", LinkType::Ethernet).unwrap(),
            b.interface("ext", LinkType::Ethernet).unwrap(),
        );
        let mut sent = Vec::new();
        for n in 0..12_000u64 {
            let len = [14, 15, 16, 31, 33, 64, 65, 128, 129, 300][n as usize % 10];
            let data: Vec<u8> = (0..len).map(|k| (n as usize * 31 + k) as u8).collect();
            let iface = if n % 3 == 0 { ext } else { int };
            let dir = if n % 2 == 0 {
                Direction::In
            } else {
                Direction::Out
            };
            let ts = 1_700_000_000_000_000_000 + n * 1_001;
            b.push(iface, ts, len as u32 + 4, dir, &[&data[..5], &data[5..]]);
            sent.push((iface, ts, data));
        }
        let held = b.len() as usize;
        assert!(
            b.iface(int).counts.overwritten > 0,
            "the ring must have wrapped"
        );
        let snaplen = 100;
        let expected: Vec<_> = sent[sent.len() - held..]
            .iter()
            .filter(|(iface, ..)| *iface == int)
            .collect();
        let shared = SharedBuffer::new(b);
        let path =
            std::env::temp_dir().join(format!("pcapdump-buffer-test-{}.pcap", std::process::id()));
        let out = AtomicFile::create(&path).unwrap();
        let (written, out) = shared.write_pcap(int, out, snaplen).unwrap();
        out.commit().unwrap();
        let file = crate::pcap::CaptureFile::open(&path).unwrap();
        let mut records = Vec::new();
        file.for_each_record(|r| {
            let r = r.unwrap();
            records.push((r.ts_ns, r.data.to_vec(), r.wirelen));
        });
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written.packets as usize, expected.len());
        assert_eq!(records.len(), expected.len());
        for ((ts_ns, got, wirelen), (_, ts, data)) in records.iter().zip(&expected) {
            let cut = &data[..data.len().min(snaplen as usize)];
            assert_eq!(*ts_ns, ts / 1_000 * 1_000, "microsecond timestamps");
            assert_eq!(got, cut);
            assert_eq!(*wirelen, data.len() as u32 + 4);
        }
        assert_eq!(
            written.bytes,
            records.iter().map(|r| r.1.len() as u64).sum::<u64>()
        );
    }
}
