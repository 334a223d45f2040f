//! The upgrade request: raw bytes parsed as HTTP (httparse, as hyper does) and checked as an
//! opening handshake. It must never panic, and an accepted request must have exactly what
//! RFC 6455 section 4.2.1 asks for.

#![no_main]

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version, header};
use libfuzzer_sys::fuzz_target;
use tandem_fuzz::handshake::{self, HandshakeError};

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(data) else {
        return;
    };
    // What hyper would refuse before any handler runs is not the handshake's business.
    let Ok(method) = Method::from_bytes(request.method.unwrap_or_default().as_bytes()) else {
        return;
    };
    let version = if request.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut map = HeaderMap::new();
    for h in request.headers.iter() {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
        else {
            return;
        };
        map.append(name, value);
    }
    match handshake::check(&method, version, &map) {
        Ok(accept) => {
            assert_eq!(method, Method::GET);
            assert_eq!(map.get_all(header::HOST).iter().count(), 1);
            let keys: Vec<_> = map.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
            assert_eq!(keys.len(), 1);
            let nonce = base64::engine::general_purpose::STANDARD.decode(keys[0].as_bytes()).unwrap();
            assert_eq!(nonce.len(), 16);
            assert_eq!(accept, handshake::accept_key(keys[0].as_bytes()));
            assert_eq!(accept.len(), 28, "base64 of a SHA-1");
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            if err == HandshakeError::Version {
                let versions: Vec<&[u8]> =
                    map.get_all(header::SEC_WEBSOCKET_VERSION).iter().map(|v| v.as_bytes()).collect();
                assert_ne!(versions, [b"13"]);
            }
        }
    }
});
