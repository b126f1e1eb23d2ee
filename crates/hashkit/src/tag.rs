//! `hash_tag:` extraction (nc_server.c `server_pool_idx`): which part of a key is hashed.

/// The bytes of `key` that nutcracker hashes when the pool has `hash_tag: tag`.
///
/// Rule: find the first `tag[0]`; then the first `tag[1]` *after* it. If both exist
/// and enclose at least one byte, hash only the enclosed bytes; otherwise hash the
/// whole key. So `"{}"` on `"a{}b{c}"` hashes the whole key (the first pair is empty;
/// nutcracker does not look for a later pair).
pub fn hash_tag_key(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = memchr(open, key) else {
        return key;
    };
    let inner_from = start + 1;
    match memchr(close, &key[inner_from..]) {
        Some(len) if len > 0 => &key[inner_from..inner_from + len],
        _ => key,
    }
}

#[inline]
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(key: &str, tag: Option<&str>, expect: &str) {
        let tag = tag.map(|t| {
            let b = t.as_bytes();
            [b[0], b[1]]
        });
        assert_eq!(
            std::str::from_utf8(hash_tag_key(key.as_bytes(), tag)).unwrap(),
            expect
        );
    }

    #[test]
    fn cases() {
        check("user:{42}:name", None, "user:{42}:name");
        check("user:{42}:name", Some("{}"), "42");
        check("{42}", Some("{}"), "42");
        check("{}", Some("{}"), "{}");
        check("a{}b{c}", Some("{}"), "a{}b{c}");
        check("a{b", Some("{}"), "a{b");
        check("a}b{c", Some("{}"), "a}b{c");
        check("a{b{c}d", Some("{}"), "b{c");
        check("{a}{b}", Some("{}"), "a");
        check("", Some("{}"), "");
        check("$x$y$", Some("$$"), "x");
        check("$$x$", Some("$$"), "$$x$");
        check("no tag here", Some("{}"), "no tag here");
    }

    #[test]
    fn high_bytes() {
        let key = b"\xff\x80\xfe\x81";
        assert_eq!(hash_tag_key(key, Some([0x80, 0x81])), b"\xfe");
    }
}
