use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcapdump_core::brief::{BriefFormatter, PacketMeta};
use pcapdump_core::capture::buffer::Cursor;
use pcapdump_core::capture::trigger::{Trigger, TriggerGroup};
use pcapdump_core::capture::{
    show_merged_lines, BufferIface, BufferMode, Capture, CaptureConfig, CaptureError, IfaceId,
    LiveLine, LiveLines, RingConfig, SharedBuffer, State,
};
use pcapdump_core::limits::{DEFAULT_AFTER, DEFAULT_BUFFER_KB, MAX_SNAPLEN, WAIT_SLICE};
use pcapdump_core::pcap::{AtomicFile, InterfaceBlock, Section};
use pcapdump_core::Error;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors;
use crate::filter::PyFilter;
use crate::packet::PyPacket;
use crate::readiness::PyReadiness;
use crate::table::PyTable;
use pcapdump_core::table;

/// A capture buffer that several captures can share (the agent's).
#[pyclass(name = "CaptureBuffer", module = "pcapdump._core", frozen)]
pub struct PyCaptureBuffer {
    inner: Arc<SharedBuffer>,
}

fn buffer_mode(ring: bool) -> BufferMode {
    if ring {
        BufferMode::Ring
    } else {
        BufferMode::Linear
    }
}

impl PyCaptureBuffer {
    fn iface(&self, py: Python<'_>, name: &str) -> PyResult<IfaceId> {
        self.inner
            .lock()
            .find_interface(name)
            .ok_or_else(|| errors::to_py(py, CaptureError::NothingCaptured(name.to_owned())))
    }

    /// The buffer's interfaces of these names, each with its link type; one it holds nothing of is an
    /// error naming it.
    fn named<'n>(&self, py: Python<'_>, names: &'n [String]) -> PyResult<Vec<BufferIface<'n>>> {
        let ids = names
            .iter()
            .map(|name| self.iface(py, name))
            .collect::<PyResult<Vec<_>>>()?;
        let b = self.inner.lock();
        let named = ids.iter().zip(names).map(|(&id, name)| BufferIface {
            id,
            name,
            link: b.iface(id).link,
        });
        Ok(named.collect())
    }
}

#[pymethods]
impl PyCaptureBuffer {
    #[new]
    #[pyo3(signature = (size_kb, ring = false))]
    fn new(py: Python<'_>, size_kb: u64, ring: bool) -> PyResult<Self> {
        let buffer = crate::gil::detach(py, || SharedBuffer::allocate(size_kb, buffer_mode(ring)))
            .map_err(|e| errors::to_py(py, e))?;
        Ok(PyCaptureBuffer {
            inner: Arc::new(buffer),
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

    /// The brief lines (or JSON lines) of the packets of ``iface`` held now, numbered from 1, as UTF-8;
    /// times in the zone ``tz`` names (a ``TZ`` value; ``None``: the system's), or UTC, with the date.
    #[pyo3(signature = (iface, json = false, tz = None, utc = false, date = false, mark = None))]
    #[allow(clippy::too_many_arguments)]
    fn lines<'py>(
        &self,
        py: Python<'py>,
        iface: &str,
        json: bool,
        tz: Option<&str>,
        utc: bool,
        date: bool,
        mark: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.merged_lines(py, vec![iface.to_owned()], json, tz, utc, date, mark)
    }

    /// The lines of the packets of ``ifaces`` held now as one timeline (by timestamp), numbered from 1;
    /// otherwise as ``lines``.
    #[pyo3(signature = (ifaces, json = false, tz = None, utc = false, date = false, mark = None))]
    #[allow(clippy::too_many_arguments)]
    fn merged_lines<'py>(
        &self,
        py: Python<'py>,
        ifaces: Vec<String>,
        json: bool,
        tz: Option<&str>,
        utc: bool,
        date: bool,
        mark: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = ifaces
            .iter()
            .map(|name| self.iface(py, name))
            .collect::<PyResult<Vec<_>>>()?;
        let buffer = &self.inner;
        let mut out = Vec::new();
        let clock = crate::clock::clock(tz, utc, date);
        crate::gil::detach(py, || {
            show_merged_lines(buffer, &ids, json, clock, mark, &mut out)
        })
        // The lines go into memory, which only fails by running out of it.
        .map_err(|e| errors::to_py(py, Error::write(std::path::Path::new("<memory>"), e)))?;
        Ok(PyBytes::new(py, &out))
    }

    /// The conversations of the packets of ``ifaces`` held now that ``filter`` keeps (see
    /// ``pcapdump.conversations``), counted with the GIL released.
    #[pyo3(signature = (ifaces, filter = None))]
    fn conversations<'py>(
        &self,
        py: Python<'py>,
        ifaces: Vec<String>,
        filter: Option<PyRef<'_, crate::filter::PyFilter>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let filter = filter.map(|f| f.inner.clone());
        let named = self.named(py, &ifaces)?;
        let buffer = &self.inner;
        let table = crate::gil::detach(py, || {
            pcapdump_core::flows::from_buffer(buffer, &named, filter.as_ref())
        });
        crate::flows::table_dict(py, &table)
    }

