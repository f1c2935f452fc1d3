//! AF_PACKET capture through a TPACKET_V3 ring, in the steps of libpcap's `pcap-linux.c` and netsniff-ng's
//! `ring_rx_setup`: a packet socket with protocol 0 (it receives nothing yet), the interface and its link
//! type, TPACKET_V3, the ring and its mapping, our BPF attached and locked, and only then `bind` with
//! ETH_P_ALL, so no packet ever enters the ring unfiltered.

use std::ffi::CString;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::backend::{RingBackend, RingWaker};
use super::link::{link_of, ARPHRD_LOOPBACK};
use super::{CaptureError, KernelStats, Options, RingConfig, RingFrame, Waited};
use crate::bpf::Insn;
use crate::filter::{Filter, LinkHeader};
use crate::limits::MAX_SNAPLEN;
use crate::packet::{Direction, LinkType};

/// The frame size the kernel checks a TPACKET_V3 request against; frames themselves vary in size.
const RING_FRAME_SIZE: u32 = 2048;

/// `TPACKET_ALIGN` of `if_packet.h`, for constants (libc's is not a `const fn`).
const fn tpacket_align(len: usize) -> usize {
    (len + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
}

/// The block status word: the only field of a block the kernel and we both write.
const BLOCK_STATUS_AT: usize = offset_of!(libc::tpacket_block_desc, hdr.bh1.block_status);
/// Where the kernel writes a frame's sockaddr_ll: after its tpacket3_hdr, aligned.
const SLL_AT: usize = tpacket_align(size_of::<libc::tpacket3_hdr>());
const SLL_LEN: usize = size_of::<libc::sockaddr_ll>();
/// The fixed part of every frame in a block, read after one bounds check.
const FRAME_HEAD: usize = SLL_AT + SLL_LEN;
const SLL_PKTTYPE: usize = offset_of!(libc::sockaddr_ll, sll_pkttype);

const _: () = assert!(FRAME_HEAD == libc::TPACKET3_HDRLEN);
// `RingFrame::sockaddr` is this long on every system.
const _: () = assert!(SLL_LEN == 20);

/// While the interface is down, how often to look whether it was removed or is up again: a removal
/// raises no second socket error after the one for going down.
const DOWN_RECHECK_MS: i32 = 250;

const ON: libc::c_int = 1;

/// A packet socket bound to one interface, and its TPACKET_V3 ring mapped into our memory.
pub struct PacketRing {
    /// Unmapped before the socket closes (and so leaves promiscuous mode): fields drop in order.
    map: RingMap,
    fd: OwnedFd,
    block_size: usize,
    block_count: usize,
    next_block: usize,
    ifindex: u32,
    hatype: u16,
    link: LinkType,
    /// On `lo` every packet is seen twice, once outgoing and once incoming: keep one.
    skip_outgoing: bool,
    totals: KernelStats,
    /// The kernel reported the interface down; it has not been seen up again since.
    interface_down: bool,
    program: Option<Vec<Insn>>,
}

/// The ring's blocks, mapped from the kernel, one after the other.
struct RingMap {
    start: *mut u8,
    len: usize,
}

// SAFETY: the mapping belongs to its `PacketRing` alone; blocks are handed between us and the kernel
// through their status word only.
unsafe impl Send for RingMap {}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping, once.
        unsafe { libc::munmap(self.start as *mut libc::c_void, self.len) };
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Up,
    Down,
    Gone,
}

fn os_error(iface: &str, what: &'static str) -> CaptureError {
    CaptureError::Os {
        iface: iface.to_owned(),
        what,
        source: io::Error::last_os_error(),
    }
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// # Safety
/// Any bytes the kernel writes into `value` must make a valid `T`: a C integer or struct of integers.
unsafe fn getsockopt<T>(fd: RawFd, level: i32, name: i32, value: &mut T) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which the caller allows.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            value as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Protocol 0: the socket queues nothing until `bind_to`, after the filter is attached.
fn open_socket(iface: &str) -> Result<OwnedFd, CaptureError> {
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => CaptureError::NoPrivilege(iface.to_owned()),
            _ => CaptureError::Os {
                iface: iface.to_owned(),
                what: "cannot open a packet socket",
                source: e,
            },
        });
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The interface's index and ARPHRD_* hardware type.
fn interface_of(fd: RawFd, iface: &str) -> Result<(u32, u16), CaptureError> {
    let no_such = || CaptureError::NoSuchInterface(iface.to_owned());
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(no_such());
    }
    let name = CString::new(iface).map_err(|_| no_such())?;
    // SAFETY: `name` is a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(no_such());
    }
    // SAFETY: an all-zero ifreq is valid; the name fits (checked above) and stays NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) } != 0 {
        return Err(os_error(iface, "cannot read the hardware type"));
    }
    // SAFETY: SIOCGIFHWADDR set the hwaddr member of the union.
    let hatype = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok((index, hatype))
}

