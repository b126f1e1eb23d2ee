//! Property tests for the streaming contract of the RESP parser.
//!
//! A proxy reads whatever the socket gives it, appends it to a buffer and
//! parses as many complete messages as the buffer holds; `Incomplete` means
//! "read more". These tests check that this loop sees exactly the messages
//! that were sent, wherever the stream is cut:
//!
//! - (a) pipelined requests for every supported command, built to satisfy the
//!   command's arity class, with binary keys (empty, CR/LF, up to one byte
//!   below `Limits::max_key_len`) and binary values;
//! - (b) pipelined replies: nested trees of every RESP2 type, arrays up to
//!   depth 5, also walked with `ArrayElements`;
//! - (c) every strict prefix of a valid message is `Incomplete`, bytes after
//!   a complete message do not change how it parses, and a framing CR
//!   replaced by another byte is an error;
//! - (d) arbitrary, token-soup and mutated input never panics, and the parse
//!   of a prefix is either `Incomplete` or the parse of the whole input.
//!
//! `regressions` at the end holds tests for parser bugs found
//! along the way.
//!
//! The default case counts keep the file well under 10 s in debug builds;
//! `PROPTEST_CASES=n` overrides them for longer runs.

use std::ops::Range;

use nc_protocol::resp::{
    parse_reply, parse_request, Arity, ArrayElements, CommandSpec, ParseError, Reply, ReplyKind,
    ReplyScanner,
};
use nc_protocol::Limits;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// `cases` unless `PROPTEST_CASES` is set.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// ---------------------------------------------------------------------------
// Byte strategies
// ---------------------------------------------------------------------------

/// Bytes that mean something to a RESP parser, to make collisions likely.
fn resp_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b'$'),
        Just(b'*'),
        Just(b':'),
        Just(b'+'),
        Just(b'-'),
        b'0'..=b'9',
        any::<u8>(),
    ]
}

/// A key strictly shorter than `Limits::default().max_key_len`. With `long`,
/// keys right below the limit show up now and then.
fn key_bytes(long: bool) -> BoxedStrategy<Vec<u8>> {
    let max = Limits::default().max_key_len;
    let short = prop_oneof![
        6 => vec(any::<u8>(), 0..24),
        3 => vec(resp_byte(), 0..24),
        1 => Just(Vec::new()),
        1 => Just(b"\r\n".to_vec()),
    ];
    if long {
        prop_oneof![
            60 => short,
            1 => (1usize..64, any::<u8>()).prop_map(move |(below, b)| vec![b; max - below]),
        ]
        .boxed()
    } else {
        short.boxed()
    }
}

