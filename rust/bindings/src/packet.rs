use pcapdump_core::brief::{BriefFormatter, PacketMeta};
use pcapdump_core::capture::StoredPacket;
use pcapdump_core::packet::{Direction, LinkType};
use pcapdump_core::pcap::Record;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyType};

/// One captured packet.
#[pyclass(name = "Packet", module = "pcapdump._core", frozen)]
pub struct PyPacket {
    #[pyo3(get)]
    pub ts_ns: u64,
    pub data: Py<PyBytes>,
    #[pyo3(get)]
    pub wirelen: u32,
    #[pyo3(get)]
    pub iface: Option<String>,
    pub direction: Option<Direction>,
    #[pyo3(get)]
    pub linktype: u32,
    #[pyo3(get)]
    pub index: u64,
}

impl PyPacket {
    /// A packet of a live capture on `iface`, copied out of the capture buffer.
    pub fn stored(py: Python<'_>, p: &StoredPacket, iface: &str, link: LinkType) -> PyPacket {
        PyPacket {
            ts_ns: p.ts_ns,
            data: PyBytes::new(py, p.data).unbind(),
            wirelen: p.wirelen,
            iface: Some(iface.to_owned()),
            direction: Some(p.direction),
            linktype: link.number(),
            index: p.seq + 1,
        }
    }

    /// A record of a file, with its data cut to the snap length.
    pub fn from_record(py: Python<'_>, r: &Record, data: &[u8]) -> PyPacket {
        PyPacket {
            ts_ns: r.ts_ns,
            data: PyBytes::new(py, data).unbind(),
            wirelen: r.wirelen,
            iface: r.iface.map(String::from),
            direction: r.direction,
            linktype: r.link.number(),
            index: r.number,
        }
    }

    fn line(&self, py: Python<'_>, json: bool) -> String {
        BriefFormatter::new().line(&self.meta(), self.data.bind(py).as_bytes(), json)
    }

    fn meta(&self) -> PacketMeta<'_> {
        PacketMeta {
            index: self.index,
            ts_ns: self.ts_ns,
            iface: self.iface.as_deref(),
            direction: self.direction,
            wirelen: self.wirelen,
            link: LinkType::from_number(self.linktype),
        }
    }
}

#[pymethods]
impl PyPacket {
    #[new]
    #[pyo3(signature = (ts_ns, data, wirelen = None, iface = None, direction = None, linktype = 1, index = 0))]
    fn new(
        ts_ns: u64,
        data: Bound<'_, PyBytes>,
        wirelen: Option<u32>,
        iface: Option<String>,
        direction: Option<&str>,
        linktype: u32,
        index: u64,
    ) -> PyResult<Self> {
        let direction = match direction {
            None => None,
            Some("in") => Some(Direction::In),
            Some("out") => Some(Direction::Out),
            Some(other) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "direction {other:?}: expected 'in', 'out' or None"
                )))
            }
        };
        let caplen = data.as_bytes().len() as u32;
        Ok(PyPacket {
            ts_ns,
            wirelen: wirelen.unwrap_or(caplen).max(caplen),
            data: data.unbind(),
            iface,
            direction,
            linktype,
            index,
        })
    }

    /// The captured bytes (at most the snap length).
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    #[getter]
    fn caplen(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    /// ``"in"``, ``"out"`` or ``None`` when the capture did not say.
    #[getter]
    fn direction(&self) -> Option<&'static str> {
        self.direction.map(Direction::as_str)
    }

    /// The brief line, as ``show`` prints it.
    fn brief(&self, py: Python<'_>) -> String {
        self.line(py, false)
    }

    /// The brief line's JSON object, as ``show -json`` prints it.
    fn json(&self, py: Python<'_>) -> String {
        self.line(py, true)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<Packet {}>", self.brief(py))
    }

    /// Pickles as the call that makes it again, ``Packet(ts_ns, data, wirelen, iface, direction,
    /// linktype, index)``: those arguments also decide equality and the hash.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let fields = (
            self.ts_ns,
            self.data.bind(py),
            self.wirelen,
            self.iface.as_deref(),
            self.direction(),
            self.linktype,
            self.index,
        );
        Ok((py.get_type::<Self>(), fields.into_pyobject(py)?))
    }

    fn __eq__(&self, py: Python<'_>, other: &Self) -> PyResult<bool> {
        self.__reduce__(py)?.1.eq(other.__reduce__(py)?.1)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.__reduce__(py)?.1.hash()
    }
}
