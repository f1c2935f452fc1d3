//! Triggers: filter words tested in the capture thread on each packet a capture keeps. The first match
//! of any capture of a group (the captures of one `start`) fires it: that capture keeps `after` more
//! packets, then every capture of the group stops, as `stopped (triggered)`. With a ring buffer this is
//! a flight recorder that freezes itself just after the fault.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::backend::RingWaker;
use super::Waker;
use crate::filter::Filter;
use crate::packet::{Direction, LinkType};

/// What a capture is to watch for.
#[derive(Clone)]
pub struct Trigger {
    pub words: Filter,
    /// Packets of the firing interface kept after the trigger packet.
    pub after: u64,
    pub group: Arc<TriggerGroup>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trigger({}, after {})", self.words, self.after)
    }
}

/// Where a stored packet went: its sequence number in the capture buffer, and its ordinal among the
/// packets its interface stored (from 1), from which its place among those held follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredAt {
    pub seq: u64,
    pub ordinal: u64,
}

/// The packet a trigger fired on, copied out when it fired (the buffer may overwrite it later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerHit {
    pub iface: Arc<str>,
    /// `None`: a capture that stores nothing.
    pub stored: Option<StoredAt>,
    pub ts_ns: u64,
    pub wirelen: u32,
    pub direction: Direction,
    pub link: LinkType,
    pub data: Vec<u8>,
}

/// The captures one trigger stops together.
#[derive(Default)]
pub struct TriggerGroup {
    hit: Mutex<Option<TriggerHit>>,
    fired: AtomicBool,
    done: AtomicBool,
    wakers: Mutex<Vec<Arc<Waker>>>,
}

impl TriggerGroup {
    pub fn new() -> Arc<TriggerGroup> {
        Arc::new(TriggerGroup::default())
    }

    /// A capture thread of the group, to wake when the group is done.
    pub(crate) fn join(&self, waker: Arc<Waker>) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
    }

    /// Whether some capture of the group has fired already (cheap: asked for every packet).
    #[inline]
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }

    /// Fire on `hit`, unless another capture of the group did first; returns whether this one did.
    pub(crate) fn fire(&self, hit: TriggerHit) -> bool {
        let mut slot = self.hit.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(hit);
        self.fired.store(true, Ordering::Release);
        true
    }

    /// The post-roll is complete: every capture of the group stops.
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Release);
        for waker in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            waker.wake();
        }
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The packet the trigger fired on, once it has.
    pub fn hit(&self) -> Option<TriggerHit> {
        self.hit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One capture thread's side of its trigger: tests packets until the group fires, then counts the
/// post-roll if it was this capture that fired.
pub(crate) struct TriggerState {
    trigger: Trigger,
    /// Packets still to keep after the trigger packet, once this capture fired.
    left: Option<u64>,
}

impl TriggerState {
    pub fn new(trigger: Trigger) -> TriggerState {
        TriggerState {
            trigger,
            left: None,
        }
    }

    /// A packet this capture kept, `frame` as stored, and what to copy if it fires. Called for every kept
    /// packet; costs one flag load once the group has fired elsewhere.
    #[inline]
    pub fn kept(&mut self, frame: &[u8], link: LinkType, hit: impl FnOnce() -> TriggerHit) {
        if let Some(left) = self.left.as_mut() {
            if *left > 0 {
                *left -= 1;
                if *left == 0 {
                    self.trigger.group.finish();
                }
            }
            return;
        }
        if self.trigger.group.fired() {
            return;
        }
        // The frame as stored (a stripped tag put back): as `show` and `read` judge it.
        let matched = self.trigger.words.matches(frame, link);
        if matched && self.trigger.group.fire(hit()) {
            self.left = Some(self.trigger.after);
            if self.trigger.after == 0 {
                self.trigger.group.finish();
            }
        }
    }

    pub fn group(&self) -> &Arc<TriggerGroup> {
        &self.trigger.group
    }

    /// Whether this capture still keeps packets: not once its post-roll is complete, nor once another
    /// capture of the group completed its own (the recording is frozen where the trigger left it).
    #[inline]
    pub fn wants_more(&self) -> bool {
        match self.left {
            Some(left) => left > 0,
            None => !self.trigger.group.is_done(),
        }
    }
}
