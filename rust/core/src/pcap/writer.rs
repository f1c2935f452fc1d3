//! Classic pcap: libpcap's magic in little-endian order, version 2.4, microsecond timestamps.
//!
//! The header is laid out exactly as libpcap writes it, so `tcpdump -r ours -w theirs` is byte-identical.

use std::io::{self, Write};

use crate::bytes::copy_short;
use crate::packet::LinkType;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;

pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W, link: LinkType, snaplen: u32) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        header[16..20].copy_from_slice(&snaplen.to_le_bytes());
        header[20..24].copy_from_slice(&link.number().to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Append one record; `data` longer than the snap length is cut, `wirelen` is kept.
    #[inline]
    pub fn write(&mut self, ts_ns: u64, data: &[u8], wirelen: u32) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        self.out
            .write_all(&record_header(ts_ns, data.len(), wirelen))?;
        self.out.write_all(data)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn record_header(ts_ns: u64, caplen: usize, wirelen: u32) -> [u8; 16] {
    let secs = (ts_ns / 1_000_000_000) as u32;
    let micros = ((ts_ns % 1_000_000_000) / 1_000) as u32;
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&micros.to_le_bytes());
    h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
    h[12..16].copy_from_slice(&wirelen.max(caplen as u32).to_le_bytes());
    h
}

/// Lay out one record as `PcapWriter::write` would at the front of `out`, which has room for it;
/// returns its length.
#[inline]
pub fn encode_record_into(
    out: &mut [u8],
    ts_ns: u64,
    data: &[u8],
    wirelen: u32,
    snaplen: u32,
) -> usize {
    let data = &data[..data.len().min(snaplen as usize)];
    out[..16].copy_from_slice(&record_header(ts_ns, data.len(), wirelen));
    copy_short(&mut out[16..], data);
    16 + data.len()
}

/// Lay out one record as `PcapWriter::write` would, into memory (to be written later in one piece).
#[inline]
pub fn encode_record(out: &mut Vec<u8>, ts_ns: u64, data: &[u8], wirelen: u32, snaplen: u32) {
    let data = &data[..data.len().min(snaplen as usize)];
    out.extend_from_slice(&record_header(ts_ns, data.len(), wirelen));
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 96).unwrap();
        w.write(1_700_000_000_123_456_789, &[0xaa; 100], 1514)
            .unwrap();
        let b = w.into_inner();
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(b.len(), 24 + 16 + 96);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 96);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 1514);
    }
}
