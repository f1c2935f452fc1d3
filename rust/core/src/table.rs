//! Packets as an Arrow table: one row per packet, its columns read from the packet's [`Fields`], built
//! column by column in record batches, with no object per packet.

use std::sync::Arc;

use arrow_array::builder::{
    ListBuilder, StringBuilder, TimestampNanosecondBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder, UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::brief::{fields_of, push_tcp_flags, Addr, Fields, PacketMeta};
use crate::capture::buffer::{BufferIface, IfaceId, SharedBuffer};

/// Rows per record batch: large enough that a batch's overhead does not count, small enough that a
/// consumer can start before the whole capture is converted.
pub const BATCH_ROWS: usize = 64 * 1024;

/// The columns, in their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Index,
    Ts,
    Iface,
    Direction,
    Caplen,
    Wirelen,
    EthSrc,
    EthDst,
    Vlan,
    Proto,
    Src,
    Dst,
    Sport,
    Dport,
    IpProto,
    TcpFlags,
    Info,
}

impl Column {
    pub const ALL: [Column; 17] = [
        Column::Index,
        Column::Ts,
        Column::Iface,
        Column::Direction,
        Column::Caplen,
        Column::Wirelen,
        Column::EthSrc,
        Column::EthDst,
        Column::Vlan,
        Column::Proto,
        Column::Src,
        Column::Dst,
        Column::Sport,
        Column::Dport,
        Column::IpProto,
        Column::TcpFlags,
        Column::Info,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::Index => "index",
            Column::Ts => "ts",
            Column::Iface => "iface",
            Column::Direction => "direction",
            Column::Caplen => "caplen",
            Column::Wirelen => "wirelen",
            Column::EthSrc => "eth_src",
            Column::EthDst => "eth_dst",
            Column::Vlan => "vlan",
            Column::Proto => "proto",
            Column::Src => "src",
            Column::Dst => "dst",
            Column::Sport => "sport",
            Column::Dport => "dport",
            Column::IpProto => "ip_proto",
            Column::TcpFlags => "tcp_flags",
            Column::Info => "info",
        }
    }

    pub fn by_name(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }

    fn field(self) -> Field {
        let (data_type, nullable) = match self {
            Column::Index => (DataType::UInt64, false),
            Column::Ts => (
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Column::Caplen | Column::Wirelen => (DataType::UInt32, false),
            Column::Vlan => (
                DataType::List(Arc::new(Field::new("item", DataType::UInt16, false))),
                false,
            ),
            Column::Proto | Column::Info => (DataType::Utf8, false),
            Column::Sport | Column::Dport => (DataType::UInt16, true),
            Column::IpProto => (DataType::UInt8, true),
            Column::Iface
            | Column::Direction
            | Column::EthSrc
            | Column::EthDst
            | Column::Src
            | Column::Dst
            | Column::TcpFlags => (DataType::Utf8, true),
        };
        Field::new(self.name(), data_type, nullable)
    }
}

/// Columns asked for that cannot make a table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnsError {
    #[error("no column {0:?}: the columns are {list}", list = Column::ALL.map(Column::name).join(", "))]
    Unknown(String),
    #[error("no columns asked for: name at least one of {list}", list = Column::ALL.map(Column::name).join(", "))]
    Empty,
}

impl ColumnsError {
    /// The word to blame: the unknown name.
    pub fn token(&self) -> Option<&str> {
        match self {
            ColumnsError::Unknown(name) => Some(name),
            ColumnsError::Empty => None,
        }
    }
}

/// The columns asked for, in the order asked; all of them for `None`. A name given twice is kept once
/// (a table's column names are its keys).
pub fn select(names: Option<&[String]>) -> Result<Vec<Column>, ColumnsError> {
    let Some(names) = names else {
        return Ok(Column::ALL.to_vec());
    };
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let column = Column::by_name(name).ok_or_else(|| ColumnsError::Unknown(name.clone()))?;
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    if columns.is_empty() {
        return Err(ColumnsError::Empty);
    }
    Ok(columns)
}

