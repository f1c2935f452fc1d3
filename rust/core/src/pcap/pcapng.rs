//! pcapng, written: a section header naming the program, the system and the machine; one interface
//! description per interface (name, nanosecond timestamps, snap length, link type, the BPF program the
//! kernel ran); enhanced packet blocks with their direction and an optional comment; interface
//! statistics at the end. Little-endian, the host's order on every machine we run on.
//!
//! Blocks are laid out into memory and written whole, so the writer can feed a pipe block by block
//! (`flush` after each) as well as a file in large writes (`encode_packet_into` fills a chunk).

use std::io::{self, Write};

use crate::bpf::Insn;
use crate::packet::{Direction, LinkType};

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const ISB: u32 = 5;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// Option codes (pcapng specification, section 4 and its blocks' option tables).
mod opt {
    pub const END: u16 = 0;
    pub const COMMENT: u16 = 1;
    pub const SHB_HARDWARE: u16 = 2;
    pub const SHB_OS: u16 = 3;
    pub const SHB_USERAPPL: u16 = 4;
    pub const IF_NAME: u16 = 2;
    pub const IF_TSRESOL: u16 = 9;
    pub const IF_FILTER: u16 = 11;
    pub const EPB_FLAGS: u16 = 2;
    pub const ISB_STARTTIME: u16 = 2;
    pub const ISB_ENDTIME: u16 = 3;
    pub const ISB_IFRECV: u16 = 4;
    pub const ISB_IFDROP: u16 = 5;
    pub const ISB_OSDROP: u16 = 7;
    pub const ISB_USRDELIV: u16 = 8;
}

/// `if_tsresol` = 9: timestamps count nanoseconds, as the kernel gives them.
const NANOSECONDS: u8 = 9;
/// The first byte of `if_filter`: what follows is a BPF program (`struct bpf_insn` array).
const FILTER_BPF: u8 = 1;
/// An option's value is at most this long (its length field is 16 bits); longer text is cut.
const MAX_OPTION: usize = u16::MAX as usize & !3;
/// Block header (type, length, and for an EPB its five fixed fields) and trailer, without options.
const EPB_FIXED: usize = 8 + 20 + 4;

/// Who wrote the file, on what: the section header's options.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub application: String,
    pub os: String,
    pub hardware: String,
}

impl Section {
    /// This program on this machine: `pcapdump <version>`, the kernel (`Linux 6.1.0-18-amd64`) and the
    /// machine (`x86_64`), as `uname` tells them.
    pub fn here() -> Section {
        let (os, hardware) = uname();
        Section {
            application: format!("pcapdump {}", crate::VERSION),
            os,
            hardware,
        }
    }
}

#[cfg(unix)]
fn uname() -> (String, String) {
    // SAFETY: uname fills the struct we own; a zeroed utsname is a valid value to start from.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return (
            std::env::consts::OS.to_owned(),
            std::env::consts::ARCH.to_owned(),
        );
    }
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (
        format!("{} {}", text(&u.sysname), text(&u.release)),
        text(&u.machine),
    )
}

#[cfg(not(unix))]
fn uname() -> (String, String) {
    (
        std::env::consts::OS.to_owned(),
        std::env::consts::ARCH.to_owned(),
    )
}

/// One interface of the file.
#[derive(Clone, Copy, Debug)]
pub struct InterfaceBlock<'a> {
    pub name: &'a str,
    pub link: LinkType,
    pub snaplen: u32,
    /// The program that ran in the kernel for this capture, if any.
    pub filter: Option<&'a [Insn]>,
}

/// What an interface's capture counted, for its statistics block. `None`: not known (left out).
#[derive(Clone, Copy, Debug, Default)]
pub struct InterfaceStats {
    pub start_ns: Option<u64>,
    pub end_ns: u64,
    /// Packets the filter passed (kept, or dropped for want of room).
    pub received: Option<u64>,
    /// Dropped by the kernel: its ring was full.
    pub kernel_drops: Option<u64>,
    /// Dropped by us: the capture buffer was full.
    pub buffer_drops: Option<u64>,
    /// Handed to the file.
    pub delivered: Option<u64>,
}

