//! Feeds arbitrary bytes to `parse_request`, `parse_reply` and
//! `ArrayElements`, under the default limits and a tight set that makes the
//! limit checks reachable from short inputs, and checks the streaming
//! contract the proxy relies on:
//!
//! - nothing panics (in particular no arithmetic overflow: fuzz builds keep
//!   debug assertions on);
//! - `Ok(len)` lies within the input and is the same when only those `len`
//!   bytes are given;
//! - a prefix of the input parses as `Incomplete` or exactly as the whole
//!   input (so `Ok` and errors on a prefix imply the same on the full input),
//!   and every strict prefix of a complete message is `Incomplete`;
//! - a valid request is also a valid array reply of `argc` elements;
//! - `ArrayElements` over a complete array yields exactly its element count
//!   as contiguous spans that each parse as one reply, and stays in bounds on
//!   any input.

#![no_main]

use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use nc_protocol::resp::{parse_reply, parse_request, ArrayElements, ParseError, Reply, ReplyKind};
use nc_protocol::Limits;

const TIGHT: Limits = Limits {
    max_key_len: 16,
    max_bulk_len: 64,
    max_array_len: 16,
    max_depth: 4,
};

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), TIGHT] {
        check(data, &limits);
    }
});

fn check(data: &[u8], limits: &Limits) {
    let request = parse_request(data, limits);
    if let Ok(req) = &request {
        assert!(req.len > 0 && req.len <= data.len(), "{req:?}");
        let msg = &data[..req.len];
        assert_eq!(parse_request(msg, limits), request, "request alone");
        assert!(
            req.args_start <= req.len && req.key.start <= req.key.end && req.key.end <= req.len
        );
        let args: Vec<Range<usize>> = req.args(msg).collect();
        assert_eq!(args.len(), req.argc - 1, "{req:?}");
        assert!(
            req.nkeys == 0 || args.contains(&req.key),
            "key is not an argument: {req:?}"
        );
        if limits.max_depth > 0 {
            assert_eq!(
                parse_reply(data, limits),
                Ok(Reply {
                    len: req.len,
                    kind: ReplyKind::Array(req.argc)
                }),
                "a request is an array reply"
            );
        }
        for cut in cuts(req.len) {
            assert_eq!(
                parse_request(&msg[..cut], limits),
                Err(ParseError::Incomplete),
                "request cut at {cut}"
            );
        }
    }

    let reply = parse_reply(data, limits);
    if let Ok(rep) = &reply {
        assert!(rep.len > 0 && rep.len <= data.len(), "{rep:?}");
        let msg = &data[..rep.len];
        assert_eq!(parse_reply(msg, limits), reply, "reply alone");
        if let ReplyKind::Array(n) = rep.kind {
            let elements = ArrayElements::new(msg, limits).expect("array header");
            assert_eq!(elements.len(), n);
            let spans: Vec<Range<usize>> = elements.collect();
            assert_eq!(spans.len(), n, "element count");
            let mut pos = rep.len - spans.iter().map(|s| s.len()).sum::<usize>();
            for span in spans {
                assert_eq!(span.start, pos, "elements are contiguous");
                assert_eq!(
                    parse_reply(&msg[span.clone()], limits).map(|r| r.len),
                    Ok(span.len())
                );
                pos = span.end;
            }
            assert_eq!(pos, rep.len, "elements end with the array");
        }
        for cut in cuts(rep.len) {
            assert_eq!(
                parse_reply(&msg[..cut], limits),
                Err(ParseError::Incomplete),
                "reply cut at {cut}"
            );
        }
    }

    // Raw bytes into ArrayElements (a misuse the API must survive).
    if let Ok(elements) = ArrayElements::new(data, limits) {
        let announced = elements.len();
        let mut count = 0;
        for span in elements {
            assert!(span.start < span.end && span.end <= data.len());
            count += 1;
        }
        assert!(count <= announced);
    }

    // What a prefix says must stay true once the rest arrives.
    for cut in cuts(data.len()) {
        let prefix = &data[..cut];
        match parse_request(prefix, limits) {
            Err(ParseError::Incomplete) => {}
            early => assert_eq!(early, request, "request prefix of {cut} bytes"),
        }
        match parse_reply(prefix, limits) {
            Err(ParseError::Incomplete) => {}
            early => assert_eq!(early, reply, "reply prefix of {cut} bytes"),
        }
    }
}

/// Strict prefix lengths to try for a message of `len` bytes: all of them
/// when short, else both ends and an even spread (keeps each run linear-ish).
fn cuts(len: usize) -> Vec<usize> {
    if len <= 256 {
        return (0..len).collect();
    }
    let mut cuts: Vec<usize> = (0..64)
        .chain(len - 64..len)
        .chain((1..64).map(|i| i * len / 64))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|&c| c < len);
    cuts
}