/// The finished table: a schema and its batches.
#[derive(Clone, Debug)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The packets `buffer` holds now of `ifaces`, as one timeline (the order `show -merge` prints), each
/// row indexed by its number in `show`.
pub fn from_buffer(buffer: &SharedBuffer, ifaces: &[BufferIface], columns: Vec<Column>) -> Table {
    let ids: Vec<IfaceId> = ifaces.iter().map(|i| i.id).collect();
    let mut builder = TableBuilder::new(columns);
    let walked = buffer.walk_merged(
        &ids,
        &mut builder,
        |b, i, p| {
            b.push(&ifaces[i].meta(p), p.data);
            p.data.len()
        },
        |_| Ok(()),
    );
    walked.expect("building a table writes nowhere");
    builder.finish()
}

/// Builds a [`Table`] one packet at a time.
pub struct TableBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    batches: Vec<RecordBatch>,
    /// Scratch space for the text of one cell, and for a packet's info text.
    text: Vec<u8>,
    info: Vec<u8>,
}

impl TableBuilder {
    pub fn new(columns: Vec<Column>) -> TableBuilder {
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| c.field()).collect::<Vec<_>>(),
        ));
        TableBuilder {
            schema,
            columns: columns.into_iter().map(ColumnBuilder::new).collect(),
            rows: 0,
            batches: Vec::new(),
            text: Vec::with_capacity(64),
            info: Vec::with_capacity(128),
        }
    }

    /// Add the row of one packet: `data` as captured, `meta` what is known about it besides.
    pub fn push(&mut self, meta: &PacketMeta, data: &[u8]) {
        self.info.clear();
        let fields = fields_of(data, meta.link, meta.wirelen, &mut self.info);
        let row = Row {
            meta,
            caplen: data.len() as u32,
            fields: &fields,
            info: &self.info,
        };
        for column in &mut self.columns {
            column.append(&row, &mut self.text);
        }
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.flush();
        }
    }

    pub fn finish(mut self) -> Table {
        if self.rows > 0 || self.batches.is_empty() {
            self.flush();
        }
        Table {
            schema: self.schema,
            batches: self.batches,
        }
    }

    fn flush(&mut self) {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .expect("every column got one value per row, of its type");
        self.batches.push(batch);
        self.rows = 0;
    }
}

/// Everything one row is made of.
struct Row<'a> {
    meta: &'a PacketMeta<'a>,
    caplen: u32,
    fields: &'a Fields,
    info: &'a [u8],
}

/// One column being built: its builder, of its column's type.
enum ColumnBuilder {
    Index(UInt64Builder),
    Ts(TimestampNanosecondBuilder),
    Iface(StringBuilder),
    Direction(StringBuilder),
    Caplen(UInt32Builder),
    Wirelen(UInt32Builder),
    EthSrc(StringBuilder),
    EthDst(StringBuilder),
    Vlan(ListBuilder<UInt16Builder>),
    Proto(StringBuilder),
    Src(StringBuilder),
    Dst(StringBuilder),
    Sport(UInt16Builder),
    Dport(UInt16Builder),
    IpProto(UInt8Builder),
    TcpFlags(StringBuilder),
    Info(StringBuilder),
}