/// A non-key argument: any bytes, now and then a few KiB.
fn value_bytes(long: bool) -> BoxedStrategy<Vec<u8>> {
    let short = prop_oneof![
        8 => vec(any::<u8>(), 0..48),
        3 => vec(resp_byte(), 0..48),
        1 => Just(Vec::new()),
    ];
    if long {
        prop_oneof![20 => short, 1 => vec(any::<u8>(), 0..4096)].boxed()
    } else {
        short.boxed()
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A valid request and what parsing it must report.
#[derive(Debug, Clone)]
struct GenRequest {
    name: &'static str,
    /// Element count, the name included.
    argc: usize,
    /// Index into `arg_spans` of the routing key.
    key: Option<usize>,
    nkeys: usize,
    /// Where each element after the name lies, relative to the request start.
    arg_spans: Vec<Range<usize>>,
    wire: Vec<u8>,
    /// Offsets in `wire` of the CRs that end lines and bulk data.
    crs: Vec<usize>,
}

/// Appends `<tag><n>\r\n`, with a redundant leading zero when `pad` (the
/// parser, like nutcracker's `isdigit` loops, accepts them). Records where
/// the CR is.
fn header(out: &mut Vec<u8>, crs: &mut Vec<usize>, tag: u8, n: usize, pad: bool) {
    out.push(tag);
    if pad {
        out.push(b'0');
    }
    out.extend_from_slice(n.to_string().as_bytes());
    crlf(out, crs);
}

/// Appends a framing CRLF and records where the CR is.
fn crlf(out: &mut Vec<u8>, crs: &mut Vec<usize>) {
    crs.push(out.len());
    out.extend_from_slice(b"\r\n");
}

/// The raw material a request is built from; `build` shapes it to the
/// command's arity class.
#[derive(Debug, Clone)]
struct RequestMaterial {
    command: Index,
    /// Bit `i` upper-cases byte `i % 32` of the name.
    case_bits: u32,
    /// 1..6 keys.
    keys: Vec<Vec<u8>>,
    /// 3..7 values.
    values: Vec<Vec<u8>>,
    /// How many optional arguments variadic classes get.
    nargs: Index,
    /// EVAL numkeys, before clamping to the arguments that follow.
    numkeys: Index,
    /// Leading zeros before EVAL's numkeys.
    numkeys_zeros: usize,
    /// Bit `i % 64` pads length header `i` with a leading zero.
    pad_bits: u64,
}

impl RequestMaterial {
    fn build(&self) -> GenRequest {
        let spec: &'static CommandSpec = self.command.get(CommandSpec::all());
        let values = &self.values;
        let mut args: Vec<Vec<u8>> = Vec::new();
        let mut key = None;
        let mut nkeys = 0;
        match spec.arity {
            Arity::Argz => {}
            Arity::NoKey => {
                args.extend(values[..self.nargs.index(values.len() + 1)].iter().cloned())
            }
            Arity::Arg0 | Arity::Arg1 | Arity::Arg2 | Arity::Arg3 => {
                let n = match spec.arity {
                    Arity::Arg0 => 0,
                    Arity::Arg1 => 1,
                    Arity::Arg2 => 2,
                    _ => 3,
                };
                key = Some(0);
                nkeys = 1;
                args.push(self.keys[0].clone());
                args.extend(values[..n].iter().cloned());
            }
            Arity::ArgN => {
                key = Some(0);
                nkeys = 1;
                args.push(self.keys[0].clone());
                args.extend(values[..self.nargs.index(values.len() + 1)].iter().cloned());
            }
            Arity::ArgX => {
                key = Some(0);
                nkeys = self.keys.len();
                args.extend(self.keys.iter().cloned());
            }
            Arity::ArgKvx => {
                key = Some(0);
                nkeys = self.keys.len();
                for (k, v) in self.keys.iter().zip(values.iter().cycle()) {
                    args.push(k.clone());
                    args.push(v.clone());
                }
            }
            Arity::ArgEval => {
                // script numkeys key [key|arg ...]
                let rest: Vec<&Vec<u8>> = self.keys[1..].iter().chain(&values[1..]).collect();
                let extra = self.nargs.index(rest.len() + 1);
                let numkeys = 1 + self.numkeys.index(extra + 1);
                let mut numkeys_text = vec![b'0'; self.numkeys_zeros];
                numkeys_text.extend_from_slice(numkeys.to_string().as_bytes());
                args.push(values[0].clone());
                args.push(numkeys_text);
                args.push(self.keys[0].clone());
                args.extend(rest[..extra].iter().map(|v| (*v).clone()));
                key = Some(2);
                nkeys = 1;
            }
        }

        let name: Vec<u8> = spec
            .name
            .bytes()
            .enumerate()
            .map(|(i, b)| {
                if self.case_bits & (1 << (i % 32)) != 0 {
                    b.to_ascii_uppercase()
                } else {
                    b
                }
            })
            .collect();
        let pad = |i: usize| self.pad_bits & (1 << (i % 64)) != 0;
        let mut wire = Vec::new();
        let mut crs = Vec::new();
        header(&mut wire, &mut crs, b'*', args.len() + 1, pad(0));
        header(&mut wire, &mut crs, b'$', name.len(), pad(1));
        wire.extend_from_slice(&name);
        crlf(&mut wire, &mut crs);
        let mut arg_spans = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            header(&mut wire, &mut crs, b'$', arg.len(), pad(i + 2));
            arg_spans.push(wire.len()..wire.len() + arg.len());
            wire.extend_from_slice(arg);
            crlf(&mut wire, &mut crs);
        }
        GenRequest {
            name: spec.name,
            argc: args.len() + 1,
            key,
            nkeys,
            arg_spans,
            wire,
            crs,
        }
    }
}

fn request(long: bool) -> impl Strategy<Value = GenRequest> {
    (
        any::<Index>(),
        any::<u32>(),
        vec(key_bytes(long), 1..6),
        vec(value_bytes(long), 3..7),
        any::<Index>(),
        any::<Index>(),
        prop_oneof![6 => Just(0usize), 1 => 1usize..3],
        prop_oneof![6 => Just(0u64), 1 => any::<u64>()],
    )
        .prop_map(
            |(command, case_bits, keys, values, nargs, numkeys, numkeys_zeros, pad_bits)| {
                RequestMaterial {
                    command,
                    case_bits,
                    keys,
                    values,
                    nargs,
                    numkeys,
                    numkeys_zeros,
                    pad_bits,
                }
                .build()
            },
        )
}

/// What the streaming loop saw for one request, in the terms the generator
/// predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenRequest {
    name: &'static str,
    /// Absolute span in the stream.
    span: Range<usize>,
    argc: usize,
    /// Relative to the request start.
    key: Range<usize>,
    key_bytes: Vec<u8>,
    nkeys: usize,
    /// Relative to the request start.
    arg_spans: Vec<Range<usize>>,
}

