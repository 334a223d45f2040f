//! Tokens: JWTs signed with HS256 (a shared secret) or verified with a public key (EdDSA or
//! ES256, so that the application keeps the private key). Signatures and time claims are
//! checked by `jsonwebtoken`; this file decides which key may verify which algorithm, so that
//! neither `alg: none` nor a token of another algorithm than the configured key's gets in.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Access, Docs, Scope, from_unix_seconds, unix_seconds};

/// Clock skew tolerated on `exp` and `nbf`, in seconds. The JWT crates default to a minute,
/// which would keep an expired token working that long.
pub(super) const LEEWAY_SECONDS: u64 = 1;

/// The claims of a tandem token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// A document id, or `*` for every document.
    pub doc: String,
    pub scope: Scope,
    /// Expiry, in seconds since the Unix epoch (required).
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Claims {
    /// Claims for `docs` and `scope`, valid for `ttl` from now.
    pub fn new(docs: Docs, scope: Scope, ttl: Duration) -> Self {
        let exp = unix_seconds(SystemTime::now() + ttl);
        Self { doc: docs.to_string(), scope, exp, nbf: None, sub: None, name: None }
    }
}

/// Why a token was not accepted (a 401: a new token can fix it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing token: send Authorization: Bearer <token> (or ?token= on /ws)")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0} is not accepted by this server")]
    Algorithm(String),
    #[error("token signature is not valid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
}

/// Why the configured keys cannot be used (start-up fails with this).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--auth-secret is empty")]
    EmptySecret,
    #[error("cannot read the public key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a PEM EdDSA (Ed25519) or ES256 (P-256) public key")]
    NotAKey { path: String },
    #[error("signing needs --auth-secret (TANDEM_AUTH_SECRET): the server holds no private key")]
    CannotSign,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The keys tokens are checked with. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Keys>,
}

struct Keys {
    /// HS256: the secret's UTF-8 bytes, both ways.
    secret: Option<(DecodingKey, EncodingKey)>,
    /// EdDSA or ES256: verify only.
    public: Option<(Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Verifier")
            .field("hs256", &self.inner.secret.is_some())
            .field("public_key", &self.inner.public.as_ref().map(|(alg, _)| *alg))
            .finish()
    }
}

impl Verifier {
    /// The verifier for the configured secret and/or public key file; `None` (open mode)
    /// when neither is set.
    pub fn from_settings(
        secret: Option<&str>,
        public_key: Option<&Path>,
    ) -> Result<Option<Self>, SetupError> {
        let secret = match secret {
            None => None,
            Some("") => return Err(SetupError::EmptySecret),
            Some(secret) => {
                let bytes = secret.as_bytes();
                let decode = DecodingKey::from_secret(bytes).map_err(|_| SetupError::EmptySecret)?;
                let encode = EncodingKey::from_secret(bytes).map_err(|_| SetupError::EmptySecret)?;
                Some((decode, encode))
            }
        };
        let public = match public_key {
            None => None,
            Some(path) => Some(read_public_key(path)?),
        };
        if secret.is_none() && public.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { inner: Arc::new(Keys { secret, public }) }))
    }

    /// Checks a token's signature and claims; what it allows.
    pub fn verify(&self, token: &str) -> Result<Access, TokenError> {
        // The header names the algorithm; only the key configured for it may verify, so an
        // HS256 token "signed" with the public key (algorithm confusion) finds no key.
        let header = jsonwebtoken::decode_header(token).map_err(|err| malformed(&err))?;
        let key = match header.alg {
            Algorithm::HS256 => self.inner.secret.as_ref().map(|(key, _)| key),
            alg => self.inner.public.as_ref().filter(|(own, _)| *own == alg).map(|(_, key)| key),
        };
        let key = key.ok_or_else(|| TokenError::Algorithm(format!("{:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        // tandem defines no audience; `doc` and `scope` are what bind a token to it.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAlgorithm => TokenError::Algorithm(format!("{:?}", header.alg)),
                _ => malformed(&err),
            })?;
        let claims = data.claims;
        let docs = Docs::parse(&claims.doc)
            .ok_or_else(|| TokenError::Malformed("doc must be a document id or \"*\"".into()))?;
        Ok(Access {
            docs,
            scope: claims.scope,
            sub: claims.sub.filter(|s| !s.is_empty()).map(Arc::from),
            name: claims.name.filter(|s| !s.is_empty()).map(Arc::from),
            expires: Some(from_unix_seconds(claims.exp)),
        })
    }

    /// True when this server can sign tokens (it has the HS256 secret).
    pub fn can_sign(&self) -> bool {
        self.inner.secret.is_some()
    }

    /// Signs `claims` with the HS256 secret.
    pub fn sign(&self, claims: &Claims) -> Result<String, SetupError> {
        let (_, key) = self.inner.secret.as_ref().ok_or(SetupError::CannotSign)?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
            .map_err(|err| SetupError::Sign(err.to_string()))
    }
}

