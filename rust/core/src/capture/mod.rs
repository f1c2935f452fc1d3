//! Live capture: AF_PACKET rings (Linux), the capture buffer, and capture sessions that join the two.

pub mod buffer;
mod session;
mod show;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod linux;

use std::io;

use crate::filter::Filter;
use crate::packet::Direction;

pub use buffer::{
    BufferMode, CaptureBuffer, IfaceCounts, IfaceId, SharedBuffer, StoredPacket, Written,
};
pub use session::{
    Capture, CaptureConfig, CaptureStats, LiveQueue, OwnedPacket, Received, State, StopReason,
};
pub use show::show_lines;

/// The kernel ring of one capture. Blocks are handed to us whole: when full, or after the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size, at least 64 KiB (a block holds whole packets).
    pub block_size: u32,
    pub block_count: u32,
    /// A block that is not full is handed over after this long, so live output keeps flowing.
    pub block_timeout_ms: u32,
}

impl Default for RingConfig {
    /// 8 MiB: at 60-byte frames (about 128 bytes each in the ring) that is 65,000 packets, a third of a
    /// second at 200,000 packets/s, of slack while the capture thread is descheduled; and little memory
    /// for an agent that captures on every interface.
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 20,
            block_count: 8,
            block_timeout_ms: 20,
        }
    }
}

impl RingConfig {
    pub fn check(&self) -> Result<(), CaptureError> {
        let bad = |what: &str| Err(CaptureError::Ring(what.to_owned()));
        if self.block_size < 65536
            || self.block_size % 4096 != 0
            || !self.block_size.is_power_of_two()
        {
            return bad("block size must be a power of two of at least 64 KiB");
        }
        if self.block_count == 0 || (self.block_size as u64 * self.block_count as u64) > (1 << 32) {
            return bad("block count must be at least 1, and the ring at most 4 GiB");
        }
        if self.block_timeout_ms == 0 || self.block_timeout_ms > 60_000 {
            return bad("block timeout must be 1 … 60000 ms");
        }
        Ok(())
    }
}

/// How a wait for the ring ended.
// Only the Linux backend makes these; elsewhere the type exists so that sessions compile unchanged.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// A block is ready, the waker fired, the time passed, or the interface went down (the kernel
    /// attaches the socket again when it comes back up).
    Woken,
    /// The interface was removed: nothing will ever arrive again.
    InterfaceGone,
}

/// One packet as the kernel put it in the ring.
// Only the Linux backend makes these; elsewhere the types exist so that sessions compile unchanged.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct RingFrame<'a> {
    pub ts_ns: u64,
    /// From the link-layer header on, at most the snap length.
    pub data: &'a [u8],
    pub wirelen: u32,
    pub direction: Direction,
    /// An 802.1Q tag the kernel (or the NIC) took out of the frame: (TPID, TCI).
    pub stripped_tag: Option<(u16, u16)>,
    /// For the Linux cooked v2 header of non-Ethernet interfaces: the sockaddr_ll the kernel wrote
    /// (protocol, packet type, link address), read only when such a header is made.
    pub sockaddr: &'a [u8; 20],
    pub hatype: u16,
    pub ifindex: u32,
}

/// What the kernel counted since the socket was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter (stored in the ring or dropped).
    pub packets: u64,
    /// Packets the filter passed but the ring had no room for.
    pub drops: u64,
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Options<'a> {
    pub iface: &'a str,
    /// Compiled once the interface's link header is known.
    pub filter: Option<&'a Filter>,
    pub snaplen: u32,
    pub promisc: bool,
    pub ring: RingConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no such interface '{0}'")]
    NoSuchInterface(String),
    #[error("capturing on '{0}' needs root or the CAP_NET_RAW capability: run as root, or grant it (e.g. `setcap cap_net_raw+ep <program>`, or AmbientCapabilities=CAP_NET_RAW in a systemd unit)")]
    NoPrivilege(String),
    #[error("live capture is not supported on {0}; read, Filter and files work")]
    Unsupported(&'static str),
    #[error("'{iface}' has a link header of hardware type {hatype}, which filters do not understand (they do Ethernet, loopback and interfaces without a link header: tun, WireGuard, PPP, IP tunnels); capture without a filter")]
    FilterNeedsKnownLink { iface: String, hatype: u16 },
    #[error("the filter does not fit in a kernel program: {0}")]
    Program(#[from] crate::bpf::asm::AsmError),
    #[error("invalid ring: {0}")]
    Ring(String),
    #[error("'{iface}': {what}: {source}")]
    Os {
        iface: String,
        what: &'static str,
        source: io::Error,
    },
}
