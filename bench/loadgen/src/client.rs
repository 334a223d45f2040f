use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use yrs::encoding::read::Cursor;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, Transact, Update};

/// A WebSocket to a y-websocket server.
pub type Ws = WebSocketStream<TcpStream>;

/// How long connecting plus the first sync may take before a connection counts as failed.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Socket buffers for the load generator's side. tungstenite reserves 128 KiB for reading by default; with 20,000
/// idle connections that would be the client's memory, not the server's, so keep it small (frames here are tiny;
/// larger ones still arrive, the buffer just grows).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(256 << 20))
}

/// Bytes a bulk writer gathers before a write: it sends many small frames and flushes when it has to wait, so
/// that its own system calls (one per frame otherwise) do not take the CPU the server is measured on.
const BULK_WRITE_BUFFER: usize = 64 * 1024;

/// Opens a WebSocket to `url` at `addr` (already checked to be 127.0.0.1), optionally from `source`, another
/// loopback address, so that more than one address's worth of ephemeral ports can be used.
pub async fn connect(url: &str, addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<Ws> {
    connect_with(url, addr, source, ws_config()).await
}

async fn connect_with(
    url: &str,
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    config: WebSocketConfig,
) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("bind {source}"))?;
    }
    socket.set_nodelay(true)?;
    let stream = socket.connect(addr).await.with_context(|| format!("connect {addr}"))?;
    let (ws, _response) = client_async_with_config(url, stream, Some(config))
        .await
        .with_context(|| format!("WebSocket upgrade of {url}"))?;
    Ok(ws)
}

/// One y-websocket message as one binary frame (what every server we test expects and sends).
pub fn frame(message: &Message) -> tungstenite::Message {
    tungstenite::Message::Binary(Bytes::from(message.encode_v1()))
}

/// The frame `[0, 2, update]` for a Yjs v1 update.
pub fn update_frame(update: Vec<u8>) -> tungstenite::Message {
    frame(&Message::Sync(SyncMessage::Update(update)))
}

/// Decodes every y-websocket message in one binary frame (a frame may hold several).
pub fn decode_frame(data: &[u8]) -> Result<Vec<Message>> {
    let mut decoder = DecoderV1::new(Cursor::new(data));
    MessageReader::new(&mut decoder).map(|m| m.context("undecodable y-websocket message")).collect()
}

/// The document updates a message carries (sync step 2 and update), if any.
pub fn update_payload(message: &Message) -> Option<&[u8]> {
    match message {
        Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => Some(update),
        _ => None,
    }
}

/// The clock range an update's insertions cover per client: (client, lowest clock, highest clock + 1). For
/// one-character inserts, `upper - lower` is the number of inserts it carries. (`Update::state_vector` only
/// counts updates whose blocks start at clock 0, so it cannot be used for incremental updates.)
pub fn clock_ranges(update: &[u8]) -> Result<Vec<(ClientID, u32, u32)>> {
    let update = Update::decode_v1(update).context("undecodable Yjs update")?;
    Ok(update
        .insertions(true)
        .iter()
        .filter_map(|(client, ranges)| {
            let lower = ranges.iter().map(|r| r.start).min()?;
            let upper = ranges.iter().map(|r| r.end).max()?;
            Some((*client, lower, upper))
        })
        .collect())
}

/// An awareness state for `client`, as a browser tab announces its user.
pub fn awareness_frame(client: ClientID, clock: u32, name: &str) -> tungstenite::Message {
    let json = serde_json::json!({ "user": { "name": name, "color": "#30bced" } }).to_string();
    let entry = AwarenessUpdateEntry { clock, json: Arc::from(json) };
    frame(&Message::Awareness(AwarenessUpdate { clients: [(client, entry)].into_iter().collect() }))
}

/// Runs the y-websocket handshake for `doc`: sends our step 1, answers the server's step 1 with step 2, and waits
/// for the server's step 2, which is applied to `doc`. Other messages (awareness, updates) are applied or skipped.
pub async fn sync(ws: &mut Ws, doc: &Doc) -> Result<()> {
    let step1 = Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector()));
    ws.send(frame(&step1)).await.context("send sync step 1")?;
    loop {
        let data = match ws.next().await {
            Some(Ok(tungstenite::Message::Binary(data))) => data,
            Some(Ok(tungstenite::Message::Close(close))) => {
                bail!("server closed during sync: {close:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err).context("read during sync"),
            None => bail!("server closed during sync"),
        };
        for message in decode_frame(&data)? {
            match message {
                Message::Sync(SyncMessage::SyncStep1(their_sv)) => {
                    let update = doc.transact().encode_state_as_update_v1(&their_sv);
                    ws.send(frame(&Message::Sync(SyncMessage::SyncStep2(update)))).await?;
                }
                Message::Sync(SyncMessage::SyncStep2(update)) => {
                    apply(doc, &update)?;
                    return Ok(());
                }
                Message::Sync(SyncMessage::Update(update)) => apply(doc, &update)?,
                _ => {}
            }
        }
    }
}

/// Connects and syncs an empty document, within [`SYNC_TIMEOUT`].
pub async fn connect_synced(url: &str, addr: SocketAddr, source: Option<Ipv4Addr>, doc: &Doc) -> Result<Ws> {
    synced(url, addr, source, doc, ws_config()).await
}

/// [`connect_synced`] for a writer that feeds many frames and then flushes: frames are gathered up to
/// [`BULK_WRITE_BUFFER`] bytes per write until the flush.
pub async fn connect_synced_bulk(url: &str, addr: SocketAddr, doc: &Doc) -> Result<Ws> {
    synced(url, addr, None, doc, ws_config().write_buffer_size(BULK_WRITE_BUFFER)).await
}

async fn synced(
    url: &str,
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    doc: &Doc,
    config: WebSocketConfig,
) -> Result<Ws> {
    tokio::time::timeout(SYNC_TIMEOUT, async {
        let mut ws = connect_with(url, addr, source, config).await?;
        sync(&mut ws, doc).await?;
        Ok(ws)
    })
    .await
    .with_context(|| format!("connect and sync within {SYNC_TIMEOUT:?}"))?
}

/// Applies a Yjs v1 update to `doc`.
pub fn apply(doc: &Doc, update: &[u8]) -> Result<()> {
    let update = Update::decode_v1(update).context("undecodable Yjs update")?;
    doc.transact_mut().apply_update(update).context("apply update")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, Text};

    #[test]
    fn update_frames_round_trip_and_count_inserts() {
        let doc = Doc::with_client_id(7);
        let text = doc.get_or_insert_text("content");
        let update = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "ab");
            txn.encode_update_v1()
        };
        let tungstenite::Message::Binary(data) = update_frame(update.clone()) else { panic!("binary frame") };
        let messages = decode_frame(&data).expect("decodes");
        assert_eq!(messages.len(), 1);
        let payload = update_payload(&messages[0]).expect("an update");
        assert_eq!(payload, update.as_slice());
        assert_eq!(clock_ranges(payload).expect("ranges"), vec![(ClientID::new(7), 0, 2)]);

        let other = Doc::new();
        apply(&other, payload).expect("applies");
        assert_eq!(other.get_or_insert_text("content").get_string(&other.transact()), "ab");
    }

    #[test]
    fn awareness_frames_decode() {
        let tungstenite::Message::Binary(data) = awareness_frame(ClientID::new(9), 1, "bench") else {
            panic!("binary")
        };
        let messages = decode_frame(&data).expect("decodes");
        let Message::Awareness(update) = &messages[0] else { panic!("awareness") };
        assert!(update.clients[&ClientID::new(9)].json.contains("bench"));
    }
}
