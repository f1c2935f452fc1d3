//! Conversations for Python: the engine's [`FlowTable`] as plain dicts, which `pcapdump.flows` makes
//! into typed `Conversation` objects (and the agent sends as they are).

use std::path::PathBuf;

use pcapdump_core::brief::{proto_name, Addr, PacketMeta};
use pcapdump_core::flows::{Conversation, FlowKind, FlowTable, Flows};
use pcapdump_core::offline::{OfflineError, RecordReader};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors;
use crate::files::{interruptible, open};
use crate::filter::PyFilter;
use crate::packet::PyPacket;

/// Packets between two looks at Ctrl-C while a file is read.
const INTERRUPT_EVERY: u64 = 64 * 1024;

/// ``{"conversations": [dict, …], "not_ip": n, "unattributed": n}``.
pub fn table_dict<'py>(py: Python<'py>, table: &FlowTable) -> PyResult<Bound<'py, PyDict>> {
    let list = PyList::empty(py);
    for c in &table.conversations {
        list.append(conversation_dict(py, c)?)?;
    }
    let d = PyDict::new(py);
    d.set_item("conversations", list)?;
    d.set_item("not_ip", table.not_ip)?;
    d.set_item("unattributed", table.unattributed)?;
    Ok(d)
}

fn conversation_dict<'py>(py: Python<'py>, c: &Conversation) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let proto = proto_name(c.ip_proto).map_or_else(|| c.ip_proto.to_string(), String::from);
    d.set_item("iface", c.iface.as_deref())?;
    d.set_item("vlan", c.vlans.clone())?;
    d.set_item("proto", proto)?;
    d.set_item("ip_proto", c.ip_proto)?;
    d.set_item(
        "kind",
        match c.kind {
            FlowKind::Ports => "ports",
            FlowKind::Echo => "echo",
            FlowKind::Pair => "pair",
        },
    )?;
    d.set_item("client", Addr::text(c.client))?;
    d.set_item("client_port", c.client_port)?;
    d.set_item("server", Addr::text(c.server))?;
    d.set_item("server_port", c.server_port)?;
    d.set_item("echo_id", c.echo_id)?;
    // A list of numbers (a `Vec<u8>` would become `bytes`).
    let types: Vec<u16> = c.client_icmp_types.iter().map(|&t| t.into()).collect();
    d.set_item("icmp_types", types)?;
    d.set_item("state", c.state.as_str())?;
    d.set_item("packets_to_server", c.to_server.packets)?;
    d.set_item("bytes_to_server", c.to_server.bytes)?;
    d.set_item("packets_to_client", c.to_client.packets)?;
    d.set_item("bytes_to_client", c.to_client.bytes)?;
    d.set_item("first_ns", c.first_ns)?;
    d.set_item("last_ns", c.last_ns)?;
    d.set_item("client_dir", c.client_direction.map(|dir| dir.as_str()))?;
    d.set_item("icmp_errors", c.icmp_errors)?;
    Ok(d)
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
    let file = open(py, &path)?;
    let mut reader = RecordReader::new(file, filter.map(|f| f.inner.clone()), None, count);
    let counted = interruptible(py, |interrupted| {
        let mut flows = Flows::new();
        let mut packets = 0u64;
        while let Some(next) = reader.next_packet(&mut { &mut *interrupted }) {
            let (record, data) = next?;
            flows.add(&PacketMeta::from(&record), data);
            packets += 1;
            if packets.is_multiple_of(INTERRUPT_EVERY) && interrupted() {
                break;
            }
        }
        Ok::<_, OfflineError>(flows.finish())
    })?;
    let table = counted.map_err(|e| errors::to_py(py, e))?;
    table_dict(py, &table)
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
