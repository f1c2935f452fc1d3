//! `pcapdump._core`: thin wrappers around pcapdump-core. Work that takes time runs with the GIL released.

mod capture;
mod errors;
mod files;
mod filter;
mod packet;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", pcapdump_core::VERSION)?;
    m.add("MAX_SNAPLEN", pcapdump_core::filter::MAX_SNAPLEN)?;
    m.add(
        "DEFAULT_RING_BLOCKS",
        pcapdump_core::capture::RingConfig::default().block_count,
    )?;
    m.add_class::<filter::PyFilter>()?;
    m.add_function(wrap_pyfunction!(filter::filter_words, m)?)?;
    m.add_class::<packet::PyPacket>()?;
    m.add_class::<capture::PyCapture>()?;
    m.add_class::<capture::PyCaptureBuffer>()?;
    m.add_class::<capture::PyLiveLines>()?;
    m.add_class::<files::PyFileReader>()?;
    m.add_function(wrap_pyfunction!(files::read_lines, m)?)?;
    m.add_function(wrap_pyfunction!(files::read_to_pcap, m)?)?;
    m.add_function(wrap_pyfunction!(files::write_pcap, m)?)?;
    Ok(())
}
