use pcapdump_core::brief::{brief_line, BriefFormatter, PacketMeta};
use pcapdump_core::packet::{Direction, LinkType};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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
        brief_line(&self.meta(), self.data.bind(py).as_bytes())
    }

    /// The brief line's JSON object, as ``show -json`` prints it.
    fn json(&self, py: Python<'_>) -> String {
        let mut out = Vec::new();
        BriefFormatter::new().json(&mut out, &self.meta(), self.data.bind(py).as_bytes());
        out.pop();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<Packet {}>", self.brief(py))
    }
}
