//! `pcapdump._core`: thin wrappers around pcapdump-core. Work that takes time runs with the GIL released.

mod capture;
mod clock;
mod errors;
mod files;
mod filter;
mod flows;
mod gil;
mod interfaces;
mod packet;
mod readiness;
mod table;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", pcapdump_core::VERSION)?;
    add_limits(m)?;
    m.add_function(wrap_pyfunction!(errors::error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(gil::mark_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(ring_blocks_each, m)?)?;
    m.add_class::<filter::PyFilter>()?;
    m.add_function(wrap_pyfunction!(filter::filter_words, m)?)?;
    m.add("FILTER_NEGATION", pcapdump_core::filter::NEGATION)?;
    m.add_function(wrap_pyfunction!(interfaces::interfaces, m)?)?;
    m.add_class::<packet::PyPacket>()?;
    m.add_class::<capture::PyCapture>()?;
    m.add_class::<capture::PyCaptureBuffer>()?;
    m.add_class::<capture::PyLiveLines>()?;
    m.add_class::<capture::PyTriggerGroup>()?;
    m.add_class::<readiness::PyReadiness>()?;
    m.add_class::<files::PyFileReader>()?;
    m.add_class::<table::PyTable>()?;
    m.add_function(wrap_pyfunction!(table::read_table, m)?)?;
    m.add("CONVERSATION_FIELDS", flows::FIELDS.to_vec())?;
    m.add_function(wrap_pyfunction!(flows::file_conversations, m)?)?;
    m.add_function(wrap_pyfunction!(flows::packet_conversations, m)?)?;
    m.add_function(wrap_pyfunction!(files::read_lines, m)?)?;
    m.add_function(wrap_pyfunction!(files::read_to_pcap, m)?)?;
    m.add_function(wrap_pyfunction!(files::write_pcap, m)?)?;
    m.add_function(wrap_pyfunction!(files::write_pcapng, m)?)?;
    Ok(())
}

/// The engine's bounds and defaults (`pcapdump_core::limits`), under the same names.
fn add_limits(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use pcapdump_core::limits::*;
    m.add("MAX_SNAPLEN", MAX_SNAPLEN)?;
    m.add("MAX_COUNT", MAX_COUNT)?;
    m.add("MIN_DURATION_S", MIN_DURATION_S)?;
    m.add("MAX_AFTER", MAX_AFTER)?;
    m.add("DEFAULT_AFTER", DEFAULT_AFTER)?;
    m.add("MAX_DURATION_S", MAX_DURATION_S)?;
    m.add("MIN_BUFFER_KB", MIN_BUFFER_KB)?;
    m.add("MAX_BUFFER_KB", MAX_BUFFER_KB)?;
    m.add("DEFAULT_BUFFER_KB", DEFAULT_BUFFER_KB)?;
    m.add("DEFAULT_STREAM_BUFFER_KB", DEFAULT_STREAM_BUFFER_KB)?;
    m.add("WAIT_SLICE_S", WAIT_SLICE.as_secs_f64())?;
    m.add("STREAM_DRAIN_GRACE_S", STREAM_DRAIN_GRACE.as_secs_f64())?;
    #[cfg(unix)]
    m.add(
        "STREAM_FAILED_ENDS",
        pcapdump_core::capture::StreamEnd::FAILURES
            .map(|e| e.as_str())
            .to_vec(),
    )?;
    m.add("RING_BLOCKS", RING_BLOCKS)?;
    m.add("SHARED_RING_BLOCKS", SHARED_RING_BLOCKS)?;
    m.add("MIN_RING_BLOCKS", MIN_RING_BLOCKS)?;
    m.add("TEMP_SUFFIX", pcapdump_core::pcap::TEMP_SUFFIX)?;
    Ok(())
}

/// Kernel ring blocks for each of ``interfaces`` captures started together.
#[pyfunction]
fn ring_blocks_each(interfaces: u32) -> u32 {
    pcapdump_core::limits::ring_blocks_each(interfaces)
}
