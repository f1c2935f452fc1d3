//! The engine's errors as Python exceptions: one class per `ErrorKind`, looked up by the kind's name
//! in `pcapdump.errors` (plain, typed Python classes), so the mapping is written once, there.

use pcapdump_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The exception for `e`, an error of the engine or of one of its modules.
pub fn to_py(py: Python<'_>, e: impl Into<Error>) -> PyErr {
    let e = e.into();
    if e.kind() == ErrorKind::OutputClosed {
        // The reader of our output went away: Python's own exception, which the CLI ends quietly on.
        return pyo3::exceptions::PyBrokenPipeError::new_err(e.to_string());
    }
    let made = (|| {
        let details = PyDict::new(py);
        if let Some(token) = e.token() {
            details.set_item("token", token)?;
        }
        if let Some(iface) = e.iface() {
            details.set_item("iface", iface)?;
        }
        py.import("pcapdump.errors")?
            .getattr("from_kind")?
            .call((e.kind().as_str(), e.to_string()), Some(&details))
    })();
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(failed) => failed,
    }
}

/// A `UsageError` for an argument of ours that is wrong (`token` names it).
pub fn usage(py: Python<'_>, message: String, token: &str) -> PyErr {
    let made = (|| {
        let details = PyDict::new(py);
        details.set_item("token", token)?;
        py.import("pcapdump.errors")?
            .getattr("from_kind")?
            .call(("usage", message), Some(&details))
    })();
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(failed) => failed,
    }
}

/// Every kind's name, so the Python side can check that it has a class for each.
#[pyfunction]
pub fn error_kinds() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|k| k.as_str()).collect()
}
