use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one REST call may take before the scenario gives up.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A response: the status code and the body as text.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends `POST path` with a JSON body to `addr` and reads the whole response (`Connection: close`).
///
/// Only what the two document-creating APIs need: no redirects, no TLS, no chunked bodies. `addr` has already been
/// checked to be loopback by [`crate::target::Target`].
pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Result<Response> {
    tokio::time::timeout(HTTP_TIMEOUT, post_inner(addr, path, body))
        .await
        .with_context(|| format!("POST {path}: no answer in {HTTP_TIMEOUT:?}"))?
}

async fn post_inner(addr: SocketAddr, path: &str, body: &str) -> Result<Response> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw).with_context(|| format!("POST {path}"))
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("truncated HTTP response ({} bytes)", raw.len());
    };
    let status_line = head.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    if head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    }) {
        bail!("chunked responses are not supported by this small client");
    }
    Ok(Response { status, body: body.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let raw = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"id\":1}\n";
        let response = parse_response(raw).expect("valid response");
        assert_eq!(response.status, 201);
        assert_eq!(response.body, "{\"id\":1}\n");
    }

    #[test]
    fn refuses_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(parse_response(raw).is_err());
    }
}