fn expected_requests(requests: &[GenRequest]) -> Vec<SeenRequest> {
    let mut offset = 0;
    requests
        .iter()
        .map(|r| {
            let key = r.key.map_or(0..0, |k| r.arg_spans[k].clone());
            let seen = SeenRequest {
                name: r.name,
                span: offset..offset + r.wire.len(),
                argc: r.argc,
                key_bytes: r.wire[key.clone()].to_vec(),
                key,
                nkeys: r.nkeys,
                arg_spans: r.arg_spans.clone(),
            };
            offset += r.wire.len();
            seen
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Tree {
    Status(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Vec<u8>),
    NullBulk,
    NullArray,
    Array(Vec<Tree>),
}

impl Tree {
    /// Appends the encoding to `out` and the offsets of its framing CRs to
    /// `crs`.
    fn encode(&self, out: &mut Vec<u8>, crs: &mut Vec<usize>) {
        match self {
            Tree::Status(text) | Tree::Error(text) => {
                out.push(if matches!(self, Tree::Status(_)) {
                    b'+'
                } else {
                    b'-'
                });
                out.extend_from_slice(text);
                crlf(out, crs);
            }
            Tree::Integer(n) => {
                out.extend_from_slice(format!(":{n}").as_bytes());
                crlf(out, crs);
            }
            Tree::Bulk(data) => {
                header(out, crs, b'$', data.len(), false);
                out.extend_from_slice(data);
                crlf(out, crs);
            }
            Tree::NullBulk => {
                out.extend_from_slice(b"$-1");
                crlf(out, crs);
            }
            Tree::NullArray => {
                out.extend_from_slice(b"*-1");
                crlf(out, crs);
            }
            Tree::Array(items) => {
                header(out, crs, b'*', items.len(), false);
                for item in items {
                    item.encode(out, crs);
                }
            }
        }
    }

    /// The encoding and the offsets of the CRs that end bulk data.
    fn wire_and_data_crs(&self) -> (Vec<u8>, Vec<usize>) {
        fn walk(tree: &Tree, out: &mut Vec<u8>, data_crs: &mut Vec<usize>) {
            let mut framing = Vec::new();
            match tree {
                Tree::Array(items) => {
                    header(out, &mut framing, b'*', items.len(), false);
                    for item in items {
                        walk(item, out, data_crs);
                    }
                }
                Tree::Bulk(_) => {
                    tree.encode(out, &mut framing);
                    data_crs.push(out.len() - 2);
                }
                leaf => leaf.encode(out, &mut framing),
            }
        }
        let (mut out, mut data_crs) = (Vec::new(), Vec::new());
        walk(self, &mut out, &mut data_crs);
        (out, data_crs)
    }

    fn wire(&self) -> Vec<u8> {
        self.wire_and_crs().0
    }

    fn wire_and_crs(&self) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut crs) = (Vec::new(), Vec::new());
        self.encode(&mut out, &mut crs);
        (out, crs)
    }

    fn kind(&self) -> ReplyKind {
        match self {
            Tree::Status(_) => ReplyKind::Status,
            Tree::Error(_) => ReplyKind::Error,
            // nutcracker's reading: the digits modulo 2^32, sign ignored.
            Tree::Integer(n) => ReplyKind::Integer(n.unsigned_abs() as u32),
            Tree::Bulk(_) => ReplyKind::Bulk,
            Tree::NullBulk => ReplyKind::NullBulk,
            Tree::NullArray => ReplyKind::NullArray,
            Tree::Array(items) => ReplyKind::Array(items.len()),
        }
    }

    /// Nesting depth counted in non-empty arrays (an empty array needs no
    /// stack slot in the scanner).
    fn depth(&self) -> usize {
        match self {
            Tree::Array(items) if !items.is_empty() => {
                1 + items.iter().map(Tree::depth).max().unwrap_or(0)
            }
            _ => 0,
        }
    }
}

/// Status and error text: anything but CR and LF.
fn line_text() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..32).prop_map(|v| {
        v.into_iter()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect()
    })
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        line_text().prop_map(Tree::Status),
        line_text().prop_map(|t| Tree::Error([&b"ERR "[..], &t].concat())),
        any::<i64>().prop_map(Tree::Integer),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            -1000i64..1000
        ]
        .prop_map(Tree::Integer),
        value_bytes(false).prop_map(Tree::Bulk),
        vec(resp_byte(), 0..16).prop_map(Tree::Bulk),
        Just(Tree::NullBulk),
        Just(Tree::NullArray),
    ];
    // Five levels of recursion: arrays nest at most five deep.
    leaf.prop_recursive(5, 96, 8, |inner| vec(inner, 0..8).prop_map(Tree::Array))
}

