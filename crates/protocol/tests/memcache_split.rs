//! Property tests for the streaming contract of the memcache parser.
//!
//! A proxy appends whatever the socket gives it to a buffer and parses as
//! many complete messages as it holds; `Incomplete` means "read more". These
//! tests check that this loop sees exactly the messages that were sent,
//! wherever the stream is cut:
//! - (a) pipelines of random valid requests (every command and extension,
//!   binary data blocks that contain CRLF and `END`, keys up to 250 bytes);
//! - (b) reply streams (VALUE blocks with binary data, many sizes, every
//!   status word, numbers, meta replies), through `parse_reply` and one
//!   long-lived `ReplyScanner` resumed after every chunk;
//! - (c) arbitrary and token-soup input: no panic, lengths within the
//!   input, and a prefix parses as `Incomplete` or exactly like the whole.
//!
//! `PROPTEST_CASES=n` overrides the default case counts.

use std::ops::Range;

use nc_protocol::memcache::{
    parse_reply, parse_request, Command, Reply, ReplyKind, ReplyScanner, ValueBlocks,
};
use nc_protocol::{Limits, ParseError};
use proptest::collection::vec;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// One generated request: its bytes, command and keys.
#[derive(Debug, Clone)]
struct Req {
    bytes: Vec<u8>,
    command: Command,
    keys: Vec<Vec<u8>>,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![b'a'..=b'z', b'0'..=b'9', Just(b':'), Just(b'_'), Just(b'-')];
    prop_oneof![
        8 => vec(byte.clone(), 1..20),
        1 => vec(byte, 240..=250),
    ]
}

/// Binary data, biased towards bytes that look like framing.
fn data() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b'E'),
        Just(b'N'),
        Just(b'D'),
        Just(b' '),
        any::<u8>()
    ];
    let chunk = prop_oneof![
        vec(byte, 0..8),
        Just(b"\r\nEND\r\n".to_vec()),
        Just(b"\r\nVALUE k 0 1\r\n".to_vec()),
    ];
    prop_oneof![
        6 => vec(chunk, 0..6).prop_map(|c| c.concat()),
        1 => (0usize..5000).prop_map(|n| vec![b'\r'; n]),
    ]
}

fn sp() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(" "), 1 => Just("  "), 1 => Just("   ")]
}

fn noreply() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just(""), 1 => Just(" noreply"), 1 => Just(" noreply  ")]
}

fn meta_flags() -> impl Strategy<Value = String> {
    let flag = prop_oneof![
        Just("v".to_string()),
        Just("q".to_string()),
        Just("b".to_string()),
        Just("k".to_string()),
        (0u32..1000).prop_map(|n| format!("O{n}")),
        (0u32..100).prop_map(|n| format!("T{n}")),
        Just("MS".to_string()),
    ];
    vec(flag, 0..5).prop_map(|f| f.iter().map(|f| format!(" {f}")).collect())
}

fn request() -> impl Strategy<Value = Req> {
    use Command::*;
    let retrieval = (
        prop_oneof![Just(Get), Just(Gets), Just(Gat), Just(Gats)],
        vec(key(), 1..6),
        sp(),
    )
        .prop_map(|(command, keys, sp)| {
            let mut line = command.name().as_bytes().to_vec();
            if matches!(command, Gat | Gats) {
                line.extend_from_slice(b" -30");
            }
            for k in &keys {
                line.extend_from_slice(sp.as_bytes());
                line.extend_from_slice(k);
            }
            line.extend_from_slice(b"\r\n");
            Req {
                bytes: line,
                command,
                keys,
            }
        });
    let storage = (
        prop_oneof![
            Just(Set),
            Just(Add),
            Just(Replace),
            Just(Append),
            Just(Prepend),
            Just(Cas)
        ],
        key(),
        data(),
        noreply(),
        sp(),
    )
        .prop_map(|(command, key, data, noreply, sp)| {
            let cas = if command == Cas { " 12345" } else { "" };
            let mut bytes = format!("{}{sp}", command.name()).into_bytes();
            bytes.extend_from_slice(&key);
            bytes.extend_from_slice(
                format!("{sp}7 0{sp}{}{cas}{noreply}\r\n", data.len()).as_bytes(),
            );
            bytes.extend_from_slice(&data);
            bytes.extend_from_slice(b"\r\n");
            Req {
                bytes,
                command,
                keys: vec![key],
            }
        });
    let one_key = (
        prop_oneof![
            Just(Incr),
            Just(Decr),
            Just(Touch),
            Just(Delete),
            Just(MetaGet),
            Just(MetaDelete),
            Just(MetaArithmetic),
            Just(MetaDebug)
        ],
        key(),
        noreply(),
        meta_flags(),
    )
        .prop_map(|(command, key, noreply, flags)| {
            let mut bytes = format!("{} ", command.name()).into_bytes();
            bytes.extend_from_slice(&key);
            let tail = match command {
                Incr | Decr | Touch => format!(" 42{noreply}"),
                Delete => noreply.to_string(),
                _ => flags,
            };
            bytes.extend_from_slice(tail.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            Req {
                bytes,
                command,
                keys: vec![key],
            }
        });
    let ms = (key(), data(), meta_flags()).prop_map(|(key, data, flags)| {
        let mut bytes = b"ms ".to_vec();
        bytes.extend_from_slice(&key);
        bytes.extend_from_slice(format!(" {}{flags}\r\n", data.len()).as_bytes());
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(b"\r\n");
        Req {
            bytes,
            command: MetaSet,
            keys: vec![key],
        }
    });
    let no_key = prop_oneof![
        Just((Version, "version\r\n")),
        Just((Quit, "  quit \r\n")),
        Just((MetaNoop, "mn\r\n")),
        Just((FlushAll, "flush_all 10 noreply\r\n")),
        Just((FlushAll, "flush_all\r\n")),
        Just((Verbosity, "verbosity 1\r\n")),
        Just((Stats, "stats slabs\r\n")),
        Just((Stats, "stats\r\n")),
    ]
    .prop_map(|(command, s)| Req {
        bytes: s.as_bytes().to_vec(),
        command,
        keys: vec![],
    });
    prop_oneof![3 => retrieval, 3 => storage, 3 => one_key, 1 => ms, 1 => no_key]
}

/// What the proxy learns from one request: (start, len, command, keys).
type Seen = (usize, usize, Command, Vec<Range<usize>>);

fn seen(buf: &[u8], base: usize, r: &nc_protocol::memcache::Request) -> Seen {
    let keys = r
        .key_spans(buf)
        .map(|k| k.start + base..k.end + base)
        .collect();
    (base, r.len, r.command, keys)
}

/// Parses the whole stream at once.
fn parse_all_requests(stream: &[u8], limits: &Limits) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let r = parse_request(&stream[pos..], limits).expect("valid pipeline");
        out.push(seen(&stream[pos..], pos, &r));
        pos += r.len;
    }
    out
}

