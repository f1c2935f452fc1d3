//! Leaving the interpreter for long work, and coming back. A thread still inside pcapdump when the
//! interpreter is being finalized (a daemon thread reading a table, waiting for packets) must not come
//! back: CPython before 3.14 ends such a thread with `pthread_exit` when it asks for the GIL again, which
//! unwinds through our frames and crashes the process. Where it would come back, a thread asks whether
//! the interpreter is finalizing and, if so, parks instead, and ends with the process. Until then it
//! comes back as usual (the agent's threads still send their replies while the interpreter exits). The
//! thread that runs the exit, known from `pcapdump`'s `atexit` hook, is never parked.

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::{self, ThreadId};

use pyo3::prelude::*;

static EXITING: AtomicBool = AtomicBool::new(false);
static EXIT_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Called by `pcapdump`'s `atexit` hook, in the thread that runs the interpreter's exit.
#[pyfunction]
pub fn mark_exiting() {
    let _ = EXIT_THREAD.set(thread::current().id());
    EXITING.store(true, Ordering::Release);
}

type IsFinalizing = unsafe extern "C" fn() -> c_int;

/// The interpreter's own "is it finalizing" (`Py_IsFinalizing` from 3.13, `_Py_IsFinalizing` before),
/// found at run time: the stable ABI this module is built for has neither.
#[cfg(unix)]
fn is_finalizing_fn() -> Option<IsFinalizing> {
    static FOUND: OnceLock<Option<IsFinalizing>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        const NAMES: [&CStr; 2] = [c"Py_IsFinalizing", c"_Py_IsFinalizing"];
        NAMES.iter().find_map(|name| {
            // SAFETY: looking a symbol up by a NUL-terminated name has no other effect.
            let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            // SAFETY: both functions take nothing and return an int, and read an atomic of the runtime,
            // which needs no GIL.
            (!found.is_null())
                .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, IsFinalizing>(found) })
        })
    })
}

#[cfg(not(unix))]
fn is_finalizing_fn() -> Option<IsFinalizing> {
    None
}

/// Whether coming back now would meet an interpreter being finalized: asked of the interpreter when it
/// says; otherwise, from the moment the exit began (the `atexit` mark).
fn finalizing() -> bool {
    match is_finalizing_fn() {
        // SAFETY: see `is_finalizing_fn`.
        Some(is_finalizing) => unsafe { is_finalizing() != 0 },
        None => EXITING.load(Ordering::Acquire),
    }
}

/// Whether this thread is the process's main thread, the only one Python runs signal handlers in:
/// another gains nothing by coming back to look at Ctrl-C.
pub fn gets_signals() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: neither call has preconditions.
    return unsafe { libc::gettid() == libc::getpid() };
    #[cfg(not(target_os = "linux"))]
    true
}

/// Park this thread for good if the interpreter is being finalized and it is not the one doing it.
pub fn park_if_exiting() {
    if EXIT_THREAD.get() != Some(&thread::current().id()) && finalizing() {
        loop {
            thread::park();
        }
    }
}

/// `py.detach(f)`, that does not come back into an exiting interpreter.
pub fn detach<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(|| {
        let out = f();
        park_if_exiting();
        out
    })
}

/// `Python::attach(f)` from a thread that left the interpreter, unless the interpreter is exiting.
pub fn attach<T>(f: impl for<'py> FnOnce(Python<'py>) -> T) -> T {
    park_if_exiting();
    Python::attach(f)
}
