use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, Options, Text, TextRef, Transact, Update};

/// The name of the shared text every client edits (the editor's `Y.Text`).
pub const TEXT_NAME: &str = "content";

/// An editing trace: `startContent`, the edits in order, and the text they must end with.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

/// One transaction of a trace: its patches, applied in order.
#[derive(Debug, Deserialize)]
pub struct Txn {
    pub patches: Vec<Patch>,
}

/// `[position, characters deleted, text inserted]`, positions in Unicode code points.
#[derive(Debug, Deserialize)]
pub struct Patch(pub u32, pub u32, pub String);

impl Trace {
    /// Reads a gzipped JSON trace from exactly the path given (never from anywhere else).
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("open trace {}", path.display()))?;
        let mut json = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut json)
            .with_context(|| format!("gunzip {}", path.display()))?;
        let trace: Trace =
            serde_json::from_str(&json).with_context(|| format!("parse {}", path.display()))?;
        // yrs counts offsets in UTF-16 units; trace positions are code points. They agree while no character lies
        // outside the Basic Multilingual Plane, which holds for the traces we use; refuse the others.
        let bmp = |s: &str| s.chars().all(|c| c.len_utf16() == 1);
        ensure!(
            bmp(&trace.start_content) && trace.txns.iter().all(|t| t.patches.iter().all(|p| bmp(&p.2))),
            "trace {} has characters outside the BMP; positions would need converting",
            path.display()
        );
        Ok(trace)
    }

    /// The number of edits (patches).
    pub fn edits(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }

    /// Characters inserted over the whole trace, start content included, in UTF-16 units: the writer's final clock.
    pub fn inserted_len(&self) -> u64 {
        let inserted: usize =
            self.txns.iter().flat_map(|t| &t.patches).map(|p| p.2.encode_utf16().count()).sum();
        (inserted + self.start_content.encode_utf16().count()) as u64
    }

    /// Length of the final text in UTF-16 units (what `Text::len` reports with [`OffsetKind::Utf16`]).
    pub fn end_len(&self) -> u32 {
        self.end_content.encode_utf16().count() as u32
    }
}

/// A document configured like a browser's: offsets in UTF-16 units, the given client id.
pub fn new_doc(client_id: u64) -> Doc {
    let mut options = Options::with_client_id(yrs::ClientID::new(client_id));
    options.offset_kind = OffsetKind::Utf16;
    Doc::with_options(options)
}

/// Applies one patch as a local edit.
fn apply_patch(text: &TextRef, txn: &mut yrs::TransactionMut, patch: &Patch) {
    let Patch(pos, del, ins) = patch;
    if *del > 0 {
        text.remove_range(txn, *pos, *del);
    }
    if !ins.is_empty() {
        text.insert(txn, *pos, ins);
    }
}

/// Encodes the trace as the updates one writer would send: the start content first (if any), then one Yjs v1
/// update per edit. Returns the updates and the writer's document.
pub fn encode_updates(trace: &Trace, client_id: u64) -> (Vec<Vec<u8>>, Doc) {
    let doc = new_doc(client_id);
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut updates = Vec::with_capacity(trace.edits() + 1);
    if !trace.start_content.is_empty() {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &trace.start_content);
        updates.push(txn.encode_update_v1());
    }
    for patch in trace.txns.iter().flat_map(|t| &t.patches) {
        let mut txn = doc.transact_mut();
        apply_patch(&text, &mut txn, patch);
        updates.push(txn.encode_update_v1());
    }
    (updates, doc)
}

/// [`encode_updates`], cached in `cache_dir` when one is given.
///
/// yrs 0.28 finds a text position by walking the item list from the start, so encoding the 260k edits of
/// automerge-paper as local edits takes tens of seconds, far longer than any server needs to apply them. The cache
/// holds only these derived updates (never the trace itself), is keyed by the trace's size, modification time and
/// the writer's id, and lives wherever the caller points (compare.sh: its scratch folder, outside the repository).
pub fn encode_updates_cached(
    path: &Path,
    trace: &Trace,
    client_id: u64,
    cache_dir: Option<&Path>,
) -> Result<Vec<Vec<u8>>> {
    let Some(dir) = cache_dir else {
        return Ok(encode_updates(trace, client_id).0);
    };
    let meta = std::fs::metadata(path)?;
    let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let file = dir.join(format!("{stem}.{}-{mtime}-{client_id}.updates", meta.len()));
    if let Ok(bytes) = std::fs::read(&file)
        && let Some(updates) = decode_cache(&bytes)
    {
        return Ok(updates);
    }
    let (updates, _) = encode_updates(trace, client_id);
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, encode_cache(&updates)).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file)?;
    Ok(updates)
}

/// Cache layout: a magic line, then each update as a little-endian u32 length and its bytes.
const CACHE_MAGIC: &[u8] = b"tandem-bench updates v1\n";

fn encode_cache(updates: &[Vec<u8>]) -> Vec<u8> {
    let mut out = CACHE_MAGIC.to_vec();
    for update in updates {
        out.extend_from_slice(&(update.len() as u32).to_le_bytes());
        out.extend_from_slice(update);
    }
    out
}

fn decode_cache(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    bytes = bytes.strip_prefix(CACHE_MAGIC)?;
    let mut updates = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        updates.push(rest.get(..len)?.to_vec());
        bytes = &rest[len..];
    }
    Some(updates)
}

/// Replays every edit as a local edit on a fresh document, one transaction each; returns the final text.
pub fn replay_local(trace: &Trace) -> String {
    let doc = new_doc(1);
    let text = doc.get_or_insert_text(TEXT_NAME);
    {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, &trace.start_content);
    }
    for patch in trace.txns.iter().flat_map(|t| &t.patches) {
        let mut txn = doc.transact_mut();
        apply_patch(&text, &mut txn, patch);
    }
    text.get_string(&doc.transact())
}

/// Applies encoded updates to a fresh document, one transaction each, as a server does; returns the final text.
pub fn apply_updates(updates: &[Vec<u8>]) -> Result<String> {
    let doc = new_doc(2);
    let text = doc.get_or_insert_text(TEXT_NAME);
    for update in updates {
        let update = Update::decode_v1(update).context("undecodable update")?;
        doc.transact_mut().apply_update(update).context("apply update")?;
    }
    Ok(text.get_string(&doc.transact()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Trace {
        serde_json::from_str(
            r#"{"startContent":"ab","endContent":"aXé","txns":[{"patches":[[1,1,"X"]]},{"patches":[[2,0,"é"]]}]}"#,
        )
        .expect("valid trace")
    }

    #[test]
    fn replays_to_the_end_content() {
        let trace = tiny();
        assert_eq!(trace.edits(), 2);
        assert_eq!(replay_local(&trace), trace.end_content);
        let (updates, _) = encode_updates(&trace, 5);
        assert_eq!(updates.len(), 3);
        assert_eq!(apply_updates(&updates).expect("applies"), trace.end_content);
        assert_eq!(trace.end_len(), 3);
        assert_eq!(decode_cache(&encode_cache(&updates)), Some(updates));
        assert_eq!(decode_cache(b"tandem-bench updates v1\n\x05\0\0\0ab"), None);
    }
}
