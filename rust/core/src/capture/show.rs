//! Brief lines (or JSON lines) of captured packets: those held in a capture buffer, as `show` prints
//! them, and those arriving, as `start -o` prints them.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use super::buffer::{IfaceId, SharedBuffer};
use super::session::{LiveQueue, Received};
use crate::brief::{BriefFormatter, PacketMeta};
use crate::clock::Clock;
use crate::packet::Direction;

struct Held {
    /// Which of the walked interfaces.
    lane: usize,
    seq: u64,
    ts_ns: u64,
    wirelen: u32,
    direction: Direction,
    end: usize,
}

/// What marks the packet a trigger fired on: at the end of its text line, or a key of its JSON object.
pub const TRIGGER_MARK: &[u8] = b"  [trigger]";
const TRIGGER_KEY: &[u8] = b", \"trigger\": true";

/// Write one line per packet of `ifaces` held now, as one timeline (by timestamp), numbered from 1,
/// times written by `clock`, the packet of sequence number `mark` marked; returns how many.
pub fn show_merged_lines(
    buffer: &SharedBuffer,
    ifaces: &[IfaceId],
    json: bool,
    clock: Clock,
    mark: Option<u64>,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let lanes: Vec<_> = {
        let b = buffer.lock();
        ifaces
            .iter()
            .map(|&id| {
                let f = b.iface(id);
                (f.name.clone(), f.link)
            })
            .collect()
    };
    let mut fmt = BriefFormatter::with_clock(clock);
    let mut lines = Vec::new();
    let mut index = 0u64;
    // Packets are copied out under the lock and formatted after it is released.
    let mut state = (Vec::<Held>::new(), Vec::<u8>::new());
    buffer.walk_merged(
        ifaces,
        &mut state,
        |(held, bytes), lane, p| {
            bytes.extend_from_slice(p.data);
            held.push(Held {
                lane,
                seq: p.seq,
                ts_ns: p.ts_ns,
                wirelen: p.wirelen,
                direction: p.direction,
                end: bytes.len(),
            });
            p.data.len()
        },
        |(held, bytes)| {
            let mut start = 0;
            for h in held.iter() {
                index += 1;
                let (name, link) = &lanes[h.lane];
                let meta = PacketMeta {
                    index,
                    ts_ns: h.ts_ns,
                    iface: Some(name),
                    direction: Some(h.direction),
                    wirelen: h.wirelen,
                    link: *link,
                };
                let data = &bytes[start..h.end];
                fmt.push(&mut lines, &meta, data, json);
                if mark == Some(h.seq) {
                    // Before the newline, and for JSON before the closing brace.
                    let end = lines.len() - 1 - usize::from(json);
                    let marker = if json { TRIGGER_KEY } else { TRIGGER_MARK };
                    lines.splice(end..end, marker.iter().copied());
                }
                start = h.end;
            }
            held.clear();
            bytes.clear();
            out.write_all(&lines)?;
            lines.clear();
            Ok(())
        },
    )?;
    Ok(index)
}

/// What a wait for the next live line gave.
pub enum LiveLine {
    Line(String),
    /// Nothing within the timeout; the captures go on.
    Empty,
    /// Every capture feeding these lines has stopped, and every line was given.
    Finished,
}

/// Numbered brief lines of the packets that one or more captures keep, as they are captured.
pub struct LiveLines {
    queue: Arc<LiveQueue>,
    fmt: BriefFormatter,
    json: bool,
    index: u64,
}

impl LiveLines {
    /// Lines of a queue holding at most `capacity` packets not yet formatted (a reader that falls
    /// further behind loses packets, counted in `dropped`); times written by `clock`.
    pub fn new(capacity: usize, json: bool, clock: Clock) -> LiveLines {
        LiveLines {
            queue: Arc::new(LiveQueue::new(capacity)),
            fmt: BriefFormatter::with_clock(clock),
            json,
            index: 0,
        }
    }

    /// The queue to give the captures that feed these lines.
    pub fn queue(&self) -> &Arc<LiveQueue> {
        &self.queue
    }

    /// The next line, waiting at most `timeout` for it.
    pub fn next_line(&mut self, timeout: Duration) -> LiveLine {
        match self.queue.recv(timeout) {
            Received::Packet(p) => {
                self.index += 1;
                let meta = PacketMeta {
                    index: self.index,
                    ts_ns: p.ts_ns,
                    iface: Some(&p.iface),
                    direction: Some(p.direction),
                    wirelen: p.wirelen,
                    link: p.link,
                };
                LiveLine::Line(self.fmt.line(&meta, &p.data, self.json))
            }
            Received::Empty => LiveLine::Empty,
            Received::Closed => LiveLine::Finished,
        }
    }

    /// Packets these lines lost by falling behind.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }
}
