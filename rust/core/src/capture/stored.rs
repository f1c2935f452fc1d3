//! Reading one capture's packets back out of the (possibly shared) capture buffer while it runs, in
//! order, each once: what iterating over `pcapdump.capture()` does.

use std::time::Duration;

use super::buffer::{Cursor, StoredPacket};
use super::session::{Capture, State};

impl Capture {
    /// A place at the buffer's end: reading starts at this capture's next packet, not at what a shared
    /// buffer already held.
    pub fn cursor_from_now(&self) -> Cursor {
        self.buffer().lock().cursor_at_end()
    }

    /// The next packet of this capture after `cursor`, handed to `take` while the buffer is locked (so
    /// `take` should only copy). Packets a ring buffer overwrote before they were read are counted as
    /// this capture's `live_dropped`.
    pub fn next_stored<T>(
        &self,
        cursor: &mut Cursor,
        take: impl FnOnce(&StoredPacket) -> T,
    ) -> Option<T> {
        let b = self.buffer().lock();
        let mut missed = 0;
        let mut found = None;
        while let Some(p) = b.next(cursor, &mut missed) {
            if p.iface == self.iface() {
                found = Some(take(&p));
                break;
            }
        }
        drop(b);
        if missed > 0 {
            self.add_live_dropped(missed);
        }
        found
    }

    /// Wait up to `timeout` for a packet after `cursor` (of any capture of the buffer), or for this
    /// capture to stop: several threads may wait at once, and one may stop the capture meanwhile.
    /// Whether a wait for packets past `cursor` would end at once: some are stored, or the capture no
    /// longer runs.
    pub fn has_news(&self, cursor: &Cursor) -> bool {
        let buffer = self.buffer();
        let b = buffer.lock();
        b.next_seq() > cursor.seq() || self.state() != State::Running
    }

    pub fn wait_stored(&self, cursor: &Cursor, timeout: Duration) {
        let buffer = self.buffer();
        let b = buffer.lock();
        // Read under the buffer's lock, which the capture thread takes once it has stopped and before
        // it notifies: either it is seen stopped here, or its notice comes while this waits.
        if b.next_seq() <= cursor.seq() && self.state() == State::Running {
            drop(buffer.wait(b, timeout));
        }
    }
}
