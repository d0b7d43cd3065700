//! A FreePBX module tarball read back: a gzip tar whose one top directory is the rawname,
//! holding `module.xml` (what FreePBX's module admin requires before it installs anything).

use std::io::Read as _;

use serde::{Deserialize, Serialize};

/// The `module.xml` fields the release server and `release check` use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModuleXml {
    pub rawname: String,
    pub name: String,
    pub version: String,
    pub publisher: Option<String>,
    pub license: Option<String>,
    pub changelog: Option<String>,
    pub updateurl: Option<String>,
    pub depends: Option<Depends>,
}

/// `<depends>`: each child may repeat (`<module>core ge 16.0</module>` twice, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Depends {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phpversion: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phpcomponent: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engine: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file: Vec<String>,
}

/// Why a file is not an installable module tarball.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("not a gzip tar archive: {0}")]
    Archive(#[from] std::io::Error),
    #[error("entry {0:?} escapes the module directory (absolute path or '..')")]
    Escapes(String),
    #[error("entries under several top directories ({0} and {1}); FreePBX needs exactly one, the rawname")]
    SeveralTops(String, String),
    #[error("the archive is empty")]
    Empty,
    #[error("no {0}/module.xml in the archive")]
    NoModuleXml(String),
    #[error("{0}/module.xml: {1}")]
    BadXml(String, String),
    #[error("module.xml says rawname {xml:?} but the top directory is {dir:?}")]
    RawnameMismatch { xml: String, dir: String },
    #[error("rawname {0:?}: only a-z, 0-9 and '_' are allowed")]
    BadRawname(String),
    #[error("version {0:?} is not a module version (digits first; letters, digits, . - _ + only)")]
    BadVersion(String),
}

/// Whether `rawname` is a FreePBX module name (also: safe in a path and a URL).
pub fn is_valid_rawname(rawname: &str) -> bool {
    !rawname.is_empty()
        && rawname.len() <= 64
        && rawname
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Reads and checks a module tarball.
pub fn read_tarball(tgz: &[u8]) -> Result<ModuleXml, ModuleError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut top: Option<String> = None;
    let mut xml_text = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let shown = path.display().to_string();
        let mut components = path.components();
        let first = match components.next() {
            Some(std::path::Component::Normal(first)) => first.to_string_lossy().into_owned(),
            _ => return Err(ModuleError::Escapes(shown)),
        };
        if components.any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(ModuleError::Escapes(shown));
        }
        match &top {
            Some(t) if *t != first => return Err(ModuleError::SeveralTops(t.clone(), first)),
            Some(_) => {}
            None => top = Some(first.clone()),
        }
        if path == std::path::Path::new(&first).join("module.xml") {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            xml_text = Some(text);
        }
    }
    let top = top.ok_or(ModuleError::Empty)?;
    let text = xml_text.ok_or_else(|| ModuleError::NoModuleXml(top.clone()))?;
    let xml: ModuleXml = quick_xml::de::from_str(&text)
        .map_err(|e| ModuleError::BadXml(top.clone(), e.to_string()))?;
    if xml.rawname != top {
        return Err(ModuleError::RawnameMismatch {
            xml: xml.rawname,
            dir: top,
        });
    }
    if !is_valid_rawname(&xml.rawname) {
        return Err(ModuleError::BadRawname(xml.rawname));
    }
    if !super::version::is_valid(&xml.version) {
        return Err(ModuleError::BadVersion(xml.version));
    }
    Ok(xml)
}
