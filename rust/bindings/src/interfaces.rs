//! `interfaces()`: the engine's list of interfaces, as dicts (`pcapdump.shapes.Interface`).

use pcapdump_core::interfaces::{list, Interface};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors;

/// Every interface of this thread's network namespace, in index order: name, state, MTU, MAC,
/// addresses with their prefix lengths, and the link type a capture on it would store.
#[pyfunction]
pub fn interfaces(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let listed = crate::gil::detach(py, list).map_err(|e| errors::to_py(py, e))?;
    let list = PyList::empty(py);
    for iface in &listed {
        list.append(as_dict(py, iface)?)?;
    }
    Ok(list)
}

fn as_dict<'py>(py: Python<'py>, iface: &Interface) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let link = iface.link();
    d.set_item("index", iface.index)?;
    d.set_item("name", &iface.name)?;
    d.set_item("up", iface.up)?;
    d.set_item("running", iface.running)?;
    d.set_item("lower_up", iface.lower_up)?;
    d.set_item("loopback", iface.loopback)?;
    d.set_item("operstate", iface.operstate.as_str())?;
    d.set_item("mtu", iface.mtu)?;
    d.set_item("mac", iface.mac())?;
    let addresses: Vec<String> = iface.addresses.iter().map(|a| a.to_string()).collect();
    d.set_item("addresses", addresses)?;
    d.set_item("hatype", iface.hatype)?;
    d.set_item("linktype", link.number())?;
    d.set_item("linktype_name", link.name())?;
    d.set_item("filters", iface.takes_filters())?;
    Ok(d)
}
