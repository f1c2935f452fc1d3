//! A capture session: one thread per interface moving packets from the kernel's ring into the shared
//! capture buffer and to live subscribers. Nothing a reader does can slow that thread down: readers of
//! the buffer take its lock for short copies, and a live subscriber that falls behind loses packets of
//! its own (`live_dropped`), never packets of the capture.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::{RingBackend, RingWaker};
use super::buffer::{BufferMode, CaptureBuffer, IfaceId, Pushed, SharedBuffer};
use super::ready::{Readiness, Watchers};
use super::trigger::{StoredAt, Trigger, TriggerHit, TriggerState};
use super::{CaptureError, Options, PacketRing, RingConfig, RingFrame, Waited, Waker};
use crate::bpf::Insn;
use crate::filter::Filter;
use crate::limits::MAX_SNAPLEN;
use crate::packet::{Direction, LinkType};
use crate::pcap::InterfaceStats;

/// Linux cooked v2 header, put in front of packets of non-Ethernet interfaces.
const SLL2_HEADER: usize = 20;

#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub iface: String,
    pub filter: Option<Filter>,
    /// Keep at most this many bytes of each packet (the kernel cuts, through the filter's accept value).
    pub snaplen: u32,
    /// Stop after keeping this many packets.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop every capture of a group shortly after a packet matches.
    pub trigger: Option<Trigger>,
    pub promisc: bool,
    /// False for a live-only capture (`-ou`): packets go to subscribers and nothing is stored.
    pub store: bool,
    pub ring: RingConfig,
}

impl CaptureConfig {
    pub fn new(iface: &str) -> CaptureConfig {
        CaptureConfig {
            iface: iface.to_owned(),
            filter: None,
            snaplen: MAX_SNAPLEN,
            count: None,
            duration: None,
            trigger: None,
            promisc: false,
            store: true,
            ring: RingConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Requested,
    CountReached,
    DurationReached,
    Triggered,
    InterfaceGone,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Requested => "stopped",
            StopReason::CountReached => "count reached",
            StopReason::DurationReached => "duration",
            StopReason::Triggered => "triggered",
            StopReason::InterfaceGone => "interface removed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Stopped(StopReason),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets and bytes (after the snap length) kept by this capture.
    pub packets: u64,
    pub bytes: u64,
    /// Packets the filter passed that the kernel's ring had no room for.
    pub kernel_drops: u64,
    /// Linear buffer full: packets not stored.
    pub buffer_full_drops: u64,
    /// Ring buffer: this interface's packets overwritten by newer ones.
    pub overwritten: u64,
    /// Packets a live reader did not get because it fell behind.
    pub live_dropped: u64,
}

/// A packet copied out for a live subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedPacket {
    pub iface: Arc<str>,
    pub link: LinkType,
    pub ts_ns: u64,
    pub wirelen: u32,
    pub direction: Direction,
    pub data: Vec<u8>,
}

pub enum Received {
    Packet(OwnedPacket),
    /// Nothing within the timeout; the capture goes on.
    Empty,
    /// The capture has stopped and everything was received.
    Closed,
}

/// A bounded queue between capture threads (one or several interfaces) and one live reader. It is
/// closed once every capture feeding it has stopped.
pub struct LiveQueue {
    inner: Mutex<(VecDeque<OwnedPacket>, bool)>,
    ready: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    producers: AtomicUsize,
}

impl LiveQueue {
    pub fn new(capacity: usize) -> LiveQueue {
        LiveQueue {
            inner: Mutex::new((VecDeque::with_capacity(capacity.min(4096)), false)),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            producers: AtomicUsize::new(0),
        }
    }

    fn offer(&self, packet: OwnedPacket) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.0.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.0.push_back(packet);
        drop(q);
        self.ready.notify_one();
    }

