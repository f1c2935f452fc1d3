//! gzip-compressed captures (`x.pcap.gz`, `tcpdump -w - | gzip`), known by their first two bytes, not
//! by their name. They are inflated as they are read and go through a stream's window like a pipe, so a
//! file is never inflated whole and memory stays bounded however much it inflates to (a bomb costs time,
//! and Ctrl-C ends that). Members one after another (`cat a.gz b.gz`) read as one capture, as `gzip -d`
//! reads them.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::GzDecoder;

use super::reader::ReadErrorKind;

/// A gzip member's first two bytes (RFC 1952, ID1 and ID2).
const MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `head`, the first bytes of an input, start gzip data.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

/// The inflated bytes of `head` (what was read of the input to recognise it) followed by the rest of
/// `rest`. A `WouldBlock` from `rest` comes out as it is, and the decoder keeps its place: the caller
/// waits for the input and reads again.
pub fn inflate(head: Vec<u8>, rest: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
    let compressed: Compressed = BufReader::new(Box::new(io::Cursor::new(head).chain(rest)));
    Box::new(Members::Inside(GzDecoder::new(compressed)))
}

type Compressed = BufReader<Box<dyn Read + Send>>;

/// Members inflated one after another. After a member, the input may end, go on with another member,
/// or end with zeros (padding, which `gzip -d` accepts too); anything else is refused.
enum Members {
    Inside(GzDecoder<Compressed>),
    Between(Compressed),
    Padding(Compressed),
    Done,
}

impl Read for Members {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(self, Members::Done) {
                Members::Inside(mut member) => match member.read(buf) {
                    Ok(0) => *self = Members::Between(member.into_inner()),
                    other => {
                        *self = Members::Inside(member);
                        return other;
                    }
                },
                Members::Between(mut input) => {
                    let next = match input.fill_buf() {
                        Ok(bytes) => bytes.first().copied(),
                        Err(e) => {
                            *self = Members::Between(input);
                            return Err(e);
                        }
                    };
                    *self = match next {
                        None => return Ok(0),
                        Some(b) if b == MAGIC[0] => Members::Inside(GzDecoder::new(input)),
                        Some(0) => Members::Padding(input),
                        Some(_) => return Err(trailing()),
                    };
                }
                Members::Padding(mut input) => {
                    let (zeros, len) = match input.fill_buf() {
                        Ok(bytes) => (bytes.iter().all(|&b| b == 0), bytes.len()),
                        Err(e) => {
                            *self = Members::Padding(input);
                            return Err(e);
                        }
                    };
                    if len == 0 {
                        return Ok(0);
                    }
                    if !zeros {
                        return Err(trailing());
                    }
                    input.consume(len);
                    *self = Members::Padding(input);
                }
                Members::Done => return Ok(0),
            }
        }
    }
}

fn trailing() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "bytes that are not gzip follow its last member",
    )
}

/// What a failed read of inflated bytes means, `inflated` bytes into the capture. The decoder's own
/// errors carry no number of the system's: an early end is the file cut short, anything else it
/// refuses is damage. An error of the system (EIO) is about the file that holds the data.
pub fn failure(e: io::Error, inflated: usize) -> ReadErrorKind {
    if e.raw_os_error().is_some() {
        return ReadErrorKind::Io(e);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadErrorKind::GzipCut { inflated },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ReadErrorKind::GzipDamaged {
            inflated,
            reason: e.to_string(),
        },
        _ => ReadErrorKind::Io(e),
    }
}

/// `bytes` as one gzip member, for tests.
#[cfg(test)]
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_known_by_its_magic_alone() {
        assert!(is_gzip(&compress(b"")));
        assert!(is_gzip(&[0x1f, 0x8b]));
        assert!(!is_gzip(&[0x1f]));
        assert!(!is_gzip(&[0xd4, 0xc3, 0xb2, 0xa1]));
        assert!(!is_gzip(b""));
    }

    fn inflated(bytes: &[u8]) -> (Vec<u8>, Option<ReadErrorKind>) {
        let mut from = inflate(
            bytes[..2].to_vec(),
            Box::new(io::Cursor::new(bytes[2..].to_vec())),
        );
        let mut out = Vec::new();
        let mut buf = [0; 100];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend(&buf[..n]),
                Err(e) => return (out, Some(failure(e, 0))),
            }
        }
    }

    #[test]
    fn members_in_a_row_read_as_one() {
        let joined = [compress(b"first "), compress(b"second")].concat();
        let (out, failed) = inflated(&joined);
        assert_eq!(out, b"first second");
        assert!(failed.is_none());
    }

    #[test]
    fn an_early_end_is_a_cut_and_changed_bytes_are_damage() {
        let data: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let whole = compress(&data);
        for len in [3, 10, whole.len() / 2, whole.len() - 4, whole.len() - 1] {
            let (out, failed) = inflated(&whole[..len]);
            assert!(data.starts_with(&out));
            assert!(
                matches!(failed, Some(ReadErrorKind::GzipCut { .. })),
                "{len}: {failed:?}"
            );
        }
        // The stored length no longer matches what the data inflates to.
        let mut bad = whole.clone();
        let at = bad.len() - 1;
        bad[at] ^= 0x40;
        assert!(matches!(
            inflated(&bad).1,
            Some(ReadErrorKind::GzipDamaged { .. })
        ));
        // Not a member after the first: neither a clean end nor a cut.
        let trailing = [whole.clone(), b"garbage after it".to_vec()].concat();
        let (out, failed) = inflated(&trailing);
        assert_eq!(out, data);
        assert!(matches!(failed, Some(ReadErrorKind::GzipDamaged { .. })));
    }

    #[test]
    fn zeros_after_the_last_member_are_padding_and_other_bytes_are_refused() {
        let whole = compress(b"capture");
        let padded = [whole.clone(), vec![0; 512]].concat();
        let (out, failed) = inflated(&padded);
        assert_eq!(out, b"capture");
        assert!(failed.is_none(), "{failed:?}");
        for tail in [&b"garbage!"[..], b"\0\0x", b"z"] {
            let (out, failed) = inflated(&[whole.clone(), tail.to_vec()].concat());
            assert_eq!(out, b"capture");
            assert!(
                matches!(&failed, Some(ReadErrorKind::GzipDamaged { reason, .. }) if reason.contains("not gzip")),
                "{tail:?}: {failed:?}"
            );
        }
    }

    #[test]
    fn an_error_of_the_system_stays_one() {
        let e = io::Error::from_raw_os_error(libc::EIO);
        assert!(matches!(failure(e, 7), ReadErrorKind::Io(_)));
    }
}
