//! Minisign signatures of module tarballs: checked when a signed release is published, served
//! beside it (`<sha256>.tgz.minisig`), and checked by `pbxlink release verify FILE`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use minisign_verify::{PublicKey, Signature};

/// The public key given as its base64 line (`RW...`) or as a minisign `.pub` file.
pub fn public_key(key: &str) -> anyhow::Result<PublicKey> {
    if let Ok(key) = PublicKey::from_base64(key.trim()) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(key)
        .with_context(|| format!("{key:?} is neither a minisign public key nor a readable file"))?;
    PublicKey::decode(&text).with_context(|| format!("{key}: not a minisign public key"))
}

/// Checks that `minisig` (a minisign signature file's text) signs `bytes` with `key`; gives
/// the signature's trusted comment.
pub fn verify(bytes: &[u8], minisig: &str, key: &PublicKey) -> anyhow::Result<String> {
    let signature = Signature::decode(minisig).context("not a minisign signature file")?;
    key.verify(bytes, &signature, false)
        .context("the signature does not match this file and key")?;
    Ok(signature.trusted_comment().to_owned())
}

/// `FILE.minisig`, minisign's own name for a file's signature.
pub fn default_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Reads the signature for `file` (`sig`, else `FILE.minisig`); `None` when neither was given
/// nor exists.
pub fn read_for(file: &Path, sig: Option<&Path>) -> anyhow::Result<Option<String>> {
    let path = match sig {
        Some(path) => path.to_owned(),
        None => {
            let path = default_path(file);
            if !path.exists() {
                return Ok(None);
            }
            path
        }
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Signature::decode(&text)
        .with_context(|| format!("{}: not a minisign signature file", path.display()))?;
    Ok(Some(text))
}
