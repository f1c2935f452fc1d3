use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pcapdump_core::brief::{BriefFormatter, PacketMeta};
use pcapdump_core::capture::buffer::Cursor;
use pcapdump_core::capture::{
    show_lines, BufferMode, Capture, CaptureBuffer, CaptureConfig, IfaceId, LiveQueue, OwnedPacket,
    Received, RingConfig, SharedBuffer, State,
};
use pcapdump_core::filter::MAX_SNAPLEN;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors;
use crate::filter::PyFilter;
use crate::packet::PyPacket;

/// How long one wait for packets lasts before Ctrl-C is looked at again.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A capture buffer that several captures can share (the agent's).
#[pyclass(name = "CaptureBuffer", module = "pcapdump._core", frozen)]
pub struct PyCaptureBuffer {
    inner: Arc<SharedBuffer>,
}

impl PyCaptureBuffer {
    fn iface(&self, py: Python<'_>, name: &str) -> PyResult<IfaceId> {
        self.inner.lock().find_interface(name).ok_or_else(|| {
            errors::capture_error(py, format!("no packets were captured on '{name}'"))
        })
    }
}

#[pymethods]
impl PyCaptureBuffer {
    #[new]
    #[pyo3(signature = (size, ring = false))]
    fn new(py: Python<'_>, size: usize, ring: bool) -> PyResult<Self> {
        let mode = if ring {
            BufferMode::Ring
        } else {
            BufferMode::Linear
        };
        let buffer = py.detach(|| CaptureBuffer::new(size, mode)).map_err(|e| {
            errors::capture_error(
                py,
                format!("cannot allocate a capture buffer of {size} bytes: {e}"),
            )
        })?;
        Ok(PyCaptureBuffer {
            inner: Arc::new(SharedBuffer::new(buffer)),
        })
    }

    /// Bytes of memory for packets.
    #[getter]
    fn size(&self) -> usize {
        self.inner.lock().capacity()
    }

    /// Bytes taken by the packets held now.
    #[getter]
    fn used(&self) -> usize {
        self.inner.lock().used()
    }

    /// ``"linear"`` or ``"ring"``.
    #[getter]
    fn mode(&self) -> &'static str {
        match self.inner.lock().mode() {
            BufferMode::Linear => "linear",
            BufferMode::Ring => "ring",
        }
    }

    /// Packets held now, over all interfaces.
    #[getter]
    fn held(&self) -> u64 {
        self.inner.lock().len()
    }

    /// Per interface: ``name``, ``linktype``, ``packets``, ``bytes``, ``held``, ``held_bytes``,
    /// ``buffer_full_drops``, ``overwritten``.
    fn interfaces<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ifaces = self.inner.lock().interfaces().to_vec();
        let list = PyList::empty(py);
        for f in ifaces {
            let d = PyDict::new(py);
            let c = f.counts;
            d.set_item("name", f.name)?;
            d.set_item("linktype", f.link.number())?;
            d.set_item("packets", c.packets)?;
            d.set_item("bytes", c.bytes)?;
            d.set_item("held", c.held)?;
            d.set_item("held_bytes", c.held_bytes)?;
            d.set_item("buffer_full_drops", c.buffer_full_drops)?;
            d.set_item("overwritten", c.overwritten)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The brief lines (or JSON lines) of the packets of ``iface`` held now, numbered from 1, as UTF-8.
    #[pyo3(signature = (iface, json = false))]
    fn lines<'py>(
        &self,
        py: Python<'py>,
        iface: &str,
        json: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = self.iface(py, iface)?;
        let buffer = &self.inner;
        let mut out = Vec::new();
        py.detach(|| show_lines(buffer, id, json, &mut out))
            .map_err(|e| errors::capture_error(py, e.to_string()))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Write the packets of ``iface`` held now to a pcap file (complete or absent):
    /// ``(packets, bytes)``.
    #[pyo3(signature = (iface, path, snaplen = MAX_SNAPLEN))]
    fn write(
        &self,
        py: Python<'_>,
        iface: &str,
        path: PathBuf,
        snaplen: u32,
    ) -> PyResult<(u64, u64)> {
        let id = self.iface(py, iface)?;
        let buffer = &self.inner;
        py.detach(|| buffer.write_pcap(id, &path, snaplen))
            .map(|w| (w.packets, w.bytes))
            .map_err(|e| {
                errors::capture_file_error(py, format!("'{}': cannot write: {e}", path.display()))
            })
    }

    /// Drop every packet held; running captures go on.
    fn wipe(&self) {
        self.inner.lock().wipe();
    }
}