    /// Write the packets of ``iface`` held now to ``path``, replacing whatever is there (a file, a
    /// symlink, a FIFO: never followed or opened): ``(packets, bytes)``. The file is complete or absent.
    /// ``still_wanted``, if given, is asked once the file is written and before it is put in place;
    /// if it says no, nothing is put in place and ``None`` is returned.
    #[pyo3(signature = (iface, path, snaplen = MAX_SNAPLEN, still_wanted = None))]
    fn write(
        &self,
        py: Python<'_>,
        iface: &str,
        path: PathBuf,
        snaplen: u32,
        still_wanted: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Option<(u64, u64)>> {
        let id = self.iface(py, iface)?;
        let buffer = &self.inner;
        let failed = |e| errors::to_py(py, Error::write(&path, e));
        let (written, out) = crate::gil::detach(py, || {
            let (written, mut out) = buffer.write_pcap(id, AtomicFile::create(&path)?, snaplen)?;
            out.settle().map(|()| (written, out))
        })
        .map_err(failed)?;
        let committed = commit_if_wanted(py, out, still_wanted, failed)?;
        Ok(committed.then_some((written.packets, written.bytes)))
    }

    /// Write the packets of ``ifaces`` held now, merged in time order, to ``path`` as pcapng (complete
    /// or absent, replacing whatever is there): one interface block per name, with ``snaplens[i]`` and
    /// the filter program of ``captures[i]`` (the interface's latest capture, or ``None``), and a
    /// statistics block from that capture's counters. Returns ``(packets, bytes)`` per interface, or
    /// ``None`` when ``still_wanted`` says no before the file is put in place.
    #[pyo3(signature = (ifaces, path, snaplens, captures, still_wanted = None, comment = None))]
    #[allow(clippy::too_many_arguments)]
    fn write_pcapng(
        &self,
        py: Python<'_>,
        ifaces: Vec<String>,
        path: PathBuf,
        snaplens: Vec<u32>,
        captures: Vec<Option<PyRef<'_, PyCapture>>>,
        still_wanted: Option<Bound<'_, PyAny>>,
        comment: Option<(u64, String)>,
    ) -> PyResult<Option<Vec<(u64, u64)>>> {
        if snaplens.len() != ifaces.len() || captures.len() != ifaces.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "ifaces, snaplens and captures must be as long as each other",
            ));
        }
        let named = self.named(py, &ifaces)?;
        let ids: Vec<_> = named.iter().map(|i| i.id).collect();
        let captures: Vec<Option<&Capture>> = captures
            .iter()
            .map(|c| c.as_ref().map(|c| &c.capture))
            .collect();
        let blocks: Vec<InterfaceBlock> = (0..ids.len())
            .map(|i| InterfaceBlock {
                name: named[i].name,
                link: named[i].link,
                snaplen: snaplens[i],
                filter: captures[i].and_then(Capture::program),
            })
            .collect();
        let buffer = &self.inner;
        let failed = |e| errors::to_py(py, Error::write(&path, e));
        let (written, out) = crate::gil::detach(py, || {
            let (written, mut writer) = buffer.write_pcapng(
                &ids,
                &blocks,
                &Section::here(),
                comment.as_ref().map(|(seq, text)| (*seq, text.as_str())),
                AtomicFile::create(&path)?,
            )?;
            for (i, capture) in captures.iter().enumerate() {
                if let Some(capture) = capture {
                    writer.write_stats(i as u32, &capture.interface_stats(written[i].packets))?;
                }
            }
            let mut out = writer.into_inner();
            out.settle().map(|()| (written, out))
        })
        .map_err(failed)?;
        let committed = commit_if_wanted(py, out, still_wanted, failed)?;
        Ok(committed.then(|| written.iter().map(|w| (w.packets, w.bytes)).collect()))
    }

    /// Drop every packet held; running captures go on.
    fn wipe(&self) {
        self.inner.lock().wipe();
    }
}

