//! Signed recording links: `/recordings/{sha256}.{expires}.{mac}.mp3`, where `mac` is
//! HMAC-SHA256 under the server's key of `{sha256}.{expires}`. A link names only the content
//! hash, so serving it never takes a path from the request; anyone holding it may download
//! until it expires (what a CRM's "attach by URL" needs), and nobody can make one without the key.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a link is refused (each answers 403; the reason goes to the log, not the client).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not of the link's shape (including every path-traversal attempt).
    #[error("malformed recording link")]
    Malformed,
    /// The signature does not match (tampered, or made with another key).
    #[error("recording link signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("recording link expired")]
    Expired,
}

/// Makes and checks links with one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: <hidden> }")
    }
}

impl Signer {
    /// A signer with this secret key.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, sha256: &str, expires: i64) -> Hmac<Sha256> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(format!("{sha256}.{expires}").as_bytes());
        mac
    }

    /// The link's last path segment for the MP3 named `sha256`, valid until `expires`.
    pub fn token(&self, sha256: &str, expires: DateTime<Utc>) -> String {
        let expires = expires.timestamp();
        let mac = hex::encode(self.mac(sha256, expires).finalize().into_bytes());
        format!("{sha256}.{expires}.{mac}.mp3")
    }

    /// The MP3's hash if `token` is a valid, unexpired link at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<String, LinkError> {
        let parts: Vec<&str> = token
            .strip_suffix(".mp3")
            .unwrap_or(token)
            .split('.')
            .collect();
        let [sha256, expires, mac] = parts[..] else {
            return Err(LinkError::Malformed);
        };
        let is_hash = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let expires: i64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        let mac = hex::decode(mac).map_err(|_| LinkError::Malformed)?;
        if !is_hash {
            return Err(LinkError::Malformed);
        }
        // `verify_slice` compares in constant time.
        self.mac(sha256, expires)
            .verify_slice(&mac)
            .map_err(|_| LinkError::BadSignature)?;
        if now.timestamp() >= expires {
            return Err(LinkError::Expired);
        }
        Ok(sha256.to_owned())
    }
}