/// Brief lines of the packets that one or more captures keep, as they are captured (``-o``, ``-ou``).
#[pyclass(name = "LiveLines", module = "pcapdump._core")]
pub struct PyLiveLines {
    queue: Arc<LiveQueue>,
    json: bool,
    index: u64,
    fmt: BriefFormatter,
    finished: bool,
}

impl PyLiveLines {
    fn format(&mut self, p: &OwnedPacket) -> String {
        self.index += 1;
        let meta = PacketMeta {
            index: self.index,
            ts_ns: p.ts_ns,
            iface: Some(&p.iface),
            direction: Some(p.direction),
            wirelen: p.wirelen,
            link: p.link,
        };
        let mut out = Vec::with_capacity(160);
        if self.json {
            self.fmt.json(&mut out, &meta, &p.data);
        } else {
            self.fmt.text(&mut out, &meta, &p.data);
        }
        out.pop();
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[pymethods]
impl PyLiveLines {
    #[new]
    #[pyo3(signature = (capacity = 65536, json = false))]
    fn new(capacity: usize, json: bool) -> Self {
        PyLiveLines {
            queue: Arc::new(LiveQueue::new(capacity)),
            json,
            index: 0,
            fmt: BriefFormatter::new(),
            finished: false,
        }
    }

    /// The next line; ``None`` if none came within ``timeout`` seconds, or once every capture feeding
    /// these lines has stopped (then ``finished`` is true).
    fn get(&mut self, py: Python<'_>, timeout: f64) -> Option<String> {
        let queue = &self.queue;
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        match py.detach(|| queue.recv(wait)) {
            Received::Packet(p) => Some(self.format(&p)),
            Received::Empty => None,
            Received::Closed => {
                self.finished = true;
                None
            }
        }
    }

    #[getter]
    fn finished(&self) -> bool {
        self.finished
    }

    /// Packets this reader lost by falling behind.
    #[getter]
    fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            if let Some(line) = self.get(py, WAIT_SLICE.as_secs_f64()) {
                return Ok(Some(line));
            }
            if self.finished {
                return Ok(None);
            }
            py.check_signals()?;
        }
    }
}

/// A live capture on one interface, into its own capture buffer or a shared one.
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
                        promisc = false, ring = false, *, buffer = None, store = true, live = None,
                        ring_block_kb = None, ring_blocks = None, ring_timeout_ms = None))]
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
        buffer: Option<PyRef<'_, PyCaptureBuffer>>,
        store: bool,
        live: Option<PyRef<'_, PyLiveLines>>,
        ring_block_kb: Option<u32>,
        ring_blocks: Option<u32>,
        ring_timeout_ms: Option<u32>,
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
            store,
            ring: {
                let default = RingConfig::default();
                RingConfig {
                    block_size: ring_block_kb
                        .map_or(default.block_size, |kb| kb.saturating_mul(1024)),
                    block_count: ring_blocks.unwrap_or(default.block_count),
                    block_timeout_ms: ring_timeout_ms.unwrap_or(default.block_timeout_ms),
                }
            },
        };
        let shared = buffer.map(|b| b.inner.clone());
        let live = live.map(|l| l.queue.clone());
        let (capture, buffer) = py
            .detach(|| {
                let buffer = match shared {
                    Some(b) => b,
                    None => Arc::new(SharedBuffer::new(
                        CaptureBuffer::new((buffer_kb * 1024) as usize, mode).map_err(|e| {
                            format!("cannot allocate a capture buffer of {buffer_kb} KB: {e}")
                        })?,
                    )),
                };
                Capture::start(config, buffer.clone(), live)
                    .map(|c| (c, buffer))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| errors::capture_error(py, e))?;
        // Iteration starts at this capture's first packet, not at what a shared buffer already held.
        let cursor = buffer.lock().cursor_at_end();
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
        let running = self.capture.state() == State::Running;
        d.set_item("state", if running { "running" } else { "stopped" })?;
        d.set_item("stop_reason", (!running).then(|| self.state_name()))?;
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

    /// The filter as typed in canonical form, ``snaplen``, ``count`` and ``promisc`` of this capture.
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.capture.config();
        let d = PyDict::new(py);
        d.set_item(
            "filter",
            c.filter.as_ref().map(|f| f.to_string()).unwrap_or_default(),
        )?;
        d.set_item("snaplen", c.snaplen)?;
        d.set_item("count", c.count)?;
        d.set_item("promisc", c.promisc)?;
        d.set_item("store", c.store)?;
        Ok(d)
    }

    #[getter]
    fn linktype(&self) -> u32 {
        self.capture.link().number()
    }
}