/// `wire` must be exactly `tree`: parse_reply sees all of it, and
/// `ArrayElements` splits every array into its children's encodings.
fn check_tree(tree: &Tree, wire: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        parse_reply(wire, limits),
        Ok(Reply {
            len: wire.len(),
            kind: tree.kind()
        })
    );
    if let Tree::Array(items) = tree {
        let elements =
            ArrayElements::new(wire, limits).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(elements.len(), items.len());
        let spans: Vec<Range<usize>> = elements.collect();
        prop_assert_eq!(spans.len(), items.len());
        let mut pos = wire.len() - items.iter().map(|t| t.wire().len()).sum::<usize>();
        for (item, span) in items.iter().zip(spans) {
            let item_wire = item.wire();
            prop_assert_eq!(span.clone(), pos..pos + item_wire.len());
            pos = span.end;
            check_tree(item, &wire[span], limits)?;
        }
        prop_assert_eq!(pos, wire.len());
    } else {
        prop_assert!(ArrayElements::new(wire, limits).is_err());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The streaming loop and stream splitting
// ---------------------------------------------------------------------------

/// Chunk boundaries: the given cut points, plus every `every` bytes when the
/// stream is short enough for byte-wise feeding to stay cheap.
fn chunks(len: usize, cuts: &[Index], every: Option<usize>) -> Vec<Range<usize>> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    if let Some(step) = every {
        if len <= 8 * 1024 {
            points.extend((0..len).step_by(step));
        }
    }
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[0]..w[1]).collect()
}

fn splits() -> impl Strategy<Value = (Vec<Index>, Option<usize>)> {
    (
        vec(any::<Index>(), 0..32),
        prop_oneof![2 => Just(None), 1 => (1usize..8).prop_map(Some)],
    )
}

