//! What a capture session needs of the system: a ring the kernel fills with packets, and a way to wake
//! the thread that waits on it. Linux implements it with AF_PACKET (`linux.rs`); other systems with a
//! backend that refuses to open (`unsupported.rs`). Sessions name the implementation through a type
//! alias, so every call, including the per-frame callback of `drain_block`, is statically dispatched and
//! inlined.

use std::io;

use super::{CaptureError, KernelStats, Options, RingFrame, Waited};
use crate::bpf::Insn;
use crate::packet::LinkType;

/// A packet socket bound to one interface, and the ring it fills.
pub(crate) trait RingBackend: Sized + Send {
    /// Ends a `wait` early from another thread.
    type Waker: RingWaker;

    /// Open the interface: errors (no such interface, no privilege, a filter the kernel refuses) come
    /// back here, and no packet reaches the ring unfiltered.
    fn open(opts: &Options) -> Result<Self, CaptureError>;

    /// The link type of the frames `drain_block` hands over.
    fn link(&self) -> LinkType;

    /// The filter program attached to the socket, if any.
    fn program(&self) -> Option<&[Insn]>;

    /// Whether the next block is ours to read.
    fn ready(&self) -> bool;

    /// Pass each frame of the next block to `each` and give the block back to the kernel. Returns how
    /// many frames the kernel put in the block, or `None` while the block is still the kernel's.
    fn drain_block(&mut self, each: impl FnMut(&RingFrame)) -> Option<u32>;

    /// Wait until the next block is ours, `waker` fires, or `timeout_ms` passes (-1: no limit).
    fn wait(&mut self, waker: &Self::Waker, timeout_ms: i32) -> Waited;

    /// What the kernel counted since `open`.
    fn kernel_stats(&mut self) -> KernelStats;
}

/// Wakes a capture thread that waits in [`RingBackend::wait`]; shared between that thread and others.
pub(crate) trait RingWaker: Sized + Send + Sync {
    fn new() -> io::Result<Self>;

    fn wake(&self);

    /// Consume the wake-ups so far, so that waiting blocks again.
    fn clear(&self);
}
