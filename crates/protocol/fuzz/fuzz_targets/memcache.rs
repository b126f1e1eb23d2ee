//! Fuzz target for the memcache parsers: arbitrary bytes to
//! `parse_request`, `parse_reply` and `ReplyScanner`, whole and fed in
//! splits chosen by the input's first byte. Asserts no panic, lengths
//! within the input, and that split feeding agrees with the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nc_protocol::memcache::{parse_reply, parse_request, ReplyKind, ReplyScanner, ValueBlocks};
use nc_protocol::{Limits, ParseError};

fn check(data: &[u8], step: usize, limits: &Limits) {
    let whole_req = parse_request(data, limits);
    if let Ok(r) = &whole_req {
        assert!(r.len <= data.len() && r.line_len <= r.len);
        assert!(r.key.end <= r.len && r.keys.end <= r.len);
        assert_eq!(r.key_spans(data).count(), r.nkeys);
        assert_eq!(parse_request(&data[..r.len], limits).as_ref(), Ok(r));
    }
    let whole_rep = parse_reply(data, limits);
    if let Ok(r) = &whole_rep {
        assert!(r.len <= data.len());
        assert_eq!(parse_reply(&data[..r.len], limits), Ok(*r));
        if let ReplyKind::Values { count, end } = r.kind {
            assert!(end < r.len);
            let blocks = ValueBlocks::new(&data[..r.len], limits).expect("values");
            assert_eq!(blocks.count(), count);
        }
    }
    // Feed growing prefixes, as a proxy's read loop does.
    let mut scanner = ReplyScanner::default();
    let mut n = 0;
    loop {
        let req = parse_request(&data[..n], limits);
        assert!(req == Err(ParseError::Incomplete) || req == whole_req);
        let rep = parse_reply(&data[..n], limits);
        assert!(rep == Err(ParseError::Incomplete) || rep == whole_rep);
        let scanned = scanner.scan(&data[..n], limits);
        assert_eq!(scanned, rep);
        if n == data.len() || scanned != Err(ParseError::Incomplete) {
            break;
        }
        n = (n + step).min(data.len());
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else {
        return;
    };
    let step = usize::from(first % 64) + 1;
    let tight = Limits {
        max_key_len: 16,
        max_bulk_len: 64,
        max_array_len: 4,
        max_depth: 4,
    };
    check(data, step, &Limits::default());
    check(data, step, &tight);
});
