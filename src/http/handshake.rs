//! The WebSocket opening handshake (RFC 6455 section 4.2), sans IO: whether a request may be
//! upgraded, and the `Sec-WebSocket-Accept` answer. `ws.rs` turns a refusal into a JSON error
//! before anything is upgraded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, Method, Version, header};
use sha1::{Digest, Sha1};

/// The one protocol version there is (section 4.4): a 426 answer names it.
pub const VERSION: &str = "13";

/// RFC 6455 section 1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The client's key is a base64-encoded random nonce of this many bytes (section 4.1).
const KEY_BYTES: usize = 16;

/// Why a request cannot be upgraded. All are the client's fault: 400, or 426 for the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("expected GET over HTTP/1.1")]
    NotGet,
    #[error("expected exactly one Host header")]
    Host,
    #[error("expected Connection: upgrade and Upgrade: websocket")]
    NotUpgrade,
    #[error("unsupported WebSocket version: use Sec-WebSocket-Version: {VERSION}")]
    Version,
    #[error("no Sec-WebSocket-Key")]
    NoKey,
    #[error("more than one Sec-WebSocket-Key")]
    SeveralKeys,
    #[error("Sec-WebSocket-Key is not the base64 of {KEY_BYTES} bytes")]
    BadKey,
}

/// Checks an opening handshake (section 4.2.1); the `Sec-WebSocket-Accept` value.
pub fn check(method: &Method, version: Version, headers: &HeaderMap) -> Result<String, HandshakeError> {
    if method != Method::GET || version != Version::HTTP_11 {
        return Err(HandshakeError::NotGet);
    }
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(HandshakeError::Host);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(HandshakeError::NotUpgrade);
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    if versions.next().is_none_or(|v| v != VERSION) || versions.next().is_some() {
        return Err(HandshakeError::Version);
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().ok_or(HandshakeError::NoKey)?;
    if keys.next().is_some() {
        return Err(HandshakeError::SeveralKeys);
    }
    let nonce = BASE64.decode(key.as_bytes()).map_err(|_| HandshakeError::BadKey)?;
    if nonce.len() != KEY_BYTES {
        return Err(HandshakeError::BadKey);
    }
    Ok(accept_key(key.as_bytes()))
}

/// Whether a comma-separated header lists `token` (case-insensitive), in any of its lines.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
}

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    BASE64.encode(sha1.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "example.com"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ]
    }

    fn check_lines(lines: &[(&'static str, &str)]) -> Result<String, HandshakeError> {
        check(&Method::GET, Version::HTTP_11, &headers(lines))
    }

    #[test]
    fn the_accept_key_matches_the_rfc_example() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(check_lines(&good()).as_deref(), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[test]
    fn requests_that_are_not_handshakes_are_refused() {
        let all = headers(&good());
        assert_eq!(check(&Method::POST, Version::HTTP_11, &all), Err(HandshakeError::NotGet));
        assert_eq!(check(&Method::GET, Version::HTTP_10, &all), Err(HandshakeError::NotGet));
        let without = |name: &str| good().into_iter().filter(|(n, _)| *n != name).collect::<Vec<_>>();
        let with = |line| good().into_iter().chain([line]).collect::<Vec<_>>();
        assert_eq!(check_lines(&without("host")), Err(HandshakeError::Host));
        assert_eq!(check_lines(&with(("host", "other.example"))), Err(HandshakeError::Host));
        assert_eq!(check_lines(&without("upgrade")), Err(HandshakeError::NotUpgrade));
        assert_eq!(check_lines(&without("connection")), Err(HandshakeError::NotUpgrade));
        assert_eq!(check_lines(&without("sec-websocket-version")), Err(HandshakeError::Version));
        assert_eq!(check_lines(&with(("sec-websocket-version", "8"))), Err(HandshakeError::Version));
        assert_eq!(check_lines(&without("sec-websocket-key")), Err(HandshakeError::NoKey));
        assert_eq!(check_lines(&with(("sec-websocket-key", KEY))), Err(HandshakeError::SeveralKeys));
    }

    #[test]
    fn the_key_must_be_sixteen_bytes_of_base64() {
        let with_key = |key| {
            let mut lines = good();
            lines.retain(|(n, _)| *n != "sec-websocket-key");
            lines.push(("sec-websocket-key", key));
            check_lines(&lines)
        };
        assert!(with_key("AAAAAAAAAAAAAAAAAAAAAA==").is_ok());
        for key in [
            "",
            "not base64 at all!",
            "AAAAAAAAAAAAAAAAAAAA",     // 15 bytes
            "AAAAAAAAAAAAAAAAAAAAAAA=", // 17 bytes
            "AAAAAAAAAAAAAAAAAAAAAA",   // no padding
            "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            assert_eq!(with_key(key), Err(HandshakeError::BadKey), "{key:?}");
        }
    }
}
