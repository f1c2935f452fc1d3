//! Systems without AF_PACKET: every capture fails to open, with a message that says so.

use std::io;

use super::backend::{RingBackend, RingWaker};
use super::{CaptureError, KernelStats, Options, RingFrame, Waited};
use crate::bpf::Insn;
use crate::packet::LinkType;

/// No value of it exists: `open` always fails.
pub enum PacketRing {}

impl RingBackend for PacketRing {
    type Waker = Waker;

    fn open(_: &Options) -> Result<PacketRing, CaptureError> {
        Err(CaptureError::Unsupported(std::env::consts::OS))
    }

    fn link(&self) -> LinkType {
        match *self {}
    }

    fn program(&self) -> Option<&[Insn]> {
        match *self {}
    }

    fn ready(&self) -> bool {
        match *self {}
    }

    fn drain_block(&mut self, _: impl FnMut(&RingFrame)) -> Option<u32> {
        match *self {}
    }

    fn wait(&mut self, _: &Waker, _: i32) -> Waited {
        match *self {}
    }

    fn kernel_stats(&mut self) -> KernelStats {
        match *self {}
    }
}

pub struct Waker;

impl RingWaker for Waker {
    fn new() -> io::Result<Waker> {
        Ok(Waker)
    }

    fn wake(&self) {}

    fn clear(&self) {}
}
