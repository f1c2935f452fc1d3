//! Classic pcap records in a buffer of the file's bytes, for walking a file on several threads. Records
//! form a chain (each header gives the next one's offset), so a buffer is cut at record boundaries by
//! one thread skimming the headers, which costs a load per record on bytes just read; the records of
//! each buffer are then read, filtered and printed anywhere.
//!
//! A skim stops before the first record that is not whole in the buffer, or not well formed (oversized,
//! an all-zero header that may be a truncated file's zeros): the general parser reads on from a record
//! that is not well formed, and says what is wrong exactly as it would have.

use super::reader::{cooked_direction, prefetch_ahead, read_u32};
use super::{Record, MAX_RECORD};
use crate::packet::LinkType;

/// Where the first record of a classic pcap file starts.
pub const PCAP_HEADER_LEN: usize = 24;
/// A record's header: its time, captured and original lengths.
pub const RECORD_HEADER: usize = 16;
/// A buffer this long holds any whole record.
pub const MAX_PCAP_RECORD: usize = RECORD_HEADER + MAX_RECORD as usize;

/// How the records of a classic pcap file are laid out.
#[derive(Clone, Copy, Debug)]
pub struct PcapLayout {
    pub big_endian: bool,
    pub nanos: bool,
    pub link: LinkType,
}

impl PcapLayout {
    /// The run of whole, well-formed records at the start of `bytes`, at most `max_records` of them:
    /// its length and its number of records.
    pub fn skim(&self, bytes: &[u8], max_records: u64) -> (usize, u64) {
        let (mut at, mut records, mut prefetched) = (0, 0, 0);
        loop {
            if bytes.len() - at < RECORD_HEADER || records == max_records {
                return (at, records);
            }
            prefetch_ahead(bytes, at, &mut prefetched);
            let caplen = read_u32(bytes, at + 8, self.big_endian);
            if caplen > MAX_RECORD
                || (caplen == 0 && bytes[at..at + RECORD_HEADER] == [0; RECORD_HEADER])
            {
                return (at, records);
            }
            let end = at + RECORD_HEADER + caplen as usize;
            if end > bytes.len() {
                return (at, records);
            }
            at = end;
            records += 1;
        }
    }

    /// The length of the record that starts `bytes`, header included, as its header says (whether or
    /// not the record is well formed): `None` when `bytes` is shorter than a header.
    pub fn record_len(&self, bytes: &[u8]) -> Option<usize> {
        (bytes.len() >= RECORD_HEADER)
            .then(|| RECORD_HEADER + read_u32(bytes, 8, self.big_endian) as usize)
    }

    /// The records of `bytes` from index `start` on, which is byte `offset` of the file and the start of
    /// record number `first`.
    pub fn records<'b>(
        &self,
        bytes: &'b [u8],
        start: usize,
        offset: usize,
        first: u64,
    ) -> ChunkRecords<'b> {
        ChunkRecords {
            layout: *self,
            bytes,
            start,
            offset,
            first,
        }
    }

    /// Whether records are stored as our pcap writer writes them (microseconds, little-endian).
    pub fn is_written_as_ours(&self) -> bool {
        !self.big_endian && !self.nanos
    }
}

/// Whole records of a classic pcap file, in a buffer from index `start` to its end.
#[derive(Clone, Copy)]
pub struct ChunkRecords<'b> {
    layout: PcapLayout,
    bytes: &'b [u8],
    start: usize,
    /// The file offset of index `start`.
    offset: usize,
    first: u64,
}

/// A record's place in its buffer (the whole buffer, not from `start`) and its captured bytes: what a filter needs, read for every record;
/// the rest of the record is read only for those it keeps (`ChunkRecords::record`).
#[derive(Clone, Copy)]
pub struct Frame<'b> {
    pub at: usize,
    pub data: &'b [u8],
}

impl<'b> ChunkRecords<'b> {
    pub fn link(&self) -> LinkType {
        self.layout.link
    }