/// Feeds the stream in chunks cut at `cuts`, as a proxy's read loop does.
fn parse_split_requests(stream: &[u8], cuts: &[usize], limits: &Limits) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut base = 0; // stream offset of buf[0]
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    for end in ends {
        if end <= fed {
            continue;
        }
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match parse_request(&buf, limits) {
                Ok(r) => {
                    out.push(seen(&buf, base, &r));
                    buf.drain(..r.len);
                    base += r.len;
                }
                Err(ParseError::Incomplete) => break,
                Err(e) => panic!("error {e:?} at stream offset {base}"),
            }
        }
    }
    assert!(buf.is_empty());
    out
}

/// One generated reply and its expected kind.
fn reply() -> impl Strategy<Value = (Vec<u8>, ReplyKind)> {
    let values = vec((key(), data(), any::<bool>()), 0..12).prop_map(|blocks| {
        let mut bytes = Vec::new();
        for (i, (key, data, cas)) in blocks.iter().enumerate() {
            bytes.extend_from_slice(b"VALUE ");
            bytes.extend_from_slice(key);
            let cas = if *cas { " 99" } else { "" };
            bytes.extend_from_slice(format!(" {i} {}{cas}\r\n", data.len()).as_bytes());
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(b"\r\n");
        }
        let end = bytes.len();
        bytes.extend_from_slice(b"END\r\n");
        (
            bytes,
            ReplyKind::Values {
                count: blocks.len(),
                end,
            },
        )
    });
    let va = (data(), meta_flags()).prop_map(|(data, flags)| {
        let mut bytes = format!("VA {}{flags}\r\n", data.len()).into_bytes();
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(b"\r\n");
        (bytes, ReplyKind::MetaVa)
    });
    use ReplyKind::*;
    let line = prop_oneof![
        Just(("STORED\r\n", Stored)),
        Just(("NOT_STORED\r\n", NotStored)),
        Just(("EXISTS \r\n", Exists)),
        Just(("NOT_FOUND\r\n", NotFound)),
        Just(("DELETED\r\n", Deleted)),
        Just(("TOUCHED\r\n", Touched)),
        Just(("OK\r\n", Ok)),
        Just(("18446744073709551615  \r\n", Number)),
        Just(("0\r\n", Number)),
        Just(("ERROR\r\n", Error)),
        Just(("CLIENT_ERROR bad data chunk\r\n", ClientError)),
        Just(("SERVER_ERROR out of memory\r\n", ServerError)),
        Just(("VERSION 1.6.18\r\n", Version)),
        Just(("HD c1 O5\r\n", MetaHd)),
        Just(("EN\r\n", MetaEn)),
        Just(("NF\r\n", MetaNf)),
        Just(("NS O1\r\n", MetaNs)),
        Just(("EX\r\n", MetaEx)),
        Just(("MN\r\n", MetaMn)),
        Just(("ME k exp=-1 la=2\r\n", MetaMe)),
    ]
    .prop_map(|(s, k)| (s.as_bytes().to_vec(), k));
    prop_oneof![3 => values, 1 => va, 2 => line]
}

