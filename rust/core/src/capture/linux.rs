//! AF_PACKET capture through a TPACKET_V3 ring, in the order of libpcap's `pcap-linux.c`: a packet socket
//! with protocol 0 (it receives nothing yet), TPACKET_V3, the ring and its mapping, our BPF attached and
//! locked, and only then `bind` with ETH_P_ALL, so no packet ever enters the ring unfiltered.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{CaptureError, KernelStats, Options, RingFrame, Waited};
use crate::filter::{Filter, LinkHeader, MAX_SNAPLEN};
use crate::packet::{Direction, LinkType};

const ARPHRD_ETHER: u16 = 1;
/// The frame size the kernel checks a TPACKET_V3 request against; frames themselves vary in size.
const RING_FRAME_SIZE: u32 = 2048;
/// A tpacket3_hdr and the sockaddr_ll after it: the fixed part of every frame in a block.
const FRAME_HEAD: usize = 48 + 20;
const ARPHRD_LOOPBACK: u16 = 772;
/// Hardware types whose packets start with their network header: PPP, RAWIP, IPIP, IP6IP6, SIT, GRE,
/// IP6GRE, and NONE (tun, WireGuard).
const NO_LINK_HEADER: [u16; 8] = [512, 519, 768, 769, 776, 778, 823, 0xfffe];

pub struct PacketRing {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
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
}

/// While the interface is down, how often to look whether it was removed or is up again: a removal
/// raises no second socket error after the one for going down.
const DOWN_RECHECK_MS: i32 = 250;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Up,
    Down,
    Gone,
}

// SAFETY: the mapping belongs to this value alone; blocks are handed between us and the kernel through
// their status word only.
unsafe impl Send for PacketRing {}

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
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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