    /// The number of the first record.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Every record's frame, in order.
    pub fn frames(&self) -> Frames<'b> {
        Frames {
            bytes: self.bytes,
            big_endian: self.layout.big_endian,
            at: self.start,
            prefetched: self.start,
        }
    }

    /// The whole record of `frame`, which is record number `number`.
    #[inline]
    pub fn record(&self, frame: Frame<'b>, number: u64) -> Record<'b> {
        let (b, at, be) = (self.bytes, frame.at, self.layout.big_endian);
        let secs = read_u32(b, at, be) as u64;
        let frac = read_u32(b, at + 4, be) as u64;
        let link = self.layout.link;
        Record {
            number,
            offset: self.offset + at - self.start,
            ts_ns: secs * 1_000_000_000
                + if self.layout.nanos {
                    frac
                } else {
                    frac * 1_000
                },
            data: frame.data,
            wirelen: read_u32(b, at + 12, be),
            link,
            iface: None,
            direction: cooked_direction(frame.data, link),
        }
    }

    /// The record of `frame` as stored, header and data, and where it starts in the whole buffer.
    pub fn stored(&self, frame: Frame<'b>) -> (usize, &'b [u8]) {
        (
            frame.at,
            &self.bytes[frame.at..frame.at + RECORD_HEADER + frame.data.len()],
        )
    }
}

pub struct Frames<'b> {
    bytes: &'b [u8],
    big_endian: bool,
    at: usize,
    /// Bytes before this were asked of the cache already.
    prefetched: usize,
}

impl<'b> Iterator for Frames<'b> {
    type Item = Frame<'b>;

    #[inline]
    fn next(&mut self) -> Option<Frame<'b>> {
        let (b, at) = (self.bytes, self.at);
        if b.len() - at < RECORD_HEADER {
            return None;
        }
        prefetch_ahead(b, at, &mut self.prefetched);
        let caplen = read_u32(b, at + 8, self.big_endian) as usize;
        // Whole records only (the skim saw to it); checked anyway, since it costs nothing.
        let data = b.get(at + RECORD_HEADER..)?.get(..caplen)?;
        self.at = at + RECORD_HEADER + caplen;
        Some(Frame { at, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(sizes: &[usize], be: bool) -> Vec<u8> {
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut out = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            for v in [i as u32 + 1, 7, n as u32, n as u32 + 4] {
                out.extend_from_slice(&u32b(v));
            }
            out.extend(std::iter::repeat_n(i as u8, n));
        }
        out
    }

    fn layout(be: bool) -> PcapLayout {
        PcapLayout {
            big_endian: be,
            nanos: false,
            link: LinkType::Ethernet,
        }
    }

    #[test]
    fn buffers_cut_at_any_place_give_every_record_once_in_order() {
        for be in [false, true] {
            let sizes: Vec<usize> = (0..200).map(|i| (i * 37) % 300 + 1).collect();
            let bytes = records(&sizes, be);
            for size in [17, 100, 1000, 1 << 20] {
                let (mut at, mut first, mut seen) = (0, 1, Vec::new());
                while at < bytes.len() {
                    let buf = &bytes[at..bytes.len().min(at + size.max(16 + 300))];
                    let (len, n) = layout(be).skim(buf, 7);
                    assert!(n <= 7);
                    assert!(len > 0, "no progress at {at}");
                    let chunk = layout(be).records(&buf[..len], 0, at, first);
                    let recs: Vec<_> = (first..)
                        .zip(chunk.frames())
                        .map(|(n, f)| chunk.record(f, n))
                        .collect();
                    assert_eq!(recs.len() as u64, n);
                    seen.extend(
                        recs.iter()
                            .map(|r| (r.number, r.data.len(), r.ts_ns, r.wirelen)),
                    );
                    (at, first) = (at + len, first + n);
                }
                let expected: Vec<_> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let i = i as u64 + 1;
                        (i, n, i * 1_000_000_000 + 7_000, n as u32 + 4)
                    })
                    .collect();
                assert_eq!(seen, expected, "buffers of {size}, big-endian {be}");
            }
        }
    }

    #[test]
    fn a_skim_stops_before_a_record_that_is_not_whole_or_well_formed() {
        let whole = records(&[10, 20, 30], false);
        let third = 16 + 10 + 16 + 20;
        let end = |bytes: &[u8]| layout(false).skim(bytes, u64::MAX);
        assert_eq!(end(&whole[..whole.len() - 1]), (third, 2));
        assert_eq!(end(&whole[..third + 8]), (third, 2));
        let mut oversized = whole.clone();
        oversized[third + 8..third + 12].copy_from_slice(&(MAX_RECORD + 1).to_le_bytes());
        assert_eq!(end(&oversized), (third, 2));
        let mut zeros = whole.clone();
        zeros[third..third + 16].fill(0);
        assert_eq!(end(&zeros), (third, 2));
        assert_eq!(end(&whole), (whole.len(), 3));
    }
}
