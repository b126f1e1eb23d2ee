//! Error replies the proxy synthesizes, in nutcracker's words:
//! `-ERR <strerror(errno)>\r\n` (src/nc_message.c msg_get_error).

use std::io;

use bytes::{BufMut, Bytes, BytesMut};

/// An errno value that a request failed with.
pub(crate) type Errno = i32;

/// The C library's text for `errno`, as nutcracker prints it; errno 0 (a
/// server that closed the connection) is "unknown" in msg_get_error.
pub(crate) fn strerror(errno: Errno) -> String {
    if errno == 0 {
        return "unknown".to_string();
    }
    let text = io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)"; strerror(3) does not.
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// `-ERR <strerror>\r\n` for a redis pool.
pub(crate) fn redis_error_reply(errno: Errno) -> Bytes {
    let text = strerror(errno);
    let mut out = BytesMut::with_capacity(text.len() + 7);
    out.put_slice(b"-ERR ");
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The errno of an I/O error, or EIO when it has none.
pub(crate) fn errno_of(err: &io::Error) -> Errno {
    err.raw_os_error().unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nutcracker_texts() {
        assert_eq!(
            &redis_error_reply(libc::ECONNREFUSED)[..],
            b"-ERR Connection refused\r\n"
        );
        assert_eq!(
            &redis_error_reply(libc::ETIMEDOUT)[..],
            b"-ERR Connection timed out\r\n"
        );
        assert_eq!(
            &redis_error_reply(libc::EHOSTDOWN)[..],
            b"-ERR Host is down\r\n"
        );
        assert_eq!(
            &redis_error_reply(libc::EINVAL)[..],
            b"-ERR Invalid argument\r\n"
        );
    }
}
