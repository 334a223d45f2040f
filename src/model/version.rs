//! The nouns of version history: a version's id, its label, why it was kept, and how it
//! shows in the REST API.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{DocId, rfc3339};

/// The id of a version: a UUID, parsed once at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VersionId(Uuid);

impl VersionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for VersionId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for VersionId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for VersionId {
    type Err = InvalidVersionId;

    /// The hyphenated form only, the one the API hands out.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidVersionId);
        }
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidVersionId)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A string that is not a version id.
#[derive(Debug, thiserror::Error)]
#[error("malformed version id: expected a UUID like 0b5e2d0c-8f43-4a8e-9a39-3c6f1f4f2b1a")]
pub struct InvalidVersionId;

/// The name a person gives a version: trimmed, 1 to [`Label::MAX_CHARS`] characters, no
/// control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidLabel> {
        let label = raw.trim();
        if label.is_empty() {
            return Err(InvalidLabel::Empty);
        }
        if label.chars().count() > Self::MAX_CHARS {
            return Err(InvalidLabel::TooLong);
        }
        if label.chars().any(char::is_control) {
            return Err(InvalidLabel::ControlCharacter);
        }
        Ok(Self(label.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a label was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidLabel {
    #[error("label must not be empty (leave it out for an unnamed version)")]
    Empty,
    #[error("label must be at most {} characters", Label::MAX_CHARS)]
    TooLong,
    #[error("label must not contain control characters")]
    ControlCharacter,
}

/// Why a version was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A burst of editing ended, or a long session reached the interval.
    Auto,
    /// Someone asked for it (`POST /api/docs/{id}/versions`).
    Request,
    /// The state just before a restore: restoring it undoes the restore.
    Restore,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Request => "request",
            Self::Restore => "restore",
        }
    }

    /// The stored form back; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "auto" => Some(Self::Auto),
            "request" => Some(Self::Request),
            "restore" => Some(Self::Restore),
            _ => None,
        }
    }
}

/// A version's metadata, as the REST API shows it (its content is read separately).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Version {
    pub id: VersionId,
    pub doc_id: DocId,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub label: Option<Label>,
    /// Who edited since the version before (display names, sorted).
    pub editors: Vec<String>,
    pub reason: Reason,
}

/// A position in a document's versions (newest first, then id), handed out as an opaque
/// `next_cursor`: `<created_at in µs>.<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionCursor {
    pub created_at: DateTime<Utc>,
    pub id: VersionId,
}

impl VersionCursor {
    pub fn after(version: &Version) -> Self {
        Self { created_at: version.created_at, id: version.id }
    }
}

impl fmt::Display for VersionCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at.timestamp_micros(), self.id)
    }
}

impl FromStr for VersionCursor {
    type Err = super::InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (created_at, id) = super::parse_cursor(s)?;
        Ok(Self { created_at, id: id.parse().map_err(|_| super::InvalidCursor)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_checked() {
        assert_eq!(Label::parse("  Draft 1 ").unwrap().as_str(), "Draft 1");
        assert_eq!(Label::parse(" \t "), Err(InvalidLabel::Empty));
        assert_eq!(Label::parse(&"x".repeat(201)), Err(InvalidLabel::TooLong));
        assert!(Label::parse(&"é".repeat(200)).is_ok());
        assert_eq!(Label::parse("a\u{0}b"), Err(InvalidLabel::ControlCharacter));
    }

    #[test]
    fn version_ids_and_cursors_round_trip_and_refuse_garbage() {
        let id = VersionId::new();
        assert_eq!(id.to_string().parse::<VersionId>().unwrap(), id);
        assert!("not-a-uuid".parse::<VersionId>().is_err());
        assert!(id.as_uuid().simple().to_string().parse::<VersionId>().is_err());
        let cursor = VersionCursor { created_at: super::super::now(), id };
        assert_eq!(cursor.to_string().parse::<VersionCursor>().unwrap(), cursor);
        for bad in ["", ".", "1.x", "x.0b5e2d0c-8f43-4a8e-9a39-3c6f1f4f2b1a"] {
            assert!(bad.parse::<VersionCursor>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn reasons_round_trip_through_their_stored_form() {
        for reason in [Reason::Auto, Reason::Request, Reason::Restore] {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("manual"), None);
    }
}
