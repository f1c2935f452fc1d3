use pcapdump_core::brief::{fields_of, tcp_flags_text, BriefFormatter, Fields, PacketMeta};
use pcapdump_core::capture::StoredPacket;
use pcapdump_core::packet::{Direction, LinkType};
use pcapdump_core::pcap::Record;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};

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

    /// The decoder's fields of this packet, and its info text.
    fn decoded(&self, py: Python<'_>) -> (Fields, String) {
        let mut info = Vec::new();
        let data = self.data.bind(py).as_bytes();
        let link = LinkType::from_number(self.linktype);
        let fields = fields_of(data, link, self.wirelen, &mut info);
        (fields, String::from_utf8_lossy(&info).into_owned())
    }

    fn fields_only(&self, py: Python<'_>) -> Fields {
        self.decoded(py).0
    }

    pub(crate) fn meta(&self) -> PacketMeta<'_> {
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

    /// The innermost protocol understood, as brief lines name it: ``"TCP"``, ``"UDP"``, ``"ICMP"``,
    /// ``"ICMP6"``, ``"ARP"``, ``"IPv4"``, ``"IPv6"``, ``"ETH"``, …
    #[getter]
    fn proto(&self, py: Python<'_>) -> &'static str {
        self.fields_only(py).proto
    }

    /// The source address: IP, or Ethernet for frames without an IP header; ``None`` when cut short.
    #[getter]
    fn src(&self, py: Python<'_>) -> Option<String> {
        self.fields_only(py).src.text()
    }

    /// The destination address, as ``src``.
    #[getter]
    fn dst(&self, py: Python<'_>) -> Option<String> {
        self.fields_only(py).dst.text()
    }

    /// The TCP, UDP or SCTP source port.
    #[getter]
    fn sport(&self, py: Python<'_>) -> Option<u16> {
        self.fields_only(py).sport
    }

    /// The TCP, UDP or SCTP destination port.
    #[getter]
    fn dport(&self, py: Python<'_>) -> Option<u16> {
        self.fields_only(py).dport
    }

    /// The Ethernet source address, ``"02:00:00:00:00:01"``.
    #[getter]
    fn eth_src(&self, py: Python<'_>) -> Option<String> {
        self.fields_only(py).eth_src.map(mac_text)
    }

    /// The Ethernet destination address.
    #[getter]
    fn eth_dst(&self, py: Python<'_>) -> Option<String> {
        self.fields_only(py).eth_dst.map(mac_text)
    }

    /// The 802.1Q VLAN ids, outermost first; ``()`` when untagged.
    #[getter]
    fn vlan<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.fields_only(py).vlans())
    }

    /// The IPv4 protocol or IPv6 next header behind the extension headers, for IP packets.
    #[getter]
    fn ip_proto(&self, py: Python<'_>) -> Option<u8> {
        self.fields_only(py).ip_proto
    }

    /// The TCP flags as brief lines print them (``"S"``, ``"S."``, ``"FP."``, ``"none"``).
    #[getter]
    fn tcp_flags(&self, py: Python<'_>) -> Option<String> {
        self.fields_only(py).tcp_flags.map(tcp_flags_text)
    }

    /// Whether the capture kept less than the packet had (``caplen < wirelen``).
    #[getter]
    fn truncated(&self, py: Python<'_>) -> bool {
        self.fields_only(py).truncated
    }

    /// Every field of the ``-json`` line, as a dict with the same keys and values.
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (f, info) = self.decoded(py);
        let d = PyDict::new(py);
        d.set_item("index", self.index)?;
        d.set_item("ts_ns", self.ts_ns)?;
        d.set_item("iface", self.iface.as_deref())?;
        d.set_item("dir", self.direction.map(Direction::as_str))?;
        d.set_item("caplen", self.data.bind(py).as_bytes().len())?;
        d.set_item("wirelen", self.wirelen)?;
        d.set_item("eth_src", f.eth_src.map(mac_text))?;
        d.set_item("eth_dst", f.eth_dst.map(mac_text))?;
        d.set_item("vlan", f.vlans().to_vec())?;
        d.set_item("proto", f.proto)?;
        d.set_item("src", f.src.text())?;
        d.set_item("dst", f.dst.text())?;
        d.set_item("sport", f.sport)?;
        d.set_item("dport", f.dport)?;
        d.set_item("ip_proto", f.ip_proto)?;
        d.set_item("tcp_flags", f.tcp_flags.map(tcp_flags_text))?;
        d.set_item("truncated", f.truncated)?;
        d.set_item("info", info)?;
        Ok(d)
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

fn mac_text(m: [u8; 6]) -> String {
    pcapdump_core::brief::Addr::Mac(m)
        .text()
        .expect("a MAC address has a text")
}
