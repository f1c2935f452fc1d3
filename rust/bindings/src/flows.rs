//! Conversations for Python: the engine's [`FlowTable`] as rows of plain values, which `pcapdump.flows`
//! makes into typed `Conversation` objects (and the agent sends as JSON lines).

use std::path::PathBuf;

use pcapdump_core::brief::{proto_name, Addr};
use pcapdump_core::flows::{Conversation, FlowKind, FlowTable, Flows};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::files::for_each_packet;
use crate::filter::PyFilter;
use crate::packet::PyPacket;

/// The names of a conversation row's fields, in order: `pcapdump.Conversation`'s fields, which a test
/// holds to this.
pub const FIELDS: [&str; 20] = [
    "proto",
    "ip_proto",
    "kind",
    "client",
    "client_port",
    "server",
    "server_port",
    "echo_id",
    "icmp_types",
    "state",
    "packets_to_server",
    "bytes_to_server",
    "packets_to_client",
    "bytes_to_client",
    "first_ns",
    "last_ns",
    "iface",
    "client_dir",
    "vlan",
    "icmp_errors",
];

/// ``{"conversations": [row, …], "not_ip": n, "unattributed": n}``, each row a tuple of [`FIELDS`]:
/// no dict per conversation, and the texts that repeat (protocols, states, addresses) shared.
pub fn table_dict<'py>(py: Python<'py>, table: &FlowTable) -> PyResult<Bound<'py, PyDict>> {
    let list = PyList::empty(py);
    for c in &table.conversations {
        list.append(conversation_row(py, c)?)?;
    }
    let d = PyDict::new(py);
    d.set_item("conversations", list)?;
    d.set_item("not_ip", table.not_ip)?;
    d.set_item("unattributed", table.unattributed)?;
    Ok(d)
}

fn conversation_row<'py>(py: Python<'py>, c: &Conversation) -> PyResult<Bound<'py, PyTuple>> {
    let text = |s: &str| PyString::intern(py, s).into_any();
    let addr = |a: Addr| text(&a.text().unwrap_or_default());
    let proto = proto_name(c.ip_proto).map_or_else(|| c.ip_proto.to_string(), String::from);
    let kind = match c.kind {
        FlowKind::Ports => "ports",
        FlowKind::Echo => "echo",
        FlowKind::Pair => "pair",
    };
    let row: [Bound<'py, PyAny>; 20] = [
        text(&proto),
        c.ip_proto.into_pyobject(py)?.into_any(),
        text(kind),
        addr(c.client),
        c.client_port.into_pyobject(py)?.into_any(),
        addr(c.server),
        c.server_port.into_pyobject(py)?.into_any(),
        c.echo_id.into_pyobject(py)?.into_any(),
        PyTuple::new(py, c.client_icmp_types.iter().map(|&t| u16::from(t)))?.into_any(),
        text(c.state.as_str()),
        c.to_server.packets.into_pyobject(py)?.into_any(),
        c.to_server.bytes.into_pyobject(py)?.into_any(),
        c.to_client.packets.into_pyobject(py)?.into_any(),
        c.to_client.bytes.into_pyobject(py)?.into_any(),
        c.first_ns.into_pyobject(py)?.into_any(),
        c.last_ns.into_pyobject(py)?.into_any(),
        c.iface.as_deref().map(text).into_pyobject(py)?.into_any(),
        c.client_direction
            .map(|d| text(d.as_str()))
            .into_pyobject(py)?
            .into_any(),
        PyTuple::new(py, &c.vlans)?.into_any(),
        c.icmp_errors.into_pyobject(py)?.into_any(),
    ];
    PyTuple::new(py, row)
}

/// The conversations of the matching packets of a capture file, read in one pass with the GIL released.
#[pyfunction]
#[pyo3(signature = (path, filter = None, count = None))]
pub fn file_conversations<'py>(
    py: Python<'py>,
    path: PathBuf,
    filter: Option<PyRef<'_, PyFilter>>,
    count: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut flows = Flows::new();
    let filter = filter.map(|f| f.inner.clone());
    for_each_packet(py, &path, filter, None, count, |meta, data| {
        flows.add(meta, data)
    })?;
    table_dict(py, &flows.finish())
}

/// The conversations of ``packets`` (any iterable of ``Packet``), taken in the order given.
#[pyfunction]
pub fn packet_conversations<'py>(
    py: Python<'py>,
    packets: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut flows = Flows::new();
    for item in packets.try_iter()? {
        let item = item?;
        let packet = item.cast::<PyPacket>().map_err(|_| {
            let shown = item
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            pyo3::exceptions::PyTypeError::new_err(format!(
                "conversations: expected Packet objects, got {shown}"
            ))
        })?;
        let p = packet.get();
        flows.add(&p.meta(), p.data.bind(py).as_bytes());
    }
    table_dict(py, &flows.finish())
}
