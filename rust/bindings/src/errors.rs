//! Raise the exception classes of `pcapdump.errors` (defined in Python so they are plain, typed classes).

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyErr;

fn raise<'py>(py: Python<'py>, class: &str, args: Bound<'py, PyTuple>) -> PyErr {
    let made = py
        .import("pcapdump.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1(args));
    match made {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

pub fn filter_error(py: Python<'_>, e: &pcapdump_core::filter::FilterError) -> PyErr {
    let args = PyTuple::new(py, [e.to_string(), e.token.clone()]);
    args.map_or_else(|err| err, |a| raise(py, "FilterError", a))
}

pub fn capture_file_error(py: Python<'_>, message: String) -> PyErr {
    PyTuple::new(py, [message]).map_or_else(|err| err, |a| raise(py, "CaptureFileError", a))
}

pub fn capture_error(py: Python<'_>, message: String) -> PyErr {
    PyTuple::new(py, [message]).map_or_else(|err| err, |a| raise(py, "CaptureError", a))
}

pub fn offline_error(py: Python<'_>, e: pcapdump_core::offline::OfflineError) -> PyErr {
    use pcapdump_core::offline::OfflineError;
    match e {
        OfflineError::OutputClosed => pyo3::exceptions::PyBrokenPipeError::new_err("output closed"),
        other => capture_file_error(py, other.to_string()),
    }
}
