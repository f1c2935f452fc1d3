//! Every bound and default a user can meet, written once. The command's grammar and help, the Python
//! API and the agent all read them from here (through `pcapdump._core`), so they cannot disagree.

/// The largest snap length, and the default (whole packets); also the largest record `read` accepts.
pub const MAX_SNAPLEN: u32 = 262_144;

/// The largest packet count (`-c`, `count=`): what every consumer of it can hold, Python's signed
/// 64-bit integers included.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// The capture buffer, in KB of 1024 bytes (`-size`, `buffer_kb`).
pub const MIN_BUFFER_KB: u64 = 16;
pub const MAX_BUFFER_KB: u64 = 4_194_304;
pub const DEFAULT_BUFFER_KB: u64 = 512;

/// A capture that stops by itself after a time (`-duration`, `duration`), in seconds: a year at most.
pub const MIN_DURATION_S: u64 = 1;
pub const MAX_DURATION_S: u64 = 31_536_000;

/// Packets kept after a trigger fires (`-after`, `after`).
pub const MAX_AFTER: u64 = 10_000_000;
pub const DEFAULT_AFTER: u64 = 100;

/// The kernel ring of one capture: blocks of this size…
pub const RING_BLOCK_SIZE: u32 = 1 << 20;
/// …this many of them: 8 MiB holds about 65,000 60-byte frames (about 128 bytes each in the ring), a
/// third of a second at 200,000 packets/s of slack while the capture thread is descheduled, and little
/// memory for an agent that captures on every interface.
pub const RING_BLOCKS: u32 = 8;
/// A block that is not full is handed over after this long, so live output keeps flowing.
pub const RING_BLOCK_TIMEOUT_MS: u32 = 20;
/// A wait for packets is cut in slices this long, so that a Ctrl-C, a stop or a reader that went away
/// is seen while nothing arrives.
pub const WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(100);
/// `stream` hands its reader at most about this many bytes per write.
pub const STREAM_BATCH: usize = 256 * 1024;
/// Once the capture has stopped, `stream` waits at most this long for a reader that takes nothing.
pub const STREAM_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// The capture buffer of `stream` (KB): the slack for a reader that falls behind.
pub const DEFAULT_STREAM_BUFFER_KB: u64 = 16_384;

/// Interfaces started together share this many ring blocks (ring memory cannot be swapped: `start` on
/// a box with dozens of interfaces would otherwise pin hundreds of MiB)…
pub const SHARED_RING_BLOCKS: u32 = 64;
/// …but each gets at least this many.
pub const MIN_RING_BLOCKS: u32 = 2;

/// Ring blocks for each of `interfaces` captures started together.
pub fn ring_blocks_each(interfaces: u32) -> u32 {
    (SHARED_RING_BLOCKS / interfaces.max(1)).clamp(MIN_RING_BLOCKS, RING_BLOCKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_blocks_are_shared_down_to_a_floor() {
        assert_eq!(ring_blocks_each(0), RING_BLOCKS);
        assert_eq!(ring_blocks_each(1), RING_BLOCKS);
        assert_eq!(ring_blocks_each(8), RING_BLOCKS);
        assert_eq!(ring_blocks_each(16), 4);
        assert_eq!(ring_blocks_each(50), MIN_RING_BLOCKS);
    }

    #[test]
    fn the_default_buffer_is_within_its_bounds() {
        assert!((MIN_BUFFER_KB..=MAX_BUFFER_KB).contains(&DEFAULT_BUFFER_KB));
    }
}