/// Captures that one trigger stops together (those of one ``start``).
#[pyclass(name = "TriggerGroup", module = "pcapdump._core", frozen)]
pub struct PyTriggerGroup {
    inner: Arc<TriggerGroup>,
}

#[pymethods]
impl PyTriggerGroup {
    #[new]
    fn new() -> Self {
        PyTriggerGroup {
            inner: TriggerGroup::new(),
        }
    }
}

fn trigger_of(
    py: Python<'_>,
    words: Option<PyRef<'_, PyFilter>>,
    after: u64,
    group: Option<PyRef<'_, PyTriggerGroup>>,
) -> PyResult<Option<Trigger>> {
    use pcapdump_core::limits::MAX_AFTER;
    if after > MAX_AFTER {
        let message = format!("after={after}: expected 0…{MAX_AFTER} packets");
        return Err(errors::usage(py, message, "after"));
    }
    Ok(words.map(|w| Trigger {
        words: w.inner.clone(),
        after,
        group: group.map_or_else(TriggerGroup::new, |g| g.inner.clone()),
    }))
}

/// The comment a pcapng file carries on the packet a capture's trigger fired on.
fn trigger_comment(capture: &Capture) -> Option<(u64, String)> {
    let hit = capture.trigger_hit()?;
    let words = &capture.config().trigger.as_ref()?.words;
    Some((
        hit.stored?.seq,
        format!("pcapdump: trigger fired on this packet ({words})"),
    ))
}

fn trigger_dict<'py>(
    py: Python<'py>,
    capture: &Capture,
    clock: pcapdump_core::clock::Clock,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(hit) = capture.trigger_hit() else {
        return Ok(None);
    };
    let index = {
        let b = capture.buffer().lock();
        match (hit.stored, b.find_interface(&hit.iface)) {
            (Some(at), Some(id)) => b.held_position(id, at.ordinal),
            _ => None,
        }
    };
    let meta = PacketMeta {
        index: index.unwrap_or(0),
        ts_ns: hit.ts_ns,
        iface: Some(&hit.iface),
        direction: Some(hit.direction),
        wirelen: hit.wirelen,
        link: hit.link,
    };
    let brief = BriefFormatter::with_clock(clock).line(&meta, &hit.data, false);
    let d = PyDict::new(py);
    d.set_item("iface", &*hit.iface)?;
    d.set_item("index", index)?;
    d.set_item("seq", hit.stored.map(|at| at.seq))?;
    d.set_item("ts_ns", hit.ts_ns)?;
    d.set_item("brief", brief.trim_end())?;
    Ok(Some(d))
}