fn malformed(err: &jsonwebtoken::errors::Error) -> TokenError {
    TokenError::Malformed(err.to_string())
}

/// Reads a PEM public key: Ed25519 (EdDSA) or P-256 (ES256).
fn read_public_key(path: &Path) -> Result<(Algorithm, DecodingKey), SetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| SetupError::Read { path: shown.clone(), source })?;
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((Algorithm::EdDSA, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    Err(SetupError::NotAKey { path: shown })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DocId;

    fn hs256(secret: &str) -> Verifier {
        Verifier::from_settings(Some(secret), None).unwrap().unwrap()
    }

    fn claims(scope: Scope) -> Claims {
        Claims::new(Docs::One(DocId::new()), scope, Duration::from_secs(60))
    }

    #[test]
    fn a_signed_token_verifies_into_its_access() {
        let verifier = hs256("s3cret");
        let mut claims = claims(Scope::Write);
        claims.name = Some("Ada".into());
        let access = verifier.verify(&verifier.sign(&claims).unwrap()).unwrap();
        assert_eq!(access.scope, Scope::Write);
        assert_eq!(access.docs.to_string(), claims.doc);
        assert_eq!(access.name.as_deref(), Some("Ada"));
        assert_eq!(access.expires, Some(from_unix_seconds(claims.exp)));
    }

    #[test]
    fn no_keys_is_open_mode_and_an_empty_secret_is_refused() {
        assert!(Verifier::from_settings(None, None).unwrap().is_none());
        assert!(matches!(Verifier::from_settings(Some(""), None), Err(SetupError::EmptySecret)));
    }

    #[test]
    fn time_claims_have_a_leeway_of_one_second() {
        let verifier = hs256("s3cret");
        let now = unix_seconds(SystemTime::now());
        let mut claims = claims(Scope::Read);
        claims.exp = now - 3;
        assert_eq!(verifier.verify(&verifier.sign(&claims).unwrap()), Err(TokenError::Expired));
        claims.exp = now + 60;
        claims.nbf = Some(now + 3);
        assert_eq!(verifier.verify(&verifier.sign(&claims).unwrap()), Err(TokenError::NotYetValid));
        claims.nbf = Some(now);
        assert!(verifier.verify(&verifier.sign(&claims).unwrap()).is_ok());
    }

    #[test]
    fn another_secret_or_garbage_is_refused() {
        let token = hs256("one").sign(&claims(Scope::Read)).unwrap();
        assert_eq!(hs256("two").verify(&token), Err(TokenError::Signature));
        assert!(matches!(hs256("one").verify("not.a.token"), Err(TokenError::Malformed(_))));
        assert!(matches!(hs256("one").verify(""), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn a_public_key_only_server_cannot_sign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n").unwrap();
        assert!(matches!(Verifier::from_settings(None, Some(&path)), Err(SetupError::NotAKey { .. })));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(Verifier::from_settings(None, Some(&missing)), Err(SetupError::Read { .. })));
    }
}