/// Where a packet went through its interface: `epb_flags` bits 0–1.
fn direction_flags(direction: Option<Direction>) -> u32 {
    match direction {
        Some(Direction::In) => 1,
        Some(Direction::Out) => 2,
        None => 0,
    }
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends blocks to a byte vector: the one place that knows the layout.
struct Block<'v> {
    out: &'v mut Vec<u8>,
    start: usize,
}

impl<'v> Block<'v> {
    fn begin(out: &'v mut Vec<u8>, kind: u32) -> Self {
        let start = out.len();
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // the length, once known
        Block { out, start }
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn timestamp(&mut self, ns: u64) -> &mut Self {
        self.u32((ns >> 32) as u32).u32(ns as u32)
    }

    fn bytes_padded(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self.out.resize(self.out.len() + pad4(b.len()) - b.len(), 0);
        self
    }

    fn option(&mut self, code: u16, value: &[u8]) -> &mut Self {
        let value = &value[..value.len().min(MAX_OPTION)];
        self.u16(code).u16(value.len() as u16).bytes_padded(value)
    }

    fn text_option(&mut self, code: u16, text: &str) -> &mut Self {
        if text.is_empty() {
            return self;
        }
        // Cut at a character boundary: an option's text is UTF-8.
        let mut end = text.len().min(MAX_OPTION);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.option(code, &text.as_bytes()[..end])
    }

    fn u64_option(&mut self, code: u16, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.option(code, &v.to_le_bytes()),
            None => self,
        }
    }

    fn timestamp_option(&mut self, code: u16, ns: Option<u64>) -> &mut Self {
        match ns {
            Some(ns) => {
                let mut v = [0u8; 8];
                v[..4].copy_from_slice(&((ns >> 32) as u32).to_le_bytes());
                v[4..].copy_from_slice(&(ns as u32).to_le_bytes());
                self.option(code, &v)
            }
            None => self,
        }
    }

    /// The end-of-options marker (when there were options), the trailing length, and the length in
    /// the header.
    fn finish(&mut self, had_options: bool) {
        if had_options {
            self.u16(opt::END).u16(0);
        }
        let len = (self.out.len() - self.start + 4) as u32;
        self.u32(len);
        self.out[self.start + 4..self.start + 8].copy_from_slice(&len.to_le_bytes());
    }
}