impl ColumnBuilder {
    fn new(column: Column) -> ColumnBuilder {
        let rows = BATCH_ROWS;
        let text = |bytes_each: usize| StringBuilder::with_capacity(rows, rows * bytes_each);
        match column {
            Column::Index => ColumnBuilder::Index(UInt64Builder::with_capacity(rows)),
            Column::Ts => ColumnBuilder::Ts(
                TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            Column::Iface => ColumnBuilder::Iface(text(4)),
            Column::Direction => ColumnBuilder::Direction(text(3)),
            Column::Caplen => ColumnBuilder::Caplen(UInt32Builder::with_capacity(rows)),
            Column::Wirelen => ColumnBuilder::Wirelen(UInt32Builder::with_capacity(rows)),
            Column::EthSrc => ColumnBuilder::EthSrc(text(17)),
            Column::EthDst => ColumnBuilder::EthDst(text(17)),
            Column::Vlan => ColumnBuilder::Vlan(
                ListBuilder::with_capacity(UInt16Builder::new(), rows)
                    .with_field(Arc::new(Field::new("item", DataType::UInt16, false))),
            ),
            Column::Proto => ColumnBuilder::Proto(text(4)),
            Column::Src => ColumnBuilder::Src(text(12)),
            Column::Dst => ColumnBuilder::Dst(text(12)),
            Column::Sport => ColumnBuilder::Sport(UInt16Builder::with_capacity(rows)),
            Column::Dport => ColumnBuilder::Dport(UInt16Builder::with_capacity(rows)),
            Column::IpProto => ColumnBuilder::IpProto(UInt8Builder::with_capacity(rows)),
            Column::TcpFlags => ColumnBuilder::TcpFlags(text(2)),
            Column::Info => ColumnBuilder::Info(text(32)),
        }
    }

    fn append(&mut self, row: &Row, text: &mut Vec<u8>) {
        let (meta, f) = (row.meta, row.fields);
        match self {
            ColumnBuilder::Index(b) => b.append_value(meta.index),
            ColumnBuilder::Ts(b) => b.append_value(i64::try_from(meta.ts_ns).unwrap_or(i64::MAX)),
            ColumnBuilder::Iface(b) => b.append_option(meta.iface),
            ColumnBuilder::Direction(b) => b.append_option(meta.direction.map(|d| d.as_str())),
            ColumnBuilder::Caplen(b) => b.append_value(row.caplen),
            ColumnBuilder::Wirelen(b) => b.append_value(meta.wirelen),
            ColumnBuilder::EthSrc(b) => append_text(b, f.eth_src.map(Addr::Mac), text),
            ColumnBuilder::EthDst(b) => append_text(b, f.eth_dst.map(Addr::Mac), text),
            ColumnBuilder::Vlan(b) => {
                b.values().append_slice(f.vlans());
                b.append(true);
            }
            ColumnBuilder::Proto(b) => b.append_value(f.proto),
            ColumnBuilder::Src(b) => append_text(b, Some(f.src), text),
            ColumnBuilder::Dst(b) => append_text(b, Some(f.dst), text),
            ColumnBuilder::Sport(b) => b.append_option(f.sport),
            ColumnBuilder::Dport(b) => b.append_option(f.dport),
            ColumnBuilder::IpProto(b) => b.append_option(f.ip_proto),
            ColumnBuilder::TcpFlags(b) => match f.tcp_flags {
                Some(flags) => {
                    text.clear();
                    push_tcp_flags(text, flags);
                    b.append_value(as_str(text));
                }
                None => b.append_null(),
            },
            ColumnBuilder::Info(b) => b.append_value(as_str(row.info)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Index(b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(b) => Arc::new(b.finish()),
            ColumnBuilder::Caplen(b) | ColumnBuilder::Wirelen(b) => Arc::new(b.finish()),
            ColumnBuilder::Vlan(b) => Arc::new(b.finish()),
            ColumnBuilder::Sport(b) | ColumnBuilder::Dport(b) => Arc::new(b.finish()),
            ColumnBuilder::IpProto(b) => Arc::new(b.finish()),
            ColumnBuilder::Iface(b)
            | ColumnBuilder::Direction(b)
            | ColumnBuilder::EthSrc(b)
            | ColumnBuilder::EthDst(b)
            | ColumnBuilder::Proto(b)
            | ColumnBuilder::Src(b)
            | ColumnBuilder::Dst(b)
            | ColumnBuilder::TcpFlags(b)
            | ColumnBuilder::Info(b) => Arc::new(b.finish()),
        }
    }
}

/// An address as text, or null for none.
fn append_text(b: &mut StringBuilder, addr: Option<Addr>, text: &mut Vec<u8>) {
    match addr {
        Some(a) if a != Addr::None => {
            text.clear();
            a.push(text);
            b.append_value(as_str(text));
        }
        _ => b.append_null(),
    }
}

/// Text the formatters wrote: ASCII by construction (names and numbers), checked, not trusted.
fn as_str(text: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(text) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Direction, LinkType};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{TimestampNanosecondType, UInt16Type, UInt64Type};
    use arrow_array::Array;

    fn tagged_tcp_syn() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0, 0, 5, 8, 0];
        f.extend_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x12, 0xfa, 0xf0, 0, 0, 0, 0,
        ]);
        f
    }

    fn meta(index: u64, wirelen: u32) -> PacketMeta<'static> {
        PacketMeta {
            index,
            ts_ns: 1_700_000_000_123_456_789,
            iface: Some("int"),
            direction: Some(Direction::Out),
            wirelen,
            link: LinkType::Ethernet,
        }
    }

    #[test]
    fn a_row_holds_the_fields_of_its_packet() {
        let f = tagged_tcp_syn();
        let mut b = TableBuilder::new(select(None).unwrap());
        b.push(&meta(7, f.len() as u32 + 10), &f);
        b.push(&meta(8, 3), &f[..3]);
        let t = b.finish();
        assert_eq!((t.num_rows(), t.batches.len()), (2, 1));
        let batch = &t.batches[0];
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        assert_eq!(col("index").as_primitive::<UInt64Type>().values(), &[7, 8]);
        assert_eq!(
            col("ts").as_primitive::<TimestampNanosecondType>().value(0),
            1_700_000_000_123_456_789
        );
        let text = |name: &str, row: usize| {
            let c = col(name);
            let s = c.as_string::<i32>();
            (!s.is_null(row)).then(|| s.value(row).to_owned())
        };
        assert_eq!(text("direction", 0).as_deref(), Some("out"));
        assert_eq!(text("proto", 0).as_deref(), Some("TCP"));
        assert_eq!(text("src", 0).as_deref(), Some("198.18.0.1"));
        assert_eq!(text("tcp_flags", 0).as_deref(), Some("S."));
        assert_eq!(text("eth_src", 0).as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(text("tcp_flags", 1), None);
        assert_eq!(text("src", 1), None);
        let sport = col("sport");
        let sport = sport.as_primitive::<UInt16Type>();
        assert_eq!((sport.value(0), sport.is_null(1)), (40000, true));
        let vlan = col("vlan");
        let vlan = vlan.as_list::<i32>();
        assert_eq!(vlan.value(0).as_primitive::<UInt16Type>().values(), &[5]);
        assert_eq!(vlan.value(1).len(), 0);
    }

    #[test]
    fn columns_are_chosen_by_name_and_an_unknown_one_is_named() {
        let picked = select(Some(&["dport".into(), "ts".into(), "dport".into()])).unwrap();
        assert_eq!(picked, vec![Column::Dport, Column::Ts]);
        let t = TableBuilder::new(picked).finish();
        let names: Vec<_> = t.schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(
            (names, t.num_rows()),
            (vec!["dport".into(), "ts".into()], 0)
        );
        let e = select(Some(&["port".into()])).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("no column \"port\": the columns are index, ts,"));
    }

    #[test]
    fn rows_come_in_batches() {
        let f = tagged_tcp_syn();
        let mut b = TableBuilder::new(vec![Column::Index]);
        for i in 0..BATCH_ROWS as u64 + 1 {
            b.push(&meta(i, f.len() as u32), &f);
        }
        let t = b.finish();
        let sizes: Vec<_> = t.batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![BATCH_ROWS, 1]);
    }
}