/// Seconds as given to Python (a number from `MIN_DURATION_S` to `MAX_DURATION_S`) as a duration.
fn duration_of(py: Python<'_>, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    use pcapdump_core::limits::{MAX_DURATION_S, MIN_DURATION_S};
    match seconds {
        None => Ok(None),
        Some(s)
            if s.is_finite() && (MIN_DURATION_S as f64..=MAX_DURATION_S as f64).contains(&s) =>
        {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        Some(s) => Err(errors::usage(
            py,
            format!("duration={s}: expected {MIN_DURATION_S}…{MAX_DURATION_S} seconds"),
            "duration",
        )),
    }
}

/// Put a written file in place, unless `still_wanted` (asked now, once it is written) says no: then it
/// is dropped, which leaves nothing. Returns whether it was put in place.
fn commit_if_wanted(
    py: Python<'_>,
    out: AtomicFile,
    still_wanted: Option<Bound<'_, PyAny>>,
    failed: impl FnOnce(std::io::Error) -> PyErr,
) -> PyResult<bool> {
    if let Some(ask) = still_wanted {
        if !ask.call0()?.is_truthy()? {
            return Ok(false);
        }
    }
    crate::gil::detach(py, || out.commit()).map_err(failed)?;
    Ok(true)
}

/// Brief lines of the packets that one or more captures keep, as they are captured (``-o``, ``-ou``).
#[pyclass(name = "LiveLines", module = "pcapdump._core")]
pub struct PyLiveLines {
    inner: LiveLines,
    finished: bool,
}

#[pymethods]
impl PyLiveLines {
    #[new]
    #[pyo3(signature = (capacity = 65536, json = false, tz = None, utc = false, date = false))]
    fn new(capacity: usize, json: bool, tz: Option<&str>, utc: bool, date: bool) -> Self {
        PyLiveLines {
            inner: LiveLines::new(capacity, json, crate::clock::clock(tz, utc, date)),
            finished: false,
        }
    }

    /// The next line; ``None`` if none came within ``timeout`` seconds, or once every capture feeding
    /// these lines has stopped (then ``finished`` is true).
    fn get(&mut self, py: Python<'_>, timeout: f64) -> Option<String> {
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let lines = &mut self.inner;
        match crate::gil::detach(py, || lines.next_line(wait)) {
            LiveLine::Line(line) => Some(line),
            LiveLine::Empty => None,
            LiveLine::Finished => {
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
        self.inner.dropped()
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

/// A live capture on one interface, into its own capture buffer or a shared one. Every method may be
/// called from any thread, while other threads iterate.
#[pyclass(name = "Capture", module = "pcapdump._core", frozen)]
pub struct PyCapture {
    capture: Capture,
    /// Where iteration has got to: one place for every thread that iterates, so that each packet goes
    /// to one of them. Only held while a packet is taken, never while waiting.
    cursor: Mutex<Cursor>,
    /// An iteration found the capture stopped and every packet given.
    finished: AtomicBool,
}

/// When a wait of `timeout` seconds ends: `None` for no end (no timeout, or one beyond any clock).
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(seconds) = timeout else {
        return Ok(None);
    };
    if seconds.is_nan() || seconds < 0.0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout={seconds}: expected seconds (0 or more), or None"
        )));
    }
    Ok(Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|wait| Instant::now().checked_add(wait)))
}