fn compile_filter(
    opts: &Options,
    hatype: u16,
    header: Option<LinkHeader>,
) -> Result<Option<Vec<Insn>>, CaptureError> {
    Ok(match (opts.filter.filter(|f| !f.is_empty()), header) {
        (Some(_), None) => {
            return Err(CaptureError::FilterNeedsKnownLink {
                iface: opts.iface.to_owned(),
                hatype,
            })
        }
        (Some(f), Some(header)) => Some(f.compile(opts.snaplen, header)?),
        // No filter: a program all the same where we can, so that the kernel cuts to the snap length.
        (None, Some(header)) if opts.snaplen < MAX_SNAPLEN => {
            Some(Filter::default().compile(opts.snaplen, header)?)
        }
        (None, _) => None,
    })
}

fn set_tpacket_v3(fd: RawFd, iface: &str) -> Result<(), CaptureError> {
    let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
        .map_err(|_| os_error(iface, "the kernel has no TPACKET_V3 rings"))
}

fn create_ring(fd: RawFd, ring: RingConfig, iface: &str) -> Result<(), CaptureError> {
    let req = libc::tpacket_req3 {
        tp_block_size: ring.block_size,
        tp_block_nr: ring.block_count,
        tp_frame_size: RING_FRAME_SIZE,
        tp_frame_nr: ring.block_size / RING_FRAME_SIZE * ring.block_count,
        tp_retire_blk_tov: ring.block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
        .map_err(|_| os_error(iface, "cannot set up the receive ring"))
}

fn map_ring(fd: RawFd, ring: RingConfig, iface: &str) -> Result<RingMap, CaptureError> {
    let len = ring.block_size as usize * ring.block_count as usize;
    // SAFETY: mapping the ring just created on `fd`, shared with the kernel.
    let start = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if start == libc::MAP_FAILED {
        return Err(os_error(iface, "cannot map the receive ring"));
    }
    Ok(RingMap {
        start: start as *mut u8,
        len,
    })
}

fn attach_filter(fd: RawFd, program: &[Insn], iface: &str) -> Result<(), CaptureError> {
    let mut code: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
        .map_err(|_| os_error(iface, "the kernel refused the filter program"))?;
    // Nobody can swap the filter of this socket from now on.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LOCK_FILTER, &ON)
        .map_err(|_| os_error(iface, "cannot lock the filter"))
}

/// Kernels ≥ 4.20 stop queuing the outgoing copies on `lo` at all; on older ones the option fails and
/// `drain_block` skips them.
fn ignore_outgoing(fd: RawFd) {
    let _ = setsockopt(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &ON);
}

fn bind_to(fd: RawFd, ifindex: u32, iface: &str) -> Result<(), CaptureError> {
    // SAFETY: an all-zero sockaddr_ll is valid; family, protocol and index are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: binding to an address of the size given.
    let rc = unsafe {
        libc::bind(
            fd,
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            SLL_LEN as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => CaptureError::NoSuchInterface(iface.to_owned()),
        _ => CaptureError::Os {
            iface: iface.to_owned(),
            what: "cannot bind to the interface",
            source: e,
        },
    })
}

/// A membership, not the IFF_PROMISC flag: the kernel drops it when the socket closes, even if we are
/// killed.
fn add_promisc_membership(fd: RawFd, ifindex: u32, iface: &str) -> Result<(), CaptureError> {
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as i32,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
        .map_err(|_| os_error(iface, "cannot enter promiscuous mode"))
}

impl RingBackend for PacketRing {
    type Waker = Waker;

    fn open(opts: &Options) -> Result<PacketRing, CaptureError> {
        let iface = opts.iface;
        let fd = open_socket(iface)?;
        let raw = fd.as_raw_fd();
        let (ifindex, hatype) = interface_of(raw, iface)?;
        let (link, header) = link_of(hatype);
        let program = compile_filter(opts, hatype, header)?;
        set_tpacket_v3(raw, iface)?;
        create_ring(raw, opts.ring, iface)?;
        let mut ring = PacketRing {
            map: map_ring(raw, opts.ring, iface)?,
            fd,
            block_size: opts.ring.block_size as usize,
            block_count: opts.ring.block_count as usize,
            next_block: 0,
            ifindex,
            hatype,
            link,
            skip_outgoing: hatype == ARPHRD_LOOPBACK,
            totals: KernelStats::default(),
            interface_down: false,
            program,
        };
        if let Some(program) = &ring.program {
            attach_filter(raw, program, iface)?;
        }
        if ring.skip_outgoing {
            ignore_outgoing(raw);
        }
        bind_to(raw, ifindex, iface)?;
        if opts.promisc {
            add_promisc_membership(raw, ifindex, iface)?;
        }
        ring.reset_statistics();
        Ok(ring)
    }

    fn link(&self) -> LinkType {
        self.link
    }

    fn program(&self) -> Option<&[Insn]> {
        self.program.as_deref()
    }

    fn ready(&self) -> bool {
        self.block_status(self.next_block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    fn drain_block(&mut self, mut each: impl FnMut(&RingFrame)) -> Option<u32> {
        if !self.ready() {
            return None;
        }
        let block = self.next_block;
        let (num_pkts, first) = self.block_contents(block);
        let bytes = self.block_bytes(block);
        let (mut at, mut prefetched) = (first, first);
        for _ in 0..num_pkts {
            let Some(head) = FrameHead::read(bytes, at) else {
                break;
            };
            prefetch_ahead(bytes, at, &mut prefetched);
            if let Some(frame) = self.frame(bytes, at, &head) {
                each(&frame);
            }
            match head.hdr.tp_next_offset {
                0 => break,
                next => at += next as usize,
            }
        }
        self.block_status(block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next_block = (block + 1) % self.block_count;
        Some(num_pkts)
    }

    fn wait(&mut self, waker: &Waker, timeout_ms: i32) -> Waited {
        if self.ready() {
            return Waited::Woken;
        }
        let timeout_ms = match (self.interface_down, timeout_ms) {
            (false, t) => t,
            (true, -1) => DOWN_RECHECK_MS,
            (true, t) => t.min(DOWN_RECHECK_MS),
        };
        // The kernel sets ENETDOWN when the interface goes down, and before it is removed (af_packet.c,
        // `packet_notifier`). Left unread, the error keeps `poll` returning at once.
        if self.poll(waker.fd(), timeout_ms) && self.take_error() == libc::ENETDOWN {
            self.interface_down = true;
        }
        if self.interface_down {
            match self.presence() {
                Presence::Gone => return Waited::InterfaceGone,
                // The kernel attached the socket again on the way up.
                Presence::Up => self.interface_down = false,
                Presence::Down => {}
            }
        }
        Waited::Woken
    }

    /// Folded into running totals: the kernel resets its counters on every read.
    fn kernel_stats(&mut self) -> KernelStats {
        let mut s = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        // SAFETY: tpacket_stats_v3 is all integers.
        let read =
            unsafe { getsockopt(self.fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut s) };
        if read.is_ok() {
            self.totals.packets += s.tp_packets as u64;
            self.totals.drops += s.tp_drops as u64;
        }
        self.totals
    }
}

impl PacketRing {
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Counting starts at `open`: reading the kernel's counters resets them.
    fn reset_statistics(&mut self) {
        self.kernel_stats();
        self.totals = KernelStats::default();
    }

    /// Page aligned, as the mapping and the block size are; it starts with a tpacket_block_desc.
    fn block_start(&self, block: usize) -> *mut u8 {
        debug_assert!(block < self.block_count);
        // SAFETY: the block lies inside the mapping.
        unsafe { self.map.start.add(block * self.block_size) }
    }

    fn block_status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: the word lies in the block's descriptor, 4-byte aligned, for as long as the mapping;
        // the kernel reads and writes it atomically too.
        unsafe { AtomicU32::from_ptr(self.block_start(block).add(BLOCK_STATUS_AT).cast()) }
    }

    /// How many frames the kernel put in `block`, and where the first one starts. Only while the block
    /// is ours: the kernel does not write to it until its status is TP_STATUS_KERNEL again.
    fn block_contents(&self, block: usize) -> (u32, usize) {
        let desc = self.block_start(block).cast::<libc::tpacket_block_desc>();
        // SAFETY: the kernel refuses blocks smaller than a page, so the descriptor lies in the block,
        // aligned; it wrote the TPACKET_V3 member of the union. Only these two fields are read.
        unsafe {
            let hdr = std::ptr::addr_of!((*desc).hdr.bh1);
            ((*hdr).num_pkts, (*hdr).offset_to_first_pkt as usize)
        }
    }

    /// Only while the block is ours, as for `block_contents`.
    fn block_bytes(&self, block: usize) -> &[u8] {
        // SAFETY: the block lies inside the mapping, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.block_start(block), self.block_size) }
    }

    /// The frame at `at` of `block`, unless it is an outgoing copy on `lo` or its data is not all
    /// inside the block.
    #[inline(always)]
    fn frame<'a>(&self, block: &'a [u8], at: usize, head: &FrameHead<'a>) -> Option<RingFrame<'a>> {
        let h = &head.hdr;
        let pkttype = head.sll[SLL_PKTTYPE];
        if self.skip_outgoing && pkttype == libc::PACKET_OUTGOING {
            return None;
        }
        let data_at = at + h.tp_mac as usize;
        let data = block.get(data_at..data_at + h.tp_snaplen as usize)?;
        Some(RingFrame {
            ts_ns: h.tp_sec as u64 * 1_000_000_000 + h.tp_nsec as u64,
            data,
            wirelen: h.tp_len,
            direction: if pkttype == libc::PACKET_OUTGOING {
                Direction::Out
            } else {
                Direction::In
            },
            stripped_tag: stripped_tag(h),
            sockaddr: head.sll,
            hatype: self.hatype,
            ifindex: self.ifindex,
        })
    }

    /// Poll the socket and `wake`; whether the socket reported an error.
    fn poll(&self, wake: RawFd, timeout_ms: i32) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            },
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd entries. EINTR simply ends the wait early.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        n > 0 && fds[0].revents & libc::POLLERR != 0
    }

    /// The socket's pending error (0: none), read and so cleared.
    fn take_error(&self) -> libc::c_int {
        let mut err: libc::c_int = 0;
        // SAFETY: an int.
        let _ = unsafe { getsockopt(self.fd(), libc::SOL_SOCKET, libc::SO_ERROR, &mut err) };
        err
    }

    /// Whether the interface still exists, and is up. Looked up by index: a new interface may have
    /// taken the name, but this socket stays bound to the one that was removed.
    fn presence(&self) -> Presence {
        // SAFETY: an all-zero ifreq is valid; if_indextoname writes at most IFNAMSIZ bytes into the
        // name, NUL-terminated, which SIOCGIFFLAGS then reads.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if unsafe { libc::if_indextoname(self.ifindex, req.ifr_name.as_mut_ptr()) }.is_null() {
            return Presence::Gone;
        }
        // SAFETY: SIOCGIFFLAGS fills the flags member of the ifreq we pass.
        if unsafe { libc::ioctl(self.fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
            return Presence::Gone;
        }
        // SAFETY: SIOCGIFFLAGS set the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if flags & libc::IFF_UP as libc::c_short != 0 {
            Presence::Up
        } else {
            Presence::Down
        }
    }
}

