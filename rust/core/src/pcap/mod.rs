//! Capture files: the classic pcap and the pcapng writers, and a reader for pcap and pcapng
//! (memory-mapped files, and streams read as they arrive, gzip-compressed ones inflated on the way).

mod atomic;
mod chunks;
mod guard;
mod gzip;
mod pcapng;
mod reader;
mod writer;

pub use atomic::{AtomicFile, TEMP_SUFFIX};
pub use chunks::{
    ChunkRecords, Frame, PcapLayout, MAX_PCAP_RECORD, PCAP_HEADER_LEN, RECORD_HEADER,
};
pub use pcapng::{
    encode_commented_packet, encode_packet_into, encode_stats, packet_block_len, InterfaceBlock,
    InterfaceStats, PcapngWriter, Section,
};
pub use reader::{CaptureFile, Cursor, ReadError, ReadErrorKind, Record, Waiter, MAX_BLOCK};
pub use writer::{encode_record, encode_record_into, PcapWriter};

/// The largest record we accept when reading, and the largest snap length when capturing (256 KiB).
pub const MAX_RECORD: u32 = crate::limits::MAX_SNAPLEN;
