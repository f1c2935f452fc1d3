//! Leaving the interpreter for long work, and coming back. A thread still inside pcapdump when the
//! interpreter exits (a daemon thread reading a table, waiting for packets) must not come back: CPython
//! before 3.14 ends such a thread with `pthread_exit` when it asks for the GIL again, which unwinds
//! through our frames and crashes the process. `pcapdump` marks the exit from an `atexit` hook, which
//! runs before that; a thread that finds the mark where it would come back parks instead, and ends with
//! the process. The thread that runs the exit itself is never parked.

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

/// Park this thread for good if the interpreter is exiting and it is not the one running the exit.
pub fn park_if_exiting() {
    if EXITING.load(Ordering::Acquire) && EXIT_THREAD.get() != Some(&thread::current().id()) {
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
