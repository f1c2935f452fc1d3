use std::path::PathBuf;

use pcapdump_core::brief::PacketMeta;
use pcapdump_core::limits::MAX_SNAPLEN;
use pcapdump_core::offline::{self, OfflineError, RecordReader, Selection, Summary, Written};
use pcapdump_core::packet::LinkType;
use pcapdump_core::pcap::{
    AtomicFile, CaptureFile, InterfaceBlock, PcapWriter, PcapngWriter, Section,
};
use pcapdump_core::Error;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;
use crate::filter::PyFilter;
use crate::packet::PyPacket;

/// Run `f` with the GIL released, handing it the question a reader asks while a pipe is silent:
/// whether to give up. Ctrl-C says yes, and is raised here.
pub fn interruptible<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(&mut dyn FnMut() -> bool) -> T + Send,
) -> PyResult<T> {
    let mut signalled: Option<PyErr> = None;
    let done = crate::gil::detach(py, || {
        f(&mut || {
            let checked = crate::gil::attach(|py| py.check_signals());
            checked.map_err(|e| signalled = Some(e)).is_err()
        })
    });
    match signalled {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Hand every packet of the file at `path` that `filter` keeps (cut to `snaplen`, at most `count`) to
/// `visit`, in one pass with the GIL released; Ctrl-C ends it and is raised.
pub fn for_each_packet(
    py: Python<'_>,
    path: &std::path::Path,
    filter: Option<pcapdump_core::filter::Filter>,
    snaplen: Option<u32>,
    count: Option<u64>,
    mut visit: impl FnMut(&PacketMeta, &[u8]) + Send,
) -> PyResult<()> {
    let file = open(py, path)?;
    let mut reader = RecordReader::new(file, filter, snaplen, count);
    let walked = interruptible(py, |interrupted| {
        // The reader asks about Ctrl-C while a pipe is silent, and every so many records of a file.
        while let Some(next) = reader.next_packet(&mut { &mut *interrupted }) {
            let (record, data) = next?;
            visit(&PacketMeta::from(&record), data);
        }
        Ok::<_, OfflineError>(())
    })?;
    walked.map_err(|e| errors::to_py(py, e))
}

/// Open a capture file with the GIL released; Ctrl-C ends a wait on a silent pipe.
pub fn open(py: Python<'_>, path: &std::path::Path) -> PyResult<CaptureFile> {
    interruptible(py, |interrupted| {
        CaptureFile::open_interruptible(path, interrupted)
    })?
    .map_err(|e| errors::to_py(py, e))
}

fn summary_dict(py: Python<'_>, s: Summary) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let d = pyo3::types::PyDict::new(py);
    d.set_item("read", s.read)?;
    d.set_item("matched", s.matched)?;
    d.set_item("bytes", s.bytes)?;
    Ok(d)
}

/// Iterates over the matching packets of a capture file.
#[pyclass(name = "FileReader", module = "pcapdump._core")]
pub struct PyFileReader {
    inner: RecordReader,
}

#[pymethods]
impl PyFileReader {
    #[new]
    #[pyo3(signature = (path, filter = None, snaplen = None, count = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        filter: Option<PyRef<'_, PyFilter>>,
        snaplen: Option<u32>,
        count: Option<u64>,
    ) -> PyResult<Self> {
        let file = open(py, &path)?;
        let filter = filter.map(|f| f.inner.clone());
        Ok(PyFileReader {
            inner: RecordReader::new(file, filter, snaplen, count),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyPacket>> {
        let inner = &mut self.inner;
        let next = if inner.is_stream() {
            // A pipe may keep us waiting: without the GIL, and Ctrl-C ends the wait.
            interruptible(py, |interrupted| inner.next_packet(&mut { interrupted }))?
        } else {
            inner.next_packet(&mut || false)
        };
        next.map(|got| got.map(|(r, data)| PyPacket::from_record(py, &r, data)))
            .transpose()
            .map_err(|e| errors::to_py(py, e))
    }
}

/// Print brief lines (or JSON lines) of a file's matching packets on standard output.
#[pyfunction]
#[pyo3(signature = (path, filter = None, snaplen = None, count = None, json = false, tz = None, utc = false, date = false))]
#[allow(clippy::too_many_arguments)]
pub fn read_lines<'py>(
    py: Python<'py>,
    path: PathBuf,
    filter: Option<PyRef<'_, PyFilter>>,
    snaplen: Option<u32>,
    count: Option<u64>,
    json: bool,
    tz: Option<&str>,
    utc: bool,
    date: bool,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let file = open(py, &path)?;
    let clock = crate::clock::clock(tz, utc, date);
    let filter = filter.map(|f| f.inner.clone());
    let result = interruptible(py, |interrupted| {
        // Descriptor 1 itself: Rust's `Stdout` takes a descriptor that cannot be written (EBADF: one
        // opened read-only) for a sink, and would report lines nobody got as printed.
        let mut out = std::mem::ManuallyDrop::new(unsafe {
            // SAFETY: descriptor 1 stays open for the process's life; ManuallyDrop never closes it.
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(1)
        });
        offline::print_lines(
            &file,
            &Selection::new(filter.as_ref(), snaplen, count),
            json,
            clock,
            &mut *out,
            interrupted,
        )
    })?;
    summary_dict(py, result.map_err(|e| errors::to_py(py, e))?)
}

/// Write a file's matching packets to a pcap file (atomically: complete or absent), or with ``pcapng``
/// to a pcapng file that keeps the input's interfaces and directions. Input cut inside a record: the
/// packets before the cut are written and the file kept, then the cut is raised.
#[pyfunction]
#[pyo3(signature = (path, out, filter = None, snaplen = None, count = None, pcapng = false))]
pub fn read_to_pcap<'py>(
    py: Python<'py>,
    path: PathBuf,
    out: PathBuf,
    filter: Option<PyRef<'_, PyFilter>>,
    snaplen: Option<u32>,
    count: Option<u64>,
    pcapng: bool,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let file = open(py, &path)?;
    let filter = filter.map(|f| f.inner.clone());
    let written = interruptible(py, |interrupted| {
        let sel = Selection::new(filter.as_ref(), snaplen, count);
        if pcapng {
            offline::write_pcapng(&file, &sel, &out, interrupted)
        } else {
            offline::write_pcap(&file, &sel, &out, interrupted)
        }
    })?;
    let Written {
        summary,
        file: written,
        cut,
    } = written.map_err(|e| errors::to_py(py, e))?;
    // Ctrl-C while it was written: the file is dropped, and so not put in place.
    py.check_signals()?;
    crate::gil::detach(py, || written.commit())
        .map_err(|e| errors::to_py(py, OfflineError::writing(&out.display().to_string(), e)))?;
    if let Some(cut) = cut {
        return Err(errors::to_py(
            py,
            OfflineError::CutShort {
                cut,
                out: out.display().to_string(),
                kept: summary.matched,
                read: summary.read,
            },
        ));
    }
    summary_dict(py, summary)
}

/// One of the packets given to `write`: a `Packet`, or a `(ts_ns, bytes)` pair, whose wire length is
/// its length.
struct Item<'py> {
    ts_ns: u64,
    data: Bound<'py, PyBytes>,
    wirelen: u32,
    /// The packet, for its interface, link type and direction; `None` for a pair.
    packet: Option<Bound<'py, PyPacket>>,
}

impl<'py> Item<'py> {
    /// The `n`-th item (from 0), or the error that says what it should have been.
    fn of(py: Python<'py>, item: Bound<'py, PyAny>, n: u64) -> PyResult<Item<'py>> {
        if let Ok(p) = item.cast::<PyPacket>() {
            let packet = p.get();
            return Ok(Item {
                ts_ns: packet.ts_ns,
                data: packet.data.bind(py).clone(),
                wirelen: packet.wirelen,
                packet: Some(p.clone()),
            });
        }
        let (ts_ns, data): (u64, Bound<'py, PyBytes>) = item.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "packet {n}: expected a Packet or a (ts_ns, bytes) pair"
            ))
        })?;
        let wirelen = data.as_bytes().len() as u32;
        Ok(Item {
            ts_ns,
            data,
            wirelen,
            packet: None,
        })
    }
}

