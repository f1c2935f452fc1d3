//! Packets as an Arrow table: one row per packet, its columns read from the packet's [`Fields`], built
//! column by column in record batches, with no object per packet.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, ListBuilder, StringBuilder, TimestampNanosecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::brief::{fields_of, push_tcp_flags, Addr, Fields, PacketMeta};
use crate::capture::buffer::{IfaceId, SharedBuffer};
use crate::packet::LinkType;
use crate::textfmt::push_mac;

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

/// A column name that is not one of [`Column::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no column {name:?}: the columns are {}", Column::ALL.map(Column::name).join(", "))]
pub struct UnknownColumn {
    pub name: String,
}

/// The columns asked for, in the order asked; all of them for `None`. A name given twice is kept once.
pub fn select(names: Option<&[String]>) -> Result<Vec<Column>, UnknownColumn> {
    let Some(names) = names else {
        return Ok(Column::ALL.to_vec());
    };
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let column = Column::by_name(name).ok_or_else(|| UnknownColumn { name: name.clone() })?;
        if !columns.contains(&column) {
            columns.push(column);
        }
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

/// One interface of a capture buffer, as a table names it.
pub struct BufferIface<'a> {
    pub id: IfaceId,
    pub name: &'a str,
    pub link: LinkType,
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
            let meta = PacketMeta {
                index: p.seq + 1,
                ts_ns: p.ts_ns,
                iface: Some(ifaces[i].name),
                direction: Some(p.direction),
                wirelen: p.wirelen,
                link: ifaces[i].link,
            };
            b.push(&meta, p.data);
            p.data.len()
        },
        |_| Ok(()),
    );
    walked.expect("building a table writes nowhere");
    builder.finish()
}

/// Builds a [`Table`] one packet at a time.
pub struct TableBuilder {
    columns: Vec<Column>,
    schema: SchemaRef,
    builders: Vec<Box<dyn ArrayBuilder>>,
    batches: Vec<RecordBatch>,
    rows: usize,
    /// Scratch space for the text of one cell and for a packet's info text.
    text: Vec<u8>,
    info: Vec<u8>,
}

impl TableBuilder {
    pub fn new(columns: Vec<Column>) -> TableBuilder {
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| c.field()).collect::<Vec<_>>(),
        ));
        let builders = columns.iter().map(|c| new_builder(*c)).collect();
        TableBuilder {
            columns,
            schema,
            builders,
            batches: Vec::new(),
            rows: 0,
            text: Vec::with_capacity(64),
            info: Vec::with_capacity(128),
        }
    }

    /// Add the row of one packet: `data` as captured, `meta` what is known about it besides.
    pub fn push(&mut self, meta: &PacketMeta, data: &[u8]) {
        self.info.clear();
        let fields = fields_of(data, meta.link, meta.wirelen, &mut self.info);
        let cells = Cells {
            meta,
            caplen: data.len() as u32,
            fields: &fields,
            info: &self.info,
        };
        for (column, builder) in self.columns.iter().zip(self.builders.iter_mut()) {
            cells.append(*column, builder.as_mut(), &mut self.text);
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
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .expect("every builder got one value per row, of its column's type");
        self.batches.push(batch);
        self.rows = 0;
    }
}

/// Everything one row is made of.
struct Cells<'a> {
    meta: &'a PacketMeta<'a>,
    caplen: u32,
    fields: &'a Fields,
    info: &'a [u8],
}

impl Cells<'_> {
    fn append(&self, column: Column, builder: &mut dyn ArrayBuilder, text: &mut Vec<u8>) {
        let (meta, f) = (self.meta, self.fields);
        match column {
            Column::Index => downcast::<UInt64Builder>(builder).append_value(meta.index),
            Column::Ts => downcast::<TimestampNanosecondBuilder>(builder)
                .append_value(i64::try_from(meta.ts_ns).unwrap_or(i64::MAX)),
            Column::Iface => downcast::<StringBuilder>(builder).append_option(meta.iface),
            Column::Direction => {
                downcast::<StringBuilder>(builder).append_option(meta.direction.map(|d| d.as_str()))
            }
            Column::Caplen => downcast::<UInt32Builder>(builder).append_value(self.caplen),
            Column::Wirelen => downcast::<UInt32Builder>(builder).append_value(meta.wirelen),
            Column::EthSrc => append_mac(builder, f.eth_src, text),
            Column::EthDst => append_mac(builder, f.eth_dst, text),
            Column::Vlan => {
                let list = downcast::<ListBuilder<UInt16Builder>>(builder);
                list.values().append_slice(f.vlans());
                list.append(true);
            }
            Column::Proto => downcast::<StringBuilder>(builder).append_value(f.proto),
            Column::Src => append_addr(builder, f.src, text),
            Column::Dst => append_addr(builder, f.dst, text),
            Column::Sport => downcast::<UInt16Builder>(builder).append_option(f.sport),
            Column::Dport => downcast::<UInt16Builder>(builder).append_option(f.dport),
            Column::IpProto => downcast::<UInt8Builder>(builder).append_option(f.ip_proto),
            Column::TcpFlags => {
                let b = downcast::<StringBuilder>(builder);
                match f.tcp_flags {
                    Some(flags) => {
                        text.clear();
                        push_tcp_flags(text, flags);
                        b.append_value(ascii(text));
                    }
                    None => b.append_null(),
                }
            }
            Column::Info => downcast::<StringBuilder>(builder).append_value(ascii(self.info)),
        }
    }
}

fn new_builder(column: Column) -> Box<dyn ArrayBuilder> {
    let rows = BATCH_ROWS;
    match column {
        Column::Index => Box::new(UInt64Builder::with_capacity(rows)),
        Column::Ts => {
            Box::new(TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"))
        }
        Column::Caplen | Column::Wirelen => Box::new(UInt32Builder::with_capacity(rows)),
        Column::Vlan => Box::new(
            ListBuilder::new(UInt16Builder::new()).with_field(Arc::new(Field::new(
                "item",
                DataType::UInt16,
                false,
            ))),
        ),
        Column::Sport | Column::Dport => Box::new(UInt16Builder::with_capacity(rows)),
        Column::IpProto => Box::new(UInt8Builder::with_capacity(rows)),
        Column::Iface
        | Column::Direction
        | Column::EthSrc
        | Column::EthDst
        | Column::Proto
        | Column::Src
        | Column::Dst
        | Column::TcpFlags
        | Column::Info => Box::new(StringBuilder::with_capacity(rows, rows * 16)),
    }
}

fn downcast<T: 'static>(builder: &mut dyn ArrayBuilder) -> &mut T {
    builder
        .as_any_mut()
        .downcast_mut::<T>()
        .expect("each column's builder is made by new_builder for that column")
}

fn append_mac(builder: &mut dyn ArrayBuilder, mac: Option<[u8; 6]>, text: &mut Vec<u8>) {
    let b = downcast::<StringBuilder>(builder);
    match mac {
        Some(m) => {
            text.clear();
            push_mac(text, m);
            b.append_value(ascii(text));
        }
        None => b.append_null(),
    }
}

fn append_addr(builder: &mut dyn ArrayBuilder, addr: Addr, text: &mut Vec<u8>) {
    let b = downcast::<StringBuilder>(builder);
    if addr == Addr::None {
        b.append_null();
    } else {
        text.clear();
        addr.push(text);
        b.append_value(ascii(text));
    }
}

/// Text the formatters wrote: ASCII by construction (names and numbers); anything else is replaced.
fn ascii(text: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Direction;
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
