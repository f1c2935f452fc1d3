//! Capture files are read through a memory map. If another process truncates the file meanwhile,
//! touching a page past the new end raises SIGBUS, whose default action kills the process (and a Python
//! interpreter with it). While a map is registered here, a SIGBUS inside it maps zero pages over the rest
//! of the map instead and marks it cut: the reader sees zeros, finds the mark before it trusts a record,
//! and reports the cut file as an error (docs/commands.md#files-read).
//!
//! A SIGBUS outside every registered map goes to the handler that was there before ours, or kills the
//! process as it would have.

#[cfg(target_os = "linux")]
pub use sigbus::MapGuard;

#[cfg(not(target_os = "linux"))]
pub use unguarded::MapGuard;

#[cfg(target_os = "linux")]
mod sigbus {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Maps guarded at the same time, at most (one per open file being read); files opened beyond them
    /// are read as streams instead (`CaptureFile::open`).
    const SLOTS: usize = 64;

    struct Slot {
        /// `start == 0`: free.
        start: AtomicUsize,
        end: AtomicUsize,
        cut: AtomicBool,
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const FREE: Slot = Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        cut: AtomicBool::new(false),
    };
    static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

    /// The handler that was installed before ours, called for faults outside our maps.
    static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);
    /// A copy the signal handler can read without a lock: set once, before our handler is installed.
    static PREVIOUS_RAW: AtomicUsize = AtomicUsize::new(0);
    static PREVIOUS_FLAGS: AtomicUsize = AtomicUsize::new(0);

    /// A registered map; dropping it unregisters the map (before it is unmapped).
    pub struct MapGuard {
        slot: Option<usize>,
    }

    impl MapGuard {
        /// Guard the `len` bytes mapped at `start`.
        pub fn register(start: *const u8, len: usize) -> MapGuard {
            install();
            let (start, end) = (start as usize, start as usize + len);
            for (i, slot) in TABLE.iter().enumerate() {
                if slot
                    .start
                    .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.cut.store(false, Ordering::Relaxed);
                    slot.end.store(end, Ordering::Relaxed);
                    slot.start.store(start, Ordering::Release);
                    return MapGuard { slot: Some(i) };
                }
            }
            MapGuard { slot: None }
        }

        /// Whether the map is guarded (false: every slot was in use).
        pub fn is_registered(&self) -> bool {
            self.slot.is_some()
        }

        /// Whether the file was cut under the map: pages past its new end now read as zeros.
        #[inline]
        pub fn was_cut(&self) -> bool {
            self.slot
                .is_some_and(|i| TABLE[i].cut.load(Ordering::Relaxed))
        }
    }

    impl Drop for MapGuard {
        fn drop(&mut self) {
            if let Some(i) = self.slot {
                TABLE[i].start.store(0, Ordering::Release);
            }
        }
    }

    /// Put our handler in place, keeping the one it replaces to pass foreign faults on to. Done again if
    /// someone installed another handler since (Python's faulthandler, for one).
    fn install() {
        let mut previous = PREVIOUS.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: reading the current action into a zeroed sigaction.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) };
        if current.sa_sigaction == on_sigbus as *const () as usize {
            return;
        }
        PREVIOUS_RAW.store(current.sa_sigaction, Ordering::Release);
        PREVIOUS_FLAGS.store(current.sa_flags as usize, Ordering::Release);
        *previous = Some(current);
        // SAFETY: an action with our handler, SA_SIGINFO for the fault address, nothing blocked extra.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_sigbus as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        unsafe {
            libc::sigemptyset(&mut ours.sa_mask);
            libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut());
        }
    }

    /// Only async-signal-safe work here: atomics, mmap, sigaction.
    extern "C" fn on_sigbus(
        sig: libc::c_int,
        info: *mut libc::siginfo_t,
        context: *mut libc::c_void,
    ) {
        // SAFETY: the kernel passes a valid siginfo for a handler installed with SA_SIGINFO.
        let addr = unsafe { (*info).si_addr() } as usize;
        for slot in TABLE.iter() {
            let start = slot.start.load(Ordering::Acquire);
            let end = slot.end.load(Ordering::Relaxed);
            if start != 0 && start != usize::MAX && (start..end).contains(&addr) {
                let page = page_size();
                let from = addr & !(page - 1);
                // SAFETY: the range lies inside a read-only map of ours; zero pages replace the part of it
                // that the file no longer backs, so the faulting read succeeds when it is retried.
                let mapped = unsafe {
                    libc::mmap(
                        from as *mut libc::c_void,
                        end - from,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if mapped != libc::MAP_FAILED {
                    slot.cut.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        pass_on(sig, info, context);
    }

    /// A fault that is not ours: to the handler before ours, else the default action (the fault repeats
    /// when the handler returns, and then kills the process as it would have without us).
    fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        let previous = PREVIOUS_RAW.load(Ordering::Acquire);
        let flags = PREVIOUS_FLAGS.load(Ordering::Acquire) as libc::c_int;
        if previous == libc::SIG_DFL || previous == libc::SIG_IGN {
            // SAFETY: resetting SIGBUS to its default action.
            unsafe {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
            }
        } else if flags & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO, so it takes these arguments.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(previous) };
            handler(sig, info, context);
        } else {
            // SAFETY: a plain handler takes the signal number only.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
            handler(sig);
        }
    }

    fn page_size() -> usize {
        // SAFETY: sysconf is async-signal-safe.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::io::Write;

        #[test]
        fn a_file_cut_under_its_map_reads_as_zeros_and_is_marked() {
            let path = std::env::temp_dir().join(format!("pcapdump-guard-{}", std::process::id()));
            let page = page_size();
            std::fs::File::create(&path)
                .unwrap()
                .write_all(&vec![7u8; 4 * page])
                .unwrap();
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: a read-only map of a file this test owns.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let guard = MapGuard::register(map.as_ptr(), map.len());
            assert!(!guard.was_cut());
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(page as u64)
                .unwrap();
            assert_eq!(map[0], 7);
            // Without the guard this read kills the test process with SIGBUS.
            assert_eq!(std::hint::black_box(&map[3 * page]), &0);
            assert!(guard.was_cut());
            drop(guard);
            drop(map);
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// Elsewhere a cut file still raises SIGBUS: live capture, the main use, is Linux-only.
#[cfg(not(target_os = "linux"))]
mod unguarded {
    pub struct MapGuard;

    impl MapGuard {
        pub fn register(_start: *const u8, _len: usize) -> MapGuard {
            MapGuard
        }

        pub fn is_registered(&self) -> bool {
            true
        }

        pub fn was_cut(&self) -> bool {
            false
        }
    }
}