    /// One capture feeding this queue has stopped; the last one closes it.
    fn producer_done(&self) {
        if self.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            self.ready.notify_all();
        }
    }

    pub fn recv(&self, timeout: Duration) -> Received {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.0.is_empty() && !q.1 {
            q = match self.ready.wait_timeout(q, timeout) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        match q.0.pop_front() {
            Some(p) => Received::Packet(p),
            None if q.1 => Received::Closed,
            None => Received::Empty,
        }
    }

    /// Packets this reader lost by falling behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the capture thread and the owner share.
struct Shared {
    stop_requested: AtomicBool,
    /// How many times a stop was asked for: a second one tells a stream to give up its reader.
    stop_requests: AtomicU64,
    state: Mutex<State>,
    /// Wall-clock time (ns since the epoch) the capture stopped; 0 while it runs.
    stopped_ns: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    kernel_drops: AtomicU64,
    buffer_full_drops: AtomicU64,
    live_dropped: AtomicU64,
    live: Option<Arc<LiveQueue>>,
    /// Event loops waiting for stored packets.
    watchers: Watchers,
}

pub struct Capture {
    config: CaptureConfig,
    iface: IfaceId,
    link: LinkType,
    /// The filter program the kernel runs for this capture.
    program: Option<Vec<Insn>>,
    /// Wall-clock time (ns since the epoch) the capture started.
    started_ns: u64,
    buffer: Arc<SharedBuffer>,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    /// Taken by the first `stop`, which joins it while holding the lock: a `stop` from another thread
    /// meanwhile returns only once the thread has ended, as if it had joined it itself.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Capture {
    /// Open the interface (errors come back here, before any thread starts) and start capturing into
    /// `buffer`, and into `live` if given: a reader's queue that gets a copy of every packet kept.
    pub fn start(
        config: CaptureConfig,
        buffer: Arc<SharedBuffer>,
        live: Option<Arc<LiveQueue>>,
    ) -> Result<Capture, CaptureError> {
        config.ring.check()?;
        let ring = PacketRing::open(&Options {
            iface: &config.iface,
            filter: config.filter.as_ref(),
            snaplen: config.snaplen,
            promisc: config.promisc,
            ring: config.ring,
        })?;
        let link = ring.link();
        let program = ring.program().map(<[Insn]>::to_vec);
        let started_ns = wall_clock_ns();
        let iface = buffer.lock().interface(&config.iface, link)?;
        let waker = Arc::new(Waker::new().map_err(|source| CaptureError::Os {
            iface: config.iface.clone(),
            what: "cannot create an event descriptor",
            source,
        })?);
        let shared = Arc::new(Shared {
            stop_requested: AtomicBool::new(false),
            stop_requests: AtomicU64::new(0),
            state: Mutex::new(State::Running),
            stopped_ns: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            kernel_drops: AtomicU64::new(0),
            buffer_full_drops: AtomicU64::new(0),
            live_dropped: AtomicU64::new(0),
            live,
            watchers: Watchers::default(),
        });
        if let Some(q) = &shared.live {
            q.producers.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(t) = &config.trigger {
            t.group.join(waker.clone());
        }
        let worker = Worker {
            trigger: config.trigger.clone().map(TriggerState::new),
            ring,
            config: config.clone(),
            iface,
            iface_name: config.iface.as_str().into(),
            link,
            buffer: buffer.clone(),
            shared: shared.clone(),
            waker: waker.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("capture {}", config.iface))
            .spawn(move || worker.run())
            .map_err(|source| {
                if let Some(q) = &shared.live {
                    q.producer_done();
                }
                CaptureError::Os {
                    iface: config.iface.clone(),
                    what: "cannot start the capture thread",
                    source,
                }
            })?;
        Ok(Capture {
            config,
            iface,
            link,
            program,
            started_ns,
            buffer,
            shared,
            waker,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn config(&self) -> &CaptureConfig {
        &self.config
    }

    /// The buffer this capture stores into.
    pub fn buffer(&self) -> &Arc<SharedBuffer> {
        &self.buffer
    }

    pub fn iface(&self) -> IfaceId {
        self.iface
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// The packet this capture's trigger (or another capture's of its group) fired on.
    pub fn trigger_hit(&self) -> Option<TriggerHit> {
        self.config.trigger.as_ref().and_then(|t| t.group.hit())
    }

    /// The filter program the kernel runs for this capture (`None`: it has none).
    pub fn program(&self) -> Option<&[Insn]> {
        self.program.as_deref()
    }

    /// The counters as a pcapng statistics block states them: from the start to the stop (or now), what
    /// the filter passed (kept, or dropped by the kernel or for want of room in the buffer), the two
    /// kinds of drops, and `delivered`, what the file holds.
    pub fn interface_stats(&self, delivered: u64) -> InterfaceStats {
        let s = self.stats();
        let stopped = self.shared.stopped_ns.load(Ordering::Acquire);
        InterfaceStats {
            start_ns: Some(self.started_ns),
            end_ns: if stopped != 0 {
                stopped
            } else {
                wall_clock_ns()
            },
            received: Some(s.packets + s.kernel_drops + s.buffer_full_drops),
            kernel_drops: Some(s.kernel_drops),
            buffer_drops: Some(s.buffer_full_drops),
            delivered: Some(delivered),
        }
    }

    pub fn state(&self) -> State {
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask the thread to stop without waiting for it.
    pub fn request_stop(&self) {
        self.shared.stop_requests.fetch_add(1, Ordering::SeqCst);
        self.shared.stop_requested.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// How many times a stop was asked for (`request_stop`, `stop`).
    pub fn stop_requests(&self) -> u64 {
        self.shared.stop_requests.load(Ordering::SeqCst)
    }

    /// Stop and wait until every packet the kernel already handed over is stored. Packets of a block
    /// still being filled are collected too: the kernel hands it over within the block timeout.
    /// Any thread may call it, while others read the stored packets or call it too.
    pub fn stop(&self) {
        self.request_stop();
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }

    /// A descriptor that becomes readable each time this capture stores packets, and when it stops.
    pub fn watch(&self) -> Result<Arc<Readiness>, CaptureError> {
        self.shared
            .watchers
            .add()
            .map_err(|source| CaptureError::Os {
                iface: self.config.iface.clone(),
                what: "cannot create an event descriptor",
                source,
            })
    }

    /// Readers of the buffer report here what they missed (ring mode overwrote it before they read it).
    pub fn add_live_dropped(&self, n: u64) {
        self.shared.live_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CaptureStats {
        let s = &self.shared;
        let lagging = s.live.as_ref().map_or(0, |q| q.dropped());
        let overwritten = self.buffer.lock().iface(self.iface).counts.overwritten;
        CaptureStats {
            packets: s.packets.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            kernel_drops: s.kernel_drops.load(Ordering::Relaxed),
            buffer_full_drops: s.buffer_full_drops.load(Ordering::Relaxed),
            overwritten,
            live_dropped: s.live_dropped.load(Ordering::Relaxed) + lagging,
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The capture thread's side.
struct Worker {
    trigger: Option<TriggerState>,
    ring: PacketRing,
    config: CaptureConfig,
    iface: IfaceId,
    iface_name: Arc<str>,
    link: LinkType,
    buffer: Arc<SharedBuffer>,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
}

impl Worker {
    fn run(mut self) {
        let tov = Duration::from_millis(self.config.ring.block_timeout_ms as u64);
        // After a stop request, wait for the block being filled to be handed over, but not forever.
        let grace = tov * 10 + Duration::from_millis(200);
        let mut stop_by: Option<Instant> = None;
        let deadline = self.config.duration.map(|d| Instant::now() + d);
        let mut kept = 0u64;
        // Frames the kernel handed over, to compare with what it says it passed.
        let mut delivered = 0u64;
        let mut interface_gone = false;
        let reason = loop {
            let mut count_reached = false;
            while !count_reached {
                match self.drain_one_block(&mut kept) {
                    Some((frames, reached)) => {
                        delivered += frames as u64;
                        count_reached = reached;
                    }
                    None => break,
                }
            }
            let ks = self.ring.kernel_stats();
            self.shared.kernel_drops.store(ks.drops, Ordering::Relaxed);
            if count_reached {
                break StopReason::CountReached;
            }
            let requested = self.shared.stop_requested.load(Ordering::SeqCst);
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            let triggered = self.trigger.as_ref().is_some_and(|t| t.group().is_done());
            // Whatever the reason, what the kernel already passed is still delivered first.
            let timeout = if requested || expired || triggered || interface_gone {
                let until = *stop_by.get_or_insert_with(|| {
                    self.waker.clear();
                    Instant::now() + grace
                });
                let now = Instant::now();
                if delivered >= ks.packets - ks.drops || now >= until {
                    break if requested {
                        StopReason::Requested
                    } else if triggered {
                        StopReason::Triggered
                    } else if expired {
                        StopReason::DurationReached
                    } else {
                        StopReason::InterfaceGone
                    };
                }
                (until - now).min(tov).as_millis() as i32 + 1
            } else {
                // Wake at the deadline, if there is one.
                deadline.map_or(-1, |d| {
                    let left = d.saturating_duration_since(Instant::now()).as_millis();
                    left.min(i32::MAX as u128 - 1) as i32 + 1
                })
            };
            if self.ring.wait(&self.waker, timeout) == Waited::InterfaceGone {
                interface_gone = true;
            }
        };
        if let Some(t) = self.trigger.as_mut() {
            t.ended();
        }
        self.shared
            .stopped_ns
            .store(wall_clock_ns(), Ordering::Release);
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Stopped(reason);
        if let Some(q) = &self.shared.live {
            q.producer_done();
        }
        // A reader that found the capture running under the buffer's lock (`wait_stored`) is waiting
        // by the time this lock is ours, so the notice below reaches it.
        drop(self.buffer.lock());
        self.buffer.notify();
        self.shared.watchers.signal();
    }

    /// Store the packets of the next block: how many frames it held, and whether `count` packets are
    /// kept now. `None` while the kernel still fills that block.
    fn drain_one_block(&mut self, kept: &mut u64) -> Option<(u32, bool)> {
        if !self.ring.ready() {
            return None;
        }
        let snaplen = self.config.snaplen as usize;
        let limit = self.config.count.unwrap_or(u64::MAX);
        let store = self.config.store;
        let (iface, link) = (self.iface, self.link);
        let shared = &self.shared;
        let iface_name = &self.iface_name;
        let mut buffer = store.then(|| self.buffer.lock());
        let (mut packets, mut bytes, mut full) = (0u64, 0u64, 0u64);
        let as_they_come = link == LinkType::Ethernet && shared.live.is_none();
        let trigger = &mut self.trigger;
        // Asked once a block, not for each packet: whether this capture still keeps packets (another
        // capture of the group that completed its post-roll stops this one within a block; this
        // capture's own post-roll is counted a packet at a time), and still tests them.
        let mut keeping = trigger.as_ref().is_none_or(|t| t.wants_more());
        let mut armed = trigger.as_ref().is_some_and(|t| t.armed());
        let frames = self.ring.drain_block(|f: &RingFrame| {
            if *kept >= limit || !keeping {
                return;
            }
            // What a trigger keeps of the packet just kept, built only when it fires.
            let hit =
                |buffer: &Option<MutexGuard<CaptureBuffer>>, wirelen, data: &[u8]| TriggerHit {
                    iface: iface_name.clone(),
                    stored: buffer.as_ref().map(|b| StoredAt {
                        seq: b.next_seq() - 1,
                        ordinal: b.iface(iface).counts.packets,
                    }),
                    ts_ns: f.ts_ns,
                    wirelen,
                    direction: f.direction,
                    link,
                    data: data.to_vec(),
                };
            // Most packets: an untagged Ethernet frame, stored as it came (the kernel already cut it).
            if as_they_come && f.stripped_tag.is_none() {
                let data = &f.data[..f.data.len().min(snaplen)];
                if let Some(b) = buffer.as_mut() {
                    if b.push(iface, f.ts_ns, f.wirelen, f.direction, &[data]) == Pushed::Dropped {
                        full += 1;
                        keeping &= !ends_post_roll(trigger, b);
                        return;
                    }
                }
                *kept += 1;
                packets += 1;
                bytes += data.len() as u64;
                if let Some(t) = trigger.as_mut() {
                    if !armed {
                        keeping = t.counted();
                    } else if t.trips(data, link) {
                        armed = false;
                        keeping = t.fire(|| hit(&buffer, f.wirelen, data));
                    }
                }
                return;
            }
            let mut tag = [0u8; 4];
            let mut cooked = [0u8; SLL2_HEADER];
            let mut parts: [&[u8]; 3] = [f.data, &[], &[]];
            let mut wirelen = f.wirelen;
            if link == LinkType::Ethernet {
                if let (Some((tpid, tci)), true) = (f.stripped_tag, f.data.len() >= 12) {
                    tag[..2].copy_from_slice(&tpid.to_be_bytes());
                    tag[2..].copy_from_slice(&tci.to_be_bytes());
                    parts = [&f.data[..12], &tag, &f.data[12..]];
                    wirelen += 4;
                }
            } else {
                cooked_header(&mut cooked, f);
                parts = [&cooked, f.data, &[]];
                wirelen += SLL2_HEADER as u32;
            }
            let parts = cut(parts, snaplen);
            let caplen: usize = parts.iter().map(|p| p.len()).sum();
            if let Some(b) = buffer.as_mut() {
                if b.push(iface, f.ts_ns, wirelen, f.direction, &parts) == Pushed::Dropped {
                    full += 1;
                    keeping &= !ends_post_roll(trigger, b);
                    return;
                }
            }
            *kept += 1;
            packets += 1;
            bytes += caplen as u64;
            if let Some(t) = trigger.as_mut() {
                if !armed {
                    keeping = t.counted();
                } else {
                    // The filter reads the frame as stored: tag back in place, or behind the cooked
                    // header.
                    let frame = parts.concat();
                    if t.trips(&frame, link) {
                        armed = false;
                        keeping = t.fire(|| hit(&buffer, wirelen, &frame));
                    }
                }
            }
            if let Some(q) = &shared.live {
                q.offer(OwnedPacket {
                    iface: iface_name.clone(),
                    link,
                    ts_ns: f.ts_ns,
                    wirelen,
                    direction: f.direction,
                    data: parts.concat(),
                });
            }
        });
        drop(buffer);
        shared.packets.fetch_add(packets, Ordering::Relaxed);
        shared.bytes.fetch_add(bytes, Ordering::Relaxed);
        shared.buffer_full_drops.fetch_add(full, Ordering::Relaxed);
        if store {
            self.buffer.notify();
            if packets > 0 {
                shared.watchers.signal();
            }
        }
        frames.map(|n| (n, *kept >= limit))
    }
}

/// A packet was not stored: in a linear buffer, which is then full until a wipe, the post-roll of a
/// trigger this capture fired ends (see `TriggerState::ended`).
#[cold]
fn ends_post_roll(trigger: &mut Option<TriggerState>, buffer: &CaptureBuffer) -> bool {
    buffer.mode() == BufferMode::Linear && trigger.as_mut().is_some_and(|t| t.ended())
}

/// The first `snaplen` bytes of the concatenation of `parts`.
fn cut(parts: [&[u8]; 3], snaplen: usize) -> [&[u8]; 3] {
    let mut room = snaplen;
    parts.map(|p| {
        let take = p.len().min(room);
        room -= take;
        &p[..take]
    })
}

/// LINKTYPE_LINUX_SLL2: protocol, reserved, interface index, ARPHRD type, packet type, address.
fn cooked_header(h: &mut [u8; SLL2_HEADER], f: &RingFrame) {
    let sll = f.sockaddr;
    // sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8].
    h[0..2].copy_from_slice(&sll[2..4]);
    h[4..8].copy_from_slice(&f.ifindex.to_be_bytes());
    h[8..10].copy_from_slice(&f.hatype.to_be_bytes());
    h[10] = sll[10];
    h[11] = sll[11].min(8);
    h[12..20].copy_from_slice(&sll[12..20]);
}

/// Now, as nanoseconds since the epoch (the kernel's packet timestamps count the same way).
fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_the_first_bytes_across_parts() {
        let parts: [&[u8]; 3] = [&[1, 2, 3], &[4, 5], &[6, 7, 8]];
        assert_eq!(cut(parts, 4).concat(), vec![1, 2, 3, 4]);
        assert_eq!(cut(parts, 100).concat(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(cut(parts, 2).concat(), vec![1, 2]);
    }
}