/// Feeds `stream` chunk by chunk into a read buffer the way a proxy does and
/// parses every complete message with `parse`, returning `(absolute span,
/// message)` pairs. Any error other than `Incomplete`, or bytes left over at
/// the end, fails the test case.
fn stream_loop<T>(
    stream: &[u8],
    chunks: &[Range<usize>],
    mut parse: impl FnMut(&[u8]) -> Result<(usize, T), ParseError>,
) -> Result<Vec<(Range<usize>, T)>, TestCaseError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut base = 0; // stream offset of buf[0]
    let mut start = 0; // next message in buf
    let mut out = Vec::new();
    for chunk in chunks {
        // Reclaim consumed bytes, as a reused read buffer would.
        buf.drain(..start);
        base += start;
        start = 0;
        buf.extend_from_slice(&stream[chunk.clone()]);
        loop {
            match parse(&buf[start..]) {
                Ok((len, msg)) => {
                    prop_assert!(
                        len > 0 && len <= buf.len() - start,
                        "bad length {} at {}",
                        len,
                        base + start
                    );
                    out.push((base + start..base + start + len, msg));
                    start += len;
                }
                Err(ParseError::Incomplete) => break,
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "{e:?} at stream offset {}",
                        base + start
                    )))
                }
            }
        }
    }
    prop_assert_eq!(base + start, stream.len(), "bytes left unparsed");
    Ok(out)
}

fn stream_requests(
    stream: &[u8],
    chunks: &[Range<usize>],
    limits: &Limits,
) -> Result<Vec<SeenRequest>, TestCaseError> {
    let seen = stream_loop(stream, chunks, |buf| {
        let req = parse_request(buf, limits)?;
        let msg = &buf[..req.len];
        let seen = SeenRequest {
            name: req.command.name,
            span: 0..0,
            argc: req.argc,
            key: req.key.clone(),
            key_bytes: msg[req.key.clone()].to_vec(),
            nkeys: req.nkeys,
            arg_spans: req.args(msg).collect(),
        };
        Ok((req.len, seen))
    })?;
    Ok(seen
        .into_iter()
        .map(|(span, r)| SeenRequest { span, ..r })
        .collect())
}

fn stream_replies(
    stream: &[u8],
    chunks: &[Range<usize>],
    limits: &Limits,
) -> Result<Vec<(Range<usize>, ReplyKind)>, TestCaseError> {
    stream_loop(stream, chunks, |buf| {
        parse_reply(buf, limits).map(|r| (r.len, r.kind))
    })
}

// ---------------------------------------------------------------------------
// Robustness helpers for (d)
// ---------------------------------------------------------------------------

/// Limits used on hostile input: the defaults and a tight set that makes the
/// limit checks fire on short inputs.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        Just(Limits {
            max_key_len: 8,
            max_bulk_len: 64,
            max_array_len: 8,
            max_depth: 3
        }),
        Just(Limits::for_mbuf_size(64)),
    ]
}

