//! Systems without AF_PACKET: every capture fails to open, with a message that says so.

use std::io;
/// A descriptor number, as on Unix (never a real one here).
type RawFd = i32;

use super::{CaptureError, KernelStats, Options, RingFrame, Waited};
use crate::packet::LinkType;

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
    pub fn wait(&mut self, _: RawFd, _: i32) -> Waited {
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
