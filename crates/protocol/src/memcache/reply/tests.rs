//! Unit tests of reply scanning: nutcracker's vectors (src/test_all.c,
//! memcache.md §1.7), every reply word, VALUE framing, prefixes, limits,
//! `ReplyScanner` resumption and `ValueBlocks`.

use super::*;
use ParseError::*;

fn limits() -> Limits {
    Limits::default()
}

/// `input` is exactly one reply of `kind`; every proper prefix is
/// `Incomplete`, also through a `ReplyScanner` fed byte by byte.
fn ok(input: &[u8], kind: ReplyKind) {
    let text = String::from_utf8_lossy(input);
    assert_eq!(
        parse_reply(input, &limits()),
        Ok(Reply {
            len: input.len(),
            kind
        }),
        "{text:?}"
    );
    let mut scanner = ReplyScanner::default();
    for n in 0..input.len() {
        assert_eq!(
            parse_reply(&input[..n], &limits()),
            Err(Incomplete),
            "{n} of {text:?}"
        );
        assert_eq!(
            scanner.scan(&input[..n], &limits()),
            Err(Incomplete),
            "{n} of {text:?}"
        );
    }
    assert_eq!(
        scanner.scan(input, &limits()).map(|r| r.kind),
        Ok(kind),
        "{text:?}"
    );
    let mut more = input.to_vec();
    more.extend_from_slice(b"END\r\n");
    assert_eq!(
        parse_reply(&more, &limits()).map(|r| r.len),
        Ok(input.len())
    );
}

fn err(input: &[u8]) -> ParseError {
    let e = parse_reply(input, &limits()).expect_err(&String::from_utf8_lossy(input));
    assert_ne!(e, Incomplete, "{:?}", String::from_utf8_lossy(input));
    let mut more = input.to_vec();
    more.extend_from_slice(b"\r\nEND\r\n");
    assert_eq!(parse_reply(&more, &limits()), Err(e));
    e
}

fn values(count: usize, end: usize) -> ReplyKind {
    ReplyKind::Values { count, end }
}

#[test]
fn nutcracker_success_vectors() {
    use ReplyKind::*;
    ok(b"0\r\n", Number);
    ok(b"0  \r\n", Number);
    ok(b"9223372036854775807\r\n", Number);
    ok(b"DELETED\r\n", Deleted);
    ok(b"END\r\n", values(0, 0));
    ok(b"ERROR\r\n", Error);
    ok(b"EXISTS\r\n", Exists);
    ok(b"NOT_FOUND\r\n", NotFound);
    ok(b"STORED\r\n", Stored);
    ok(b"TOUCHED\r\n", Touched);
    ok(b"VALUE key 0 2\r\nab\r\nEND\r\n", values(1, 19));
    ok(
        b"VALUE key 0 2\r\nab\r\nVALUE key2 0 2\r\ncd\r\nEND\r\n",
        values(2, 39),
    );
    ok(b"VERSION 1.5.22\r\n", Version);
}

#[test]
fn nutcracker_failure_vectors() {
    for input in [&b"\r\n"[..], b"ENDD\r\n", b"\r", b"-1\r\n"] {
        err(input);
    }
    // "\r" alone: an empty word is already unknown.
    assert_eq!(
        parse_reply(b"\r", &limits()),
        Err(Protocol("unknown reply"))
    );
}

#[test]
fn status_words() {
    use ReplyKind::*;
    ok(b"NOT_STORED\r\n", NotStored);
    ok(b"STORED   \r\n", Stored);
    ok(b"ERROR \r\n", Error);
    ok(b"OK\r\n", Ok);
    ok(b"CLIENT_ERROR bad command line format\r\n", ClientError);
    ok(
        b"SERVER_ERROR out of memory storing object\r\n",
        ServerError,
    );
    ok(b"SERVER_ERROR\r\n", ServerError);
    ok(b"VERSION\r\n", Version);
    ok(b"VERSION 1.6.18 \x01\n\r\n", Version);
    // Only spaces before the CRLF of a status word.
    err(b"STORED x\r\n");
    err(b"OK then\r\n");
    err(b"ERROR\t\r\n");
    // END must be followed by CR at once (nutcracker compares "END\r").
    err(b"END \r\n");
    err(b"END x\r\n");
    // Unknown, lower case or near-miss words.
    for bad in [
        &b"STAT pid 1\r\n"[..],
        b"stored\r\n",
        b"STORE\r\n",
        b"STOREDD\r\n",
        b"RESET\r\n",
        b"NOT_FOUNDX\r\n",
        b" STORED\r\n",
        b"CLIENT_ERRORS x\r\n",
        b"\n",
    ] {
        err(bad);
    }
    // ... and they fail as soon as no word can match.
    assert_eq!(
        parse_reply(b"STA", &limits()),
        Err(Protocol("unknown reply"))
    );
    assert_eq!(parse_reply(b"x", &limits()), Err(Protocol("unknown reply")));
    assert_eq!(
        parse_reply(b"ENDD", &limits()),
        Err(Protocol("unknown reply"))
    );
    assert_eq!(parse_reply(b"EN", &limits()), Err(Incomplete));
    // A lone CR must be followed by LF.
    err(b"STORED\r\r");
    err(b"SERVER_ERROR x\rx\r\n");
}

