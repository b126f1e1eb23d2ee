//! Encoders for the frames the proxy writes itself: fragments of multi-key
//! requests and merged or synthesized replies. Forwarded requests are never
//! re-encoded.

use bytes::BufMut;

/// Appends the decimal digits of `n`.
#[inline]
pub fn write_usize<B: BufMut>(out: &mut B, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// `*<n>\r\n`
#[inline]
pub fn encode_array_header<B: BufMut>(out: &mut B, n: usize) {
    out.put_u8(b'*');
    write_usize(out, n);
    out.put_slice(b"\r\n");
}

/// `$<len>\r\n<data>\r\n`
#[inline]
pub fn encode_bulk<B: BufMut>(out: &mut B, data: &[u8]) {
    out.put_u8(b'$');
    write_usize(out, data.len());
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// `:<n>\r\n`
#[inline]
pub fn encode_integer<B: BufMut>(out: &mut B, n: i64) {
    out.put_u8(b':');
    if n < 0 {
        out.put_u8(b'-');
    }
    write_usize(out, n.unsigned_abs() as usize);
    out.put_slice(b"\r\n");
}

/// A whole multibulk request: `name` then `args`.
pub fn encode_command<'a, B: BufMut>(
    out: &mut B,
    name: &[u8],
    args: impl ExactSizeIterator<Item = &'a [u8]>,
) {
    encode_array_header(out, args.len() + 1);
    encode_bulk(out, name);
    for arg in args {
        encode_bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        encode_command(&mut out, b"mget", [&b"a"[..], b""].into_iter());
        assert_eq!(out, b"*3\r\n$4\r\nmget\r\n$1\r\na\r\n$0\r\n\r\n");
        out.clear();
        encode_integer(&mut out, -120);
        encode_integer(&mut out, 0);
        encode_integer(&mut out, i64::MIN);
        assert_eq!(out, b":-120\r\n:0\r\n:-9223372036854775808\r\n");
        out.clear();
        write_usize(&mut out, usize::MAX);
        assert_eq!(out, usize::MAX.to_string().as_bytes());
    }
}
