//! Live capture: AF_PACKET rings (Linux), the capture buffer, and capture sessions that join the two.

pub mod buffer;
pub(crate) mod link;
mod ready;
mod session;
mod show;
mod stored;
#[cfg(unix)]
mod stream;
pub mod trigger;

mod backend;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod unsupported;

use std::io;

use crate::filter::Filter;
use crate::limits;
use crate::packet::Direction;

pub use buffer::{
    BufferIface, BufferMode, CaptureBuffer, IfaceCounts, IfaceId, SharedBuffer, StoredPacket,
    Written,
};
pub use link::link_of;
pub use ready::Readiness;
pub use session::{
    Capture, CaptureConfig, CaptureStats, LiveQueue, OwnedPacket, Received, State, StopReason,
};
pub use show::{show_merged_lines, LiveLine, LiveLines};
#[cfg(unix)]
pub use stream::{StreamEnd, Streamed};

use backend::RingBackend;
/// This system's ring: AF_PACKET on Linux; elsewhere one whose `open` says live capture is unsupported.
#[cfg(target_os = "linux")]
use linux::PacketRing;
#[cfg(not(target_os = "linux"))]
use unsupported::PacketRing;
/// Wakes a thread that waits on a `PacketRing`.
type Waker = <PacketRing as RingBackend>::Waker;

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
    fn default() -> Self {
        RingConfig {
            block_size: limits::RING_BLOCK_SIZE,
            block_count: limits::RING_BLOCKS,
            block_timeout_ms: limits::RING_BLOCK_TIMEOUT_MS,
        }
    }
}

impl RingConfig {
    /// The default ring, with whichever settings are given instead: block size in KB, block count,
    /// block timeout in ms. `check` still decides whether the result is valid.
    pub fn with(block_kb: Option<u32>, blocks: Option<u32>, timeout_ms: Option<u32>) -> RingConfig {
        let default = RingConfig::default();
        RingConfig {
            block_size: block_kb.map_or(default.block_size, |kb| kb.saturating_mul(1024)),
            block_count: blocks.unwrap_or(default.block_count),
            block_timeout_ms: timeout_ms.unwrap_or(default.block_timeout_ms),
        }
    }

    pub fn check(&self) -> Result<(), CaptureError> {
        let bad = |what: &str| Err(CaptureError::Ring(what.to_owned()));
        if self.block_size < 65536
            || !self.block_size.is_multiple_of(4096)
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
    #[error("'{0}': no packets were captured on it")]
    NothingCaptured(String),
    #[error("'{iface}': the buffer holds {held} packets of it with link type {was}, and it now has link type {now}; `pcapdump write` them, then `pcapdump wipe`")]
    LinkChanged {
        iface: String,
        held: u64,
        was: u32,
        now: u32,
    },
    #[error("cannot allocate a capture buffer of {kb} KB: {source}")]
    Buffer { kb: u64, source: io::Error },
    #[error("cannot list the interfaces: {0}")]
    ListInterfaces(io::Error),
    #[error("'{iface}': {what}: {source}")]
    Os {
        iface: String,
        what: &'static str,
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_config_check() {
        const KIB: u32 = 1024;
        const MIB: u32 = 1 << 20;
        // block size, block count, block timeout (ms): None if valid, else how the message starts.
        let table: &[(u32, u32, u32, Option<&str>)] = &[
            (MIB, 8, 20, None),
            (64 * KIB, 1, 1, None),
            (64 * KIB, 1, 60_000, None),
            (1 << 31, 2, 20, None),
            (MIB, 4096, 20, None),
            (0, 8, 20, Some("block size")),
            (32 * KIB, 8, 20, Some("block size")),
            (64 * KIB + 4096, 8, 20, Some("block size")),
            (3 * MIB, 8, 20, Some("block size")),
            (u32::MAX, 1, 20, Some("block size")),
            (MIB, 0, 20, Some("block count")),
            (MIB, 4097, 20, Some("block count")),
            (1 << 31, 3, 20, Some("block count")),
            (64 * KIB, u32::MAX, 20, Some("block count")),
            (MIB, 8, 0, Some("block timeout")),
            (MIB, 8, 60_001, Some("block timeout")),
            (MIB, 8, u32::MAX, Some("block timeout")),
        ];
        for &(block_size, block_count, block_timeout_ms, want) in table {
            let ring = RingConfig {
                block_size,
                block_count,
                block_timeout_ms,
            };
            match (ring.check(), want) {
                (Ok(()), None) => {}
                (Err(CaptureError::Ring(msg)), Some(start)) if msg.starts_with(start) => {}
                (got, _) => panic!("{ring:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(RingConfig::default().check().is_ok());
    }
}
