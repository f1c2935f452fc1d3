//! `Readiness`: the event descriptor through which an event loop learns that a capture stored packets
//! or stopped (`Capture.watch()`, used by `pcapdump.aio`).

use std::sync::Arc;

use pcapdump_core::capture::Readiness;
use pyo3::prelude::*;

/// Readable each time the capture it watches stores packets, and when it stops. Clear it, take the
/// packets, then wait for it to be readable: a packet stored after the take makes it readable again.
#[pyclass(name = "Readiness", module = "pcapdump._core", frozen)]
pub struct PyReadiness {
    inner: Arc<Readiness>,
}

impl PyReadiness {
    pub fn new(inner: Arc<Readiness>) -> PyReadiness {
        PyReadiness { inner }
    }
}

#[pymethods]
impl PyReadiness {
    /// The descriptor, for ``loop.add_reader`` or ``select``; it lives as long as this object.
    #[cfg(target_os = "linux")]
    fn fileno(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.inner.as_raw_fd()
    }

    /// Consume the signals so far: the descriptor is no longer readable until the next one.
    fn clear(&self) {
        self.inner.clear();
    }
}
