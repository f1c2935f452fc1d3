//! Telling an event loop that a capture has stored packets or stopped, so that it can wait for a
//! capture's packets without a thread of its own: each watcher gets an event descriptor (asyncio's
//! `loop.add_reader`). The capture thread only signals it; it never waits for a watcher.

use std::sync::{Arc, Mutex, Weak};

use super::backend::RingWaker;
use super::Waker;

/// A descriptor that becomes readable when the capture it watches stores packets or stops. Its
/// watcher clears it, then takes what is stored, then waits for it: a packet stored after the take
/// makes it readable again, so none is missed.
pub struct Readiness {
    signal: Waker,
}

impl Readiness {
    /// Consume the signals so far, so that the descriptor is no longer readable.
    pub fn clear(&self) {
        self.signal.clear();
    }
}

#[cfg(target_os = "linux")]
impl std::os::fd::AsRawFd for Readiness {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.signal.fd()
    }
}

/// The watchers of one capture. Watchers are held weakly: one its owner dropped leaves the list at
/// the next signal.
#[derive(Default)]
pub(crate) struct Watchers {
    list: Mutex<Vec<Weak<Readiness>>>,
}

impl Watchers {
    /// A new watcher, signalled from now on.
    pub(crate) fn add(&self) -> std::io::Result<Arc<Readiness>> {
        let ready = Arc::new(Readiness {
            signal: Waker::new()?,
        });
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&ready));
        Ok(ready)
    }

    /// Make every watcher's descriptor readable.
    pub(crate) fn signal(&self) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| match w.upgrade() {
            Some(ready) => {
                ready.signal.wake();
                true
            }
            None => false,
        });
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn readable(ready: &Readiness) -> bool {
        let mut fd = libc::pollfd {
            fd: ready.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of ours, no waiting.
        unsafe { libc::poll(&mut fd, 1, 0) == 1 }
    }

    #[test]
    fn a_signal_makes_every_watcher_readable_until_it_clears() {
        let watchers = Watchers::default();
        let (one, two) = (watchers.add().unwrap(), watchers.add().unwrap());
        assert!(!readable(&one) && !readable(&two));
        watchers.signal();
        watchers.signal();
        assert!(readable(&one) && readable(&two));
        one.clear();
        assert!(!readable(&one) && readable(&two));
    }

    #[test]
    fn a_dropped_watcher_leaves_the_list() {
        let watchers = Watchers::default();
        let kept = watchers.add().unwrap();
        drop(watchers.add().unwrap());
        watchers.signal();
        assert_eq!(watchers.list.lock().unwrap().len(), 1);
        assert!(readable(&kept));
    }
}