impl PyCapture {
    /// The next stored packet, waiting for one until `deadline` (`None`: as long as the capture runs)
    /// with the GIL released; `None` at the deadline or once the capture has stopped and every packet
    /// was given. The wait is cut in slices to look at Ctrl-C; packets and `stop` end it at once.
    fn next_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Option<PyPacket>> {
        let name = self.capture.config().iface.as_str();
        let link = self.capture.link();
        loop {
            // The state is read before the buffer, so a capture seen stopped has stored its last packet.
            let running = self.capture.state() == State::Running;
            let (next, at) = {
                let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
                let next = self
                    .capture
                    .next_stored(&mut cursor, |p| PyPacket::stored(py, p, name, link));
                (next, *cursor)
            };
            if next.is_some() {
                return Ok(next);
            }
            if !running {
                self.finished.store(true, Ordering::Release);
                return Ok(None);
            }
            let slice = deadline.map_or(WAIT_SLICE, |d| {
                d.saturating_duration_since(Instant::now()).min(WAIT_SLICE)
            });
            if slice.is_zero() {
                return Ok(None);
            }
            let capture = &self.capture;
            // Only the main thread comes back each slice, for Ctrl-C: another waits on until there is
            // something to take (a daemon thread that comes back while the interpreter exits is ended
            // by it, mid-call, which crashes the process).
            let signals = crate::gil::gets_signals();
            crate::gil::detach(py, || {
                let mut wait = slice;
                loop {
                    capture.wait_stored(&at, wait);
                    wait = deadline.map_or(WAIT_SLICE, |d| {
                        d.saturating_duration_since(Instant::now()).min(WAIT_SLICE)
                    });
                    if signals || wait.is_zero() || capture.has_news(&at) {
                        break;
                    }
                }
            });
            py.check_signals()?;
        }
    }
}

