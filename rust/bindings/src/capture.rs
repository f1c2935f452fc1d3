use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pcapdump_core::capture::buffer::Cursor;
use pcapdump_core::capture::{
    BufferMode, Capture, CaptureBuffer, CaptureConfig, RingConfig, SharedBuffer, State,
};
use pcapdump_core::filter::MAX_SNAPLEN;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors;
use crate::filter::PyFilter;
use crate::packet::PyPacket;

/// How long one wait for packets lasts before Ctrl-C is looked at again.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A live capture on one interface into its own capture buffer.
#[pyclass(name = "Capture", module = "pcapdump._core")]
pub struct PyCapture {
    capture: Capture,
    buffer: Arc<SharedBuffer>,
    cursor: Cursor,
    iface: String,
}

impl PyCapture {
    fn state_name(&self) -> &'static str {
        match self.capture.state() {
            State::Running => "running",
            State::Stopped(reason) => reason.as_str(),
        }
    }

    /// The next stored packet of this capture after the cursor, if any.
    fn next_stored(&mut self, py: Python<'_>) -> Option<PyPacket> {
        let b = self.buffer.lock();
        let mut missed = 0;
        let mut found = None;
        while let Some(p) = b.next(&mut self.cursor, &mut missed) {
            if p.iface == self.capture.iface() {
                found = Some(PyPacket {
                    ts_ns: p.ts_ns,
                    data: PyBytes::new(py, p.data).unbind(),
                    wirelen: p.wirelen,
                    iface: Some(self.iface.clone()),
                    direction: Some(p.direction),
                    linktype: self.capture.link().number(),
                    index: p.seq + 1,
                });
                break;
            }
        }
        drop(b);
        if missed > 0 {
            self.capture.add_live_dropped(missed);
        }
        found
    }
}

#[pymethods]
impl PyCapture {
    #[new]
    #[pyo3(signature = (iface, filter = None, snaplen = None, count = None, buffer_kb = 512,
                        promisc = false, ring = false, ring_block_kb = 1024, ring_blocks = 64,
                        ring_timeout_ms = 20))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        iface: String,
        filter: Option<PyRef<'_, PyFilter>>,
        snaplen: Option<u32>,
        count: Option<u64>,
        buffer_kb: u64,
        promisc: bool,
        ring: bool,
        ring_block_kb: u32,
        ring_blocks: u32,
        ring_timeout_ms: u32,
    ) -> PyResult<Self> {
        let mode = if ring {
            BufferMode::Ring
        } else {
            BufferMode::Linear
        };
        let config = CaptureConfig {
            iface: iface.clone(),
            filter: filter.map(|f| f.inner.clone()),
            snaplen: snaplen.unwrap_or(MAX_SNAPLEN),
            count,
            promisc,
            store: true,
            ring: RingConfig {
                block_size: ring_block_kb.saturating_mul(1024),
                block_count: ring_blocks,
                block_timeout_ms: ring_timeout_ms,
            },
        };
        let (capture, buffer) = py
            .detach(|| {
                let buffer =
                    CaptureBuffer::new((buffer_kb * 1024) as usize, mode).map_err(|e| {
                        format!("cannot allocate a capture buffer of {buffer_kb} KB: {e}")
                    })?;
                let buffer = Arc::new(SharedBuffer::new(buffer));
                Capture::start(config, buffer.clone())
                    .map(|c| (c, buffer))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| errors::capture_error(py, e))?;
        let cursor = buffer.lock().cursor();
        Ok(PyCapture {
            capture,
            buffer,
            cursor,
            iface,
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next stored packet; waits (GIL released, Ctrl-C honoured) while the capture runs.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyPacket>> {
        loop {
            // The state is read before the buffer, so a capture seen stopped has stored its last packet.
            let running = self.capture.state() == State::Running;
            if let Some(p) = self.next_stored(py) {
                return Ok(Some(p));
            }
            if !running {
                return Ok(None);
            }
            let (buffer, seen) = (&self.buffer, self.cursor);
            py.detach(|| {
                let b = buffer.lock();
                if b.next_seq() <= seen.seq() {
                    drop(buffer.wait(b, WAIT_SLICE));
                }
            });
            py.check_signals()?;
        }
    }

    /// Stop capturing; stored packets stay for iteration and ``write``.
    fn stop(&mut self, py: Python<'_>) {
        let capture = &mut self.capture;
        py.detach(|| capture.stop());
    }

    /// Counters of this capture: ``state``, ``packets``, ``bytes``, ``kernel_drops``,
    /// ``buffer_full_drops``, ``overwritten``, ``live_dropped``, ``buffer_size``, ``buffer_used``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.capture.stats();
        let (size, used) = {
            let b = self.buffer.lock();
            (b.capacity(), b.used())
        };
        let d = PyDict::new(py);
        d.set_item("state", self.state_name())?;
        d.set_item("iface", &self.iface)?;
        d.set_item("packets", s.packets)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("kernel_drops", s.kernel_drops)?;
        d.set_item("buffer_full_drops", s.buffer_full_drops)?;
        d.set_item("overwritten", s.overwritten)?;
        d.set_item("live_dropped", s.live_dropped)?;
        d.set_item("buffer_size", size)?;
        d.set_item("buffer_used", used)?;
        Ok(d)
    }

    /// Write the stored packets to a classic pcap file (complete or absent); returns how many.
    fn write(&self, py: Python<'_>, path: PathBuf) -> PyResult<u64> {
        let (buffer, iface, snaplen) = (
            &self.buffer,
            self.capture.iface(),
            self.capture.config().snaplen,
        );
        py.detach(|| buffer.write_pcap(iface, &path, snaplen))
            .map(|w| w.packets)
            .map_err(|e| {
                errors::capture_file_error(py, format!("'{}': cannot write: {e}", path.display()))
            })
    }

    #[getter]
    fn iface(&self) -> &str {
        &self.iface
    }

    #[getter]
    fn linktype(&self) -> u32 {
        self.capture.link().number()
    }
}
