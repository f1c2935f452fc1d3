//! The reader against damaged input: arbitrary bytes and mutated valid files never panic, and every
//! record it yields lies inside the file.

use std::io::Write;
use std::path::PathBuf;

use pcapdump_core::brief::{BriefFormatter, PacketMeta};
use pcapdump_core::packet::LinkType;
use pcapdump_core::pcap::{CaptureFile, PcapWriter};
use proptest::prelude::*;

fn temp_file(bytes: &[u8]) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "pcapdump-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn read_all(bytes: &[u8]) -> (usize, bool) {
    let path = temp_file(bytes);
    let (mut n, mut failed) = (0, false);
    if let Ok(file) = CaptureFile::open(&path) {
        let mut fmt = BriefFormatter::new();
        let mut out = Vec::new();
        file.for_each_record(|r| match r {
            Ok(r) => {
                assert!(r.data.len() <= 262_144);
                let meta = PacketMeta::from(&r);
                fmt.text(&mut out, &meta, r.data);
                fmt.json(&mut out, &meta, r.data);
                n += 1;
            }
            Err(_) => failed = true,
        });
    } else {
        failed = true;
    }
    std::fs::remove_file(path).unwrap();
    (n, failed)
}

fn valid_pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 262_144).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(i as u64 * 1000, f, f.len() as u32).unwrap();
    }
    w.into_inner()
}

/// A minimal little-endian pcapng: SHB, IDB (Ethernet), one EPB per frame.
fn valid_pcapng(frames: &[Vec<u8>]) -> Vec<u8> {
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let n = (12 + body.len()) as u32;
        [
            &kind.to_le_bytes()[..],
            &n.to_le_bytes(),
            &body,
            &n.to_le_bytes(),
        ]
        .concat()
    }
    let mut out = block(
        0x0a0d0d0a,
        &[&0x1a2b3c4du32.to_le_bytes()[..], &[1, 0, 0, 0], &[0xff; 8]].concat(),
    );
    out.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
    for f in frames {
        let len = (f.len() as u32).to_le_bytes();
        out.extend(block(6, &[&[0u8; 12][..], &len, &len, f].concat()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        read_all(&bytes);
    }

    #[test]
    fn mutated_files_never_panic(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..6),
        ng in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = if ng { valid_pcapng(&frames) } else { valid_pcap(&frames) };
        let (n, failed) = read_all(&bytes);
        prop_assert_eq!((n, failed), (frames.len(), false));
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        read_all(&bytes);
    }
}

#[test]
fn a_cut_file_yields_its_whole_records_then_an_error() {
    let frames = vec![vec![1u8; 60], vec![2u8; 60]];
    let bytes = valid_pcap(&frames);
    assert_eq!(read_all(&bytes[..bytes.len() - 1]), (1, true));
    let ng = valid_pcapng(&frames);
    assert_eq!(read_all(&ng[..ng.len() - 1]), (1, true));
}
