//! Packets as an Arrow table for Python: an object that hands its record batches over through the Arrow
//! PyCapsule stream interface (`__arrow_c_stream__`), which pyarrow, polars and duckdb take as they are.

use std::ffi::CStr;
use std::path::PathBuf;

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{RecordBatch, RecordBatchIterator};
use pcapdump_core::table::{self, Column, Table, TableBuilder};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyString};

use crate::errors;
use crate::files::for_each_packet;
use crate::filter::PyFilter;

/// The name the PyCapsule interface gives a capsule holding an `ArrowArrayStream`.
const STREAM_CAPSULE: &CStr = c"arrow_array_stream";

/// A capture as a table: one row per packet. Hand it to ``pyarrow.table()``, ``polars.DataFrame()`` or
/// ``duckdb`` as it is (the Arrow PyCapsule stream interface); pyarrow is not needed to make it.
#[pyclass(name = "Table", module = "pcapdump._core", frozen)]
pub struct PyTable {
    table: Table,
}

impl PyTable {
    pub fn new(table: Table) -> PyTable {
        PyTable { table }
    }
}

/// The columns asked for (any iterable of names; `None` for all), a bad argument refused as a usage
/// error that names it: a lone string (it would be taken letter by letter), a name that is not a string,
/// a name that is no column, or none at all. `read_table` and `Capture.table` both take them here.
pub fn columns(py: Python<'_>, names: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Column>> {
    let names = match names {
        None => None,
        Some(given) => Some(column_names(py, given)?),
    };
    table::select(names.as_deref())
        .map_err(|e| errors::usage(py, e.to_string(), e.token().unwrap_or("columns")))
}

fn column_names(py: Python<'_>, given: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let not_a_list = || {
        let shown = given.repr().map_or_else(|_| "?".into(), |r| r.to_string());
        errors::usage(
            py,
            format!("columns={shown}: expected a list of column names"),
            "columns",
        )
    };
    if given.is_instance_of::<PyString>() {
        return Err(not_a_list());
    }
    let mut names = Vec::new();
    for item in given.try_iter().map_err(|_| not_a_list())? {
        let item = item?;
        match item.extract::<String>() {
            Ok(name) => names.push(name),
            Err(_) => {
                let shown = item.repr().map_or_else(|_| "?".into(), |r| r.to_string());
                let message = format!("columns: {shown} is not a column name (expected strings)");
                return Err(errors::usage(py, message, "columns"));
            }
        }
    }
    Ok(names)
}

#[pymethods]
impl PyTable {
    /// The table as an Arrow C stream, in a capsule named ``arrow_array_stream``. A requested schema
    /// is not honoured: the columns come as they are made.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let batches: Vec<RecordBatch> = self.table.batches.clone();
        let reader =
            RecordBatchIterator::new(batches.into_iter().map(Ok), self.table.schema.clone());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, STREAM_CAPSULE)
    }

    /// How many rows (packets).
    #[getter]
    fn num_rows(&self) -> usize {
        self.table.num_rows()
    }

    /// The columns' names, in order.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        let fields = self.table.schema.fields();
        fields.iter().map(|f| f.name().clone()).collect()
    }

    fn __len__(&self) -> usize {
        self.table.num_rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Table {} rows: {}>",
            self.table.num_rows(),
            self.column_names().join(", ")
        )
    }
}

/// The matching packets of a capture file as a table, read in one pass with the GIL released.
#[pyfunction]
#[pyo3(signature = (path, filter = None, snaplen = None, count = None, columns = None))]
pub fn read_table(
    py: Python<'_>,
    path: PathBuf,
    filter: Option<PyRef<'_, PyFilter>>,
    snaplen: Option<u32>,
    count: Option<u64>,
    columns: Option<Bound<'_, PyAny>>,
) -> PyResult<PyTable> {
    let columns = self::columns(py, columns.as_ref())?;
    let filter = filter.map(|f| f.inner.clone());
    let mut builder = TableBuilder::new(columns);
    for_each_packet(py, &path, filter, snaplen, count, |meta, data| {
        builder.push(meta, data)
    })?;
    Ok(PyTable::new(builder.finish()))
}