/// Everything the parsers promise about one buffer, whatever it holds:
/// no panic, `Ok` lengths within the input, a complete message parses the
/// same without what follows it, a prefix parses as `Incomplete` or exactly
/// as the whole input, and `ArrayElements` stays in bounds.
fn check_any_input(data: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let request = parse_request(data, limits);
    if let Ok(req) = &request {
        prop_assert!(req.len > 0 && req.len <= data.len());
        let msg = &data[..req.len];
        prop_assert_eq!(&parse_request(msg, limits), &request);
        prop_assert!(req.key.end <= req.len && req.args_start <= req.len);
        let args: Vec<Range<usize>> = req.args(msg).collect();
        prop_assert_eq!(args.len(), req.argc - 1);
        prop_assert!(
            req.nkeys == 0 || args.contains(&req.key),
            "key {:?} is not an argument",
            req.key
        );
        // A request is also a well-formed array reply, unless it has an
        // element length like `$01`: nutcracker's reply parser reads an
        // element length of two bytes with the value 1 as null.
        let null_like = msg
            .windows(4)
            .any(|w| w[0] == b'$' && w[3] == b'\r' && (w[1] == b'0' && w[2] == b'1'));
        if limits.max_depth > 0 && !null_like {
            prop_assert_eq!(
                parse_reply(data, limits),
                Ok(Reply {
                    len: req.len,
                    kind: ReplyKind::Array(req.argc)
                })
            );
        }
    }

    let reply = parse_reply(data, limits);
    if let Ok(rep) = &reply {
        prop_assert!(rep.len > 0 && rep.len <= data.len());
        let msg = &data[..rep.len];
        prop_assert_eq!(&parse_reply(msg, limits), &reply);
        if let ReplyKind::Array(n) = rep.kind {
            let elements = ArrayElements::new(msg, limits)
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let spans: Vec<Range<usize>> = elements.collect();
            prop_assert_eq!(spans.len(), n);
            let mut pos = rep.len - spans.iter().map(|s| s.len()).sum::<usize>();
            for span in spans {
                prop_assert_eq!(span.start, pos);
                // Exactly one element (elements have their own rules, so
                // check it as the element of a one-element array).
                let mut alone = b"*1\r\n".to_vec();
                alone.extend_from_slice(&msg[span.clone()]);
                prop_assert!(parse_reply(&alone, limits).is_ok_and(|r| r.len == alone.len()));
                pos = span.end;
            }
            prop_assert_eq!(pos, rep.len);
        }
    }

    // ArrayElements on raw bytes (a misuse, but it must not panic).
    if let Ok(elements) = ArrayElements::new(data, limits) {
        let announced = elements.len();
        let mut count = 0;
        for span in elements {
            prop_assert!(span.start < span.end && span.end <= data.len());
            count += 1;
        }
        prop_assert!(count <= announced);
    }

    // Streaming consistency: what a prefix says stays true.
    for cut in 0..data.len() {
        let prefix = &data[..cut];
        match parse_request(prefix, limits) {
            Err(ParseError::Incomplete) => {}
            early => prop_assert_eq!(&early, &request, "request prefix of {} bytes", cut),
        }
        match parse_reply(prefix, limits) {
            Err(ParseError::Incomplete) => {}
            early => prop_assert_eq!(&early, &reply, "reply prefix of {} bytes", cut),
        }
    }
    Ok(())
}

/// Fragments of RESP that random bytes almost never produce.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"*1\r\n",
        b"*2\r\n",
        b"*3\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"$0\r\n",
        b"$1\r\n",
        b"$3\r\n",
        b"$4\r\n",
        b"$-1\r\n",
        b"\r\n",
        b"\r",
        b"\n",
        b"get",
        b"GET",
        b"mget",
        b"mset",
        b"eval",
        b"ping",
        b"lolwut",
        b"k",
        b"1",
        b"0",
        b"-",
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":1\r\n",
        b":-1\r\n",
        b"*",
        b"$",
        b":",
        b"+",
        b"99999999999999999999",
        b"18446744073709551615",
        b"9223372036854775808",
    ];
    vec(proptest::sample::select(TOKENS), 0..48).prop_map(|tokens| tokens.concat())
}

