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

    /// Whether packets are still to be tested: neither this capture nor another of its group fired.
    pub fn armed(&self) -> bool {
        self.left.is_none() && !self.trigger.group.fired()
    }

    /// Whether `frame`, as stored (a stripped tag put back, as `show` and `read` judge it), matches the
    /// trigger's words.
    #[inline(always)]
    pub fn trips(&self, frame: &[u8], link: LinkType) -> bool {
        // Nearly all of a trigger's tests fail, and most the same way as the one before.
        self.trigger.words.matches_returning_early(frame, link)
    }

    /// The packet just kept matches the words: fire, unless another capture of the group did first.
    /// Returns whether the capture keeps packets after this one; `hit` is called only when it fires.
    pub fn fire(&mut self, hit: impl FnOnce() -> TriggerHit) -> bool {
        if !self.trigger.group.fire(hit()) {
            return true;
        }
        self.left = Some(self.trigger.after);
        if self.trigger.after == 0 {
            self.trigger.group.finish();
            return false;
        }
        true
    }

    /// A packet kept once the group fired: counts this capture's post-roll, if it fired. Returns
    /// whether the capture keeps packets after this one.
    #[inline(always)]
    pub fn counted(&mut self) -> bool {
        let Some(left) = self.left.as_mut() else {
            return true;
        };
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.trigger.group.finish();
            return false;
        }
        true
    }

    /// This capture keeps no more packets (it stopped, or its linear buffer is full): if it fired, its
    /// post-roll ends here and the group is done, so that the others do not wait for packets it will
    /// never keep. Returns whether it did end a post-roll.
    pub fn ended(&mut self) -> bool {
        match self.left {
            Some(left) if left > 0 => {
                self.left = Some(0);
                self.trigger.group.finish();
                true
            }
            _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(group: &Arc<TriggerGroup>, after: u64) -> TriggerState {
        TriggerState::new(Trigger {
            words: Filter::parse_str("udp").unwrap(),
            after,
            group: group.clone(),
        })
    }

    fn hit(iface: &str) -> TriggerHit {
        TriggerHit {
            iface: iface.into(),
            stored: None,
            ts_ns: 1,
            wirelen: 60,
            direction: Direction::In,
            link: LinkType::Ethernet,
            data: vec![0; 60],
        }
    }

    #[test]
    fn the_capture_that_fired_keeps_exactly_after_more_then_the_group_is_done() {
        let group = TriggerGroup::new();
        let (mut int, mut ext) = (state(&group, 2), state(&group, 2));
        assert!(int.armed() && ext.armed());
        assert!(int.fire(|| hit("int")));
        // The other capture found a match too, later: the first one stands, and it keeps capturing.
        assert!(ext.fire(|| hit("ext")));
        assert_eq!(group.hit().unwrap().iface.as_ref(), "int");
        assert!(!int.armed() && !ext.armed());
        assert!(ext.counted() && ext.counted() && ext.wants_more());
        assert!(int.counted());
        assert!(!group.is_done());
        assert!(
            !int.counted(),
            "the second packet after the trigger is the last"
        );
        assert!(group.is_done() && !int.wants_more() && !ext.wants_more());
        assert!(!int.ended() && !ext.ended());
    }

    #[test]
    fn a_capture_that_fired_and_keeps_no_more_ends_the_group() {
        let group = TriggerGroup::new();
        let (mut int, mut ext) = (state(&group, 5), state(&group, 5));
        assert!(!ext.ended(), "it did not fire: nothing to end");
        assert!(int.fire(|| hit("int")) && int.counted());
        assert!(!group.is_done());
        assert!(int.ended());
        assert!(group.is_done() && !int.wants_more() && !ext.wants_more());
    }

    #[test]
    fn after_zero_ends_on_the_trigger_packet() {
        let group = TriggerGroup::new();
        let mut only = state(&group, 0);
        assert!(!only.fire(|| hit("int")));
        assert!(group.is_done() && !only.wants_more());
    }
}