/// The fixed part of a frame: its header, and the sockaddr_ll the kernel wrote after it.
struct FrameHead<'a> {
    hdr: libc::tpacket3_hdr,
    sll: &'a [u8; SLL_LEN],
}

impl<'a> FrameHead<'a> {
    /// One bounds check for all the fixed fields; `None` if they run past the end of the block.
    #[inline(always)]
    fn read(block: &'a [u8], at: usize) -> Option<FrameHead<'a>> {
        let head: &[u8; FRAME_HEAD] = block.get(at..at + FRAME_HEAD)?.try_into().ok()?;
        // SAFETY: `head` holds a whole tpacket3_hdr, all integers, which any bytes make valid. Unaligned:
        // the kernel aligns frames to TPACKET_ALIGNMENT, but nothing here proves `at` came from it.
        let hdr = unsafe { head.as_ptr().cast::<libc::tpacket3_hdr>().read_unaligned() };
        // Constant bounds inside `head`: no check at run time.
        let sll = head[SLL_AT..].try_into().ok()?;
        Some(FrameHead { hdr, sll })
    }
}

/// The 802.1Q tag the kernel (or the NIC) took out of the frame: (TPID, TCI). Older kernels mark a tag
/// by a non-zero TCI alone, and give no TPID.
#[inline(always)]
fn stripped_tag(h: &libc::tpacket3_hdr) -> Option<(u16, u16)> {
    let (tci, tpid) = (h.hv1.tp_vlan_tci, h.hv1.tp_vlan_tpid);
    if h.tp_status & libc::TP_STATUS_VLAN_VALID == 0 && tci == 0 {
        return None;
    }
    let tpid = if h.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
        tpid
    } else {
        crate::packet::ethertype::VLAN
    };
    Some((tpid, tci as u16))
}

/// Ask for the bytes of the frames after this one while it is copied: the kernel wrote them on another
/// CPU, so they are not in ours, and frames lie one after the other in the block.
#[inline(always)]
fn prefetch_ahead(block: &[u8], at: usize, prefetched: &mut usize) {
    const AHEAD: usize = 1024;
    let until = (at + AHEAD).min(block.len());
    while *prefetched < until {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the address is inside the block; a prefetch never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                block.as_ptr().add(*prefetched) as *const i8,
            )
        };
        *prefetched += 64;
    }
}

/// An eventfd: `poll` in `PacketRing::wait` returns while it is readable.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(super) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl RingWaker for Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2).
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    fn wake(&self) {
        // SAFETY: writing a counter increment to our eventfd; it stays readable until the thread ends.
        unsafe { libc::eventfd_write(self.fd(), 1) };
    }

    fn clear(&self) {
        let mut value: libc::eventfd_t = 0;
        // SAFETY: reading our non-blocking eventfd into a local.
        unsafe { libc::eventfd_read(self.fd(), &mut value) };
    }
}