#[test]
fn numbers() {
    use ReplyKind::*;
    ok(b"12345\r\n", Number);
    ok(b"007 \r\n", Number);
    err(b"12a\r\n");
    err(b"12 3\r\n");
    err(b"1-\r\n");
    err(b"1\r\r");
}

#[test]
fn value_blocks() {
    ok(b"VALUE k 5 3 99\r\nabc\r\nEND\r\n", values(1, 21));
    ok(b"VALUE   k   5   3  \r\nabc\r\nEND\r\n", values(1, 26));
    ok(b"VALUE k 0 0\r\n\r\nEND\r\n", values(1, 15));
    // Binary data, including what looks like the end of the reply.
    let input = b"VALUE k 0 7\r\n\r\nEND\r\n\r\nEND\r\n";
    ok(input, values(1, 22));
    // The key is any bytes up to a space (nutcracker's SW_KEY).
    ok(b"VALUE \xff\x00\n 0 1\r\nx\r\nEND\r\n", values(1, 18));
    err(b"VALUE k x 1\r\nx\r\nEND\r\n");
    err(b"VALUE k 0\r\nx\r\nEND\r\n");
    err(b"VALUE k 0 \r\n");
    err(b"VALUE k 0 1x\r\nx\r\nEND\r\n");
    err(b"VALUE k 0 1\r\nxy\r\nEND\r\n");
    err(b"VALUE k 0 2\r\nx\r\nEND\r\n");
    err(b"VALUE k 0 1\rx");
    err(b"VALUE k 0 1\r\nx\n");
    err(b"VALUE k 0 1\r\nx\r\r");
    // After VALUE blocks only VALUE, END or an error word.
    err(b"VALUE k 0 1\r\nx\r\nSTORED\r\n");
    err(b"VALUE k 0 1\r\nx\r\n5\r\n");
    err(b"VALUE k 0 1\r\nx\r\nHD\r\n");
    err(b"VALUE k 0 1\r\nx\r\n\r\n");
    ok(
        b"VALUE k 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n",
        ReplyKind::ServerError,
    );
    ok(b"VALUE k 0 1\r\nx\r\nERROR\r\n", ReplyKind::Error);
}

#[test]
fn meta_replies() {
    use ReplyKind::*;
    ok(b"HD\r\n", MetaHd);
    ok(b"HD c123 O1 kfoo\r\n", MetaHd);
    ok(b"EN\r\n", MetaEn);
    // memcached 1.6.18 answers `mg missing v O9 k` with `EN O9 kmissing`.
    ok(b"EN O9 kmissing\r\n", MetaEn);
    ok(b"NF O1\r\n", MetaNf);
    ok(b"NS\r\n", MetaNs);
    ok(b"EX c5\r\n", MetaEx);
    ok(b"MN\r\n", MetaMn);
    ok(
        b"ME foo exp=-1 la=1 cas=2 fetch=no cls=1 size=63\r\n",
        MetaMe,
    );
    ok(b"VA 3 f5 kfoo O123\r\nbar\r\n", MetaVa);
    ok(b"VA 1\r\n5\r\n", MetaVa);
    ok(b"VA 0\r\n\r\n", MetaVa);
    ok(b"VA 4 \r\nEN\r\n\r\n", MetaVa);
    err(b"VA\r\n");
    err(b"VA x\r\n");
    err(b"VA 1\r\nxy\r\n");
    err(b"MN x\r\n");
    err(b"HX\r\n");
    // Several meta replies in a row are separate replies.
    let buf = b"VA 3 f5 kfoo O123\r\nbar\r\nVA 1 O125\r\nx\r\nMN\r\n";
    let first = parse_reply(buf, &limits()).unwrap();
    assert_eq!(first.len, 24);
    let second = parse_reply(&buf[first.len..], &limits()).unwrap();
    assert_eq!((second.len, second.kind), (14, MetaVa));
    assert_eq!(
        parse_reply(&buf[first.len + second.len..], &limits()).map(|r| r.kind),
        Result::Ok(MetaMn)
    );
}