#[pymethods]
impl PyCapture {
    #[new]
    #[pyo3(signature = (iface, filter = None, snaplen = None, count = None, buffer_kb = DEFAULT_BUFFER_KB,
                        promisc = false, ring = false, *, duration = None, trigger = None, after = DEFAULT_AFTER,
                        group = None, buffer = None, store = true, live = None, ring_block_kb = None,
                        ring_blocks = None, ring_timeout_ms = None))]
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
        duration: Option<f64>,
        trigger: Option<PyRef<'_, PyFilter>>,
        after: u64,
        group: Option<PyRef<'_, PyTriggerGroup>>,
        buffer: Option<PyRef<'_, PyCaptureBuffer>>,
        store: bool,
        live: Option<PyRef<'_, PyLiveLines>>,
        ring_block_kb: Option<u32>,
        ring_blocks: Option<u32>,
        ring_timeout_ms: Option<u32>,
    ) -> PyResult<Self> {
        let config = CaptureConfig {
            iface,
            filter: filter.map(|f| f.inner.clone()),
            snaplen: snaplen.unwrap_or(MAX_SNAPLEN),
            count,
            duration: duration_of(py, duration)?,
            trigger: trigger_of(py, trigger, after, group)?,
            promisc,
            store,
            ring: RingConfig::with(ring_block_kb, ring_blocks, ring_timeout_ms),
        };
        let shared = buffer.map(|b| b.inner.clone());
        let live = live.map(|l| l.inner.queue().clone());
        let capture = crate::gil::detach(py, || {
            let buffer = match shared {
                Some(b) => b,
                None => Arc::new(SharedBuffer::allocate(buffer_kb, buffer_mode(ring))?),
            };
            Capture::start(config, buffer, live)
        })
        .map_err(|e| errors::to_py(py, e))?;
        let cursor = Mutex::new(capture.cursor_from_now());
        Ok(PyCapture {
            capture,
            cursor,
            finished: AtomicBool::new(false),
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next stored packet; waits (GIL released, Ctrl-C honoured) while the capture runs.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyPacket>> {
        self.next_until(py, None)
    }

    /// The next stored packet, waiting at most ``timeout`` seconds (``None``: as long as the capture
    /// runs) with the GIL released; ``None`` if none came in time, or once the capture has stopped and
    /// every packet was given (then ``finished`` is true).
    #[pyo3(name = "next", signature = (timeout = None))]
    fn next_packet(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyPacket>> {
        self.next_until(py, deadline_of(timeout)?)
    }

    /// True once ``next()`` or iteration found the capture stopped and every stored packet given.
    #[getter]
    fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// ``async for pkt in cap``: the packets as an asyncio event loop waits for them, without a thread
    /// (``pcapdump.aio.AsyncPackets``).
    fn __aiter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("pcapdump.aio")?
            .getattr("AsyncPackets")?
            .call1((slf,))
    }

    /// An event descriptor (``Readiness``) that becomes readable each time this capture stores packets,
    /// and when it stops: an event loop waits for it instead of a thread.
    fn watch(&self, py: Python<'_>) -> PyResult<PyReadiness> {
        self.capture
            .watch()
            .map(PyReadiness::new)
            .map_err(|e| errors::to_py(py, e))
    }

    /// Stop capturing; stored packets stay for iteration and ``write``. Any thread may stop it: one
    /// waiting for packets then gets the rest, and its iteration ends.
    fn stop(&self, py: Python<'_>) {
        let capture = &self.capture;
        crate::gil::detach(py, || capture.stop());
    }

    /// Counters of this capture and of its buffer (``CaptureStats``).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.capture.stats();
        let (size, used) = {
            let b = self.capture.buffer().lock();
            (b.capacity(), b.used())
        };
        let d = PyDict::new(py);
        let (state, stop_reason) = match self.capture.state() {
            State::Running => ("running", None),
            State::Stopped(reason) => ("stopped", Some(reason.as_str())),
        };
        d.set_item("state", state)?;
        d.set_item("stop_reason", stop_reason)?;
        d.set_item("iface", &self.capture.config().iface)?;
        d.set_item("packets", s.packets)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("kernel_drops", s.kernel_drops)?;
        d.set_item("buffer_full_drops", s.buffer_full_drops)?;
        d.set_item("overwritten", s.overwritten)?;
        d.set_item("live_dropped", s.live_dropped)?;
        d.set_item("buffer_size", size)?;
        d.set_item("buffer_used", used)?;
        let clock = pcapdump_core::clock::Clock::default();
        d.set_item("trigger", trigger_dict(py, &self.capture, clock)?)?;
        Ok(d)
    }

    /// Write the stored packets to a file (complete or absent): classic pcap, or with
    /// ``format="pcapng"`` pcapng with the interface's name, filter program, directions and statistics.
    /// Returns how many.
    #[pyo3(signature = (path, format = "pcap"))]
    fn write(&self, py: Python<'_>, path: PathBuf, format: &str) -> PyResult<u64> {
        let pcapng = match format {
            "pcap" => false,
            "pcapng" => true,
            _ => {
                let message = format!("format={format:?}: expected 'pcap' or 'pcapng'");
                return Err(errors::usage(py, message, "format"));
            }
        };
        let capture = &self.capture;
        crate::gil::detach(py, || {
            let out = AtomicFile::create_or_stream(&path)?;
            let snaplen = capture.config().snaplen;
            if !pcapng {
                let (written, out) = capture.buffer().write_pcap(capture.iface(), out, snaplen)?;
                return out.commit().map(|()| written.packets);
            }
            let block = InterfaceBlock {
                name: &capture.config().iface,
                link: capture.link(),
                snaplen,
                filter: capture.program(),
            };
            let comment = trigger_comment(capture);
            let (written, mut writer) = capture.buffer().write_pcapng(
                &[capture.iface()],
                &[block],
                &Section::here(),
                comment.as_ref().map(|(seq, text)| (*seq, text.as_str())),
                out,
            )?;
            writer.write_stats(0, &capture.interface_stats(written[0].packets))?;
            writer.into_inner().commit().map(|()| written[0].packets)
        })
        .map_err(|e| errors::to_py(py, Error::write(&path, e)))
    }

    /// Write this capture's packets to the open descriptor ``fd`` as pcapng, each as soon as it is
    /// stored (a pipe's reader sees it at once): a section header, the interface block, the packets,
    /// and once the capture stops (``count``, ``duration``, ``stop()`` from another thread or a signal
    /// handler) its statistics block. Returns ``(packets written, why it ended)`` once the capture has
    /// stopped and everything was written, or the reader closed its end (``"reader gone"``, the
    /// capture is then stopped), or the capture stopped and the reader took nothing for 2 s
    /// (``"reader stopped reading"``). The stream starts where iteration has got to and does not move
    /// it. ``fd`` is non-blocking while the stream lasts. Ctrl-C
    /// stops the capture, writes what it kept, then raises. ``name`` names ``fd`` in errors.
    #[cfg(unix)]
    #[pyo3(signature = (fd, name = "standard output"))]
    fn stream(&self, py: Python<'_>, fd: i32, name: &str) -> PyResult<(u64, &'static str)> {
        use std::os::fd::BorrowedFd;
        if fd < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "fd={fd}: expected an open file descriptor"
            )));
        }
        // SAFETY: the caller keeps `fd` open during the call (as os.write would need it open).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut interrupted: Option<PyErr> = None;
        let capture = &self.capture;
        // A cursor of its own, from where iteration has got to: the iteration's lock is taken with the
        // GIL held, and the stream takes the GIL (for Ctrl-C) while it reads.
        let mut cursor = *self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let section = Section::here();
        let streamed = crate::gil::detach(py, || {
            let mut tick = || {
                crate::gil::attach(|py| match py.check_signals() {
                    Ok(()) => true,
                    Err(e) => {
                        interrupted.get_or_insert(e);
                        false
                    }
                })
            };
            capture.stream_pcapng(&mut cursor, fd, &section, &mut tick)
        });
        let streamed =
            streamed.map_err(|e| errors::to_py(py, Error::write(std::path::Path::new(name), e)))?;
        match interrupted {
            Some(e) => Err(e),
            None => Ok((streamed.packets, streamed.end.as_str())),
        }
    }

    /// The stored packets as a table (see ``read_table``), built with the GIL released.
    #[pyo3(signature = (columns = None))]
    fn table(&self, py: Python<'_>, columns: Option<Bound<'_, PyAny>>) -> PyResult<PyTable> {
        let columns = crate::table::columns(py, columns.as_ref())?;
        let capture = &self.capture;
        let iface = BufferIface {
            id: capture.iface(),
            name: &capture.config().iface,
            link: capture.link(),
        };
        let table = crate::gil::detach(py, || {
            table::from_buffer(capture.buffer(), &[iface], columns)
        });
        Ok(PyTable::new(table))
    }

    #[getter]
    fn iface(&self) -> &str {
        &self.capture.config().iface
    }

    /// The packet the trigger fired on (``None`` before it fires, or without a trigger): ``iface``,
    /// ``index`` (its number in ``show``, ``None`` once the buffer no longer holds it), ``ts_ns`` and its
    /// ``brief`` line, times in the zone ``tz`` names (``None``: the system's), or UTC, with the date.
    #[pyo3(signature = (tz = None, utc = false, date = false))]
    fn trigger<'py>(
        &self,
        py: Python<'py>,
        tz: Option<&str>,
        utc: bool,
        date: bool,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        trigger_dict(py, &self.capture, crate::clock::clock(tz, utc, date))
    }

    /// The settings of this capture (``CaptureSettings``): the filter in canonical form, ``snaplen``,
    /// ``count``, ``promisc``, ``store``.
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.capture.config();
        let d = PyDict::new(py);
        d.set_item(
            "filter",
            c.filter.as_ref().map(|f| f.to_string()).unwrap_or_default(),
        )?;
        d.set_item("snaplen", c.snaplen)?;
        d.set_item("count", c.count)?;
        d.set_item("duration", c.duration.map(|d| d.as_secs_f64()))?;
        d.set_item("trigger", c.trigger.as_ref().map(|t| t.words.to_string()))?;
        d.set_item("after", c.trigger.as_ref().map(|t| t.after))?;
        d.set_item("promisc", c.promisc)?;
        d.set_item("store", c.store)?;
        Ok(d)
    }

    #[getter]
    fn linktype(&self) -> u32 {
        self.capture.link().number()
    }
}
