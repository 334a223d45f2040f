use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::http;

/// The placeholder in a URL template that is replaced by a document's name.
pub const DOC_PLACEHOLDER: &str = "{doc}";

/// How the server under test gets its documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CreateMode {
    /// tandem: `POST /api/docs {"title": ..}` -> 201 `{"id": "<uuid>", ..}`; the socket is the template with the id.
    Tandem,
    /// y-sweet 0.9: `POST /doc/new {}` -> `{"docId"}`, then `POST /doc/{id}/auth {}` -> a client token whose `url`
    /// plus `/{id}` (and `?token=` when the server has an auth key) is the socket the y-sweet provider opens.
    YSweet,
    /// Servers that open rooms on demand (the reference server): any name works, none is created.
    None,
}

/// A document the load generator may connect to.
#[derive(Clone, Debug)]
pub struct DocRef {
    /// The server's name for it (a uuid for tandem, y-sweet's id, or a made-up room name).
    pub id: String,
    /// The WebSocket URL that opens it.
    pub url: String,
}

/// Where the load goes. Built only through [`Target::new`], which refuses anything but this machine.
#[derive(Clone, Debug)]
pub struct Target {
    template: String,
    create: CreateMode,
    /// The server's address, always 127.0.0.1.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses a template such as `ws://127.0.0.1:8080/ws/{doc}`. Only `ws://` to 127.0.0.1 (or `localhost`, taken as
    /// 127.0.0.1) is accepted: every benchmark here stays on this machine.
    pub fn new(template: &str, create: CreateMode) -> Result<Self> {
        ensure!(
            create != CreateMode::Tandem || template.contains(DOC_PLACEHOLDER),
            "the URL template {template:?} has no {DOC_PLACEHOLDER} placeholder"
        );
        let uri: Uri = template
            .replace(DOC_PLACEHOLDER, "x")
            .parse()
            .with_context(|| format!("bad URL template {template:?}"))?;
        ensure!(uri.scheme_str() == Some("ws"), "only ws:// URLs are supported, got {template:?}");
        let addr = loopback_addr(&uri)?;
        Ok(Self { template: template.to_string(), create, addr })
    }

    /// Creates a fresh document; `hint` becomes its title or part of its name.
    pub async fn create_doc(&self, hint: &str) -> Result<DocRef> {
        match self.create {
            CreateMode::Tandem => {
                #[derive(Deserialize)]
                struct Created {
                    id: String,
                }
                let body = serde_json::json!({ "title": hint }).to_string();
                let response = http::post_json(self.addr, "/api/docs", &body).await?;
                ensure!(
                    response.status == 201,
                    "POST /api/docs answered {}: {}",
                    response.status,
                    response.body.trim()
                );
                let created: Created = serde_json::from_str(&response.body)
                    .with_context(|| format!("POST /api/docs answered {:?}", response.body))?;
                self.doc(&created.id).await
            }
            CreateMode::YSweet => {
                #[derive(Deserialize)]
                struct Created {
                    #[serde(rename = "docId")]
                    doc_id: String,
                }
                let response = http::post_json(self.addr, "/doc/new", "{}").await?;
                ensure!(
                    response.status == 200,
                    "POST /doc/new answered {}: {}",
                    response.status,
                    response.body
                );
                let created: Created = serde_json::from_str(&response.body)
                    .with_context(|| format!("POST /doc/new answered {:?}", response.body))?;
                self.doc(&created.doc_id).await
            }
            CreateMode::None => self.doc(&format!("{hint}-{:016x}", random_u64())).await,
        }
    }

    /// The connection details of an existing document (for y-sweet this asks for a client token).
    pub async fn doc(&self, id: &str) -> Result<DocRef> {
        let url = match self.create {
            CreateMode::Tandem | CreateMode::None => self.template.replace(DOC_PLACEHOLDER, id),
            CreateMode::YSweet => {
                #[derive(Deserialize)]
                struct ClientToken {
                    url: String,
                    token: Option<String>,
                }
                let path = format!("/doc/{id}/auth");
                let response = http::post_json(self.addr, &path, "{}").await?;
                ensure!(
                    response.status == 200,
                    "POST {path} answered {}: {}",
                    response.status,
                    response.body
                );
                let token: ClientToken = serde_json::from_str(&response.body)
                    .with_context(|| format!("POST {path} answered {:?}", response.body))?;
                // The y-sweet provider appends the document id to the token's URL, as y-websocket does with a room.
                let mut url = format!("{}/{id}", token.url.trim_end_matches('/'));
                if let Some(token) = token.token {
                    url.push_str("?token=");
                    url.push_str(&token);
                }
                let uri: Uri = url.parse().with_context(|| format!("y-sweet gave a bad URL {url:?}"))?;
                ensure!(loopback_addr(&uri)? == self.addr, "y-sweet pointed at another server: {url}");
                url
            }
        };
        Ok(DocRef { id: id.to_string(), url })
    }
}

/// The socket address of a `ws://` URI, refusing every host but this machine's 127.0.0.1.
fn loopback_addr(uri: &Uri) -> Result<SocketAddr> {
    let host = uri.host().context("URL has no host")?;
    let ip = match host {
        "localhost" => Ipv4Addr::LOCALHOST,
        other => other.parse::<Ipv4Addr>().with_context(|| format!("host {other:?} is not 127.0.0.1"))?,
    };
    if ip != Ipv4Addr::LOCALHOST {
        bail!("refusing host {ip}: the load generator only sends traffic to 127.0.0.1");
    }
    Ok(SocketAddr::from((ip, uri.port_u16().unwrap_or(80))))
}

/// A random number for room names, from the standard library's randomly keyed hasher.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_templates() {
        let target = Target::new("ws://127.0.0.1:8080/ws/{doc}", CreateMode::Tandem).expect("loopback");
        assert_eq!(target.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert!(Target::new("ws://localhost:1234/{doc}", CreateMode::None).is_ok());
    }

    #[test]
    fn refuses_other_hosts() {
        for bad in [
            "ws://10.0.0.1:8080/{doc}",
            "ws://example.com/{doc}",
            "ws://127.0.0.2:80/{doc}",
            "wss://127.0.0.1/{doc}",
        ] {
            assert!(Target::new(bad, CreateMode::None).is_err(), "{bad} must be refused");
        }
    }
}