/// One edit of a valid stream.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), resp_byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), resp_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i.index(data.len());
                data[i] = *b;
            }
            Mutation::Insert(i, b) => data.insert(i.index(data.len() + 1), *b),
            Mutation::Delete(i) => {
                data.remove(i.index(data.len()));
            }
            Mutation::Truncate(i) => data.truncate(i.index(data.len())),
        }
    }
    data
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(96))]

    /// (a) A pipeline of valid requests parses back, for any split, into
    /// exactly the generated commands, keys, key counts and byte spans.
    #[test]
    fn pipelined_requests_survive_any_split(requests in vec(request(true), 1..24), (cuts, every) in splits()) {
        let limits = Limits::default();
        let stream: Vec<u8> = requests.iter().flat_map(|r| r.wire.iter().copied()).collect();
        let expected = expected_requests(&requests);
        let seen = stream_requests(&stream, &chunks(stream.len(), &cuts, every), &limits)?;
        prop_assert_eq!(seen, expected);
    }

    /// (b) A pipeline of reply trees scans back, for any split, into exactly
    /// the generated lengths and kinds; every array splits into its children.
    #[test]
    fn pipelined_replies_survive_any_split(trees in vec(tree(), 1..16), (cuts, every) in splits()) {
        let limits = Limits::default();
        let wires: Vec<Vec<u8>> = trees.iter().map(Tree::wire).collect();
        let stream = wires.concat();
        let mut offset = 0;
        let expected: Vec<(Range<usize>, ReplyKind)> = trees
            .iter()
            .zip(&wires)
            .map(|(t, w)| {
                offset += w.len();
                (offset - w.len()..offset, t.kind())
            })
            .collect();
        let seen = stream_replies(&stream, &chunks(stream.len(), &cuts, every), &limits)?;
        prop_assert_eq!(&seen, &expected);
        // The resumable scanner finds the same replies under the same splits.
        let mut scanner = ReplyScanner::default();
        let resumed = stream_loop(&stream, &chunks(stream.len(), &cuts, every), |buf| {
            scanner.scan(buf, &limits).map(|r| (r.len, r.kind))
        })?;
        prop_assert_eq!(resumed, expected);
        for (tree, wire) in trees.iter().zip(&wires) {
            check_tree(tree, wire, &limits)?;
        }
    }

    /// (b) `max_depth` is exact: a tree parses with its own depth as the
    /// limit and is `TooDeep` one below it.
    #[test]
    fn depth_limit_is_exact(tree in tree()) {
        let wire = tree.wire();
        let depth = tree.depth();
        let at = Limits { max_depth: depth, ..Limits::default() };
        prop_assert_eq!(parse_reply(&wire, &at), Ok(Reply { len: wire.len(), kind: tree.kind() }));
        if depth > 0 {
            let below = Limits { max_depth: depth - 1, ..Limits::default() };
            prop_assert_eq!(parse_reply(&wire, &below), Err(ParseError::TooDeep));
        }
    }

    /// (c) Every strict prefix of a valid request is `Incomplete`, and
    /// whatever follows a complete request does not change its parse.
    #[test]
    fn request_prefixes_are_incomplete(request in request(false), suffix in vec(any::<u8>(), 0..16)) {
        let limits = Limits::default();
        let wire = &request.wire;
        for cut in 0..wire.len() {
            prop_assert_eq!(parse_request(&wire[..cut], &limits), Err(ParseError::Incomplete), "cut at {}", cut);
        }
        let whole = parse_request(wire, &limits);
        prop_assert!(whole.as_ref().is_ok_and(|r| r.len == wire.len()), "{:?}", whole);
        let mut longer = wire.clone();
        longer.extend_from_slice(&suffix);
        prop_assert_eq!(parse_request(&longer, &limits), whole);
    }

    /// (c) The same for replies.
    #[test]
    fn reply_prefixes_are_incomplete(tree in tree(), suffix in vec(any::<u8>(), 0..16)) {
        let limits = Limits::default();
        let wire = tree.wire();
        for cut in 0..wire.len() {
            prop_assert_eq!(parse_reply(&wire[..cut], &limits), Err(ParseError::Incomplete), "cut at {}", cut);
        }
        let whole = parse_reply(&wire, &limits);
        prop_assert_eq!(whole, Ok(Reply { len: wire.len(), kind: tree.kind() }));
        let mut longer = wire.clone();
        longer.extend_from_slice(&suffix);
        prop_assert_eq!(parse_reply(&longer, &limits), whole);
    }

    /// (c) A framing CR replaced by any other byte makes the request an
    /// error, never `Ok` and never a wait for more bytes.
    #[test]
    fn broken_request_terminator_is_an_error(request in request(false), which in any::<Index>(), byte in any::<u8>()) {
        prop_assume!(byte != b'\r');
        let at = *which.get(&request.crs);
        let mut wire = request.wire.clone();
        wire[at] = byte;
        let got = parse_request(&wire, &Limits::default());
        prop_assert!(matches!(got, Err(e) if e != ParseError::Incomplete), "CR at {} -> {:?}: {:?}", at, byte, got);
    }

    /// (c) For replies, the CR after bulk data: the only framing CR no other
    /// byte can stand in for under nutcracker's rules (a status line runs
    /// to the next CR, and a `-` in a length reads as null up to the next
    /// CRLF).
    #[test]
    fn broken_bulk_data_terminator_is_an_error(tree in tree(), which in any::<Index>(), byte in any::<u8>()) {
        prop_assume!(byte != b'\r');
        // At least one bulk, wherever the tree has none.
        let tree = Tree::Array(vec![tree, Tree::Bulk(b"x".to_vec())]);
        let (mut wire, crs) = tree.wire_and_data_crs();
        let at = *which.get(&crs);
        wire[at] = byte;
        let got = parse_reply(&wire, &Limits::default());
        prop_assert!(matches!(got, Err(e) if e != ParseError::Incomplete), "CR at {} -> {:?}: {:?}", at, byte, got);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// (d) Random bytes: no panic, and the invariants of `check_any_input`.
    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..256), limits in limits()) {
        check_any_input(&data, &limits)?;
    }

    /// (d) RESP token soup reaches deeper states than random bytes.
    #[test]
    fn token_soup_never_panics(data in token_soup(), limits in limits()) {
        check_any_input(&data, &limits)?;
    }

    /// (d) Valid messages with a few bytes changed, inserted or removed.
    #[test]
    fn mutated_messages_never_panic(
        requests in vec(request(false), 1..3),
        trees in vec(tree(), 1..3),
        mutations in vec(mutation(), 1..4),
        limits in limits(),
    ) {
        let requests: Vec<u8> = requests.iter().flat_map(|r| r.wire.iter().copied()).collect();
        let replies: Vec<u8> = trees.iter().flat_map(Tree::wire).collect();
        for data in [requests, replies] {
            let data = mutate(data, &mutations);
            // The prefix sweep in check_any_input is quadratic; keep it cheap.
            let data = &data[..data.len().min(1024)];
            check_any_input(data, &limits)?;
        }
    }
}

