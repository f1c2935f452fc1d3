//! Systems without AF_PACKET: every capture fails to open, with a message that says so.

use std::io;
/// A descriptor number, as on Unix (never a real one here).
type RawFd = i32;

use super::{CaptureError, RingConfig};
use crate::bpf::Insn;
use crate::packet::{Direction, LinkType};

pub struct RingFrame<'a> {
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub wirelen: u32,
    pub direction: Direction,
    pub stripped_tag: Option<(u16, u16)>,
    pub protocol: u16,
    pub pkttype: u8,
    pub hatype: u16,
    pub ifindex: u32,
    pub addr: [u8; 8],
    pub addr_len: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub packets: u64,
    pub drops: u64,
}

// The same shape as on Linux, so that sessions compile unchanged; nothing reads it here.
#[allow(dead_code)]
pub struct Options<'a> {
    pub iface: &'a str,
    pub program: Option<&'a [Insn]>,
    pub promisc: bool,
    pub ring: RingConfig,
}

pub enum PacketRing {}

impl PacketRing {
    pub fn open(_: &Options) -> Result<PacketRing, CaptureError> {
        Err(CaptureError::Unsupported(std::env::consts::OS))
    }
    pub fn link(&self) -> LinkType {
        match *self {}
    }
    pub fn ready(&self) -> bool {
        match *self {}
    }
    pub fn drain_block(&mut self, _: impl FnMut(&RingFrame)) -> Option<u32> {
        match *self {}
    }
    pub fn wait(&self, _: RawFd, _: i32) {
        match *self {}
    }
    pub fn kernel_stats(&mut self) -> KernelStats {
        match *self {}
    }
}

pub struct Waker;

impl Waker {
    pub fn new() -> io::Result<Waker> {
        Ok(Waker)
    }
    pub fn wake(&self) {}
    pub fn clear(&self) {}
    pub fn fd(&self) -> RawFd {
        -1
    }
}