/// Lay out an enhanced packet block at the front of `out`, which has room for it
/// (`packet_block_len`): returns its length. No allocation: the capture buffer's writer fills its chunk
/// with these.
#[inline]
pub fn encode_packet_into(
    out: &mut [u8],
    iface: u32,
    ts_ns: u64,
    data: &[u8],
    wirelen: u32,
    direction: Option<Direction>,
) -> usize {
    let caplen = data.len();
    let flags = direction_flags(direction);
    let options = if flags != 0 { 8 + 4 } else { 0 };
    let len = EPB_FIXED + pad4(caplen) + options;
    let mut at = 0;
    for field in [
        EPB,
        len as u32,
        iface,
        (ts_ns >> 32) as u32,
        ts_ns as u32,
        caplen as u32,
    ] {
        out[at..at + 4].copy_from_slice(&field.to_le_bytes());
        at += 4;
    }
    out[at..at + 4].copy_from_slice(&wirelen.max(caplen as u32).to_le_bytes());
    at += 4;
    crate::bytes::copy_short(&mut out[at..], data);
    at += caplen;
    let padded = EPB_FIXED - 4 + pad4(caplen);
    out[at..padded].fill(0);
    at = padded;
    if flags != 0 {
        out[at..at + 2].copy_from_slice(&opt::EPB_FLAGS.to_le_bytes());
        out[at + 2..at + 4].copy_from_slice(&4u16.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
        out[at + 8..at + 12].fill(0); // the end of options
        at += 12;
    }
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    at + 4
}

/// Append an enhanced packet block that carries `comment` (`opt_comment`) to `out`.
pub fn encode_commented_packet(
    out: &mut Vec<u8>,
    iface: u32,
    ts_ns: u64,
    data: &[u8],
    wirelen: u32,
    direction: Option<Direction>,
    comment: &str,
) {
    let mut b = Block::begin(out, EPB);
    b.u32(iface).timestamp(ts_ns);
    b.u32(data.len() as u32)
        .u32(wirelen.max(data.len() as u32))
        .bytes_padded(data);
    let flags = direction_flags(direction);
    if flags != 0 {
        b.option(opt::EPB_FLAGS, &flags.to_le_bytes());
    }
    b.text_option(opt::COMMENT, comment).finish(true);
}

/// Append the statistics block of interface `iface` to `out`, stamped `stats.end_ns`.
pub fn encode_stats(out: &mut Vec<u8>, iface: u32, stats: &InterfaceStats) {
    let mut b = Block::begin(out, ISB);
    b.u32(iface).timestamp(stats.end_ns);
    b.timestamp_option(opt::ISB_STARTTIME, stats.start_ns)
        .timestamp_option(opt::ISB_ENDTIME, Some(stats.end_ns))
        .u64_option(opt::ISB_IFRECV, stats.received)
        .u64_option(opt::ISB_IFDROP, stats.kernel_drops)
        .u64_option(opt::ISB_OSDROP, stats.buffer_drops)
        .u64_option(opt::ISB_USRDELIV, stats.delivered)
        .finish(true);
}

/// The most bytes `encode_packet_into` writes for `caplen` bytes of data.
pub const fn packet_block_len(caplen: usize) -> usize {
    EPB_FIXED + ((caplen + 3) & !3) + 12
}

/// A pcapng section written block by block into `out`.
pub struct PcapngWriter<W: Write> {
    out: W,
    block: Vec<u8>,
    interfaces: u32,
}

impl<W: Write> PcapngWriter<W> {
    /// Write the section header.
    pub fn new(out: W, section: &Section) -> io::Result<Self> {
        let mut w = PcapngWriter {
            out,
            block: Vec::with_capacity(256),
            interfaces: 0,
        };
        let mut b = Block::begin(&mut w.block, SHB);
        b.u32(BYTE_ORDER_MAGIC).u16(1).u16(0);
        b.u32(u32::MAX).u32(u32::MAX); // section length: not given (-1)
        b.text_option(opt::SHB_HARDWARE, &section.hardware)
            .text_option(opt::SHB_OS, &section.os)
            .text_option(opt::SHB_USERAPPL, &section.application)
            .finish(true);
        w.emit()?;
        Ok(w)
    }

    fn emit(&mut self) -> io::Result<()> {
        let r = self.out.write_all(&self.block);
        self.block.clear();
        r
    }

    /// Describe the next interface; returns its id, which its packets name.
    pub fn add_interface(&mut self, iface: &InterfaceBlock) -> io::Result<u32> {
        let mut b = Block::begin(&mut self.block, IDB);
        b.u16(iface.link.number() as u16).u16(0).u32(iface.snaplen);
        b.text_option(opt::IF_NAME, iface.name)
            .option(opt::IF_TSRESOL, &[NANOSECONDS]);
        if let Some(program) = iface.filter {
            let mut value = Vec::with_capacity(1 + 8 * program.len());
            value.push(FILTER_BPF);
            for insn in program {
                value.extend_from_slice(&insn.code.to_le_bytes());
                value.extend_from_slice(&[insn.jt, insn.jf]);
                value.extend_from_slice(&insn.k.to_le_bytes());
            }
            b.option(opt::IF_FILTER, &value);
        }
        b.finish(true);
        self.emit()?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// One packet of interface `iface`; `data` as captured (already cut to the snap length), `wirelen`
    /// its length on the wire; a `comment` says something about it (a trigger fired on it).
    pub fn write_packet(
        &mut self,
        iface: u32,
        ts_ns: u64,
        data: &[u8],
        wirelen: u32,
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> io::Result<()> {
        debug_assert!(
            iface < self.interfaces,
            "a packet of an undescribed interface"
        );
        let Some(comment) = comment else {
            let start = self.block.len();
            self.block.resize(start + packet_block_len(data.len()), 0);
            let n = encode_packet_into(
                &mut self.block[start..],
                iface,
                ts_ns,
                data,
                wirelen,
                direction,
            );
            self.block.truncate(start + n);
            return self.emit();
        };
        encode_commented_packet(
            &mut self.block,
            iface,
            ts_ns,
            data,
            wirelen,
            direction,
            comment,
        );
        self.emit()
    }

    /// Blocks laid out elsewhere (`encode_packet_into`), written as they are.
    pub fn write_encoded(&mut self, blocks: &[u8]) -> io::Result<()> {
        self.out.write_all(blocks)
    }

    /// The statistics of interface `iface`, stamped `stats.end_ns`.
    pub fn write_stats(&mut self, iface: u32, stats: &InterfaceStats) -> io::Result<()> {
        encode_stats(&mut self.block, iface, stats);
        self.emit()
    }

    /// Push what was written on to its reader (a pipe: Wireshark shows the packet now).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::CaptureFile;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn every_block_is_whole_and_four_aligned() {
        let mut w = PcapngWriter::new(Vec::new(), &Section::here()).unwrap();
        let filter = [Insn::new(0x06, 0, 0, 262144)];
        w.add_interface(&InterfaceBlock {
            name: "int",
            link: LinkType::Ethernet,
            snaplen: 262144,
            filter: Some(&filter),
        })
        .unwrap();
        for (len, comment) in [(60, None), (61, Some("trigger")), (0, None), (1, Some(""))] {
            w.write_packet(0, 1, &vec![7; len], 99, Some(Direction::In), comment)
                .unwrap();
        }
        w.write_stats(
            0,
            &InterfaceStats {
                end_ns: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let b = w.into_inner();
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < b.len() {
            let len = u32_at(&b, at + 4) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(u32_at(&b, at + len - 4) as usize, len, "trailing length");
            kinds.push(u32_at(&b, at));
            at += len;
        }
        assert_eq!(at, b.len());
        assert_eq!(kinds, vec![SHB, IDB, EPB, EPB, EPB, EPB, ISB]);
    }

    #[test]
    fn our_reader_reads_interfaces_directions_and_nanoseconds_back() {
        let mut w = PcapngWriter::new(Vec::new(), &Section::here()).unwrap();
        for name in ["int", "ext"] {
            w.add_interface(&InterfaceBlock {
                name,
                link: LinkType::Ethernet,
                snaplen: 96,
                filter: None,
            })
            .unwrap();
        }
        let ts = 1_795_767_767_955_144_123;
        w.write_packet(0, ts, &[1; 60], 60, Some(Direction::In), None)
            .unwrap();
        w.write_packet(1, ts + 1, &[2; 61], 1514, Some(Direction::Out), Some("x"))
            .unwrap();
        w.write_packet(1, ts + 2, &[3; 62], 62, None, None).unwrap();
        let dir = std::env::temp_dir().join(format!("pcapng-test-{}", std::process::id()));
        std::fs::write(&dir, w.into_inner()).unwrap();
        let file = CaptureFile::open(&dir).unwrap();
        let mut got = Vec::new();
        file.for_each_record(|r| {
            let r = r.unwrap();
            got.push((
                r.iface.map(str::to_owned),
                r.direction,
                r.ts_ns,
                r.data.to_vec(),
                r.wirelen,
            ));
        });
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            got,
            vec![
                (Some("int".into()), Some(Direction::In), ts, vec![1; 60], 60),
                (
                    Some("ext".into()),
                    Some(Direction::Out),
                    ts + 1,
                    vec![2; 61],
                    1514
                ),
                (Some("ext".into()), None, ts + 2, vec![3; 62], 62),
            ]
        );
    }
}
