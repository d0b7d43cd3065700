//! The FreePBX module tarball: `<rawname>/module.xml` (with the `<updateurl>` FreePBX polls),
//! the generated config blocks under `conf/`, and the install/uninstall hooks that put them into
//! (and take them out of) FreePBX's `*_custom.conf` files.

use quick_xml::escape::escape;

use super::generate::File;

/// Stands for the AMI secret in the packaged manager block; install.php replaces it with one
/// made on the PBX.
pub const SECRET_PLACEHOLDER: &str = "@PBXLINK_AMI_SECRET@";

/// What identifies the package.
#[derive(Debug, Clone)]
pub struct Module {
    pub rawname: String,
    pub version: String,
    /// Release server base (`https://host` or `https://host/c/TOKEN`).
    pub update_url: Option<String>,
}

/// Why no package was built.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("rawname {0:?}: FreePBX module names are a-z, 0-9 and '_'")]
    Rawname(String),
    #[error("version {0:?} is not a module version")]
    Version(String),
    #[error("update URL {0:?} must be https://HOST[/c/TOKEN]: FreePBX never checks anything else")]
    UpdateUrl(String),
    #[error("building the tarball: {0}")]
    Io(#[from] std::io::Error),
}

/// `module.xml`; the `<updateurl>` names this very version, as FreePBX fetches it verbatim.
fn module_xml(m: &Module) -> Result<String, PackageError> {
    let update_url = match &m.update_url {
        Some(base) => {
            let base = base.trim_end_matches('/');
            if !base.starts_with("https://") || url::Url::parse(base).is_err() {
                return Err(PackageError::UpdateUrl(base.to_owned()));
            }
            format!(
                "\t<updateurl>{}</updateurl>\n",
                escape(format!(
                    "{base}/getModuleUpdate/{}/{}",
                    m.rawname, m.version
                ))
            )
        }
        None => String::new(),
    };
    Ok(format!(
        "<module>\n\
         \t<rawname>{rawname}</rawname>\n\
         \t<name>pbxlink CRM integration</name>\n\
         \t<version>{version}</version>\n\
         \t<publisher>pbxlink</publisher>\n\
         \t<license>Apache-2.0</license>\n\
         \t<category>Connectivity</category>\n\
         \t<description>Dialplan hooks (CRM routing over FastAGI, recordings, hangup handlers) \
         and the AMI user pbxlink connects with.</description>\n\
         \t<changelog>*{version}* pbxlink {pbxlink}</changelog>\n\
         {update_url}\
         \t<depends>\n\t\t<version>15.0</version>\n\t</depends>\n\
         \t<supported>\n\t\t<version>15.0</version>\n\t</supported>\n\
         </module>\n",
        rawname = m.rawname,
        version = escape(&m.version),
        pbxlink = env!("CARGO_PKG_VERSION"),
    ))
}

/// The gzip tarball. Entries carry fixed times and modes, so the same input gives the same
/// bytes (and the same md5 on the release server).
pub fn build(m: &Module, files: &[File]) -> Result<Vec<u8>, PackageError> {
    if !crate::module::is_valid_rawname(&m.rawname) {
        return Err(PackageError::Rawname(m.rawname.clone()));
    }
    if !crate::version::is_valid(&m.version) {
        return Err(PackageError::Version(m.version.clone()));
    }
    let mut entries = vec![
        ("module.xml".to_owned(), module_xml(m)?),
        (
            "functions.inc.php".to_owned(),
            include_str!("php/functions.inc.php").to_owned(),
        ),
        (
            "install.php".to_owned(),
            include_str!("php/install.php").to_owned(),
        ),
        (
            "uninstall.php".to_owned(),
            include_str!("php/uninstall.php").to_owned(),
        ),
    ];
    entries.extend(
        files
            .iter()
            .map(|f| (format!("conf/{}", f.name), super::with_markers(&f.block))),
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    for (name, text) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(
            &mut header,
            format!("{}/{name}", m.rawname),
            text.as_bytes(),
        )?;
    }
    Ok(tar.into_inner()?.finish()?)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn module_xml_names_its_own_version_in_the_update_url() {
        let module = Module {
            rawname: "pbxlink".into(),
            version: "1.2.0".into(),
            update_url: Some("https://releases.example.com/c/acme-7f3a/".into()),
        };
        expect![[r#"
            <module>
            	<rawname>pbxlink</rawname>
            	<name>pbxlink CRM integration</name>
            	<version>1.2.0</version>
            	<publisher>pbxlink</publisher>
            	<license>Apache-2.0</license>
            	<category>Connectivity</category>
            	<description>Dialplan hooks (CRM routing over FastAGI, recordings, hangup handlers) and the AMI user pbxlink connects with.</description>
            	<changelog>*1.2.0* pbxlink 0.1.0</changelog>
            	<updateurl>https://releases.example.com/c/acme-7f3a/getModuleUpdate/pbxlink/1.2.0</updateurl>
            	<depends>
            		<version>15.0</version>
            	</depends>
            	<supported>
            		<version>15.0</version>
            	</supported>
            </module>
        "#]]
        .assert_eq(&module_xml(&module).unwrap());
        let http = Module {
            update_url: Some("http://releases.example.com".into()),
            ..module
        };
        expect![[r#"update URL "http://releases.example.com" must be https://HOST[/c/TOKEN]: FreePBX never checks anything else"#]]
            .assert_eq(&module_xml(&http).unwrap_err().to_string());
    }
}