#[test]
fn limits_before_payload() {
    let tight = Limits {
        max_bulk_len: 100,
        ..Limits::default()
    };
    assert_eq!(parse_reply(b"VALUE k 0 101", &tight), Err(BulkTooLong));
    assert_eq!(parse_reply(b"VA 101", &tight), Err(BulkTooLong));
    assert_eq!(parse_reply(b"VALUE k 0 100\r\n", &tight), Err(Incomplete));
    // Reply lines are bounded by MAX_REPLY_LINE (CRLF included).
    let mut line = b"SERVER_ERROR ".to_vec();
    line.resize(MAX_REPLY_LINE - 2, b'x');
    assert_eq!(parse_reply(&line, &limits()), Err(Incomplete));
    let mut complete = line.clone();
    complete.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_reply(&complete, &limits()).map(|r| r.len),
        Result::Ok(MAX_REPLY_LINE)
    );
    line.push(b'x');
    assert_eq!(parse_reply(&line, &limits()), Err(Incomplete));
    line.push(b'x');
    assert_eq!(parse_reply(&line, &limits()), Err(LineTooLong));
    let mut number = vec![b'1'; MAX_REPLY_LINE];
    assert_eq!(parse_reply(&number, &limits()), Err(LineTooLong));
    number.truncate(10);
    assert_eq!(parse_reply(&number, &limits()), Err(Incomplete));
    // Each VALUE header has its own bound; data blocks have none.
    let mut big = b"VALUE k 0 200000\r\n".to_vec();
    big.resize(big.len() + 200_000, b'v');
    big.extend_from_slice(b"\r\nEND\r\n");
    assert_eq!(
        parse_reply(&big, &limits()).map(|r| r.len),
        Result::Ok(big.len())
    );
}

#[test]
fn scanner_resumes_and_resets() {
    let mut reply = Vec::new();
    for i in 0..50 {
        reply.extend_from_slice(format!("VALUE key{i} {i} 3\r\nv{i:02}\r\n").as_bytes());
    }
    let end = reply.len();
    reply.extend_from_slice(b"END\r\n");
    let whole = parse_reply(&reply, &limits()).unwrap();
    assert_eq!(whole.kind, values(50, end));
    let mut scanner = ReplyScanner::default();
    let mut result = Err(Incomplete);
    for n in (0..=reply.len()).step_by(7).chain([reply.len()]) {
        result = scanner.scan(&reply[..n], &limits());
        if result.is_ok() {
            break;
        }
        assert_eq!(result, Err(Incomplete));
        // Whole blocks are never scanned twice.
        assert!(scanner.pos <= n);
    }
    assert_eq!(result, Result::Ok(whole));
    assert_eq!((scanner.pos, scanner.count), (0, 0));
    // Back to back: the next reply starts fresh.
    let mut two = reply.clone();
    two.extend_from_slice(b"STORED\r\n");
    let first = scanner.scan(&two, &limits()).unwrap();
    assert_eq!(
        scanner.scan(&two[first.len..], &limits()).map(|r| r.kind),
        Result::Ok(ReplyKind::Stored)
    );
    // After an error it starts fresh too.
    assert!(scanner
        .scan(b"VALUE k 0 1\r\nx\r\nBAD\r\n", &limits())
        .is_err());
    assert_eq!(
        scanner.scan(b"END\r\n", &limits()).map(|r| r.len),
        Result::Ok(5)
    );
}

#[test]
fn value_blocks_iterate_keys_and_blocks() {
    let reply = b"VALUE a 0 1\r\nx\r\nVALUE bb 1 2 77\r\n\r\n\r\nEND\r\n";
    let blocks: Vec<_> = ValueBlocks::new(reply, &limits()).unwrap().collect();
    assert_eq!(blocks.len(), 2);
    assert_eq!(&reply[blocks[0].0.clone()], b"a");
    assert_eq!(&reply[blocks[0].1.clone()], b"VALUE a 0 1\r\nx\r\n");
    assert_eq!(&reply[blocks[1].0.clone()], b"bb");
    assert_eq!(&reply[blocks[1].1.clone()], b"VALUE bb 1 2 77\r\n\r\n\r\n");
    assert_eq!(ValueBlocks::new(b"END\r\n", &limits()).unwrap().count(), 0);
    assert!(ValueBlocks::new(b"STORED\r\n", &limits()).is_err());
    assert!(ValueBlocks::new(b"VALUE a 0 1\r\nx\r\n", &limits()).is_err());
    assert!(ValueBlocks::new(b"VALUE a 0 1\r\nx\r\nERROR\r\n", &limits()).is_err());
}

#[test]
fn is_error() {
    use ReplyKind::*;
    for kind in [Error, ClientError, ServerError] {
        assert!(kind.is_error());
    }
    for kind in [Stored, Ok, Number, MetaEn, values(0, 0), Version] {
        assert!(!kind.is_error());
    }
}
