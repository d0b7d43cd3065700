//! API tokens: their scopes and how they are made and hashed.
//!
//! A token is shown once, when made; the database keeps only its SHA-256, so neither a
//! database dump nor a log line can be replayed against the API.

use clap::ValueEnum;
use sha2::{Digest, Sha256};

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scope {
    /// Read calls, the live view and the event stream, metrics.
    Read,
    /// Also place, hang up, transfer and redirect calls.
    Control,
    /// Everything.
    Admin,
}

impl Scope {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
            Scope::Admin => "admin",
        }
    }

    /// The scope of a stored name; `None` for anything else, which grants nothing.
    pub fn from_stored(name: &str) -> Option<Scope> {
        Scope::from_str(name, false).ok()
    }
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh secret: 192 random bits, with a prefix that secret scanners can recognise.
pub fn new_secret() -> String {
    format!("pbxl_{}", hex::encode(rand::random::<[u8; 24]>()))
}
