//! How long a filter's user-space test takes per packet, as a trigger runs it on every kept packet
//! (`cargo run --release -p pcapdump-core --example trigger_cost`).
use pcapdump_core::filter::Filter;
use pcapdump_core::packet::LinkType;
use std::time::Instant;

fn main() {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    f.extend_from_slice(&[
        0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 3,
    ]);
    f.extend_from_slice(&[0x9c, 0x40, 0x23, 0x28, 0, 26, 0, 0]);
    f.extend_from_slice(&[0u8; 18]);
    for words in ["tcpflags rst", "udp", "ipsrc 10.0.0.1", "port 53"] {
        let filter = Filter::parse_str(words).unwrap();
        let n = 20_000_000u64;
        let t = Instant::now();
        let mut hits = 0u64;
        for _ in 0..n {
            hits += filter.matches(std::hint::black_box(&f), LinkType::Ethernet) as u64;
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("{words:>16}: {ns:.1} ns per packet ({hits} matched)");
    }
}