/// Regressions for parser bugs these properties and the fuzzer led to.
mod regressions {
    use super::*;

    /// Integer replies are read as nutcracker reads them (what it sums when
    /// it merges DEL/UNLINK/TOUCH fragments): digits modulo 2^32, `-` signs
    /// ignored; at the top level anything else before the CR is an error.
    /// (This replaced an i64 reading that rejected out-of-range values and
    /// so closed server connections nutcracker keeps.)
    #[test]
    fn integer_replies_read_as_nutcracker_reads_them() {
        let limits = Limits::default();
        for (input, value) in [
            (&b":42\r\n"[..], 42u32),
            (b":-7\r\n", 7),
            (b":\r\n", 0),
            (b":1-2\r\n", 12),
            (b":4294967296\r\n", 0),
            (
                b":9999999999999999999\r\n",
                (9_999_999_999_999_999_999u64 % (1 << 32)) as u32,
            ),
        ] {
            assert_eq!(
                parse_reply(input, &limits).map(|r| (r.kind, r.len)),
                Ok((ReplyKind::Integer(value), input.len())),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        for input in [&b":1x\r\n"[..], b":+1\r\n", b": 1\r\n", b":1\rx"] {
            assert!(
                matches!(parse_reply(input, &limits), Err(ParseError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// `data + len` is unchecked in both parsers: with a bulk limit near
    /// `usize::MAX` a length header alone overflows (a panic in debug builds,
    /// a wrong answer in release).
    #[test]
    fn huge_bulk_limit_does_not_overflow() {
        let limits = Limits {
            max_bulk_len: usize::MAX,
            ..Limits::default()
        };
        let _ = parse_reply(b"$18446744073709551615\r\n", &limits);
        let _ = parse_request(b"*1\r\n$18446744073709551615\r\n", &limits);
        let _ = parse_request(
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$18446744073709551615\r\n",
            &limits,
        );
    }

    /// The command name is bounded only by `max_bulk_len`, so a client can
    /// make the proxy buffer up to 512 MiB before it learns the command is
    /// unknown, although no name longer than 17 bytes can match (and
    /// nutcracker keeps a name within one mbuf).
    #[test]
    fn over_long_command_name_is_rejected_from_its_length() {
        let got = parse_request(b"*1\r\n$536870912\r\n", &Limits::default());
        assert!(
            matches!(got, Err(e) if e != ParseError::Incomplete),
            "{got:?}"
        );
    }
}