/// Write packets (``Packet`` objects or ``(ts_ns, bytes)`` pairs) to a pcap file; returns how many.
#[pyfunction]
#[pyo3(signature = (path, packets, linktype = 1, snaplen = MAX_SNAPLEN))]
pub fn write_pcap(
    py: Python<'_>,
    path: PathBuf,
    packets: &Bound<'_, PyAny>,
    linktype: u32,
    snaplen: u32,
) -> PyResult<u64> {
    let io_err = |e: std::io::Error| errors::to_py(py, Error::write(&path, e));
    let out = AtomicFile::create_or_stream(&path).map_err(io_err)?;
    let mut writer =
        PcapWriter::new(out, LinkType::from_number(linktype), snaplen).map_err(io_err)?;
    let mut n = 0u64;
    for item in packets.try_iter()? {
        let item = Item::of(py, item?, n)?;
        writer
            .write(item.ts_ns, item.data.as_bytes(), item.wirelen)
            .map_err(io_err)?;
        n += 1;
    }
    writer.into_inner().commit().map_err(io_err)?;
    Ok(n)
}

/// Write packets to a pcapng file (atomically, as `write_pcap`): one interface block per distinct
/// (interface name, link type) of the packets, in order of first appearance, and each packet's
/// direction. Pairs of (ts_ns, bytes) belong to an unnamed interface of `linktype`.
#[pyfunction]
#[pyo3(signature = (path, packets, linktype = 1, snaplen = MAX_SNAPLEN))]
pub fn write_pcapng(
    py: Python<'_>,
    path: PathBuf,
    packets: &Bound<'_, PyAny>,
    linktype: u32,
    snaplen: u32,
) -> PyResult<u64> {
    let io_err = |e: std::io::Error| errors::to_py(py, Error::write(&path, e));
    let out = AtomicFile::create_or_stream(&path).map_err(io_err)?;
    let mut writer = PcapngWriter::new(out, &Section::here()).map_err(io_err)?;
    let mut ids: Vec<(Option<String>, u32)> = Vec::new();
    let mut n = 0u64;
    for item in packets.try_iter()? {
        let item = Item::of(py, item?, n)?;
        let packet = item.packet.as_ref().map(|p| p.get());
        let (name, link) = packet.map_or((None, linktype), |p| (p.iface.as_deref(), p.linktype));
        let known = ids
            .iter()
            .position(|(n, l)| n.as_deref() == name && *l == link);
        let id = match known {
            Some(i) => i as u32,
            None => {
                writer
                    .add_interface(&InterfaceBlock {
                        name: name.unwrap_or(""),
                        link: LinkType::from_number(link),
                        snaplen,
                        filter: None,
                    })
                    .map_err(io_err)?;
                ids.push((name.map(str::to_owned), link));
                (ids.len() - 1) as u32
            }
        };
        let bytes = item.data.as_bytes();
        let bytes = &bytes[..bytes.len().min(snaplen as usize)];
        let direction = packet.and_then(|p| p.direction);
        writer
            .write_packet(id, item.ts_ns, bytes, item.wirelen, direction, None)
            .map_err(io_err)?;
        n += 1;
    }
    writer.into_inner().commit().map_err(io_err)?;
    Ok(n)
}
