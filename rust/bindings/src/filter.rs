use pcapdump_core::bpf::interp::{self, Ancillary};
use pcapdump_core::filter::{filter_words as words, Filter, LinkHeader, TcpEnd};
use pcapdump_core::limits::MAX_SNAPLEN;
use pcapdump_core::packet::LinkType;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::errors;

/// A packet filter in pcapdump's filter words, e.g. ``Filter("ipsrc 198.18.0.1 tcp")``.
#[pyclass(name = "Filter", module = "pcapdump._core", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyFilter {
    pub inner: Filter,
}

#[pymethods]
impl PyFilter {
    #[new]
    #[pyo3(signature = (expr = None))]
    fn new(py: Python<'_>, expr: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let tokens: Vec<String> = match expr {
            None => Vec::new(),
            Some(e) if e.is_instance_of::<PyString>() => e
                .extract::<String>()?
                .split_whitespace()
                .map(String::from)
                .collect(),
            Some(e) => e.extract()?,
        };
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        Filter::parse(&refs)
            .map(|inner| PyFilter { inner })
            .map_err(|e| errors::to_py(py, e))
    }

    /// Whether an Ethernet frame matches (``vlan_tci``: a tag the kernel stripped from it, if any).
    #[pyo3(signature = (frame, vlan_tci = None))]
    fn matches(&self, frame: &[u8], vlan_tci: Option<u16>) -> bool {
        match vlan_tci {
            None => self.inner.matches(frame, LinkType::Ethernet),
            tci => self.inner.matches_stripped(frame, tci),
        }
    }

    /// The classic BPF program, as ``tcpdump -dd`` prints it: (code, jt, jf, k) tuples.
    #[pyo3(signature = (snaplen = MAX_SNAPLEN))]
    fn bpf(&self, py: Python<'_>, snaplen: u32) -> PyResult<Vec<(u16, u8, u8, u32)>> {
        let prog = self
            .inner
            .compile(snaplen, LinkHeader::Ethernet)
            .map_err(|e| errors::to_py(py, pcapdump_core::capture::CaptureError::Program(e)))?;
        Ok(prog.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
    }

    /// Run the compiled program over ``frame`` in the BPF interpreter: the number of bytes kept.
    #[pyo3(signature = (frame, vlan_tci = None, snaplen = MAX_SNAPLEN))]
    fn run_bpf(
        &self,
        py: Python<'_>,
        frame: &[u8],
        vlan_tci: Option<u16>,
        snaplen: u32,
    ) -> PyResult<u32> {
        let prog = self
            .inner
            .compile(snaplen, LinkHeader::Ethernet)
            .map_err(|e| errors::to_py(py, pcapdump_core::capture::CaptureError::Program(e)))?;
        Ok(interp::run(
            &prog,
            frame,
            &Ancillary {
                vlan_tci,
                protocol: 0,
            },
        ))
    }

    /// This filter, and not the TCP packets from or to ``addr`` port ``port`` either: how ``stream``
    /// leaves out the SSH connection it runs over (both of its ends).
    fn without_tcp_end(&self, addr: std::net::IpAddr, port: u16) -> PyFilter {
        PyFilter {
            inner: self.inner.excluding(TcpEnd::new(addr, port)),
        }
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Filter({:?})", self.inner.to_string())
    }
}

/// Every filter word and the syntax of its value (``None``: it takes none).
#[pyfunction]
pub fn filter_words() -> Vec<(&'static str, Option<&'static str>)> {
    words().collect()
}
