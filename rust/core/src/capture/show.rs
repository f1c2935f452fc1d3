//! Brief lines (or JSON lines) of the packets held in a capture buffer, as `show` prints them.

use std::io::{self, Write};

use super::buffer::{IfaceId, SharedBuffer};
use crate::brief::{BriefFormatter, PacketMeta};
use crate::packet::Direction;

struct Held {
    ts_ns: u64,
    wirelen: u32,
    direction: Direction,
    end: usize,
}

/// Write one line per packet of `iface` held now, numbered from 1; returns how many.
pub fn show_lines(
    buffer: &SharedBuffer,
    iface: IfaceId,
    json: bool,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let (name, link) = {
        let b = buffer.lock();
        let f = b.iface(iface);
        (f.name.clone(), f.link)
    };
    let mut fmt = BriefFormatter::new();
    let mut lines = Vec::new();
    let mut index = 0u64;
    // Packets are copied out under the lock and formatted after it is released.
    let mut state = (Vec::<Held>::new(), Vec::<u8>::new());
    buffer.walk(
        iface,
        &mut state,
        |(held, bytes), p| {
            bytes.extend_from_slice(p.data);
            held.push(Held {
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
                let meta = PacketMeta {
                    index,
                    ts_ns: h.ts_ns,
                    iface: Some(&name),
                    direction: Some(h.direction),
                    wirelen: h.wirelen,
                    link,
                };
                let data = &bytes[start..h.end];
                if json {
                    fmt.json(&mut lines, &meta, data);
                } else {
                    fmt.text(&mut lines, &meta, data);
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
