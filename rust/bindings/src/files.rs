use std::path::PathBuf;
use std::sync::Arc;

use pcapdump_core::filter::{Filter, MAX_SNAPLEN};
use pcapdump_core::offline::{self, Selection, Summary};
use pcapdump_core::packet::LinkType;
use pcapdump_core::pcap::{AtomicFile, CaptureFile, PcapWriter};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;
use crate::filter::PyFilter;
use crate::packet::PyPacket;

fn open(py: Python<'_>, path: &std::path::Path) -> PyResult<CaptureFile> {
    py.detach(|| CaptureFile::open(path))
        .map_err(|e| errors::capture_file_error(py, e.to_string()))
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
    file: Arc<CaptureFile>,
    cursor: pcapdump_core::pcap::Cursor,
    filter: Option<Filter>,
    snaplen: u32,
    remaining: Option<u64>,
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
        Ok(PyFileReader {
            cursor: file.cursor(),
            file: Arc::new(file),
            filter: filter.map(|f| f.inner.clone()),
            snaplen: snaplen.unwrap_or(MAX_SNAPLEN),
            remaining: count,
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyPacket>> {
        if self.remaining == Some(0) {
            return Ok(None);
        }
        // The count is kept here, one packet at a time, rather than in the selection.
        let sel = selection(&self.filter, Some(self.snaplen), None);
        loop {
            let Some(next) = self.file.next_record(&mut self.cursor) else {
                return Ok(None);
            };
            let r = next.map_err(|e| errors::capture_file_error(py, e.to_string()))?;
            let keeps = sel
                .keeps(self.file.path(), &r)
                .map_err(|e| errors::capture_file_error(py, e.to_string()))?;
            if !keeps {
                continue;
            }
            if let Some(n) = self.remaining.as_mut() {
                *n -= 1;
            }
            let data = sel.cut(r.data);
            return Ok(Some(PyPacket {
                ts_ns: r.ts_ns,
                data: PyBytes::new(py, data).unbind(),
                wirelen: r.wirelen,
                iface: r.iface.map(String::from),
                direction: r.direction,
                linktype: r.link.number(),
                index: r.number,
            }));
        }
    }
}

fn selection(filter: &Option<Filter>, snaplen: Option<u32>, count: Option<u64>) -> Selection<'_> {
    Selection {
        filter: filter.as_ref(),
        snaplen: snaplen.unwrap_or(MAX_SNAPLEN),
        count,
    }
}

/// Print brief lines (or JSON lines) of a file's matching packets on standard output.
#[pyfunction]
#[pyo3(signature = (path, filter = None, snaplen = None, count = None, json = false))]
pub fn read_lines<'py>(
    py: Python<'py>,
    path: PathBuf,
    filter: Option<PyRef<'_, PyFilter>>,
    snaplen: Option<u32>,
    count: Option<u64>,
    json: bool,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let file = open(py, &path)?;
    let filter = filter.map(|f| f.inner.clone());
    let result = py.detach(|| {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        offline::print_lines(&file, &selection(&filter, snaplen, count), json, &mut out)
    });
    summary_dict(py, result.map_err(|e| errors::offline_error(py, e))?)
}

/// Write a file's matching packets to a pcap file (atomically: complete or absent).
#[pyfunction]
#[pyo3(signature = (path, out, filter = None, snaplen = None, count = None))]
pub fn read_to_pcap<'py>(
    py: Python<'py>,
    path: PathBuf,
    out: PathBuf,
    filter: Option<PyRef<'_, PyFilter>>,
    snaplen: Option<u32>,
    count: Option<u64>,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let file = open(py, &path)?;
    let filter = filter.map(|f| f.inner.clone());
    let result =
        py.detach(|| offline::write_pcap(&file, &selection(&filter, snaplen, count), &out));
    summary_dict(py, result.map_err(|e| errors::offline_error(py, e))?)
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
    let io_err = |e: std::io::Error| {
        errors::capture_file_error(py, format!("'{}': cannot write: {e}", path.display()))
    };
    let out = AtomicFile::create(&path).map_err(io_err)?;
    let mut writer =
        PcapWriter::new(out, LinkType::from_number(linktype), snaplen).map_err(io_err)?;
    let mut n = 0u64;
    for item in packets.try_iter()? {
        let item = item?;
        if let Ok(p) = item.cast::<PyPacket>() {
            let p = p.get();
            writer
                .write(p.ts_ns, p.data.bind(py).as_bytes(), p.wirelen)
                .map_err(io_err)?;
        } else {
            let (ts_ns, data): (u64, Bound<'_, PyBytes>) = item.extract().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "packet {n}: expected a Packet or a (ts_ns, bytes) pair"
                ))
            })?;
            let bytes = data.as_bytes();
            writer
                .write(ts_ns, bytes, bytes.len() as u32)
                .map_err(io_err)?;
        }
        n += 1;
    }
    writer.into_inner().commit().map_err(io_err)?;
    Ok(n)
}