fn parse_split_replies(stream: &[u8], cuts: &[usize], limits: &Limits) -> Vec<(usize, Reply)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut base = 0;
    let mut fed = 0;
    let mut scanner = ReplyScanner::default();
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    for end in ends {
        if end <= fed {
            continue;
        }
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            let one_shot = parse_reply(&buf, limits);
            match scanner.scan(&buf, limits) {
                Ok(r) => {
                    assert_eq!(one_shot, Ok(r));
                    out.push((base, r));
                    buf.drain(..r.len);
                    base += r.len;
                }
                Err(ParseError::Incomplete) => {
                    assert_eq!(one_shot, Err(ParseError::Incomplete));
                    break;
                }
                Err(e) => panic!("error {e:?} at stream offset {base}"),
            }
        }
    }
    assert!(buf.is_empty());
    out
}

/// Tokens that mean something to the memcache parsers.
const TOKENS: &[&[u8]] = &[
    b"get ", b"set ", b"k ", b"0 ", b"1", b"\r\n", b"\r", b" ", b"noreply", b"mg ", b"ms ", b"q ",
    b"VALUE ", b"END", b"VA ", b"STORED", b"x", b"-", b"gat ", b"incr ", b"\n",
];

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn request_pipelines_split_anywhere(
        reqs in vec(request(), 1..12),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let limits = Limits::default();
        let stream: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.clone()).collect();
        let whole = parse_all_requests(&stream, &limits);
        prop_assert_eq!(whole.len(), reqs.len());
        let mut pos = 0;
        for (seen, req) in whole.iter().zip(&reqs) {
            prop_assert_eq!(seen.0, pos);
            prop_assert_eq!(seen.1, req.bytes.len());
            prop_assert_eq!(seen.2, req.command);
            let keys: Vec<&[u8]> = seen.3.iter().map(|k| &stream[k.clone()]).collect();
            let want: Vec<&[u8]> = req.keys.iter().map(|k| &k[..]).collect();
            prop_assert_eq!(keys, want);
            pos += req.bytes.len();
        }
        prop_assert_eq!(parse_split_requests(&stream, &cuts, &limits), whole);
        // Byte by byte for small pipelines.
        if stream.len() < 2000 {
            let all: Vec<usize> = (0..stream.len()).collect();
            prop_assert_eq!(parse_split_requests(&stream, &all, &limits), parse_all_requests(&stream, &limits));
        }
    }

    #[test]
    fn reply_streams_split_anywhere(
        replies in vec(reply(), 1..8),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let limits = Limits::default();
        let stream: Vec<u8> = replies.iter().flat_map(|r| r.0.clone()).collect();
        let mut whole = Vec::new();
        let mut pos = 0;
        for (bytes, kind) in &replies {
            let r = parse_reply(&stream[pos..], &limits).expect("valid reply");
            prop_assert_eq!(r, Reply { len: bytes.len(), kind: *kind });
            if let ReplyKind::Values { count, .. } = r.kind {
                let blocks: Vec<_> = ValueBlocks::new(&stream[pos..pos + r.len], &limits)
                    .expect("values")
                    .collect();
                prop_assert_eq!(blocks.len(), count);
                let mut at = 0;
                for (key, block) in blocks {
                    prop_assert_eq!(block.start, at);
                    prop_assert!(key.start > block.start && key.end < block.end);
                    at = block.end;
                }
            }
            whole.push((pos, r));
            pos += r.len;
        }
        prop_assert_eq!(parse_split_replies(&stream, &cuts, &limits), whole);
    }

    #[test]
    fn prefixes_are_incomplete_or_the_whole(
        input in prop_oneof![
            vec(any::<u8>(), 0..64),
            vec(proptest::sample::select(TOKENS), 0..16).prop_map(|t| t.concat()),
        ],
    ) {
        let tight = Limits { max_key_len: 8, max_bulk_len: 16, max_array_len: 3, max_depth: 4 };
        for limits in [Limits::default(), tight] {
            let whole_req = parse_request(&input, &limits);
            let whole_rep = parse_reply(&input, &limits);
            if let Ok(r) = &whole_req { prop_assert!(r.len <= input.len() && r.line_len <= r.len); }
            if let Ok(r) = &whole_rep { prop_assert!(r.len <= input.len()); }
            let mut scanner = ReplyScanner::default();
            for n in 0..=input.len() {
                let req = parse_request(&input[..n], &limits);
                prop_assert!(req == Err(ParseError::Incomplete) || req == whole_req, "req prefix {}", n);
                let rep = parse_reply(&input[..n], &limits);
                prop_assert!(rep == Err(ParseError::Incomplete) || rep == whole_rep, "rep prefix {}", n);
                let scanned = scanner.scan(&input[..n], &limits);
                prop_assert_eq!(&scanned, &rep);
                if scanned != Err(ParseError::Incomplete) {
                    break;
                }
            }
        }
    }
}
