//! The offline path (`pcapdump read`): one pass over a memory-mapped capture file, the filter evaluated
//! in place, matching records cut to the snap length and printed as brief lines or written as pcap.

use std::io::{self, Write};
use std::path::Path;

use crate::brief::{BriefFormatter, PacketMeta};
use crate::filter::{Filter, MAX_SNAPLEN};
use crate::packet::LinkType;
use crate::pcap::{AtomicFile, CaptureFile, PcapWriter, ReadError, Record};

/// Brief lines are gathered into chunks of this size before each write.
const LINE_CHUNK: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
pub struct Selection<'a> {
    pub filter: Option<&'a Filter>,
    /// Keep at most this many bytes of each packet (1 … 262144).
    pub snaplen: u32,
    /// Stop after this many matching packets.
    pub count: Option<u64>,
}

impl Default for Selection<'_> {
    fn default() -> Self {
        Selection {
            filter: None,
            snaplen: MAX_SNAPLEN,
            count: None,
        }
    }
}

impl Selection<'_> {
    #[inline]
    fn keeps(&self, r: &Record) -> bool {
        self.filter.is_none_or(|f| f.matches(r.data, r.link))
    }

    #[inline]
    fn cut<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        &data[..data.len().min(self.snaplen as usize)]
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read from the file.
    pub read: u64,
    /// Records that matched (and were printed or written).
    pub matched: u64,
    /// Bytes of packet data kept (after the snap length).
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("'{path}': cannot write: {source}")]
    Write { path: String, source: io::Error },
    #[error("'{path}': record {record} has link type {found}, but a pcap file holds one link type ({first}); split the capture by interface first")]
    MixedLinkTypes {
        path: String,
        record: u64,
        first: u32,
        found: u32,
    },
    /// The reader of our output went away (e.g. `| head`): not an error worth a message.
    #[error("output closed")]
    OutputClosed,
}

/// Print brief lines (or JSON lines) of the selected records to `out`.
pub fn print_lines(
    file: &CaptureFile,
    sel: &Selection,
    json: bool,
    out: &mut dyn Write,
) -> Result<Summary, OfflineError> {
    let mut fmt = BriefFormatter::new();
    let mut buf = Vec::with_capacity(LINE_CHUNK + 4096);
    let mut sum = Summary::default();
    let flush = |buf: &mut Vec<u8>, out: &mut dyn Write| -> Result<(), OfflineError> {
        out.write_all(buf).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => OfflineError::OutputClosed,
            _ => OfflineError::Write {
                path: "standard output".into(),
                source: e,
            },
        })?;
        buf.clear();
        Ok(())
    };
    let result = for_each_selected(file, sel, &mut sum, |r, data| {
        let meta = PacketMeta::from(r);
        if json {
            fmt.json(&mut buf, &meta, data);
        } else {
            fmt.text(&mut buf, &meta, data);
        }
        if buf.len() >= LINE_CHUNK {
            flush(&mut buf, out)?;
        }
        Ok(())
    });
    // Lines before a damaged record are still shown, then the error.
    flush(&mut buf, out)?;
    out.flush().map_err(|e| OfflineError::Write {
        path: "standard output".into(),
        source: e,
    })?;
    result.map(|_| sum)
}

/// Write the selected records to a pcap file at `dest`; on any error nothing is left at `dest`.
pub fn write_pcap(
    file: &CaptureFile,
    sel: &Selection,
    dest: &Path,
) -> Result<Summary, OfflineError> {
    let shown = dest.display().to_string();
    let write_err = |source| OfflineError::Write {
        path: shown.clone(),
        source,
    };
    let link = file.link_type().unwrap_or(LinkType::Ethernet);
    let out = AtomicFile::create(dest).map_err(write_err)?;
    let mut writer = PcapWriter::new(out, link, sel.snaplen).map_err(write_err)?;
    let mut sum = Summary::default();
    for_each_selected(file, sel, &mut sum, |r, data| {
        if r.link != link {
            return Err(OfflineError::MixedLinkTypes {
                path: file.path().into(),
                record: r.number,
                first: link.number(),
                found: r.link.number(),
            });
        }
        writer.write(r.ts_ns, data, r.wirelen).map_err(write_err)
    })?;
    writer.into_inner().commit().map_err(write_err)?;
    Ok(sum)
}

fn for_each_selected<'f>(
    file: &'f CaptureFile,
    sel: &Selection,
    sum: &mut Summary,
    mut each: impl FnMut(&Record<'f>, &'f [u8]) -> Result<(), OfflineError>,
) -> Result<(), OfflineError> {
    if sel.count == Some(0) {
        return Ok(());
    }
    for r in file.records() {
        let r = r?;
        sum.read += 1;
        if !sel.keeps(&r) {
            continue;
        }
        let data = sel.cut(r.data);
        each(&r, data)?;
        sum.matched += 1;
        sum.bytes += data.len() as u64;
        if sel.count == Some(sum.matched) {
            break;
        }
    }
    Ok(())
}
