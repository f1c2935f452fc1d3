//! The capture buffer against a plain model: whatever the sizes, interfaces and capacity, a linear
//! buffer holds exactly the packets before the first that did not fit, and a ring holds an unbroken run
//! of the newest, loses no more than it must, and returns every byte as it was stored.

use pcapdump_core::capture::buffer::record_size;
use pcapdump_core::capture::{BufferMode, CaptureBuffer};
use pcapdump_core::packet::{Direction, LinkType};
use proptest::prelude::*;

fn packet(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (n * 31 + i) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn buffer_matches_the_model(
        capacity in 64usize..6000,
        ring in any::<bool>(),
        pushes in prop::collection::vec((0usize..700, 0usize..3), 0..120),
    ) {
        let mode = if ring { BufferMode::Ring } else { BufferMode::Linear };
        let mut b = CaptureBuffer::new(capacity, mode).unwrap();
        let cap = b.capacity();
        let ids: Vec<_> = ["a", "b", "c"].iter().map(|n| b.interface(n, LinkType::Ethernet).unwrap()).collect();
        let mut stored = Vec::new();
        for (n, &(len, i)) in pushes.iter().enumerate() {
            let data = packet(n, len);
            let dir = if n % 2 == 0 { Direction::In } else { Direction::Out };
            b.push(ids[i], n as u64, len as u32 + 4, dir, &[&data]);
            stored.push((n, len, i));
        }

        let mut cursor = b.cursor();
        let mut missed = 0;
        let mut held = Vec::new();
        while let Some(p) = b.next(&mut cursor, &mut missed) {
            let n = p.ts_ns as usize;
            let (_, len, i) = stored[n];
            prop_assert_eq!(p.data, &packet(n, len)[..]);
            prop_assert_eq!(p.wirelen as usize, len + 4);
            prop_assert_eq!(p.iface, ids[i]);
            prop_assert_eq!(p.direction == Direction::In, n.is_multiple_of(2));
            held.push(n);
        }
        prop_assert_eq!(missed, 0);
        let held_bytes: usize = held.iter().map(|&n| record_size(stored[n].1)).sum();
        prop_assert!(held_bytes <= cap);

        if ring {
            let fitting: Vec<usize> =
                stored.iter().filter(|s| record_size(s.1) <= cap).map(|s| s.0).collect();
            // An unbroken run of the newest packets that fit at all.
            prop_assert_eq!(&held[..], &fitting[fitting.len() - held.len()..]);
            if let Some(&newest) = fitting.last() {
                prop_assert_eq!(held.last(), Some(&newest));
            }
            // Nothing evicted that could have stayed: the next older one would not have fitted, even
            // allowing for the unused end of the array before a wrap.
            if held.len() < fitting.len() {
                let older = fitting[fitting.len() - held.len() - 1];
                let biggest = held.iter().map(|&n| record_size(stored[n].1)).max().unwrap_or(0);
                prop_assert!(held_bytes + record_size(stored[older].1) + biggest > cap);
            }
        } else {
            let mut room = cap;
            let mut prefix = Vec::new();
            for &(n, len, _) in &stored {
                if record_size(len) > room {
                    break;
                }
                room -= record_size(len);
                prefix.push(n);
            }
            prop_assert_eq!(&held, &prefix);
        }

        for (k, f) in b.interfaces().iter().enumerate() {
            let offered = stored.iter().filter(|s| s.2 == k).count() as u64;
            let c = f.counts;
            prop_assert_eq!(c.packets + c.buffer_full_drops, offered);
            prop_assert_eq!(c.held + c.overwritten, c.packets);
            prop_assert_eq!(c.held, held.iter().filter(|&&n| stored[n].2 == k).count() as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The merged walk of any choice of interfaces is the held packets of those interfaces, ordered by
    /// timestamp and then by arrival, whatever the interleaving of the interfaces' batches and the
    /// ring's overwrites.
    #[test]
    fn a_merged_walk_is_the_held_packets_in_time_order(
        capacity in 64usize..6000,
        ring in any::<bool>(),
        pushes in prop::collection::vec((0usize..300, 0usize..3, 0u64..50), 0..120),
        chosen in prop::sample::subsequence(vec![0usize, 1, 2], 0..=3),
    ) {
        let mode = if ring { BufferMode::Ring } else { BufferMode::Linear };
        let mut b = CaptureBuffer::new(capacity, mode).unwrap();
        let ids: Vec<_> = ["a", "b", "c"].iter().map(|n| b.interface(n, LinkType::Ethernet).unwrap()).collect();
        // Each interface's packets come in time order (one kernel ring each); interfaces interleave.
        let mut clocks = [0u64; 3];
        for (n, &(len, i, step)) in pushes.iter().enumerate() {
            clocks[i] += step;
            b.push(ids[i], clocks[i], n as u32, Direction::In, &[&packet(n, len)]);
        }
        let mut expected = Vec::new();
        {
            let (mut cursor, mut missed) = (b.cursor(), 0);
            while let Some(p) = b.next(&mut cursor, &mut missed) {
                if let Some(lane) = chosen.iter().position(|&i| ids[i] == p.iface) {
                    expected.push((p.ts_ns, p.seq, lane, p.wirelen));
                }
            }
        }
        expected.sort();
        let shared = pcapdump_core::capture::SharedBuffer::new(b);
        let lanes: Vec<_> = chosen.iter().map(|&i| ids[i]).collect();
        let mut got = Vec::new();
        let mut intact = true;
        shared.walk_merged(&lanes, &mut got, |got, lane, p| {
            got.push((p.ts_ns, p.seq, lane, p.wirelen));
            // The push numbered n stored packet(n, len) with wirelen n.
            intact &= p.data == &packet(p.wirelen as usize, p.data.len())[..];
            p.data.len()
        }, |_| Ok(())).unwrap();
        prop_assert!(intact);
        prop_assert_eq!(got, expected);
    }
}
