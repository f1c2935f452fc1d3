//! Fast text formatting into a byte buffer: integers, addresses, JSON strings.
//! Brief lines are printed by the million, so nothing here goes through `format!`.

const DIGITS2: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGITS2[d..d + 2]);
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGITS2[d..d + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// `v` in exactly `width` digits, zero-padded (v must fit).
#[inline]
pub fn push_padded(out: &mut Vec<u8>, mut v: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut i = start + width;
    while v > 0 && i > start {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
pub fn push_hex_byte(out: &mut Vec<u8>, b: u8) {
    out.push(HEX[(b >> 4) as usize]);
    out.push(HEX[(b & 15) as usize]);
}

/// Lower-case hex without leading zeros beyond `min_digits`.
pub fn push_hex(out: &mut Vec<u8>, v: u32, min_digits: usize) {
    let digits = ((32 - v.leading_zeros() as usize).div_ceil(4))
        .max(min_digits)
        .max(1);
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (4 * i)) & 15) as usize]);
    }
}

#[inline]
pub fn push_ipv4(out: &mut Vec<u8>, a: [u8; 4]) {
    // Made whole, then appended once: a table writes two per packet.
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, &b) in a.iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        if b >= 100 {
            text[n] = b'0' + b / 100;
            n += 1;
        }
        if b >= 10 {
            text[n] = b'0' + b / 10 % 10;
            n += 1;
        }
        text[n] = b'0' + b % 10;
        n += 1;
    }
    out.extend_from_slice(&text[..n]);
}

/// RFC 5952: lower case, the longest run of two or more zero groups shown as `::`.
pub fn push_ipv6(out: &mut Vec<u8>, a: [u8; 16]) {
    let groups: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    let (mut best, mut best_len, mut run, mut run_len) = (8, 0, 0, 0);
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            if run_len == 0 {
                run = i;
            }
            run_len += 1;
            if run_len > best_len {
                best = run;
                best_len = run_len;
            }
        } else {
            run_len = 0;
        }
    }
    if best_len < 2 {
        best = 8;
    }
    let mut i = 0;
    while i < 8 {
        if i == best {
            out.extend_from_slice(b"::");
            i += best_len;
            continue;
        }
        if i > 0 && i != best + best_len {
            out.push(b':');
        }
        push_hex(out, groups[i] as u32, 1);
        i += 1;
    }
}

pub fn push_mac(out: &mut Vec<u8>, m: [u8; 6]) {
    // Made whole, then appended once: a table writes two per packet.
    let mut text = [b':'; 17];
    for (i, b) in m.iter().enumerate() {
        text[3 * i] = HEX[(b >> 4) as usize];
        text[3 * i + 1] = HEX[(b & 15) as usize];
    }
    out.extend_from_slice(&text);
}

/// A JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                push_hex_byte(out, c);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn integers() {
        for v in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(s(|o| push_u64(o, v)), v.to_string());
        }
        assert_eq!(s(|o| push_padded(o, 42, 6)), "000042");
    }

    #[test]
    fn ipv4_and_mac_addresses() {
        for a in [
            [0, 0, 0, 0],
            [198, 18, 0, 1],
            [10, 99, 100, 255],
            [1, 20, 255, 9],
        ] {
            let std = std::net::Ipv4Addr::from(a).to_string();
            assert_eq!(s(|o| push_ipv4(o, a)), std);
        }
        assert_eq!(
            s(|o| push_mac(o, [0x02, 0, 0xab, 0x10, 0xff, 0x9])),
            "02:00:ab:10:ff:09"
        );
    }

    #[test]
    fn ipv6_follows_rfc5952() {
        for text in [
            "2001:db8::1",
            "::",
            "::1",
            "2001:db8:0:1:1:1:1:1",
            "2001:0:0:1::1",
            "fe80::1:0:0:1",
            "1::",
        ] {
            let a: std::net::Ipv6Addr = text.parse().unwrap();
            assert_eq!(s(|o| push_ipv6(o, a.octets())), a.to_string());
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(s(|o| push_json_str(o, b"a\"b\\\n")), r#""a\"b\\\u000a""#);
    }
}
