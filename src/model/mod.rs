//! The shared nouns: document ids, titles and document metadata; versions (`version`).
//!
//! Plain data every layer uses; this module imports no other module of the crate.

mod version;

pub use version::{InvalidLabel, InvalidVersionId, Label, Reason, Version, VersionCursor, VersionId};

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The id of a document: a UUID, parsed once at the edge (path, cursor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DocId(Uuid);

impl DocId {
    /// A fresh random id for a new document.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for DocId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for DocId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for DocId {
    type Err = InvalidDocId;

    /// Accepts the hyphenated form only (`xxxxxxxx-xxxx-...`), the one the API hands out.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidDocId);
        }
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidDocId)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A string that is not a document id.
#[derive(Debug, thiserror::Error)]
#[error("malformed document id: expected a UUID like 0b5e2d0c-8f43-4a8e-9a39-3c6f1f4f2b1a")]
pub struct InvalidDocId;

/// A document title: trimmed, 1 to [`Title::MAX_CHARS`] characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;
    pub const DEFAULT: &'static str = "Untitled";

    pub fn parse(raw: &str) -> Result<Self, InvalidTitle> {
        let title = raw.trim();
        if title.is_empty() {
            return Err(InvalidTitle::Empty);
        }
        if title.chars().count() > Self::MAX_CHARS {
            return Err(InvalidTitle::TooLong);
        }
        if title.chars().any(char::is_control) {
            return Err(InvalidTitle::ControlCharacter);
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Title {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

/// Why a title was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidTitle {
    #[error("title must not be empty")]
    Empty,
    #[error("title must be at most {} characters", Title::MAX_CHARS)]
    TooLong,
    #[error("title must not contain control characters")]
    ControlCharacter,
}

/// A document's metadata, as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Doc {
    pub id: DocId,
    pub title: Title,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// RFC 3339 with microseconds and a `Z`, the precision both stores keep.
fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// A position in the document list (newest `updated_at` first, then id), handed out as an
/// opaque `next_cursor` string: `<updated_at in µs>.<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCursor {
    pub updated_at: DateTime<Utc>,
    pub id: DocId,
}

impl PageCursor {
    pub fn after(doc: &Doc) -> Self {
        Self { updated_at: doc.updated_at, id: doc.id }
    }
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.updated_at.timestamp_micros(), self.id)
    }
}

impl FromStr for PageCursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (updated_at, id) = parse_cursor(s)?;
        Ok(Self { updated_at, id: id.parse().map_err(|_| InvalidCursor)? })
    }
}

/// `<µs>.<id>`, the form of every cursor, split into its time and its id text.
fn parse_cursor(s: &str) -> Result<(DateTime<Utc>, &str), InvalidCursor> {
    let (micros, id) = s.split_once('.').ok_or(InvalidCursor)?;
    let micros: i64 = micros.parse().map_err(|_| InvalidCursor)?;
    let at = DateTime::from_timestamp_micros(micros).ok_or(InvalidCursor)?;
    Ok((at, id))
}

/// A `cursor` query parameter that this server did not hand out.
#[derive(Debug, thiserror::Error)]
#[error("malformed cursor: pass the next_cursor of a previous page unchanged")]
pub struct InvalidCursor;

/// The current time at the precision both stores keep (microseconds), so that a value
/// read back equals the value written.
pub fn now() -> DateTime<Utc> {
    let micros = Utc::now().timestamp_micros();
    DateTime::from_timestamp_micros(micros).expect("the current time fits in i64 microseconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_id_round_trips_and_refuses_garbage() {
        let id = DocId::new();
        assert_eq!(id.to_string().parse::<DocId>().unwrap(), id);
        for bad in
            ["", "nope", "123", "0b5e2d0c8f434a8e9a393c6f1f4f2b1a", "{0b5e2d0c-8f43-4a8e-9a39-3c6f1f4f2b1a}"]
        {
            assert!(bad.parse::<DocId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn title_is_trimmed_and_checked() {
        assert_eq!(Title::parse("  Notes ").unwrap().as_str(), "Notes");
        assert_eq!(Title::parse("   "), Err(InvalidTitle::Empty));
        assert_eq!(Title::parse(&"x".repeat(201)), Err(InvalidTitle::TooLong));
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        assert_eq!(Title::parse("a\u{0}b"), Err(InvalidTitle::ControlCharacter));
    }

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let cursor = PageCursor { updated_at: now(), id: DocId::new() };
        assert_eq!(cursor.to_string().parse::<PageCursor>().unwrap(), cursor);
        for bad in [
            "",
            ".",
            "12",
            "x.y",
            "1.not-a-uuid",
            "99999999999999999999.0b5e2d0c-8f43-4a8e-9a39-3c6f1f4f2b1a",
        ] {
            assert!(bad.parse::<PageCursor>().is_err(), "{bad:?} parsed");
        }
    }
}
