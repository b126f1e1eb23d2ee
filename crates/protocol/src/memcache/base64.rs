//! Base64 keys of meta requests (the `b` flag).

/// Decodes a base64 key (meta `b` flag, standard alphabet `A-Z a-z 0-9 + /`
/// with `=` padding, length a multiple of 4) into `out`; `None` if it is
/// empty, invalid, or decodes to more than 256 bytes.
pub fn decode_base64_key<'o>(encoded: &[u8], out: &'o mut [u8; 256]) -> Option<&'o [u8]> {
    if encoded.is_empty() || encoded.len() % 4 != 0 {
        return None;
    }
    let groups = encoded.len() / 4;
    let mut n = 0;
    for (g, quad) in encoded.chunks_exact(4).enumerate() {
        let last = g + 1 == groups;
        // Padding only at the very end: `xx==` or `xxx=`.
        let pad = match (quad[2], quad[3]) {
            (b'=', b'=') if last => 2,
            (_, b'=') if last => 1,
            _ => 0,
        };
        let mut acc: u32 = 0;
        for &c in &quad[..4 - pad] {
            acc = (acc << 6) | u32::from(sextet(c)?);
        }
        acc <<= 6 * pad as u32;
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        let take = 3 - pad;
        if n + take > out.len() {
            return None;
        }
        out[n..n + take].copy_from_slice(&bytes[..take]);
        n += take;
    }
    Some(&out[..n])
}

fn sextet(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Option<Vec<u8>> {
        let mut out = [0u8; 256];
        decode_base64_key(s.as_bytes(), &mut out).map(<[u8]>::to_vec)
    }

    #[test]
    fn decodes_standard_padded() {
        assert_eq!(dec("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(dec("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(dec("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(dec("Zm9vYmFy").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(dec("+/+/").as_deref(), Some(&[0xfb, 0xff, 0xbf][..]));
        assert_eq!(dec("AAECAw==").as_deref(), Some(&[0, 1, 2, 3][..]));
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "", "Zm9", "Zm9vY", "Zg=", "Z===", "====", "Zg==Zm9v", "Zm=v", "Zm9-", "Zm9_", "Zm 9",
            "Zm9v\r\n",
        ] {
            assert_eq!(dec(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn length_bound() {
        // 256 bytes decoded fit, 257 do not.
        let fits = "A".repeat(340) + "AA==";
        assert_eq!(dec(&fits).map(|v| v.len()), Some(256));
        let over = "A".repeat(344);
        assert_eq!(dec(&over), None);
        assert_eq!(dec(&"A".repeat(344)[..340]).map(|v| v.len()), Some(255));
    }
}
