//! pcapdump's engine. Pure Rust, no Python: the filter language and its BPF compiler, header decoding,
//! brief lines, pcap files, and (on Linux) live capture from AF_PACKET rings and the interfaces to capture on.

pub mod bpf;
pub mod brief;
pub mod bytes;
pub mod capture;
pub mod clock;
pub mod error;
pub mod filter;
pub mod flows;
pub mod interfaces;
pub mod limits;
pub mod offline;
pub mod packet;
pub mod pcap;
pub mod table;
pub mod textfmt;

pub use error::{Error, ErrorKind};

/// The engine's version, reported next to the package's by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
