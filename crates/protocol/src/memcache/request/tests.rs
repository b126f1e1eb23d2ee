//! Unit tests of `parse_request`: nutcracker's own vectors (src/test_all.c,
//! memcache.md §1.7), every command and extension, the accept/reject rules,
//! prefixes and limits.

use super::*;
use crate::memcache::Command::*;
use ParseError::*;

fn limits() -> Limits {
    Limits::default()
}

/// Parses `input` whole (must be exactly one request) and checks that every
/// proper prefix is `Incomplete` and that trailing bytes change nothing.
fn ok(input: &[u8]) -> Request {
    let req = parse_request(input, &limits())
        .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(input)));
    assert_eq!(req.len, input.len(), "{:?}", String::from_utf8_lossy(input));
    for n in 0..input.len() {
        assert_eq!(
            parse_request(&input[..n], &limits()),
            Err(Incomplete),
            "prefix {n} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let mut more = input.to_vec();
    more.extend_from_slice(b"get x\r\n");
    assert_eq!(parse_request(&more, &limits()), Ok(req.clone()));
    req
}

/// `input` is an error, and so is every longer input starting with it.
fn err(input: &[u8]) -> ParseError {
    let e = parse_request(input, &limits()).expect_err(&String::from_utf8_lossy(input));
    assert_ne!(e, Incomplete, "{:?}", String::from_utf8_lossy(input));
    let mut more = input.to_vec();
    more.extend_from_slice(b" 1\r\n\r\n");
    assert_eq!(parse_request(&more, &limits()), Err(e));
    e
}

fn keys(input: &[u8]) -> Vec<&[u8]> {
    let req = ok(input);
    let spans: Vec<_> = req.key_spans(input).collect();
    assert_eq!(spans.len(), req.nkeys);
    spans.into_iter().map(|r| &input[r]).collect()
}

fn s(r: &Option<Range<usize>>, input: &[u8]) -> Vec<u8> {
    r.clone().map(|r| input[r].to_vec()).unwrap_or_default()
}

#[test]
fn nutcracker_success_vectors() {
    let x250 = "x".repeat(250);
    let get250 = format!("get a b {x250}\r\n");
    let cases: &[(&[u8], Command)] = &[
        (b"add key 0 600 5\r\nvalue\r\n", Add),
        (b"add key 0 0 1 noreply\r\n\n\r\n", Add),
        (b"append key 0 600 5\r\nvalue\r\n", Append),
        (b"append key 0 1 0 noreply\r\n\r\n", Append),
        (b"cas key 0 600 5 123456\r\nvalue\r\n", Cas),
        (b"cas key 0 1 1 1 noreply\r\nx\r\n", Cas),
        (b"decr key 0\r\n", Decr),
        (b"decr key 0 noreply\r\n", Decr),
        (b"delete a noreply\r\n", Delete),
        (b"delete key\r\n", Delete),
        (get250.as_bytes(), Get),
        (b"get key\r\n", Get),
        (b"gets u\r\n", Gets),
        (b"incr key 1\r\n", Incr),
        (b"incr key 9223372036854775807 noreply\r\n", Incr),
        (b"prepend key 0 600 5\r\nvalue\r\n", Prepend),
        (b"prepend key 0 600 0 noreply\r\n\r\n", Prepend),
        (b"quit\r\n", Quit),
        (b"replace key 0 600 5\r\nvalue\r\n", Replace),
        (b"replace key 0 9 0 noreply\r\n\r\n", Replace),
        (b"set key 0 5 10 noreply\r\nvalue12345\r\n", Set),
        (b"set key 0 600 5\r\nvalue\r\n", Set),
        (b"touch key 12345\r\n", Touch),
        (b"touch key 12345 noreply\r\n", Touch),
        (b"version\r\n", Version),
    ];
    for &(input, command) in cases {
        let req = ok(input);
        assert_eq!(req.command, command);
        let text = String::from_utf8_lossy(input);
        assert_eq!(req.noreply.is_some(), text.contains(" noreply"), "{text}");
        if let Some(n) = &req.noreply {
            assert_eq!(&input[n.clone()], b"noreply");
        }
    }
    assert_eq!(keys(get250.as_bytes()), [b"a", b"b", x250.as_bytes()]);
}

#[test]
fn nutcracker_failure_vectors() {
    let x251 = "x".repeat(251);
    let add251 = format!("add {x251} 0 600 5\r\nvalue\r\n");
    let cases: &[&[u8]] = &[
        add251.as_bytes(),
        b"add\r\n",
        b"get\r\n",
        b"get \r\n",
        b"get key\r\r",
        b"append key 0 600\r\n",
        b"cas key 0 600 5 \r\n",
        b"decr key 0 extra\r\n",
        b"decr key\r\n",
        b"delete \r\n",
        b"DELETE key\r\n",
        b"gets\r\n",
        b"incr\r\n",
        b"incr key 0notanint\r\n",
        b"prepend key 0 600 5\r\nvalueextra\r\n",
        b"prepend key 0 600 0 noreply\r\r",
        b"replace key 0 9 ?\r\n\r\n",
        b"set key 0 5 10 noreply\r\nvalue12345\r\r",
        b"set key 0 600 5\r\nvaluee\r\n",
        b"touch missingarg\r\n",
        b"version extra\r\n",
    ];
    for &input in cases {
        err(input);
    }
    assert_eq!(err(add251.as_bytes()), KeyTooLong);
    assert_eq!(err(b"DELETE key\r\n"), UnsupportedCommand);
}

#[test]
fn errors_arrive_with_the_byte() {
    // SW_START wants a lower-case letter: the first byte decides.
    for first in [
        &b"G"[..],
        b"D",
        b"\r",
        b"\n",
        b"0",
        b"-",
        b"_",
        b"\x80",
        b"\x00",
    ] {
        assert_eq!(parse_request(first, &limits()), Err(UnsupportedCommand));
    }
    // A name no command starts with fails before its terminator.
    for bad in [
        &b"gex"[..],
        b"getz",
        b"geT",
        b"sets",
        b"flush_alls",
        b"mx",
        b"verbose",
    ] {
        assert_eq!(
            parse_request(bad, &limits()),
            Err(UnsupportedCommand),
            "{bad:?}"
        );
    }
    assert_eq!(parse_request(b"ge ", &limits()), Err(UnsupportedCommand));
    // A terminator where a space is required.
    assert_eq!(parse_request(b"get\r", &limits()), Err(Arity));
    assert_eq!(parse_request(b"set k\r", &limits()), Err(Arity));
    assert_eq!(parse_request(b"incr k\r", &limits()), Err(Arity));
    assert_eq!(parse_request(b"set k 0\r", &limits()), Err(Arity));
    assert_eq!(
        parse_request(b"set k x", &limits()),
        Err(Protocol("expected digit"))
    );
    assert!(parse_request(b"delete k 0", &limits()).is_err());
    assert!(parse_request(b"incr k 1x", &limits()).is_err());
    assert!(parse_request(b"delete k nox", &limits()).is_err());
    assert!(parse_request(b"delete k noreplyx", &limits()).is_err());
    assert!(parse_request(b"get k\r\r", &limits()).is_err());
    assert!(parse_request(b"set k 0 0 1\r\nab", &limits()).is_err());
    assert!(parse_request(b"set k 0 0 1\r\na\rx", &limits()).is_err());
    assert!(parse_request(b"set k 0 0 1\rx", &limits()).is_err());
    // Valid prefixes stay Incomplete.
    for good in [
        &b"g"[..],
        b"ge",
        b"get",
        b"get ",
        b"flush_",
        b"m",
        b"delete k nore",
    ] {
        assert_eq!(parse_request(good, &limits()), Err(Incomplete), "{good:?}");
    }
}

#[test]
fn spaces_where_nutcracker_allows_them() {
    let input = b"   set   k   1   2   3   noreply   \r\nabc\r\n";
    let req = ok(input);
    assert_eq!(req.command, Set);
    assert_eq!(&input[req.key.clone()], b"k");
    assert_eq!(s(&req.noreply, input), b"noreply");
    assert_eq!(req.line_len, input.len() - 5);
    ok(b"cas k 1 2 3   4  \r\nabc\r\n");
    ok(b"get   a   b  \r\n");
    ok(b"  quit  \r\n");
    ok(b"version   \r\n");
    ok(b"delete k   \r\n");
    ok(b"incr k   5   \r\n");
    assert_eq!(keys(b"gets  a  bb   ccc \r\n"), [&b"a"[..], b"bb", b"ccc"]);
    // ... but the flags and exptime need their space, and so does cas' bytes.
    err(b"set k 0\r\n");
    err(b"set k 0 0\r\n");
    err(b"cas k 0 0 1\r\n");
    // Tabs are not spaces.
    err(b"set k\t0 0 1\r\na\r\n");
    err(b"quit\t\r\n");
}

#[test]
fn keys_are_any_bytes_but_space_and_cr() {
    // nutcracker does not validate key bytes (memcache.md §1.1).
    let input = b"get a\nb \x00\x01 \xff\r\n";
    assert_eq!(keys(input), [&b"a\nb"[..], b"\x00\x01", b"\xff"]);
    let input = b"set k\n\x00 0 0 1\r\nx\r\n";
    assert_eq!(keys(input), [&b"k\n\x00"[..]]);
}

#[test]
fn key_length_250_vs_251() {
    for cmd in ["get", "gets", "delete", "incr", "decr", "touch"] {
        let tail = if matches!(cmd, "get" | "gets" | "delete") {
            ""
        } else {
            " 1"
        };
        let k250 = "k".repeat(250);
        let k251 = "k".repeat(251);
        let good = format!("{cmd} {k250}{tail}\r\n");
        assert_eq!(ok(good.as_bytes()).key.len(), 250);
        assert_eq!(
            err(format!("{cmd} {k251}{tail}\r\n").as_bytes()),
            KeyTooLong
        );
        // Checked when the token ends: 251 bytes without a terminator wait.
        assert_eq!(
            parse_request(format!("{cmd} {k251}").as_bytes(), &limits()),
            Err(Incomplete)
        );
    }
    let k250 = "k".repeat(250);
    ok(format!("set {k250} 0 0 1\r\nx\r\n").as_bytes());
    ok(format!("mg {k250} v\r\n").as_bytes());
    assert_eq!(err(format!("mg {k250}k v\r\n").as_bytes()), KeyTooLong);
    assert_eq!(err(format!("ms {k250}k 1\r\nx\r\n").as_bytes()), KeyTooLong);
    assert_eq!(err(format!("gat 0 a {k250}k\r\n").as_bytes()), KeyTooLong);
    // Limits::max_key_len (strictly shorter) applies too.
    let tight = Limits {
        max_key_len: 4,
        ..Limits::default()
    };
    assert!(parse_request(b"get abc\r\n", &tight).is_ok());
    assert_eq!(parse_request(b"get abcd\r\n", &tight), Err(KeyTooLong));
}

#[test]
fn numbers() {
    // incr/decr/touch: SW_SPACES_BEFORE_NUM takes a digit or '-', SW_NUM
    // digits only.
    for cmd in ["incr", "decr", "touch"] {
        ok(format!("{cmd} k -\r\n").as_bytes());
        ok(format!("{cmd} k -5\r\n").as_bytes());
        ok(format!("{cmd} k 007 noreply\r\n").as_bytes());
        ok(format!("{cmd} k 99999999999999999999999999\r\n").as_bytes());
        err(format!("{cmd} k 5-\r\n").as_bytes());
        err(format!("{cmd} k --5\r\n").as_bytes());
        err(format!("{cmd} k +5\r\n").as_bytes());
        err(format!("{cmd} k \r\n").as_bytes());
        err(format!("{cmd} k 1 2\r\n").as_bytes());
    }
    // Storage numbers are digits only: no negative exptime.
    err(b"set k 0 -1 1\r\nx\r\n");
    err(b"set k -0 0 1\r\nx\r\n");
    err(b"set k 0 0 -1\r\n");
    err(b"cas k 0 0 1 -1\r\nx\r\n");
    // Storage fields must fit memcached's types (flags u32, exptime i64,
    // cas u64), else memcached answers twice: refused, unlike nutcracker.
    ok(b"set k 4294967295 9223372036854775807 1\r\nx\r\n");
    ok(b"cas k 0 0 1 18446744073709551615\r\nx\r\n");
    ok(b"set k 000000000000000000000004294967295 0 1\r\nx\r\n");
    err(b"set k 4294967296 0 1\r\nx\r\n");
    err(b"set k 0 9223372036854775808 1\r\nx\r\n");
    err(b"cas k 0 0 1 18446744073709551616\r\nx\r\n");
    err(b"set k 0 99999999999999999999 1\r\nx\r\n");
}

#[test]
fn noreply_placement() {
    for input in [
        &b"set k 0 0 1 noreply\r\nx\r\n"[..],
        b"cas k 0 0 1 5 noreply\r\nx\r\n",
        b"incr k 1 noreply\r\n",
        b"decr k 1 noreply  \r\n",
        b"touch k 1 noreply\r\n",
        b"delete k noreply\r\n",
        b"flush_all noreply\r\n",
        b"flush_all 10 noreply\r\n",
        b"verbosity 1 noreply\r\n",
    ] {
        let req = ok(input);
        assert_eq!(s(&req.noreply, input), b"noreply");
    }
    for input in [
        &b"set k 0 0 1 noreply noreply\r\nx\r\n"[..],
        b"set k 0 noreply 0 1\r\nx\r\n",
        b"incr k noreply\r\n",
        b"delete k noreplyx\r\n",
        b"delete k norepl\r\n",
        b"delete k NOREPLY\r\n",
        b"delete k noreply x\r\n",
        b"version noreply\r\n",
        b"quit noreply\r\n",
        b"mg k 1noreply\r\n",
    ] {
        err(input);
    }
    // In get it is just a key.
    assert_eq!(keys(b"get k noreply\r\n"), [&b"k"[..], b"noreply"]);
    assert_eq!(ok(b"get k noreply\r\n").noreply, None);
}

#[test]
fn data_block_framing() {
    let req = ok(b"set k 0 0 5\r\na\r\nb\r\r\n");
    assert_eq!(req.line_len, 13);
    ok(b"set k 0 0 0\r\n\r\n");
    ok(b"set k 0 0 7\r\n\r\nEND\r\n\r\n");
    err(b"set k 0 0 1\r\nab\r\n");
    err(b"set k 0 0 2\r\na\r\n");
    err(b"set k 0 0 1\r\nx\n\r");
    err(b"set k 0 0 1\r\nx\r\r");
    err(b"set k 0 0 1\rx\r\n");
    err(b"set k 0 0 1\n");
    err(b"set k 0 0 1\r\r");
    // The data is not scanned: only the CRLF at <bytes> is looked at.
    let mut big = b"set k 0 0 100000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'\r', 100_000));
    assert_eq!(parse_request(&big, &limits()), Err(Incomplete));
    big.extend_from_slice(b"\r\n");
    assert_eq!(parse_request(&big, &limits()).map(|r| r.len), Ok(big.len()));
}

#[test]
fn version_and_quit_take_nothing() {
    assert_eq!(ok(b"version\r\n").nkeys, 0);
    assert_eq!(ok(b"quit\r\n").key, 0..0);
    err(b"version extra\r\n");
    err(b"quit unknownarg\r\n");
    err(b"version\n");
    err(b"quit\r\r");
}

#[test]
fn retrieval_spans() {
    let input = b"get  a bb  ccc\r\n";
    let req = ok(input);
    assert_eq!(req.command, Get);
    assert_eq!(req.nkeys, 3);
    assert_eq!(&input[req.key.clone()], b"a");
    assert_eq!(&input[req.keys.clone()], b"a bb  ccc");
    assert_eq!(req.line_len, input.len());
    assert_eq!(req.exptime, None);
    // One-key commands: keys == key.
    let input = b"delete abc\r\n";
    let req = ok(input);
    assert_eq!((req.nkeys, req.keys.clone()), (1, req.key.clone()));
    assert_eq!(keys(input), [b"abc"]);
    // No-key commands.
    assert_eq!(keys(b"stats\r\n"), Vec::<&[u8]>::new());
}

#[test]
fn gat_gats() {
    let input = b"gat 60 a b\r\n";
    let req = ok(input);
    assert_eq!(req.command, Gat);
    assert_eq!(s(&req.exptime, input), b"60");
    assert_eq!(keys(input), [b"a", b"b"]);
    let input = b"gats   -1   k\r\n";
    let req = ok(input);
    assert_eq!(req.command, Gats);
    assert_eq!(s(&req.exptime, input), b"-1");
    err(b"gat 60\r\n");
    err(b"gat 60 \r\n");
    err(b"gat k\r\n");
    err(b"gat - k\r\n");
    err(b"gat 1x k\r\n");
    // noreply is a key here, as in get.
    assert_eq!(keys(b"gat 60 k noreply\r\n"), [&b"k"[..], b"noreply"]);
    err(b"gat 60 a\nb\r\n");
}

#[test]
fn flush_all_verbosity_stats() {
    assert_eq!(ok(b"flush_all\r\n").command, FlushAll);
    ok(b"flush_all 0\r\n");
    ok(b"flush_all   10   \r\n");
    err(b"flush_all x\r\n");
    err(b"flush_all -1\r\n");
    err(b"flush_all 1 2\r\n");
    assert_eq!(ok(b"verbosity 1\r\n").command, Verbosity);
    err(b"verbosity\r\n");
    err(b"verbosity \r\n");
    err(b"verbosity x\r\n");
    assert_eq!(ok(b"stats\r\n").command, Stats);
    ok(b"stats slabs\r\n");
    ok(b"stats cachedump 1 2\r\n");
    err(b"stats a\nb\r\n");
    err(b"stats\r\r");
    err(b"statsx\r\n");
}

#[test]
fn meta_commands() {
    let input = b"mg foo v f k O123 q T60\r\n";
    let req = ok(input);
    assert_eq!(req.command, MetaGet);
    assert_eq!(&input[req.key.clone()], b"foo");
    assert_eq!(req.quiet.map(|q| input[q]), Some(b'q'));
    assert_eq!(req.quiet, Some(18));
    assert!(!req.base64_key);
    assert_eq!(req.noreply, None);
    let input = b"mg Zm9v b v\r\n";
    let req = ok(input);
    assert!(req.base64_key);
    assert_eq!(req.quiet, None);
    ok(b"mg k\r\n");
    ok(b"md k q\r\n");
    ok(b"md k I T30 x\r\n");
    ok(b"ma k N0 J5 v q MI D10\r\n");
    ok(b"me k\r\n");
    ok(b"me k b\r\n");
    assert_eq!(ok(b"mn\r\n").nkeys, 0);
    ok(b"mn  \r\n");
    let input = b"ms k 3 T60 F5 q\r\nabc\r\n";
    let req = ok(input);
    assert_eq!(req.command, MetaSet);
    assert_eq!(req.line_len, input.len() - 5);
    assert!(req.quiet.is_some());
    ok(b"ms k 0\r\n\r\n");
    ok(b"ms k 2 MS I\r\n\r\n\r\n");
    for bad in [
        &b"mg\r\n"[..],
        b"mg \r\n",
        b"mg k 5\r\n",
        b"mg k -\r\n",
        b"mg k v\x01\r\n",
        b"mg a\nb v\r\n",
        b"mn k\r\n",
        b"ms k\r\n",
        b"ms k v\r\nx\r\n",
        b"ms k -1\r\n",
        b"ms k 1\r\nab\r\n",
        b"me\r\n",
        b"MG k\r\n",
    ] {
        err(bad);
    }
}

#[test]
fn limits_before_payload() {
    let tight = Limits {
        max_bulk_len: 100,
        max_array_len: 3,
        ..Limits::default()
    };
    // <bytes>/<datalen> above max_bulk_len: error as soon as the digit is read.
    assert_eq!(parse_request(b"set k 0 0 101", &tight), Err(BulkTooLong));
    assert_eq!(parse_request(b"set k 0 0 1000", &tight), Err(BulkTooLong));
    assert_eq!(parse_request(b"ms k 101", &tight), Err(BulkTooLong));
    assert_eq!(parse_request(b"set k 0 0 10", &tight), Err(Incomplete));
    assert!(parse_request(b"set k 0 0 100\r\n", &tight) == Err(Incomplete));
    // More than max_array_len keys: error when the extra key starts.
    assert!(parse_request(b"get a b c\r\n", &tight).is_ok());
    assert_eq!(parse_request(b"get a b c d", &tight), Err(ArrayTooLong));
    assert_eq!(
        parse_request(b"gat 1 a b c d\r\n", &tight),
        Err(ArrayTooLong)
    );
    // A line longer than max_bulk_len without its CRLF.
    let mut line = b"get ".to_vec();
    line.extend(std::iter::repeat_n(b'k', 96));
    assert_eq!(parse_request(&line, &tight), Err(Incomplete));
    line.push(b' ');
    assert_eq!(parse_request(&line, &tight), Err(Incomplete));
    line.push(b' ');
    assert_eq!(parse_request(&line, &tight), Err(LineTooLong));
    line.truncate(100);
    line.extend_from_slice(b"\r\n");
    assert!(parse_request(&line, &tight).is_ok());
    let mut stats = b"stats ".to_vec();
    stats.extend(std::iter::repeat_n(b'a', 200));
    assert_eq!(parse_request(&stats, &tight), Err(LineTooLong));
}

#[test]
fn pipelined_requests_parse_one_at_a_time() {
    let buf = b"get a\r\nset b 0 0 1\r\nx\r\nmn\r\ndelete c noreply\r\n";
    let mut pos = 0;
    let mut seen = Vec::new();
    while pos < buf.len() {
        let req = parse_request(&buf[pos..], &limits()).unwrap();
        seen.push(req.command);
        pos += req.len;
    }
    assert_eq!(seen, [Get, Set, MetaNoop, Delete]);
}
