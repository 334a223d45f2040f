//! Access control: who may do what to which document.
//!
//! A request carries a token (a JWT the application's backend signs, or a share link's);
//! [`Verifier::verify`] checks it once, at the door, into an [`Access`]: the document (or
//! every document), the scope, and who it is. REST handlers check the access a call needs;
//! a WebSocket's access travels with the connection into the document actor, which refuses
//! writes from `read` connections itself. With no key configured, tandem runs open: every
//! request has [`Access::open`].
//!
//! This module knows nothing of HTTP; `http::access` takes tokens out of requests.

mod token;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use token::{Claims, SetupError, TokenError, Verifier};

use crate::model::DocId;

/// What a token allows, from least to most. Each scope may do everything the ones below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read a document and its text; join its WebSocket, receive everything, publish one's cursor.
    Read,
    /// Also change the document (updates over the socket) and rename it.
    Write,
    /// Also delete it and make share links; with every document, also list and create.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown scope {other:?}: use read, write or admin")),
        }
    }
}

/// Which documents a token is for: one, or every document (`"*"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Docs {
    One(DocId),
    All,
}

impl Docs {
    /// The `doc` claim: a document id, or `*`.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw == "*" { Some(Self::All) } else { raw.parse().ok().map(Self::One) }
    }

    fn covers(self, doc: DocId) -> bool {
        match self {
            Self::All => true,
            Self::One(id) => id == doc,
        }
    }
}

impl fmt::Display for Docs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::One(id) => id.fmt(f),
        }
    }
}

/// What one request may do, as its token (or open mode) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub docs: Docs,
    pub scope: Scope,
    /// The token's subject (`sub`): who this is, for logs and to let a person's new
    /// connection take over their own cursor.
    pub sub: Option<Arc<str>>,
    /// The person's display name (`name`), for logs and the editor.
    pub name: Option<Arc<str>>,
    /// The token's `exp`; `None` in open mode.
    pub expires: Option<SystemTime>,
}

/// Why an access does not allow a request (a 403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this token is for another document")]
    OtherDocument,
    #[error("this needs a token for every document (doc \"*\") with scope admin")]
    NotEveryDocument,
    #[error("this needs scope {need}; the token has scope {have}")]
    Scope { have: Scope, need: Scope },
}

impl Access {
    /// Open mode (no key configured): everything, for everyone, for ever.
    pub fn open() -> Self {
        Self { docs: Docs::All, scope: Scope::Admin, sub: None, name: None, expires: None }
    }

    /// May this access act on `doc` with at least `need`?
    pub fn allows(&self, doc: DocId, need: Scope) -> Result<(), Denied> {
        if !self.docs.covers(doc) {
            return Err(Denied::OtherDocument);
        }
        self.at_least(need)
    }

    /// May this access act on every document (list, create) with at least `need`?
    pub fn allows_all(&self, need: Scope) -> Result<(), Denied> {
        if self.docs != Docs::All {
            return Err(Denied::NotEveryDocument);
        }
        self.at_least(need)
    }

    fn at_least(&self, need: Scope) -> Result<(), Denied> {
        if self.scope >= need { Ok(()) } else { Err(Denied::Scope { have: self.scope, need }) }
    }

    /// Who this is, for logs: the name, else the subject, else nothing.
    pub fn who(&self) -> Option<&str> {
        self.name.as_deref().or(self.sub.as_deref())
    }
}

/// `tandem token`: a token signed with the configured secret, as the settings say.
pub fn mint(args: &crate::config::TokenArgs) -> Result<String, SetupError> {
    let verifier =
        Verifier::from_settings(args.auth.auth_secret.as_deref(), None)?.ok_or(SetupError::CannotSign)?;
    let mut claims = Claims::new(args.doc, args.scope, args.ttl);
    claims.name = args.name.clone();
    claims.sub = args.sub.clone();
    verifier.sign(&claims)
}

/// Seconds since the Unix epoch, as JWTs count time.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `seconds` after the Unix epoch.
pub fn from_unix_seconds(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Parses a lifetime such as `90s`, `30m`, `1h`, `7d` or `2w`.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw.trim())
        .map_err(|err| format!("invalid ttl {raw:?}: {err} (use e.g. 30m, 1h, 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err(format!("invalid ttl {raw:?}: at least one second"));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(docs: Docs, scope: Scope) -> Access {
        Access { docs, scope, ..Access::open() }
    }

    #[test]
    fn each_scope_allows_what_the_lower_ones_do() {
        let doc = DocId::new();
        let write = access(Docs::One(doc), Scope::Write);
        assert_eq!(write.allows(doc, Scope::Read), Ok(()));
        assert_eq!(write.allows(doc, Scope::Write), Ok(()));
        assert_eq!(
            write.allows(doc, Scope::Admin),
            Err(Denied::Scope { have: Scope::Write, need: Scope::Admin })
        );
        assert_eq!(write.allows(DocId::new(), Scope::Read), Err(Denied::OtherDocument));
    }

    #[test]
    fn listing_needs_every_document() {
        let doc = DocId::new();
        assert_eq!(
            access(Docs::One(doc), Scope::Admin).allows_all(Scope::Admin),
            Err(Denied::NotEveryDocument)
        );
        assert!(access(Docs::All, Scope::Write).allows_all(Scope::Admin).is_err());
        assert_eq!(access(Docs::All, Scope::Admin).allows_all(Scope::Admin), Ok(()));
        assert_eq!(Access::open().allows(doc, Scope::Admin), Ok(()));
    }

    #[test]
    fn doc_claims_and_ttls_parse() {
        let doc = DocId::new();
        assert_eq!(Docs::parse("*"), Some(Docs::All));
        assert_eq!(Docs::parse(&doc.to_string()), Some(Docs::One(doc)));
        assert_eq!(Docs::parse("every"), None);
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("soon").is_err());
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("owner".parse::<Scope>().is_err());
    }
}
