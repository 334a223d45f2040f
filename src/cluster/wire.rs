//! What instances say to each other on a document's channel, sans IO: an envelope naming
//! the instance and the number of its message on this document, then the body.
//!
//! ```text
//! [version 1][instance: 16 bytes][seq: u64 big-endian][kind: u8][payload...]
//! ```
//!
//! Numbers run per instance and document, from 1, and heartbeats carry the last one sent, so
//! a receiver notices what it missed (pub/sub drops messages across a reconnect or to a slow
//! subscriber) even when the instance has gone quiet.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 16 + 8 + 1;

/// An instance of tandem, for as long as its process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstanceId(pub Uuid);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What an instance says about a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A Yjs v1 update its clients sent (it stores it; the others only apply it).
    Update(Bytes),
    /// An awareness message (y-websocket framing) about its clients' cursors.
    Awareness(Bytes),
    /// Still here, having sent messages up to its `seq`.
    Heartbeat,
    /// It closed the document: its clients' cursors are gone.
    Goodbye,
    /// The document was deleted: close its sockets (4404).
    Deleted,
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Self::Update(_) => 1,
            Self::Awareness(_) => 2,
            Self::Heartbeat => 3,
            Self::Goodbye => 4,
            Self::Deleted => 5,
        }
    }

    /// Whether it counts in the instance's numbering (heartbeats only report it).
    pub fn numbered(&self) -> bool {
        !matches!(self, Self::Heartbeat)
    }
}

/// One message on a document's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: InstanceId,
    /// This message's number (a heartbeat: the last number sent).
    pub seq: u64,
    pub body: Body,
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        let payload: &[u8] = match &self.body {
            Body::Update(bytes) | Body::Awareness(bytes) => bytes,
            _ => &[],
        };
        let mut out = BytesMut::with_capacity(HEADER + payload.len());
        out.put_u8(VERSION);
        out.put_slice(self.from.0.as_bytes());
        out.put_u64(self.seq);
        out.put_u8(self.body.kind());
        out.put_slice(payload);
        out.freeze()
    }

    /// Reads a message; `None` for anything else (another version, garbage): a channel is
    /// not trusted more than it must be.
    pub fn decode(bytes: &Bytes) -> Option<Self> {
        if bytes.len() < HEADER || bytes[0] != VERSION {
            return None;
        }
        let from = InstanceId(Uuid::from_slice(&bytes[1..17]).ok()?);
        let seq = u64::from_be_bytes(bytes[17..25].try_into().ok()?);
        let payload = bytes.slice(HEADER..);
        let body = match bytes[25] {
            1 => Body::Update(payload),
            2 => Body::Awareness(payload),
            3 => Body::Heartbeat,
            4 => Body::Goodbye,
            5 => Body::Deleted,
            _ => return None,
        };
        Some(Self { from, seq, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_round_trips() {
        let from = InstanceId(Uuid::new_v4());
        for body in [
            Body::Update(Bytes::from_static(b"\x01\x02")),
            Body::Awareness(Bytes::from_static(b"\x01\x05hello")),
            Body::Heartbeat,
            Body::Goodbye,
            Body::Deleted,
        ] {
            let envelope = Envelope { from, seq: 42, body };
            assert_eq!(Envelope::decode(&envelope.encode()), Some(envelope));
        }
    }

    #[test]
    fn garbage_is_not_a_message() {
        let good = Envelope { from: InstanceId(Uuid::new_v4()), seq: 1, body: Body::Goodbye }.encode();
        let mut wrong_version = good.to_vec();
        wrong_version[0] = 9;
        let mut wrong_kind = good.to_vec();
        wrong_kind[25] = 77;
        for bytes in [vec![], vec![1], good[..HEADER - 1].to_vec(), wrong_version, wrong_kind] {
            assert_eq!(Envelope::decode(&Bytes::from(bytes.clone())), None, "{bytes:?}");
        }
    }
}