impl PacketRing {
    pub fn open(opts: &Options) -> Result<PacketRing, CaptureError> {
        let iface = opts.iface;
        let ring = opts.ring;
        // SAFETY: plain socket(2); protocol 0 means no packet is queued until `bind` below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    CaptureError::NoPrivilege(iface.to_owned())
                }
                _ => CaptureError::Os {
                    iface: iface.to_owned(),
                    what: "cannot open a packet socket",
                    source: e,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let (ifindex, hatype) = interface_of(raw, iface)?;
        let (link, header) = match hatype {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => (LinkType::Ethernet, Some(LinkHeader::Ethernet)),
            h if NO_LINK_HEADER.contains(&h) => (LinkType::LinuxSll2, Some(LinkHeader::None)),
            _ => (LinkType::LinuxSll2, None),
        };
        let filter = opts.filter.filter(|f| !f.is_empty());
        let program = match (filter, header) {
            (Some(_), None) => {
                return Err(CaptureError::FilterNeedsKnownLink {
                    iface: iface.to_owned(),
                    hatype,
                })
            }
            (Some(f), Some(header)) => Some(f.compile(opts.snaplen, header)?),
            // No filter: a program all the same where we can, so that the kernel cuts to the snap length.
            (None, Some(header)) if opts.snaplen < MAX_SNAPLEN => {
                Some(Filter::default().compile(opts.snaplen, header)?)
            }
            (None, _) => None,
        };

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|_| os_error(iface, "the kernel has no TPACKET_V3 rings"))?;
        let req = libc::tpacket_req3 {
            tp_block_size: ring.block_size,
            tp_block_nr: ring.block_count,
            tp_frame_size: RING_FRAME_SIZE,
            tp_frame_nr: ring.block_size / RING_FRAME_SIZE * ring.block_count,
            tp_retire_blk_tov: ring.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|_| os_error(iface, "cannot set up the receive ring"))?;
        let map_len = ring.block_size as usize * ring.block_count as usize;
        // SAFETY: mapping the ring we just asked for, shared with the kernel.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(os_error(iface, "cannot map the receive ring"));
        }
        let mut ring_handle = PacketRing {
            fd,
            map: map as *mut u8,
            map_len,
            block_size: ring.block_size as usize,
            block_count: ring.block_count as usize,
            next_block: 0,
            ifindex,
            hatype,
            link,
            skip_outgoing: hatype == ARPHRD_LOOPBACK,
            totals: KernelStats::default(),
            interface_down: false,
        };

        if let Some(program) = program {
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
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
                .map_err(|_| os_error(iface, "the kernel refused the filter program"))?;
            // Nobody can swap the filter of this socket from now on.
            setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_LOCK_FILTER,
                &1 as &libc::c_int,
            )
            .map_err(|_| os_error(iface, "cannot lock the filter"))?;
        }
        if ring_handle.skip_outgoing {
            // Kernels ≥ 4.20 stop queuing the copies at all; on older ones `drain_block` skips them.
            let _ = setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &1 as &libc::c_int,
            );
        }

        // SAFETY: an all-zero sockaddr_ll is valid; family, protocol and index are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: binding to an address of the size given.
        let rc = unsafe {
            libc::bind(
                raw,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    CaptureError::NoSuchInterface(iface.to_owned())
                }
                _ => CaptureError::Os {
                    iface: iface.to_owned(),
                    what: "cannot bind to the interface",
                    source: e,
                },
            });
        }
        if opts.promisc {
            // A membership, not the IFF_PROMISC flag: the kernel drops it when the socket closes, even if
            // we are killed.
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|_| os_error(iface, "cannot enter promiscuous mode"))?;
        }
        // Start the kernel's counters from zero (reading them resets them).
        ring_handle.kernel_stats();
        ring_handle.totals = KernelStats::default();
        Ok(ring_handle)
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn block_status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: the block lies inside the mapping; block_status is the first word of the block
        // header (after version and offset_to_priv), 4-byte aligned, and shared with the kernel.
        unsafe { &*(self.map.add(block * self.block_size + 8) as *const AtomicU32) }
    }

    /// Whether the next block is ours to read.
    pub fn ready(&self) -> bool {
        self.block_status(self.next_block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Pass each frame of the next block to `each` and give the block back to the kernel. Returns how
    /// many frames the kernel put in the block, or `None` while the block is still the kernel's.
    pub fn drain_block(&mut self, mut each: impl FnMut(&RingFrame)) -> Option<u32> {
        if !self.ready() {
            return None;
        }
        let block = self.next_block;
        // SAFETY: the block is ours until its status is set back to TP_STATUS_KERNEL; the kernel wrote
        // the frames inside it. Offsets are checked against the block size before any read.
        let base = unsafe { self.map.add(block * self.block_size) };
        let bytes = unsafe { std::slice::from_raw_parts(base, self.block_size) };
        let word = |at: usize| -> u32 {
            bytes
                .get(at..at + 4)
                .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()))
        };
        // tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1.
        let num_pkts = word(12);
        let mut at = word(16) as usize;
        let mut prefetched = at;
        for _ in 0..num_pkts {
            // tpacket3_hdr, then a sockaddr_ll at TPACKET_ALIGN(sizeof(tpacket3_hdr)) = 48; one bounds
            // check for all the fixed fields.
            let Some(h) = bytes
                .get(at..at + FRAME_HEAD)
                .and_then(|s| <&[u8; FRAME_HEAD]>::try_from(s).ok())
            else {
                break;
            };
            let w = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            let hw = |o: usize| u16::from_ne_bytes([h[o], h[o + 1]]);
            let next = w(0) as usize;
            prefetch_ahead(bytes, at, &mut prefetched);
            let (snaplen, status, mac) = (w(12) as usize, w(20), hw(24) as usize);
            let pkttype = h[48 + 10];
            let keep = !(self.skip_outgoing && pkttype == libc::PACKET_OUTGOING);
            if let (true, Some(data)) = (keep, bytes.get(at + mac..at + mac + snaplen)) {
                let (tci, tpid) = (w(32), hw(36));
                let tagged = status & libc::TP_STATUS_VLAN_VALID != 0 || tci != 0;
                let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                    tpid
                } else {
                    crate::packet::ethertype::VLAN
                };
                each(&RingFrame {
                    ts_ns: w(4) as u64 * 1_000_000_000 + w(8) as u64,
                    data,
                    wirelen: w(16),
                    direction: if pkttype == libc::PACKET_OUTGOING {
                        Direction::Out
                    } else {
                        Direction::In
                    },
                    stripped_tag: tagged.then_some((tpid, tci as u16)),
                    sockaddr: h[48..48 + 20].try_into().unwrap(),
                    hatype: self.hatype,
                    ifindex: self.ifindex,
                });
            }
            if next == 0 {
                break;
            }
            at += next;
        }
        self.block_status(block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next_block = (block + 1) % self.block_count;
        Some(num_pkts)
    }

    /// Wait until the next block is ours, `wake` is readable, or `timeout_ms` passes (-1: no limit).
    pub fn wait(&mut self, wake: RawFd, timeout_ms: i32) -> Waited {
        if self.ready() {
            return Waited::Woken;
        }
        let timeout_ms = match (self.interface_down, timeout_ms) {
            (false, t) => t,
            (true, -1) => DOWN_RECHECK_MS,
            (true, t) => t.min(DOWN_RECHECK_MS),
        };
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
        // The kernel sets ENETDOWN when the interface goes down, and before it is removed (af_packet.c,
        // `packet_notifier`). Left unread, the error keeps `poll` returning at once.
        if n > 0 && fds[0].revents & libc::POLLERR != 0 && self.take_error() == libc::ENETDOWN {
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

    /// The socket's pending error (0: none), read and so cleared.
    fn take_error(&self) -> libc::c_int {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `err`.
        unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
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

    /// The kernel's counters, folded into running totals (the kernel resets them on every read).
    pub fn kernel_stats(&mut self) -> KernelStats {
        let mut s = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `s`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut s as *mut libc::tpacket_stats_v3 as *mut libc::c_void,
                &mut len,
            )
        };
        if rc == 0 {
            self.totals.packets += s.tp_packets as u64;
            self.totals.drops += s.tp_drops as u64;
        }
        self.totals
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once; closing the socket (by OwnedFd) then drops the
        // promiscuous membership.
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.map_len) };
    }
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

/// Wakes a capture thread that waits in `PacketRing::wait`.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
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

    pub fn wake(&self) {
        // SAFETY: writing a counter increment to our eventfd; it stays readable until the thread ends.
        unsafe { libc::eventfd_write(self.fd.as_raw_fd(), 1) };
    }

    /// Consume the wake-ups so far, so that waiting blocks again.
    pub fn clear(&self) {
        let mut value: libc::eventfd_t = 0;
        // SAFETY: reading our non-blocking eventfd into a local.
        unsafe { libc::eventfd_read(self.fd.as_raw_fd(), &mut value) };
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
