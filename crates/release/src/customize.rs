//! A licensed module's tarball as one customer gets it: the published files, with
//! `module.xml`'s `<updateurl>` set to that customer's own `/c/{token}/getModuleUpdate/...`.
//!
//! FreePBX sends no identity with its update checks and reads the updateurl from the installed
//! `module.xml`: with the published tarball, the first update would switch a customer to the
//! plain URL, which a licensed module refuses. The result is the same bytes for the same input
//! (entry headers kept, fixed gzip level), so its digests can be computed once and the file
//! made again on each download.

use std::io::Read as _;

use md5::Digest as _;
use quick_xml::escape::escape;

/// Size and digests of a tarball (what the update JSON and HEAD announce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
}

impl Digests {
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            size: bytes.len() as u64,
            md5: hex::encode(md5::Md5::digest(bytes)),
            sha1: hex::encode(sha1::Sha1::digest(bytes)),
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
        }
    }
}

/// `tgz` (a published, checked module tarball) with `<rawname>/module.xml`'s updateurl set to
/// `update_url` (added when it has none).
pub fn with_update_url(tgz: &[u8], rawname: &str, update_url: &str) -> std::io::Result<Vec<u8>> {
    let module_xml = format!("{rawname}/module.xml");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut out = tar::Builder::new(gz);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        if path.to_str().map(|p| p.trim_start_matches("./")) == Some(module_xml.as_str()) {
            let xml = String::from_utf8_lossy(&data);
            data = set_update_url(&xml, update_url).into_bytes();
        }
        header.set_size(data.len() as u64);
        // append_data writes long names as extensions: a header copied as is would cut them.
        out.append_data(&mut header, &path, &data[..])?;
    }
    out.into_inner()?.finish()
}

/// `xml` with its `<updateurl>` replaced by (or, when absent, given) `url`.
fn set_update_url(xml: &str, url: &str) -> String {
    let element = format!("<updateurl>{}</updateurl>", escape(url));
    let existing = xml.find("<updateurl>").and_then(|start| {
        let end = start + xml[start..].find("</updateurl>")? + "</updateurl>".len();
        Some(start..end)
    });
    match existing {
        Some(range) => format!("{}{element}{}", &xml[..range.start], &xml[range.end..]),
        None => match xml.rfind("</module>") {
            Some(end) => format!("{}\t{element}\n{}", &xml[..end], &xml[end..]),
            None => xml.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_url_is_replaced_or_added() {
        let url = "https://r.example/c/pbxl_1/getModuleUpdate/m/1.0?a&b";
        expect_test::expect![[r#"
            <module>
            	<updateurl>https://r.example/c/pbxl_1/getModuleUpdate/m/1.0?a&amp;b</updateurl>
            </module>
        "#]]
        .assert_eq(&set_update_url(
            "<module>\n\t<updateurl>https://old/getModuleUpdate/m/1.0</updateurl>\n</module>\n",
            url,
        ));
        expect_test::expect![[r#"
            <module>
            	<version>1.0</version>
            	<updateurl>https://r.example/c/pbxl_1/getModuleUpdate/m/1.0?a&amp;b</updateurl>
            </module>
        "#]]
        .assert_eq(&set_update_url(
            "<module>\n\t<version>1.0</version>\n</module>\n",
            url,
        ));
    }
}
